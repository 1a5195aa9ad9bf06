"""Which of a sweep's trials are best: on the first objective, the ``k`` best, a
multi-objective sweep's Pareto front, and the trial a user picks.

A warm start's prior trials (``keys.ATTR_PRIOR``) sit in the study for the sampler to
learn from, but they belong to earlier sweeps: none of these ever picks one.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

from sweeplab.search.keys import ATTR_PRIOR
from sweeplab.search.states import TrialState
from sweeplab.spec import InputError


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
    """The ``k`` best complete trials on the first objective, best first (ties: earlier)."""
    sign = signs(study)[0]
    complete = own(study, (OptunaState.COMPLETE,))
    return sorted(complete, key=lambda t: (-sign * t.values[0], t.number))[:k]


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
