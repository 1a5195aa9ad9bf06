"""The Lightning DataModule over a dataset's split, held in memory as flat tensors."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from sweeplab.data.split import Split, split
from sweeplab.spec import DataConfig


class ArrayDataModule(pl.LightningDataModule):
    """Train/val/test loaders over in-memory tensors (no worker processes: the data is small)."""

    def __init__(
        self,
        cfg: DataConfig,
        batch_size: int,
        seed: int = 0,
        fold: int = 0,
    ) -> None:
        super().__init__()
        # Reshapes each batch's inputs for a user's module (see models.build.batch_view).
        self.view: torch.nn.Module | None = None
        self.cfg = cfg
        self.batch_size = batch_size
        self.seed = seed
        self.split: Split = split(cfg, fold)

    @property
    def n_features(self) -> int:
        return self.split.n_features

    @property
    def n_outputs(self) -> int:
        return self.split.n_outputs

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.view is None:
            return batch
        x, y = batch
        return self.view(x), y

    def _dataset(self, x: object, y: object) -> TensorDataset:
        return TensorDataset(torch.as_tensor(x), torch.as_tensor(y))

    def train_dataloader(self) -> DataLoader:
        s = self.split
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self._dataset(s.x_train, s.y_train),
            batch_size=self.batch_size,
            shuffle=True,
            generator=generator,
        )

    def val_dataloader(self) -> DataLoader:
        s = self.split
        return DataLoader(self._dataset(s.x_val, s.y_val), batch_size=max(self.batch_size, 512))

    def test_dataloader(self) -> DataLoader:
        s = self.split
        return DataLoader(self._dataset(s.x_test, s.y_test), batch_size=max(self.batch_size, 512))
