"""Reading sweeps back: ``status`` (counts, best, one row per trial) and ``compare``
(several sweeps ranked, with Optuna's plots and the top trials' curves)."""
