"""The reliability battery's long cases (`make soak`; not in make test): many kills in a
row on both backends, hundreds of fuzzed specs, an agent killed on PostgreSQL.

Counts print at the end of each case (run with -s to see them)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from sweeplab.store import Store
from tests.battery import (
    assert_nothing_lost,
    kill_and_resume,
    killable_spec,
    load,
    popen,
    wait_for_study,
)
from tests.helpers import Postgres
from tests.search.test_reliability import fuzz

pytestmark = pytest.mark.soak

KILLS = int(os.environ.get("SWEEPLAB_SOAK_KILLS", "25"))
FUZZ = int(os.environ.get("SWEEPLAB_SOAK_FUZZ", "400"))


def test_many_kills_in_a_row_lose_nothing(store: Store, write_spec: Any) -> None:
    trials = KILLS * 2 + 10
    spec = write_spec(killable_spec("soaked", trials=trials))
    kills = kill_and_resume(store, spec, "soaked", kills=KILLS, seed=2024, window=(2.0, 9.0))
    assert kills.delivered == KILLS
    assert_nothing_lost(store, "soaked", "soaked", trials)
    print(
        f"\nsoak: {kills.delivered} kills survived, {len(kills.killed_trials)} of them "
        f"mid-trial; {trials} trials, none lost, none run twice"
    )


@pytest.mark.distributed
def test_kills_in_a_row_on_the_ray_backend_lose_nothing(store: Store, write_spec: Any) -> None:
    spec = write_spec(killable_spec("rayed", trials=14, register=False))
    kills = kill_and_resume(
        store, spec, "rayed", kills=5, seed=7, backend="ray", window=(12.0, 25.0)
    )
    assert kills.delivered == 5
    assert_nothing_lost(store, "rayed", "rayed", 14)
    print(f"\nsoak (ray): {kills.delivered} kills survived; 14 trials, none lost")


def test_many_fuzzed_specs_run_or_are_rejected_with_a_path() -> None:
    tally = fuzz(FUZZ, database=None)
    print(f"\nsoak fuzz: {tally['run']} specs ran, {tally['rejected']} rejected")
    assert tally["run"] and tally["rejected"]


@pytest.mark.distributed
def test_a_killed_agent_loses_nothing(postgres: Postgres, tmp_path: Any, write_spec: Any) -> None:
    """Three agents on PostgreSQL; one is killed mid-trial. The others run the sweep to
    exactly its trial count, and fail the dead agent's trial."""
    storage = postgres.create("soak_optuna")
    tracking = postgres.create("soak_mlflow")
    store = Store.resolve(tmp_path / "store", tracking, storage)
    args = ["--store", str(store.root), "--tracking-uri", tracking, "--storage", storage, "-q"]
    spec = write_spec(killable_spec("agents", trials=16, epochs=40))
    first = popen("sweep", str(spec), "--no-smoke", *args)
    study = wait_for_study(store, "agents", first)
    agents = [popen("agent", "agents", *args) for _ in range(2)]
    victim = agents[0]
    deadline = time.monotonic() + 300
    while True:  # kill the first agent once it runs a trial of its own
        mine = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.state.name == "RUNNING"
            and str(t.user_attrs.get("sweeplab.owner", "")).endswith(f":{victim.pid}")
        ]
        if mine:
            break
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    for proc in (first, agents[1]):
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    study = load(store, "agents")
    dead = study.trials[mine[0].number]
    assert dead.state.name == "FAIL" and "died" in dead.user_attrs["fail_reason"]
    assert_nothing_lost(store, "agents", "agents", 16)
    print("\nsoak: 1 agent killed mid-trial; 16 trials, none lost")


@pytest.mark.distributed
def test_a_killed_ray_worker_fails_its_trial_and_the_sweep_goes_on(
    store: Store, write_spec: Any
) -> None:
    """SIGKILL the Ray actor running a trial (the driver lives): Ray Tune records the
    trial's error, sweeplab fails it with the reason, and the sweep runs the rest."""
    spec = write_spec(killable_spec("worker", trials=6, epochs=60, register=False))
    proc = popen("sweep", str(spec), "--backend", "ray", "--no-smoke", "--store", str(store.root))
    study = wait_for_study(store, "worker", proc)
    deadline = time.monotonic() + 300
    victim = None
    while victim is None:  # the actor process of the first running trial
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        running = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        if running:
            victim = _ray_trial_actor()
        time.sleep(0.2)
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    study = load(store, "worker")
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed and all(t.user_attrs.get("fail_reason") for t in failed), failed
    for t in failed:  # its configuration ran again: a dead worker is no fault of it
        again = study.trials[t.user_attrs["sweeplab.retried_as"]]
        assert again.params == t.params and again.user_attrs["sweeplab.deaths"] == 1
    assert_nothing_lost(store, "worker", "worker", 6)
    print(f"\nsoak: 1 Ray worker killed; trial(s) {[t.number for t in failed]} failed, 6 trials")


def _ray_trial_actor() -> int | None:
    """The pid of a process whose title Ray set to a trainable's ``ray::…train…``."""
    from pathlib import Path

    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        if title.startswith("ray::") and "train" in title.lower():
            return int(entry.name)
    return None
