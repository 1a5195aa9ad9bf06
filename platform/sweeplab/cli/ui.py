"""sweeplab ui: MLflow's UI over the store's tracking database, on 127.0.0.1 by default."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from sweeplab.cli._common import STORE, TRACKING_URI, err, fail, handle_errors, tracking_store


@handle_errors
def ui(
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="MLflow server processes (one serves a person's browser; MLflow's own default "
        "is 4, each a second or more of start-up).",
    ),
    auth: bool = typer.Option(
        False, "--auth", help="Turn on MLflow's basic authentication (--app-name basic-auth)."
    ),
    allowed_hosts: str | None = typer.Option(
        None,
        "--allowed-hosts",
        help="Comma-separated Host headers MLflow accepts [default: localhost and private IPs].",
    ),
) -> None:
    """Open the MLflow UI on the sweeps' runs (Ctrl-C to stop)."""

    where = tracking_store(store, tracking_uri)
    if where.tracking_uri.startswith(("http://", "https://")):
        raise fail(f"{where.tracking_uri} is a tracking server: open it in a browser directly")
    if host not in ("127.0.0.1", "localhost", "::1") and not (auth and allowed_hosts):
        err.print(
            f"warning: the UI will listen on {host}{'' if auth else ' with no authentication'}:"
            " anyone who can reach it can read, change and delete runs and models. Turn on "
            "MLflow's login and name the hosts clients use, e.g.\n"
            f"  sweeplab ui --host {host} --auth --allowed-hosts mlflow.example.com\n"
            "(--auth starts MLflow's basic-auth app, its users in STORE/basic_auth.db; the "
            "first start creates user admin with the password in MLFLOW_AUTH_ADMIN_PASSWORD)"
        )
    _can_read(where.tracking_uri)
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
        "--workers",
        str(workers),
    ]
    env = _auth_env(where.root) if auth else _plain_env()
    if auth:
        command += ["--app-name", "basic-auth"]
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    if where.local_tracking:
        command += ["--artifacts-destination", where.artifact_root.as_uri()]
    from sweeplab.cli._processes import bind, serve_group

    bind(host, port).close()  # a port that is taken: one line, before MLflow starts
    err.print(f"starting the MLflow UI on {host}:{port} …")
    address = f"[{host}]" if ":" in host else host
    started: list[bool] = []

    def ready() -> None:
        started.append(True)
        err.print(
            f"MLflow UI on http://{address}:{port}/#/experiments?workflowType=machine_learning"
            " (Ctrl-C to stop): a sweep is a parent run, expand it for its trials"
        )

    status = serve_group(
        command, env=env, ready_url=f"http://{address}:{port}/health", on_ready=ready
    )
    if not started and status < 128:
        raise fail(
            f"the MLflow UI did not start (mlflow exited with {status}); see above", status or 1
        )
    raise typer.Exit(status)


def _can_read(tracking_uri: str) -> None:
    """Read the tracking database once here: a damaged one stops with sweeplab's error
    (handle_errors) instead of a traceback from the MLflow server's start-up."""
    from sweeplab.cli._common import quiet_libraries

    quiet_libraries()
    from mlflow import MlflowClient

    MlflowClient(tracking_uri).search_experiments(max_results=1)


def _plain_env() -> dict[str, str]:
    """The environment MLflow's server starts in: without its job runner (a process that
    runs GenAI scorers and trace roll-ups, which sweeplab's runs have none of) unless the
    user turned it on, so the UI starts one Python process fewer."""
    import os

    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def _auth_env(root: Path) -> dict[str, str]:
    """Environment for MLflow's basic-auth app: its users beside the store, a CSRF key.

    MLflow reads its auth settings from an ini file; sweeplab writes one into the store
    (unless MLFLOW_AUTH_CONFIG_PATH names the user's own) so users live with the runs.
    """
    import secrets

    env = _plain_env()
    if "MLFLOW_AUTH_CONFIG_PATH" not in env:
        config = root / "basic_auth.ini"
        if not (root / "basic_auth.db").is_file() and not env.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
            raise fail(
                "--auth: set MLFLOW_AUTH_ADMIN_PASSWORD for the first start; it becomes the "
                "password of user admin (change it later through MLflow's API)",
                2,
            )
        config.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
            "admin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
    return env
