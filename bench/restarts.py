"""Restarts fused vs one after another: the default MLP, k = 1, 2, 4, 8 seeds.

The default spec's network and training (MLP 64-256-128-10 on digits, dropout 0.2,
AdamW, batch 64) for a fixed number of epochs (no early stopping), side by side in
one run:

    one after another   k calls of sweeplab's fit, one seed each (what restarts were)
    fused               one fit_fused of the k seeds (torch.func: stacked parameters,
                        one forward and backward per step for all)
    plain loop          a hand-written PyTorch loop training one model, the data as
                        tensors (no DataLoader), validation every epoch

Each variant's wall time is the median of ``--repeats`` interleaved runs, from the
data's preparation to the tested models. Targets on 2 cores: fused k = 4 costs
<= 2.2x the wall time of k = 1; per member-epoch, fused k = 4 takes <= 0.75x the
plain loop's epoch. ``--sweeps`` also runs the default sweep (`make sweep`) with
restarts fused and one after another, for sweep.seed 0, 1 and 2: the wall time of each
and its registered model's test accuracy (target: fused <= 0.8x, accuracy >= 0.97).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from tiny import TINY_HELP, TINY_SWEEP  # bench/tiny.py: this script's folder is on sys.path
from torch import nn

from sweeplab.data.split import split
from sweeplab.logs import quiet_libraries
from sweeplab.spec import load_spec
from sweeplab.training.fit import fit
from sweeplab.training.fused import fit_fused

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "experiments" / "mlp_digits.yaml"


def spec(epochs: int, k: int) -> Any:
    return load_spec(
        SPEC,
        [
            f"train.max_epochs={epochs}",
            "train.early_stopping=null",
            f"sweep.restarts={max(k, 2)}",
        ],
    )


class EpochClock(pl.Callback):
    """The wall time of each epoch: its training steps and its validation."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: Any, module: Any) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def one_after_another(exp: Any, k: int) -> float:
    start = time.perf_counter()
    for seed in range(k):
        fit(exp, seed=seed)
    return time.perf_counter() - start


def fused(exp: Any, k: int, clock: EpochClock) -> float:
    start = time.perf_counter()
    if k == 1:
        fit(exp, seed=0, callbacks=[clock])
    else:
        fit_fused(exp, list(range(k)), 0, [None] * k, callbacks=[clock])
    return time.perf_counter() - start


def plain_loop(exp: Any, epochs: int) -> float:
    """One model, by hand; returns the wall time of its epochs."""
    s = split(exp.data)
    x, y = torch.as_tensor(s.x_train), torch.as_tensor(s.y_train)
    xv, yv = torch.as_tensor(s.x_val), torch.as_tensor(s.y_val)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            out = model(xv)
            loss_fn(out, yv).item(), (out.argmax(1) == yv).float().mean().item()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def fits(epochs: int, repeats: int) -> None:
    print(
        f"## restarts fused vs one after another: default MLP, {epochs} epochs, "
        f"medians of {repeats}, torch threads {torch.get_num_threads()}"
    )
    print()
    print("| k | one after another (s) | fused (s) | fused / k=1 | after another / k=1 |")
    print("|---|---|---|---|---|")
    walls: dict[tuple[str, int], list[float]] = {}
    clocks: dict[int, EpochClock] = {k: EpochClock() for k in (1, 2, 4, 8)}
    plain: list[float] = []
    for _ in range(repeats):
        plain.append(plain_loop(spec(epochs, 2), epochs))
        for k in (1, 2, 4, 8):
            exp = spec(epochs, k)
            walls.setdefault(("seq", k), []).append(one_after_another(exp, k))
            walls.setdefault(("fused", k), []).append(fused(exp, k, clocks[k]))
    base = median(walls[("seq", 1)])
    for k in (1, 2, 4, 8):
        seq, fu = median(walls[("seq", k)]), median(walls[("fused", k)])
        print(f"| {k} | {seq:.2f} | {fu:.2f} | {fu / base:.2f} | {seq / base:.2f} |")
    epoch = median(plain) / epochs
    member_epoch = median(clocks[4].seconds) / 4
    ratio4 = median(walls[("fused", 4)]) / base
    print()
    for k, clock in clocks.items():
        print(f"fused k={k}: {median(clock.seconds) * 1000:.1f} ms per epoch (median)")
    print()
    print(f"plain loop: {epoch * 1000:.1f} ms per epoch (one model, data as tensors)")
    print(
        f"fused k=4: {member_epoch * 1000:.1f} ms per member-epoch, "
        f"{member_epoch / epoch:.2f}x the plain loop's epoch "
        f"(target <= 0.75: {'met' if member_epoch / epoch <= 0.75 else 'missed'})"
    )
    print(f"fused k=4 / k=1: {ratio4:.2f}x (target <= 2.2: {'met' if ratio4 <= 2.2 else 'missed'})")


def sweeps(seeds: list[int], extra: list[str]) -> None:
    print()
    print("## the default sweep (`make sweep`): restarts fused vs one after another")
    print()
    print(
        "| sweep.seed | restarts | wall (s) | fits run | member-epochs "
        "| registered model's test accuracy |"
    )
    print("|---|---|---|---|---|---|")
    walls: dict[str, list[float]] = {"fused": [], "one after another": []}
    accuracies: list[float] = []
    for seed in seeds:
        for mode, flag in (("one after another", "false"), ("fused", "true")):
            with tempfile.TemporaryDirectory() as store:
                command = [
                    sys.executable,
                    "-m",
                    "sweeplab",
                    "sweep",
                    str(SPEC),
                    "--quiet",
                    "--no-smoke",
                    "--store",
                    store,
                    "--set",
                    f"sweep.seed={seed}",
                    "--set",
                    f"sweep.fused_restarts={flag}",
                    *extra,
                ]
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
                wall = time.perf_counter() - start
                if done.returncode != 0:
                    print(done.stderr[-2000:])
                    raise SystemExit(1)
                accuracy = _test_accuracy(store)
                fits_run, member_epochs = _fits(store)
            walls[mode].append(wall)
            if mode == "fused":
                accuracies.append(accuracy)
            print(
                f"| {seed} | {mode} | {wall:.1f} | {fits_run} | {member_epochs} | {accuracy:.4f} |"
            )
    ratio = sum(walls["fused"]) / sum(walls["one after another"])
    print()
    print(
        f"fused / one after another, total wall time: {ratio:.2f}x "
        f"(target <= 0.8: {'met' if ratio <= 0.8 else 'missed'}); fused test accuracy "
        f"min {min(accuracies):.4f} (target >= 0.97: "
        f"{'met' if min(accuracies) >= 0.97 else 'missed'})"
    )


def _fits(store: str) -> tuple[int, int]:
    """How many restart fits ran and their epochs in all: one after another, a trial
    pruned during restart 0 runs no restart 1; fused, both train until the mean is
    pruned. The two ways' sweeps differ in these, not only in speed."""
    from mlflow import MlflowClient

    from sweeplab.search.keys import TAG_RESTART

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("mlp-digits")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{TAG_RESTART}` != ''", max_results=5000
    )
    epochs = sum(len(client.get_metric_history(r.info.run_id, "val_loss")) for r in runs)
    return len(runs), epochs


def _test_accuracy(store: str) -> float:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    version = client.get_model_version("mlp-digits", "1")
    return float(version.tags["sweeplab.test_score"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweeps", action="store_true", help="also run the default sweep")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        args.epochs, args.repeats, args.seeds = 1, 1, [0]
    quiet_libraries(training=True)
    fits(args.epochs, args.repeats)
    if args.sweeps:
        sweeps(args.seeds, TINY_SWEEP if args.tiny else [])


if __name__ == "__main__":
    main()
