"""The architecture table: ``model.arch`` → its LightningModule; and what every model offers
(the inference wrapper, an example input) whether sweeplab's own or a user's."""

from __future__ import annotations

import importlib
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.base import InferenceModel, TrainableModule
from sweeplab.models.blocks import ToView
from sweeplab.models.custom import ViewThen
from sweeplab.spec import ARCHITECTURES, Experiment


def build_model(
    exp: Experiment, split: Split, source: nn.Module | None = None
) -> pl.LightningModule:
    """The module of ``exp`` for ``split``, from the spec's architecture table.

    ``source``: the loaded model a transfer architecture takes its backbone from.
    """
    module_name, _, name = ARCHITECTURES[exp.model.arch].module.partition(":")
    build: Any = getattr(importlib.import_module(module_name), name)
    if source is not None:
        return build(exp, split, source=source)
    return build(exp, split)


def batch_view(exp: Experiment, split: Split) -> ToView | None:
    """The reshaping a user's module needs on its batches (sweeplab's own reshape inside)."""
    return ToView(split.shape, exp.view) if exp.model.arch == "custom" else None


def inference_model(module: pl.LightningModule, exp: Experiment, split: Split) -> InferenceModel:
    """What is logged and served for ``module``: raw flat rows in."""
    if isinstance(module, TrainableModule):
        return module.inference_model(split)
    output = "probabilities" if exp.task == "classification" else "values"
    return InferenceModel(ViewThen(ToView(split.shape, exp.view), module), split, output)


def example_input(module: pl.LightningModule, split: Split) -> torch.Tensor:
    """One input row of what ``inference_model`` takes."""
    if isinstance(module, TrainableModule):
        return module.example_input()
    return torch.zeros(1, split.n_features)
