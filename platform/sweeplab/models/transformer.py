"""A Transformer encoder classifier: token embedding, positional encoding, self-attention.

Each step of the view (an image row, or a value of a sequence) is a token; a
Linear layer embeds it (a patch embedding) into ``d_model``. A learned [CLS]
token, or the mean over tokens, feeds the head.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.base import SupervisedModule
from sweeplab.spec import Experiment, TransformerConfig


def sinusoidal(length: int, d_model: int) -> torch.Tensor:
    """The fixed encoding of "Attention is all you need": sin on even, cos on odd dims."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : d_model // 2]
    return table


class TransformerEncoder(nn.Module):
    """(N, T, F) → (N, d_model)."""

    def __init__(self, cfg: TransformerConfig, steps: int, n_inputs: int) -> None:
        super().__init__()
        self.embed = nn.Linear(n_inputs, cfg.d_model)
        self.pool = cfg.pool
        length = steps + (1 if cfg.pool == "cls" else 0)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model)) if cfg.pool == "cls" else None
        if cfg.positional == "learned":
            self.position = nn.Parameter(torch.randn(1, length, cfg.d_model) * 0.02)
        else:
            self.register_buffer("position", sinusoidal(length, cfg.d_model)[None])
        layer = nn.TransformerEncoderLayer(
            cfg.d_model,
            cfg.heads,
            cfg.ff_dim,
            cfg.dropout,
            activation=cfg.activation,
            batch_first=True,
            norm_first=cfg.norm == "pre",
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x)
        if self.cls is not None:
            # x.shape[0], not len(x): torch.export keeps the batch size symbolic
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        out = self.norm(self.encoder(self.drop(tokens + self.position)))
        return out[:, 0] if self.cls is not None else out.mean(dim=1)


class Transformer(SupervisedModule):
    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__(exp, split)
        cfg = cast(TransformerConfig, exp.model)
        steps, width = self.to_view.out_shape
        self.assemble(
            TransformerEncoder(cfg, steps, width), nn.Linear(cfg.d_model, split.n_outputs)
        )
