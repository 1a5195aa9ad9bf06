"""RNN, LSTM and GRU over a sequence (or a text's embedded words): the last step's output
(or the mean) → a Linear head."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.base import SupervisedModule
from sweeplab.models.blocks import padding
from sweeplab.spec import Experiment, RecurrentConfig

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentEncoder(nn.Module):
    """(N, T, F) → (N, hidden · directions); ``masked``: all-zero steps are padding,
    left out of a mean (text is padded on the left, so the last step is a word)."""

    def __init__(self, cfg: RecurrentConfig, n_inputs: int, *, masked: bool = False) -> None:
        super().__init__()
        self.rnn = CELLS[cfg.arch](
            n_inputs,
            cfg.hidden_size,
            num_layers=cfg.layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.pool = cfg.pool
        self.masked = masked
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        if self.pool == "last":
            return self.drop(out[:, -1])
        if not self.masked:
            return self.drop(out.mean(dim=1))
        keep = (~padding(x)).unsqueeze(-1).to(out.dtype)
        return self.drop((out * keep).sum(dim=1) / keep.sum(dim=1))


class Recurrent(SupervisedModule):
    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__(exp, split)
        cfg = cast(RecurrentConfig, exp.model)
        text = self.embed_tokens(split, cfg.embedding)
        backbone = RecurrentEncoder(cfg, self.to_view.out_shape[-1], masked=text)
        directions = 2 if cfg.bidirectional else 1
        self.assemble(backbone, nn.Linear(cfg.hidden_size * directions, split.n_outputs))
