"""The objective: one metric to optimize, or a list of them (a multi-objective sweep,
whose result is a Pareto front); and what a list asks of the rest of the spec."""

from __future__ import annotations

from typing import Any, Literal

from sweeplab.spec._data import Section
from sweeplab.spec._errors import did_you_mean

# What a trial measures of its model besides the validation metrics (training/cost.py)
COSTS = ("param_count", "flops_per_sample")

# The direction of the metrics sweeplab knows, by the name after its split prefix
# (val_acc -> acc): a spec that asks for the other mode is a mistake, not a choice.
# A metric not listed here (a custom module's) keeps the user's mode.
DIRECTIONS: dict[str, Literal["min", "max"]] = {
    "loss": "min",
    "rmse": "min",
    "mse": "min",
    "mae": "min",
    "fid": "min",
    "param_count": "min",
    "flops_per_sample": "min",
    "acc": "max",
    "accuracy": "max",
    "auroc": "max",
    "auc": "max",
    "f1": "max",
    "r2": "max",
    "is": "max",
}


# The metrics that count examples (a fraction of them right): on n validation examples
# they move in steps of 1/n, so trials that close are tied (search/ranking.py)
COUNTS_EXAMPLES = frozenset({"acc", "accuracy"})


def _measure(metric: str) -> str:
    """The name after the metric's split prefix: val_acc -> acc."""
    for prefix in ("val_", "test_", "train_"):
        if metric.startswith(prefix):
            return metric.removeprefix(prefix)
    return metric


def counts_examples(metric: str) -> bool:
    """Whether ``metric`` is a fraction of examples (an accuracy), of any split."""
    return _measure(metric) in COUNTS_EXAMPLES


def direction(metric: str) -> Literal["min", "max"] | None:
    """The mode a known metric is optimized in (``None`` for one sweeplab does not know)."""
    return DIRECTIONS.get(_measure(metric))


def mode_problem(path: str, metric: str, mode: str) -> list[tuple[str, str]]:
    """A mode that contradicts a known metric's direction, at ``path`` (its ``mode``)."""
    known = direction(metric)
    if known is None or known == mode:
        return []
    better = "higher" if known == "max" else "lower"
    return [
        (
            path,
            f"'{mode}' would {'minimize' if mode == 'min' else 'maximize'} {metric}, "
            f"which is better {better}; allowed: {known}",
        )
    ]


class ObjectiveConfig(Section):
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"


def split_objective(data: Any) -> Any:
    """A spec mapping whose ``objective`` is a list: the first stays ``objective``, the
    others become ``trade_offs`` (so that every single-objective path reads one)."""
    if isinstance(data, dict) and isinstance(data.get("objective"), list):
        first, *rest = data["objective"] or [None]
        data = {**data, "objective": first, "trade_offs": rest}
    return data


def objective_problems(
    objectives: list[ObjectiveConfig],
    metrics: tuple[str, ...],
    sweep: Any,
) -> list[tuple[str, str]]:
    """What a multi-objective spec cannot have: a trade-off that is never measured, a
    metric named twice, and a pruner, scheduler or sampler that judges one objective."""
    if len(objectives) < 2:
        return []
    problems = []
    allowed = (*metrics, *COSTS)
    names = [o.metric for o in objectives]
    for index, objective in enumerate(objectives[1:], start=1):
        if objective.metric not in allowed:
            hint = did_you_mean(objective.metric, allowed)
            problems.append(
                (
                    f"objective.{index}.metric",
                    f"'{objective.metric}' is never measured{hint}; allowed: {', '.join(allowed)}",
                )
            )
        elif names.index(objective.metric) != index:
            problems.append(
                (f"objective.{index}.metric", f"'{objective.metric}' is already an objective")
            )
    n = len(objectives)
    if sweep.pruner != "none":
        problems.append(
            (
                "sweep.pruner",
                f"Optuna's pruners judge one objective, but the objective lists {n}: use "
                "pruner: none",
            )
        )
    if sweep.scheduler != "none":
        problems.append(
            (
                "sweep.scheduler",
                f"Ray's schedulers stop trials on one metric, but the objective lists {n}: "
                "use scheduler: none",
            )
        )
    if sweep.sampler == "cmaes":
        problems.append(
            (
                "sweep.sampler",
                f"cmaes optimizes one objective, but the objective lists {n}: use nsga2, "
                "tpe, random or grid",
            )
        )
    return problems
