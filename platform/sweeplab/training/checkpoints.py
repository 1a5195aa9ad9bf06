"""Mid-trial checkpoints: a fit saved at the end of an epoch, so a trial whose worker
dies goes on from there instead of from epoch 0 (``train.checkpoint_every``).

A checkpoint is Lightning's own (``trainer.save_checkpoint``): the weights, the
optimizer and its schedule, the loops' progress, every callback's ``state_dict``
(early stopping, the best weights so far), the data module's (each loader's shuffling
generator) and the module's (a fused batch's members); ``ResumePoint`` adds the random
generators of Python, NumPy and torch, so a resumed fit draws what the uninterrupted one
would have. Lightning's ModelCheckpoint is built to keep the best files of a run on a
disk; this callback hands each file to its owner (the trial's MLflow run), which keeps
only the last one.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint


class ResumePoint(Checkpoint):
    """At the end of a training epoch (after its validation), when ``every_epochs``
    epochs or ``every_seconds`` seconds have passed since the fit (re)started or its last
    checkpoint, save the fit to a file and call ``keep(path, epoch)``.

    An epoch after which the fit stops anyway (early stopping, its last epoch) writes
    none: a resumed fit would only end again. A subclass of Lightning's ``Checkpoint``,
    so Lightning runs it after the other callbacks of the epoch.
    """

    def __init__(
        self,
        *,
        every_epochs: int | None,
        every_seconds: float | None,
        keep: Callable[[Path, int], None],
        name: str = "last.ckpt",
    ) -> None:
        if every_epochs is None and every_seconds is None:
            raise ValueError("every_epochs or every_seconds must be given, but got neither")
        self.every_epochs, self.every_seconds, self.keep = every_epochs, every_seconds, keep
        self.name = name  # the file's name, as ``keep`` gets it
        self._since = time.monotonic()
        self._epoch = -1  # the epoch of the last checkpoint, or before the fit's first
        self.saved = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.monotonic()
        self._epoch = trainer.current_epoch - 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if trainer.should_stop or epoch + 1 >= (trainer.max_epochs or 0) or not self._due(epoch):
            return
        with tempfile.TemporaryDirectory(prefix="sweeplab-checkpoint-") as tmp:
            path = Path(tmp, self.name)
            trainer.save_checkpoint(path)
            self.keep(path, epoch)
        self._since, self._epoch = time.monotonic(), epoch
        self.saved += 1

    def _due(self, epoch: int) -> bool:
        if self.every_epochs is not None:
            return epoch - self._epoch >= self.every_epochs
        return time.monotonic() - self._since >= (self.every_seconds or 0.0)

    def state_dict(self) -> dict[str, Any]:
        # tensors, lists and numbers only: Lightning loads checkpoints with weights_only
        kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
        return {
            "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(np.array(keys)), position, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, state, gauss = state_dict["python"]
        random.setstate((version, tuple(state), gauss))
        kind, keys, position, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy(), position, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def checkpoint_epoch(path: Path) -> int:
    """The epoch a checkpoint file was saved at the end of (0-based)."""
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return int(state["epoch"])
