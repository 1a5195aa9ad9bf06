"""Autoencoder: dense or convolutional; denoising with input noise; anomaly scores.

The loss is the mean squared reconstruction error of the (standardized) input.
With ``data.holdout_classes`` those classes never reach training, and every
validation and test row is scored by its reconstruction error: ``val_auroc`` /
``test_auroc`` say how well that score finds the held-out classes. The
registered model returns that score for each row.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.base import InferenceModel, TrainableModule
from sweeplab.models.blocks import activation, dense
from sweeplab.spec import AutoencoderConfig, Experiment


class ConvAutoencoder(nn.Module):
    """Stride-2 convs down to a bottleneck vector, transposed convs back to the image size."""

    def __init__(self, cfg: AutoencoderConfig, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape
        down: list[nn.Module] = []
        channels = shape[0]
        for width in cfg.channels:
            down += [nn.Conv2d(channels, width, 3, stride=2, padding=1), activation(cfg.activation)]
            channels = width
        self.down = nn.Sequential(*down)
        with torch.no_grad():
            self.inner = tuple(self.down(torch.zeros(1, *shape)).shape[1:])
        inner_size = int(torch.tensor(self.inner).prod())
        self.encode = nn.Linear(inner_size, cfg.bottleneck)
        self.decode = nn.Sequential(
            nn.Linear(cfg.bottleneck, inner_size), activation(cfg.activation)
        )
        up: list[nn.Module] = []
        widths = [*reversed(cfg.channels[:-1]), shape[0]]
        for i, width in enumerate(widths):
            up.append(nn.ConvTranspose2d(channels, width, 4, stride=2, padding=1))
            if i < len(widths) - 1:
                up.append(activation(cfg.activation))
            channels = width
        self.up = nn.Sequential(*up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encode(self.down(x).flatten(1))
        out = self.up(self.decode(code).reshape(x.shape[0], *self.inner))
        if tuple(out.shape[2:]) != tuple(self.shape[1:]):  # odd sizes: 7 → 4 → 8
            out = F.interpolate(out, size=self.shape[1:], mode="bilinear", align_corners=False)
        return out.flatten(1)


class Autoencoder(TrainableModule):
    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__(exp, split)
        cfg = cast(AutoencoderConfig, exp.model)
        self.noise = cfg.noise
        n = split.n_features
        if cfg.kind == "dense":
            widths = [*cfg.hidden, cfg.bottleneck, *reversed(cfg.hidden)]
            body: nn.Module = dense(n, widths, n, cfg.activation)
        else:
            body = ConvAutoencoder(cfg, self.to_view.out_shape)
        self.net = nn.Sequential(self.to_view, body)
        self.holdout = torch.as_tensor(split.holdout, dtype=torch.long)
        self.val_auroc = torchmetrics.AUROC(task="binary")
        self.test_auroc = torchmetrics.AUROC(task="binary")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, _ = batch
        noisy = x + self.noise * torch.randn_like(x) if self.noise > 0 else x
        loss = F.mse_loss(self(noisy), x)
        self.log_epoch_mean("train_loss", loss, len(x))
        return loss

    def _evaluate(self, batch: Any, stage: str, auroc: torchmetrics.Metric) -> None:
        x, y = batch
        score = ((self(x) - x) ** 2).mean(dim=1)
        anomaly = torch.isin(y, self.holdout.to(y.device))
        normal = score[~anomaly]
        if len(normal):
            self.log(
                f"{stage}_loss",
                normal.mean(),
                on_epoch=True,
                batch_size=len(normal),
                sync_dist=True,
            )
        if len(self.holdout):
            auroc.update(score, anomaly.long())
            self.log(f"{stage}_auroc", auroc, on_epoch=True, batch_size=len(x))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_auroc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_auroc)

    def inference_model(self, split: Split) -> InferenceModel:
        return InferenceModel(self.net, split, "anomaly_score")
