"""Read a sweep's state back from the Optuna storage (for ``sweeplab status``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sweeplab.search import ranking
from sweeplab.search.results import SweepResult, Trial, Yardstick
from sweeplab.search.states import Counts, SweepState
from sweeplab.search.storage import open_storage, study_names
from sweeplab.search.sweep import Sweep
from sweeplab.spec import Experiment
from sweeplab.store import Store


@dataclass(frozen=True, kw_only=True)
class SweepStatus:
    """A sweep's state, counts and best trial, with one row per trial (``rows``)."""

    name: str
    metric: str
    trials: int  # the trials it runs to
    state: SweepState
    counts: Counts
    best_number: int | None = None
    best_value: float | None = None
    rows: list[Trial] = field(default_factory=list)  # its own and its prior trials
    trade_offs: list[str] = field(default_factory=list)  # the other objectives' metrics
    front: list[int] = field(default_factory=list)  # a multi-objective sweep's Pareto front
    stop_reason: str | None = None
    warm_start: str | None = None
    tied: list[Trial] = field(default_factory=list)  # within one example of the best
    yardstick: Yardstick | None = None  # read with its rows: the best on test, the baselines


def _report(sweep: Sweep, rows: list[Trial]) -> SweepStatus:
    exp = sweep.exp
    best = sweep.best_trial
    return SweepStatus(
        name=sweep.name,
        metric=exp.objective.metric,
        trials=sweep.target,
        state=sweep.state,
        counts=sweep.counts,
        best_number=None if best is None else best.number,
        best_value=None if best is None else best.value,
        rows=rows,
        trade_offs=[o.metric for o in exp.trade_offs],
        front=[t.number for t in sweep.front()] if exp.trade_offs and best else [],
        stop_reason=sweep.stop_reason,
        warm_start=sweep.warm_start,
        tied=[sweep.trial(t) for t in ranking.tied(sweep.study)] if rows else [],
        yardstick=sweep.yardstick(best) if rows else None,
    )


def sweep_status(store: Store, name: str) -> SweepStatus:
    """A sweep's counts, best trial, and one row per trial (prior trials marked)."""
    sweep = Sweep.open(store, name)
    rows = sorted([*sweep.prior_trials, *sweep.trials], key=lambda t: t.number)
    return _report(sweep, rows)


def list_sweeps(store: Store) -> list[SweepStatus]:
    """Every sweep in the storage, with counts and best value (no trial rows)."""
    storage = open_storage(store.storage_url)
    return [
        _report(Sweep.open(store, name, storage=storage), rows=[]) for name in study_names(storage)
    ]


def read_result(store: Store, name: str) -> tuple[Experiment, SweepResult]:
    """Sweep ``name`` read back as ``run_sweep`` returned it (best trial, its run, parent)."""
    sweep = Sweep.open(store, name)
    return sweep.exp, sweep.result()
