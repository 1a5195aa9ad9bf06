"""What data augmentation changes on digits: the CNN of experiments/cnn_digits.yaml
trained with each ``data.augment`` setting at the same budget (30 epochs, early stopping
on val_loss as in the spec, the best epoch's weights tested).

Two training-set sizes (the whole training split, and a quarter of it, where a
regularizer has more to do), seeds 0, 1, 2 each; every fit runs in this process, one
after another. Printed: each setting's mean test accuracy and test loss (± the standard
deviation over seeds), their change from no augmentation, and seconds per fit.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

from sweeplab.logs import quiet_libraries
from sweeplab.spec import spec_from_dict
from sweeplab.training.fit import fit

SPEC: dict[str, Any] = {
    "name": "augment-bench",
    "model": {
        "arch": "cnn",
        "channels": [32, 64],
        "kernel_size": 3,
        "pool": "max",
        "norm": "batch",
        "dropout": 0.25,
        "head": [64],
    },
    "data": {"dataset": "digits"},
    "train": {
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 1e-3,
        "batch_size": 64,
        "max_epochs": 30,
        "schedule": {"name": "cosine", "warmup_epochs": 2},
        "label_smoothing": 0.05,
        "early_stopping": {"monitor": "val_loss", "patience": 8},
    },
    "objective": {"metric": "val_loss", "mode": "min"},
}

SETTINGS: dict[str, dict[str, float]] = {
    "none": {},
    "flip 0.5": {"flip": 0.5},
    "shift 1": {"shift": 1},
    "erase 0.25": {"erase": 0.25},
    "noise 0.2": {"noise": 0.2},
    "mixup 0.2": {"mixup": 0.2},
    "shift 1 + erase 0.25": {"shift": 1, "erase": 0.25},
}


def one_fit(
    augment: dict[str, float], fraction: float, seed: int, epochs: int
) -> tuple[float, ...]:
    spec = {
        **SPEC,
        "data": {**SPEC["data"], "augment": augment, "label_fraction": fraction},
        "train": {**SPEC["train"], "max_epochs": epochs, "seed": seed},
    }
    started = time.perf_counter()
    result = fit(spec_from_dict(spec))
    seconds = time.perf_counter() - started
    return result.test["test_acc"], result.test["test_loss"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    tiny = parser.parse_args().tiny
    quiet_libraries()
    seeds, epochs = ([0], 1) if tiny else ([0, 1, 2], 30)
    settings = dict(list(SETTINGS.items())[:2]) if tiny else SETTINGS
    fractions = [1.0] if tiny else [1.0, 0.25]
    print(f"augmentation on digits: CNN 32-64, {epochs} epochs max, seeds {seeds}")
    for fraction in fractions:
        print(f"\ntraining rows: {fraction:.0%} of the training split")
        print(f"{'setting':<22} {'test_acc':>16} {'change':>8} {'test_loss':>16} {'s/fit':>6}")
        base = None
        for name, augment in settings.items():
            runs = [one_fit(augment, fraction, seed, epochs) for seed in seeds]
            acc = [r[0] for r in runs]
            loss = [r[1] for r in runs]
            mean_acc = statistics.fmean(acc)
            base = mean_acc if base is None else base
            sd_acc = statistics.pstdev(acc)
            sd_loss = statistics.pstdev(loss)
            print(
                f"{name:<22} {mean_acc:>9.4f} ± {sd_acc:.4f} {mean_acc - base:>+8.4f} "
                f"{statistics.fmean(loss):>9.4f} ± {sd_loss:.4f} "
                f"{statistics.fmean(r[2] for r in runs):>6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
