"""sweeplab serve NAME@ALIAS | NAME/VERSION: a REST service of a registered model."""

from __future__ import annotations

from pathlib import Path

import typer

from sweeplab.cli._common import (
    STORE,
    TRACKING_URI,
    err,
    fail,
    handle_errors,
    quiet_libraries,
    tracking_store,
)

MIN_TOKEN = 16  # characters: a token short enough to guess is refused


@handle_errors
def serve(
    model: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or NAME/latest."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(5001, "--port", min=0, max=65535, help="Port to listen on."),
    follow_alias: bool = typer.Option(
        False, "--follow-alias", help="Reload when the alias moves to another version."
    ),
    poll_seconds: float = typer.Option(
        10.0, "--poll-seconds", min=0.1, help="How often --follow-alias asks the registry."
    ),
    max_batch: int = typer.Option(
        1024, "--max-batch", min=1, help="Most rows per request, and per batched model call."
    ),
    batching: bool = typer.Option(
        True,
        "--batch/--no-batch",
        help="Requests that arrive while the model is busy go to it in one call.",
    ),
    allowed_hosts: str = typer.Option(
        "",
        "--allowed-hosts",
        help="Comma-separated Host headers to accept besides localhost ('*': any).",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="SWEEPLAB_SERVE_TOKEN",
        show_envvar=True,
        help="Answer /predict and /metadata only with 'Authorization: Bearer TOKEN' (401 "
        "otherwise); the environment variable keeps it out of the process list.",
    ),
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
) -> None:
    """Serve a registered model: POST /predict, GET /health, GET /metadata (Ctrl-C to stop)."""
    from sweeplab.registry.models import ModelRef

    try:
        ref = ModelRef.parse(model)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    if follow_alias and ref.alias is None:
        raise fail(f"--follow-alias needs NAME@ALIAS, but got {model!r}", 2)
    if token is not None and len(token.strip()) < MIN_TOKEN:
        raise fail(f"--token must be at least {MIN_TOKEN} characters, but got {len(token)}", 2)
    where = tracking_store(store, tracking_uri)
    from sweeplab.cli._processes import bind

    sock = bind(host, port)  # a port that is taken: one line, before the model loads
    quiet_libraries()
    import threading

    import uvicorn

    from sweeplab.serving.app import LOOPBACK, create_app
    from sweeplab.serving.holder import Loaded, ModelHolder

    said: list[str] = []  # the last reload error: each new one is printed once, not per poll

    def swapped(loaded: Loaded) -> None:
        said.clear()
        err.print(f"{ref} moved: now serving version {loaded.version}")

    def reload_failed(exc: Exception) -> None:
        message = str(exc.args[0] if isinstance(exc, LookupError) and exc.args else exc)
        if said[-1:] != [message]:
            said.append(message)
            err.print(
                f"warning: could not reload {ref} ({message}); still serving version "
                f"{holder.current.version}"
            )

    holder = ModelHolder(where.tracking_uri, ref, on_swap=swapped)
    hosts = [*LOOPBACK, host, *(h.strip() for h in allowed_hosts.split(",") if h.strip())]
    if host not in LOOPBACK and token is None:
        _warn_unauthenticated(host)
    app = create_app(
        holder, max_batch=max_batch, allowed_hosts=hosts, token=token, batching=batching
    )
    stop = threading.Event()
    if follow_alias:
        holder.follow(poll_seconds, stop, on_error=reload_failed)
    err.print(
        f"serving {ref} (version {holder.current.version}) on http://{host}:{port} "
        f"— POST /predict, GET /health, GET /metadata"
        f"{' (with the bearer token)' if token else ''} (Ctrl-C to stop)"
    )
    try:  # on the socket bound above: no other process can take the port meanwhile
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        stop.set()
        sock.close()


def _warn_unauthenticated(host: str) -> None:
    err.print(
        f"warning: serving on {host} with no authentication; anyone who can reach it "
        "can call /predict. Give a --token (or SWEEPLAB_SERVE_TOKEN), or put it behind "
        "a proxy that authenticates, and list the Host names clients use in "
        "--allowed-hosts."
    )
