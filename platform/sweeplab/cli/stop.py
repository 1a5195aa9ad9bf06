"""sweeplab stop: end a sweep from any terminal or host."""

from __future__ import annotations

from pathlib import Path

import typer

from sweeplab.cli._common import (
    STORAGE,
    STORE,
    TRACKING_URI,
    fail,
    handle_errors,
    open_store,
    out,
    quiet_libraries,
)


@handle_errors
def stop(
    name: str = typer.Argument(..., help="Sweep name (see sweeplab status)."),
    now: bool = typer.Option(
        False,
        "--now",
        help="Interrupt the running trials too (within seconds); their configurations are "
        "queued again for sweeplab resume.",
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Return once the running trials have ended and the sweep is."
    ),
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
) -> None:
    """End a sweep: its workers, on every host, start no new trial and exit once their
    running trials finish (--now: once they are interrupted); agents exit. The last
    worker finishes the sweep (its best model registered), as this command does at once
    when no trial is running. sweeplab resume continues a stopped sweep."""
    where = open_store(store, tracking_uri, storage)
    if not where.storage_exists():
        raise fail(f"no sweeps yet: {where.storage_url} does not exist")
    quiet_libraries()
    from sweeplab.search import SweepState, stop_sweep

    result = stop_sweep(where, name, now=now, wait=wait)
    c = result.counts
    if result.state is SweepState.STOPPED:
        out.print(f"sweep {name} stopped: {c.finished} trials ({c.complete} complete)")
        if c.waiting:
            out.print(f"{c.waiting} interrupted trial(s) queued: sweeplab resume {name} runs them")
        return
    how = "are interrupted" if now else "finish"
    out.print(
        f"sweep {name} is stopping: its {c.running} running trial(s) {how}, then its "
        "workers exit and the last one finishes the sweep (sweeplab status shows it)"
    )
