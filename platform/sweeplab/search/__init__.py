"""Search: a sweep's trials, run by a backend, tracked in MLflow, read back.

The path of a sweep reads from the modules, bottom to top:

    catalog.py        sampler, pruner, scheduler and backend names (no imports: the spec
                      reads it)
    keys.py           every study attribute, trial attribute and run tag sweeplab writes
    states.py         TrialState, SweepState and Counts: the one owner of states and counts
    options.py        the backends' own options (LocalWorkers, RayOptions)
    storage.py        Optuna's RDB storage, opened with heartbeats; the sweeps' names
    sampling.py       Optuna's samplers and pruners from the spec; suggest(); a space's
                      Optuna distributions; draws made again
    ranking.py        best, top, Pareto front, the trial a user picks
    results.py        Trial, TrialEvent, SweepResult, Comparison: what reading gives back
    sweep.py          Sweep: one object per sweep (study, spec, parent run, state, trials)
    warm.py           a warm start: earlier sweeps' trials as prior trials
    curves.py         trials' learning-curve figures, drawn once per sweep
    restarts.py       the fits of a trial, its value from theirs
    fits.py           TrialHooks; the fits run one after another or fused
    trial.py          run_trial (restarts × folds, one MLflow run); sweep_trial, a trial
                      of a sweep for every backend
    claims.py         heartbeats, the stop watch, recovery of dead workers, retries
    baselines.py      the yardstick: scikit-learn baselines fit once, by an idle worker
                      or at the sweep's end
    optuna_backend/   trials in this process (and agents, and local workers)
    ray_backend/      trials on Ray Tune: schedulers, PBT, data-parallel trials
    lifecycle.py      Lifecycle: optimize / finish / register / compare a Sweep
    api.py            create_sweep, load_sweep; what the commands call
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
    from sweeplab.search.analysis.compare import CompareError, compare
    from sweeplab.search.analysis.plots import write_plots
    from sweeplab.search.analysis.status import (
        SweepStatus,
        list_sweeps,
        read_result,
        sweep_status,
    )
    from sweeplab.search.api import (
        DuplicateSweep,
        continue_sweep,
        create_sweep,
        load_sweep,
        run_sweep,
        stop_sweep,
    )
    from sweeplab.search.lifecycle import SweepInterrupted
    from sweeplab.search.options import LocalWorkers, RayOptions
    from sweeplab.search.push import PushRefused, PushResult, push_sweep
    from sweeplab.search.results import (
        Comparison,
        Registered,
        Row,
        SweepResult,
        Trial,
        TrialEvent,
    )
    from sweeplab.search.single import TrainResult, train_once
    from sweeplab.search.states import Counts, SweepState, TrialState
    from sweeplab.search.sweep import Sweep

_PUBLIC = {
    "create_sweep": "api",
    "load_sweep": "api",
    "run_sweep": "api",
    "continue_sweep": "api",
    "stop_sweep": "api",
    "DuplicateSweep": "api",
    "Sweep": "sweep",
    "SweepInterrupted": "lifecycle",
    "Trial": "results",
    "TrialEvent": "results",
    "SweepResult": "results",
    "Registered": "results",
    "Comparison": "results",
    "Row": "results",
    "TrialState": "states",
    "SweepState": "states",
    "Counts": "states",
    "RayOptions": "options",
    "LocalWorkers": "options",
    "train_once": "single",
    "TrainResult": "single",
    "push_sweep": "push",
    "PushResult": "push",
    "PushRefused": "push",
    "sweep_status": "analysis.status",
    "list_sweeps": "analysis.status",
    "read_result": "analysis.status",
    "SweepStatus": "analysis.status",
    "compare": "analysis.compare",
    "CompareError": "analysis.compare",
    "write_plots": "analysis.plots",
}

__all__ = [
    "CompareError",
    "Comparison",
    "Counts",
    "DuplicateSweep",
    "LocalWorkers",
    "PushRefused",
    "PushResult",
    "RayOptions",
    "Registered",
    "Row",
    "Sweep",
    "SweepInterrupted",
    "SweepResult",
    "SweepState",
    "SweepStatus",
    "TrainResult",
    "Trial",
    "TrialEvent",
    "TrialState",
    "compare",
    "continue_sweep",
    "create_sweep",
    "list_sweeps",
    "load_sweep",
    "push_sweep",
    "read_result",
    "run_sweep",
    "stop_sweep",
    "sweep_status",
    "train_once",
    "write_plots",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'sweeplab.search' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sweeplab.search.{_PUBLIC[name]}"), name)
