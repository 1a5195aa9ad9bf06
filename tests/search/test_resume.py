"""Crashes and several workers: kill -9 then resume, agents on a real PostgreSQL server."""

from __future__ import annotations

import datetime
import os
import signal
import time
import warnings
from typing import Any

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeplab.compat import study_storage, trial_id
from sweeplab.store import Store
from tests.battery import (
    age_heartbeats,
    assert_nothing_lost,
    heartbeats,
    killable_spec,
    load,
    popen,
    wait_for_running,
    wait_for_study,
)
from tests.helpers import Postgres, sweeplab, tiny_spec

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
    # each agent samples from a stream of its own: no agent replays TPE's start-up draws
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 12
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


def test_local_workers_share_a_sqlite_sweep(store: Store) -> None:
    """--workers 2 on the embedded store: two worker processes, exactly the sweep's
    trials, every trial's params distinct, one progress event per trial."""
    import os as _os

    from sweeplab.search import LocalWorkers, run_sweep
    from sweeplab.spec import spec_from_dict

    exp = spec_from_dict(  # trials long enough that the spawned worker is up before the end
        tiny_spec(
            train={"max_epochs": 150},
            sweep={"trials": 6, "sampler": "random"},
            tracking={"experiment": "pool"},
        )
    )
    events: list[Any] = []
    result = run_sweep(exp, store, options=LocalWorkers(2), on_trial=events.append)
    trials = load(store, result.name).trials
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    owners = {t.user_attrs["sweeplab.owner"].rsplit(":", 1)[1] for t in trials}
    # both workers ran trials: this process (worker 0 on CPUs) and the spawned one
    assert str(_os.getpid()) in owners and len(owners) == 2
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6
    assert sorted(e.number for e in events) == list(range(6))
    assert result.counts.complete == 6 and result.best_trial is not None


@pytest.mark.distributed
def test_a_killed_local_worker_loses_nothing(store: Store, write_spec: Any) -> None:
    """sweeplab sweep --workers 2; one worker is killed with SIGKILL mid-trial: the other
    fails its trial, runs its configuration again, and the sweep ends with exactly its
    trials."""
    spec = write_spec(killable_spec("pooled", trials=8, epochs=120, register=False))
    proc = popen("sweep", str(spec), "--store", str(store.root), "--no-smoke", "-q", "-w", "2")
    study = wait_for_study(store, "pooled", proc)
    deadline = time.monotonic() + 180
    running: dict[int, int] = {}
    while len(running) < 2:  # both workers in a trial: kill the one started last
        running = {
            int(str(t.user_attrs["sweeplab.owner"]).rsplit(":", 1)[1]): t.number
            for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
        }
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the workers never ran trials together"
        time.sleep(0.05)
    pid = max(running)
    victim = (running[pid], pid)
    os.kill(pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert_nothing_lost(store, "pooled", "pooled", 8)
    dead = load(store, "pooled").trials[victim[0]]
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
    assert "sweeplab.retried_as" in dead.user_attrs


@pytest.mark.distributed
def test_ctrl_c_stops_every_local_worker_and_resume_runs_what_they_had(
    store: Store, write_spec: Any
) -> None:
    """A terminal's Ctrl-C (SIGINT to the process group) during --workers 2: exit 130,
    each worker's trial failed as interrupted and queued again, no run left RUNNING;
    resume then ends with exactly the sweep's trials."""
    spec = write_spec(killable_spec("stopped", trials=4, epochs=300, register=False))
    proc = popen("sweep", str(spec), "--store", str(store.root), "--no-smoke", "-w", "2")
    study = wait_for_study(store, "stopped", proc)
    running = wait_for_running(study, 2, proc)  # both workers in a trial
    sent = datetime.datetime.now()  # Optuna records local times, as this
    os.killpg(proc.pid, signal.SIGINT)
    output, errors = proc.communicate(timeout=120)
    assert proc.returncode == 130, output + errors
    assert "interrupted" in output + errors and "Traceback" not in output + errors
    trials = load(store, "stopped").get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = 0
    for t in running:
        stopped = trials[t.number]
        if stopped.state == TrialState.COMPLETE:  # it was telling its value as the signal came
            assert stopped.datetime_complete is not None
            assert stopped.datetime_complete <= sent + datetime.timedelta(seconds=1)
            continue
        assert stopped.state == TrialState.FAIL
        assert "interrupted" in stopped.user_attrs["fail_reason"]
        assert trials[stopped.user_attrs["sweeplab.retried_as"]].state == TrialState.WAITING
        interrupted += 1
    assert interrupted >= 1
    runs = _trial_runs(store, "stopped")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    out = sweeplab("resume", "stopped", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_nothing_lost(store, "stopped", "stopped", 4)


def test_a_zombie_worker_counts_as_dead() -> None:
    """A worker killed but not yet reaped by its parent is a zombie: its trial is failed
    at once, not left to the heartbeat's grace period."""
    import subprocess

    from sweeplab.search.claims import _alive

    child = subprocess.Popen(["sleep", "0.1"])
    time.sleep(0.5)  # ended, not yet waited for
    assert not _alive(child.pid)
    assert _alive(os.getpid())
    child.wait()
    assert not _alive(child.pid)


def test_a_trial_owned_on_another_host_is_failed_once_its_heartbeats_stop(store: Store) -> None:
    """A Ray driver's trial whose owner is on another host: left alone while its heartbeat
    is fresh (that driver may live), failed and queued again once the heartbeat is stale."""
    from sweeplab.search import Sweep, run_sweep
    from sweeplab.search.claims import Recovery, owner
    from sweeplab.search.keys import ATTR_OWNER, ATTR_OWNERS_LOCKED
    from sweeplab.spec import spec_from_dict

    exp = spec_from_dict(
        tiny_spec(sweep={"trials": 1, "sampler": "random"}, tracking={"experiment": "far"})
    )
    run_sweep(exp, store, name="far")
    sweep = Sweep.open(store, "far", stream=owner())
    sweep.study.set_user_attr(ATTR_OWNERS_LOCKED, False)  # as a Ray sweep's
    with warnings.catch_warnings():  # Optuna's note: heartbeats belong to Study.optimize
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        lost = sweep.study.ask()
    lost.set_user_attr(ATTR_OWNER, "lost-host.invalid:4242")
    sweep.storage.record_heartbeat(trial_id(lost))
    assert Recovery(sweep).run() == []
    assert sweep.storage.get_trial(trial_id(lost)).state == TrialState.RUNNING
    age_heartbeats(store.storage_url)
    Recovery(sweep).run()
    failed = sweep.storage.get_trial(trial_id(lost))
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == "worker lost-host.invalid:4242 died (no heartbeat)"
    queued = sweep.study.trials[failed.user_attrs["sweeplab.retried_as"]]
    assert queued.state == TrialState.WAITING and queued.params == failed.params


def _cut_trial(store: Store, name: str) -> tuple[Any, Any, str]:
    """A finished 1-trial sweep ``name`` (its experiment too), then one more trial asked,
    owned by a process of this host that has exited, with its run started: a worker
    killed mid-trial. Returns the sweep, the cut trial and its run's id."""
    import socket
    import subprocess

    from sweeplab.search import Sweep, run_sweep
    from sweeplab.search.claims import owner
    from sweeplab.search.keys import ATTR_OWNER, TAG_SWEEP, TAG_TRIAL
    from sweeplab.spec import spec_from_dict

    exp = spec_from_dict(
        tiny_spec(sweep={"trials": 1, "sampler": "random"}, tracking={"experiment": name})
    )
    run_sweep(exp, store, name=name)
    sweep = Sweep.open(store, name, stream=owner())
    with warnings.catch_warnings():  # Optuna's note: heartbeats belong to Study.optimize
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        cut = sweep.study.ask()
    dead = subprocess.Popen(["true"])
    dead.wait()
    cut.set_user_attr(ATTR_OWNER, f"{socket.gethostname()}:{dead.pid}")
    tags = {TAG_SWEEP: name, TAG_TRIAL: cut.number}
    run_id = sweep.tracker.start_run(f"trial-{cut.number}", parent=sweep.parent, tags=tags)
    return sweep, cut, run_id


def test_a_trial_killed_between_its_run_and_the_note_of_it_names_its_run_killed(
    store: Store,
) -> None:
    """A worker killed between the two writes that start a trial (its MLflow run, then
    the run's id on the Optuna trial) leaves a run its trial does not name: recovery finds
    it by its tags, ends it KILLED, and the failed trial names it; resume then loses
    nothing (the five kills in a row met this once in CI)."""
    from sweeplab.search.claims import Recovery

    sweep, cut, run_id = _cut_trial(store, "gap")
    assert Recovery(sweep).run() == [cut.number]  # its run found and ended
    failed = sweep.storage.get_trial(trial_id(cut))
    assert failed.state == TrialState.FAIL and failed.user_attrs["mlflow_run_id"] == run_id
    assert MlflowClient(store.tracking_uri).get_run(run_id).info.status == "KILLED"
    out = sweeplab("resume", "gap", "--trials", "2", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_nothing_lost(store, "gap", "gap", 3)  # the one it held, the cut one's retry, one more


def test_a_trial_killed_between_its_ended_run_and_its_tell_has_its_run_killed(
    store: Store,
) -> None:
    """A worker killed after it ended its trial's run FINISHED but before it told the
    trial: recovery fails the trial and queues it again, and ends the run KILLED with
    the reason, not left saying the trial ended (the five kills in a row met this once)."""
    from sweeplab.search.claims import Recovery
    from sweeplab.search.keys import ATTR_RUN

    sweep, cut, run_id = _cut_trial(store, "told")
    cut.set_user_attr(ATTR_RUN, run_id)
    sweep.tracker.end_run(run_id)  # FINISHED: the worker died before its tell
    Recovery(sweep).run()
    failed = sweep.storage.get_trial(trial_id(cut))
    assert failed.state == TrialState.FAIL and "sweeplab.retried_as" in failed.user_attrs
    run = MlflowClient(store.tracking_uri).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["sweeplab.state"] == "failed"
    assert run.data.tags["sweeplab.fail_reason"] == failed.user_attrs["fail_reason"]
    out = sweeplab("resume", "told", "--trials", "1", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_nothing_lost(store, "told", "told", 2)  # the one it held and the cut one's retry


@pytest.mark.distributed
def test_a_ray_driver_lost_on_another_host_leaves_no_trial_running(
    store: Store, write_spec: Any
) -> None:
    """A Ray sweep's driver records heartbeats for its trials; killed, and its trials'
    owner moved to another host name (where no pid can be checked), `resume` fails them
    once their heartbeats are stale, runs their configurations again, and finishes."""
    spec = write_spec(killable_spec("faraway", trials=4, epochs=60, register=False))
    args = ("--store", str(store.root), "-q")
    proc = popen("sweep", str(spec), "--backend", "ray", "--no-smoke", *args)
    study = wait_for_study(store, "faraway", proc)
    deadline, first = time.monotonic() + 240, None
    while True:  # a running trial's heartbeat, recorded twice by the driver
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        beats = heartbeats(store.storage_url)
        ids = [trial_id(t) for t in running if trial_id(t) in beats]
        if ids and first is None:
            first = (ids[0], beats[ids[0]])
        elif first is not None and first[0] in ids and beats[first[0]] != first[1]:
            break
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    lost = load(store, "faraway").get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert lost
    storage = study_storage(load(store, "faraway"))
    for t in lost:  # the driver's host is now another one: only heartbeats can tell
        storage.set_trial_user_attr(trial_id(t), "sweeplab.owner", "lost-host.invalid:4242")
    age_heartbeats(store.storage_url)
    out = sweeplab("resume", "faraway", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert_nothing_lost(store, "faraway", "faraway", 4)
    for t in lost:
        dead = load(store, "faraway").trials[t.number]
        assert dead.user_attrs["fail_reason"] == "worker lost-host.invalid:4242 died (no heartbeat)"
        assert "sweeplab.retried_as" in dead.user_attrs


@pytest.mark.distributed
@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_agents_then_a_kill_and_resume_draw_distinct_params_and_keep_the_count(
    postgres: Postgres, tmp_path: Any, write_spec: Any, sampler: str
) -> None:
    """A sweep and 3 agents on PostgreSQL; one agent is killed mid-trial, then resume:
    every trial's params are distinct, and exactly sweep.trials trials are COMPLETE or
    PRUNED (the killed agent's configuration ran again)."""
    storage = postgres.create(f"kill_{sampler}_optuna")
    tracking = postgres.create(f"kill_{sampler}_mlflow")
    store = Store.resolve(tmp_path / "store", tracking, storage)
    args = ["--store", str(store.root), "--tracking-uri", tracking, "--storage", storage, "-q"]
    spec = write_spec(
        tiny_spec(
            name="killed",
            train={"max_epochs": 30},
            sweep={"trials": 12, "sampler": sampler, "seed": 0},
            tracking={"experiment": "killed"},
        )
    )
    first = popen("sweep", str(spec), "--no-smoke", *args)
    study = wait_for_study(store, "killed", first)
    agents = [popen("agent", "killed", *args) for _ in range(3)]
    victim, deadline = agents[0], time.monotonic() + 300
    while True:  # kill the first agent once it runs a trial of its own
        mine = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.RUNNING
            and str(t.user_attrs.get("sweeplab.owner", "")).endswith(f":{victim.pid}")
        ]
        if mine:
            break
        assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    for proc in (first, *agents[1:]):
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    out = sweeplab("resume", "killed", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = load(store, "killed").get_trials()
    dead = trials[mine[0].number]
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
    counted = [t for t in trials if "sweeplab.retried_as" not in t.user_attrs]
    assert len(counted) == 12
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in counted)
    assert len({tuple(sorted(t.params.items())) for t in counted}) == 12
