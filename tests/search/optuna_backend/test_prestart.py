"""Local workers started before their sweep exists: their imports beside the command's."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from sweeplab.search import run_sweep
from sweeplab.search.options import LocalWorkers
from sweeplab.search.optuna_backend.prestart import prestart, prestarted
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from tests.helpers import descendants, in_process, tiny_spec


def _workers_below_here() -> dict[int, str]:
    return {p: c for p, c in descendants(os.getpid()).items() if "spawn_main" in c}


def test_a_prestarted_worker_runs_trials_of_the_sweep(store: Store) -> None:
    """--workers 2 on CPUs: the spawned worker is the one started before the sweep
    existed, and it and this process (worker 0) run the sweep's trials."""
    import optuna

    exp = spec_from_dict(  # trials long enough that both workers take some
        tiny_spec(
            train={"max_epochs": 150},
            sweep={"trials": 6, "sampler": "random"},
            tracking={"experiment": "prestarted"},
        )
    )
    with prestarted(LocalWorkers(2)) as options:
        assert options is not None and options.started is not None
        (started,) = [process.pid for process, _ in options.started.waiting]
        result = run_sweep(exp, store, options=options)
    trials = optuna.load_study(study_name=result.name, storage=store.storage_url).trials
    owners = {t.user_attrs["sweeplab.owner"].rsplit(":", 1)[1] for t in trials}
    assert owners == {str(os.getpid()), str(started)}
    assert result.counts.complete == 6
    assert started not in _workers_below_here()  # it ended with the sweep


def test_workers_never_handed_a_sweep_end_with_their_block() -> None:
    """However the block ends (here: an error before any sweep), the started workers are
    terminated, none left behind."""
    with pytest.raises(RuntimeError), prestart(2, threads=1) as started:
        pids = {process.pid for process, _ in started.waiting}
        assert pids <= set(_workers_below_here())
        raise RuntimeError("the store could not be opened")
    assert not pids & set(_workers_below_here())


def test_a_started_worker_that_died_is_not_handed_a_sweep() -> None:
    """A started worker killed while it waited: the pool is told there is none (and
    spawns one of its own) rather than count on a dead process."""
    with prestart(1, threads=1) as started:
        ((process, _),) = started.waiting
        os.kill(process.pid, signal.SIGKILL)
        process.join(10)
        assert started.hand({}, ()) is None and not started.waiting


def test_a_command_that_fails_after_starting_workers_leaves_none(tmp_path: Path) -> None:
    """sweeplab sweep -w 2 whose store cannot be opened (the workers were started before):
    a clear error, within seconds, and no worker process left."""
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    spec = str(Path(__file__).parents[3] / "experiments" / "mlp_digits.yaml")
    started = time.monotonic()
    out: Any = in_process("sweep", spec, "--store", str(not_a_folder), "-w", "2")
    assert out.returncode != 0 and "not a folder" in out.stdout + out.stderr
    assert time.monotonic() - started < 30
    assert not _workers_below_here()
