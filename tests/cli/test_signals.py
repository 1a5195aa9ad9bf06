"""SIGTERM and SIGHUP stop a sweep as Ctrl-C does (``sweeplab.interrupts``): the running
trial failed as interrupted and queued again for ``resume``, its run and the parent run
KILLED, exit 128 + the signal."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeplab.interrupts import (
    Terminated,
    exit_status,
    reason,
    signal_named,
    signals_as_interrupts,
    uninterrupted,
)
from sweeplab.store import Store
from tests.battery import ended, killable_spec, load, popen, wait_for_study
from tests.helpers import all_runs, sweeplab


def _running(study: Any, proc: Any, count: int) -> list[Any]:
    """The trials running with their MLflow run, once ``count`` of them are."""
    deadline = time.monotonic() + 180
    while True:
        running = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if "mlflow_run_id" in t.user_attrs
        ]
        if len(running) >= count:
            return running
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


def _check_stopped(store: Store, name: str, running: list[Any], said: str) -> None:
    trials = load(store, name).get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    cut = [trials[t.number] for t in running if trials[t.number].state != TrialState.COMPLETE]
    assert cut, "every running trial had completed as the signal came"
    client = MlflowClient(store.tracking_uri)
    for t in cut:
        assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == said
        assert trials[t.user_attrs["sweeplab.retried_as"]].state == TrialState.WAITING
        assert client.get_run(t.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    parent = client.get_run(load(store, name).user_attrs["sweeplab.parent_run_id"])
    assert parent.info.status == "KILLED"


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, pytest.param(signal.SIGHUP, marks=pytest.mark.distributed)]
)
def test_a_signal_stops_a_sweep_like_ctrl_c(store: Store, write_spec: Any, signum: int) -> None:
    name = signal.Signals(signum).name.lower()
    spec = write_spec(killable_spec(name, trials=3, epochs=300, register=False))
    proc = popen("sweep", str(spec), "--store", str(store.root), "--no-smoke")
    running = _running(wait_for_study(store, name, proc), proc, 1)
    os.kill(proc.pid, signum)  # the process alone, as Kubernetes or systemd would
    output, errors = proc.communicate(timeout=120)
    said = f"interrupted ({signal.Signals(signum).name})"
    assert proc.returncode == 128 + signum, output + errors
    assert "Traceback" not in output + errors
    assert f"Sweep {name} {said}: " in output, output + errors
    _check_stopped(store, name, running, said)  # resume runs it: test_resume's Ctrl-C case


@pytest.mark.distributed
def test_sigterm_to_the_parent_alone_stops_every_local_worker(
    store: Store, write_spec: Any
) -> None:
    """``--workers 2``: SIGTERM to the command only; it stops its workers (their trials
    failed as interrupted, as Ctrl-C's) and exits 143; ``resume`` then runs exactly the
    sweep's trials, the interrupted ones going on from their checkpoints."""
    spec = killable_spec("term2", trials=4, epochs=300, register=False)
    spec["train"]["checkpoint_every"] = 5
    proc = popen(
        "sweep", str(write_spec(spec)), "--store", str(store.root), "--no-smoke", "-w", "2"
    )
    study = wait_for_study(store, "term2", proc)
    running = _running(study, proc, 2)
    while any(len(t.intermediate_values) < 12 for t in running):  # past a checkpoint or two
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
        running = [study.trials[t.number] for t in running]
    os.kill(proc.pid, signal.SIGTERM)
    output, errors = ended(proc, 120)
    assert proc.returncode == 143, output + errors
    trials = load(store, "term2").get_trials(deepcopy=False)
    reasons = {trials[t.number].user_attrs.get("fail_reason") for t in running}
    # the command's own trial says SIGTERM; a worker's, the Ctrl-C it was sent
    assert reasons <= {"interrupted (SIGTERM)", "interrupted (Ctrl-C)", None}, reasons
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    runs = all_runs(store, "term2")
    assert not [r for r in runs if r.info.status == "RUNNING"]

    out = sweeplab("resume", "term2", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr
    trials = load(store, "term2").get_trials(deepcopy=False)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    retried = [
        trials[t.user_attrs["sweeplab.retried_as"]] for t in trials if t.state.name == "FAIL"
    ]
    assert retried and all(t.user_attrs["sweeplab.resumed_at"] >= 5 for t in retried)
    assert not [r for r in all_runs(store, "term2") if r.info.status == "RUNNING"]


def test_inside_the_block_sigterm_is_an_interrupt_and_outside_it_is_not() -> None:
    with pytest.raises(Terminated) as caught, signals_as_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next bytecode
    assert exit_status(caught.value) == 143 and reason(caught.value) == "interrupted (SIGTERM)"
    assert exit_status(KeyboardInterrupt()) == 130
    assert reason(KeyboardInterrupt()) == "interrupted (Ctrl-C)"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back


def test_a_sigterm_that_a_library_raised_again_as_ctrl_c_keeps_its_own_exit_status() -> None:
    """Ray's C code raises a plain KeyboardInterrupt for the Terminated of a SIGTERM that
    came while it waited: inside signal_named it is a Terminated again (exit 143)."""

    def library_wait() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # what Ray's check_signals makes of it

    with pytest.raises(Terminated) as caught, signals_as_interrupts(), signal_named():
        library_wait()
    assert exit_status(caught.value) == 143
    with pytest.raises(KeyboardInterrupt) as plain, signals_as_interrupts(), signal_named():
        raise KeyboardInterrupt  # a Ctrl-C stays one
    assert exit_status(plain.value) == 130
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back


def test_a_signal_that_comes_during_an_uninterrupted_block_is_raised_as_it_ends(
    ctrl_c: None,
) -> None:
    done = False
    with pytest.raises(KeyboardInterrupt), uninterrupted():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)  # a handler that raised would have raised by now
        done = True
    assert done
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    with pytest.raises(Terminated) as caught, signals_as_interrupts(), uninterrupted():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
    assert caught.value.signum == signal.SIGTERM  # the first that came
    with uninterrupted():
        time.sleep(0.01)  # nothing came: nothing raised
