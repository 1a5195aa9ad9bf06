"""MLP: Linear → [norm] → activation → [dropout] per hidden layer, then a Linear head."""

from __future__ import annotations

from torch import nn

from sweeplab.models.base import SupervisedModule
from sweeplab.models.blocks import activation, init_weights, norm
from sweeplab.spec import MLPConfig


def mlp_layers(cfg: MLPConfig, n_in: int, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for hidden in cfg.hidden:
        layers.append(nn.Linear(width, hidden))
        norm_layer = norm(cfg.norm, hidden)
        if norm_layer is not None:
            layers.append(norm_layer)
        layers.append(activation(cfg.activation))
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        width = hidden
    layers.append(nn.Linear(width, n_out))
    net = nn.Sequential(*layers)
    init_weights(net, cfg.init, cfg.activation)
    return net


class MLP(SupervisedModule):
    def __init__(self, cfg: MLPConfig, n_features: int, n_outputs: int, **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.net = mlp_layers(cfg, n_features, n_outputs)
