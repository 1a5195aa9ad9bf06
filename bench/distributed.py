"""Distributed sweeps: the Ray backend against the Optuna backend, and 2 trials at once
against 1, on the same 20-trial sweep (MLP on digits, random sampler, fixed seed).

    optuna      the Optuna backend: trials one after another in this process
    ray x1      the Ray backend, max_concurrent 1 (its overhead per trial)
    ray x2      the Ray backend, 2 trials at once, 1 CPU each (trials/hour scaling)

    gpu x1, x4  on a machine with a CUDA GPU: 1 trial on the GPU vs 4 packed on it
                (--gpus-per-trial 1, then 0.25); skipped, saying so, where there is none

Ray is started once, before the timings (a cluster is started once per team, not per
sweep). Targets: ray x1 <= 1.2x optuna; ray x2 >= 1.8x the trials/hour of ray x1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sweeplab.search.ray_backend import RayOptions, start_ray
from sweeplab.search.sweep import run_sweep
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


def timed(root: Path, label: str, ray: RayOptions | None = None, **sweep: object) -> float:
    spec = {**SPEC, "sweep": {**SPEC["sweep"], **sweep}}  # type: ignore[dict-item]
    exp = spec_from_dict(spec)
    if exp.sweep.backend == "ray" and ray is None:
        ray = RayOptions()
    store = Store.resolve(root / label)
    started = time.perf_counter()
    result = run_sweep(exp, store, ray=ray)
    seconds = time.perf_counter() - started
    assert result.counts["complete"] == exp.sweep.trials, result.counts
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    SPEC["sweep"]["trials"] = args.trials  # type: ignore[index]
    import torch

    torch.set_num_threads(1)  # as each Ray trial with 1 CPU (OMP_NUM_THREADS=1)
    start_ray(RayOptions())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        optuna_s = timed(root, "optuna")
        ray1 = timed(root, "ray1", backend="ray", max_concurrent=1)
        ray2 = timed(root, "ray2", backend="ray", max_concurrent=2)
        gpu = torch.cuda.is_available()
        if gpu:
            one, packed = RayOptions(gpus_per_trial=1), RayOptions(gpus_per_trial=0.25)
            gpu1 = timed(root, "gpu1", one, backend="ray", max_concurrent=1)
            gpu4 = timed(root, "gpu4", packed, backend="ray", max_concurrent=4)
    n = args.trials
    print(f"{n} trials, 5 epochs each, MLP on digits")
    print(f"optuna backend:            {optuna_s:7.1f} s   {3600 * n / optuna_s:7.0f} trials/h")
    print(f"ray backend, 1 at a time:  {ray1:7.1f} s   {3600 * n / ray1:7.0f} trials/h")
    print(f"ray backend, 2 at a time:  {ray2:7.1f} s   {3600 * n / ray2:7.0f} trials/h")
    print(f"ray x1 / optuna wall time: {ray1 / optuna_s:.2f}x (target <= 1.2x)")
    print(f"trials/hour, 2 workers / 1: {ray1 / ray2:.2f}x (target >= 1.8x)")
    if not gpu:
        print("GPU packing (1 vs 4 trials on one GPU): skipped, this machine has no CUDA GPU")
        return
    print(f"GPU, 1 trial at a time:    {gpu1:7.1f} s   {3600 * n / gpu1:7.0f} trials/h")
    print(f"GPU, 4 packed (0.25 each): {gpu4:7.1f} s   {3600 * n / gpu4:7.0f} trials/h")
    print(f"trials/hour, 4 packed / 1 on the GPU: {gpu1 / gpu4:.2f}x")


if __name__ == "__main__":
    main()
