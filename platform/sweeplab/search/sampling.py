"""How a sweep's configurations are drawn and judged: Optuna's samplers and pruners,
configured from the spec, and the search space asked of an Optuna trial.

Both backends sample through here: the Optuna backend's workers, and Ray's
``OptunaSearch`` on the same study (same sampler, same distributions).
"""

from __future__ import annotations

import importlib
import math
import warnings
import zlib
from typing import Any

import optuna

from sweeplab.search.catalog import PRUNERS, SAMPLERS
from sweeplab.search.keys import ATTR_RETRY_OF
from sweeplab.spec import (
    CategoricalDist,
    Experiment,
    FloatDist,
    IntDist,
    LayersDist,
    SearchSpace,
    SpecError,
)
from sweeplab.spec._space import choice_key, choice_keys, decode_choice


def load(target: str) -> Any:
    """``package.module:Name`` of a catalog entry → the class."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` once the grid is visited.

    ``stop()`` works only inside ``study.optimize``; sweeplab's workers take trials
    with ask/tell under a claim lock and stop on the trial count instead.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def grid_of(space: SearchSpace) -> dict[str, list[Any]]:
    """Every value of each distribution (a float range needs its step)."""
    grid: dict[str, list[Any]] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDist):
            grid[key] = choice_keys(dist.choices)
        elif isinstance(dist, IntDist):
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            step = dist.step or (dist.high - dist.low)
            count = math.floor((dist.high - dist.low) / step + 1e-9) + 1
            grid[key] = [dist.low + i * step for i in range(count)]
    return grid


def build_sampler(exp: Experiment, stream: str | None = None) -> optuna.samplers.BaseSampler:
    """The spec's sampler with ``sweep.sampler_options``, seeded with ``sweep.seed``: the
    sweep's own stream of draws. A bad option is a SpecError (before any side effect).

    ``stream`` names another stream of the same sweep (a resumed or joining worker): its
    seed is derived from ``sweep.seed`` and the name, so it does not replay the draws the
    sweep's first process made, while a one-process sweep stays reproducible.
    """
    name, seed = exp.sweep.sampler, exp.sweep.seed
    if stream is not None:
        seed = zlib.crc32(f"{seed}:{stream}".encode())
    options: dict[str, Any] = dict(exp.sweep.sampler_options)
    if name == "grid":
        options["search_space"] = grid_of(exp.space)
    if name == "cmaes":
        options.setdefault("warn_independent_sampling", False)
    try:
        with warnings.catch_warnings():  # the GP sampler is "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler: optuna.samplers.BaseSampler = load(SAMPLERS[name])(seed=seed, **options)
    except (TypeError, ValueError) as exc:
        raise SpecError.single(
            None, "sweep.sampler_options", f"invalid for sampler '{name}': {exc}"
        ) from None
    return sampler


def build_pruner(exp: Experiment) -> optuna.pruners.BasePruner:
    """The spec's pruner with its options; a bad option is a SpecError (before any side effect)."""
    name, options = exp.sweep.pruner, dict(exp.sweep.pruner_options)
    if name == "hyperband":
        options.setdefault("min_resource", 1)
        options.setdefault("max_resource", exp.most_epochs)
    try:
        return load(PRUNERS[name])(**options)
    except (TypeError, ValueError) as exc:
        raise SpecError.single(
            None, "sweep.pruner_options", f"invalid for pruner '{name}': {exc}"
        ) from None


def pruning_callback(trial: optuna.Trial, monitor: str) -> Any:
    """optuna-integration's Lightning pruning callback: reports ``monitor`` each epoch
    and raises optuna.TrialPruned when the study's pruner says so; silent on an epoch
    whose val_loss is NaN/inf (``val_loss_diverged``: the trial then fails with its
    reason, not pruned)."""
    from optuna_integration import PyTorchLightningPruningCallback

    from sweeplab.training.callbacks import val_loss_diverged

    class FinitePruningCallback(PyTorchLightningPruningCallback):
        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if val_loss_diverged(trainer):
                return
            super().on_validation_end(trainer, pl_module)

    return FinitePruningCallback(trial, monitor=monitor)


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Ask the trial for a value of every entry whose conditions hold (``when``), in
    sampling order; categorical keys decoded back, a layers entry's parts made a list.
    An entry not sampled is absent (from the trial, its params and its run)."""
    params: dict[str, Any] = {}
    for key, dist in space.ordered():
        if space.holds(key, params):
            params[key] = _suggest_one(trial, key, dist)
    return params


def _suggest_one(trial: optuna.Trial, key: str, dist: Any) -> Any:
    if isinstance(dist, FloatDist):
        return trial.suggest_float(key, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDist):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, LayersDist):  # the depth, then each layer's width on its own
        depth = trial.suggest_int(dist.part(key, "depth"), dist.depth.low, dist.depth.high)
        w = dist.width
        return [
            trial.suggest_int(dist.part(key, i), w.low, w.high, log=w.log, step=w.step)
            for i in range(depth)
        ]
    return decode_choice(dist, trial.suggest_categorical(key, choice_keys(dist.choices)))


# ------------------------------------------------------------ Optuna's view of a space


def encode(space: SearchSpace, key: str, value: Any) -> dict[str, Any]:
    """The Optuna parameters of entry ``key`` holding the spec value ``value``, as
    ``suggest`` would have asked them (a layers entry: its depth and each width)."""
    dist = space.root[key]
    if isinstance(dist, LayersDist):
        return {dist.part(key, "depth"): len(value)} | {
            dist.part(key, i): width for i, width in enumerate(value)
        }
    return {key: choice_key(value) if isinstance(dist, CategoricalDist) else value}


def distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna's distribution of every parameter ``suggest`` may ask for (a layers
    entry's depth and each width it may reach)."""
    from optuna.distributions import CategoricalDistribution as Categorical
    from optuna.distributions import FloatDistribution, IntDistribution

    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, dist in space.items():
        if isinstance(dist, LayersDist):
            w = dist.width
            out[dist.part(key, "depth")] = IntDistribution(dist.depth.low, dist.depth.high)
            for i in range(dist.depth.high):
                out[dist.part(key, i)] = IntDistribution(w.low, w.high, log=w.log, step=w.step)
        elif isinstance(dist, CategoricalDist):
            out[key] = Categorical(choice_keys(dist.choices))
        elif isinstance(dist, IntDist):
            out[key] = IntDistribution(dist.low, dist.high, log=dist.log, step=dist.step)
        else:
            out[key] = FloatDistribution(dist.low, dist.high, log=dist.log, step=dist.step)
    return out


def same_as(study: optuna.Study, trial: optuna.Trial, grid: bool = False) -> int | None:
    """The earlier trial whose params the sampler drew again, if any (a grid run out, a
    space of few choices). A retry repeats its failed try on purpose: not counted.

    A draw of a continuous float (off a grid) is never drawn again, so such a trial is
    not compared with every earlier one."""
    if ATTR_RETRY_OF in trial.user_attrs:
        return None
    if not grid and any(_continuous(d) for d in trial.distributions.values()):
        return None
    for t in study.get_trials(deepcopy=False):
        if t.number >= trial.number:
            break
        if t.params == trial.params and ATTR_RETRY_OF not in t.user_attrs:
            return t.number
    return None


def _continuous(distribution: optuna.distributions.BaseDistribution) -> bool:
    return (
        isinstance(distribution, optuna.distributions.FloatDistribution)
        and distribution.step is None
    )
