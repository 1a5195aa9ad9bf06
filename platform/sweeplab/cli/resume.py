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
    UI_URL,
    WORKERS,
    fail,
    gpu_ids,
    handle_errors,
    out,
    quiet_libraries,
    ray_address,
    use_ui_url,
)


def _continue(
    name: str,
    store: Path | None,
    tracking_uri: str | None,
    storage: str | None,
    quiet: bool,
    *,
    join: bool,
    address: str | None = None,
    options: Any = None,
    trials: int | None = None,
) -> None:
    from sweeplab.cli._common import open_store
    from sweeplab.cli.sweep import run_and_report

    where = open_store(store, tracking_uri, storage, creating=join)  # join: see agent
    if not where.storage_exists():
        raise fail(f"no sweeps yet: {where.storage_url} does not exist")
    where.check_writable()
    quiet_libraries(training=True)
    from sweeplab.search import continue_sweep, load_sweep

    sweep = load_sweep(name, store=where)
    state, counts, target = sweep.state, sweep.counts, sweep.target
    if join and (state.finished or state.asks_no_trials):
        # an agent of a sweep that is done, or stopping, has nothing to do
        out.print(
            f"sweep {name} is {state.value} ({counts.taken} of {target} trials): nothing to run"
        )
        return
    if trials is None and counts.taken >= target and not counts.running and not counts.waiting:
        if state.finished:  # one line: its summary was printed when it finished
            out.print(f"sweep {name} is {state.value} with all its {target} trials: nothing to run")
            return
        out.print(f"sweep {name} has all its {target} trials; finishing it")
    run_and_report(
        target if trials is None else counts.taken + trials,
        sweep.exp.objective.metric,
        quiet,
        lambda cb: continue_sweep(
            where, name, on_trial=cb, address=ray_address(address), options=options, trials=trials
        ),
    )


@handle_errors
def resume(
    name: str = typer.Argument(..., help="Sweep name (see sweeplab status)."),
    store: Path | None = STORE,
    ui_url: str | None = UI_URL,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
    quiet: bool = QUIET,
    address: str | None = ADDRESS,
    workers: int = WORKERS,
    gpus: str | None = GPUS,
    trials: int | None = typer.Option(
        None,
        "--trials",
        "-n",
        min=1,
        help="Run this many trials more than the sweep holds (a finished sweep too; the "
        "sampler learns from every earlier trial) [default: on to its trial count].",
    ),
) -> None:
    """Continue a sweep after a crash, kill -9, Ctrl-C or sweeplab stop: the dead workers'
    trials are marked failed and their configurations queued again, finished trials are
    kept, and the sweep runs to its trial count (a Ray sweep, on Ray); --trials N adds N
    trials, also to a finished sweep."""
    from sweeplab.search import LocalWorkers

    use_ui_url(ui_url)  # the report's links, drawn when the sweep ends
    # only what was asked for: another backend's sweep refuses them, rather than drop them
    given = workers != 1 or gpus is not None
    from sweeplab.search.optuna_backend.prestart import prestarted

    # spawned workers import torch and the rest beside this process's own imports
    with prestarted(LocalWorkers(workers, gpu_ids(gpus)) if given else None) as options:
        _continue(
            name,
            store,
            tracking_uri,
            storage,
            quiet,
            join=False,
            address=address,
            options=options,
            trials=trials,
        )


@handle_errors
def agent(
    name: str = typer.Argument(..., help="Sweep name, created by sweeplab sweep."),
    store: Path | None = STORE,
    ui_url: str | None = UI_URL,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
    quiet: bool = QUIET,
    gpus: str | None = typer.Option(
        None, "--gpus", metavar="IDS", help="CUDA devices this agent trains on, e.g. 1."
    ),
) -> None:
    """Join a running sweep as one more worker (shared PostgreSQL storage): agents
    together run exactly the sweep's trial count. An agent of a sweep that is done, or
    stopped, exits 0 with one line."""
    import os

    from sweeplab.cli._common import open_store

    ids = gpu_ids(gpus)
    if ids is not None:  # before torch is imported: it reads the variable once
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)

    # creating: an agent started beside its sweep may find the tracking database that
    # the sweep is creating at this moment still empty (0 bytes); the agent creates the
    # tables as the sweep would, had it not yet started
    where = open_store(store, tracking_uri, storage, creating=True)
    use_ui_url(ui_url)  # the report's links, if this agent ends the sweep
    if where.storage_url.startswith("sqlite"):
        raise fail(
            f"agents share a study through a database server, not the SQLite file "
            f"{where.storage_url}: start the sweep with --storage postgresql+psycopg2://"
            "user@host:5432/db (and a shared --tracking-uri), then run agents with the same "
            "options. On one machine, sweeplab resume continues a sweep in one process.",
            2,
        )
    _continue(name, store, tracking_uri, storage, quiet, join=True)
