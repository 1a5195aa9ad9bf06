"""The Lightning side shared by every architecture.

``TrainableModule``: the spec's optimizer and learning-rate schedule, ``lr``
logged each epoch, the input view, and ``inference_model`` (what is logged to
the registry and served). ``SupervisedModule``: a ``backbone`` and a ``head``
(so a backbone can be transferred), the loss, and the metrics each epoch. An
architecture builds its ``backbone`` and ``head``; every constructor takes the
resolved spec and the data split.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics
from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.blocks import TokenEmbedding, ToView
from sweeplab.optim.optimizers import build_optimizer
from sweeplab.optim.schedules import build_scheduler
from sweeplab.spec import Experiment


class InferenceModel(nn.Module):
    """What is logged and served: raw features in (the dataset's own units).

    It carries the training split's standardization; ``output`` says what comes
    out: ``probabilities`` (softmax of a classifier), ``values`` (a regressor, in
    the target's units), ``anomaly_score`` (an autoencoder's reconstruction
    error per row) or ``samples`` (a generator: latent vectors in, rows out).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: nn.Module, split: Split, output: str) -> None:
        super().__init__()
        self.net = net
        self.output = output
        self.register_buffer("mean", torch.as_tensor(split.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(split.std, dtype=torch.float32))
        self.target_mean = split.target_mean
        self.target_std = split.target_std
        self.labels = list(split.labels)  # a classifier's class i, as the data names it
        self.tokenizer = split.tokenizer  # a text's: token ids in, encoded from strings by it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.output == "samples":
            return self.net(x.float()) * self.std + self.mean
        z = x.long() if self.tokenizer else (x.float() - self.mean) / self.std
        out: torch.Tensor = self.net(z)
        if self.output == "probabilities":
            return torch.softmax(out, dim=-1)
        if self.output == "anomaly_score":
            return ((out - z) ** 2).mean(dim=1)
        return out * self.target_std + self.target_mean


class TrainableModule(pl.LightningModule):
    """Optimizer, schedule and lr logging from ``exp.train``; the input view of ``exp``."""

    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__()
        self.exp = exp
        self.train_cfg = exp.train
        self.to_view: ToView | TokenEmbedding = ToView(split.shape, exp.view)
        self.n_features = split.n_features
        self._epoch_sums: dict[str, tuple[torch.Tensor, int]] = {}

    def param_groups(self) -> list[dict[str, Any]]:
        """Torch param groups for the optimizer (a group may set its own ``lr``)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.train_cfg, self.param_groups())
        schedule = build_scheduler(
            self.train_cfg.schedule,
            optimizer,
            self.train_cfg.max_epochs,
            int(self.trainer.estimated_stepping_batches),
        )
        if schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def on_train_epoch_start(self) -> None:
        optimizers = self.trainer.optimizers
        if optimizers:
            self.log(
                "lr",
                optimizers[0].param_groups[-1]["lr"],
                on_step=False,
                on_epoch=True,
                sync_dist=True,
            )

    def log_epoch_mean(self, name: str, value: torch.Tensor, count: int) -> None:
        """Add a training batch's ``value`` (a mean over ``count`` rows) to ``name``'s
        mean over the epoch, which is logged once, at the epoch's end.

        What ``self.log(name, value, on_epoch=True)`` does, without its cost per call
        (about a millisecond: Lightning moves its result holder to the value's device
        on every call); a 20-epoch fit of bench/trial_overhead.py's MLP went from
        2.17 s to 1.87 s.
        """
        total, seen = self._epoch_sums.get(name, (torch.zeros((), device=value.device), 0))
        self._epoch_sums[name] = (total + value.detach() * count, seen + count)

    def on_validation_epoch_end(self) -> None:
        """The epoch's training means go with its validation metrics (Lightning
        validates after the epoch's last training step): a fit that a pruner stops at
        this epoch's validation still records this epoch's train_loss."""
        self._log_epoch_means()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_means()  # what a module whose validation logs them did not

    def _log_epoch_means(self) -> None:
        for name, (total, seen) in self._epoch_sums.items():
            self.log(name, total / seen, sync_dist=True)  # the mean over data-parallel ranks
        self._epoch_sums.clear()

    def embed_tokens(self, split: Split, dim: int) -> bool:
        """A text's view: its token ids embedded in ``dim`` values each; True for a text."""
        if self.exp.view != "tokens":
            return False
        self.to_view = TokenEmbedding(split.vocab_size, dim, split.shape[0])
        return True

    def example_input(self) -> torch.Tensor:
        """One input row for the FLOP count (what ``inference_model`` takes)."""
        if isinstance(self.to_view, TokenEmbedding):
            return torch.ones(1, self.n_features, dtype=torch.long)
        return torch.zeros(1, self.n_features)

    def inference_model(self, split: Split) -> InferenceModel:
        raise NotImplementedError


class SupervisedModule(TrainableModule):
    """``net`` = view → backbone → head. Logs per epoch: train_loss, val_loss, val_acc or
    val_rmse, lr; and test_* at the end."""

    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__(exp, split)
        self.task = exp.task
        if exp.loss == "cross_entropy":
            self.loss_fn: nn.Module = nn.CrossEntropyLoss(label_smoothing=exp.train.label_smoothing)
        else:
            self.loss_fn = {"mse": nn.MSELoss, "huber": nn.HuberLoss}[exp.loss]()
        # RMSE in the target's own units (targets are standardized for training).
        self.target_std = split.target_std
        self.val_metric = self._metric()
        self.test_metric = self._metric()

    def assemble(self, backbone: nn.Module, head: nn.Module) -> None:
        self.net = nn.Sequential(OrderedDict(view=self.to_view, backbone=backbone, head=head))

    def feature_dim(self, backbone: nn.Module) -> int:
        """The width of ``backbone``'s output for one example of this module's view."""
        with torch.no_grad():
            was = backbone.training
            out = backbone.eval()(torch.zeros(2, *self.to_view.out_shape))
            backbone.train(was)
        return int(out.shape[-1])

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

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss: torch.Tensor = self.loss_fn(self(x), y)
        self.log_epoch_mean("train_loss", loss, len(x))
        if self.train_cfg.l1 > 0:
            penalty = sum(p.abs().sum() for n, p in self.named_parameters() if p.dim() > 1)
            loss = loss + self.train_cfg.l1 * penalty
        return loss

    def _evaluate(self, batch: Any, stage: str, metric: torchmetrics.Metric) -> None:
        x, y = batch
        out = self(x)
        self.log(
            f"{stage}_loss", self.loss_fn(out, y), on_epoch=True, batch_size=len(x), sync_dist=True
        )
        if self.task == "classification":
            metric.update((out.argmax(dim=-1) == y).float())
        else:
            metric.update(out * self.target_std, y * self.target_std)
        self.log(f"{stage}_{self.metric_name}", metric, on_epoch=True, batch_size=len(x))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metric)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metric)

    def inference_model(self, split: Split) -> InferenceModel:
        output = "probabilities" if self.task == "classification" else "values"
        return InferenceModel(self.net, split, output)
