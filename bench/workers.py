"""Local workers: `sweeplab sweep SPEC --workers 2` against one worker, on the default
spec (experiments/mlp_digits.yaml), measured side by side in one run.

Each run is the whole command, start-up included, on a fresh store, with the same
trial count (TRIALS, one seed each to keep the run short); trials per hour is
trials / wall time. Target (issue 20): 2 workers / 1 >= 1.7x on 2 cores.
On a machine with CUDA GPUs, the same with 1, 2 and 4 workers on GPU 0 (--gpus 0),
and the GPU each worker's trials ran on; without one it says so.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "mlp_digits.yaml"


def sweep(store: Path, workers: int, trials: int, *extra: str) -> float:
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeplab",
            "sweep",
            str(SPEC),
            "--store",
            str(store),
            "--no-smoke",
            "-q",
            "--workers",
            str(workers),
            "--set",
            f"sweep.trials={trials}",
            "--set",
            "sweep.restarts=1",
            "--set",
            "tracking.register_as=null",
            *extra,
        ],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = sweep(Path(tmp, "one"), 1, args.trials)
        two = sweep(Path(tmp, "two"), 2, args.trials)
    per_hour = [args.trials * 3600 / s for s in (one, two)]
    print(f"default spec, {args.trials} trials, one seed each, start-up included")
    print(f"1 worker:  {one:.1f} s  ({per_hour[0]:.0f} trials/hour)")
    print(f"2 workers: {two:.1f} s  ({per_hour[1]:.0f} trials/hour)")
    ratio = per_hour[1] / per_hour[0]
    verdict = "met" if ratio >= 1.7 else "missed"
    print(f"trials/hour, 2 workers / 1: {ratio:.2f}x (target >= 1.7x: {verdict})")
    gpus = _gpus()
    if not gpus:
        print("GPU: none visible here; the 1/2/4 workers on one GPU figure was not measured")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2, 4):
            s = sweep(Path(tmp, f"gpu{workers}"), workers, args.trials, "--gpus", "0")
            print(f"GPU 0, {workers} workers: {s:.1f} s ({args.trials * 3600 / s:.0f} trials/h)")


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


if __name__ == "__main__":
    main()
