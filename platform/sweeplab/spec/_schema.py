"""The experiment spec as pydantic models; the YAML mirrors these classes.

Names (activations, optimizers, datasets, samplers, pruners) come from the
light catalogs of the rooms that implement them, so an unknown name is
rejected with the list of valid ones and a new entry is one line there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sweeplab.data.catalog import DATASETS, KIND_VIEWS, Task
from sweeplab.models.catalog import ARCH_VIEWS
from sweeplab.spec._errors import did_you_mean
from sweeplab.spec._models import AutoencoderConfig, GANConfig, ModelConfig
from sweeplab.spec._names import (
    BackendName,
    DatasetName,
    LossName,
    OptimizerName,
    PrunerName,
    SamplerName,
    ScheduleName,
    SchedulerName,
    ViewName,
)
from sweeplab.training.catalog import LOSSES

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]  # what numpy, torch and Optuna accept


class _Section(BaseModel):
    """A spec section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ------------------------------------------------------------------------------ data


class DataConfig(_Section):
    dataset: DatasetName
    path: str | None = None  # file datasets: the folder or file to read
    download: bool = False  # file datasets: fetch the published files when missing (online)
    target: str | None = None  # csv: the target column
    task: Task | None = None  # csv: classification or regression
    view: ViewName = "auto"  # how a model sees an example; auto: the architecture's choice
    window: Annotated[int, Field(ge=2)] = 12  # series: past values in each example
    image_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None
    limit: PositiveInt | None = None  # keep at most this many examples (stratified)
    classes: Annotated[list[int], Field(min_length=2)] | None = None  # keep only these
    holdout_classes: list[int] = Field(default_factory=list)  # left out of training
    label_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0  # of the training split
    folds: PositiveInt = 1  # k > 1: k-fold cross-validation on train + val
    val_fraction: Fraction = 0.15
    test_fraction: Fraction = 0.15
    seed: Seed = 0
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

    @model_validator(mode="before")
    @classmethod
    def _task_from_dataset(cls, raw: Any) -> Any:
        """A built-in dataset knows its task: fill ``task`` in when the spec leaves it out."""
        dataset = raw.get("dataset") if isinstance(raw, dict) else None
        # a dataset that is not a name (a mapping, a list) is left to the field's check
        if isinstance(dataset, str) and raw.get("task") is None and dataset in DATASETS:
            known = DATASETS[dataset].task
            if known is not None:
                raw = {**raw, "task": known}
        return raw

    @property
    def resolved_task(self) -> Task:
        return self.task or "classification"

    @property
    def kind(self) -> str:
        return DATASETS[self.dataset].kind

    def problems(self) -> list[tuple[str, str]]:
        info = DATASETS[self.dataset]
        problems = []
        if info.from_path and self.path is None:
            problems.append(
                ("data.path", f"is required for dataset '{self.dataset}' ({info.description})")
            )
        if not info.from_path and self.path is not None:
            problems.append(
                ("data.path", f"dataset '{self.dataset}' is built in and reads no path")
            )
        if self.path is not None and not self.download and not Path(self.path).exists():
            problems.append(
                ("data.path", f"{self.path!r} does not exist (set data.download: true to fetch)")
            )
        if self.dataset == "csv":
            if self.target is None:
                problems.append(("data.target", "is required for a csv dataset: a column name"))
            if self.task is None:
                problems.append(
                    ("data.task", "is required for a csv dataset: classification or regression")
                )
        elif self.task != info.task:
            problems.append(
                (
                    "data.task",
                    f"dataset '{self.dataset}' is {info.task}, but got {self.task!r}; "
                    "leave data.task out",
                )
            )
        if self.view != "auto" and self.view not in KIND_VIEWS[self.kind]:
            problems.append(
                (
                    "data.view",
                    f"'{self.view}' does not apply to {self.kind} dataset '{self.dataset}'; "
                    f"allowed: auto, {', '.join(KIND_VIEWS[self.kind])}",
                )
            )
        labelled = self.classes is not None or self.holdout_classes
        if labelled and self.resolved_task != "classification":
            problems.append(
                (
                    "data.classes",
                    f"class filters need a classification dataset, not {self.resolved_task}",
                )
            )
        if self.folds > 1 and self.kind == "series":
            problems.append(
                ("data.folds", "k-fold splits would mix past and future of a series; use 1")
            )
        if self.image_size is not None and self.dataset != "image_folder":
            problems.append(("data.image_size", "only applies to dataset 'image_folder'"))
        return problems


# ----------------------------------------------------------------------------- train


class EarlyStoppingConfig(_Section):
    monitor: str = "val_loss"
    patience: PositiveInt = 5
    mode: Literal["min", "max"] = "min"
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class ScheduleConfig(_Section):
    """A learning-rate schedule, stepped per epoch (one-cycle per batch), after a warm-up."""

    name: ScheduleName = "none"
    warmup_epochs: Annotated[int, Field(ge=0)] = 0  # linear ramp from lr/10 (not with plateau)
    step_size: PositiveInt = 10  # step: epochs between decays
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5  # step: decay factor
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5  # plateau: decay factor
    patience: Annotated[int, Field(ge=0)] = 3  # plateau: epochs without val_loss improvement
    min_lr: Annotated[float, Field(ge=0.0)] = 0.0  # cosine and plateau: the floor

    @model_validator(mode="after")
    def _warmup_fits(self) -> ScheduleConfig:
        if self.warmup_epochs and self.name == "plateau":
            raise ValueError(
                "warmup_epochs is not supported with the plateau schedule, "
                f"but got warmup_epochs={self.warmup_epochs}; use 0 or another schedule"
            )
        return self


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
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # cross_entropy
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    gradient_clip_val: Annotated[float, Field(gt=0.0)] | None = None
    mixed_precision: bool = False  # 16-bit mixed precision on a GPU; ignored on CPU
    early_stopping: EarlyStoppingConfig | None = None
    seed: Seed = 0


# ----------------------------------------------------------------- objective, sweep


class ObjectiveConfig(_Section):
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"


class SweepConfig(_Section):
    trials: PositiveInt = 20
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "none"
    pruner_options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    backend: BackendName = "optuna"
    scheduler: SchedulerName = "none"  # Ray Tune's trial scheduler (backend: ray)
    scheduler_options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    max_concurrent: PositiveInt | None = None  # trials at once [default: what fits]
    max_retries: NonNegativeInt = 0  # a failed trial is run again this many times
    restarts: PositiveInt = 1
    restart_aggregate: Literal["best", "mean"] = "best"
    seed: Seed = 0
    timeout: Annotated[float, Field(gt=0)] | None = None


class TrackingConfig(_Section):
    experiment: str | None = None  # default: the spec's name
    register_as: str | None = None  # register the best model under this name


# ------------------------------------------------------------------------ experiment


# A sweep's name is also a folder name (Ray's results, compare's plots): no separator,
# no leading dot, so no name can point outside the store.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Experiment(_Section):
    """A whole spec. ``search_space`` is resolved to a mapping by the loader."""

    name: Annotated[str, Field(min_length=1, pattern=NAME_PATTERN)]
    model: ModelConfig
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    search_space: dict[str, Any] = Field(default_factory=dict)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @property
    def task(self) -> Task:
        return self.data.resolved_task

    @property
    def view(self) -> str:
        """How the model sees one example: ``data.view``, or the architecture's first choice."""
        if self.data.view != "auto":
            return str(self.data.view)
        allowed = [v for v in ARCH_VIEWS[self.model.arch] if v in KIND_VIEWS[self.data.kind]]
        if isinstance(self.model, AutoencoderConfig) and self.model.kind == "conv":
            return "image"
        return allowed[0] if allowed else ARCH_VIEWS[self.model.arch][0]

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
        return self.model.metrics(self.data)

    def problems(self) -> list[tuple[str, str]]:
        """Checks across sections, as (dotted path, message) pairs; empty when valid."""
        problems = [*self.data.problems(), *self.model.problems(self.data)]
        problems += self._view_problems()
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
        if (
            self.model.supervised
            and self.train.loss != "auto"
            and LOSSES[self.train.loss] != self.task
        ):
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
        if self.train.label_smoothing and self.loss != "cross_entropy":
            problems.append(
                (
                    "train.label_smoothing",
                    f"applies to the cross_entropy loss only, but the loss is '{self.loss}'",
                )
            )
        if isinstance(self.model, GANConfig) and (
            self.train.schedule.name != "none" or self.train.gradient_clip_val
        ):
            problems.append(
                (
                    "train.schedule.name"
                    if self.train.schedule.name != "none"
                    else "train.gradient_clip_val",
                    "a gan trains with its own two Adam optimizers (model.lr_g, model.lr_d): "
                    "learning-rate schedules and gradient clipping do not apply",
                )
            )
        if self.data.holdout_classes and self.model.arch != "autoencoder":
            problems.append(
                (
                    "data.holdout_classes",
                    "classes left out of training are the anomalies of an autoencoder; "
                    f"a '{self.model.arch}' model would meet unseen labels in validation",
                )
            )
        problems += self._backend_problems()
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

    def _backend_problems(self) -> list[tuple[str, str]]:
        """Pruners belong to the Optuna backend, schedulers to Ray Tune."""
        sweep = self.sweep
        problems = []
        if sweep.backend == "optuna" and sweep.scheduler != "none":
            problems.append(
                (
                    "sweep.scheduler",
                    f"'{sweep.scheduler}' is a Ray Tune scheduler: run with --backend ray "
                    "(or use sweep.pruner with the Optuna backend)",
                )
            )
        if sweep.backend == "ray" and sweep.pruner != "none":
            problems.append(
                (
                    "sweep.pruner",
                    f"'{sweep.pruner}' is an Optuna pruner, used by the Optuna backend; with "
                    "--backend ray use sweep.scheduler: asha, hyperband, median or pbt",
                )
            )
        if sweep.scheduler == "pbt" and (sweep.restarts > 1 or self.data.folds > 1):
            problems.append(
                (
                    "sweep.scheduler",
                    "'pbt' trains each trial once and copies weights between trials; "
                    "it needs sweep.restarts: 1 and data.folds: 1",
                )
            )
        if sweep.scheduler == "pbt":
            from sweeplab.search.catalog import PBT_MUTABLE

            for path in self.search_space:
                if path not in PBT_MUTABLE:
                    problems.append(
                        (
                            f"search_space.{path}",
                            "'pbt' copies weights between trials, so it can only search "
                            f"values that keep their shapes: {', '.join(PBT_MUTABLE)}",
                        )
                    )
        if sweep.scheduler_options:
            from sweeplab.search.catalog import scheduler_parameters

            allowed = scheduler_parameters(sweep.scheduler)
            for key in sweep.scheduler_options:
                if key not in allowed:
                    problems.append(
                        (
                            f"sweep.scheduler_options.{key}",
                            f"unknown option of scheduler '{sweep.scheduler}'"
                            f"{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}",
                        )
                    )
        return problems

    def _view_problems(self) -> list[tuple[str, str]]:
        arch, kind = self.model.arch, self.data.kind
        view = self.view
        if view not in KIND_VIEWS[kind]:
            if self.data.view == "auto":
                allowed = ", ".join(KIND_VIEWS[kind])
                return [
                    (
                        "model.arch",
                        f"a '{arch}' model needs a {' or '.join(ARCH_VIEWS[arch])} view, but "
                        f"{kind} dataset '{self.data.dataset}' has only: {allowed}",
                    )
                ]
            return []  # DataConfig.problems names the view that does not fit the dataset
        if view not in ARCH_VIEWS[arch]:
            return [
                (
                    "data.view",
                    f"a '{arch}' model does not take the '{view}' view; "
                    f"allowed: auto, {', '.join(ARCH_VIEWS[arch])}",
                )
            ]
        if isinstance(self.model, AutoencoderConfig):
            want = "image" if self.model.kind == "conv" else "flat"
            if view != want:
                return [("data.view", f"a {self.model.kind} autoencoder takes '{want}' input")]
        return []
