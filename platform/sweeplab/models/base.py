"""SupervisedModule: the Lightning side shared by every supervised architecture.

A subclass only builds ``self.net`` (inputs → logits or predictions). This class
owns the loss, the metrics each epoch, the L1 penalty and the optimizer.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics
from torch import nn

from sweeplab.data.builtin import Split
from sweeplab.data.catalog import Task
from sweeplab.spec import TrainConfig
from sweeplab.training.optim import build_optimizer

LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "mse": nn.MSELoss, "huber": nn.HuberLoss}


class SupervisedModule(pl.LightningModule):
    """Logs per epoch: train_loss, val_loss, val_acc or val_rmse, lr; and test_* at the end."""

    net: nn.Module

    def __init__(self, *, task: Task, loss: str, train: TrainConfig, target_std: float = 1.0):
        super().__init__()
        self.task = task
        self.train_cfg = train
        self.loss_fn = LOSSES[loss]()
        # RMSE in the target's own units (targets are standardized for training).
        self.target_std = target_std
        self.val_metric = self._metric()
        self.test_metric = self._metric()

    def _metric(self) -> torchmetrics.Metric:
        if self.task == "classification":
            return torchmetrics.MeanMetric()  # mean of per-sample correctness = accuracy
        return torchmetrics.MeanSquaredError(squared=False)

    @property
    def metric_name(self) -> str:
        return "acc" if self.task == "classification" else "rmse"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out.squeeze(-1) if self.task == "regression" else out

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.loss_fn(out, y)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self._loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        if self.train_cfg.l1 > 0:
            penalty = sum(p.abs().sum() for n, p in self.named_parameters() if p.dim() > 1)
            loss = loss + self.train_cfg.l1 * penalty
        return loss

    def _evaluate(self, batch: Any, stage: str, metric: torchmetrics.Metric) -> None:
        x, y = batch
        out = self(x)
        self.log(f"{stage}_loss", self._loss(out, y), on_epoch=True, batch_size=len(x))
        if self.task == "classification":
            metric.update((out.argmax(dim=-1) == y).float())
        else:
            metric.update(out * self.target_std, y * self.target_std)
        self.log(f"{stage}_{self.metric_name}", metric, on_epoch=True, batch_size=len(x))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metric)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metric)

    def on_train_epoch_start(self) -> None:
        optimizer = self.trainer.optimizers[0]
        self.log("lr", optimizer.param_groups[0]["lr"], on_step=False, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.train_cfg, self.parameters())


class InferenceModel(nn.Module):
    """What is logged and served: raw features in, probabilities (or values) out.

    It carries the training split's standardization, so a client sends the
    features as they are in the dataset.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, module: SupervisedModule, split: Split):
        super().__init__()
        self.net = module.net
        self.task = module.task
        self.register_buffer("mean", torch.as_tensor(split.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(split.std, dtype=torch.float32))
        self.target_mean = split.target_mean
        self.target_std = split.target_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net((x.float() - self.mean) / self.std)
        if self.task == "classification":
            return torch.softmax(out, dim=-1)
        return out * self.target_std + self.target_mean
