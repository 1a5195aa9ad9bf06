"""Which of a sweep's trials are best: on the first objective, the ``k`` best, a
multi-objective sweep's Pareto front, and the trial a user picks.

**Ties.** An accuracy measured on a validation split of n examples moves in steps of
1/n (its *resolution*, ``ATTR_RESOLUTION`` on each trial): two trials one example
apart are as good as tied, and on the default sweep four or more trials share the top
value. Among the trials within one example of the best, the one with the lower
validation loss at its fits' best epochs (their mean, ``ATTR_TIE_LOSS``) ranks first:
the loss sees how sure each right answer is, so it separates what the accuracy cannot,
and a mean over restarts is steadier than their spread, which two fits hardly measure.
A metric without a resolution (a loss, an RMSE) is ranked by its value alone.

A warm start's prior trials (``keys.ATTR_PRIOR``) sit in the study for the sampler to
learn from, but they belong to earlier sweeps: none of these ever picks one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple, TypeVar

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

from sweeplab.search.keys import ATTR_PRIOR, ATTR_RESOLUTION, ATTR_TIE_LOSS
from sweeplab.search.states import TrialState
from sweeplab.spec import InputError

T = TypeVar("T")


def own(study: optuna.Study, states: Sequence[OptunaState] | None = None) -> list[FrozenTrial]:
    """The study's trials that belong to this sweep (not a warm start's prior ones)."""
    trials = study.get_trials(deepcopy=False, states=None if states is None else tuple(states))
    return [t for t in trials if ATTR_PRIOR not in t.user_attrs]


def first_value(trial: FrozenTrial) -> float | None:
    """A trial's value on the (first) objective; None unless it completed."""
    return float(trial.values[0]) if trial.values else None


def signs(study: optuna.Study) -> list[float]:
    """Per objective: 1 where higher is better, -1 where lower is."""
    maximize = optuna.study.StudyDirection.MAXIMIZE
    return [1.0 if d == maximize else -1.0 for d in study.directions]


def top(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` best complete trials on the first objective, best first; trials within
    one validation example of each other by their validation loss (``ordered``)."""
    complete = own(study, (OptunaState.COMPLETE,))
    return ordered(complete, sign=signs(study)[0], standing=_standing, k=k)


class Standing(NamedTuple):
    """What the ranking reads of one trial (an Optuna trial, or a row of ``compare``)."""

    value: float  # on the first objective
    resolution: float | None  # its step on the validation split (None: continuous)
    tie_loss: float | None  # what breaks a tie: the lower goes first
    order: tuple[str | int, ...]  # what orders exact ties: the earlier trial first


def _standing(t: FrozenTrial) -> Standing:
    attrs = t.user_attrs
    return Standing(
        float(t.values[0]), attrs.get(ATTR_RESOLUTION), attrs.get(ATTR_TIE_LOSS), (t.number,)
    )


def ordered(
    items: Sequence[T], *, sign: float, standing: Callable[[T], Standing], k: int | None = None
) -> list[T]:
    """``items`` best first (``k`` of them). The leader of what is left has the best
    value; of the items within its resolution of it, the one with the lowest tie loss
    goes first (then the better value, then the earlier), and the rest are ranked again
    without it."""
    rows = sorted(((standing(t), t) for t in items), key=lambda r: (-sign * r[0].value, r[0].order))
    out: list[T] = []
    while rows and (k is None or len(out) < k):
        lead = rows[0][0]
        tied = rows[:1]
        if lead.resolution:  # rows are sorted by value: the tied ones lead them
            tied = list(itertools.takewhile(partial(_within, lead, sign), rows))
        # the tied rows lead ``rows``: the pick's index in them is its index in rows
        at = min(range(len(tied)), key=lambda i: _preference(tied[i][0], sign))
        out.append(rows.pop(at)[1])
    return out


def _within(lead: Standing, sign: float, row: tuple[Standing, object]) -> bool:
    bound = (lead.resolution or 0.0) * (1 + 1e-9)  # values are means of fractions: float error
    return sign * (lead.value - row[0].value) <= bound


def _preference(s: Standing, sign: float) -> tuple[float, float, tuple[str | int, ...]]:
    """Of tied rows, the lowest goes first: lower tie loss, better value, earlier."""
    return (math.inf if s.tie_loss is None else s.tie_loss, -sign * s.value, s.order)


def tied(study: optuna.Study) -> list[FrozenTrial]:
    """The complete trials within one validation example of the best value, in the
    order the tie rule ranks them (the best first); none when fewer than two tie."""
    complete = own(study, (OptunaState.COMPLETE,))
    sign = signs(study)[0]
    if not complete:
        return []
    lead = _standing(max(complete, key=lambda t: (sign * t.values[0], -t.number)))
    if not lead.resolution:
        return []
    near = [t for t in complete if _within(lead, sign, (_standing(t), t))]
    return ordered(near, sign=sign, standing=_standing) if len(near) > 1 else []


def best_of(study: optuna.Study) -> FrozenTrial | None:
    """The best trial on the first objective (None before one completed); of a
    multi-objective study, the end of its Pareto front on that objective."""
    best = top(study, 1)
    return best[0] if best else None


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of a multi-objective sweep: its complete trials that no other of
    them dominates; by number.

    Optuna's ``study.best_trials`` would count the prior trials too, so the front is
    taken here: trials in order of the first objective, each kept unless a trial kept
    before it is at least as good on every objective (an earlier trial wins a tie).
    """
    sign = signs(study)
    complete = own(study, (OptunaState.COMPLETE,))
    ordered = sorted(
        complete, key=lambda t: ([-s * v for s, v in zip(sign, t.values, strict=True)], t.number)
    )
    kept: list[FrozenTrial] = []
    for t in ordered:
        if not any(_no_worse(k.values, t.values, sign) for k in kept):
            kept.append(t)
    return sorted(kept, key=lambda t: t.number)


def _no_worse(a: Sequence[float], b: Sequence[float], sign: Sequence[float]) -> bool:
    return all(s * x >= s * y for s, x, y in zip(sign, a, b, strict=True))


def choose(
    study: optuna.Study, *, number: int | None = None, within: float | None = None
) -> FrozenTrial | None:
    """The trial a user picks: trial ``number`` (complete), or, ``within`` a tolerance of
    the best value on the first objective, the front's trial that is best on the second
    (ties: the better first value); by default ``best_of``. InputError if it cannot be."""
    name = study.study_name
    if number is not None:
        found = [t for t in own(study) if t.number == number]
        if not found or found[0].state != OptunaState.COMPLETE:
            state = TrialState.of(found[0]).value if found else "not in the sweep"
            raise InputError(f"trial #{number} of sweep {name!r} is {state}")
        return found[0]
    if within is None:
        return best_of(study)
    if len(study.directions) < 2:
        raise InputError(
            f"a tolerance picks a trial from a Pareto front, but sweep {name!r} has one "
            "objective: pick its best trial, or a trial by number"
        )
    if within < 0:
        raise InputError(f"the tolerance must be >= 0, but got {within}.")
    best = best_of(study)
    if best is None:
        return None
    sign = signs(study)
    near = [t for t in front(study) if sign[0] * (t.values[0] - best.values[0]) >= -within]
    return max(near, key=lambda t: (sign[1] * t.values[1], sign[0] * t.values[0]))
