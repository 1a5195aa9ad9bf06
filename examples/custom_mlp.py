"""An example of the custom-module contract: your own LightningModule in a sweep.

Use it with ``model: {arch: custom, class: examples.custom_mlp:TinyMLP, kwargs: {width: 64}}``
(see experiments/custom_digits.yaml). sweeplab passes ``n_features``,
``n_outputs``, ``input_shape`` and ``task``; ``width`` and ``lr`` come from
``model.kwargs`` and can be searched as ``model.kwargs.width``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn


class TinyMLP(pl.LightningModule):
    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        input_shape: tuple[int, ...],
        task: str,
        width: int = 64,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(n_features, width), nn.ReLU(), nn.Linear(width, n_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, on_epoch=True, on_step=False)
        self.log(f"{stage}_acc", (logits.argmax(-1) == y).float().mean(), on_epoch=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)
