"""Samplers and pruners a spec may name, mapped to their Optuna classes.

Strings, not classes, so that validating a spec never imports Optuna.
"""

SAMPLERS: dict[str, str] = {
    "tpe": "optuna.samplers:TPESampler",
    "random": "optuna.samplers:RandomSampler",
    "grid": "sweeplab.search.optuna_backend:GridSampler",
    "cmaes": "optuna.samplers:CmaEsSampler",
}

PRUNERS: dict[str, str] = {
    "none": "optuna.pruners:NopPruner",
    "median": "optuna.pruners:MedianPruner",
    "successive_halving": "optuna.pruners:SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners:HyperbandPruner",
}


def pruner_parameters(name: str) -> list[str]:
    """The keyword arguments the Optuna pruner ``name`` accepts (imports Optuna)."""
    import importlib
    import inspect

    module, _, cls = PRUNERS[name].partition(":")
    signature = inspect.signature(getattr(importlib.import_module(module), cls))
    return [p for p in signature.parameters if p != "self"]
