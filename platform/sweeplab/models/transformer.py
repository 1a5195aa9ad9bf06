"""A Transformer encoder classifier: token embedding, positional encoding, self-attention.

Each step of the view (an image row, a value of a sequence, a text's embedded word) is
a token; a Linear layer embeds it (a patch embedding) into ``d_model``. A learned [CLS]
token, or the mean over tokens, feeds the head. A text's padding is masked out of
attention and of the mean.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.base import SupervisedModule
from sweeplab.models.blocks import padding
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
    """(N, T, F) → (N, d_model); ``masked``: all-zero steps are padding (``padding``)."""

    def __init__(
        self, cfg: TransformerConfig, steps: int, n_inputs: int, *, masked: bool = False
    ) -> None:
        super().__init__()
        self.masked = masked
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
        pad = padding(x) if self.masked else None
        if self.cls is not None:
            # x.shape[0], not len(x): torch.export keeps the batch size symbolic
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
            if pad is not None:
                pad = torch.cat([torch.zeros_like(pad[:, :1]), pad], dim=1)
        out = self.encoder(self.drop(tokens + self.position), src_key_padding_mask=pad)
        out = self.norm(out)
        if self.cls is not None:
            return out[:, 0]
        if pad is None:
            return out.mean(dim=1)
        keep = (~pad).unsqueeze(-1).to(out.dtype)
        return (out * keep).sum(dim=1) / keep.sum(dim=1)


class Transformer(SupervisedModule):
    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__(exp, split)
        cfg = cast(TransformerConfig, exp.model)
        text = self.embed_tokens(split, cfg.embedding)
        steps, width = self.to_view.out_shape
        self.assemble(
            TransformerEncoder(cfg, steps, width, masked=text),
            nn.Linear(cfg.d_model, split.n_outputs),
        )
