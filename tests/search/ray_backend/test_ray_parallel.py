"""Data-parallel trials (``--workers-per-trial``): Ray Train with 2 gloo workers on CPU.

Each test runs a real local Ray with 2 CPUs: one trial's 2 ranks fill it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeplab.search import RayOptions, run_sweep
from sweeplab.search.keys import TAG_RANKS
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from tests.helpers import all_runs, tiny_spec

TWO = RayOptions(workers_per_trial=2)
pytestmark = pytest.mark.distributed  # each test takes about a minute or more


def _one_trial(experiment: str, lr: float = 0.05, **sections: Any) -> dict[str, Any]:
    """A sweep of one trial with fixed params (a grid of one point)."""
    return tiny_spec(
        search_space={"train.lr": {"type": "categorical", "choices": [lr]}},
        sweep={"trials": 1, "sampler": "grid", "backend": "ray"},
        tracking={"experiment": experiment},
        **sections,
    )


def _trial_run(store: Store, name: str) -> tuple[optuna.trial.FrozenTrial, Any]:
    study = optuna.load_study(study_name=name, storage=store.storage_url)
    (trial,) = study.trials
    run = MlflowClient(store.tracking_uri).get_run(trial.user_attrs["mlflow_run_id"])
    return trial, run


def _shape(store: Store, run: Any) -> dict[str, int]:
    """What a run holds: each metric's number of logged steps, and its artifacts."""
    client = MlflowClient(store.tracking_uri)
    shape = {k: len(client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics}
    for item in client.list_artifacts(run.info.run_id):
        shape[item.path] = 1
    return shape


def test_a_two_worker_trial_trains_on_both_ranks_and_is_tracked_like_one(
    local_ray: Any, store: Store
) -> None:
    spec = spec_from_dict(_one_trial("ddp", train={"max_epochs": 3}))
    run_sweep(spec, store, name="two", options=TWO)
    run_sweep(spec, store, name="one", options=RayOptions())
    two, two_run = _trial_run(store, "two")
    one, one_run = _trial_run(store, "one")
    assert two.state == one.state == TrialState.COMPLETE
    # both ranks joined the process group: two worker processes, neither of them this one
    ranks = two_run.data.tags[TAG_RANKS].split(",")
    pids = {r.rsplit(":", 1)[1] for r in ranks}
    assert len(ranks) == 2 and len(pids) == 2 and str(os.getpid()) not in pids
    assert TAG_RANKS not in one_run.data.tags
    # the same run as one worker's: same metrics, each logged once per epoch, same files
    assert _shape(store, two_run) == _shape(store, one_run)
    assert _shape(store, two_run)["val_acc"] == 3
    assert two.user_attrs["epochs"] == 3 and 0 < two.value <= 1
    assert not [r for r in all_runs(store, "ddp") if r.info.status == "RUNNING"]


def test_early_stopping_and_a_scheduler_stop_every_rank_together(
    local_ray: Any, store: Store
) -> None:
    # lr 1e-9: val_loss never improves by 0.01, so early stopping (patience 1) ends the fit at
    # epoch 2 of 6 on both ranks; a rank that went on would hang the next report
    stuck = _one_trial(
        "ddp-stop",
        lr=1e-9,
        train={
            "max_epochs": 6,
            "early_stopping": {"monitor": "val_loss", "patience": 1, "min_delta": 0.01},
        },
    )
    run_sweep(spec_from_dict(stuck), store, name="early", options=TWO)
    trial, run = _trial_run(store, "early")
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["epochs"] == 2
    history = MlflowClient(store.tracking_uri).get_metric_history(run.info.run_id, "val_loss")
    assert len(history) == 2

    # ASHA stops the worse of two trials at its first rung (seed 1: lr 0.1 runs first)
    spec = tiny_spec(
        train={"max_epochs": 4},
        search_space={"train.lr": {"type": "categorical", "choices": [0.1, 1e-9]}},
        sweep={
            "trials": 2,
            "sampler": "grid",
            "seed": 1,
            "backend": "ray",
            "scheduler": "asha",
            "scheduler_options": {"grace_period": 1, "reduction_factor": 2},
            "max_concurrent": 1,
        },
        tracking={"experiment": "ddp-asha"},
    )
    result = run_sweep(spec_from_dict(spec), store, name="asha", options=TWO)
    study = optuna.load_study(study_name="asha", storage=store.storage_url)
    assert study.trials[0].params["train.lr"] == 0.1
    assert sorted(t.state for t in study.trials) == [TrialState.COMPLETE, TrialState.PRUNED]
    assert result.counts.pruned == 1
    runs = all_runs(store, "ddp-asha")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    pruned = next(t for t in study.trials if t.state == TrialState.PRUNED)
    stopped = MlflowClient(store.tracking_uri).get_run(pruned.user_attrs["mlflow_run_id"])
    assert stopped.data.tags["sweeplab.state"] == "pruned"


def _rank_1_pid(store: Store) -> int | None:
    """Rank 1's pid once the trial has logged an epoch, read with SQLite read-only: the
    poller opens no MLflow store, which would create the tables while the sweep does."""
    import sqlite3
    from contextlib import closing

    uri = f"{(store.root / 'mlflow.db').as_uri()}?mode=ro"
    query = (
        "SELECT t.value FROM tags t JOIN metrics m ON m.run_uuid = t.run_uuid "
        "WHERE t.key = ? AND m.key = 'val_acc' LIMIT 1"
    )
    try:
        with closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute(query, (TAG_RANKS,)).fetchone()
    except sqlite3.Error:  # not there yet, or its tables not yet created
        return None
    return int(row[0].split(",")[1].rsplit(":", 1)[1]) if row else None


def test_a_dead_rank_fails_the_trial_and_the_sweep_goes_on(local_ray: Any, store: Store) -> None:
    spec = _one_trial("ddp-dead", train={"max_epochs": 300})
    killed: list[int] = []

    def kill_rank_1() -> None:
        """Once the trial has logged an epoch, SIGKILL its rank 1 process."""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            time.sleep(0.5)
            pid = _rank_1_pid(store)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    killer = threading.Thread(target=kill_rank_1, daemon=True)
    killer.start()
    started = time.monotonic()
    result = run_sweep(spec_from_dict(spec), store, name="dead", options=TWO)
    took = time.monotonic() - started
    killer.join()
    assert killed, "the trial never logged an epoch"
    trial, run = _trial_run(store, "dead")
    assert trial.state == TrialState.FAIL
    assert "rank" in trial.user_attrs["fail_reason"]
    assert run.info.status == "FAILED" and run.data.tags["sweeplab.state"] == "failed"
    assert run.data.tags["sweeplab.fail_reason"] == trial.user_attrs["fail_reason"]
    assert result.counts.failed == 1
    # the sweep did not wait on the dead rank, nor train on alone
    epochs = MlflowClient(store.tracking_uri).get_metric_history(run.info.run_id, "val_acc")
    assert len(epochs) < 300 and took < 150
