"""The Optuna backend: trials run in this process, one after another.

Several processes may work on one sweep (``sweeplab agent``, ``resume``): each takes
trials under the study's claim lock until the study holds ``sweep.trials``.

    objective.py   a trial: its params suggested, run_trial, Optuna's pruning callback
    worker.py      the worker loop: claim, run with heartbeats, tell, retry
"""

from sweeplab.search.optuna_backend.worker import OptunaBackend

__all__ = ["OptunaBackend"]
