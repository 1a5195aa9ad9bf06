"""Local workers: `sweeplab sweep SPEC --workers 2` against one worker, measured side by
side in one run. Target (issue 20): trials per hour, 2 workers / 1 >= 1.7x on 2 cores.

Each run is the whole command, start-up included, on a fresh store; trials per hour is
trials / wall time. Two specs:

- the default spec as it is (experiments/mlp_digits.yaml: 24 trials, 2 restarts, TPE,
  hyperband pruning, early stopping). How many epochs its trials train depends on what
  was sampled and pruned, which differs between runs (2 workers draw from two streams):
  each run's epochs are printed beside its time.
- the same spec with a fixed amount of work per trial (20 epochs, no pruner, no early
  stopping, only lr, weight decay and dropout searched): the ratio that compares like
  with like, on which the target is judged.

One worker trains with torch's default threads (all cores); each of 2 workers has one.
On this small MLP one thread is faster, so one worker is also timed with one thread
(OMP_NUM_THREADS=1), and the ratio against it printed too.

On a machine with CUDA GPUs, the same with 1, 2 and 4 workers on GPU 0 (--gpus 0);
without one it says so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from tiny import TINY_HELP, TINY_SWEEP  # bench/tiny.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "mlp_digits.yaml"
EXTRA: list[str] = []  # `sweeplab sweep` options of every run (--tiny: a smaller sweep)
RUNS = {  # name: (workers, environment)
    "1 worker": (1, {}),
    "2 workers": (2, {}),
    "1 worker, 1 torch thread": (1, {"OMP_NUM_THREADS": "1"}),
}


def sweep(spec: Path, store: Path, workers: int, *extra: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "sweeplab", "sweep", str(spec), "--store", str(store)]
    options = ["--no-smoke", "-q", "--workers", str(workers)]
    out = subprocess.run(
        [*command, *options, "--set", "tracking.register_as=null", *EXTRA, *extra],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return seconds


def epochs(store: Path) -> int:
    """Epochs the sweep's trials reported (each trial's first restart)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{store / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return sum(len(t.intermediate_values) for t in study.trials)


def fixed_work_spec(folder: Path) -> Path:
    """The default spec with the same work in every trial."""
    spec = yaml.safe_load(SPEC.read_text())
    spec["train"].update(max_epochs=20, early_stopping=None)
    spec["sweep"]["pruner"] = "none"
    spec["search_space"] = {
        "train.lr": {"type": "float", "low": 3.0e-4, "high": 1.0e-2, "log": True},
        "train.weight_decay": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
        "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    }
    path = folder / "fixed_work.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def compare(title: str, spec: Path, trials: int) -> float:
    """Each run of RUNS on ``spec``; returns 2 workers / 1 in trials per hour."""
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (workers, env) in RUNS.items():
            store = Path(tmp, str(len(seconds)))
            seconds[name] = sweep(spec, store, workers, env=env)
            work = epochs(store)
            per_hour = trials * 3600 / seconds[name]
            print(f"  {name:26} {seconds[name]:6.1f} s  {per_hour:5.0f} trials/hour  {work} epochs")
    two = seconds["2 workers"]
    ratio = seconds["1 worker"] / two
    print(f"  {title}: 2 workers / 1: {ratio:.2f}x trials/hour")
    against = seconds["1 worker, 1 torch thread"] / two
    print(f"  {title}: 2 workers / 1 worker with 1 torch thread: {against:.2f}x trials/hour")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        EXTRA.extend(TINY_SWEEP)
    trials = 2 if args.tiny else int(yaml.safe_load(SPEC.read_text())["sweep"]["trials"])
    if not args.tiny:  # tiny: the fixed-work comparison alone runs the same code paths
        print(f"default spec as it is, {trials} trials, start-up included")
        compare("as it is", SPEC, trials)
    print(f"default spec, fixed work per trial, {trials} trials, start-up included")
    with tempfile.TemporaryDirectory() as tmp:
        ratio = compare("fixed work", fixed_work_spec(Path(tmp)), trials)
    verdict = "met" if ratio >= 1.7 else "missed"
    print(f"target: 2 workers / 1 >= 1.7x on the fixed work: {ratio:.2f}x ({verdict})")
    gpus = 0 if args.tiny else _gpus()
    if not gpus:
        print("GPU: none visible here; the 1/2/4 workers on one GPU figure was not measured")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2, 4):
            s = sweep(SPEC, Path(tmp, f"gpu{workers}"), workers, "--gpus", "0", env={})
            print(f"GPU 0, {workers} workers: {s:.1f} s ({trials * 3600 / s:.0f} trials/h)")


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


if __name__ == "__main__":
    main()
