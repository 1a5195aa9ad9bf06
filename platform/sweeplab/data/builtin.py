"""Loaders of the built-in datasets as arrays, and the seeded train/val/test split.

Every loader works offline: scikit-learn ships these datasets, and the
generated sets are drawn from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sweeplab.data.catalog import DATASETS, Task
from sweeplab.spec import DataConfig


@dataclass(frozen=True)
class Arrays:
    """Features, targets, and the labels to stratify the split on (None: no stratification)."""

    x: np.ndarray
    y: np.ndarray
    strata: np.ndarray | None


def _sklearn(name: str) -> Callable[[DataConfig], Arrays]:
    def load(cfg: DataConfig) -> Arrays:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        x = bunch.data.astype(np.float32)
        y = bunch.target
        classify = DATASETS[cfg.dataset].task == "classification"
        return Arrays(x, y.astype(np.int64 if classify else np.float32), y if classify else None)

    return load


def _xor(cfg: DataConfig) -> Arrays:
    """Four equal Gaussian clusters at (±1, ±1), label 1 where x0·x1 > 0.

    Stratifying on the cluster keeps the four clusters equal in every split,
    so a linear model is bounded by 3 clusters of 4: accuracy 0.75.
    """
    rng = np.random.default_rng(cfg.seed)
    per = max(cfg.n_samples // 4, 1)
    centers = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=np.float32)
    cluster = np.repeat(np.arange(4), per)
    x = centers[cluster] + rng.normal(0.0, cfg.noise, size=(4 * per, 2)).astype(np.float32)
    y = (cluster < 2).astype(np.int64)
    return Arrays(x.astype(np.float32), y, cluster)


def _generated(name: str) -> Callable[[DataConfig], Arrays]:
    def load(cfg: DataConfig) -> Arrays:
        from sklearn import datasets

        x, y = getattr(datasets, f"make_{name}")(
            n_samples=cfg.n_samples, noise=cfg.noise, random_state=cfg.seed
        )
        return Arrays(x.astype(np.float32), y.astype(np.int64), y)

    return load


LOADERS: dict[str, Callable[[DataConfig], Arrays]] = {
    "digits": _sklearn("digits"),
    "iris": _sklearn("iris"),
    "wine": _sklearn("wine"),
    "breast_cancer": _sklearn("breast_cancer"),
    "diabetes": _sklearn("diabetes"),
    "xor": _xor,
    "moons": _generated("moons"),
    "circles": _generated("circles"),
}


@dataclass(frozen=True)
class Split:
    """Standardized splits; ``mean``/``std`` are the training split's statistics."""

    task: Task
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    target_mean: float
    target_std: float

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_outputs(self) -> int:
        if self.task == "classification":
            return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max()) + 1)
        return 1


def split(cfg: DataConfig) -> Split:
    """The seeded, stratified split of ``cfg.dataset`` (cached: a sweep loads it once)."""
    return _split(cfg.model_dump_json())


@lru_cache(maxsize=8)
def _split(cfg_json: str) -> Split:
    from sklearn.model_selection import train_test_split

    cfg = DataConfig.model_validate_json(cfg_json)
    arrays = LOADERS[cfg.dataset](cfg)
    index = np.arange(len(arrays.x))
    strata = arrays.strata
    # Whole counts (not fractions of what is left), so equal strata stay equal in every split.
    n_test = max(round(cfg.test_fraction * len(index)), 1)
    n_val = max(round(cfg.val_fraction * len(index)), 1)
    rest, test = train_test_split(
        index,
        test_size=n_test,
        random_state=cfg.seed,
        stratify=None if strata is None else strata,
    )
    train, val = train_test_split(
        rest,
        test_size=n_val,
        random_state=cfg.seed,
        stratify=None if strata is None else strata[rest],
    )
    x, y = arrays.x, arrays.y
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0  # constant pixels (digits' borders) stay at 0 after centring
    task = DATASETS[cfg.dataset].task
    t_mean, t_std = 0.0, 1.0
    if task == "regression":
        t_mean, t_std = float(y[train].mean()), float(y[train].std() or 1.0)

    def fx(i: np.ndarray) -> np.ndarray:
        return ((x[i] - mean) / std).astype(np.float32)

    def fy(i: np.ndarray) -> np.ndarray:
        return y[i] if task == "classification" else ((y[i] - t_mean) / t_std).astype(np.float32)

    return Split(
        task,
        fx(train),
        fy(train),
        fx(val),
        fy(val),
        fx(test),
        fy(test),
        mean.astype(np.float32),
        std.astype(np.float32),
        t_mean,
        t_std,
    )
