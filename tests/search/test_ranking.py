"""The tie rule: among trials within one validation example of the best, the lower
mean validation loss ranks first; everywhere a sweep's best is read (best trial, top,
compare's ranks)."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from sweeplab.search import keys, ranking

X = {"x": FloatDistribution(0.0, 1.0)}
STEP = 1 / 270  # one example of a 270-example validation split


def _trial(value: float, loss: float | None, resolution: float | None = STEP) -> object:
    attrs: dict[str, object] = {}
    if resolution is not None:
        attrs[keys.ATTR_RESOLUTION] = resolution
    if loss is not None:
        attrs[keys.ATTR_TIE_LOSS] = loss
    return create_trial(params={"x": 0.5}, distributions=X, values=[value], user_attrs=attrs)


def _study(direction: str, trials: list[object]) -> optuna.Study:
    study = optuna.create_study(direction=direction)
    study.add_trials(trials)  # type: ignore[arg-type]
    return study


def test_a_tie_within_one_example_goes_to_the_lower_validation_loss() -> None:
    best = 260 / 270
    study = _study(
        "maximize",
        [
            _trial(best, 0.30),  # #0: the best value, the first of the tie, a high loss
            _trial(best, 0.12),  # #1: tied, lower loss
            _trial(best - STEP, 0.05),  # #2: one example below: still tied, the lowest loss
            _trial(best - 2 * STEP, 0.01),  # #3: two examples below: not tied, whatever its loss
            _trial(best - 0.5 * STEP, None),  # #4: tied, its loss unknown: after the known ones
        ],
    )
    picked = ranking.best_of(study)
    assert picked is not None and picked.number == 2
    assert [t.number for t in ranking.top(study, 5)] == [2, 1, 0, 4, 3]


def test_without_a_resolution_the_value_alone_ranks() -> None:
    # a loss or an RMSE: no step, so only equal values tie, and the earlier goes first
    study = _study(
        "minimize",
        [_trial(0.20, 0.9, None), _trial(0.19, 0.9, None), _trial(0.19, 0.1, None)],
    )
    assert [t.number for t in ranking.top(study, 3)] == [1, 2, 0]


def test_a_sweep_records_what_breaks_its_ties_and_reads_its_best_by_the_rule(
    tmp_path: Path,
) -> None:
    from sweeplab.search import create_sweep
    from sweeplab.search.analysis.compare import compare
    from sweeplab.spec import spec_from_dict
    from sweeplab.store import Store
    from tests.helpers import tiny_spec

    store = Store.resolve(tmp_path / "store")
    spec = tiny_spec(sweep={"trials": 3, "sampler": "random", "seed": 0})
    sweep = create_sweep(spec_from_dict(spec), store=store)
    result = sweep.optimize()
    complete = [t for t in sweep.study.trials if t.values]
    # iris: 150 rows, 22 of them for validation
    assert all(t.user_attrs[keys.ATTR_RESOLUTION] == 1 / 22 for t in complete)
    assert all(t.user_attrs[keys.ATTR_TIE_LOSS] > 0 for t in complete)
    top = max(t.values[0] for t in complete)
    tied = [t for t in complete if top - t.values[0] <= 1 / 22 + 1e-12]
    expected = min(tied, key=lambda t: (t.user_attrs[keys.ATTR_TIE_LOSS], -t.values[0], t.number))
    assert result.best_trial == expected.number
    comparison, _ = compare(store, [result.name])
    assert comparison.rows[0].trial == expected.number and comparison.rows[0].rank == 1
    # status names the tie and how it was broken, in the order the rule ranks them
    from sweeplab.search.analysis.status import sweep_status
    from tests.helpers import sweeplab

    report = sweep_status(store, result.name)
    ranked = sorted(tied, key=lambda t: (t.user_attrs[keys.ATTR_TIE_LOSS], -t.values[0], t.number))
    assert [t.number for t in report.tied] == ([t.number for t in ranked] if len(tied) > 1 else [])
    shown = sweeplab("status", result.name, "--store", str(tmp_path / "store"))
    if len(tied) > 1:
        assert f"tie: {len(tied)} trials are within one validation example (1/22)" in shown.stdout
        assert f"ranks first: #{ranked[0].number} " in shown.stdout
    else:
        assert "tie:" not in shown.stdout


def test_tied_lists_the_trials_within_one_example_of_the_best_in_the_rules_order() -> None:
    best = 200 / 270
    study = _study(
        "maximize",
        [_trial(best - STEP, 0.2), _trial(best, 0.4), _trial(best - 3 * STEP, 0.1)],
    )
    assert [t.number for t in ranking.tied(study)] == [0, 1]
    alone = _study("maximize", [_trial(best, 0.4), _trial(best - 3 * STEP, 0.1)])
    assert ranking.tied(alone) == []
