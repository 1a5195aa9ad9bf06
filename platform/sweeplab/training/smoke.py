"""Smoke test: one training batch at the corners of the search space, writing nothing.

Catches shape, dtype and memory errors in seconds instead of mid-sweep. The
corners are: the spec as written; every distribution at its low end; every one
at its high end; and each categorical choice in turn (the rest as written).
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
        configs.append({k: d.corners()[0] for k, d in space.items()})
        configs.append({k: d.corners()[-1] for k, d in space.items()})
    for key, dist in space.items():
        if dist.type == "categorical":
            configs += [{key: choice} for choice in dist.choices]
    unique: list[dict[str, Any]] = []
    for config in configs:
        if config not in unique:
            unique.append(config)
    return unique


def smoke(
    exp: Experiment,
    on_config: Callable[[dict[str, Any]], None] | None = None,
    tracking_uri: str | None = None,
) -> list[SmokeFailure]:
    """Run one training and one validation batch per corner; return what failed.

    ``tracking_uri``: where a transfer source in the model registry is found.
    """
    from sweeplab.training.fit import _fit_or_interrupt, make_trainer, prepare

    failures = []
    for params in corners(exp):
        if on_config is not None:
            on_config(params)
        try:
            resolved = exp.with_params(params)
            data, module = prepare(resolved, tracking_uri=tracking_uri)
            trainer = make_trainer(resolved, fast_dev_run=1, max_epochs=1)
            _fit_or_interrupt(trainer, module, data)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            failures.append(SmokeFailure(params, f"{type(exc).__name__}: {exc}"))
    return failures
