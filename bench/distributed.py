"""Distributed sweeps: the Ray backend against the Optuna backend, and 2 trials at once
against 1, on the same 20-trial sweep (MLP on digits, random sampler, fixed seed), with
short trials (5 epochs) and longer ones (40 epochs).

    optuna      the Optuna backend: trials one after another in this process
    ray x1      the Ray backend, max_concurrent 1 (its overhead per trial)
    ray x2      the Ray backend, 2 trials at once, 1 CPU each (trials/hour scaling)

    gpu x1, x4  on a machine with a CUDA GPU: 1 trial on the GPU vs 4 packed on it
                (--gpus-per-trial 1, then 0.25); skipped, saying so, where there is none

Ray is started once, before the timings (a cluster is started once per team, not per
sweep), and this process has imported everything before its own timings; a Ray trial
runs in a new worker process, which imports torch, Lightning and MLflow and opens the
stores before its first trial. That start-up is shown apart ("first trial's start"):
the seconds from the first trial's sampling to its MLflow run, for the Optuna backend
too. Targets: ray x1 <= 1.2x optuna; ray x2 >= 1.8x the trials/hour of ray x1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from mlflow import MlflowClient
from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

from sweeplab.search import RayOptions, run_sweep
from sweeplab.search.keys import ATTR_RUN, TAG_TRIAL
from sweeplab.search.ray_backend.driver import start_ray
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store

SPEC = {
    "name": "bench-distributed",
    "model": {"arch": "mlp", "hidden": [64]},
    "data": {"dataset": "digits"},
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "max_epochs": 5},
    "objective": {"metric": "val_acc", "mode": "max"},
    "search_space": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
    "sweep": {"trials": 20, "sampler": "random", "seed": 0},
}


@dataclass
class Timing:
    wall: float  # seconds for the whole sweep
    start: float  # seconds from the first trial's sampling to its MLflow run

    def after_start(self) -> float:
        return self.wall - self.start


def first_start(store: Store, sweep: str) -> float:
    """Seconds from the first Optuna trial's start (sampled) to its MLflow run's start."""
    study = optuna.load_study(study_name=sweep, storage=store.storage_url)
    first = study.trials[0]  # asked first
    run = MlflowClient(store.tracking_uri).get_run(first.user_attrs[ATTR_RUN])
    assert run.data.tags[TAG_TRIAL] == str(first.number)
    started = first.datetime_start
    assert started is not None
    return run.info.start_time / 1000 - started.timestamp()


def timed(
    root: Path, label: str, epochs: int, ray: RayOptions | None = None, **sweep: object
) -> Timing:
    spec = {
        **SPEC,
        "train": {**SPEC["train"], "max_epochs": epochs},  # type: ignore[dict-item]
        "sweep": {**SPEC["sweep"], **sweep},  # type: ignore[dict-item]
    }
    exp = spec_from_dict(spec)
    if exp.sweep.backend == "ray" and ray is None:
        ray = RayOptions()
    store = Store.resolve(root / f"{label}-{epochs}")
    started = time.perf_counter()
    result = run_sweep(exp, store, options=ray)
    seconds = time.perf_counter() - started
    assert result.counts.complete == exp.sweep.trials, result.counts
    return Timing(seconds, first_start(store, result.name))


def compare(root: Path, n: int, epochs: int, gpu: bool) -> None:
    optuna_t = timed(root, "optuna", epochs)
    ray1 = timed(root, "ray1", epochs, backend="ray", max_concurrent=1)
    ray2 = timed(root, "ray2", epochs, backend="ray", max_concurrent=2)
    print(f"\n{n} trials, {epochs} epochs each, MLP on digits")
    for label, t in (("optuna backend", optuna_t), ("ray, 1 at a time", ray1)):
        print(
            f"{label + ':':26s} {t.wall:6.1f} s  {3600 * n / t.wall:6.0f} trials/h   "
            f"first trial's start {t.start:5.2f} s"
        )
    print(
        f"{'ray, 2 at a time:':26s} {ray2.wall:6.1f} s  {3600 * n / ray2.wall:6.0f} trials/h   "
        f"first trials' start {ray2.start:5.2f} s"
    )
    print(f"ray x1 / optuna wall time:  {ray1.wall / optuna_t.wall:.2f}x (target <= 1.2x)")
    steady = (ray1.after_start() - optuna_t.after_start()) / (n - 1)
    print(
        f"  the same after each first trial's start: "
        f"{ray1.after_start() / optuna_t.after_start():.2f}x; "
        f"ray's overhead after it: {steady * 1000:.0f} ms per trial"
    )
    print(f"trials/hour, 2 at a time / 1: {ray1.wall / ray2.wall:.2f}x (target >= 1.8x)")
    after = ray1.after_start() / ray2.after_start()
    print(f"  the same after the first trials' start: {after:.2f}x")
    if gpu:
        one, packed = RayOptions(gpus_per_trial=1), RayOptions(gpus_per_trial=0.25)
        gpu1 = timed(root, "gpu1", epochs, one, backend="ray", max_concurrent=1)
        gpu4 = timed(root, "gpu4", epochs, packed, backend="ray", max_concurrent=4)
        for label, t in (("GPU, 1 trial at a time:", gpu1), ("GPU, 4 packed (0.25 each):", gpu4)):
            print(f"{label:26s} {t.wall:6.1f} s  {3600 * n / t.wall:6.0f} trials/h")
        print(f"trials/hour, 4 packed / 1 on the GPU: {gpu1.wall / gpu4.wall:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 40])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        args.trials, args.epochs = 2, [1]
    SPEC["sweep"]["trials"] = args.trials  # type: ignore[index]
    import torch

    torch.set_num_threads(1)  # as each Ray trial with 1 CPU (OMP_NUM_THREADS=1)
    start_ray(RayOptions())
    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        for epochs in args.epochs:
            compare(Path(tmp), args.trials, epochs, gpu)
    if not gpu:
        print("GPU packing (1 vs 4 trials on one GPU): skipped, this machine has no CUDA GPU")


if __name__ == "__main__":
    main()
