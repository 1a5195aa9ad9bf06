"""The architecture table: ``model.arch`` → its LightningModule; and what every model offers
(the inference wrapper, an example input) whether sweeplab's own or a user's."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
import torch

from sweeplab.data.split import Split
from sweeplab.models.autoencoder import Autoencoder
from sweeplab.models.base import InferenceModel, TrainableModule
from sweeplab.models.blocks import ToView
from sweeplab.models.cnn import CNN
from sweeplab.models.custom import ViewThen, build_custom
from sweeplab.models.gan import GAN
from sweeplab.models.mlp import MLP
from sweeplab.models.recurrent import Recurrent
from sweeplab.models.transfer import Transfer
from sweeplab.models.transformer import Transformer
from sweeplab.spec import Experiment

ARCHITECTURES: dict[str, Callable[..., pl.LightningModule]] = {
    "mlp": MLP,
    "cnn": CNN,
    "rnn": Recurrent,
    "lstm": Recurrent,
    "gru": Recurrent,
    "transformer": Transformer,
    "autoencoder": Autoencoder,
    "gan": GAN,
    "transfer": Transfer,
    "custom": build_custom,
}


def build_model(
    exp: Experiment, split: Split, tracking_uri: str | None = None
) -> pl.LightningModule:
    """The module of ``exp`` for ``split``; ``tracking_uri`` finds a transfer source."""
    if exp.model.arch == "transfer":
        return Transfer(exp, split, tracking_uri=tracking_uri)
    return ARCHITECTURES[exp.model.arch](exp, split)


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
