"""User modules for the custom-architecture contract tests."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from examples.custom_mlp import TinyMLP


class NeedsVocab(pl.LightningModule):
    """Takes an argument that neither sweeplab nor the spec provides."""

    def __init__(self, n_features: int, n_outputs: int, vocab: list[str]) -> None:
        super().__init__()


class UnluckySeed(TinyMLP):
    """Diverges (its loss becomes NaN) when trained with an odd seed: one restart of a
    trial diverges while the others train."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unlucky = torch.initial_seed() % 2 == 1  # fit seeds before building

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.unlucky else loss


def build_tiny_mlp(
    spec: Any,
    n_features: int,
    n_outputs: int,
    input_shape: tuple[int, ...],
    task: str,
    **kwargs: Any,
) -> pl.LightningModule:
    """A function that builds the module from the trial's spec (the Python API's
    ``model=``): its width from the spec's kwargs, its learning rate from ``train.lr``."""
    width = int(kwargs.get("width", 8))
    return TinyMLP(n_features, n_outputs, input_shape, task, width=width, lr=spec.train.lr)
