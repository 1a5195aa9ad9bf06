"""Several trials in one batched fit (issue 31): the fixed-work case.

The default spec's network and training (MLP 64-256-128-10 on digits, AdamW, batch
64), every trial 20 epochs with no early stopping and no pruning, side by side in one
run:

    plain loop      a hand-written PyTorch loop training one model, the data as tensors
                    (bench/restarts.py's), validation every epoch
    restarts        today's fused restarts: one trial of the default spec's 2 restarts
    N trials        ``fit_batch`` of N trials × 2 restarts (N·2 members) whose learning
                    rate, weight decay and dropout differ, drawn from the default
                    search space's ranges (search_spaces/mlp.yaml)
    compute floor   the same batched matrix products alone (forward and backward of
                    N·2 stacked MLPs, no optimizer, no framework)

Each prints its time per member-epoch and that time ÷ the plain loop's epoch. Target
(issue 31): <= 0.35x at the best N. The sweep-level comparisons of the issue (sweep
wall time, trials per hour, the hand-written Optuna + Lightning loop) are
bench/fused_sweeps.py's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from restarts import EpochClock, plain_loop, spec  # bench/: this folder is on sys.path
from tiny import TINY_HELP

from sweeplab.logs import quiet_libraries
from sweeplab.training.fused import fit_batch
from sweeplab.training.fusing import unfused_batch

SIZES = [(64, 256), (256, 128), (128, 10)]
TARGET = 0.35


def trials(n: int, epochs: int, seed: int) -> list[Any]:
    """``n`` configurations of the default shape: lr, weight decay and dropout drawn
    log-uniformly / uniformly from search_spaces/mlp.yaml's ranges."""
    draw = random.Random(seed)
    exps = []
    for _ in range(n):
        base = spec(epochs, 2)
        train = base.train.model_copy(
            update={
                "lr": 10 ** draw.uniform(-3.52, -2.0),
                "weight_decay": 10 ** draw.uniform(-4.0, -1.0),
            }
        )
        model = base.model.model_copy(update={"dropout": draw.uniform(0.05, 0.5)})
        exps.append(base.model_copy(update={"train": train, "model": model}))
    why = unfused_batch(exps)
    if why is not None:
        raise SystemExit(f"these trials cannot share a batch: {why}")
    return exps


def batched(exps: list[Any], restarts: int) -> float:
    """Seconds per epoch (the median) of one batched fit of ``exps``."""
    clock = EpochClock()
    members = len(exps) * restarts
    fit_batch([(e, list(range(restarts))) for e in exps], 0, [None] * members, [clock])
    return statistics.median(clock.seconds)


def compute_floor(members: int, epochs: int) -> float:
    """Seconds per epoch of the batched matrix products alone: forward and backward of
    ``members`` stacked MLPs over 1,257 training rows in batches of 64, and a forward
    over 270 validation rows."""
    weights = [torch.randn(members, o, i, requires_grad=True) for i, o in SIZES]
    biases = [torch.zeros(members, o, requires_grad=True) for _, o in SIZES]
    train_x, val_x = torch.randn(members, 1257, 64), torch.randn(members, 270, 64)
    labels = torch.randint(0, 10, (members * 64,))

    def forward(x: torch.Tensor) -> torch.Tensor:
        for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            x = F.relu(x) if layer < len(SIZES) - 1 else x
        return x

    start = time.perf_counter()
    for _ in range(epochs):
        for rows in torch.arange(1257).split(64):
            out = forward(train_x[:, rows])
            F.cross_entropy(out.flatten(0, 1), labels[: out.shape[0] * out.shape[1]]).backward()
        with torch.no_grad():
            forward(val_x)
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="4,8,16", help="the N trials per batch")
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    if args.tiny:
        args.epochs, args.repeats, sizes = 3, 1, [4]
    quiet_libraries()
    restarts = 2
    plain: list[float] = []
    one: list[float] = []
    floors: dict[int, list[float]] = {n: [] for n in sizes}
    walls: dict[int, list[float]] = {n: [] for n in sizes}
    for repeat in range(args.repeats):
        plain.append(plain_loop(spec(args.epochs, 2), args.epochs) / args.epochs)
        one.append(batched(trials(1, args.epochs, repeat), restarts) / restarts)
        for n in sizes:
            walls[n].append(batched(trials(n, args.epochs, repeat), restarts) / (n * restarts))
            floors[n].append(compute_floor(n * restarts, args.epochs) / (n * restarts))
    epoch = statistics.median(plain)
    print(
        f"## fixed work: default MLP, {args.epochs} epochs, {restarts} restarts per trial, "
        f"medians of {args.repeats}, torch threads {torch.get_num_threads()}"
    )
    print()
    print(
        "| batch | members | ms per member-epoch | ÷ plain loop's epoch | compute floor ÷ plain |"
    )
    print("|---|---|---|---|---|")
    print(f"| plain loop, one model | 1 | {epoch * 1000:.2f} | 1.00 | |")
    restarts_only = statistics.median(one)
    print(
        f"| 1 trial (today's fused restarts) | {restarts} | {restarts_only * 1000:.2f} "
        f"| {restarts_only / epoch:.2f} | |"
    )
    best = min(sizes, key=lambda n: statistics.median(walls[n]))
    for n in sizes:
        member_epoch, floor = statistics.median(walls[n]), statistics.median(floors[n])
        print(
            f"| {n} trials | {n * restarts} | {member_epoch * 1000:.2f} "
            f"| {member_epoch / epoch:.2f} | {floor / epoch:.2f} |"
        )
    ratio = statistics.median(walls[best]) / epoch
    met = "met" if ratio <= TARGET else "missed"
    print()
    print(f"best: {best} trials per batch, {ratio:.2f}x the plain loop (target <= {TARGET}: {met})")


if __name__ == "__main__":
    main()
