"""sweeplab resume / sweeplab agent: continue a sweep, or join it from another process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sweeplab.cli._common import (
    ADDRESS,
    GPUS,
    QUIET,
    STORAGE,
    STORE,
    TRACKING_URI,
    WORKERS,
    fail,
    gpu_ids,
    handle_errors,
    out,
    quiet_libraries,
    ray_address,
)


def _continue(
    name: str,
    store: Path | None,
    tracking_uri: str | None,
    storage: str | None,
    quiet: bool,
    address: str | None = None,
    options: Any = None,
) -> None:
    from sweeplab.cli._common import open_store
    from sweeplab.cli.sweep import run_and_report

    where = open_store(store, tracking_uri, storage)
    if not where.storage_exists():
        raise fail(f"no sweeps yet: {where.storage_url} does not exist")
    where.check_writable()
    quiet_libraries(training=True)
    from sweeplab.search import continue_sweep, read_result

    exp, before = read_result(where, name)
    c = before.counts
    if c["complete"] + c["pruned"] + c["failed"] >= exp.sweep.trials and not c["running"]:
        out.print(f"sweep {name} has all its {exp.sweep.trials} trials; nothing to run")
    run_and_report(
        exp.sweep.trials,
        exp.objective.metric,
        quiet,
        lambda cb: continue_sweep(
            where, name, on_trial=cb, address=ray_address(address), options=options
        ),
    )


@handle_errors
def resume(
    name: str = typer.Argument(..., help="Sweep name (see sweeplab status)."),
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
    quiet: bool = QUIET,
    address: str | None = ADDRESS,
    workers: int = WORKERS,
    gpus: str | None = GPUS,
) -> None:
    """Continue a sweep after a crash, kill -9 or Ctrl-C: the dead workers' trials are
    marked failed and their configurations queued again, finished trials are kept, and
    the sweep runs to its trial count (a Ray sweep, on Ray)."""
    from sweeplab.search import LocalWorkers

    options = LocalWorkers(workers, gpu_ids(gpus))  # continue_sweep checks them
    _continue(name, store, tracking_uri, storage, quiet, address, options)


@handle_errors
def agent(
    name: str = typer.Argument(..., help="Sweep name, created by sweeplab sweep."),
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
    quiet: bool = QUIET,
    gpus: str | None = typer.Option(
        None, "--gpus", metavar="IDS", help="CUDA devices this agent trains on, e.g. 1."
    ),
) -> None:
    """Join a running sweep as one more worker (shared PostgreSQL storage): agents
    together run exactly the sweep's trial count."""
    import os

    from sweeplab.cli._common import open_store

    ids = gpu_ids(gpus)
    if ids is not None:  # before torch is imported: it reads the variable once
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)

    where = open_store(store, tracking_uri, storage)
    if where.storage_url.startswith("sqlite"):
        raise fail(
            f"agents share a study through a database server, not the SQLite file "
            f"{where.storage_url}: start the sweep with --storage postgresql+psycopg2://"
            "user@host:5432/db (and a shared --tracking-uri), then run agents with the same "
            "options. On one machine, sweeplab resume continues a sweep in one process.",
            2,
        )
    _continue(name, store, tracking_uri, storage, quiet)
