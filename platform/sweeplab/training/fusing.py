"""Which fits can train as one batched model (``training.fused``), and why not: strings
only, no torch import, so ``sweeplab validate`` says it at once.

Two kinds of batch: a trial's restarts (the same configuration under k seeds), and
several trials whose configurations differ only in *fusible* fields (``FUSIBLE``):
each member then gets its own learning rate, weight decay, dropout rate and so on
inside one step. Every other field is the batch's *shape* (``batch_shape``): widths,
depth, activation, norm, batch size, optimizer kind, loss, schedule, architecture.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sweeplab.spec import Experiment

# the architectures whose fits train as one batched model; the README lists them
FUSED_ARCHS = ("mlp", "cnn", "autoencoder")

# spec fields whose values may differ between the trials of one batch → how each member
# gets its own value inside the batched step
FUSIBLE: dict[str, str] = {
    "train.lr": "its trial's own parameter group of the optimizer",
    "train.weight_decay": "its trial's own parameter group of the optimizer",
    "train.momentum": "its trial's own parameter group (sgd, rmsprop)",
    "train.nesterov": "its trial's own parameter group (sgd)",
    "train.l1": "its own penalty in its own loss",
    "train.label_smoothing": "its trial's own loss function",
    "train.max_epochs": "its trial is frozen when it reaches them (only without a warm-up, "
    "with no schedule or the step schedule: the others are shaped by max_epochs)",
    "train.early_stopping.patience": "its trial's own early stopping",
    "train.seed": "it is built, shuffled and dropped out under its own seed",
    "model.dropout": "its own dropout rate (0 and a rate above 0 build other layers)",
    "model.init": "it is built alone, then stacked",
}


def unbatched(exp: Experiment) -> str | None:
    """Why fits of ``exp`` cannot train as one batched model, or None."""
    if exp.model.arch not in FUSED_ARCHS:
        return f"the {exp.model.arch} architecture is not batched (fused: {', '.join(FUSED_ARCHS)})"
    if exp.train.schedule.name == "plateau":
        return "the plateau schedule follows each fit's own val_loss"
    if exp.train.mixed_precision:
        return "mixed precision"
    return None


# sweep.fuse_trials: auto on a CPU worker: the best setting of bench/fused_sweeps.py on 2
# cores, by mean wall time in both runs of 2026-12-06 (the default spec's sweep: 0.68,
# 0.70, 0.58 of one trial at a time on seeds 0-2 in the later run; 8 gave 0.59, 0.72,
# 0.74; bench/RESULTS.md has their test accuracies)
AUTO_FUSE_CPU = 16


def fused_count(exp: Experiment, *, gpu: bool) -> int:
    """How many trials a worker of ``exp``'s sweep takes at a time: ``sweep.fuse_trials``,
    or for ``auto`` what the bench found best on a CPU; one where ``not_fused`` says why."""
    n = exp.sweep.fuse_trials
    if not_fused(exp, gpu=gpu) is not None:
        return 1
    return AUTO_FUSE_CPU if n == "auto" else n


def not_fused(exp: Experiment, *, gpu: bool) -> str | None:
    """Why the trials of ``exp``'s sweep train one at a time, or None: they fuse. A
    number > 1 with a Ray scheduler or several folds is a spec error (``spec._sweep``);
    ``auto`` trains one at a time there."""
    n = exp.sweep.fuse_trials
    if n == 1:
        return "sweep.fuse_trials is 1"
    if n == "auto" and exp.sweep.backend == "ray" and exp.sweep.scheduler != "none":
        return (
            "on Ray, auto fuses with sweep.scheduler: none: Ray's scheduler "
            f"'{exp.sweep.scheduler}' would stop a whole batch"
        )
    if n == "auto" and exp.data.folds > 1:
        return f"fused trials train on one fold, and data.folds is {exp.data.folds}"
    why = unbatched(exp)
    if why is not None:
        return why
    if not any(path in FUSIBLE for path in exp.search_space):
        return "no searched path is fusible: the trials of a batch would be one configuration"
    if n == "auto" and gpu:  # no GPU was lent to measure a count, or to size a batch by memory
        return "on a GPU, auto fuses nothing yet: set a number"
    return None


def unfused(exp: Experiment) -> str | None:
    """Why the restarts of ``exp`` train one after another, or None: they train fused."""
    if exp.sweep.restarts < 2:
        return "one restart"
    if not exp.sweep.fused_restarts:
        return "sweep.fused_restarts is false"
    return unbatched(exp)


def epochs_fusible(exp: Experiment) -> bool:
    """Whether ``train.max_epochs`` may differ in a batch: no schedule shaped by it."""
    schedule = exp.train.schedule
    return schedule.name in ("none", "step") and schedule.warmup_epochs == 0


def batch_shape(exp: Experiment) -> dict[str, Any]:
    """What every trial of one batch shares: the spec without its fusible fields."""
    shape = exp.model_dump(mode="json")
    for path in FUSIBLE:
        if path == "train.max_epochs" and not epochs_fusible(exp):
            continue
        *parents, last = path.split(".")
        node = shape
        for key in parents:
            node = node.get(key) or {}
        if isinstance(node, dict):
            node.pop(last, None)
    rate = getattr(exp.model, "dropout", None)
    if rate is not None:  # a rate of 0 builds no dropout layer: other layers than a rate > 0
        shape["model"]["dropout_layers"] = rate > 0
    return shape


def unfused_batch(exps: Sequence[Experiment]) -> str | None:
    """Why the trials of ``exps`` cannot train as one batch, or None: they can."""
    why = unbatched(exps[0])
    if why is not None:
        return why
    first = batch_shape(exps[0])
    for number, exp in enumerate(exps[1:], start=1):
        path = _first_difference(first, batch_shape(exp))
        if path is not None:
            return f"trial {number} differs from trial 0 in {path}, which is not fusible"
    return None


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The dotted path of the first value that differs between ``a`` and ``b``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    return None if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) else path
