"""sweep.fuse_trials: trials of one shape train as one batched model, each its own trial."""

from __future__ import annotations

import csv
import io
import os
import signal
import time
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeplab.search import run_sweep
from sweeplab.search.options import LocalWorkers
from sweeplab.search.results import decoded_params
from sweeplab.spec import spec_from_dict
from sweeplab.training.fit import fit
from tests.battery import assert_nothing_lost, popen, wait_for_running, wait_for_study
from tests.helpers import all_runs, in_process, sweeplab, tiny_spec

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


def test_validate_says_how_trials_fuse_and_ray_schedulers_refuse_them(write_spec: Any) -> None:
    spec = write_spec(_spec())
    out = in_process("validate", str(spec))
    assert out.returncode == 0, out.stderr
    assert (
        "trials: up to 4 at a time trained as one batched model; each draws its own "
        "train.lr, train.weight_decay, a batch shares one model.hidden; its 4 trials make "
        "1 or more batches, one shape each (the space holds at most 2 shapes; unfused, each "
        "trial draws its own); a batch saves no "
        "mid-fit checkpoint (train.checkpoint_every is for trials alone): a killed batch "
        "trains again from its start"
    ) in out.stdout
    on_ray = in_process("validate", str(spec), "--set", "sweep.backend=ray")
    assert on_ray.returncode == 0, on_ray.stderr
    assert "trials: up to 4 at a time, a batch in each Ray Tune trial, trained" in on_ray.stdout
    asha = ("--set", "sweep.backend=ray", "--set", "sweep.scheduler=asha")
    refused = in_process("validate", str(spec), *asha)
    assert refused.returncode == 2
    assert "sweep.fuse_trials: 4: a Tune trial carries a batch of trials" in refused.stderr
    assert "Traceback" not in refused.stderr
    auto = in_process("validate", str(spec), "--set", "sweep.fuse_trials=auto")
    assert auto.returncode == 0, auto.stderr
    assert (
        "trials: up to 16 at a time on a CPU (auto: after a first trial alone, as many as "
        "train in 5m; one at a time on a GPU) trained as one batched model"
    ) in auto.stdout
    assert "mid-fit checkpoint" not in auto.stdout  # auto keeps a batch within one period
    on_ray = ("--set", "sweep.fuse_trials=auto", "--set", "sweep.backend=ray")
    auto = in_process("validate", str(spec), *on_ray)
    assert auto.returncode == 0, auto.stderr
    assert "one at a time on a GPU), a batch in each Ray Tune trial, trained" in auto.stdout
    auto = in_process("validate", str(spec), *on_ray, *asha[2:])  # one at a time, no error
    assert auto.returncode == 0, auto.stderr
    assert (
        "trials: one at a time, not fused (on Ray, auto fuses with sweep.scheduler: none: "
        "Ray's scheduler 'asha' would stop a whole batch)"
    ) in auto.stdout
    more = ("--set", "sweep.trials=9", "--set", "sweep.fuse_trials=2")
    more += ("--set", 'search_space.model.dropout={"type": "float", "low": 0, "high": 0.5}')
    more += (
        "--set",
        'search_space.train.batch_size={"type": "int", "low": 8, "high": 32, "step": 8}',
    )
    out = in_process("validate", str(spec), *more)
    assert (
        "its 9 trials make 5 or more batches, one shape each (the space holds at most 8 shapes"
        in out.stdout
    )
    shape_only = _spec()
    shape_only["search_space"] = {"model.hidden": SPACE["model.hidden"]}
    alone = in_process("validate", str(write_spec(shape_only, name="shape.yaml")))
    assert "trials: one at a time, not fused (no searched path is fusible" in alone.stdout
    wrong = in_process("validate", str(spec), "--set", "sweep.fuse_trials=many")
    assert wrong.returncode == 2 and "sweep.fuse_trials" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_auto_fuses_where_a_batch_trains_within_a_checkpoint_period(store: Any) -> None:
    """fuse_trials auto on a CPU: a first trial trains alone to show what a trial costs;
    the next ones fuse where a batch of them trains within train.checkpoint_every (a
    batch saves no mid-fit checkpoint), else they train alone too."""

    def batches(checkpoint_every: Any) -> list[str | None]:
        spec = _spec(trials=5, fuse_trials="auto")
        spec["train"]["checkpoint_every"] = checkpoint_every
        result = run_sweep(spec_from_dict(spec), store)
        study = optuna.load_study(study_name=result.name, storage=store.storage_url)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5
        return [t.user_attrs.get("sweeplab.batch") for t in study.trials]

    assert batches("5m") == [None, *["1,2,3,4"] * 4]  # a trial of seconds: 16 fit in 5 minutes
    assert batches(None) == ["0,1,2,3,4"] * 5  # no checkpoints to keep: fused from the first
    assert batches(2) == [None] * 5  # 4 epochs a trial: a batch would train past 2 epochs


def test_local_workers_each_claim_their_share_of_a_batch(store: Any) -> None:
    """--workers 2 with fuse_trials 6 and 6 trials: no worker claims more than its share
    (3), so the other one is not left idle while one trains all six."""
    exp = spec_from_dict(_spec(trials=6, fuse_trials=6))
    result = run_sweep(exp, store, options=LocalWorkers(2))
    study = optuna.load_study(study_name=result.name, storage=store.storage_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    batches = {str(t.user_attrs.get("sweeplab.batch", t.number)) for t in study.trials}
    assert max(len(b.split(",")) for b in batches) == 3, batches


def test_a_batch_about_to_end_counts_for_what_is_left_of_it_in_a_share(store: Any) -> None:
    """24 trials, fuse_trials 8, 2 workers; 16 ended and another worker's 5 running. A
    worker claiming the 3 left takes 2 when those 5 are in their last epochs (the other
    worker takes the last one a moment later), and all 3 left and then some when they
    have just started (it claims 4: its share of 3 + 5 trials of work)."""
    from sweeplab.search.optuna_backend.batches import claim_size
    from sweeplab.search.storage import open_storage
    from sweeplab.search.sweep import Sweep

    spec = _spec(trials=24, fuse_trials=8)
    spec["train"]["max_epochs"] = 10  # not searched: each trial's is 10
    exp = spec_from_dict(spec)
    store.root.mkdir(parents=True)
    storage = open_storage(store.storage_url)
    study = optuna.create_study(study_name="share", storage=storage)
    for _ in range(16):
        study.tell(study.ask(), 0.5)
    sweep = Sweep(study=study, storage=storage, exp=exp, store=store)
    running = [study.ask() for _ in range(5)]
    assert claim_size(sweep, gpu=False, workers=2) == 4  # ceil((3 + 5) / 2)
    for trial in running:
        for epoch in range(9):
            trial.report(0.5, epoch)
    assert claim_size(sweep, gpu=False, workers=2) == 2  # ceil((3 + 5 / 10) / 2)
    assert claim_size(sweep, gpu=False, workers=1) == 8  # one worker: a whole batch


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
    exp = spec_from_dict(spec)
    result = run_sweep(exp, store)
    study = optuna.load_study(study_name=result.name, storage=store.storage_url)
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states, states
    batches: dict[str, set[TrialState]] = {}
    for trial in study.trials:
        batches.setdefault(trial.user_attrs["sweeplab.batch"], set()).add(trial.state)
    assert {TrialState.PRUNED, TrialState.COMPLETE} in batches.values(), batches  # side by side
    mixed = next(b for b, states in batches.items() if len(states) == 2)
    for trial in study.trials:  # those its pruned members left go on as if trained alone
        if trial.user_attrs["sweeplab.batch"] == mixed and trial.state is TrialState.COMPLETE:
            alone = fit(exp.with_params(decoded_params(exp.space, trial)))
            assert trial.value == pytest.approx(alone.value, abs=1e-6)
            assert trial.user_attrs["test_loss"] == pytest.approx(alone.test["test_loss"], abs=1e-5)
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
    # a pruned trial is told as it leaves, not when its batch ends: the others' last epoch
    # was logged after it was PRUNED in the study
    history = client.get_metric_history
    last_epochs = [
        max(m.timestamp for m in history(t.user_attrs["mlflow_run_id"], "val_acc"))
        for t in study.trials
        if t.user_attrs["sweeplab.batch"] == mixed and t.state is TrialState.COMPLETE
    ]
    for trial in study.trials:
        if trial.user_attrs["sweeplab.batch"] == mixed and trial.state is TrialState.PRUNED:
            assert trial.datetime_complete is not None
            assert trial.datetime_complete.timestamp() * 1000 < min(last_epochs)


def test_kill_9_during_a_fused_batch_then_resume_runs_it_again_and_keeps_the_count(
    store: Any, write_spec: Any
) -> None:
    spec = _spec(trials=6, fuse_trials=3, sampler="random", seed=0)
    spec["train"]["max_epochs"] = 40
    path = write_spec(spec)
    proc = popen("sweep", str(path), "--store", str(store.root), "--no-smoke", "-q")
    study = wait_for_study(store, "tiny", proc)
    running = wait_for_running(study, 3, proc)  # the first batch training: kill the worker
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = {t.number for t in running}

    out = sweeplab("resume", "tiny", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr
    trials = optuna.load_study(study_name="tiny", storage=store.storage_url).get_trials()
    assert len(trials) == 9 and [t.number for t in trials] == list(range(9))
    dead = [t for t in trials if t.number in killed]
    assert all(t.state is TrialState.FAIL and "died" in t.user_attrs["fail_reason"] for t in dead)
    retries = [trials[t.user_attrs["sweeplab.retried_as"]] for t in dead]
    assert [r.params for r in retries] == [t.params for t in dead]
    results = [t for t in trials if t.number not in killed]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in results)
    assert len({tuple(sorted(t.params.items())) for t in results}) == 6  # none drawn twice
    assert len({r.user_attrs["sweeplab.batch"] for r in retries}) == 1  # fused again
    statuses = {r.info.run_id: r.info.status for r in all_runs(store, "fused")}
    assert "RUNNING" not in statuses.values()
    assert {statuses[t.user_attrs["mlflow_run_id"]] for t in dead} == {"KILLED"}


def test_sigterm_during_a_fused_batch_queues_its_trials_again_and_resume_ends_them(
    store: Any, write_spec: Any
) -> None:
    """SIGTERM as Ctrl-C: every trial of the batch failed as interrupted and queued again,
    its runs KILLED, exit 143; resume then ends with exactly the sweep's trials."""
    spec = _spec(trials=4, fuse_trials=2, sampler="random", seed=0)
    spec["train"]["max_epochs"] = 60
    path = write_spec(spec)
    proc = popen("sweep", str(path), "--store", str(store.root), "--no-smoke")
    study = wait_for_study(store, "tiny", proc)
    running = wait_for_running(study, 2, proc)  # the first batch training
    os.killpg(proc.pid, signal.SIGTERM)
    output, errors = proc.communicate(timeout=120)
    assert proc.returncode == 143, output + errors
    assert "Traceback" not in output + errors
    trials = optuna.load_study(study_name="tiny", storage=store.storage_url).get_trials()
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    for t in running:
        stopped = trials[t.number]
        assert stopped.state is TrialState.FAIL, stopped.state
        assert "interrupted" in stopped.user_attrs["fail_reason"]
        assert trials[stopped.user_attrs["sweeplab.retried_as"]].state is TrialState.WAITING
    statuses = {r.info.run_id: r.info.status for r in all_runs(store, "fused")}
    assert {statuses[t.user_attrs["mlflow_run_id"]] for t in running} == {"KILLED"}
    out = sweeplab("resume", "tiny", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_nothing_lost(store, "tiny", "fused", 4)


def test_sigterm_while_a_batch_closes_fails_the_trials_not_told_yet(
    store: Any, write_spec: Any
) -> None:
    """A batch's trials are told one after another once it trained (their MLflow writes
    take seconds): SIGTERM between two of them leaves none RUNNING. The ones told keep
    their results; the others fail as interrupted, queued again; resume ends them."""
    spec = _spec(trials=8, fuse_trials=8, sampler="random", seed=0, restarts=2)
    spec["train"]["max_epochs"] = 2
    path = write_spec(spec)
    proc = popen("sweep", str(path), "--store", str(store.root), "--no-smoke")
    study = wait_for_study(store, "tiny", proc)
    deadline = time.monotonic() + 180
    while True:  # the first trial told while the others still wait for theirs
        trials = study.get_trials(deepcopy=False)
        if any(t.state.is_finished() for t in trials):
            break
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    output, errors = proc.communicate(timeout=120)
    assert proc.returncode == 143, output + errors
    assert "Traceback" not in output + errors
    trials = optuna.load_study(study_name="tiny", storage=store.storage_url).get_trials()
    batch = [t for t in trials if t.number < 8]
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    told = [t for t in batch if t.state is not TrialState.FAIL]
    cut = [t for t in batch if t.state is TrialState.FAIL]
    assert told and cut, [t.state for t in batch]  # the signal came while they closed
    for t in cut:
        assert "interrupted" in t.user_attrs["fail_reason"]
        assert trials[t.user_attrs["sweeplab.retried_as"]].state is TrialState.WAITING
    statuses = {r.info.run_id: r.info.status for r in all_runs(store, "fused")}
    assert "RUNNING" not in statuses.values()
    assert {statuses[t.user_attrs["mlflow_run_id"]] for t in cut} == {"KILLED"}
    out = sweeplab("resume", "tiny", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_nothing_lost(store, "tiny", "fused", 8)
