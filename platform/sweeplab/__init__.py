"""sweeplab: experiment tracking and hyperparameter optimization for deep learning.

The path of a sweep is the package layout: ``spec`` (load and validate) →
``search`` (a backend runs trials) → ``training`` (one configuration) →
``tracking`` (MLflow) → ``registry`` (register, promote).

The Python API, in Optuna's spirit::

    import sweeplab
    sweep = sweeplab.create_sweep("experiments/mlp_digits.yaml", store="sweeplab-store")
    sweep.optimize(n_trials=10)
    print(sweep.best_trial)

Importing ``sweeplab`` is cheap: torch, MLflow, Optuna and Ray are imported by the
modules that need them, never here (each name below loads on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeplab.search import (
        LocalWorkers,
        RayOptions,
        Sweep,
        SweepState,
        Trial,
        TrialState,
        create_sweep,
        load_sweep,
    )

__version__ = "0.1.0"

__all__ = [
    "LocalWorkers",
    "RayOptions",
    "Sweep",
    "SweepState",
    "Trial",
    "TrialState",
    "__version__",
    "create_sweep",
    "load_sweep",
]
_API = set(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'sweeplab' has no attribute {name!r}")
    import sweeplab.search

    return getattr(sweeplab.search, name)
