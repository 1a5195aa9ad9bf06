"""A trial's restarts as one model: the mean of their outputs (``sweep.final: ensemble``).

Each member is an ``InferenceModel`` of the same spec and split (the same
standardization inside), so their outputs are of one kind: class probabilities,
whose mean is again a distribution, or values in the target's units. The mean runs
inside the module, so the exported program is one ``torch.export`` graph that serves
like any other version.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sweeplab.models.base import InferenceModel

# what an ensemble can average: outputs of one meaning on every member
AVERAGED = ("probabilities", "values")


class EnsembleModel(nn.Module):
    """The mean output of ``members``, all of one output kind (``AVERAGED``)."""

    def __init__(self, members: Sequence[InferenceModel]) -> None:
        super().__init__()
        kinds = {m.output for m in members}
        if not members or len(kinds) != 1 or not kinds <= set(AVERAGED):
            raise ValueError(
                f"an ensemble averages members of one output kind of {AVERAGED}, "
                f"but got {sorted(kinds) or 'no members'}"
            )
        self.members = nn.ModuleList(members)
        self.output = members[0].output
        self.labels = list(members[0].labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)
