"""A user's own LightningModule, by import path (``model.class``); see CustomConfig.

The user's class stays untouched: the DataModule hands it view-shaped batches
(``ArrayDataModule.view``, set by ``training.fit.prepare``), and what is logged
and served wraps it as flat rows → view → the module.
"""

from __future__ import annotations

import inspect
from typing import cast

import lightning.pytorch as pl
import torch
from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.blocks import ToView
from sweeplab.spec import CustomConfig, Experiment
from sweeplab.spec._models import load_class


class ViewThen(nn.Module):
    """Flat rows → the view → the user's module."""

    def __init__(self, view: ToView, module: nn.Module) -> None:
        super().__init__()
        self.view = view
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(self.view(x))
        return out


def build_custom(exp: Experiment, split: Split) -> pl.LightningModule:
    """The user's class built with the data's shapes and ``model.kwargs``; or what the
    user's function builds from the same and the trial's spec (``spec=``)."""
    cfg = cast(CustomConfig, exp.model)
    target = load_class(cfg.class_)
    extra = {"spec": exp} if inspect.isfunction(target) else {}
    module = target(
        n_features=split.n_features,
        n_outputs=split.n_outputs,
        input_shape=ToView(split.shape, exp.view).out_shape,
        task=exp.task,
        **extra,
        **cfg.kwargs,
    )
    if not isinstance(module, pl.LightningModule):
        raise TypeError(f"{cfg.class_} returned {type(module).__name__}, not a LightningModule")
    return module
