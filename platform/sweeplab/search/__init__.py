"""Search: a sweep's trials, run by a backend, tracked in MLflow, read back.

The path of a sweep reads from the modules, bottom to top:

    catalog.py        sampler, pruner and scheduler names (no imports: the spec reads it)
    keys.py           every study attribute, trial attribute and run tag sweeplab writes
    study.py          storage, an open Sweep, counts, the result read back
    sampling.py       Optuna's samplers and pruners from the spec; suggest()
    trial.py          run_trial (restarts × folds, one MLflow run) and the hooks a
                      backend fills in; sweep_trial, a trial of a sweep for every backend
    claims.py         the claim lock, owners, heartbeats, recovery of dead workers, retries
    optuna_backend/   trials in this process (and agents)
    ray_backend/      trials on Ray Tune: schedulers, PBT, data-parallel trials
    lifecycle.py      run / continue / finish a sweep over the Backend protocol
    publish.py        log and register a trial's model
    single.py         sweeplab train: one tracked run, no search
    push.py           a finished sweep copied to another store (the team's server)
    analysis/         status and compare

The names below are the Python API (the CLI calls the same); they are imported on
first use, so ``import sweeplab.search`` loads no torch, Optuna, Ray or MLflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeplab.search.analysis.compare import Comparison, compare
    from sweeplab.search.analysis.plots import write_plots
    from sweeplab.search.analysis.status import (
        SweepStatus,
        TrialRow,
        list_sweeps,
        read_result,
        sweep_status,
    )
    from sweeplab.search.lifecycle import SweepInterrupted, continue_sweep, run_sweep
    from sweeplab.search.optuna_backend import LocalWorkers
    from sweeplab.search.publish import register_sweep_best
    from sweeplab.search.push import PushRefused, PushResult, push_sweep
    from sweeplab.search.ray_backend import RayOptions
    from sweeplab.search.single import TrainResult, train_once
    from sweeplab.search.study import SweepResult, TrialEvent

_PUBLIC = {
    "run_sweep": "lifecycle",
    "continue_sweep": "lifecycle",
    "SweepInterrupted": "lifecycle",
    "SweepResult": "study",
    "TrialEvent": "study",
    "RayOptions": "ray_backend",
    "LocalWorkers": "optuna_backend",
    "train_once": "single",
    "TrainResult": "single",
    "register_sweep_best": "publish",
    "push_sweep": "push",
    "PushResult": "push",
    "PushRefused": "push",
    "sweep_status": "analysis.status",
    "list_sweeps": "analysis.status",
    "read_result": "analysis.status",
    "SweepStatus": "analysis.status",
    "TrialRow": "analysis.status",
    "compare": "analysis.compare",
    "write_plots": "analysis.plots",
    "Comparison": "analysis.compare",
}

__all__ = [
    "Comparison",
    "LocalWorkers",
    "PushRefused",
    "PushResult",
    "RayOptions",
    "SweepInterrupted",
    "SweepResult",
    "SweepStatus",
    "TrainResult",
    "TrialEvent",
    "TrialRow",
    "compare",
    "continue_sweep",
    "list_sweeps",
    "push_sweep",
    "read_result",
    "register_sweep_best",
    "run_sweep",
    "sweep_status",
    "train_once",
    "write_plots",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'sweeplab.search' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sweeplab.search.{_PUBLIC[name]}"), name)
