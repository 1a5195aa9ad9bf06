"""Read a sweep's state back from the Optuna storage (for ``sweeplab status``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweeplab.search.keys import (
    ATTR_EPOCHS,
    ATTR_REASON,
    ATTR_RETRIED,
    ATTR_RUN,
    ATTR_SAME_AS,
    ATTR_STD,
)
from sweeplab.search.study import (
    STATE_NAMES,
    SweepResult,
    best_of,
    counts,
    decoded_params,
    first_value,
    front,
    load_study,
    open_storage,
    open_study,
    study_names,
    sweep_result,
)
from sweeplab.spec import Experiment
from sweeplab.store import Store


@dataclass
class TrialRow:
    number: int
    state: str
    value: float | None
    epochs: int | None
    seconds: float | None
    params: dict[str, Any]
    reason: str | None
    run_id: str | None = None  # the trial's MLflow run
    trade_offs: list[float] = field(default_factory=list)  # the other objectives' values
    std: float | None = None  # the spread of its fits' values, when it had several


@dataclass
class SweepStatus:
    name: str
    metric: str
    trials: int  # requested
    counts: dict[str, int]
    best_number: int | None = None
    best_value: float | None = None
    rows: list[TrialRow] = field(default_factory=list)
    trade_offs: list[str] = field(default_factory=list)  # the other objectives' metrics
    front: list[int] = field(default_factory=list)  # a multi-objective sweep's Pareto front


def _report(study: optuna.Study, exp: Experiment, rows: list[TrialRow]) -> SweepStatus:
    report = SweepStatus(
        study.study_name, exp.objective.metric, exp.sweep.trials, counts(study), rows=rows
    )
    report.trade_offs = [o.metric for o in exp.trade_offs]
    best = best_of(study)
    if best is not None:
        report.best_number = best.number
        report.best_value = first_value(best)
        if exp.trade_offs:
            report.front = [t.number for t in front(study)]
    return report


def sweep_status(store: Store, name: str) -> SweepStatus:
    """A sweep's counts, best trial, and one row per trial."""
    study, exp, _ = load_study(store, name)
    return _report(study, exp, trial_rows(study, exp))


def trial_rows(study: optuna.Study, exp: Experiment) -> list[TrialRow]:
    """One row per trial. Epochs: as recorded, or the last reported epoch of a trial that
    did not complete (pruned, failed, running)."""
    space = exp.space
    rows = []
    for t in study.get_trials(deepcopy=False):
        epochs = t.user_attrs.get(ATTR_EPOCHS)
        if epochs is None and t.last_step is not None:
            epochs = t.last_step + 1
        rows.append(
            TrialRow(
                t.number,
                STATE_NAMES[t.state],
                first_value(t),
                epochs,
                t.duration.total_seconds() if t.duration else None,
                decoded_params(space, t),
                _reason(t),
                t.user_attrs.get(ATTR_RUN),
                list(t.values[1:]) if t.values else [],
                t.user_attrs.get(ATTR_STD),
            )
        )
    return rows


def _reason(t: FrozenTrial) -> str | None:
    """Why it failed (and its retry), or that the sampler drew its params before."""
    reason = t.user_attrs.get(ATTR_REASON)
    notes = [] if reason is None else [str(reason)]
    if ATTR_RETRIED in t.user_attrs:
        notes = [f"{reason} (retried as #{t.user_attrs[ATTR_RETRIED]})"]
    if ATTR_SAME_AS in t.user_attrs:
        notes.append(f"same params as #{t.user_attrs[ATTR_SAME_AS]}, drawn again by the sampler")
    return "; ".join(notes) or None


def list_sweeps(store: Store) -> list[SweepStatus]:
    """Every sweep in the storage, with counts and best value (no trial rows)."""
    storage = open_storage(store.storage_url)
    return [_report(*open_study(storage, name), rows=[]) for name in study_names(storage)]


def read_result(store: Store, name: str) -> tuple[Experiment, SweepResult]:
    """Sweep ``name`` read back as ``run_sweep`` returned it (best trial, its run, parent)."""
    study, exp, _ = load_study(store, name)
    return exp, sweep_result(study, exp, store)
