"""Search: backends that run the trials of a sweep.

``catalog`` names the samplers and pruners (no Optuna import); ``optuna_backend``
runs a sweep as an Optuna study on RDB storage.
"""
