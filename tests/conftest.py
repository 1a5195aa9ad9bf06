"""The fixtures: a real store in a temp folder, a finished sweep shared by the tests that
only read it, PostgreSQL and Ray for a session or module, and leak checks. Helpers are in
``tests/helpers.py``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Finished, Postgres, postgres_server, tiny_spec


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from sweeplab.store import Store

    return Store.resolve(tmp_path / "store")


@pytest.fixture
def write_spec(tmp_path: Path) -> Any:
    """Write a spec mapping as YAML into tmp_path; returns its path."""
    import yaml

    def write(spec: dict[str, Any], name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


@pytest.fixture(autouse=True)
def _end_leaked_mlflow_runs() -> Any:
    """Like MLflow's own suite: a test that leaks a fluent active run does not poison the next."""
    yield
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run("KILLED")


@pytest.fixture(autouse=True)
def _no_process_left() -> Any:
    """A sweeplab or MLflow process a test started and left running (it failed before
    stopping it) is killed when the test ends, so it cannot slow the tests after it."""
    import os
    import signal

    from tests.helpers import descendants

    before = descendants(os.getpid())
    yield
    for pid, command in descendants(os.getpid()).items():
        if pid not in before and ("sweeplab" in command or "mlflow" in command):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """Built once per session; tests that promote use their own alias names."""
    from sweeplab.search import run_sweep, train_once
    from sweeplab.spec import spec_from_dict
    from sweeplab.store import Store

    store = Store.resolve(tmp_path_factory.mktemp("finished") / "store")
    tracking = {"experiment": "finished", "register_as": "iris", "report": True}
    good = spec_from_dict(
        tiny_spec(
            train={"max_epochs": 5},
            search_space={"train.lr": {"type": "float", "low": 0.005, "high": 0.05, "log": True}},
            sweep={"trials": 3, "sampler": "random", "seed": 0},
            tracking=tracking,
        )
    )
    result = run_sweep(good, store, name="good")
    assert result.registered is not None
    bad = spec_from_dict(tiny_spec(train={"max_epochs": 1, "lr": 1e-4}, tracking=tracking))
    trained = train_once(bad, store, register_as="iris")
    assert trained.registered is not None
    return Finished(
        store, "good", "iris", result.registered.version, trained.registered[1], "finished"
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the whole session (skipped where it is not installed)."""
    import shutil

    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray with 2 CPUs for one test module. With the dashboard, as start_ray
    starts it for data-parallel trials: its State API lets Ray Train free a stopped
    trial's workers."""
    import ray

    ray.shutdown()
    # "local": a new Ray even where a killed `ray start` left its address behind
    ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def ctrl_c() -> Any:
    """SIGINT raises KeyboardInterrupt in this test, as in a command (pytest-xdist's
    workers ignore it); the handler before is put back."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)
