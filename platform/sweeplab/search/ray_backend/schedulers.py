"""Ray Tune's trial schedulers, configured from the spec (``sweep.scheduler``)."""

from __future__ import annotations

from typing import Any

from sweeplab.search.catalog import SCHEDULERS
from sweeplab.search.sampling import load
from sweeplab.spec import Experiment, SpecError


def build_scheduler(exp: Experiment) -> Any:
    """Ray Tune's scheduler of the spec, on the epoch count; a bad option is a SpecError."""
    name = exp.sweep.scheduler
    options: dict[str, Any] = dict(exp.sweep.scheduler_options)
    given = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
    if name != "none":
        options.update(metric=exp.objective.metric, mode=exp.objective.mode)
    if name in ("asha", "hyperband"):
        # max_t one past the last epoch: a trial that trains to the end is never stopped
        # at its last epoch's report, before its test metrics and checkpoint are saved
        options.update(time_attr="epoch", max_t=exp.most_epochs + 1)
        if name == "hyperband":
            options.setdefault("brackets", 3)
    elif name == "median":
        options["time_attr"] = "epoch"
    elif name == "pbt":
        from sweeplab.search.ray_backend.pbt import TIME, mutations

        options.setdefault("perturbation_interval", max(1, exp.most_epochs // 4))
        options.update(
            time_attr=TIME,
            require_attrs=False,  # the last epoch's report has no TIME (pbt.PbtReport)
            hyperparam_mutations=mutations(exp.space),
        )
    try:
        return load(SCHEDULERS[name])(**options)
    except (TypeError, ValueError, AssertionError) as exc:  # Ray checks options with assert
        raise SpecError.single(
            None,
            "sweep.scheduler_options",
            f"{given} invalid for scheduler '{name}': {exc}",
        ) from None
