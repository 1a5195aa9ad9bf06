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

Between two checkpoints, the fit is also saved to a local file now and then (``HOLD_SECONDS``,
longer where saving takes long) and handed over only if the fit is interrupted (Ctrl-C,
SIGTERM, SIGHUP, ``stop --now``): a pre-empted trial loses seconds, not the period.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

HOLD_SECONDS = 10.0  # at least this long between two held (local, unsent) saves
HOLD_COST = 50  # and at least this many times what the last one took: <= 2% of the time


class ResumePoint(Checkpoint):
    """At the end of a training epoch (after its validation), when ``every_epochs``
    epochs or ``every_seconds`` seconds have passed since the fit (re)started or its last
    checkpoint, save the fit to a file and call ``keep(path, epoch)``.

    Between checkpoints, at an epoch's end at least ``hold_seconds`` and ``hold_cost``
    times the last such save's duration after the last, the fit is saved to a local file
    that ``keep`` gets only if the fit is interrupted (``on_exception``).

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
        hold_seconds: float = HOLD_SECONDS,
        hold_cost: float = HOLD_COST,
    ) -> None:
        if every_epochs is None and every_seconds is None:
            raise ValueError("every_epochs or every_seconds must be given, but got neither")
        self.every_epochs, self.every_seconds, self.keep = every_epochs, every_seconds, keep
        self.name = name  # the file's name, as ``keep`` gets it
        self._since = time.monotonic()
        self._epoch = -1  # the epoch of the last checkpoint, or before the fit's first
        self.saved = 0
        # the held save: a local file of the fit at an epoch's end, sent only if interrupted
        self._folder = Path(tempfile.mkdtemp(prefix="sweeplab-checkpoint-"))
        weakref.finalize(self, shutil.rmtree, self._folder, True)
        self._held = -1  # its epoch
        self.hold_seconds, self.hold_cost = hold_seconds, hold_cost
        self._hold_at = time.monotonic() + hold_seconds

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.monotonic()
        self._epoch = self._held = trainer.current_epoch - 1
        self._hold_at = time.monotonic() + self.hold_seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if trainer.should_stop or epoch + 1 >= (trainer.max_epochs or 0):
            return
        if self._due(epoch):
            self._send(trainer, epoch)
        elif time.monotonic() >= self._hold_at:
            started = time.monotonic()
            # written whole, then renamed: an interrupt mid-write leaves the last one
            trainer.save_checkpoint(self._folder / "writing")
            (self._folder / "writing").replace(self._folder / self.name)
            self._held = epoch
            took = time.monotonic() - started
            self._hold_at = time.monotonic() + max(self.hold_seconds, self.hold_cost * took)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Interrupted (a signal, ``stop --now``): send the held save if it is newer than
        the last checkpoint. An error raised by the fit sends nothing: its retry starts
        again from epoch 0."""
        if isinstance(exception, KeyboardInterrupt) and self._held > self._epoch:
            self.keep(self._folder / self.name, self._held)
            self._epoch = self._held
            self.saved += 1

    def _send(self, trainer: pl.Trainer, epoch: int) -> None:
        with tempfile.TemporaryDirectory(dir=self._folder) as tmp:
            path = Path(tmp, self.name)  # ``keep`` names the file by its name
            trainer.save_checkpoint(path)
            self.keep(path, epoch)
        self._since, self._epoch = time.monotonic(), epoch
        self._hold_at = time.monotonic() + self.hold_seconds
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
