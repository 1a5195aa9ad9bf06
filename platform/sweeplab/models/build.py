"""build_model: the architecture table, from ``model.arch`` to its LightningModule."""

from __future__ import annotations

from collections.abc import Callable

from sweeplab.data.module import ArrayDataModule
from sweeplab.models.base import SupervisedModule
from sweeplab.models.mlp import MLP
from sweeplab.spec import Experiment

ARCHITECTURES: dict[str, Callable[..., SupervisedModule]] = {
    "mlp": MLP,
}


def build_model(exp: Experiment, data: ArrayDataModule) -> SupervisedModule:
    cls = ARCHITECTURES[exp.model.arch]
    return cls(
        exp.model,
        n_features=data.n_features,
        n_outputs=data.n_outputs,
        task=exp.task,
        loss=exp.loss,
        train=exp.train,
        target_std=data.split.target_std,
    )
