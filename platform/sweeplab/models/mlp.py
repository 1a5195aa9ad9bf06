"""MLP: Linear → [norm] → activation → [dropout] per hidden layer, then a Linear head."""

from __future__ import annotations

from typing import cast

from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.base import SupervisedModule
from sweeplab.models.blocks import dense, init_weights
from sweeplab.spec import Experiment, MLPConfig


class MLP(SupervisedModule):
    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__(exp, split)
        cfg = cast(MLPConfig, exp.model)
        backbone = dense(split.n_features, cfg.hidden, None, cfg.activation, cfg.dropout, cfg.norm)
        width = cfg.hidden[-1] if cfg.hidden else split.n_features
        self.assemble(backbone, nn.Linear(width, split.n_outputs))
        init_weights(self.net, cfg.init, cfg.activation)
