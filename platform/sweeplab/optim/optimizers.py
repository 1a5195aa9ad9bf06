"""Optimizers by name, with the spec's learning rate, momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from sweeplab.optim.catalog import OPTIMIZERS
from sweeplab.spec import TrainConfig

# optimizers with a fused kernel on CPU and GPU: the whole update in one call per
# parameter, a third of the multi-tensor (foreach) update's time on a small model
FUSED_KERNEL = frozenset({"adam", "adamw", "sgd"})


def build_optimizer(cfg: TrainConfig, params: Iterable[Any]) -> torch.optim.Optimizer:
    """``params``: tensors, or torch param groups (a group may set its own ``lr``)."""
    cls = getattr(torch.optim, OPTIMIZERS[cfg.optimizer])
    params = list(params)
    kwargs = group_options(cfg)
    if cfg.optimizer in FUSED_KERNEL and _fusable(params):
        return cls(params, **kwargs, fused=True)
    # foreach: one multi-tensor update instead of a loop over the parameters; torch uses
    # it by default on a GPU only; on a CPU it takes a third off a small model's update
    optimizer: torch.optim.Optimizer = cls(params, **kwargs, foreach=True)
    return optimizer


def group_options(cfg: TrainConfig) -> dict[str, Any]:
    """The settings of ``cfg`` that torch's optimizers take per parameter group: a fused
    batch gives each of its trials a group of its own (``training.fused``)."""
    options: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        options.update(momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    elif cfg.optimizer == "rmsprop":
        options.update(momentum=cfg.momentum)
    return options


def _fusable(params: list[Any]) -> bool:
    """Every parameter a floating-point tensor on a CPU or CUDA device (the fused
    kernels' condition; an optimizer would refuse others when built)."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    return all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)
