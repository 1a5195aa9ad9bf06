"""Several trained models as one: the (weighted) mean of their outputs.

``sweep.final: ensemble`` averages a trial's restarts; ``top_ensemble`` weighs the fits
of the top trials by greedy ensemble selection on the validation split (``select``).
Each member is an ``InferenceModel`` taking the same raw rows (its own standardization
inside), so their outputs are of one kind: class probabilities, whose weighted mean is
again a distribution, or values in the target's units. The mean runs inside the
module, so the exported program is one ``torch.export`` graph that serves like any
other version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sweeplab.models.base import InferenceModel

# what an ensemble can average: outputs of one meaning on every member
AVERAGED = ("probabilities", "values")
# rounds of greedy selection: Caruana et al. (2004) report that the gain levels off
# well before 50; AutoGluon's weighted ensemble takes 25
ROUNDS = 25


class EnsembleModel(nn.Module):
    """The mean output of ``members``, all of one output kind (``AVERAGED``), each
    weighed by its share of ``weights`` (equal shares when None)."""

    weights: torch.Tensor  # the shares, summing to 1 (a buffer: saved and exported)

    def __init__(
        self, members: Sequence[InferenceModel], *, weights: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        kinds = {m.output for m in members}
        if not members or len(kinds) != 1 or not kinds <= set(AVERAGED):
            raise ValueError(
                f"an ensemble averages members of one output kind of {AVERAGED}, "
                f"but got {sorted(kinds) or 'no members'}"
            )
        shares = [1.0] * len(members) if weights is None else list(weights)
        if len(shares) != len(members) or min(shares) <= 0:
            raise ValueError(
                f"weights must be {len(members)} numbers > 0, one per member, but got {shares}"
            )
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(shares) / sum(shares))
        tokenizers = {str(getattr(m, "tokenizer", "")) for m in members}
        if len(tokenizers) > 1:
            raise ValueError(
                "an ensemble of text models takes one tokenizer, but its members were "
                "trained with different ones (data.text differs between them)"
            )
        self.output = members[0].output
        self.labels = list(members[0].labels)
        self.tokenizer = tokenizers.pop()  # a text's: one encoding for every member

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(x) for member in self.members])
        weights = self.weights.reshape(-1, *([1] * (outputs.dim() - 1)))
        return (outputs * weights).sum(dim=0)


def select(
    predictions: Sequence[np.ndarray], target: np.ndarray, *, output: str, rounds: int = ROUNDS
) -> list[int]:
    """Greedy ensemble selection with replacement (Caruana et al., 2004): each round adds
    the candidate whose inclusion gives the mean prediction the lowest loss on
    ``target``, and the bag of the best round is kept. Returns how many times each
    candidate was taken (0: left out). Ties go to the earlier candidate (the better
    ranked trial).

    The loss is the log loss of the mean class probabilities (``output`` probabilities)
    or the mean squared error of the mean values: a validation split of a few hundred
    rows changes its accuracy in steps of one example, so accuracy would leave most
    rounds tied, where the log loss still tells the candidates apart.

    Written here because no maintained package offers it apart from an AutoML system:
    auto-sklearn's and AutoGluon's selection take their own model objects, and neither
    installs beside this project's scikit-learn and torch.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, but got {rounds}.")
    if output not in AVERAGED:
        raise ValueError(f"output must be one of {AVERAGED}, but got {output!r}.")
    preds = [np.asarray(p, dtype=np.float64).reshape(len(target), -1) for p in predictions]
    counts = [0] * len(preds)
    total = np.zeros_like(preds[0])
    best_loss, best_counts = math.inf, counts
    for taken in range(1, rounds + 1):
        losses = [_loss((total + p) / taken, target, output) for p in preds]
        pick = int(np.argmin(losses))  # the first of equal losses
        total += preds[pick]
        counts = [*counts[:pick], counts[pick] + 1, *counts[pick + 1 :]]
        if losses[pick] < best_loss - 1e-12:  # not float error: a bag of one, repeated
            best_loss, best_counts = losses[pick], counts
    return best_counts


def _loss(mean: np.ndarray, target: np.ndarray, output: str) -> float:
    if output == "probabilities":
        chosen = mean[np.arange(len(target)), target.astype(int)]
        return float(-np.mean(np.log(np.clip(chosen, 1e-12, None))))
    return float(np.mean((mean[:, 0] - target) ** 2))
