"""Transfer learning: a pretrained backbone, a new head.

The source is a model sweeplab logged (its ``net`` has a ``view``, a
``backbone`` and a ``head``): from the MLflow registry (``models:/name@alias``,
``models:/name/3``), a local MLflow model folder, or a file written by
``torch.save(model)``. ``torchvision:NAME`` takes a torchvision model with its
pretrained weights where torchvision is installed (and its weights are cached).

- ``finetune``: every layer trains; the backbone at ``lr * backbone_lr_factor``.
- ``feature_extraction``: the backbone is frozen (weights and norm statistics).
- ``scratch``: the same network with fresh random weights, as a baseline.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.base import SupervisedModule
from sweeplab.models.blocks import ToView, dense
from sweeplab.spec import Experiment, InputError, TransferConfig


class SourceError(InputError):
    """The transfer source cannot be loaded or has no backbone to transfer."""


class SourceInput(nn.Module):
    """Rows standardized with the target split's statistics → as the source was trained on
    them (its own split's standardization), then the source's view.

    A pretrained backbone expects its inputs on the scale it learned; the target data's
    statistics differ (other classes, other pixels in use), so the rows are mapped back
    to raw values and standardized the source's way. A fixed per-feature affine map.
    """

    def __init__(self, split: Split, source: nn.Module, view: ToView) -> None:
        super().__init__()
        source_mean = cast(torch.Tensor, source.mean).detach().float()
        source_std = cast(torch.Tensor, source.std).detach().float()
        mean = torch.as_tensor(split.mean, dtype=torch.float32)
        std = torch.as_tensor(split.std, dtype=torch.float32)
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", std / source_std)
        self.register_buffer("shift", (mean - source_mean) / source_std)
        self.view = view
        self.out_shape = view.out_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.view(x * self.scale + self.shift)
        return out


def backbone_of(source: nn.Module) -> tuple[nn.Module, ToView | None]:
    """The backbone to transfer, and the input view it was trained on (None: images)."""
    net = getattr(source, "net", source)
    if isinstance(net, nn.Module) and isinstance(getattr(net, "backbone", None), nn.Module):
        view = getattr(net, "view", None)
        return copy.deepcopy(cast(nn.Module, net.backbone)), copy.deepcopy(
            view if isinstance(view, ToView) else None
        )
    if not hasattr(source, "net"):  # a torchvision model, its classifier removed
        return copy.deepcopy(source), None
    raise SourceError(
        f"the source model ({type(net).__name__}) has no backbone to transfer; "
        "expected a model sweeplab trained (mlp, cnn, rnn, lstm, gru, transformer, transfer)"
    )


class Transfer(SupervisedModule):
    """``source``: the loaded source model (``training.sources.load_source``)."""

    def __init__(self, exp: Experiment, split: Split, source: nn.Module) -> None:
        super().__init__(exp, split)
        self.cfg = cfg = cast(TransferConfig, exp.model)
        mean = getattr(source, "mean", None)
        if isinstance(mean, torch.Tensor) and mean.numel() != split.n_features:
            raise SourceError(
                f"{cfg.source} takes {mean.numel()} features, but dataset "
                f"'{exp.data.dataset}' has {split.n_features}"
            )
        backbone, view = backbone_of(source)
        if view is not None and isinstance(mean, torch.Tensor):
            self.to_view = SourceInput(split, source, view)  # type: ignore[assignment]
        elif view is not None:
            self.to_view = view
        if cfg.mode == "scratch":
            for layer in backbone.modules():
                if layer is not backbone and hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()  # type: ignore[operator]
        if cfg.mode == "feature_extraction":
            backbone.requires_grad_(False)
        head = dense(self.feature_dim(backbone), cfg.head, split.n_outputs, dropout=cfg.dropout)
        self.assemble(backbone, head)

    def param_groups(self) -> list[dict[str, Any]]:
        backbone = list(cast(nn.Module, self.net.backbone).parameters())
        head = list(cast(nn.Module, self.net.head).parameters())
        if self.cfg.mode == "feature_extraction":
            return [{"params": head}]
        if self.cfg.mode == "scratch":
            return [{"params": backbone + head}]
        slow = self.train_cfg.lr * self.cfg.backbone_lr_factor
        return [{"params": backbone, "lr": slow}, {"params": head}]

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.cfg.mode == "feature_extraction":
            cast(
                nn.Module, self.net.backbone
            ).eval()  # frozen: batch-norm statistics stay the source's
