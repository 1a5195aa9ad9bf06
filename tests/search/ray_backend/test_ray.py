"""The Ray Tune backend: same sampler as Optuna, schedulers, retries, a 2-node cluster.

Ray runs for real: started locally with 2 CPUs by the first test that needs it, and a
second, 2-node cluster (ray.cluster_utils) for the last test.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeplab.compat import trial_id
from sweeplab.search import RayOptions, run_sweep
from sweeplab.search.keys import TAG_NODE
from sweeplab.search.ranking import best_of
from sweeplab.search.results import decoded_params
from sweeplab.spec import SearchSpace, spec_from_dict
from sweeplab.store import Store
from tests.battery import assert_nothing_lost, popen, wait_for_running, wait_for_study
from tests.helpers import all_runs, in_process, sweeplab, tiny_spec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _study(store: Store, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=store.storage_url)


def _check_runs(store: Store, experiment: str, study: optuna.Study) -> dict[int, Any]:
    """Every trial ended, with one finished run whose state tag agrees; none left RUNNING."""
    runs = all_runs(store, experiment)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_id = {r.info.run_id: r for r in runs}
    trial_runs = [r for r in runs if "sweeplab.trial_number" in r.data.tags]
    assert len(trial_runs) == len(study.trials)  # one child run per trial
    out = {}
    for t in study.trials:
        assert t.state in FINISHED
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert (
            run.data.tags["sweeplab.state"]
            == {
                TrialState.COMPLETE: "complete",
                TrialState.PRUNED: "pruned",
                TrialState.FAIL: "failed",
            }[t.state]
        )
        assert run.data.tags["sweeplab.trial_number"] == str(t.number)
        out[t.number] = run
    return out


# 6 trials on Ray, then the same 6 on Optuna (40-50 s): CI runs it with the distributed
# tests; make test keeps Ray's pruner and mistakes cases
@pytest.mark.distributed
def test_ray_backend_samples_like_optuna_and_tracks_every_trial(
    local_ray: Any, store: Store
) -> None:
    spec = tiny_spec(
        train={"max_epochs": 6},
        sweep={
            "trials": 6,
            "sampler": "random",
            "seed": 3,
            "scheduler": "asha",
            "scheduler_options": {"grace_period": 1, "reduction_factor": 2},
            "backend": "ray",
        },
        tracking={"experiment": "ray", "register_as": "ray-best"},
    )
    result = run_sweep(spec_from_dict(spec), store, name="on-ray", options=RayOptions())
    study = _study(store, "on-ray")
    assert len(study.trials) == 6
    runs = _check_runs(store, "ray", study)
    states = [t.state for t in study.trials]
    assert TrialState.COMPLETE in states and TrialState.PRUNED in states  # ASHA stopped some
    for t in study.trials:
        history = MlflowClient(store.tracking_uri).get_metric_history(
            runs[t.number].info.run_id, "val_acc"
        )
        if t.state == TrialState.COMPLETE:
            assert len(history) == 6 and max(h.value for h in history) == pytest.approx(t.value)
        else:
            assert 1 <= len(history) < 6  # stopped at a rung, its curve kept
    best = best_of(study)
    assert best is not None and result.best_trial == best.number
    assert result.registered == ("ray-best", 1)
    parent = MlflowClient(store.tracking_uri).get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == result.parent_run_id for r in runs.values())

    # the same spec on the Optuna backend draws the same params, trial for trial
    spec["sweep"].update(backend="optuna", scheduler="none", scheduler_options={})
    spec["train"]["max_epochs"] = 1
    run_sweep(spec_from_dict(spec), store, name="on-optuna")
    same = _study(store, "on-optuna")
    assert [t.params for t in same.trials] == [t.params for t in study.trials]


# a trial run three times on Ray (30 s): CI runs it with the distributed tests, to keep
# `make test` under its 15 minutes
@pytest.mark.distributed
def test_ray_retries_a_failing_trial_then_records_it_failed(local_ray: Any, store: Store) -> None:
    spec = tiny_spec(
        train={"optimizer": "sgd", "max_epochs": 2},
        search_space={"train.lr": {"type": "categorical", "choices": [0.05, 1e8]}},
        sweep={"trials": 2, "sampler": "grid", "backend": "ray", "max_retries": 1},
        tracking={"experiment": "ray-retry"},
    )
    exp = spec_from_dict(spec)
    result = run_sweep(exp, store, options=RayOptions())
    study = _study(store, result.name)
    space = SearchSpace.model_validate(exp.search_space)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    # as on the Optuna backend: the failed try stays, marked retried, and its params run
    # once more (max_retries: 1) as a trial of their own, which fails too
    assert [decoded_params(space, t)["train.lr"] for t in failed] == [1e8, 1e8]
    first, second = failed
    assert first.user_attrs["sweeplab.retried_as"] == second.number
    assert second.user_attrs["sweeplab.retry_of"] == first.number
    assert "val_loss became nan" in second.user_attrs["fail_reason"]
    assert (result.counts.complete, result.counts.failed) == (1, 1)
    assert result.counts.retried == 1
    # each try has its FAILED run
    runs = all_runs(store, "ray-retry")
    for t in failed:
        tries = [r for r in runs if r.data.tags.get("sweeplab.trial_number") == str(t.number)]
        assert [r.info.status for r in tries] == ["FAILED"]
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.distributed
def test_a_sweep_on_a_two_node_cluster_runs_trials_on_both(store: Store) -> None:
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        spec = tiny_spec(
            train={"max_epochs": 3},
            sweep={"trials": 4, "sampler": "random", "backend": "ray", "max_concurrent": 2},
            tracking={"experiment": "cluster"},
        )
        options = RayOptions(address=cluster.address)
        result = run_sweep(spec_from_dict(spec), store, options=options)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2
        study = _study(store, result.name)
        runs = _check_runs(store, "cluster", study)
        assert result.counts.complete == 4
        assert {r.data.tags[TAG_NODE] for r in runs.values()} == nodes
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.distributed
def test_a_removed_node_s_trial_goes_on_from_its_checkpoint_on_the_node_left(
    store: Store,
) -> None:
    """A two-node cluster; the worker node is removed while a trial on it has a
    checkpoint: the sweep ends on the head node with exactly its trials, and the
    removed node's trial went on from its checkpoint, its curve holding each epoch once."""
    import threading

    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    removed: list[int] = []
    done = threading.Event()

    def remove_once_checkpointed() -> None:
        client = MlflowClient(store.tracking_uri)
        while not done.wait(0.2):
            try:
                running = _study(store, "noded").get_trials(states=(TrialState.RUNNING,))
            except Exception:  # the sweep has not created its study yet
                continue
            for t in running:
                run_id = t.user_attrs.get("mlflow_run_id")
                if run_id is None or client.get_run(run_id).data.tags.get(TAG_NODE) != (
                    worker.node_id
                ):
                    continue
                if client.list_artifacts(run_id, "resume"):
                    cluster.remove_node(worker)
                    removed.append(t.number)
                    return

    remover = threading.Thread(target=remove_once_checkpointed, daemon=True)
    remover.start()
    try:
        spec = tiny_spec(
            name="noded",
            train={"max_epochs": 150, "checkpoint_every": 10},
            sweep={
                "trials": 4,
                "sampler": "random",
                "pruner": "none",
                "backend": "ray",
                "max_concurrent": 2,
            },
            tracking={"experiment": "noded"},
        )
        result = run_sweep(spec_from_dict(spec), store, options=RayOptions(address=cluster.address))
        head = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        done.set()
        ray.shutdown()
        cluster.shutdown()
    assert removed, "no trial ran on the worker node long enough to write a checkpoint"
    assert result.counts.complete == 4
    study = _study(store, result.name)
    dead = study.trials[removed[0]]
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
    again = study.trials[dead.user_attrs["sweeplab.retried_as"]]
    assert again.state == TrialState.COMPLETE and again.params == dead.params
    assert again.user_attrs["sweeplab.resumed_at"] >= 10
    client = MlflowClient(store.tracking_uri)
    run = client.get_run(again.user_attrs["mlflow_run_id"])
    assert {run.data.tags[TAG_NODE]} == head and worker.node_id not in head
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
    assert sorted(steps) == list(range(len(steps))) and len(steps) > 10


# 4 fused trials on Ray (~30 s): CI runs it with the distributed tests
@pytest.mark.distributed
@pytest.mark.parametrize("fuse", [4, "auto"])
def test_a_ray_tune_trial_carries_a_batch_of_fused_trials(
    local_ray: Any, store: Store, fuse: int | str
) -> None:
    from sweeplab.search.claims import owner

    spec = tiny_spec(
        # auto: 16 on a CPU, from the first trial with no checkpoint period to keep to
        train={"max_epochs": 4, "checkpoint_every": None},
        search_space={
            "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            "train.weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        },
        sweep={"trials": 4, "sampler": "tpe", "seed": 3, "backend": "ray", "fuse_trials": fuse},
        tracking={"experiment": "ray-fused"},
    )
    events: list[Any] = []
    result = run_sweep(spec_from_dict(spec), store, options=RayOptions(), on_trial=events.append)
    study = _study(store, result.name)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    runs = _check_runs(store, "ray-fused", study)
    # Tune trials that each carry a batch of trials trained together in its Ray worker:
    # with 2 at once on Ray's 2 CPUs, none claims more than its share, 2 of the 4, and
    # not all 4 while the other Tune trial waits idle (one that starts after the first
    # batch ended finds 2 unfinished, and takes 1: a lone trial, with no batch tag)
    batches = {n: t.user_attrs.get("sweeplab.batch") for n, t in enumerate(study.trials)}
    assert {n: r.data.tags.get("sweeplab.batch") for n, r in runs.items()} == batches
    assert batches[0] == "0,1"
    assert all(len((b or "").split(",")) <= 2 for b in batches.values())
    assert all(t.user_attrs["sweeplab.owner"] != owner() for t in study.trials)
    assert len({t.params["train.lr"] for t in study.trials}) == 4
    assert sorted(e.number for e in events) == [0, 1, 2, 3]  # a progress event each
    assert result.counts.complete == 4


# a SIGTERM during 2 fused batches on Ray, then resume (~60 s): with the distributed tests
@pytest.mark.distributed
def test_sigterm_during_fused_batches_on_ray_leaves_nothing_running_and_resume_ends_them(
    store: Store, write_spec: Any
) -> None:
    spec = tiny_spec(
        train={"max_epochs": 400, "batch_size": 8},  # ~10 s a batch: the SIGTERM comes first
        search_space={"train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        sweep={"trials": 4, "sampler": "random", "seed": 0, "backend": "ray", "fuse_trials": 2},
        tracking={"experiment": "ray-fused"},
    )
    proc = popen("sweep", str(write_spec(spec)), "--store", str(store.root), "--no-smoke")
    study = wait_for_study(store, "tiny", proc)
    running = wait_for_running(study, 2, proc)  # a batch training in a Ray worker
    os.killpg(proc.pid, signal.SIGTERM)
    output, errors = proc.communicate(timeout=120)
    assert proc.returncode == 143, output + errors
    assert "Traceback" not in output + errors
    trials = _study(store, "tiny").get_trials()
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    # failed, and queued again for resume; a batch whose worker ended it while Ray shut
    # down (seconds, once its own processes had the SIGTERM too) keeps its results
    cut = [trials[t.number] for t in running if trials[t.number].state is TrialState.FAIL]
    ended = [t for t in running if trials[t.number].state in FINISHED[:2]]  # complete, pruned
    assert len(cut) + len(ended) == 2
    for t in cut:
        assert trials[t.user_attrs["sweeplab.retried_as"]].state is TrialState.WAITING
    assert "RUNNING" not in {r.info.status for r in all_runs(store, "ray-fused")}
    out = sweeplab("resume", "tiny", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_nothing_lost(store, "tiny", "ray-fused", 4)


# a terminal's Ctrl-C, or a SIGTERM to the group, during a Ray sweep's trials, then
# resume (~40 s each): with the distributed tests
@pytest.mark.distributed
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_ray_sweep_leaves_nothing_running_and_resume_ends_it(
    store: Store, write_spec: Any, signum: int, status: int
) -> None:
    """Before, Tune's SIGINT handler ended a Ctrl-C'd sweep as finished (exit 0, trials
    RUNNING), and a SIGTERM to the group hung a minute on Ray's dead GCS (exit 1)."""
    spec = tiny_spec(
        train={"max_epochs": 400, "batch_size": 8},  # ~10 s a trial: the signal comes first
        search_space={"train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        sweep={"trials": 4, "sampler": "random", "seed": 0, "backend": "ray"},
        tracking={"experiment": "ray-stopped"},
    )
    proc = popen("sweep", str(write_spec(spec)), "--store", str(store.root), "--no-smoke")
    study = wait_for_study(store, "tiny", proc)
    running = wait_for_running(study, 2, proc)  # one trial in each Ray worker
    os.killpg(proc.pid, signum)
    output, errors = proc.communicate(timeout=60)
    assert proc.returncode == status, output + errors
    assert "Traceback" not in output + errors
    trials = _study(store, "tiny").get_trials()
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    for t in running:  # failed as interrupted, and queued again for resume
        assert trials[t.number].user_attrs["fail_reason"].startswith("interrupted")
        again = trials[t.number].user_attrs["sweeplab.retried_as"]
        assert trials[again].state is TrialState.WAITING
    assert "RUNNING" not in {r.info.status for r in all_runs(store, "ray-stopped")}
    out = sweeplab("resume", "tiny", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_nothing_lost(store, "tiny", "ray-stopped", 4)


# kill -9 of a Ray worker during a fused batch (~60 s): with the distributed tests
@pytest.mark.distributed
def test_a_ray_worker_killed_during_a_batch_has_its_trials_run_again_in_the_same_sweep(
    store: Store, write_spec: Any
) -> None:
    spec = tiny_spec(
        train={"max_epochs": 300, "batch_size": 8},
        search_space={"train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        sweep={"trials": 4, "sampler": "random", "seed": 1, "backend": "ray", "fuse_trials": 2},
        tracking={"experiment": "ray-killed"},
    )
    proc = popen("sweep", str(write_spec(spec)), "--store", str(store.root), "--no-smoke", "-q")
    study = wait_for_study(store, "tiny", proc)
    running = wait_for_running(study, 2, proc)
    worker = int(running[0].user_attrs["sweeplab.owner"].rpartition(":")[2])
    os.kill(worker, signal.SIGKILL)  # the Ray worker that trains the first batch
    output, errors = proc.communicate(timeout=300)
    assert proc.returncode == 0, output + errors
    trials = _study(store, "tiny").get_trials()
    dead = [t for t in trials if "died" in t.user_attrs.get("fail_reason", "")]
    assert dead and {t.user_attrs["sweeplab.owner"] for t in dead} == {
        running[0].user_attrs["sweeplab.owner"]
    }
    for t in dead:  # run again, with the same params, by a later Tune trial of the sweep
        again = trials[t.user_attrs["sweeplab.retried_as"]]
        assert again.state is TrialState.COMPLETE and again.params == t.params
    assert_nothing_lost(store, "tiny", "ray-killed", 4)


@pytest.mark.parametrize(
    ("sweep", "args", "message"),
    [
        ({"pruner": "median", "scheduler": "asha"}, ["--backend", "ray"], "sweep.pruner"),
        (
            {"pruner": "median"},
            ["--backend", "ray", "--workers-per-trial", "2"],
            "cannot be used with sweep.pruner 'median'",
        ),
        ({"scheduler": "asha"}, [], "sweep.scheduler"),
        ({"scheduler": "asha", "scheduler_options": {"grace": 1}}, ["--backend", "ray"], "grace"),
        (
            {"scheduler": "asha", "scheduler_options": {"reduction_factor": 1}},
            ["--backend", "ray"],
            "reduction_factor",
        ),
        ({}, ["--address", "auto"], "--backend ray"),
        ({}, ["--backend", "ray", "--cpus-per-trial", "0"], "--cpus-per-trial must be > 0"),
        ({}, ["--workers-per-trial", "2"], "--backend ray"),
        ({}, ["--backend", "ray", "--workers-per-trial", "0"], "--workers-per-trial must be >= 1"),
        (
            {"scheduler": "pbt"},
            ["--backend", "ray", "--workers-per-trial", "2"],
            "cannot be used with sweep.scheduler 'pbt'",
        ),
        (
            {"fuse_trials": 4, "scheduler": "asha"},
            ["--backend", "ray"],
            "sweep.fuse_trials: 4: a Tune trial carries a batch of trials, and Ray's "
            "scheduler 'asha' would stop the whole batch",
        ),
        (
            {"fuse_trials": 4},
            ["--backend", "ray", "--workers-per-trial", "2"],
            "sweep.fuse_trials is 4: set 1",
        ),
    ],
)
def test_ray_mistakes_exit_2_before_anything_is_created(
    tmp_path: Path, write_spec: Any, sweep: dict[str, Any], args: list[str], message: str
) -> None:
    spec = write_spec(tiny_spec(sweep={"trials": 2, **sweep}))
    # in this process: a fresh interpreter per case cost 4-9 s of imports (Ray's)
    store = str(tmp_path / "store")
    result = in_process("sweep", str(spec), "--store", store, "--no-smoke", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert not (tmp_path / "store").exists()


def test_pbt_searches_only_what_keeps_the_weights_shapes(tmp_path: Path, write_spec: Any) -> None:
    spec = write_spec(
        tiny_spec(
            search_space={
                "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
                "model.hidden": {"type": "categorical", "choices": [[8], [16]]},
            },
            sweep={"trials": 2, "backend": "ray", "scheduler": "pbt"},
        )
    )
    result = in_process("sweep", str(spec), "--store", str(tmp_path / "store"), "--no-smoke")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "search_space.model.hidden" in result.stderr and "model.dropout" in result.stderr
    assert "search_space.train.lr" not in result.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.distributed
def test_pbt_trains_on_from_copied_checkpoints_with_perturbed_values(
    local_ray: Any, store: Store
) -> None:
    epochs = 6
    spec = tiny_spec(
        model={"arch": "mlp", "hidden": [16], "dropout": 0.1},
        train={"max_epochs": epochs},
        search_space={
            "train.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
        },
        sweep={
            "trials": 4,
            "seed": 1,
            "backend": "ray",
            "scheduler": "pbt",
            # synchronous: all 4 trials perturb together at epochs 2 and 4, the bottom two
            # taking the top two's checkpoints
            "scheduler_options": {
                "perturbation_interval": 2,
                "quantile_fraction": 0.5,
                "synch": True,
            },
        },
        tracking={"experiment": "pbt", "register_as": "pbt-best"},
    )
    options = RayOptions(cpus_per_trial=0.5)  # the whole population at once on 2 CPUs
    result = run_sweep(spec_from_dict(spec), store, name="pbt", options=options)
    study = _study(store, "pbt")
    runs = _check_runs(store, "pbt", study)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4  # PBT prunes none
    assert result.registered is not None
    # the best model is described (and registered) by the values it ended with
    best = best_of(study)  # the tie rule's pick, which the sweep registers
    assert best is not None
    assert result.best_params == best.user_attrs["pbt_params"]
    client = MlflowClient(store.tracking_uri)
    copied = 0
    for t in study.trials:
        run_id = runs[t.number].info.run_id
        # one point per epoch: paused and restarted trials go on at the next epoch, in
        # the same run, from the checkpoint (else epochs would start again at 0)
        val_acc = client.get_metric_history(run_id, "val_acc")
        assert sorted(m.step for m in val_acc) == list(range(epochs))
        lr = {m.step: m.value for m in client.get_metric_history(run_id, "lr")}
        assert sorted(lr) == list(range(epochs))
        starts = client.get_metric_history(run_id, "pbt.train.lr")
        assert [m.step for m in starts] == [0, 2, 4]  # a start, then a restart each perturbation
        for m in starts:  # the optimizer trains at the value PBT chose, not the checkpoint's
            assert lr[m.step] == pytest.approx(m.value)
        copied += sum(
            m.value != t.number for m in client.get_metric_history(run_id, "pbt.from_trial")
        )
        final = t.user_attrs["pbt_params"]
        assert 1e-4 <= final["train.lr"] <= 1e-1 and 0.0 <= final["model.dropout"] <= 0.3
    assert copied >= 2  # the bottom half took other trials' checkpoints at least once


@pytest.mark.parametrize(
    "case",
    [
        "rank 1 died, rank 0 told first",
        "rank 1 died",
        "rank 1's health check failed",
        "rank 0 raised",
    ],
)
def test_a_failed_data_parallel_trial_keeps_the_reason_that_explains_it(
    store: Store, case: str
) -> None:
    """Whether rank 0 records the error it met in a collective with a dead rank before
    the Train run's failure arrives is a race: either way the dead rank is the reason,
    on the trial and on its run. A rank 0 that raised on its own keeps its error."""
    from ray.exceptions import ActorDiedError
    from ray.train import WorkerGroupError

    from sweeplab.search.keys import ATTR_REASON, ATTR_RUN, TAG_REASON
    from sweeplab.search.ray_backend.parallel import _note_failure
    from sweeplab.search.storage import open_storage
    from sweeplab.tracking.tracker import Tracker

    store.prepare()
    storage = open_storage(store.storage_url)
    trial = optuna.create_study(study_name="ddp", storage=storage).ask()
    tracker = Tracker(store, "ddp")
    run_id = tracker.start_run("trial-0")
    trial.set_user_attr(ATTR_RUN, run_id)
    gloo = RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error: Connection closed by peer")
    own = ValueError("lr must be > 0, but got -1.")
    failures: dict[int, Exception] = {0: gloo, 1: ActorDiedError()}
    if case == "rank 0 raised":
        failures = {0: own}
    elif case == "rank 1's health check failed":  # how Ray Train's poll reports a death
        from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

        failures[1] = WorkerHealthCheckFailedError("health check failed", ActorDiedError())
    if case != "rank 1 died":  # what rank 0's run_trial records when its fit raises
        first = f"{type(failures[0]).__name__}: {failures[0]}"
        trial.set_user_attr(ATTR_REASON, first)
        tracker.set_tags(run_id, {TAG_REASON: first})
        tracker.end_run(run_id, "FAILED")

    _note_failure(store, trial_id(trial), WorkerGroupError("training failed", failures))

    reason = storage.get_trial(trial_id(trial)).user_attrs[ATTR_REASON]
    tag = MlflowClient(store.tracking_uri).get_run(run_id).data.tags.get(TAG_REASON)
    if case == "rank 0 raised":
        assert reason == tag == "ValueError: lr must be > 0, but got -1."
    else:
        assert reason == "data-parallel rank 1 died (its worker process ended)"
        assert tag == reason


def test_the_specs_optuna_pruner_prunes_ray_trials(local_ray: Any, store: Store) -> None:
    """One spec, both backends: sweep.pruner judges each Ray trial as a trial of the same
    study, from the worker, epoch by epoch."""
    spec = tiny_spec(
        train={"max_epochs": 8},
        search_space={"train.lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}},
        sweep={
            "trials": 8,
            "sampler": "random",
            "seed": 0,
            "pruner": "median",
            "pruner_options": {"n_startup_trials": 2, "n_warmup_steps": 1},
            "backend": "ray",
            "max_concurrent": 1,
        },
        tracking={"experiment": "ray-pruned"},
    )
    result = run_sweep(spec_from_dict(spec), store, name="ray-pruned", options=RayOptions())
    study = _study(store, "ray-pruned")
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states, states
    runs = _check_runs(store, "ray-pruned", study)
    for t in study.trials:
        steps = sorted(t.intermediate_values)
        assert steps == list(range(len(steps)))  # one value per epoch, from the worker
        if t.state == TrialState.PRUNED:
            assert runs[t.number].data.tags["sweeplab.state"] == "pruned"
            assert len(steps) < 8
    assert result.counts.pruned == states.count(TrialState.PRUNED)


@pytest.mark.distributed
def test_ray_takes_conditional_and_layers_entries(local_ray: Any, store: Store) -> None:
    """The define-by-run space on Ray: an entry only where its condition holds, a layers
    entry as one list, in each trial's run as on the Optuna backend."""
    from tests.spec.test_space_structure import CONDITIONAL, LAYERS

    spec = tiny_spec(
        train={"max_epochs": 1},
        search_space={k: v for k, v in CONDITIONAL.items() if k != "train.nesterov"} | LAYERS,
        sweep={"trials": 6, "sampler": "random", "seed": 2, "backend": "ray"},
        tracking={"experiment": "ray-structured"},
    )
    run_sweep(spec_from_dict(spec), store, name="ray-structured", options=RayOptions())
    study = _study(store, "ray-structured")
    runs = _check_runs(store, "ray-structured", study)
    optimizers = set()
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        params = runs[t.number].data.params
        optimizers.add(params["train.optimizer"])
        assert ("train.momentum" in params) == (params["train.optimizer"] != "adam")
        assert len(json.loads(params["model.hidden"])) == t.params["model.hidden.depth"]
    assert len(optimizers) > 1


@pytest.mark.distributed
def test_ray_runs_a_multi_objective_sweep(local_ray: Any, store: Store) -> None:
    """OptunaSearch with several metrics: each trial tells the study every objective."""
    from tests.search.test_multi_objective import OBJECTIVES, SPACE

    spec = tiny_spec(
        objective=OBJECTIVES,
        train={"max_epochs": 1},
        search_space=SPACE,
        sweep={"trials": 4, "sampler": "random", "seed": 3, "backend": "ray"},
        tracking={"experiment": "ray-pareto"},
    )
    result = run_sweep(spec_from_dict(spec), store, name="ray-pareto", options=RayOptions())
    study = _study(store, "ray-pareto")
    assert len(study.directions) == 2 and result.counts.complete == 4
    for t in study.trials:
        assert len(t.values) == 2 and t.values[1] > 0  # its network's parameter count
    assert study.best_trials and result.best_trial is not None


def test_the_teams_ray_address_does_not_stop_a_plain_sweep(tmp_path: Path, write_spec: Any) -> None:
    """deploy/README.md exports SWEEPLAB_RAY_ADDRESS; a sweep on the Optuna backend runs
    (the variable is read for Ray sweeps only), while --address without Ray is refused."""
    spec = write_spec(tiny_spec(sweep={"trials": 1}))
    store = str(tmp_path / "store")
    env = {"SWEEPLAB_RAY_ADDRESS": "ray://head:10001"}
    args = ["sweep", str(spec), "--store", store, "--no-smoke", "-q"]
    result = in_process(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 trials (1 complete" in result.stdout + result.stderr


@pytest.mark.distributed
def test_the_default_spec_runs_on_ray_unchanged_and_prunes(tmp_path: Path) -> None:
    """experiments/mlp_digits.yaml with --backend ray: its hyperband pruner judges the
    Ray trials (8 of its trials, one seed each, to keep the test short)."""
    from tests.helpers import ROOT, sweeplab

    store = tmp_path / "store"
    out = sweeplab(
        "sweep",
        str(ROOT / "experiments" / "mlp_digits.yaml"),
        "--backend",
        "ray",
        "--set",
        "sweep.trials=8",
        "--set",
        "sweep.restarts=1",
        "--store",
        str(store),
        "--no-smoke",
        "-q",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="mlp-digits", storage=f"sqlite:///{store / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 8 and TrialState.PRUNED in states and TrialState.COMPLETE in states
