"""A trial's fits taken together: which it has (folds × restarts), its value from
theirs, and their curves' mean and spread per epoch.

    members        (label, fold, restart) of each fit
    trial_value    restarts aggregated within each fold (``sweep.restart_aggregate``),
                   then the folds' mean
    spread         each curve's mean and standard deviation over the fits, per epoch:
                   the trial run's ``<metric>`` and ``<metric>_std`` history
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence

from mlflow.entities import Metric

from sweeplab.spec import Experiment

Curves = Mapping[str, Mapping[int, float]]  # a fit's curves: key → epoch → value


def members(exp: Experiment) -> list[tuple[str, int, int]]:
    """The fits of one trial: (label, fold, restart) for each fold and restart."""
    folds, restarts = exp.data.folds, exp.sweep.restarts
    out = []
    for fold in range(folds):
        for restart in range(restarts):
            parts = ([f"fold-{fold}"] if folds > 1 else []) + (
                [f"restart-{restart}"] if restarts > 1 else []
            )
            out.append(("-".join(parts), fold, restart))
    return out


def fold_groups(exp: Experiment) -> list[tuple[int, list[tuple[int, str, int]]]]:
    """Each fold with its restarts as (index among the fits, label, restart)."""
    groups: dict[int, list[tuple[int, str, int]]] = {}
    for index, (label, fold, restart) in enumerate(members(exp)):
        groups.setdefault(fold, []).append((index, label, restart))
    return sorted(groups.items())


def aggregate(values: Sequence[float], how: str, mode: str, z: float = 1.0) -> float:
    """``best``, ``mean``, or the mean less (``lcb``) or plus (``ucb``) ``z`` standard
    errors (the sample standard deviation over the square root of the count): a
    configuration that one lucky seed carried ranks below a steady one."""
    if how == "best":
        return max(values) if mode == "max" else min(values)
    mean = statistics.fmean(values)
    if how == "mean" or len(values) < 2:
        return mean
    error = statistics.stdev(values) / math.sqrt(len(values))
    return mean - z * error if how == "lcb" else mean + z * error


def trial_value(exp: Experiment, values: Sequence[float], folds: Sequence[int]) -> float:
    """Restarts aggregated within each fold, then the mean over folds. ``folds`` names
    each value's fold (a fold may have lost restarts that diverged)."""
    sweep = exp.sweep
    per_fold = [
        aggregate(
            [v for v, f in zip(values, folds, strict=True) if f == fold],
            sweep.restart_aggregate,
            exp.objective.mode,
            sweep.restart_z,
        )
        for fold in sorted(set(folds))
    ]
    return statistics.fmean(per_fold)


def spread(fits: Sequence[Curves]) -> dict[str, dict[int, tuple[float, float]]]:
    """Per curve key and epoch: the mean and population standard deviation over the
    fits that reached that epoch (one stopped early by early stopping, others not)."""
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for key in dict.fromkeys(k for curves in fits for k in curves):
        epochs = sorted({e for curves in fits for e in curves.get(key, {})})
        out[key] = {}
        for epoch in epochs:
            values = [c[key][epoch] for c in fits if epoch in c.get(key, {})]
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                std = statistics.pstdev(finite) if len(finite) > 1 else 0.0
                out[key][epoch] = (statistics.fmean(finite), std)
    return out


def as_band(
    curves: Mapping[str, Mapping[int, tuple[float, float]]],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``spread`` as (mean, std) lists by epoch, for a figure."""
    ordered = {key: sorted(by_epoch.items()) for key, by_epoch in curves.items()}
    means = {key: [m for _, (m, _) in items] for key, items in ordered.items()}
    return means, {key: [s for _, (_, s) in items] for key, items in ordered.items()}


# curves that are the same for every fit (the spec's schedule): no ``<key>_std``
NO_SPREAD = frozenset({"lr"})


def spread_points(curves: Mapping[str, Mapping[int, tuple[float, float]]]) -> list[Metric]:
    """``spread`` as metric points: ``<key>`` the mean, ``<key>_std`` the spread, one
    point per epoch (the step)."""
    now = int(time.time() * 1000)
    points = []
    for key, by_epoch in curves.items():
        for epoch, (mean, std) in by_epoch.items():
            points.append(Metric(key, mean, now, epoch))
            if key not in NO_SPREAD:
                points.append(Metric(f"{key}_std", std, now, epoch))
    return points
