"""Compare sweeps: one ranked table of their trials (``analysis.plots`` draws them).

Rows come from the Optuna storage (state, value, spread, params, epochs, duration)
joined with each trial's MLflow run (parameter count), read in bulk: the study's
trials at once, the sweep's runs page by page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sweeplab.search.keys import TAG_SWEEP
from sweeplab.search.ranking import Standing, ordered
from sweeplab.search.results import Comparison, Row
from sweeplab.search.states import TrialState
from sweeplab.search.sweep import Sweep
from sweeplab.spec import InputError
from sweeplab.store import Store

__all__ = [
    "CompareError",
    "Comparison",
    "Row",
    "compare",
    "ranked",
    "same_objective",
    "same_split",
]

STATE_ORDER = (
    TrialState.COMPLETE,
    TrialState.PRUNED,
    TrialState.RUNNING,
    TrialState.WAITING,
    TrialState.FAILED,
)


class CompareError(InputError):
    """The sweeps cannot be compared (another objective)."""


# What a data section may change without changing the examples a trial is scored on
NOT_THE_SPLIT = frozenset({"view", "download", "label_fraction", "augment", "memory_mb", "workers"})


def compare(
    store: Store, names: list[str], *, force: bool = False
) -> tuple[Comparison, list[Sweep]]:
    """The ranked rows of sweeps ``names`` (complete trials by value, then the others).
    Sweeps of one objective only; of one dataset and split too, unless ``force``."""
    sweeps = [Sweep.open(store, name) for name in dict.fromkeys(names)]
    same_objective(sweeps)
    if not force:
        same_split(sweeps)
    return ranked(sweeps), sweeps


def same_split(sweeps: Sequence[Sweep]) -> None:
    """CompareError unless every sweep was scored on the first one's dataset and split
    (its ``data`` section, but for what changes only how a model sees an example)."""

    def split(s: Sweep) -> dict[str, object]:
        data = s.exp.data.model_dump(mode="json")
        return {k: v for k, v in data.items() if k not in NOT_THE_SPLIT}

    first = split(sweeps[0])
    for s in sweeps[1:]:
        other = split(s)
        differ = [k for k in first if first[k] != other.get(k)]
        if differ:
            what = ", ".join(f"data.{k} {other[k]!r} (not {first[k]!r})" for k in differ)
            raise CompareError(
                f"sweep {s.name!r} does not share {sweeps[0].name!r}'s dataset and split "
                f"({what}): their scores are not comparable; --force ranks them anyway"
            )


def same_objective(sweeps: Sequence[Sweep]) -> None:
    """CompareError unless every sweep optimizes the first one's objective."""
    first = sweeps[0].exp.objective
    for s in sweeps[1:]:
        objective = s.exp.objective
        if (objective.metric, objective.mode) != (first.metric, first.mode):
            raise CompareError(
                f"sweep {s.name!r} optimizes {objective.metric} ({objective.mode}), but "
                f"{sweeps[0].name!r} optimizes {first.metric} ({first.mode}): only sweeps of "
                "the same objective can be compared"
            )


def ranked(sweeps: list[Sweep]) -> Comparison:
    """The rows of ``sweeps`` (of one objective), ranked; prior trials are shown, never
    ranked."""
    metric, mode = sweeps[0].exp.objective.metric, sweeps[0].exp.objective.mode
    rows = [row for s in sweeps for row in _rows(s)]
    sign = -1.0 if mode == "max" else 1.0

    def key(row: Row) -> tuple[bool, int, float, str, int]:
        value = sign * row.value if row.value is not None else math.inf
        state = STATE_ORDER.index(TrialState(row.state))
        return (row.prior is not None, state, value, row.sweep, row.trial)

    def standing(row: Row) -> Standing:
        value = row.value if row.value is not None else math.nan
        return Standing(value, row.resolution, row.tie_loss, (row.sweep, row.trial))

    ranks = [r for r in rows if r.state == TrialState.COMPLETE and r.prior is None]
    ranks = ordered(ranks, sign=-sign, standing=standing)  # the sweeps' own tie rule
    for rank, row in enumerate(ranks, start=1):
        row.rank = rank
    rest = sorted((r for r in rows if r.rank is None), key=key)
    yardsticks = [y for y in (s.yardstick(s.best_trial) for s in sweeps) if y.baselines]
    return Comparison(
        metric=metric,
        mode=mode,
        sweeps=[s.name for s in sweeps],
        rows=ranks + rest,
        yardsticks=yardsticks,
    )


def _rows(sweep: Sweep) -> list[Row]:
    """The sweep's trial rows (as ``sweeplab status`` reads them) with each run's
    parameter count from MLflow."""
    runs = sweep.tracker.search(f"tags.`{TAG_SWEEP}` = '{sweep.name}'")  # restart runs too
    counts = {r.info.run_id: r.data.metrics.get("param_count") for r in runs}
    names = [o.metric for o in sweep.exp.trade_offs]
    on_front = {t.number for t in sweep.front()} if names else set()
    rows = []
    for t in [*sweep.trials, *sweep.prior_trials]:
        param_count = counts.get(t.run_id) if t.run_id else None
        rows.append(
            Row(
                sweep=sweep.name,
                trial=t.number,
                state=t.state.value,
                value=t.value,
                params=t.params,
                epochs=t.epochs,
                seconds=t.seconds,
                param_count=int(param_count) if param_count is not None else None,
                run_id=t.run_id,
                std=t.spread,
                trade_offs=dict(zip(names, t.trade_offs, strict=False)),
                front=(t.number in on_front) if names else None,
                prior=t.prior,
                resolution=t.resolution,
                tie_loss=t.tie_loss,
                peak_rss_mb=t.peak_rss_mb,
                peak_gpu_mb=t.peak_gpu_mb,
            )
        )
    return rows
