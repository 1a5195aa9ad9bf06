"""Trial overhead: seconds per epoch of a sweeplab trial vs a hand-written PyTorch loop.

The same training on the same data: MLP 64-256-128-10 on digits (sweeplab's
standardized split), Adam lr 1e-3, batch 64, fixed epochs, validation loss and
accuracy every epoch, the best epoch's weights kept and tested at the end.

    plain loop       DataLoader + the usual zero_grad/backward/step loop, nothing logged
    bare Lightning   the same as a minimal LightningModule (self.log per step) and a
                     Trainer with checkpoints, progress bar and summary off: what
                     Lightning itself costs
    sweeplab fit     sweeplab's Lightning fit, no tracking
    sweeplab trial   a whole tracked trial: MLflow run, params, per-epoch metrics,
                     learning-curve PNG, checkpoint file, run ended

Each variant's wall time (start to tested model) is divided by the epochs; the
variants run interleaved, ``--repeats`` times, and the medians are compared.
Target: sweeplab trial <= 1.3x the plain loop.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tracking_overhead import SPEC  # the same spec: MLP 64-256-128-10 on digits

from sweeplab.data.split import split
from sweeplab.logs import quiet_libraries
from sweeplab.search.fits import NoHooks
from sweeplab.search.trial import run_trial
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.fit import fit


def plain_loop(exp: Any, epochs: int) -> float:
    """What a user writes by hand: returns the test accuracy of the best epoch's weights."""
    s = split(exp.data)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def tensors(x: object, y: object) -> TensorDataset:
        return TensorDataset(torch.as_tensor(x), torch.as_tensor(y))

    train = DataLoader(tensors(s.x_train, s.y_train), batch_size=64, shuffle=True)
    val = DataLoader(tensors(s.x_val, s.y_val), batch_size=512)
    test = DataLoader(tensors(s.x_test, s.y_test), batch_size=512)

    def accuracy(loader: DataLoader) -> tuple[float, float]:
        model.eval()
        loss = correct = n = 0.0
        with torch.no_grad():
            for x, y in loader:
                out = model(x)
                loss += float(loss_fn(out, y)) * len(x)
                correct += float((out.argmax(1) == y).sum())
                n += len(x)
        model.train()
        return loss / n, correct / n

    best, best_state = -1.0, None
    for _ in range(epochs):
        for x, y in train:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        _, acc = accuracy(val)
        if acc > best:
            best, best_state = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)  # type: ignore[arg-type]
    return accuracy(test)[1]


class Bare(pl.LightningModule):
    """The minimal LightningModule a user writes for this training."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
        )
        self.loss_fn = nn.CrossEntropyLoss()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss: torch.Tensor = self.loss_fn(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        out = self.net(x)
        self.log("val_loss", self.loss_fn(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def bare_lightning(exp: Any, epochs: int) -> None:
    s = split(exp.data)
    torch.manual_seed(0)
    train = DataLoader(
        TensorDataset(torch.as_tensor(s.x_train), torch.as_tensor(s.y_train)),
        batch_size=64,
        shuffle=True,
    )
    val = DataLoader(
        TensorDataset(torch.as_tensor(s.x_val), torch.as_tensor(s.y_val)), batch_size=512
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Bare(), train, val)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        args.repeats, args.epochs = 1, 1
    SPEC["train"]["max_epochs"] = args.epochs  # type: ignore[index]
    exp = spec_from_dict(SPEC)
    torch.set_num_threads(1)  # as a trial of a sweep (one CPU each); steadier timings
    quiet_libraries(training=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.resolve(Path(tmp, "store"))
        store.prepare()
        tracker = Tracker(store, "bench")

        def trial() -> None:
            run_trial(exp, tracker=tracker, name="t", params={}, parent=None, hooks=NoHooks())

        variants = {
            "plain loop": lambda: plain_loop(exp, args.epochs),
            "bare Lightning": lambda: bare_lightning(exp, args.epochs),
            "sweeplab fit": lambda: fit(exp),
            "sweeplab trial": trial,
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for run in variants.values():  # warm-up: imports, data cache, the store's tables
            run()
        for _ in range(args.repeats):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    per_epoch = {name: statistics.median(t) / args.epochs for name, t in times.items()}
    base = per_epoch["plain loop"]
    print(f"trial overhead: MLP on digits, {args.epochs} epochs, median of {args.repeats}")
    for name, seconds in per_epoch.items():
        print(f"  {name:15s} {seconds * 1000:7.1f} ms/epoch  {seconds / base:5.2f}x plain loop")
    lightning = per_epoch["bare Lightning"]
    print(
        f"sweeplab trial / bare Lightning: {per_epoch['sweeplab trial'] / lightning:.2f}x "
        "(what sweeplab adds to Lightning's own cost)"
    )
    ratio = per_epoch["sweeplab trial"] / base
    print(
        f"target: sweeplab trial <= 1.3x plain loop: {'met' if ratio <= 1.3 else 'MISSED'} "
        f"({ratio:.2f}x)"
    )


if __name__ == "__main__":
    main()
