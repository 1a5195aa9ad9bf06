"""The Optuna backend: trials run in this process, one after another, or in local
worker processes (``--workers N``).

Several processes may work on one sweep (``sweeplab agent``, ``resume``): each takes
trials under the study's claim lock until the study holds the sweep's trials.

    objective.py   a trial: its params suggested, run_trial, Optuna's pruning callback
    worker.py      the worker loop: claim, run with heartbeats, tell, retry
    pool.py        local worker processes (--workers N): cores and GPUs shared out
    prestart.py    those workers started before their sweep exists (imports ahead)
    backend.py     OptunaBackend: one loop here, or the pool

Its options are ``search.options.LocalWorkers`` (imports nothing heavy).
"""
