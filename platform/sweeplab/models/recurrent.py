"""RNN, LSTM and GRU over a sequence: the last step's output (or the mean) → a Linear head."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from sweeplab.data.split import Split
from sweeplab.models.base import SupervisedModule
from sweeplab.spec import Experiment, RecurrentConfig

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentEncoder(nn.Module):
    """(N, T, F) → (N, hidden · directions)."""

    def __init__(self, cfg: RecurrentConfig, n_inputs: int) -> None:
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
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.drop(out.mean(dim=1) if self.pool == "mean" else out[:, -1])


class Recurrent(SupervisedModule):
    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__(exp, split)
        cfg = cast(RecurrentConfig, exp.model)
        backbone = RecurrentEncoder(cfg, self.to_view.out_shape[-1])
        directions = 2 if cfg.bidirectional else 1
        self.assemble(backbone, nn.Linear(cfg.hidden_size * directions, split.n_outputs))
