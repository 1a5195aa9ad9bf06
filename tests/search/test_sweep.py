"""A real sweep on a real SQLite study and MLflow store: the runs tree, states, restarts, XOR."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeplab.search import run_sweep
from sweeplab.search.results import decoded_params
from sweeplab.spec import load_spec, spec_from_dict
from tests.helpers import ROOT, all_runs, sweeplab, tiny_spec


def _study(store: Any, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=store.storage_url)


def test_sweep_writes_the_mlflow_tree_and_registers_the_best(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = spec_from_dict(
        tiny_spec(sweep={"trials": 3}, tracking={"experiment": "tree", "register_as": "tiny-model"})
    )
    result = run_sweep(exp, store)
    client = MlflowClient(store.tracking_uri)
    runs = all_runs(store, "tree")
    assert all(r.info.status != "RUNNING" for r in runs)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweeplab.kind"] == "sweep"
    assert parent.data.params["train.optimizer"] == "adam"
    assert "best.train.lr" in parent.data.params
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)
    parent_files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"spec.yaml", "search_space.yaml", "sweep_history.png"} <= parent_files

    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    study = _study(store, result.name)
    assert len(children) == len(study.trials) == 3
    by_run = {r.info.run_id: r for r in children}
    for trial in study.trials:
        run = by_run[trial.user_attrs["mlflow_run_id"]]  # the trial knows its run...
        assert run.data.tags["sweeplab.trial_number"] == str(trial.number)  # ...and back
        assert float(run.data.params["train.lr"]) == pytest.approx(trial.params["train.lr"])
        assert run.info.status == "FINISHED" and run.data.tags["sweeplab.state"] == "complete"
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert len(history) == trial.user_attrs["epochs"] == 3
        assert [m.step for m in history] == [0, 1, 2]
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 3
        assert len(client.get_metric_history(run.info.run_id, "lr")) == 3
        assert "test_acc" in run.data.metrics
        files = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert "learning_curve.png" in files and "checkpoint" in files

    assert result.registered == ("tiny-model", 1)
    version = client.get_model_version("tiny-model", "1")
    assert version.run_id == result.best_run_id
    assert float(version.tags["test_acc"]) == pytest.approx(result.test["test_acc"])

    # The registered model takes raw features and scores the test split as tracked.
    import mlflow.pyfunc

    from sweeplab.data.split import split

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/tiny-model/1")
    s = split(exp.data)
    raw = (s.x_test * s.std + s.mean).astype(np.float32)
    probs = np.asarray(model.predict(raw))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((probs.argmax(axis=1) == s.y_test).mean())
    assert accuracy == pytest.approx(result.test["test_acc"], abs=1e-6)


def test_pruned_and_diverged_trials_get_their_states_and_the_sweep_completes(store: Any) -> None:
    exp = spec_from_dict(
        tiny_spec(
            train={"optimizer": "sgd", "max_epochs": 4},
            search_space={"train.lr": {"type": "categorical", "choices": [0.05, 1e-6, 1e8]}},
            # seed 2 draws 1e8 (diverges), 0.05 (completes), then 1e-6 (pruned against it), ...
            sweep={
                "trials": 6,
                "sampler": "random",
                "seed": 2,
                "pruner": "median",
                "pruner_options": {"n_startup_trials": 1, "n_warmup_steps": 0},
            },
            tracking={"experiment": "states"},
        )
    )
    result = run_sweep(exp, store)
    study = _study(store, result.name)
    states = [t.state for t in study.trials]
    assert len(states) == 6 and TrialState.RUNNING not in states
    assert TrialState.COMPLETE in states and TrialState.PRUNED in states
    assert TrialState.FAIL in states
    runs = {r.info.run_id: r for r in all_runs(store, "states")}
    for trial in study.trials:
        run = runs[trial.user_attrs["mlflow_run_id"]]
        if trial.state == TrialState.FAIL:
            assert trial.params["train.lr"] == 1e8
            assert "val_loss became nan" in trial.user_attrs["fail_reason"]
            assert run.info.status == "FAILED"
            assert "val_loss became nan" in run.data.tags["sweeplab.fail_reason"]
        elif trial.state == TrialState.PRUNED:
            assert run.data.tags["sweeplab.state"] == "pruned"
            assert run.info.status == "FINISHED"
            history = MlflowClient(store.tracking_uri).get_metric_history
            assert len(history(run.info.run_id, "val_acc")) == trial.last_step + 1
            # the epoch the pruner stopped has its train_loss too
            assert len(history(run.info.run_id, "train_loss")) == trial.last_step + 1
        else:
            assert run.data.tags["sweeplab.state"] == "complete"
    assert result.counts.failed == states.count(TrialState.FAIL)


@pytest.mark.parametrize("aggregate", ["mean", "best", "lcb"])
def test_restarts_make_k_runs_and_the_documented_aggregate(store: Any, aggregate: str) -> None:
    exp = spec_from_dict(
        tiny_spec(
            sweep={"trials": 1, "restarts": 3, "restart_aggregate": aggregate},
            tracking={"experiment": f"restarts-{aggregate}"},
        )
    )
    result = run_sweep(exp, store)
    client = MlflowClient(store.tracking_uri)
    runs = all_runs(store, f"restarts-{aggregate}")
    trial_run = client.get_run(str(result.best_run_id))
    restarts = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == trial_run.info.run_id]
    assert sorted(r.data.tags["sweeplab.restart"] for r in restarts) == ["0", "1", "2"]
    # each restart's value: the best val_acc over its own curve
    values = [
        max(m.value for m in client.get_metric_history(r.info.run_id, "val_acc")) for r in restarts
    ]
    expected = {
        "mean": statistics.fmean(values),
        "best": max(values),
        # the mean less one standard error: a lucky seed does not carry the trial
        "lcb": statistics.fmean(values) - statistics.stdev(values) / 3**0.5,
    }[aggregate]
    assert result.best_value == pytest.approx(expected, abs=1e-6)
    assert trial_run.data.metrics["value_std"] == pytest.approx(statistics.pstdev(values), abs=1e-6)
    # the trial run's curve: the restarts' mean per epoch, and their spread
    per_epoch = [
        {m.step: m.value for m in client.get_metric_history(r.info.run_id, "val_acc")}
        for r in restarts
    ]
    mean = {m.step: m.value for m in client.get_metric_history(trial_run.info.run_id, "val_acc")}
    std = {m.step: m.value for m in client.get_metric_history(trial_run.info.run_id, "val_acc_std")}
    assert sorted(mean) == sorted(std) == sorted(per_epoch[0]) == [0, 1, 2]
    for epoch in mean:
        at = [curve[epoch] for curve in per_epoch]
        assert mean[epoch] == pytest.approx(statistics.fmean(at), abs=1e-6)
        assert std[epoch] == pytest.approx(statistics.pstdev(at), abs=1e-6)
    assert "lr" in trial_run.data.metrics and "lr_std" not in trial_run.data.metrics  # one schedule
    if aggregate == "mean":  # compare draws the top trials' curves, each with its band
        from sweeplab.search import compare, write_plots

        comparison, sweeps = compare(store, [result.name])
        assert comparison.rows[0].std == pytest.approx(statistics.pstdev(values), abs=1e-6)
        write_plots(comparison, sweeps, store.root / "plots")
        assert "top_learning_curves.png" in {p.name for p in comparison.plots}
    # the trial's figure (drawn at the sweep's end): the mean with its band
    assert "learning_curve.png" in {f.path for f in client.list_artifacts(trial_run.info.run_id)}
    trial = _study(store, result.name).trials[0]
    assert trial.user_attrs["restart_values"] == pytest.approx(
        [
            v
            for _, v in sorted(
                zip([r.data.tags["sweeplab.restart"] for r in restarts], values, strict=True)
            )
        ],
        abs=1e-6,
    )


def test_a_restart_that_diverges_is_left_out_and_the_trial_completes(store: Any) -> None:
    exp = spec_from_dict(
        tiny_spec(
            model={
                "arch": "custom",
                "class": "tests.custom_modules:UnluckySeed",
                "kwargs": {"lr": 0.01},
                "metrics": ["val_acc"],
            },
            train={"seed": 0},
            sweep={"trials": 1, "restarts": 3, "restart_aggregate": "mean"},
            tracking={"experiment": "unlucky"},
        )
    )
    result = run_sweep(exp, store)  # seeds 0, 1, 2: restart 1 diverges
    trial = _study(store, result.name).trials[0]
    assert trial.state == TrialState.COMPLETE
    assert len(trial.user_attrs["restart_values"]) == 2
    client = MlflowClient(store.tracking_uri)
    runs = {r.data.tags.get("sweeplab.restart"): r for r in all_runs(store, "unlucky")}
    assert runs["1"].info.status == "FAILED"
    assert "became nan" in runs["1"].data.tags["sweeplab.fail_reason"]
    assert runs["0"].info.status == runs["2"].info.status == "FINISHED"
    trial_run = client.get_run(str(result.best_run_id))
    assert trial_run.data.metrics["diverged_fits"] == 1
    values = [
        max(m.value for m in client.get_metric_history(runs[r].info.run_id, "val_acc"))
        for r in ("0", "2")
    ]
    assert result.best_value == pytest.approx(statistics.fmean(values), abs=1e-6)


def test_xor_needs_a_hidden_layer(store: Any) -> None:
    exp = load_spec(ROOT / "experiments" / "xor.yaml")
    result = run_sweep(exp, store)
    by_hidden = {
        str(t.params["model.hidden"]): t.user_attrs["test_acc"]
        for t in _study(store, result.name).trials
    }
    assert by_hidden["[]"] <= 0.75
    assert by_hidden["[8]"] == 1.0
    assert result.best_params == {"model.hidden": [8]}


@pytest.mark.parametrize(
    ("sampler", "pruner"),
    [("tpe", "hyperband"), ("cmaes", "successive_halving"), ("grid", "median"), ("random", "none")],
)
def test_every_sampler_and_pruner_runs_a_sweep(store: Any, sampler: str, pruner: str) -> None:
    space = {
        "train.lr": {"type": "float", "low": 0.005, "high": 0.05, "step": 0.015},
        "train.batch_size": {"type": "int", "low": 16, "high": 32, "step": 16},
        "model.activation": {"type": "categorical", "choices": ["relu", "tanh"]},
    }
    exp = spec_from_dict(
        tiny_spec(
            search_space=space,
            sweep={"trials": 3, "sampler": sampler, "pruner": pruner, "seed": 1},
            tracking={"experiment": f"s-{sampler}"},
        )
    )
    result = run_sweep(exp, store)
    study = _study(store, result.name)
    assert len(study.trials) == 3
    for trial in study.trials:
        lr = trial.params["train.lr"]
        assert min(abs(lr - v) for v in (0.005, 0.02, 0.035, 0.05)) < 1e-9  # on the step grid
        assert trial.params["train.batch_size"] in (16, 32)
    again = run_sweep(exp, store)  # same seed, same draws
    assert [t.params for t in _study(store, again.name).trials] == [t.params for t in study.trials]


def test_a_failing_trial_is_retried_max_retries_times_then_recorded_failed(
    store: Any,
) -> None:
    exp = spec_from_dict(
        tiny_spec(
            train={"optimizer": "sgd", "max_epochs": 2},
            search_space={"train.lr": {"type": "categorical", "choices": [0.05, 1e8]}},
            sweep={"trials": 2, "sampler": "grid", "max_retries": 2},
            tracking={"experiment": "retries"},
        )
    )
    result = run_sweep(exp, store)
    study = _study(store, result.name)
    assert (result.counts.complete, result.counts.failed, result.counts.retried) == (
        1,
        1,
        2,
    )
    diverging = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(diverging) == 3  # the try and 2 retries, of the same params
    assert len({str(t.params) for t in diverging}) == 1
    assert all("val_loss became nan" in t.user_attrs["fail_reason"] for t in diverging)
    assert [t.user_attrs.get("sweeplab.attempt", 0) for t in diverging] == [0, 1, 2]
    assert [t.user_attrs.get("sweeplab.retried_as") for t in diverging] == [
        diverging[1].number,
        diverging[2].number,
        None,
    ]
    runs = [r for r in all_runs(store, "retries") if "sweeplab.trial_number" in r.data.tags]
    assert len(runs) == 4 and sum(r.info.status == "FAILED" for r in runs) == 3
    status = sweeplab("status", result.name, "--store", str(store.root))
    assert f"(retried as #{diverging[1].number})" in status.stdout
    assert "1 complete, 0 pruned, 1 failed, 0 running of 2 requested (2 failed" in status.stdout


def test_a_trial_validates_its_spec_once(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's spec and search space are checked when loaded; each trial's spec is the
    sweep's with its params set, validated once, its search space not again."""
    from sweeplab.spec import Experiment

    space = {
        "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
        "model.hidden": {"type": "categorical", "choices": [[8], [16, 8]]},
        "model.activation": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
    }
    exp = spec_from_dict(tiny_spec(search_space=space, sweep={"trials": 3}))
    validations: list[dict[str, Any]] = []
    original = Experiment.model_validate.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Experiment], obj: Any, *args: Any, **kwargs: Any) -> Experiment:
        validations.append(obj)
        return original(cls, obj, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Experiment, "model_validate", classmethod(counted))
    result = run_sweep(exp, store)
    assert result.counts.complete == 3
    assert len(validations) == 3  # one per trial, whatever the search space's size
    # ...and each is the trial's own configuration
    drawn = [decoded_params(exp.space, t) for t in _study(store, result.name).trials]
    seen = [
        {"model.hidden": v["model"]["hidden"], "model.activation": v["model"]["activation"]}
        for v in validations
    ]
    assert seen == [{k: d[k] for k in ("model.hidden", "model.activation")} for d in drawn]


@pytest.mark.parametrize("pruner", ["median", "successive_halving", "hyperband", "none"])
def test_each_pruner_as_configured_prunes_a_lagging_trial(pruner: str) -> None:
    """No model: the spec's pruner (hyperband's resources from the spec's epochs) judges
    curves reported step by step; a trial far behind the others is pruned, unless the
    pruner is 'none'."""
    from sweeplab.search.sampling import build_pruner

    exp = spec_from_dict(tiny_spec(train={"max_epochs": 9}, sweep={"pruner": pruner}))
    # Hyperband puts a trial in a bracket by a hash of the study's name and its number:
    # a name of its own each run put all three lagging trials where none is pruned in 1
    # run of 400 (a CI's failure); this one's brackets prune them
    study = optuna.create_study(
        direction="maximize", pruner=build_pruner(exp), study_name="lagging-trial"
    )

    def run(values: list[float]) -> TrialState:
        trial = study.ask()
        for step, value in enumerate(values):
            trial.report(value, step)
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                return TrialState.PRUNED
        study.tell(trial, values[-1])
        return TrialState.COMPLETE

    for i in range(16):  # good trials, each a little better than the last
        run([0.8 + 0.01 * i + 0.001 * step for step in range(9)])
    lagging = [run([0.1] * 9) for _ in range(3)]
    if pruner == "none":
        assert lagging == [TrialState.COMPLETE] * 3
    else:
        assert TrialState.PRUNED in lagging


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_resumed_sweep_draws_new_configurations(store: Any, sampler: str) -> None:
    """A sweep resumed for 3 trials more than its 3: the resumed worker's sampler
    does not replay the first process's draws (random, and TPE's random start-up), while
    a one-process sweep with the same seed draws the same again."""
    from sweeplab.search import continue_sweep

    space = {
        "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
        "train.batch_size": {"type": "int", "low": 16, "high": 64, "step": 16},
        "model.activation": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
    }
    spec = tiny_spec(search_space=space, sweep={"trials": 3, "sampler": sampler, "seed": 5})
    first = run_sweep(spec_from_dict(spec), store)
    continue_sweep(store, first.name, trials=3)  # as if its first process stopped at 3
    trials = _study(store, first.name).trials
    assert len(trials) == 6
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6
    again = run_sweep(spec_from_dict(spec), store)
    assert [t.params for t in _study(store, again.name).trials] == [t.params for t in trials[:3]]


def test_a_configuration_the_sampler_draws_again_is_said(store: Any) -> None:
    from sweeplab.search import sweep_status

    space = {"model.activation": {"type": "categorical", "choices": ["relu", "tanh"]}}
    exp = spec_from_dict(
        tiny_spec(search_space=space, sweep={"trials": 4}, tracking={"experiment": "again"})
    )
    result = run_sweep(exp, store)
    rows = sweep_status(store, result.name).rows
    distinct = {r.params["model.activation"] for r in rows}
    repeats = [r for r in rows if r.reason and "same params as #" in r.reason]
    assert len(repeats) == 4 - len(distinct) >= 2
    runs = {
        r.data.tags["sweeplab.trial_number"]: r
        for r in all_runs(store, "again")
        if "sweeplab.trial_number" in r.data.tags
    }
    for row in repeats:
        earlier = int(row.reason.split("#")[1].split(",")[0])
        assert rows[earlier].params == row.params and earlier < row.number
        assert runs[str(row.number)].data.tags["sweeplab.same_as"] == str(earlier)
    assert all(r.state == "complete" for r in rows)  # said, not refused


@pytest.mark.parametrize("deaths_before", [0, 2])
def test_a_dead_workers_trial_runs_again_up_to_death_retries(
    store: Any, deaths_before: int
) -> None:
    """A trial left RUNNING by a worker that died: resume fails it with the reason and
    runs its configuration again, so the sweep keeps its count; a configuration that
    already lost its worker ``sweep.death_retries`` (2) times is not run again."""
    import json
    import socket

    from sweeplab.search import continue_sweep, sweep_status
    from sweeplab.search.keys import ATTR_SPEC

    exp = spec_from_dict(tiny_spec(sweep={"trials": 2, "sampler": "random"}))
    first = run_sweep(exp, store)
    study = _study(store, first.name)
    stored = json.loads(study.user_attrs[ATTR_SPEC])
    stored["sweep"]["trials"] = 3
    study.set_user_attr(ATTR_SPEC, json.dumps(stored))
    dead = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
    dead.set_user_attr("sweeplab.owner", f"{socket.gethostname()}:999999999")  # no such pid
    dead.set_user_attr("sweeplab.deaths", deaths_before)

    continue_sweep(store, first.name)
    trials = _study(store, first.name).trials
    failed = trials[dead.number]
    assert failed.state == TrialState.FAIL
    assert "died" in failed.user_attrs["fail_reason"]
    report = sweep_status(store, first.name)
    if deaths_before == 0:
        again = trials[failed.user_attrs["sweeplab.retried_as"]]
        assert again.params == failed.params and again.state == TrialState.COMPLETE
        assert again.user_attrs["sweeplab.deaths"] == 1
        assert report.counts.complete == 3 and report.counts.retried == 1
    else:
        assert "sweeplab.retried_as" not in failed.user_attrs
        assert report.counts.complete == 2 and report.counts.failed == 1
