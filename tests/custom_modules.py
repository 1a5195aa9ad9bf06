"""User modules for the custom-architecture contract tests."""

from __future__ import annotations

import lightning.pytorch as pl


class NeedsVocab(pl.LightningModule):
    """Takes an argument that neither sweeplab nor the spec provides."""

    def __init__(self, n_features: int, n_outputs: int, vocab: list[str]) -> None:
        super().__init__()
