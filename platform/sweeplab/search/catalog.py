"""Samplers, pruners and schedulers a spec may name, mapped to their library classes.

Strings, not classes, so that validating a spec never imports Optuna.
"""

SAMPLERS: dict[str, str] = {
    "tpe": "optuna.samplers:TPESampler",
    "random": "optuna.samplers:RandomSampler",
    "grid": "sweeplab.search.sampling:GridSampler",
    "cmaes": "optuna.samplers:CmaEsSampler",
    "nsga2": "optuna.samplers:NSGAIISampler",  # multi-objective (a list of objectives)
    "gp": "optuna.samplers:GPSampler",  # Gaussian process: for small budgets
}

# Not in sampler_options: what sweeplab sets (the seed is sweep.seed, a stream of it per
# process; the grid is the search space), and what a YAML value cannot be (functions,
# other samplers, trials)
SAMPLER_OWN = (
    "self",
    "seed",
    "search_space",
    "independent_sampler",
    "constraints_func",
    "gamma",
    "weights",
    "x0",
    "source_trials",
)

PRUNERS: dict[str, str] = {
    "none": "optuna.pruners:NopPruner",
    "median": "optuna.pruners:MedianPruner",
    "successive_halving": "optuna.pruners:SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners:HyperbandPruner",
}


# Ray Tune's trial schedulers (``--backend ray``); the Optuna backend uses PRUNERS instead.
SCHEDULERS: dict[str, str] = {
    "none": "ray.tune.schedulers:FIFOScheduler",
    "asha": "ray.tune.schedulers:ASHAScheduler",
    # Asynchronous Hyperband: ASHA with several brackets. Ray's synchronous
    # HyperBandScheduler pauses trials and resumes them from checkpoints, which a
    # trial that trains in one fit() does not have.
    "hyperband": "ray.tune.schedulers:ASHAScheduler",
    "median": "ray.tune.schedulers:MedianStoppingRule",
    "pbt": "ray.tune.schedulers:PopulationBasedTraining",
}

# What PBT may change in the middle of a trial (its search space): nothing that changes
# the shape of a weight, as the weights move from trial to trial.
PBT_MUTABLE = (
    "train.lr",
    "train.weight_decay",
    "train.momentum",
    "train.gradient_clip_val",
    "model.dropout",
    "model.lr_g",
    "model.lr_d",
)

# sweep.backend -> the class that runs its trials (search.lifecycle.Backend), imported only
# when a sweep uses it
BACKENDS: dict[str, str] = {
    "optuna": "sweeplab.search.optuna_backend.backend:OptunaBackend",
    "ray": "sweeplab.search.ray_backend.driver:RayBackend",
}

# sweep.backend -> the class of its own options (search.options); another's are refused
BACKEND_OPTIONS: dict[str, str] = {"optuna": "LocalWorkers", "ray": "RayOptions"}


# Set by sweeplab from the spec, not by scheduler_options.
SCHEDULER_OWN = (
    "self",
    "time_attr",
    "metric",
    "mode",
    "max_t",
    "hyperparam_mutations",
    "custom_explore_fn",
)


def _parameters(target: str, own: tuple[str, ...] = ("self",)) -> list[str]:
    import importlib
    import inspect

    module, _, cls = target.partition(":")
    signature = inspect.signature(getattr(importlib.import_module(module), cls))
    return [p for p in signature.parameters if p not in own]


def pruner_parameters(name: str) -> list[str]:
    """The keyword arguments the Optuna pruner ``name`` accepts (imports Optuna)."""
    return _parameters(PRUNERS[name])


def sampler_parameters(name: str) -> list[str]:
    """The keyword arguments of the Optuna sampler ``name`` a spec may set (imports Optuna)."""
    return _parameters(SAMPLERS[name], SAMPLER_OWN)


def scheduler_parameters(name: str) -> list[str]:
    """The keyword arguments of Ray Tune's scheduler ``name`` a spec may set (imports Ray)."""
    return _parameters(SCHEDULERS[name], SCHEDULER_OWN)
