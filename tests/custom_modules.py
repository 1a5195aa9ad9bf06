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
