"""Training: one function trains one configuration (``sweeplab.training.fit``).

It knows nothing of Optuna or Ray: a backend passes ``TrialHooks`` that add its
own Lightning callbacks (pruning, reporting).
"""
