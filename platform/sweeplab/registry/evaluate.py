"""Score a registered model on its held-out test split: what a promotion guard compares.

The test split is rebuilt from the version's spec (``data`` is seeded, so the same
rows come back) and checked against the hash recorded at registration. The score
follows what the model outputs:

    probabilities   test_accuracy         higher is better
    values          test_rmse             lower  (in the target's units)
    anomaly_score   test_auroc            higher (held-out classes are the anomalies)
                    test_reconstruction   lower  (no held-out classes: mean error)
    samples         none: a generator has no labelled test split
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweeplab.registry.lineage import data_hash
from sweeplab.spec import Experiment

CHUNK = 1024  # rows per forward pass when scoring rows read from disk


@dataclass(frozen=True)
class HeldOut:
    # raw rows, as a client sends them; a streamed folder's stay on disk (``ImageFiles``,
    # whose pixels are their raw values), read CHUNK rows at a time when scored
    x: Any
    y: np.ndarray  # labels, or targets in their own units
    holdout: tuple[int, ...]
    hash: str


@dataclass(frozen=True)
class Score:
    metric: str
    value: float
    mode: str  # "max" or "min"

    def worse_than(self, other: Score) -> bool:
        if self.mode == "max":
            return self.value < other.value
        return self.value > other.value

    def __str__(self) -> str:
        return f"{self.metric} = {self.value:.4f}"


def held_out(exp: Experiment) -> HeldOut:
    """The held-out test rows of ``exp``'s data section (fold 0)."""
    from sweeplab.data.split import split
    from sweeplab.data.stream import ImageFiles

    s = split(exp.data)
    x = s.x_test if isinstance(s.x_test, ImageFiles) else s.raw(s.x_test)
    y = s.units(s.y_test)
    return HeldOut(x, y, s.holdout, data_hash(x, y))


def predict_rows(model: Any, x: Any, chunk: int = CHUNK) -> np.ndarray:
    """``predict`` over every row of ``x``: at once for an array, ``chunk`` rows at a
    time for rows read from disk."""
    if isinstance(x, np.ndarray):
        return predict(model, x)
    starts = range(0, len(x), chunk)  # each read, scored and let go: only outputs are kept
    return np.concatenate(
        [predict(model, np.asarray(x[i : i + chunk], np.float32)) for i in starts]
    )


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    import torch

    if isinstance(model, torch.nn.Module) and not _exported(model):
        model.eval()  # an exported program is in eval mode already, and refuses eval()
    with torch.no_grad():
        out: np.ndarray = model(torch.as_tensor(x, dtype=torch.float32)).cpu().numpy()
    return out


def _exported(model: Any) -> bool:
    """A ``torch.export`` program's module (a portable version), not an eager module."""
    import torch.fx

    return isinstance(model, torch.fx.GraphModule)


def score(model: Any, test: HeldOut) -> Score | None:
    """``model`` (an InferenceModel) on ``test``; None for a generator."""
    output = getattr(model, "output", "probabilities")
    if output == "samples":
        return None
    out = predict_rows(model, test.x)
    if output == "probabilities":
        accuracy = float((out.argmax(axis=1) == test.y).mean())
        return Score("test_accuracy", accuracy, "max")
    if output == "values":
        rmse = math.sqrt(float(np.mean((out.reshape(len(test.y), -1)[:, 0] - test.y) ** 2)))
        return Score("test_rmse", rmse, "min")
    if test.holdout:
        from sklearn.metrics import roc_auc_score

        anomaly = np.isin(test.y, test.holdout)
        return Score("test_auroc", float(roc_auc_score(anomaly, out)), "max")
    return Score("test_reconstruction", float(np.mean(out)), "min")
