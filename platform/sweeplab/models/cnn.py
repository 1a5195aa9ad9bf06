"""CNN: conv blocks (conv → norm → activation → pool → dropout), then a dense head.

Convolutions keep the size ("same" padding); each block with a pool halves it
while it is at least 2 pixels, so the same spec runs on 8×8 digits and 32×32
CIFAR images.
"""

from __future__ import annotations

from typing import cast

from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.base import SupervisedModule
from sweeplab.models.blocks import activation, dense, init_weights, norm2d
from sweeplab.spec import CNNConfig, Experiment


def conv_blocks(cfg: CNNConfig, shape: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels, size = shape[0], min(shape[1], shape[2])
    for width in cfg.channels:
        layers.append(nn.Conv2d(channels, width, cfg.kernel_size, padding="same"))
        norm_layer = norm2d(cfg.norm, width)
        if norm_layer is not None:
            layers.append(norm_layer)
        layers.append(activation(cfg.activation))
        if cfg.pool != "none" and size >= 2:
            layers.append(nn.MaxPool2d(2) if cfg.pool == "max" else nn.AvgPool2d(2))
            size //= 2
        if cfg.dropout > 0:
            layers.append(nn.Dropout2d(cfg.dropout))
        channels = width
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)


class CNN(SupervisedModule):
    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__(exp, split)
        cfg = cast(CNNConfig, exp.model)
        backbone = conv_blocks(cfg, self.to_view.out_shape)
        head = dense(self.feature_dim(backbone), cfg.head, split.n_outputs, cfg.activation)
        self.assemble(backbone, head)
        init_weights(self.net, cfg.init, cfg.activation)
