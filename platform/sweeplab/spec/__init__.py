"""Spec: the experiment and its search space, loaded from YAML and validated.

Nothing here imports torch, MLflow, Optuna or Ray: every mistake in a spec is
caught before a database, an MLflow experiment or a file is created.
"""

from sweeplab.spec._errors import SpecError, SpecIssue
from sweeplab.spec._load import load_spec, parse_overrides, spec_from_dict
from sweeplab.spec._paths import get_path, set_path
from sweeplab.spec._schema import (
    DataConfig,
    EarlyStoppingConfig,
    Experiment,
    MLPConfig,
    ObjectiveConfig,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
)
from sweeplab.spec._space import (
    CategoricalDist,
    Distribution,
    FloatDist,
    IntDist,
    SearchSpace,
    apply_params,
)

__all__ = [
    "CategoricalDist",
    "DataConfig",
    "Distribution",
    "EarlyStoppingConfig",
    "Experiment",
    "FloatDist",
    "IntDist",
    "MLPConfig",
    "ObjectiveConfig",
    "SearchSpace",
    "SpecError",
    "SpecIssue",
    "SweepConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_params",
    "get_path",
    "load_spec",
    "parse_overrides",
    "set_path",
    "spec_from_dict",
]
