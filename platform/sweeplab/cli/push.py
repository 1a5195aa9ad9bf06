"""sweeplab push: copy a finished sweep to another store (the team's server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sweeplab.cli._common import (
    QUIET,
    STORAGE,
    STORE,
    TRACKING_URI,
    err,
    fail,
    handle_errors,
    is_tty,
    out,
    quiet_libraries,
)


@handle_errors
def push(
    name: str = typer.Argument(..., help="Sweep name (see sweeplab status)."),
    to_tracking_uri: str | None = typer.Option(
        None,
        "--to-tracking-uri",
        help="MLflow tracking URI to push to, e.g. http://mlflow.team:5000 "
        "[default: SQLite in --to-store].",
    ),
    to_storage: str | None = typer.Option(
        None,
        "--to-storage",
        help="Optuna storage to push to, e.g. postgresql+psycopg2://user@host:5432/optuna "
        "[default: SQLite in --to-store].",
    ),
    to_store: Path | None = typer.Option(
        None,
        "--to-store",
        help="Store folder to push to, for the defaults of the two above.",
    ),
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
    quiet: bool = QUIET,
) -> None:
    """Copy a finished sweep to another store: its study with every trial, its parent,
    trial and restart runs with whole metric histories and artifacts, and its registered
    versions with aliases and promotion history. Run again, it copies only what is
    missing (a push cut short finishes); a sweep with running trials is refused."""
    from sweeplab.cli._common import open_store

    if to_tracking_uri is None and to_storage is None and to_store is None:
        raise fail(
            "say where to push: --to-tracking-uri and --to-storage (a team's server), or "
            "--to-store (another store folder)",
            2,
        )
    target = _target(to_store, to_tracking_uri, to_storage)
    source = open_store(store, tracking_uri, storage)
    if not source.storage_exists():
        raise fail(f"no sweeps yet: {source.storage_url} does not exist")
    if (target.tracking_uri, target.storage_url) == (source.tracking_uri, source.storage_url):
        raise fail("the target is the store the sweep is in; nothing to push", 2)
    target.verify(creating=True)
    quiet_libraries()
    from sweeplab.search import PushRefused, push_sweep

    try:
        result = push_sweep(source, name, target, _progress(quiet))
    except PushRefused as exc:
        raise fail(str(exc)) from None
    _summary(result, target)


def _target(folder: Path | None, tracking_uri: str | None, storage: str | None) -> Any:
    """The store the options name (no environment variable: those name the source)."""
    from sweeplab.store import Store

    if folder is None and not (tracking_uri and storage):
        raise fail(
            "--to-tracking-uri and --to-storage go together without --to-store (the other "
            "part would land in a folder nobody named)",
            2,
        )
    if folder is None and not str(tracking_uri).startswith(("http://", "https://")):
        raise fail(
            f"--to-tracking-uri {tracking_uri} is a database, not a server: name the folder "
            "for the artifacts with --to-store",
            2,
        )
    root = Path(folder or ".").absolute()
    return Store(
        root,
        tracking_uri or f"sqlite:///{root / 'mlflow.db'}",
        storage or f"sqlite:///{root / 'optuna.db'}",
    )


def _progress(quiet: bool) -> Any:
    """A line per stage (and per 10 runs) on stderr, unless --quiet."""
    shown: dict[str, int] = {}

    def show(stage: str, done: int, total: int) -> None:
        if quiet:
            return
        step = 1 if is_tty() else 10
        last = shown.get(stage)
        if done in (0, total) or last is None or done - last >= step:
            if shown.get(stage) != done:
                err.print(f"{stage}: {done}/{total}")
            shown[stage] = done

    return show


def _summary(result: Any, target: Any) -> None:
    r = result.runs
    out.print(
        f"pushed sweep {result.name} to {target.tracking_uri} and {target.storage_url}:\n"
        f"  runs: {r.copied} copied, {r.kept} already there"
        + (f", {r.redone} half-written ones made again" if r.redone else "")
        + f"\n  trials: {result.trials} ({result.study})"
        + f"\n  model versions: {result.versions} copied, {result.versions_kept} already there"
    )
    for ref, version in sorted(result.aliases.items()):
        out.print(f"  alias {ref} -> version {version}")
    for left in result.aliases_left:
        out.print(f"  alias {left} left as it is: the target promoted its own version")
