"""What each member of a fused batch keeps for itself (``training.fused``): its dropout
rate inside a batched forward, and when its trial ends.

A batch holds one or several trials, each with its restarts as members. The members
of different trials may differ in the fusible fields (``training.fusing.FUSIBLE``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn

from sweeplab.compat import early_stopping_check
from sweeplab.spec import Experiment

DROPOUTS = (nn.Dropout, nn.Dropout2d)


class MemberDropout(nn.Module):
    """nn.Dropout (``channels``: nn.Dropout2d) whose rate is a buffer, so that under
    ``vmap`` over ``functional_call`` each member reads its own from the stacked
    buffers. torch's dropout takes its rate as a Python number: one for all members."""

    def __init__(self, *, channels: bool) -> None:
        super().__init__()
        self.channels = channels
        self.rate: torch.Tensor
        self.register_buffer("rate", torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        rate = self.rate
        # Dropout2d draws one value per (row, channel): a (..., 1, 1) slice of the input
        draws = torch.rand_like(x[..., :1, :1]) if self.channels else torch.rand_like(x)
        return x * (draws >= rate) / (1 - rate)


def dropout_rates(members: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """Each dropout layer's rate in every member, by the layer's name (``name.rate``)."""
    names = [name for name, layer in members[0].named_modules() if isinstance(layer, DROPOUTS)]
    rates = {}
    for name in names:
        values = [float(getattr(m.get_submodule(name), "p", 0.0)) for m in members]
        rates[f"{name}.rate"] = torch.tensor(values)
    return rates


def with_member_dropout(template: nn.Module) -> nn.Module:
    """``template`` with each dropout layer a MemberDropout (in place)."""
    for name, layer in list(template.named_modules()):
        if isinstance(layer, DROPOUTS):
            template.set_submodule(name, MemberDropout(channels=isinstance(layer, nn.Dropout2d)))
    return template


def row_losses(
    trials: Sequence[tuple[Experiment, Sequence[nn.Module]]],
) -> list[tuple[nn.Module, range]]:
    """Each trial's loss per row (its own label smoothing) with the members it covers, as
    a batch counts them: one entry for all when every trial's loss is the same."""
    out: list[tuple[nn.Module, range]] = []
    start = 0
    for t, (exp, members) in enumerate(trials):
        span = range(start, start + len(members))
        start = span.stop
        if out and exp.train.label_smoothing == trials[t - 1][0].train.label_smoothing:
            out[-1] = (out[-1][0], range(out[-1][1].start, span.stop))
            continue
        per_row = copy.copy(members[0].get_submodule("loss_fn"))  # the spec's loss, per row
        setattr(per_row, "reduction", "none")  # noqa: B010 (torch's losses read it per call)
        out.append((per_row, span))
    return out


def aurocs(scores: list[tuple[torch.Tensor, torch.Tensor]], members: list[int]) -> torch.Tensor:
    """The AUROC of each member of ``members``: ``scores``, an epoch's (members' errors,
    (k, rows); which rows are anomalies) per validation batch."""
    from torchmetrics.functional.classification import binary_auroc

    errors = torch.cat([s for s, _ in scores], dim=1)
    labels = torch.cat([a for _, a in scores]).long()
    return torch.stack([binary_auroc(errors[m], labels) for m in members])


class EpochSums:
    """Each member's sums of a metric over an epoch's batches, and the rows counted."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, name: str, total: torch.Tensor, count: int) -> None:
        sums = self._sums.get(name)
        self._sums[name] = total if sums is None else sums + total
        self._counts[name] = self._counts.get(name, 0) + count

    def means(self) -> dict[str, torch.Tensor]:
        """Each metric's mean per member; the sums start again."""
        means = {name: total / self._counts[name] for name, total in self._sums.items()}
        self._sums.clear()
        self._counts.clear()
        return means


class TrialEnds:
    """When each trial of a batch ends: at its own ``max_epochs``, by its own early
    stopping (Lightning's EarlyStopping, one per trial, asked through ``compat``), or
    when all its members diverged. Decisions only: ``FusedModule.end`` acts on them."""

    def __init__(self, exps: Sequence[Experiment]) -> None:
        self.max_epochs = [exp.train.max_epochs for exp in exps]
        self.stoppers = [_stopper(exp) for exp in exps]
        self.ended_at: list[int | None] = [None] * len(exps)  # the last epoch it trained
        self.reasons: list[str | None] = [None] * len(exps)  # its early stopping's message

    def running(self, t: int) -> bool:
        return self.ended_at[t] is None

    def due(self, t: int, epoch: int, values: dict[str, float], alive: bool) -> bool:
        """Whether trial ``t`` ends with ``epoch``, given its metrics (the mean of its
        members still alive) and whether any member is alive."""
        if not alive:
            return True
        stopper = self.stoppers[t]
        if stopper is not None:
            current = torch.tensor(values.get(stopper.monitor, float("nan")))
            should_stop, reason = early_stopping_check(stopper, current)
            if should_stop:
                self.reasons[t] = reason
                return True
        return epoch + 1 >= self.max_epochs[t]

    def state_dict(self) -> dict[str, Any]:
        return {
            "stoppers": [s.state_dict() if s is not None else None for s in self.stoppers],
            "ended_at": list(self.ended_at),
            "reasons": list(self.reasons),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for stopper, kept in zip(self.stoppers, state["stoppers"], strict=True):
            if stopper is not None:
                stopper.load_state_dict(kept)
        self.ended_at, self.reasons = list(state["ended_at"]), list(state["reasons"])


def _stopper(exp: Experiment) -> EarlyStopping | None:
    cfg = exp.train.early_stopping
    if cfg is None:
        return None
    return EarlyStopping(
        monitor=cfg.monitor,
        patience=cfg.patience,
        mode=cfg.mode,
        min_delta=cfg.min_delta,
        check_finite=True,
    )
