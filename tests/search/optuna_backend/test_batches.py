"""sweep.fuse_trials: trials of one shape train as one batched model, each its own trial."""

from __future__ import annotations

import csv
import io
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeplab.search import run_sweep
from sweeplab.search.results import decoded_params
from sweeplab.spec import spec_from_dict
from sweeplab.training.fit import fit
from tests.helpers import all_runs, in_process, tiny_spec

SPACE = {
    "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
    "train.weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "model.hidden": {"type": "categorical", "choices": [[8], [16]]},
}


def _spec(**sweep: Any) -> dict[str, Any]:
    return tiny_spec(
        search_space=SPACE,
        train={"max_epochs": 4},
        sweep={"trials": 4, "sampler": "tpe", "seed": 3, "fuse_trials": 4, **sweep},
        tracking={"experiment": "fused"},
    )


def test_fused_trials_share_a_shape_and_each_is_the_trial_trained_alone(store: Any) -> None:
    exp = spec_from_dict(_spec())
    result = run_sweep(exp, store)
    study = optuna.load_study(study_name=result.name, storage=store.storage_url)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert {t.user_attrs["sweeplab.batch"] for t in trials} == {"0,1,2,3"}
    assert len({str(t.params["model.hidden"]) for t in trials}) == 1  # the batch's shape
    assert len({t.params["train.lr"] for t in trials}) == 4  # drawn per trial
    client = MlflowClient(store.tracking_uri)
    runs = {r.info.run_id: r for r in all_runs(store, "fused")}
    for trial in trials:
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED" and run.data.tags["sweeplab.state"] == "complete"
        assert run.data.tags["sweeplab.batch"] == "0,1,2,3"
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in history] == [0, 1, 2, 3]
        assert "test_acc" in run.data.metrics
        alone = fit(exp.with_params(decoded_params(exp.space, trial)))  # trained alone
        assert trial.value == pytest.approx(alone.value, abs=1e-6)
        assert trial.user_attrs["epochs"] == alone.epochs
        for key in ("test_acc", "test_loss"):
            assert run.data.metrics[key] == pytest.approx(alone.test[key], abs=1e-5), key
    shown = in_process("status", result.name, "--store", str(store.root), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert [row["batch"] for row in rows] == ["0,1,2,3"] * 4


def test_validate_says_how_trials_fuse_and_ray_refuses_them(write_spec: Any) -> None:
    spec = write_spec(_spec())
    out = in_process("validate", str(spec))
    assert out.returncode == 0, out.stderr
    assert (
        "trials: up to 4 at a time trained as one batched model; each draws its own "
        "train.lr, train.weight_decay, a batch shares one model.hidden"
    ) in out.stdout
    refused = in_process("validate", str(spec), "--set", "sweep.backend=ray")
    assert refused.returncode == 2
    assert "sweep.fuse_trials: 4: a Ray Tune trial trains one configuration" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_pruned_member_leaves_its_batch_alone_and_keeps_its_intermediate_values(
    store: Any,
) -> None:
    spec = _spec(
        trials=6,
        fuse_trials=3,
        sampler="random",
        seed=2,  # a seed whose second batch has trials on both sides of the median
        pruner="median",
        pruner_options={"n_startup_trials": 0, "n_warmup_steps": 1},
    )
    spec["search_space"] = {"train.lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True}}
    spec["train"]["max_epochs"] = 6
    result = run_sweep(spec_from_dict(spec), store)
    study = optuna.load_study(study_name=result.name, storage=store.storage_url)
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states, states
    batches: dict[str, set[TrialState]] = {}
    for trial in study.trials:
        batches.setdefault(trial.user_attrs["sweeplab.batch"], set()).add(trial.state)
    assert {TrialState.PRUNED, TrialState.COMPLETE} in batches.values(), batches  # side by side
    client = MlflowClient(store.tracking_uri)
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert run.info.status == "FINISHED"
        if trial.state is TrialState.PRUNED:  # its curve stops where it was pruned
            last = max(trial.intermediate_values)
            assert 1 <= last < 5 and steps == list(range(last + 1))
            assert run.data.tags["sweeplab.state"] == "pruned"
        else:  # the others of its batch went on to the end
            assert steps == list(range(6)) and run.data.tags["sweeplab.state"] == "complete"
            assert sorted(trial.intermediate_values) == list(range(6))
