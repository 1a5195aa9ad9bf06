"""What watching a trial costs on the default sweep: MLflow's system metrics and the
mid-trial checkpoints, each on and off, side by side.

The default sweep (experiments/mlp_digits.yaml, 24 trials, its seed), as a user runs it,
four ways, each --repeats times in turn (so a slow minute of the machine falls on all):

    bare            tracking.system_metrics: null, train.checkpoint_every: null
    system metrics  tracking.system_metrics: 10 (the default)
    checkpoints     train.checkpoint_every: 5m (the default)
    default         both, as `make sweep` runs

Each: the command's wall time, and the seconds inside Lightning's fits (the trials'
fit_seconds, which leave out the process's start-up and the sweep's end). The peak memory
of each trial is measured in every row (it reads the kernel's figure once per trial).
Targets: system metrics <= 1.02x, checkpoints <= 1.03x the bare sweep's wall time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tiny import TINY_HELP, TINY_SWEEP  # bench/tiny.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "mlp_digits.yaml"

WAYS = {
    "bare": ["tracking.system_metrics=null", "train.checkpoint_every=null"],
    "system metrics": ["train.checkpoint_every=null"],
    "checkpoints": ["tracking.system_metrics=null"],
    "default": [],
}
TARGETS = {"system metrics": 1.02, "checkpoints": 1.03}


def sweep(store: Path, values: list[str], tiny: bool) -> tuple[float, float]:
    """(wall seconds, seconds inside the fits) of one default sweep."""
    sets = [arg for value in values for arg in ("--set", value)]
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "sweeplab", "sweep", str(SPEC), "-q", "--store", str(store)]
        + sets
        + (TINY_SWEEP if tiny else []),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"the sweep failed:\n{out.stderr[-2000:]}")
    import optuna

    study = optuna.load_study(study_name="mlp-digits", storage=f"sqlite:///{store / 'optuna.db'}")
    return wall, sum(float(t.user_attrs.get("fit_seconds", 0.0)) for t in study.trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    repeats = 1 if args.tiny else args.repeats
    walls: dict[str, list[float]] = {way: [] for way in WAYS}
    fits: dict[str, list[float]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for way, values in WAYS.items():
                store = Path(tmp, f"{way.replace(' ', '-')}-{rep}")
                wall, inside = sweep(store, values, args.tiny)
                walls[way].append(wall)
                fits[way].append(inside)
    size = "tiny" if args.tiny else "24 trials"
    print(f"the default sweep ({size}), {repeats} runs of each way in turn; medians")
    bare_wall, bare_fits = statistics.median(walls["bare"]), statistics.median(fits["bare"])
    for way in WAYS:
        wall, inside = statistics.median(walls[way]), statistics.median(fits[way])
        line = (
            f"{way:<15} wall {wall:6.1f} s = {wall / bare_wall:.3f}x, "
            f"inside the fits {inside:6.1f} s = {inside / bare_fits:.3f}x"
        )
        if way in TARGETS:
            met = wall / bare_wall <= TARGETS[way]
            line += f" ({'met' if met else 'MISSED'}: wall <= {TARGETS[way]}x)"
        print(line, flush=True)
    print(
        "each run's wall: "
        + "; ".join(f"{w} {', '.join(f'{s:.1f}' for s in walls[w])}" for w in WAYS)
    )


if __name__ == "__main__":
    main()
