"""Samplers and pruners a spec may name, mapped to their Optuna classes.

Strings, not classes, so that validating a spec never imports Optuna.
"""

SAMPLERS: dict[str, str] = {
    "tpe": "optuna.samplers:TPESampler",
    "random": "optuna.samplers:RandomSampler",
    "grid": "optuna.samplers:GridSampler",
    "cmaes": "optuna.samplers:CmaEsSampler",
}

PRUNERS: dict[str, str] = {
    "none": "optuna.pruners:NopPruner",
    "median": "optuna.pruners:MedianPruner",
    "successive_halving": "optuna.pruners:SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners:HyperbandPruner",
}
