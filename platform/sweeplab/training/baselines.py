"""A yardstick for a sweep: the simple models a data scientist tries first, fit on the
same split (``tracking.baselines``).

Each baseline is a scikit-learn estimator with its library defaults, fit on the
training and validation rows together (the sweep's trials train on the first and are
chosen on the second, so both have been seen by the time a model is registered) and
scored on the sweep's own test rows with the sweep's test metric: ``test_acc`` for a
classifier, ``test_rmse`` in the target's units for a regressor. Defaults, not tuned
ones: a yardstick that is searched as hard as the network is a second sweep.

``tracking.baselines`` unset (auto) fits them when the training and validation rows
hold at most ``AUTO_MAX_CELLS`` values (digits' 1,527 × 64 is 0.1 M): an RBF SVC's fit
grows with the square of the rows, so past that a user asks for them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sweeplab.data.split import Split
    from sweeplab.spec import Experiment

AUTO_MAX_CELLS = 2_000_000  # rows × features of train + validation


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """One baseline's score on the test rows and its fit time."""

    name: str  # logistic, ridge, svc, svr, knn, hgb
    metric: str  # test_acc (higher is better) or test_rmse (lower)
    value: float
    seconds: float

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "test_acc"

    def beats(self, value: float) -> bool:
        """True when this baseline scored better than ``value`` on its metric; by more
        than float error (a trial's test accuracy is a float32 mean, this a float64)."""
        margin = 1e-6 * max(1.0, abs(value))
        return self.value > value + margin if self.higher_is_better else self.value < value - margin


def wanted(exp: Experiment, split: Split) -> bool:
    """Whether a sweep of ``exp`` on ``split`` fits baselines at its end."""
    if not exp.model.supervised or exp.tracking.baselines is False:
        return False
    if not isinstance(split.x_train, np.ndarray):  # a streamed folder: not held in memory
        return False
    if exp.tracking.baselines:
        return True
    rows = len(split.x_train) + len(split.x_val)
    return rows * split.n_features <= AUTO_MAX_CELLS


def fit_baselines(split: Split, *, seed: int) -> list[Baseline]:
    """The baselines of ``split``'s task, each fit on train + validation and scored on
    test, in the order they are listed in the README."""
    y = np.concatenate([split.y_train, split.y_val])
    classify = split.task == "classification"
    if split.vocab_size:  # a text: the words it has, in any order
        ids = np.concatenate([np.asarray(split.x_train), np.asarray(split.x_val)])
        x = _bag_of_words(ids, split.vocab_size)
        x_test = _bag_of_words(np.asarray(split.x_test), split.vocab_size)
        estimators = _estimators(classify, seed)[:1]  # logistic regression on word counts
    else:
        x, x_test = _rows(split)
        estimators = _estimators(classify, seed)
    found = []
    for name, model in estimators:
        start = time.perf_counter()
        model.fit(x, y)
        predicted = model.predict(x_test)
        seconds = time.perf_counter() - start
        if classify:
            metric, value = "test_acc", float(np.mean(predicted == split.y_test))
        else:  # targets are standardized on train: back to their units
            error = (predicted - split.y_test) * split.target_std
            metric, value = "test_rmse", float(np.sqrt(np.mean(error**2)))
        found.append(Baseline(name=name, metric=metric, value=value, seconds=seconds))
    return found


def _rows(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Train + validation rows and test rows, standardized."""
    x = split.standardized(np.concatenate([split.x_train, split.x_val]))
    x_test = split.standardized(split.x_test)
    if len(split.shape) == 3:  # images, standardized per channel: per pixel, as
        # scikit-learn's users do (a StandardScaler) and as the baselines always were
        train = x[: len(split.x_train)]  # the training rows come first in x
        mean, std = train.mean(axis=0), train.std(axis=0)
        std[std < 1e-6] = 1.0
        x, x_test = (x - mean) / std, (x_test - mean) / std
    return x, x_test


def _bag_of_words(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Each text's count of each word of the vocabulary (padding left out), as float32."""
    counts = np.zeros((len(ids), vocab_size), dtype=np.float32)
    np.add.at(counts, (np.repeat(np.arange(len(ids)), ids.shape[1]), ids.reshape(-1)), 1.0)
    counts[:, 0] = 0.0
    return counts


class _Estimator(Protocol):
    def fit(self, x: np.ndarray, y: np.ndarray) -> object: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


def _estimators(classify: bool, seed: int) -> list[tuple[str, _Estimator]]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.svm import SVC, SVR

    if classify:
        return [
            ("logistic", LogisticRegression(max_iter=2000)),
            ("svc", SVC()),
            ("knn", KNeighborsClassifier()),
            ("hgb", HistGradientBoostingClassifier(random_state=seed)),
        ]
    return [
        ("ridge", Ridge()),
        ("svr", SVR()),
        ("knn", KNeighborsRegressor()),
        ("hgb", HistGradientBoostingRegressor(random_state=seed)),
    ]
