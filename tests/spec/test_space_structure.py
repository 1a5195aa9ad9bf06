"""Search spaces with structure: conditional entries (``when``), layers entries, and
``--set`` into the search space. The sampling cases need no model: they ask Optuna's
TPE sampler for the space, as a sweep's workers do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sweeplab.search.results import decoded_params
from sweeplab.search.sampling import suggest
from sweeplab.spec import SearchSpace, SpecError, load_spec, spec_from_dict
from sweeplab.store import Store
from tests.helpers import all_runs, in_process, tiny_spec

CONDITIONAL: dict[str, Any] = {
    "train.optimizer": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop"]},
    # sgd and rmsprop take a momentum; nesterov only sgd with a momentum
    "train.momentum": {
        "type": "float",
        "low": 0.5,
        "high": 0.95,
        "when": {"train.optimizer": ["sgd", "rmsprop"]},
    },
    "train.nesterov": {
        "type": "categorical",
        "choices": [True, False],
        "when": {"train.optimizer": "sgd"},
    },
    "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
}
LAYERS: dict[str, Any] = {
    "model.hidden": {
        "type": "layers",
        "depth": {"low": 1, "high": 3},
        "width": {"low": 16, "high": 512, "log": True},
    }
}


def _tpe_trials(space: dict[str, Any], n: int) -> list[tuple[dict[str, Any], Any]]:
    """``n`` TPE trials of ``space`` (its start-up trials and then the model's): each
    trial's spec values, and the frozen trial."""
    parsed = SearchSpace.model_validate(space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=1, n_startup_trials=10), direction="maximize"
    )
    drawn: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, parsed)
        drawn.append(params)
        return float(len(params)) + trial.number * 1e-3

    study.optimize(objective, n_trials=n)
    return list(zip(drawn, study.trials, strict=True))


def test_a_conditional_entry_is_sampled_exactly_when_its_condition_holds() -> None:
    trials = _tpe_trials(CONDITIONAL, 60)
    seen = {params["train.optimizer"] for params, _ in trials}
    assert seen == {"sgd", "adam", "rmsprop"}
    for params, frozen in trials:
        optimizer = params["train.optimizer"]
        assert ("train.momentum" in params) == (optimizer in ("sgd", "rmsprop")), params
        assert ("train.nesterov" in params) == (optimizer == "sgd"), params
        # absent from the Optuna trial too, so that TPE and importances see no noise
        assert ("train.momentum" in frozen.params) == ("train.momentum" in params)
        assert decoded_params(SearchSpace.model_validate(CONDITIONAL), frozen) == params
        spec_from_dict(tiny_spec(search_space={})).with_params(params)  # a valid spec


def test_an_entry_is_sampled_after_the_entries_it_names() -> None:
    """Written before the entry it depends on, it is still sampled after it."""
    space = {"train.momentum": CONDITIONAL["train.momentum"]} | {
        "train.optimizer": CONDITIONAL["train.optimizer"]
    }
    parsed = SearchSpace.model_validate(space)
    assert [k for k, _ in parsed.ordered()] == ["train.optimizer", "train.momentum"]
    trials = _tpe_trials(space, 20)
    assert any("train.momentum" in p for p, _ in trials)


def test_a_condition_makes_a_choice_valid_that_is_invalid_alone(write_spec: Any) -> None:
    """nesterov: true needs sgd; with `when` the space is valid, and the smoke test
    tries that branch."""
    from sweeplab.training.smoke import corners

    without = {k: {x: y for x, y in v.items() if x != "when"} for k, v in CONDITIONAL.items()}
    with pytest.raises(SpecError, match=r"train\.nesterov"):
        spec_from_dict(tiny_spec(search_space=without))
    exp = spec_from_dict(tiny_spec(search_space=CONDITIONAL))
    tried = corners(exp)
    assert {"train.optimizer": "sgd", "train.nesterov": True} in tried
    assert {"train.optimizer": "sgd", "train.momentum": 0.95} in tried
    for config in tried:  # each is a valid spec: no entry without its condition
        if "train.nesterov" in config:
            assert config.get("train.optimizer") == "sgd"
    out = in_process("validate", str(write_spec(tiny_spec(search_space=CONDITIONAL))), "--smoke")
    assert out.returncode == 0, out.stderr
    assert "smoke test passed" in out.stdout


def test_a_layers_entry_gives_every_depth_and_widths_within_bounds() -> None:
    trials = _tpe_trials(LAYERS, 60)
    depths = set()
    for params, frozen in trials:
        hidden = params["model.hidden"]
        depths.add(len(hidden))
        assert all(16 <= w <= 512 for w in hidden), hidden
        assert frozen.params["model.hidden.depth"] == len(hidden)
        # each layer's width is a parameter of its own, present only while deep enough
        assert [frozen.params[f"model.hidden.{i}"] for i in range(len(hidden))] == hidden
        assert f"model.hidden.{len(hidden)}" not in frozen.params
        assert decoded_params(SearchSpace.model_validate(LAYERS), frozen) == params
    assert depths == {1, 2, 3}


def test_set_changes_a_range_in_a_search_space_file(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(
        yaml.safe_dump({"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}})
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(search_space="space.yaml")))
    exp = load_spec(spec, ["search_space.train.lr.high=0.5"])
    assert exp.space.root["train.lr"].high == 0.5
    drawn = [p["train.lr"] for p, _ in _tpe_trials(exp.search_space, 30)]
    assert max(drawn) > 1e-2 and all(1e-3 <= x <= 0.5 for x in drawn)
    # a whole entry, and null to remove one
    exp = load_spec(
        spec,
        ["search_space.model.dropout={type: float, low: 0.0, high: 0.5}"],
    )
    assert list(exp.space.root) == ["train.lr", "model.dropout"]
    assert list(load_spec(spec, ["search_space.train.lr=null"]).space.root) == []
    # the file itself is unchanged
    assert yaml.safe_load((tmp_path / "space.yaml").read_text())["train.lr"]["high"] == 1e-2


def test_set_into_the_space_names_what_is_wrong(tmp_path: Path, write_spec: Any) -> None:
    spec = write_spec(tiny_spec())
    out = in_process("validate", str(spec), "--set", "search_space.train.lrr.high=0.5")
    assert out.returncode == 2
    assert "--set: search_space.train.lrr.high: 'train.lrr' is not an entry" in out.stderr
    assert "did you mean 'train.lr'" in out.stderr and "entries: train.lr" in out.stderr
    out = in_process("validate", str(spec), "--set", "search_space.train.lr.high=0.0001")
    assert out.returncode == 2 and "low must be < high" in out.stderr


def test_a_conditional_sweep_leaves_absent_params_out_of_runs_status_and_compare(
    store: Store, tmp_path: Path
) -> None:
    from sweeplab.search import run_sweep

    space = {k: v for k, v in CONDITIONAL.items() if k != "train.nesterov"} | LAYERS
    exp = spec_from_dict(
        tiny_spec(
            train={"max_epochs": 1},
            search_space=space,
            sweep={"trials": 8, "sampler": "random", "seed": 4},
            tracking={"experiment": "structured"},
        )
    )
    result = run_sweep(exp, store, name="structured")
    assert result.counts.complete == 8
    study = optuna.load_study(study_name="structured", storage=store.storage_url)
    runs = {
        r.data.tags["sweeplab.trial_number"]: r
        for r in all_runs(store, "structured")
        if "sweeplab.trial_number" in r.data.tags
    }
    optimizers = set()
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        params = runs[str(t.number)].data.params
        optimizer = params["train.optimizer"]
        optimizers.add(optimizer)
        assert ("train.momentum" in params) == (optimizer != "adam"), params
        widths = yaml.safe_load(params["model.hidden"])  # one list, as the spec has it
        assert len(widths) == t.params["model.hidden.depth"]
    assert "adam" in optimizers and optimizers - {"adam"}
    root = ["--store", str(store.root)]
    status = in_process("status", "structured", *root)
    assert status.returncode == 0, status.stderr
    assert "model.hidden" in status.stdout and "train.momentum" in status.stdout
    compared = in_process("compare", "structured", *root, "--out", str(tmp_path / "cmp"))
    assert compared.returncode == 0, compared.stderr
    assert (tmp_path / "cmp" / "parallel_coordinate.png").exists()


def test_a_layers_entry_fits_any_list_of_widths_and_is_checked_at_its_ends() -> None:
    """A CNN's channels and its head: the ends of the range are tried as specs (a CNN
    needs at least one conv block, so depth 0 names the entry)."""
    cnn = {"arch": "cnn", "channels": [8], "head": [16]}
    layers = {"type": "layers", "width": {"low": 4, "high": 32, "step": 4}}
    exp = spec_from_dict(
        tiny_spec(
            model=cnn,
            data={"dataset": "digits"},
            search_space={
                "model.channels": {**layers, "depth": {"low": 1, "high": 2}},
                "model.head": {**layers, "depth": {"low": 0, "high": 2}},
            },
        )
    )
    assert exp.space.root["model.channels"].corners() == [[4], [32, 32]]
    with pytest.raises(SpecError, match=r"model\.channels: choice \[\] makes the spec invalid"):
        spec_from_dict(
            tiny_spec(
                model=cnn,
                data={"dataset": "digits"},
                search_space={"model.channels": {**layers, "depth": {"low": 0, "high": 2}}},
            )
        )


def test_each_distribution_counts_the_values_it_gives() -> None:
    space = SearchSpace.model_validate(
        {
            "a": {"type": "categorical", "choices": ["x", "y", "z"]},
            "b": {"type": "int", "low": 8, "high": 30, "step": 8},  # 8, 16, 24
            "c": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},  # 0.0 ... 0.5
            "d": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "e": {
                "type": "layers",
                "depth": {"low": 0, "high": 2},
                "width": {"low": 4, "high": 12, "step": 4},  # [], 3 of one, 9 of two
            },
        }
    )
    assert {key: dist.count() for key, dist in space.items()} == {
        "a": 3,
        "b": 3,
        "c": 6,
        "d": None,
        "e": 13,
    }
