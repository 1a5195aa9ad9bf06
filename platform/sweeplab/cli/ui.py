"""sweeplab ui: MLflow's UI over the store's tracking database, on 127.0.0.1 by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from sweeplab.cli._common import STORE, TRACKING_URI, err, fail, handle_errors


@handle_errors
def ui(
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(5000, "--port", help="Port to listen on."),
) -> None:
    """Open the MLflow UI on the sweeps' runs (Ctrl-C to stop)."""
    from sweeplab.store import Store

    where = Store.resolve(store, tracking_uri)
    if tracking_uri is None and not (where.root / "mlflow.db").is_file():
        raise fail(f"no tracking database at {where.root / 'mlflow.db'}: run a sweep first")
    if where.tracking_uri.startswith(("http://", "https://")):
        raise fail(f"{where.tracking_uri} is a tracking server: open it in a browser directly")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"warning: the UI will listen on {host}: anyone who can reach it "
            "can read and change runs. MLflow has no authentication unless started with "
            "--app-name basic-auth; restrict --allowed-hosts too."
        )
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        where.tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if where.local_tracking:
        command += ["--artifacts-destination", where.artifact_root.as_uri()]
    err.print(f"MLflow UI on http://{host}:{port} (Ctrl-C to stop)")
    try:
        raise typer.Exit(subprocess.call(command))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
