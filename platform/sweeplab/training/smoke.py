"""Smoke test: one training batch at the corners of the search space, writing nothing.

Catches shape, dtype and memory errors in seconds instead of mid-sweep. The
corners are: the spec as written; every distribution at its low end; every one
at its high end (each time those whose conditions hold); each categorical choice in
turn (the rest as written); and each conditional or layers entry at both ends, with
the values its conditions need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sweeplab.spec import Experiment


@dataclass
class SmokeFailure:
    params: dict[str, Any]
    error: str


def corners(exp: Experiment) -> list[dict[str, Any]]:
    space = exp.space
    configs: list[dict[str, Any]] = [{}]
    if len(space):
        configs += [_ends(exp, 0), _ends(exp, -1)]
    for key, dist in space.items():
        needs = space.branch(key)  # the values that its conditions (when) need
        if dist.type == "categorical":
            configs += [{**needs, key: choice} for choice in dist.choices]
        elif dist.when or dist.type == "layers":  # each branch and each layers end
            configs += [{**needs, key: value} for value in dist.corners()]
    unique: list[dict[str, Any]] = []
    for config in configs:
        if config not in unique:
            unique.append(config)
    return unique


def _ends(exp: Experiment, end: int) -> dict[str, Any]:
    """Every entry at its low (``end`` 0) or high (-1) end, those whose conditions hold."""
    params: dict[str, Any] = {}
    for key, dist in exp.space.ordered():
        if exp.space.holds(key, params):
            params[key] = dist.corners()[end]
    return params


def smoke(
    exp: Experiment,
    on_config: Callable[[dict[str, Any]], None] | None = None,
    tracking_uri: str | None = None,
) -> list[SmokeFailure]:
    """Run one training and one validation batch per corner; return what failed.

    ``tracking_uri``: where a transfer source in the model registry is found.
    """
    from sweeplab.training.fit import fit_or_interrupt, make_trainer, prepare

    failures = []
    for params in corners(exp):
        if on_config is not None:
            on_config(params)
        try:
            resolved = exp.with_params(params)
            data, module = prepare(resolved, tracking_uri=tracking_uri)
            trainer = make_trainer(resolved, fast_dev_run=1, max_epochs=1)
            fit_or_interrupt(trainer, module, data)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            failures.append(SmokeFailure(params, f"{type(exc).__name__}: {exc}"))
    return failures
