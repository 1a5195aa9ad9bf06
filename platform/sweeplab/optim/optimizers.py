"""Optimizers by name, with the spec's learning rate, momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from sweeplab.optim.catalog import OPTIMIZERS
from sweeplab.spec import TrainConfig


def build_optimizer(cfg: TrainConfig, params: Iterable[Any]) -> torch.optim.Optimizer:
    """``params``: tensors, or torch param groups (a group may set its own ``lr``)."""
    cls = getattr(torch.optim, OPTIMIZERS[cfg.optimizer])
    # foreach: one multi-tensor update instead of a loop over the parameters; torch uses
    # it by default on a GPU only; on a CPU it takes a third off a small model's update
    kwargs: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "foreach": True}
    if cfg.optimizer == "sgd":
        kwargs.update(momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    elif cfg.optimizer == "rmsprop":
        kwargs.update(momentum=cfg.momentum)
    optimizer: torch.optim.Optimizer = cls(params, **kwargs)
    return optimizer
