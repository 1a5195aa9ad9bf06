"""``models.ensemble``: the weighted mean of members, and greedy ensemble selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweeplab.models.ensemble import EnsembleModel, select


class _Fixed(torch.nn.Module):
    """A member that answers the same probabilities for every row."""

    output = "probabilities"
    labels = ("a", "b")

    def __init__(self, p: list[float]) -> None:
        super().__init__()
        self.p = torch.tensor(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.p.expand(len(x), -1)


def test_a_weighted_ensemble_is_the_weighted_mean_of_its_members() -> None:
    members = [_Fixed([1.0, 0.0]), _Fixed([0.0, 1.0])]
    out = EnsembleModel(members, weights=[3, 1])(torch.zeros(2, 4))  # type: ignore[arg-type]
    np.testing.assert_allclose(out.numpy(), [[0.75, 0.25]] * 2)
    even = EnsembleModel(members)(torch.zeros(1, 4))  # type: ignore[arg-type]
    np.testing.assert_allclose(even.numpy(), [[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"weights must be 2 numbers > 0"):
        EnsembleModel(members, weights=[1, 0])  # type: ignore[arg-type]


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def test_selection_combines_members_that_are_right_on_different_rows() -> None:
    y = np.array([0, 0, 1, 1])
    # a is sure and right on the first half, unsure on the second; b the other way
    a = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    b = a[::-1, ::-1].copy()
    poor = np.full((4, 2), 0.5)
    counts = select([poor, a, b], y, output="probabilities")
    assert counts[0] == 0 and counts[1] > 0 and counts[2] > 0
    bag = (counts[1] * a + counts[2] * b) / (counts[1] + counts[2])
    assert _log_loss(bag, y) < min(_log_loss(a, y), _log_loss(b, y))


def test_selection_keeps_the_best_round_never_worse_than_the_best_member() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=50)
    preds = [rng.dirichlet(np.ones(3), size=50) for _ in range(6)]
    counts = select(preds, y, output="probabilities", rounds=10)
    bag = sum(n * p for n, p in zip(counts, preds, strict=True)) / sum(counts)
    assert _log_loss(bag, y) <= min(_log_loss(p, y) for p in preds) + 1e-12
    # one candidate alone, and one far better than the rest, is taken alone
    assert select([preds[0]], y, output="probabilities") == [1]
    sure = np.eye(3)[y] * 0.98 + 0.01
    assert select([preds[1], sure], y, output="probabilities") == [0, 1]


def test_selection_of_values_minimizes_the_squared_error() -> None:
    y = np.array([1.0, 2.0, 3.0])
    low, high = y - 1.0, y + 1.0  # their mean is exact
    counts = select([low, high], y, output="values", rounds=4)
    assert counts == [1, 1] or counts == [2, 2]
    with pytest.raises(ValueError, match=r"rounds must be >= 1, but got 0"):
        select([low], y, output="values", rounds=0)
