"""The experiment spec as pydantic models; the YAML mirrors these classes.

Names (activations, optimizers, datasets, samplers, pruners) come from the
light catalogs of the rooms that implement them, so an unknown name is
rejected with the list of valid ones and a new entry is one line there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sweeplab.data.catalog import DATASETS, Task
from sweeplab.models.catalog import ACTIVATIONS, INITS, NORMS
from sweeplab.search.catalog import PRUNERS, SAMPLERS
from sweeplab.spec._errors import did_you_mean
from sweeplab.training.catalog import LOSSES, OPTIMIZERS

# Literal types built from the catalogs: pydantic lists the valid options in its errors.
# (mypy cannot read a Literal built at run time, so it sees plain strings.)
if TYPE_CHECKING:
    from typing import TypeAlias

    ActivationName: TypeAlias = str
    NormName: TypeAlias = str
    InitName: TypeAlias = str
    OptimizerName: TypeAlias = str
    LossName: TypeAlias = str
    DatasetName: TypeAlias = str
    SamplerName: TypeAlias = str
    PrunerName: TypeAlias = str
else:
    ActivationName = Literal[tuple(ACTIVATIONS)]
    NormName = Literal[tuple(NORMS)]
    InitName = Literal[tuple(INITS)]
    OptimizerName = Literal[tuple(OPTIMIZERS)]
    LossName = Literal[("auto", *LOSSES)]
    DatasetName = Literal[tuple(DATASETS)]
    SamplerName = Literal[tuple(SAMPLERS)]
    PrunerName = Literal[tuple(PRUNERS)]

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class _Section(BaseModel):
    """A spec section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------- model


class MLPConfig(_Section):
    """A feed-forward network: ``hidden`` widths (``[]`` = no hidden layer)."""

    arch: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 64])
    activation: ActivationName = "relu"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    norm: NormName = "none"
    init: InitName = "default"

    def metrics(self, task: Task) -> tuple[str, ...]:
        """The validation metrics this model logs for ``task`` (objective candidates)."""
        return ("val_loss", "val_acc") if task == "classification" else ("val_loss", "val_rmse")


# The architectures a spec may name; issue-by-issue more join this union.
ModelConfig = MLPConfig


# ------------------------------------------------------------------------------ data


class DataConfig(_Section):
    dataset: DatasetName
    val_fraction: Fraction = 0.15
    test_fraction: Fraction = 0.15
    seed: int = 0
    n_samples: PositiveInt = 400  # generated sets only (xor, moons, circles)
    noise: Annotated[float, Field(ge=0.0)] = 0.1  # generated sets only

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "val_fraction + test_fraction must be < 0.9, "
                f"but got {self.val_fraction} + {self.test_fraction}"
            )
        return self

    @property
    def task(self) -> Task:
        return DATASETS[self.dataset].task


# ----------------------------------------------------------------------------- train


class EarlyStoppingConfig(_Section):
    monitor: str = "val_loss"
    patience: PositiveInt = 5
    mode: Literal["min", "max"] = "min"
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class TrainConfig(_Section):
    optimizer: OptimizerName = "adam"
    lr: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 1e-3
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9  # sgd and rmsprop
    nesterov: bool = False  # sgd
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    l1: Annotated[float, Field(ge=0.0)] = 0.0
    batch_size: PositiveInt = 64
    max_epochs: PositiveInt = 20
    loss: LossName = "auto"
    gradient_clip_val: Annotated[float, Field(gt=0.0)] | None = None
    early_stopping: EarlyStoppingConfig | None = None
    seed: int = 0


# ----------------------------------------------------------------- objective, sweep


class ObjectiveConfig(_Section):
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"


class SweepConfig(_Section):
    trials: PositiveInt = 20
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "none"
    pruner_options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    restarts: PositiveInt = 1
    restart_aggregate: Literal["best", "mean"] = "best"
    seed: int = 0
    timeout: Annotated[float, Field(gt=0)] | None = None


class TrackingConfig(_Section):
    experiment: str | None = None  # default: the spec's name
    register_as: str | None = None  # register the best model under this name


# ------------------------------------------------------------------------ experiment


class Experiment(_Section):
    """A whole spec. ``search_space`` is resolved to a mapping by the loader."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    model: ModelConfig
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    search_space: dict[str, Any] = Field(default_factory=dict)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @property
    def task(self) -> Task:
        return self.data.task

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def loss(self) -> str:
        if self.train.loss != "auto":
            return str(self.train.loss)
        return "cross_entropy" if self.task == "classification" else "mse"

    def metrics(self) -> tuple[str, ...]:
        """Validation metrics the configured model logs each epoch."""
        return self.model.metrics(self.task)

    def problems(self) -> list[tuple[str, str]]:
        """Checks across sections, as (dotted path, message) pairs; empty when valid."""
        problems = []
        metrics = self.metrics()
        if self.objective.metric not in metrics:
            problems.append(
                (
                    "objective.metric",
                    f"'{self.objective.metric}' is never logged by a '{self.model.arch}' model "
                    f"on a {self.task} dataset; allowed: {', '.join(metrics)}",
                )
            )
        es = self.train.early_stopping
        if es is not None and es.monitor not in metrics:
            problems.append(
                (
                    "train.early_stopping.monitor",
                    f"'{es.monitor}' is never logged; allowed: {', '.join(metrics)}",
                )
            )
        if self.train.loss != "auto" and LOSSES[self.train.loss] != self.task:
            allowed = [name for name, task in LOSSES.items() if task == self.task]
            problems.append(
                (
                    "train.loss",
                    f"'{self.train.loss}' is a {LOSSES[self.train.loss]} loss but dataset "
                    f"'{self.data.dataset}' is {self.task}; allowed: auto, {', '.join(allowed)}",
                )
            )
        if self.train.nesterov and (self.train.optimizer != "sgd" or self.train.momentum == 0):
            problems.append(
                (
                    "train.nesterov",
                    "true needs optimizer 'sgd' with momentum > 0, but got optimizer "
                    f"'{self.train.optimizer}', momentum {self.train.momentum}",
                )
            )
        if self.sweep.pruner_options:
            from sweeplab.search.catalog import pruner_parameters

            allowed = pruner_parameters(self.sweep.pruner)
            for key in self.sweep.pruner_options:
                if key not in allowed:
                    problems.append(
                        (
                            f"sweep.pruner_options.{key}",
                            f"unknown option of pruner '{self.sweep.pruner}'"
                            f"{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}",
                        )
                    )
        return problems
