"""The Lightning DataModule over a dataset's split, held in memory as flat tensors."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    Sampler,
    SequentialSampler,
    TensorDataset,
)

from sweeplab.data.augment import Augmenter
from sweeplab.data.builtin import Rows
from sweeplab.data.split import Split, split
from sweeplab.data.stream import ImageDataset, ImageFiles
from sweeplab.spec import DataConfig


class ArrayDataModule(pl.LightningDataModule):
    """Train/val/test loaders over in-memory arrays (no worker processes: a batch is one
    index into them); images held as bytes are standardized per batch on its device.

    ``refit``: training batches are drawn from the training and validation rows together
    (``sweep.final: refit``, after the search has used the validation rows to choose);
    validation still reads the validation rows, for the curves only, and the test rows
    stay out. Standardization keeps the training rows' statistics, as the search's models.
    """

    def __init__(
        self,
        cfg: DataConfig,
        batch_size: int,
        seed: int = 0,
        fold: int = 0,
        *,
        refit: bool = False,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        # Reshapes each batch's inputs for a user's module (see models.build.batch_view).
        self.view: torch.nn.Module | None = None
        self.cfg = cfg
        self.batch_size = batch_size
        # rows per validation and test batch: the training batch's unless the caller
        # chooses for its model (training.fit.eval_batch_size: 512 for a dense network)
        self.eval_batch_size = eval_batch_size or batch_size
        self.seed = seed
        self.refit = refit
        self.split: Split = split(cfg, fold)
        s = self.split
        self.augmenter = (
            Augmenter(cfg, shape=s.shape, n_classes=s.n_classes, seed=seed)
            if cfg.augment.active
            else None
        )
        # the training loader's shuffling generator, and the state a checkpoint gave it
        self._generator: torch.Generator | None = None
        self._restored: torch.Tensor | None = None
        self._on_device: tuple[torch.Tensor, torch.Tensor] | None = None  # mean, std

    @property
    def n_features(self) -> int:
        return self.split.n_features

    @property
    def n_outputs(self) -> int:
        return self.split.n_outputs

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        training = self.trainer is not None and self.trainer.training
        x, y = self.prepared(batch, training=training)
        return (x, y) if self.view is None else (self.view(x), y)

    def prepared(self, batch: tuple[torch.Tensor, torch.Tensor], *, training: bool) -> Any:
        """A batch as a model takes it, on its device: bytes standardized
        (``Split.per_batch``), and a training batch with ``data.augment``'s changes."""
        x, y = batch
        augment = self.augmenter if training else None
        if self.split.per_batch:  # bytes: moved in their own units, then standardized
            mean, std = self._statistics(x.device)
            x = x.float() if augment is None else augment.move(x.float())
            x = (x - mean) / std
        if augment is not None:
            x, y = augment(x, y, self._statistics(x.device), moved=self.split.per_batch)
        return x, y

    def _statistics(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's mean and std per feature on ``device``, copied there once."""
        if self._on_device is None or self._on_device[0].device != device:
            mean = torch.as_tensor(self.split.mean, device=device)
            self._on_device = (mean, torch.as_tensor(self.split.std, device=device))
        return self._on_device

    def shuffler(self) -> torch.Generator:
        """A new generator of the training batches' order: seeded, or where a checkpoint
        left it; ``state_dict`` saves the last one made."""
        generator = self._generator = torch.Generator().manual_seed(self.seed)
        if self._restored is not None:
            generator.set_state(self._restored)
        return generator

    def _loader(self, x: Rows, y: np.ndarray, batch_size: int, shuffle: bool) -> DataLoader:
        generator = self.shuffler() if shuffle else None  # the training loader's
        # on a GPU, batches are copied from pinned memory (Lightning's copy is non-blocking)
        pin = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        workers = 0
        dataset: TensorDataset | ImageDataset
        if isinstance(x, ImageFiles):  # decoded by worker processes, a batch at a time
            dataset, workers = x.dataset(y), self.cfg.workers
        else:
            dataset = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
        if self.trainer is not None and self.trainer.world_size > 1:  # Lightning shards the sampler
            return DataLoader(
                dataset,
                batch_size,
                shuffle=shuffle,
                generator=generator,
                pin_memory=pin,
                num_workers=workers,
            )
        # The same batches as DataLoader(dataset, batch_size, shuffle, generator), taken
        # with one index per batch instead of one per row and a stack (a 20-epoch fit of
        # bench/trial_overhead.py's MLP: 1.87 s -> 1.79 s).
        order: Sampler[int] = (
            RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        )
        sampler = BatchSampler(order, batch_size, False)
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=sampler,
            pin_memory=pin,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def train_rows(self) -> tuple[Rows, np.ndarray]:
        """The rows training batches are drawn from: the training split's (``refit``:
        with the validation rows)."""
        s = self.split
        if not self.refit:
            return s.x_train, s.y_train
        y = np.concatenate([s.y_train, s.y_val])
        x_train, x_val = s.x_train, s.x_val
        if isinstance(x_train, ImageFiles) and isinstance(x_val, ImageFiles):
            return x_train.joined(x_val), y
        return np.concatenate([x_train, x_val]), y

    def train_dataloader(self) -> DataLoader:
        x, y = self.train_rows()
        return self._loader(x, y, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        s = self.split
        return self._loader(s.x_val, s.y_val, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        s = self.split
        return self._loader(s.x_test, s.y_test, self.eval_batch_size, shuffle=False)

    def state_dict(self) -> dict[str, Any]:
        """The shuffling and augmenting generators' states, in a checkpoint: a fit resumed
        from it draws the batches the uninterrupted fit would have."""
        state: dict[str, Any] = {}
        if self._generator is not None:
            state["generator"] = self._generator.get_state()
        if self.augmenter is not None:
            state["augment"] = self.augmenter.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict.get("generator")
        if self.augmenter is not None and "augment" in state_dict:
            self.augmenter.load_state_dict(state_dict["augment"])
