"""Ending a sweep: ``sweeplab stop`` from another process (its workers finish, or with
--now interrupt, their running trials, and exit), ``sweep.stop_when``, and agents of a
sweep that is done."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState as OptunaState

from sweeplab.store import Store
from tests.battery import wait_for_study
from tests.helpers import Postgres, all_runs, default_signals, in_process, sweeplab, tiny_spec


def _slow_spec(name: str, trials: int, epochs: int) -> dict[str, Any]:
    """Trials of a few seconds each on 2 cores (digits, a wider MLP)."""
    return tiny_spec(
        name=name,
        model={"arch": "mlp", "hidden": [128]},
        data={"dataset": "digits"},
        train={"max_epochs": epochs, "batch_size": 16},
        sweep={"trials": trials, "sampler": "random", "seed": 0},
        tracking={"experiment": name, "register_as": None, "report": False},
    )


def _start(store: Store, spec: Any, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "sweeplab", "sweep", str(spec), "--no-smoke", "-q"]
    command += ["--store", str(store.root), *extra]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )


def _wait_for(
    store: Store, name: str, proc: subprocess.Popen[str], done: int, running: int
) -> None:
    """Until the sweep has ``done`` finished trials and ``running`` running ones."""
    from sweeplab.search.states import Counts

    study = wait_for_study(store, name, proc)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        counts = Counts.of(study.get_trials(deepcopy=False))
        if counts.finished >= done and counts.running >= running:
            return
        time.sleep(0.3)
    raise AssertionError(f"sweep {name} never had {done} finished and {running} running trials")


def _nothing_running(store: Store, name: str) -> None:
    from sweeplab import load_sweep

    sweep = load_sweep(name, store=store)
    assert sweep.study.get_trials(states=(OptunaState.RUNNING,)) == []
    assert [r.info.run_name for r in all_runs(store, name) if r.info.status == "RUNNING"] == []


# three processes (two workers and the stop) for 40 s: CI runs it with the distributed
# tests; make test keeps `stop --now` of one worker and its resume
@pytest.mark.distributed
def test_stop_from_another_process_ends_a_sweep_of_two_local_workers(
    store: Store, write_spec: Any
) -> None:
    from sweeplab import SweepState, load_sweep

    proc = _start(store, write_spec(_slow_spec("stopped", trials=40, epochs=6)), "--workers", "2")
    try:
        _wait_for(store, "stopped", proc, done=1, running=2)
        said = sweeplab("stop", "stopped", "--store", str(store.root))
        assert said.returncode == 0, said.stderr
        # the workers finish their trials (or, caught between two, the command ends it)
        assert "running trial(s) finish" in said.stdout or "stopped stopped" in said.stdout
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Sweep stopped stopped (sweeplab stop" in out
    sweep = load_sweep("stopped", store=store)
    assert sweep.state is SweepState.STOPPED
    assert 1 <= sweep.counts.complete < 40 and sweep.counts.failed == 0
    _nothing_running(store, "stopped")
    again = sweeplab("stop", "stopped", "--store", str(store.root))
    assert again.returncode == 2 and "has finished (stopped): nothing to stop" in again.stderr


def test_stop_now_interrupts_the_running_trials_and_resume_runs_them(
    store: Store, write_spec: Any
) -> None:
    from sweeplab import SweepState, load_sweep

    proc = _start(store, write_spec(_slow_spec("halted", trials=4, epochs=300)))
    try:
        _wait_for(store, "halted", proc, done=0, running=1)
        started = time.monotonic()
        said = sweeplab("stop", "halted", "--now", "--wait", "--store", str(store.root))
        assert said.returncode == 0, said.stderr
        assert (
            "sweep halted stopped" in said.stdout and "1 interrupted trial(s) queued" in said.stdout
        )
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - started < 40  # not the 300 epochs
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    sweep = load_sweep("halted", store=store)
    assert sweep.state is SweepState.STOPPED
    interrupted = sweep.trials[0]
    assert (
        interrupted.reason is not None and "interrupted (sweeplab stop --now)" in interrupted.reason
    )
    assert sweep.counts.waiting == 1  # its configuration, queued for resume
    _nothing_running(store, "halted")


def test_stop_when_ends_the_sweep_at_the_trial_that_reached_it(store: Store) -> None:
    """A bad configuration, then a good one that reaches the goal: no third trial runs."""
    from sweeplab import SweepState, TrialState, create_sweep

    configs = [{"train.lr": 0.001}, {"train.lr": 0.1}, {"train.lr": 0.05}]
    spec = tiny_spec(
        train={"max_epochs": 15},
        sweep={"trials": 6, "enqueue": configs, "stop_when": {"value": 0.85}},
    )
    sweep = create_sweep(spec, store=store, name="goal")
    result = sweep.optimize()
    values = [t.value for t in sweep.trials]
    assert values[0] is not None and values[0] < 0.85 <= values[1], values
    assert sweep.counts.finished == 2  # the third configuration never started
    assert sweep.trials[2].state is TrialState.WAITING
    assert result.state is SweepState.COMPLETE
    assert result.stop_reason == f"trial #1 reached val_acc = {values[1]:.4g} (>= 0.85)"


def test_an_agent_of_a_finished_sweep_exits_at_once_with_one_line(
    store: Store, postgres: Postgres
) -> None:
    from sweeplab import create_sweep

    storage = postgres.create("agentdone")
    where = ("--store", str(store.root), "--storage", storage)
    on_postgres = Store.resolve(store.root, storage=storage)
    spec = tiny_spec(name="done", sweep={"trials": 1, "sampler": "random"})
    create_sweep(spec, store=on_postgres).optimize()
    out = in_process("agent", "done", *where)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        "sweep done is complete (1 of 1 trials): nothing to run"
    ]


def test_an_agent_started_while_its_sweep_creates_the_tracking_database_joins(
    store: Store, postgres: Postgres, tmp_path: Path
) -> None:
    """An agent started beside its sweep may find mlflow.db still empty (0 bytes): SQLite
    makes the file before the sweep writes the tables. The agent goes on, as a sweep does."""
    from sweeplab import create_sweep

    storage = postgres.create("agentearly")
    on_postgres = Store.resolve(store.root, storage=storage)
    create_sweep(
        tiny_spec(name="early", sweep={"trials": 1, "sampler": "random"}), store=on_postgres
    ).optimize()
    beside = tmp_path / "beside"
    beside.mkdir()
    (beside / "mlflow.db").write_bytes(b"")  # as the sweep's first connection leaves it
    out = in_process("agent", "early", "--store", str(beside), "--storage", storage)
    assert out.returncode == 0, out.stderr
    assert "complete (1 of 1 trials)" in out.stdout
