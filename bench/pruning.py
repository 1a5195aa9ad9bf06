"""Pruning pays: a 40-trial sweep with Optuna's Hyperband pruner vs no pruner.

Same spec, TPE sampler and seed (MLP on digits; lr, width and dropout searched;
81 epochs at most, what a user gives a run that must not stop short; Hyperband with
sweeplab's defaults: min_resource 1, max_resource 81, reduction factor 3, so its rungs
are at 1, 3, 9, 27 and 81 epochs). Compute is the epochs trained (every trial, pruned
ones up to where they stopped) and the sweep's wall time; each sweep's best validation
accuracy is compared, and the compute each needed until its best so far first came
within 0.5 points of the unpruned sweep's best.

Target: >= 3x less compute with Hyperband, at a best score within 0.5 points.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

from sweeplab.search import run_sweep
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store

SPEC: dict[str, Any] = {
    "name": "bench-pruning",
    "model": {"arch": "mlp", "hidden": [64]},
    "data": {"dataset": "digits"},
    "train": {"optimizer": "adam", "batch_size": 64, "max_epochs": 81},
    "objective": {"metric": "val_acc", "mode": "max"},
    "search_space": {
        "train.lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
        "model.hidden": {"type": "categorical", "choices": [[16], [64], [256], [128, 64]]},
        "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    },
    "sweep": {"trials": 40, "sampler": "tpe", "seed": 0},
}
WITHIN = 0.005  # half a point of accuracy


def epochs_of(trial: optuna.trial.FrozenTrial) -> int:
    if "epochs" in trial.user_attrs:
        return int(trial.user_attrs["epochs"])
    return max(trial.intermediate_values, default=-1) + 1  # pruned: reported epochs


def sweep(root: Path, pruner: str, trials: int) -> dict[str, Any]:
    spec = {**SPEC, "sweep": {**SPEC["sweep"], "trials": trials, "pruner": pruner}}
    store = Store.resolve(root / pruner)
    started = time.perf_counter()
    result = run_sweep(spec_from_dict(spec), store, name=pruner)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=pruner, storage=store.storage_url)
    ordered = sorted(study.trials, key=lambda t: t.number)
    return {
        "wall": wall,
        "start": min(t.datetime_start for t in ordered if t.datetime_start),
        "trials": ordered,
        "best": result.best_value,
        "counts": result.counts,
    }


def to_reach(run: dict[str, Any], threshold: float) -> tuple[int, float] | None:
    """Epochs and seconds until the best so far first reached ``threshold``."""
    epochs = 0
    for t in run["trials"]:
        epochs += epochs_of(t)
        if t.value is not None and t.state.name == "COMPLETE" and t.value >= threshold:
            return epochs, (t.datetime_complete - run["start"]).total_seconds()
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        args.trials = 3
        SPEC["train"]["max_epochs"] = 3
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {p: sweep(Path(tmp), p, args.trials) for p in ("none", "hyperband")}
    threshold = runs["none"]["best"] - WITHIN
    print(f"pruning: {args.trials} trials, MLP on digits, tpe seed 0, <= 81 epochs a trial")
    reached = {}
    for pruner, run in runs.items():
        total = sum(epochs_of(t) for t in run["trials"])
        hit = reached[pruner] = to_reach(run, threshold)
        reach = f"{hit[0]:5d} epochs {hit[1]:6.1f} s" if hit else "never"
        counts = ", ".join(f"{n} {state}" for state, n in run["counts"].as_dict().items() if n)
        print(
            f"  {pruner:9s} best val_acc {run['best']:.4f}  {total:5d} epochs "
            f"{run['wall']:6.1f} s in all ({counts}); to reach {threshold:.4f}: {reach}"
        )
    none_epochs = sum(epochs_of(t) for t in runs["none"]["trials"])
    hb_epochs = sum(epochs_of(t) for t in runs["hyperband"]["trials"])
    gap = runs["none"]["best"] - runs["hyperband"]["best"]
    epochs_ratio = none_epochs / hb_epochs
    wall_ratio = runs["none"]["wall"] / runs["hyperband"]["wall"]
    if not hb_epochs:
        raise SystemExit("hyperband ran no epochs")
    print(
        f"compute, no pruner / hyperband: epochs {epochs_ratio:.2f}x, wall time {wall_ratio:.2f}x"
    )
    if reached["none"] and reached["hyperband"]:
        print(
            "to reach the same best (within 0.5 points): epochs "
            f"{reached['none'][0] / reached['hyperband'][0]:.2f}x, wall time "
            f"{reached['none'][1] / reached['hyperband'][1]:.2f}x"
        )
    met = epochs_ratio >= 3 and gap <= WITHIN
    print(
        f"target: >= 3x less compute at a best within 0.5 points: {'met' if met else 'MISSED'} "
        f"(epochs {epochs_ratio:.2f}x, best {runs['hyperband']['best']:.4f} vs "
        f"{runs['none']['best']:.4f})"
    )


if __name__ == "__main__":
    main()
