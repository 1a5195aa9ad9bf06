"""The reliability battery's drivers, shared by the fast cases (make test) and the long
ones (make soak): kill -9 and resume, mutate specs, and the checks that nothing was lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import default_signals, tiny_spec

FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")


def popen(*args: str) -> subprocess.Popen[str]:
    """The CLI in its own process group, so that a kill takes its children too; with
    faulthandler on, so that ``ended`` can show where a hung one is."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweeplab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_signals,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )


def ended(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``proc``'s output once it exits. One still running after ``timeout`` fails the
    test with the stacks of every process of its group (SIGABRT: faulthandler's dump)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGABRT)
        _, errors = proc.communicate(timeout=30)
        raise AssertionError(f"still running {timeout} s later:\n{errors[-20000:]}") from None


def load(store: Any, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=store.storage_url)


def wait_for_study(store: Any, name: str, proc: subprocess.Popen[str], wait: float = 120) -> Any:
    deadline = time.monotonic() + wait
    while True:
        try:
            return load(store, name)
        except Exception:  # not created yet
            if proc.poll() is not None:
                raise AssertionError(f"exited {proc.returncode}: {proc.communicate()[1]}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for_running(
    study: Any, count: int, proc: subprocess.Popen[str], wait: float = 180
) -> list[Any]:
    """The study's RUNNING trials once ``count`` of them have their MLflow run (they are
    training); fails if ``proc`` ends first, or after ``wait`` seconds."""
    from optuna.trial import TrialState

    deadline = time.monotonic() + wait
    while True:
        running = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if "mlflow_run_id" in t.user_attrs
        ]
        if len(running) == count:
            return running
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{count} trials never trained at once"
        time.sleep(0.05)


@dataclass
class Kills:
    """What a kill-and-resume run did: the kills delivered, the trials they cut short."""

    delivered: int = 0
    killed_trials: dict[int, str | None] = field(default_factory=dict)  # number: MLflow run


def kill_and_resume(
    store: Any,
    spec_path: Path,
    name: str,
    *,
    kills: int,
    seed: int,
    backend: str = "optuna",
    window: tuple[float, float] = (2.0, 8.0),
) -> Kills:
    """Start the sweep, SIGKILL its process group at a random moment, resume, kill again…
    ``kills`` times in a row; then resume once more and let it finish.

    Between kills it checks what a user relies on: a trial that had finished keeps its
    state and its MLflow run (it was not run again).
    """
    rng = random.Random(seed)
    args = ("--store", str(store.root), "-q")
    done: Kills = Kills()
    finished_runs: dict[int, tuple[str, str]] = {}
    proc = popen("sweep", str(spec_path), "--no-smoke", "--backend", backend, *args)
    wait_for_study(store, name, proc)  # resume needs the study: the first kill comes after it
    while done.delivered < kills:
        time.sleep(rng.uniform(*window))
        assert proc.poll() is None, (
            f"the sweep ended by itself after {done.delivered} kills (rc {proc.returncode}); "
            f"give it more trials: {proc.communicate()[1][-2000:]}"
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done.delivered += 1
        trials = load(store, name).get_trials(deepcopy=False)
        for t in trials:
            if t.state.name == "RUNNING":
                done.killed_trials[t.number] = t.user_attrs.get("mlflow_run_id")
            if t.state.name in FINISHED_STATES:
                run = str(t.user_attrs.get("mlflow_run_id"))
                before = finished_runs.setdefault(t.number, (t.state.name, run))
                assert before == (t.state.name, run), f"trial {t.number} changed after it ended"
        proc = popen("resume", name, *args)
    _stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    for number, (state, run) in finished_runs.items():
        t = load(store, name).trials[number]
        assert (t.state.name, str(t.user_attrs.get("mlflow_run_id"))) == (state, run)
    return done


def assert_nothing_lost(store: Any, name: str, experiment: str, trials: int) -> None:
    """Exactly ``trials`` finished trials besides the tries that were run again (a dead
    worker's: its configuration ran again), every one of them COMPLETE or PRUNED; none
    RUNNING in Optuna or MLflow, at most one MLflow run per trial (no trial ran twice),
    the parent run finished."""
    from mlflow import MlflowClient

    study = load(store, name)
    every = study.get_trials(deepcopy=False)
    assert all(t.state.name in FINISHED_STATES for t in every), [t.state for t in every]
    counted = [t for t in every if "sweeplab.retried_as" not in t.user_attrs]
    states = [t.state.name for t in counted]
    assert len(states) == trials and set(states) <= {"COMPLETE", "PRUNED"}, states
    client = MlflowClient(store.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    trial_runs = [  # a trial's own run, not the nested runs of its restarts
        r
        for r in runs
        if "sweeplab.trial_number" in r.data.tags and "sweeplab.restart" not in r.data.tags
    ]
    numbers = sorted(int(r.data.tags["sweeplab.trial_number"]) for r in trial_runs)
    assert len(numbers) == len(set(numbers)), numbers  # no trial has two runs
    by_number = {int(r.data.tags["sweeplab.trial_number"]): r.info.run_id for r in trial_runs}
    for t in study.get_trials(deepcopy=False):
        # a trial killed (or out of disk) before its run was created has none, and failed
        assert t.user_attrs.get("mlflow_run_id") == by_number.get(t.number)
        assert t.number in by_number or t.state.name == "FAIL", t
    parent = client.get_run(study.user_attrs["sweeplab.parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["sweeplab.state"] == "complete"


def heartbeats(storage_url: str) -> dict[int, Any]:
    """Optuna's last heartbeat of each trial (by the storage's trial id), read from its
    table: Optuna has no public call that returns one."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(storage_url)
    try:
        with engine.connect() as db:
            rows = db.execute(sqlalchemy.text("SELECT trial_id, heartbeat FROM trial_heartbeats"))
            return {int(trial_id): beat for trial_id, beat in rows}
    finally:
        engine.dispose()


def age_heartbeats(storage_url: str) -> None:
    """Make every recorded heartbeat stale: what a lost host's trials look like once the
    grace period has passed, without waiting it out."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(storage_url)
    try:
        with engine.begin() as db:
            db.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01'"))
    finally:
        engine.dispose()


def killable_spec(name: str, trials: int, epochs: int = 30, register: bool = True) -> Any:
    """A sweep whose trials last about a second each: long enough to be killed mid-trial."""
    tracking: dict[str, Any] = {"experiment": name}
    if register:
        tracking["register_as"] = f"{name}-model"
    return tiny_spec(
        name=name,
        train={"max_epochs": epochs},
        sweep={"trials": trials, "sampler": "tpe", "seed": 3, "max_concurrent": 1},
        tracking=tracking,
    )


# --- the spec fuzzer ---------------------------------------------------------------

# Values a mutation may put anywhere: wrong types, edge numbers, names that do not exist,
# paths that try to leave the folder. Numbers stay small: a huge but valid count
# (10**9 epochs) would be accepted and run for ever, which proves nothing.
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    2,
    -1,
    7,
    0.5,
    -0.5,
    1e-9,
    3.0,
    float("nan"),
    float("inf"),
    "",
    "x",
    "adam",
    "relu",
    "max",
    "min",
    "val_loss",
    "../../etc/passwd",
    "train.lr",
    [],
    [1],
    [16, 8],
    ["a", 1],
    {},
    {"type": "float", "low": 0.001, "high": 0.1},
    {"type": "int", "low": 1, "high": 4},
    {"type": "categorical", "choices": ["relu", "tanh"]},
    {"type": "float", "low": 1.0, "high": 0.1},
    {"type": "float", "low": -1.0, "high": 1.0, "log": True},
    {"type": "categorical", "choices": []},
    {"type": "nope"},
]
# Keys a mutation may add: real section and field names in the wrong place, typos, junk.
ODD_KEYS = ["lr", "hidden", "dropout", "train.lr", "model.hidden", "model.dropout", "lrr", "x", ""]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a spec mapping (keys and list indices), the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        path = (*prefix, key)
        found.append(path)
        if isinstance(value, dict | list):
            found.extend(_paths(value, path))
    return found


def _parent(spec: Any, path: tuple[Any, ...]) -> Any:
    node = spec
    for key in path[:-1]:
        node = node[key]
    return node


def mutations() -> Any:
    """A hypothesis strategy: a function that mutates a spec mapping in place, 1-3 times."""
    from hypothesis import strategies as st

    one = st.tuples(
        st.sampled_from(["nudge", "nudge", "nudge", "delete", "replace", "add", "rename"]),
        st.integers(min_value=0, max_value=10_000),  # which path
        st.sampled_from(ODD_VALUES),
        st.sampled_from(ODD_KEYS),
    )
    return st.lists(one, min_size=1, max_size=3)


def mutate(spec: dict[str, Any], steps: list[tuple[str, int, Any, str]]) -> list[str]:
    """Apply ``steps`` (from ``mutations()``) to ``spec``; returns what was done, for the
    failure message."""
    import copy

    done = []
    for action, index, value, key in steps:
        paths = _paths(spec)
        path = paths[index % len(paths)]
        parent = _parent(spec, path)
        where = ".".join(map(str, path))
        if action == "nudge":
            parent[path[-1]] = nudge(parent[path[-1]], index)
            done.append(f"{where} = {parent[path[-1]]!r}")
        elif action == "delete":
            del parent[path[-1]]
            done.append(f"delete {where}")
        elif action == "replace":
            parent[path[-1]] = copy.deepcopy(value)
            done.append(f"{where} = {value!r}")
        elif action == "add" and isinstance(parent, dict):
            parent[key] = copy.deepcopy(value)
            done.append(f"add {'.'.join(map(str, (*path[:-1], key)))} = {value!r}")
        elif action == "rename" and isinstance(parent, dict) and key not in parent:
            parent[key] = parent.pop(path[-1])
            done.append(f"rename {where} to {key!r}")
        else:  # a list holds no keys: replace the item instead
            parent[path[-1]] = copy.deepcopy(value)
            done.append(f"{where} = {value!r}")
        if not spec:
            break
    return done


def nudge(value: Any, index: int) -> Any:
    """A value of the same kind, often still valid: a number scaled or negated, another
    name from the catalogs (or a misspelt one), a list shortened or grown."""
    from sweeplab.data.catalog import DATASETS
    from sweeplab.models.catalog import ACTIVATIONS, NORMS
    from sweeplab.optim.catalog import OPTIMIZERS, SCHEDULES
    from sweeplab.search.catalog import PRUNERS, SAMPLERS

    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return [value + 1, value - 1, value * 2, 0, -value, value // 2][index % 6]
    if isinstance(value, float):
        return [value * 10, value / 10, 0.0, -value, 1.0, value + 0.5][index % 6]
    if isinstance(value, str):
        names = sorted({*ACTIVATIONS, *NORMS, *OPTIMIZERS, *SCHEDULES, *DATASETS})
        names += sorted({*SAMPLERS, *PRUNERS, value[:-1], value.upper()})
        return names[index % len(names)]
    if isinstance(value, list):
        return value[:-1] if index % 2 else value + value[:1]
    return value


def fuzz_bases() -> list[dict[str, Any]]:
    """Valid specs the mutations start from: an MLP with a searched lr, width and
    activation, and a small CNN with a pruner."""
    mlp = tiny_spec(
        train={"max_epochs": 2},
        model={"arch": "mlp", "hidden": [8], "dropout": 0.1, "activation": "relu"},
        search_space={
            "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            "model.hidden": {"type": "categorical", "choices": [[8], [16, 8]]},
            "model.activation": {"type": "categorical", "choices": ["relu", "tanh"]},
        },
        sweep={"trials": 2, "sampler": "tpe", "seed": 0, "pruner": "median"},
    )
    cnn = tiny_spec(
        data={"dataset": "digits", "limit": 300},
        model={"arch": "cnn", "channels": [4], "kernel_size": 3, "dropout": 0.0, "head": [8]},
        train={"max_epochs": 2, "batch_size": 64},
        search_space={"model.dropout": {"type": "float", "low": 0.0, "high": 0.5}},
        sweep={"trials": 2, "sampler": "random", "seed": 0, "pruner": "hyperband"},
    )
    return [mlp, cnn]


def shorten(spec: dict[str, Any]) -> None:
    """An accepted spec runs for at most 2 trials of 2 epochs (lowering a count keeps a
    valid spec valid; if not, the sweep must reject it cleanly all the same)."""
    for section, key in (("sweep", "trials"), ("train", "max_epochs")):
        node = spec.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), int) and node[key] > 2:
            node[key] = 2


# --- a disk of its own --------------------------------------------------------------


def mount_tmpfs(folder: Path, size: str) -> None:
    """A tmpfs of ``size`` at ``folder``: a real disk that fills up. Skips the test where
    mounting is not allowed (not root, a container without CAP_SYS_ADMIN)."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until the disk is full; returns it (delete it to free)."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, chunk)  # unbuffered: the error comes here, not at close
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler
