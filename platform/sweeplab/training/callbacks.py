"""Lightning callbacks sweeplab adds to every fit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch


def val_loss_diverged(trainer: pl.Trainer) -> bool:
    """True when this epoch's val_loss is NaN or infinite.

    Backends skip reporting such an epoch: it would look bad to a pruner or scheduler,
    which would end the trial as pruned; unreported, the fit ends through the
    divergence guard and the trial fails with its reason.
    """
    loss = trainer.callback_metrics.get("val_loss")
    return loss is not None and not math.isfinite(float(loss))


class KeepBestWeights(pl.Callback):
    """Track the best value of ``monitor`` and keep a copy of the weights at that epoch.

    Lightning's ModelCheckpoint does the same through full checkpoint files on
    disk at every improvement; for the small models of a sweep an in-memory
    copy is much cheaper, and the trial's value and model then agree.
    """

    def __init__(self, monitor: str, mode: str) -> None:
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        self.best_epoch = -1
        self.epochs = 0
        self._state: dict[str, torch.Tensor] | None = None

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        # A tie goes to the later epoch: same score, more training (accuracy ties often).
        return value <= self.best if self.mode == "min" else value >= self.best

    def offer(self, value: float, epoch: int, state: Callable[[], dict[str, Any]]) -> None:
        """Keep a copy of ``state()`` if ``value`` at ``epoch`` is the best so far."""
        if self._better(value):
            self.best, self.best_epoch = value, epoch
            self._state = {k: v.detach().clone() for k, v in state().items()}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.epochs = trainer.current_epoch + 1
        value = float(trainer.callback_metrics[self.monitor])
        self.offer(value, trainer.current_epoch, pl_module.state_dict)

    def restore(self, pl_module: pl.LightningModule, strict: bool = True) -> None:
        if self._state is not None:
            pl_module.load_state_dict(self._state, strict=strict)

    def state_dict(self) -> dict[str, Any]:
        # in a checkpoint (PBT's): a fit resumed from it goes on with the same best weights
        return {"best": self.best, "best_epoch": self.best_epoch, "weights": self._state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self._state = state_dict["weights"]


# learning-rate entries of a torch param group (the schedulers add all but ``lr``)
LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


class SpecOptimizerSettings(pl.Callback):
    """In a fit resumed from a checkpoint: the optimizer's settings of this fit's spec.

    Lightning restores the optimizer's state with the learning rate, weight decay and
    momentum it was saved with; PBT resumes a trial from another trial's checkpoint with
    new values of those. Each param group's learning rates (and its schedule's base
    rates) are scaled by new / old base rate, so a schedule goes on where it was.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from sweeplab.compat import configured_optimizers

        fresh = configured_optimizers(pl_module)  # as Lightning parses them
        ratios: dict[int, list[float]] = {}
        for restored, new in zip(trainer.optimizers, fresh, strict=True):
            ratios[id(restored)] = []
            for group, spec in zip(restored.param_groups, new.param_groups, strict=True):
                ratio = _base_lr(spec) / _base_lr(group)
                ratios[id(restored)].append(ratio)
                for key in LR_KEYS:
                    if key in group:
                        group[key] *= ratio
                for key in ("weight_decay", "momentum"):
                    if key in spec:
                        group[key] = spec[key]
        from sweeplab.compat import chained_schedulers

        for config in trainer.lr_scheduler_configs:
            scheduler: Any = config.scheduler
            scale = ratios.get(id(scheduler.optimizer))
            for sched in chained_schedulers(scheduler):
                if scale and hasattr(sched, "base_lrs"):
                    sched.base_lrs = [lr * r for lr, r in zip(sched.base_lrs, scale, strict=True)]


def _base_lr(group: dict[str, Any]) -> float:
    return float(group.get("initial_lr", group["lr"]))


class EpochTimer(pl.Callback):
    """Logs ``epoch_seconds``: the wall time of each epoch, training and validation."""

    def __init__(self) -> None:
        self._started = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log(
            "epoch_seconds", time.perf_counter() - self._started, on_epoch=True, sync_dist=True
        )
