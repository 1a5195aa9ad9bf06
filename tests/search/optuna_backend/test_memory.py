"""sweep.fuse_trials: a batch that runs out of memory trains in halves."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeplab.search import run_sweep
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from tests.helpers import ROOT, tiny_spec

# Two trials of this MLP fused ran out of memory in their first steps, and each alone
# (the first one's results kept meanwhile) trained, with 390 to 480 MiB of address space
# to spare on this machine (510: the batch got past its first steps)
WIDTH, HEADROOM_MB = 3072, 440


def _spec(width: int, trials: int) -> Any:
    return spec_from_dict(
        tiny_spec(
            model={"arch": "mlp", "hidden": [width, width]},
            data={"dataset": "digits"},
            train={"max_epochs": 1},
            sweep={"trials": trials, "sampler": "random", "seed": 0, "fuse_trials": trials},
        )
    )


def _vm_mb() -> int:
    status = Path("/proc/self/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmSize")]
    return int(line.split()[1]) // 1024


def _limited_sweep(root: str) -> None:
    """In its own process: a first sweep loads every library and starts every thread;
    then the address space is limited to what it uses and HEADROOM_MB more, and the
    batch of two trains."""
    store = Store.resolve(Path(root))
    run_sweep(_spec(WIDTH, 1), store)  # its first steps too
    limit = (_vm_mb() + HEADROOM_MB) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    run_sweep(_spec(WIDTH, 2), store)


def test_a_batch_that_runs_out_of_memory_trains_in_halves(store: Store) -> None:
    """A real out-of-memory error (the CPU allocator's, under an address-space limit;
    a GPU's is handled alike) in a batch's first step: each trial trains alone instead,
    both complete, the user is told, and the sweep's later batches hold one trial."""
    env = {
        **os.environ,
        "MALLOC_ARENA_MAX": "1",  # glibc's arenas and its moving mmap threshold keep
        "MALLOC_MMAP_THRESHOLD_": "131072",  # freed memory mapped: the figures drift
    }
    code = f"from {__name__} import _limited_sweep; _limited_sweep({str(store.root)!r})"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "a batch of 2 trials ran out of memory: its halves train in turn" in out.stderr
    _, fused = optuna.get_all_study_names(store.storage_url)
    loaded = optuna.load_study(study_name=fused, storage=store.storage_url)
    assert [t.state for t in loaded.trials] == [TrialState.COMPLETE] * 2, [
        t.user_attrs.get("fail_reason") for t in loaded.trials
    ]
    assert {t.user_attrs["sweeplab.batch"] for t in loaded.trials} == {"0,1"}
    assert loaded.user_attrs["sweeplab.batch_fits"] == 1
