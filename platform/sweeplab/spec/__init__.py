"""Spec: the experiment and its search space, loaded from YAML and validated.

Nothing here imports torch, MLflow, Optuna or Ray: every mistake in a spec is
caught before a database, an MLflow experiment or a file is created.
"""

from sweeplab.spec._data import DataConfig, TextConfig
from sweeplab.spec._errors import InputError, SpecError, SpecIssue
from sweeplab.spec._load import load_spec, parse_overrides, spec_from_dict
from sweeplab.spec._models import (
    ARCHITECTURES,
    MODEL_CONFIGS,
    ArchConfig,
    Architecture,
    AutoencoderConfig,
    CNNConfig,
    CustomConfig,
    GANConfig,
    MLPConfig,
    RecurrentConfig,
    TransferConfig,
    TransformerConfig,
)
from sweeplab.spec._objectives import counts_examples
from sweeplab.spec._paths import get_path, set_path
from sweeplab.spec._schema import (
    NAME_PATTERN,
    EarlyStoppingConfig,
    Experiment,
    ObjectiveConfig,
    ScheduleConfig,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
)
from sweeplab.spec._space import (
    CategoricalDist,
    Distribution,
    FloatDist,
    IntDist,
    LayersDist,
    SearchSpace,
    apply_params,
)

__all__ = [
    "ARCHITECTURES",
    "MODEL_CONFIGS",
    "NAME_PATTERN",
    "ArchConfig",
    "Architecture",
    "AutoencoderConfig",
    "CNNConfig",
    "CategoricalDist",
    "CustomConfig",
    "DataConfig",
    "Distribution",
    "EarlyStoppingConfig",
    "Experiment",
    "FloatDist",
    "GANConfig",
    "InputError",
    "IntDist",
    "LayersDist",
    "MLPConfig",
    "ObjectiveConfig",
    "RecurrentConfig",
    "ScheduleConfig",
    "SearchSpace",
    "SpecError",
    "SpecIssue",
    "SweepConfig",
    "TextConfig",
    "TrackingConfig",
    "TrainConfig",
    "TransferConfig",
    "TransformerConfig",
    "apply_params",
    "counts_examples",
    "get_path",
    "load_spec",
    "parse_overrides",
    "set_path",
    "spec_from_dict",
]
