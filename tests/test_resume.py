"""Crashes and several workers: kill -9 then resume, agents on a real PostgreSQL server."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeplab.store import Store
from tests.battery import load, popen, wait_for_study
from tests.conftest import Postgres, sweeplab, tiny_spec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _trial_runs(store: Store, experiment: str) -> list[Any]:
    client = MlflowClient(store.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if "sweeplab.trial_number" in r.data.tags]


# The optuna case also runs in make test-distributed: make test has the five kills in a
# row of test_reliability.py, which check the same and more.
@pytest.mark.distributed
@pytest.mark.parametrize("backend", ["optuna", "ray"])
def test_kill_9_mid_trial_then_resume_loses_and_repeats_nothing(
    store: Store, write_spec: Any, backend: str
) -> None:
    spec = write_spec(
        tiny_spec(
            name="killed",
            train={"max_epochs": 25},
            sweep={"trials": 6, "sampler": "random", "seed": 1, "max_concurrent": 1},
            tracking={"experiment": "killed"},
        )
    )
    args = ("--store", str(store.root), "--no-smoke", "-q", "--backend", backend)
    proc = popen("sweep", str(spec), *args)
    study = wait_for_study(store, "killed", proc)
    deadline = time.monotonic() + 180
    while True:  # two trials done and the third running: kill it mid-trial
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state in FINISHED]
        running = [
            t for t in trials if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
        ]
        if len(done) >= 2 and running:
            break
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sweep never reached its third trial"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {
        t.number: t.user_attrs["mlflow_run_id"] for t in study.get_trials() if t.state in FINISHED
    }
    killed = running[0]
    assert study.trials[killed.number].state == TrialState.RUNNING  # as the crash left it

    out = sweeplab("resume", "killed", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr
    study = load(store, "killed")
    trials = study.get_trials()
    # the dead worker's trial failed, and its configuration ran again: 6 results, 7 tries
    assert len(trials) == 7 and all(t.state in FINISHED for t in trials)
    assert [t.number for t in trials] == list(range(7))
    dead = trials[killed.number]
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
    retry = trials[dead.user_attrs["sweeplab.retried_as"]]
    assert retry.params == dead.params and retry.state != TrialState.FAIL
    results = [t for t in trials if t.number != dead.number]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in results)
    assert len({tuple(sorted(t.params.items())) for t in results}) == 6  # no replayed draws
    for number, run_id in before.items():  # finished trials were not run again
        assert trials[number].user_attrs["mlflow_run_id"] == run_id
    runs = _trial_runs(store, "killed")
    assert sorted(int(r.data.tags["sweeplab.trial_number"]) for r in runs) == list(range(7))
    client = MlflowClient(store.tracking_uri)
    exp = client.get_experiment_by_name("killed")
    assert exp is not None
    statuses = {r.info.run_id: r.info.status for r in client.search_runs([exp.experiment_id])}
    assert "RUNNING" not in statuses.values()
    assert statuses[killed.user_attrs["mlflow_run_id"]] == "KILLED"
    parent = study.user_attrs["sweeplab.parent_run_id"]
    assert statuses[parent] == "FINISHED"
    again = sweeplab("resume", "killed", "--store", str(store.root), "-q")
    assert again.returncode == 0 and "nothing to run" in again.stdout
    assert len(load(store, "killed").trials) == 7


@pytest.mark.distributed
def test_agents_on_postgresql_run_exactly_the_requested_trials(
    postgres: Postgres, tmp_path: Any, write_spec: Any
) -> None:
    storage = postgres.create("agents_optuna")
    tracking = postgres.create("agents_mlflow")
    store = Store.resolve(tmp_path / "store", tracking, storage)
    args = ["--store", str(store.root), "--tracking-uri", tracking, "--storage", storage, "-q"]
    spec = write_spec(
        tiny_spec(
            name="shared",
            # trials long enough (about 1 s) that the agents, which take seconds to
            # start, join before the first process has run all 12 on its own
            train={"max_epochs": 30},
            sweep={"trials": 12, "sampler": "tpe", "seed": 0},
            tracking={"experiment": "shared", "register_as": "shared-model"},
        )
    )
    first = popen("sweep", str(spec), "--no-smoke", *args)
    wait_for_study(store, "shared", first)
    agents = [popen("agent", "shared", *args) for _ in range(3)]
    outputs = [p.communicate(timeout=600) for p in [first, *agents]]
    for proc, (_stdout, stderr) in zip([first, *agents], outputs, strict=True):
        assert proc.returncode == 0, stderr
        assert "database is locked" not in stderr and "deadlock" not in stderr.lower()
    study = load(store, "shared")
    trials = study.get_trials()
    assert len(trials) == 12 and all(t.state in FINISHED for t in trials)
    assert sorted(t.number for t in trials) == list(range(12))
    owners = {t.user_attrs["sweeplab.owner"] for t in trials}
    assert len(owners) >= 2, owners  # the work was shared
    runs = _trial_runs(store, "shared")
    assert sorted(int(r.data.tags["sweeplab.trial_number"]) for r in runs) == list(range(12))
    client = MlflowClient(tracking, registry_uri=tracking)
    assert len(client.search_model_versions("name = 'shared-model'")) == 1  # finished once
    parent = client.get_run(study.user_attrs["sweeplab.parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["sweeplab.state"] == "complete"


def test_an_agent_on_the_sqlite_file_is_refused(store: Store) -> None:
    out = sweeplab("agent", "any", "--store", str(store.root))
    assert out.returncode == 2 and "postgresql" in out.stderr and "resume" in out.stderr
    assert not store.root.exists()
