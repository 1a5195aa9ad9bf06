"""Read a sweep's state back from the Optuna storage (for ``sweeplab status``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeplab.search.optuna_backend import (
    ATTR_REASON,
    ATTR_SPEC,
    STATE_NAMES,
    counts,
    open_storage,
    study_names,
)
from sweeplab.search.sweep import decoded_params
from sweeplab.spec import Experiment
from sweeplab.spec._errors import did_you_mean
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


@dataclass
class SweepStatus:
    name: str
    metric: str
    trials: int  # requested
    counts: dict[str, int]
    best_number: int | None = None
    best_value: float | None = None
    rows: list[TrialRow] = field(default_factory=list)


def load_study(store: Store, name: str) -> tuple[optuna.Study, Experiment]:
    """The study of sweep ``name`` and its spec; LookupError naming the sweeps that exist."""
    storage = open_storage(store.storage_url)
    names = study_names(storage)
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise LookupError(
            f"no sweep named '{name}'{did_you_mean(name, names)} in "
            f"{store.storage_url}; sweeps: {known}"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    exp = Experiment.model_validate(json.loads(study.user_attrs[ATTR_SPEC]))
    return study, exp


def sweep_status(store: Store, name: str) -> SweepStatus:
    study, exp = load_study(store, name)
    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        state = STATE_NAMES[t.state]
        seconds = t.duration.total_seconds() if t.duration else None
        epochs = t.user_attrs.get("epochs")
        if epochs is None and t.state == TrialState.PRUNED and t.last_step is not None:
            epochs = t.last_step + 1
        rows.append(
            TrialRow(
                t.number,
                state,
                t.value,
                epochs,
                seconds,
                decoded_params(exp, t),
                t.user_attrs.get(ATTR_REASON),
            )
        )
    report = SweepStatus(name, exp.objective.metric, exp.sweep.trials, counts(study), rows=rows)
    if report.counts["complete"]:
        report.best_number = study.best_trial.number
        report.best_value = study.best_value
    return report


def list_sweeps(store: Store) -> list[SweepStatus]:
    storage = open_storage(store.storage_url)
    reports = []
    for summary in storage.get_all_studies():
        report = sweep_status(store, summary.study_name)
        report.rows = []
        reports.append(report)
    return reports
