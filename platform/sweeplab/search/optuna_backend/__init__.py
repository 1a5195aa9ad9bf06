"""The Optuna backend: trials run in this process, one after another.

Several processes may work on one sweep (``sweeplab agent``, ``resume``): each takes
trials under the study's claim lock until the study holds ``sweep.trials``.

    objective.py   a trial: its params suggested, run_trial, Optuna's pruning callback
    worker.py      the worker loop: claim, run with heartbeats, tell, retry
    pool.py        local worker processes (--workers N): cores and GPUs shared out
    backend.py     OptunaBackend: one loop here, or the pool
    options.py     LocalWorkers (command-line options; imports nothing heavy)

Only ``options`` is imported with the package, so the CLI can name the options
without loading torch.
"""

from sweeplab.search.optuna_backend.options import LocalWorkers

__all__ = ["LocalWorkers"]
