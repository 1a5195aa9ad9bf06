"""Trial and sweep states and the counts: one enum each, one type for the counts, and
the rankings that never pick a warm start's prior trial."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState as OptunaState
from optuna.trial import create_trial

from sweeplab.search import keys, ranking
from sweeplab.search.states import Counts, SweepState, TrialState
from sweeplab.spec import InputError

X = {"x": FloatDistribution(0.0, 1.0)}


def _trial(
    state: OptunaState, value: float | None = None, **attrs: object
) -> optuna.trial.FrozenTrial:
    values = None if value is None else [value]
    return create_trial(
        state=state, params={"x": 0.5}, distributions=X, values=values, user_attrs=attrs
    )


def test_counts_leave_out_retried_tries_and_prior_trials() -> None:
    trials = [
        _trial(OptunaState.COMPLETE, 0.5),
        _trial(OptunaState.COMPLETE, 0.9, **{keys.ATTR_PRIOR: "old#3"}),
        _trial(OptunaState.PRUNED),
        _trial(OptunaState.FAIL),
        _trial(OptunaState.FAIL, **{keys.ATTR_RETRIED: 7}),
        _trial(OptunaState.WAITING),
    ]
    counts = Counts.of(trials)
    assert counts == Counts(complete=1, pruned=1, failed=1, waiting=1, retried=1, prior=1)
    assert (counts.finished, counts.taken) == (3, 3)
    assert Counts(running=2, complete=1).taken == 3
    assert set(counts.as_dict()) == {
        "complete",
        "pruned",
        "failed",
        "running",
        "waiting",
        "retried",
        "prior",
    }


def test_every_optuna_state_has_its_name() -> None:
    names = {
        state: TrialState.of(_trial(state, 0.5 if state == OptunaState.COMPLETE else None))
        for state in OptunaState
    }
    assert names[OptunaState.FAIL] is TrialState.FAILED
    assert set(names.values()) == set(TrialState) - {TrialState.INTERRUPTED}


@pytest.mark.parametrize(
    ("state", "takes", "stops", "ends"),
    [
        (SweepState.RUNNING, True, False, SweepState.COMPLETE),
        (SweepState.INTERRUPTED, True, False, SweepState.COMPLETE),
        (SweepState.STOPPING, False, True, SweepState.STOPPED),
        (SweepState.STOPPING_NOW, False, True, SweepState.STOPPED),
        (SweepState.REACHED, False, True, SweepState.COMPLETE),
    ],
)
def test_what_a_sweep_state_means(
    state: SweepState, takes: bool, stops: bool, ends: SweepState
) -> None:
    assert (state.takes_trials, state.asks_no_trials, state.ending) == (takes, stops, ends)
    assert not state.finished and ends.finished


def _study(directions: list[str], trials: list[optuna.trial.FrozenTrial]) -> optuna.Study:
    study = optuna.create_study(directions=directions)
    study.add_trials(trials)
    return study


def test_the_best_the_top_and_the_front_never_pick_a_prior_trial() -> None:
    prior = {keys.ATTR_PRIOR: "old#0"}
    one = _study(
        ["maximize"],
        [
            _trial(OptunaState.COMPLETE, 0.99, **prior),
            _trial(OptunaState.COMPLETE, 0.5),
            _trial(OptunaState.COMPLETE, 0.7),
            _trial(OptunaState.COMPLETE, 0.7),
        ],
    )
    best = ranking.best_of(one)
    assert best is not None and best.number == 2  # ties: the earlier
    assert [t.number for t in ranking.top(one, 5)] == [2, 3, 1]

    def two(a: float, b: float, **attrs: object) -> optuna.trial.FrozenTrial:
        return create_trial(params={"x": 0.5}, distributions=X, values=[a, b], user_attrs=attrs)

    # maximize the first, minimize the second; the prior trial dominates every other
    pareto = _study(
        ["maximize", "minimize"],
        [two(1.0, 0.0, **prior), two(0.9, 5.0), two(0.8, 2.0), two(0.7, 3.0), two(0.9, 6.0)],
    )
    assert [t.number for t in ranking.front(pareto)] == [1, 2]
    assert ranking.choose(pareto, within=0.15).number == 2  # within 0.15 of 0.9: the cheaper
    with pytest.raises(InputError, match="the tolerance must be >= 0"):
        ranking.choose(pareto, within=-1)
    with pytest.raises(InputError, match="has one objective"):
        ranking.choose(one, within=0.1)
    with pytest.raises(InputError, match=r"trial #0 of sweep .* is not in the sweep"):
        ranking.choose(one, number=0)  # a prior trial is not the sweep's
