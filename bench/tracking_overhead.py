"""Tracking overhead: the same fit with no logger, sweeplab's logger, Lightning's MLFlowLogger.

MLP on digits, fixed seed and epochs, no early stopping; the three variants run
interleaved, ``--repeats`` times each, and the medians are compared.
Target: sweeplab <= 1.05x no logger, and less overhead than MLFlowLogger.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from sweeplab.tracking.logger import BatchedMlflowLogger
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.fit import fit

SPEC = {
    "name": "bench-tracking",
    "model": {"arch": "mlp", "hidden": [256, 128]},
    "data": {"dataset": "digits"},
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "max_epochs": 20},
    "objective": {"metric": "val_acc", "mode": "max"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        args.repeats, args.epochs = 1, 1
    SPEC["train"]["max_epochs"] = args.epochs  # type: ignore[index]
    exp = spec_from_dict(SPEC)
    import torch
    from lightning.pytorch.loggers import MLFlowLogger

    torch.set_num_threads(1)  # as a trial of a sweep (one CPU each); steadier timings

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.resolve(Path(tmp, "store"))
        store.prepare()
        tracker = Tracker(store, "bench")

        def none() -> Any:
            return None

        def sweeplab() -> Any:
            return BatchedMlflowLogger(tracker.client, tracker.start_run("sweeplab"))

        def lightning() -> Any:
            return MLFlowLogger(
                experiment_name="bench", tracking_uri=store.tracking_uri, run_name="lightning"
            )

        variants: dict[str, Callable[[], Any]] = {
            "no logger": none,
            "sweeplab": sweeplab,
            "MLFlowLogger": lightning,
        }
        fit(exp, logger=None)  # warm-up: imports, data cache
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, make in variants.items():
                logger = make()
                start = time.perf_counter()
                fit(exp, logger=logger)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["no logger"])
    print(f"tracking overhead: MLP on digits, {args.epochs} epochs, median of {args.repeats}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:13s} {median:6.3f} s  {median / base:5.3f}x no logger")
    ours = statistics.median(times["sweeplab"]) / base
    theirs = statistics.median(times["MLFlowLogger"]) / base
    print(
        f"target: sweeplab <= 1.05x no logger: {'met' if ours <= 1.05 else 'MISSED'} "
        f"({ours:.3f}x); less overhead than MLFlowLogger ({theirs:.3f}x): "
        f"{'met' if ours < theirs else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
