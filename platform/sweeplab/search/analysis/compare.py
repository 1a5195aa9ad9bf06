"""Compare sweeps: one ranked table of their trials (``analysis.plots`` draws them).

Rows come from the Optuna storage (state, value, spread, params, epochs, duration)
joined with each trial's MLflow run (parameter count), read in bulk: the study's
trials at once, the sweep's runs page by page.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from sweeplab.search.analysis.status import trial_rows
from sweeplab.search.keys import ATTR_PARENT, TAG_SWEEP
from sweeplab.search.study import front, load_study
from sweeplab.spec import Experiment, InputError
from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker

STATE_ORDER = ("complete", "pruned", "running", "waiting", "failed")


class CompareError(InputError):
    """The sweeps cannot be compared (another objective)."""


@dataclass
class Row:
    sweep: str
    trial: int
    state: str
    value: float | None
    params: dict[str, Any]
    epochs: int | None
    seconds: float | None
    param_count: int | None
    run_id: str | None
    rank: int | None = None
    std: float | None = None  # the spread of its fits' values (restarts, folds)
    trade_offs: dict[str, float] = field(default_factory=dict)  # the other objectives
    front: bool | None = None  # on a multi-objective sweep's Pareto front (None: one)


@dataclass
class Comparison:
    metric: str
    mode: str
    sweeps: list[str]
    rows: list[Row]
    plots: list[Path] = field(default_factory=list)
    report: Path | None = None  # the HTML report, also in each sweep's parent run
    reused: bool = False  # the plots and report were current: not drawn again
    skipped: list[str] = field(default_factory=list)  # plots that could not be drawn, and why

    @property
    def param_keys(self) -> list[str]:
        return list(dict.fromkeys(k for row in self.rows for k in row.params))

    def records(self) -> list[dict[str, Any]]:
        return [asdict(row) for row in self.rows]


@dataclass
class SweepView:
    """One compared sweep: its study, spec, parent run and MLflow experiment."""

    name: str
    study: optuna.Study
    parent: str
    tracker: Tracker
    exp: Experiment


def compare(store: Store, names: list[str]) -> tuple[Comparison, list[SweepView]]:
    """The ranked rows of sweeps ``names`` (complete trials by value, then the others)."""
    sweeps: list[SweepView] = []
    for name in dict.fromkeys(names):
        study, exp, _ = load_study(store, name)
        objective = (exp.objective.metric, exp.objective.mode)
        first = sweeps[0].exp.objective if sweeps else None
        if first is not None and objective != (first.metric, first.mode):
            raise CompareError(
                f"sweep {name!r} optimizes {objective[0]} ({objective[1]}), but "
                f"{sweeps[0].name!r} optimizes {first.metric} ({first.mode}): only sweeps of "
                "the same objective can be compared"
            )
        tracker = Tracker(store, exp.experiment_name)
        parent = str(study.user_attrs.get(ATTR_PARENT, ""))
        sweeps.append(SweepView(name, study, parent, tracker, exp))
    return ranked(sweeps), sweeps


def ranked(sweeps: list[SweepView]) -> Comparison:
    """The rows of ``sweeps`` (of one objective), ranked."""
    metric, mode = sweeps[0].exp.objective.metric, sweeps[0].exp.objective.mode
    rows = [row for s in sweeps for row in _rows(s.name, s.study, s.exp, s.tracker)]
    sign = -1.0 if mode == "max" else 1.0

    def key(row: Row) -> tuple[int, float, str, int]:
        value = sign * row.value if row.value is not None else math.inf
        return (STATE_ORDER.index(row.state), value, row.sweep, row.trial)

    rows.sort(key=key)
    for rank, row in enumerate((r for r in rows if r.state == "complete"), start=1):
        row.rank = rank
    return Comparison(metric, mode, [s.name for s in sweeps], rows)


def _rows(name: str, study: optuna.Study, exp: Experiment, tracker: Tracker) -> list[Row]:
    """The sweep's trial rows (as ``sweeplab status`` reads them) with each run's
    parameter count from MLflow."""
    runs = tracker.search(f"tags.`{TAG_SWEEP}` = '{name}'")  # restart runs too: all pages
    counts = {r.info.run_id: r.data.metrics.get("param_count") for r in runs}
    names = [o.metric for o in exp.trade_offs]
    on_front = {t.number for t in front(study)} if names else set()
    rows = []
    for t in trial_rows(study, exp):
        param_count = counts.get(t.run_id)
        rows.append(
            Row(
                name,
                t.number,
                t.state,
                t.value,
                t.params,
                t.epochs,
                t.seconds,
                int(param_count) if param_count is not None else None,
                t.run_id,
                std=t.std,
                trade_offs=dict(zip(names, t.trade_offs, strict=False)),
                front=(t.number in on_front) if names else None,
            )
        )
    return rows
