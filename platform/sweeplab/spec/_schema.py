"""The experiment spec as pydantic models; the YAML mirrors these classes.

Names (activations, optimizers, datasets, samplers, pruners) come from the
light catalogs of the rooms that implement them, so an unknown name is
rejected with the list of valid ones and a new entry is one line there.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from sweeplab.data.catalog import KIND_VIEWS, Task
from sweeplab.optim.catalog import LOSSES
from sweeplab.spec._convert import issues_of
from sweeplab.spec._data import DataConfig, PositiveInt, Section, Seed, mixup_problems
from sweeplab.spec._errors import SpecError, SpecIssue
from sweeplab.spec._models import ARCHITECTURES, AutoencoderConfig, GANConfig, ModelConfig
from sweeplab.spec._names import (
    LossName,
    OptimizerName,
    ScheduleName,
)
from sweeplab.spec._objectives import (
    ObjectiveConfig,
    mode_problem,
    objective_problems,
    split_objective,
)
from sweeplab.spec._space import SearchSpace, apply_params
from sweeplab.spec._sweep import NAME_PATTERN, SweepConfig, sweep_problems

# ----------------------------------------------------------------------------- train


class EarlyStoppingConfig(Section):
    monitor: str = "val_loss"
    patience: PositiveInt = 5
    mode: Literal["min", "max"] = "min"
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class ScheduleConfig(Section):
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


# a time between checkpoints: a number and its unit
_PERIOD = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)$")
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _period(value: object) -> object:
    """An int is epochs, a string a time ("30s", "10m", "2h"); null: none."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str):
        found = _PERIOD.match(value.strip())
        if found and float(found[1]) > 0:
            return value.strip()
    raise ValueError(
        "must be a number of epochs (1, 5, ...) or a time ('30s', '10m', '2h'), or null "
        f"for no checkpoints, but got {value!r}"
    )


CheckpointEvery = Annotated[int | str | None, BeforeValidator(_period)]


class TrainConfig(Section):
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
    # a trial's checkpoint for resume, at the end of an epoch: every N epochs, or once the
    # time given passed since the last one (a seconds-long trial writes none)
    checkpoint_every: CheckpointEvery = "5m"

    @property
    def checkpoint_period(self) -> tuple[int | None, float | None]:
        """(epochs, seconds) between a trial's checkpoints; (None, None): none."""
        every = self.checkpoint_every
        if every is None:
            return None, None
        if isinstance(every, int):
            return every, None
        found = _PERIOD.match(every)
        assert found is not None  # _period checked it
        return None, float(found[1]) * _SECONDS[found[2]]


# ----------------------------------------------------------------- objective, sweep


class TrackingConfig(Section):
    experiment: str | None = None  # default: the spec's name
    register_as: str | None = None  # register the best model under this name
    # draw compare's plots and the HTML report into the parent run at the sweep's end
    # (off: `sweeplab compare` draws them when asked; the top trials' curves are drawn)
    report: bool = True
    # scikit-learn baselines fit on train + validation and scored on the same test rows
    # at the sweep's end (training.baselines); None: when the data are small enough
    baselines: bool | None = None
    # seconds between samples of the machine (CPU, memory, disk, network, GPU) logged to
    # each trial's run as MLflow's system metrics (tracking.machine); null: none
    system_metrics: Annotated[float, Field(gt=0)] | None = 10.0


# ------------------------------------------------------------------------ experiment


# A sweep's name is also a folder name (Ray's results, compare's plots): no separator,
# no leading dot, so no name can point outside the store.


class Experiment(Section):
    """A whole spec. ``search_space`` is resolved to a mapping by the loader."""

    name: Annotated[str, Field(min_length=1, pattern=NAME_PATTERN)]
    model: ModelConfig
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    # the objectives after the first, when the spec's objective is a list (multi-objective)
    trade_offs: list[ObjectiveConfig] = Field(default_factory=list)
    search_space: dict[str, Any] = Field(default_factory=dict)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    _objective_list = model_validator(mode="before")(split_objective)

    @property
    def objectives(self) -> list[ObjectiveConfig]:
        """Every objective: one, or several (a multi-objective sweep)."""
        return [self.objective, *self.trade_offs]

    @property
    def task(self) -> Task:
        return self.data.resolved_task

    @property
    def view(self) -> str:
        """How the model sees one example: ``data.view``, or the architecture's first choice."""
        if self.data.view != "auto":
            return str(self.data.view)
        allowed = [
            v for v in ARCHITECTURES[self.model.arch].views if v in KIND_VIEWS[self.data.kind]
        ]
        if isinstance(self.model, AutoencoderConfig) and self.model.kind == "conv":
            return "image"
        return allowed[0] if allowed else ARCHITECTURES[self.model.arch].views[0]

    def with_params(self, params: Mapping[str, Any]) -> Experiment:
        """This spec with each dotted path of ``params`` set: one trial's configuration.

        Validated once, fields and cross-section checks; the search space is not checked
        again (it was, with the sweep's spec, at every corner). Raises SpecError.
        """
        tree = apply_params(self.model_dump(mode="json", by_alias=True), dict(params))
        try:
            exp = Experiment.model_validate(tree)
        except ValidationError as err:
            raise SpecError(issues_of(err, None, Experiment)) from None
        problems = exp.problems()
        if problems:
            raise SpecError([SpecIssue(None, path, message) for path, message in problems])
        return exp

    @functools.cached_property
    def space(self) -> SearchSpace:
        """The search space, parsed once (the loader checked it against the spec)."""
        return SearchSpace.model_validate(self.search_space)

    @property
    def final(self) -> str:
        """What the sweep registers (``sweep.final``, ``auto`` resolved): best, ensemble,
        top_ensemble or refit."""
        if self.sweep.final != "auto":
            return self.sweep.final
        fits = self.sweep.restarts * self.data.folds
        return "ensemble" if fits > 1 and self.model.supervised else "best"

    @property
    def keeps_fits(self) -> bool:
        """Whether a trial stores every fit's best weights (an ensemble is made of them)."""
        return self.final in ("ensemble", "top_ensemble")

    @property
    def most_epochs(self) -> int:
        """The most epochs a trial may train (the search space's bound, if searched)."""
        dist = self.search_space.get("train.max_epochs")
        if isinstance(dist, dict) and "high" in dist:
            return int(dist["high"])
        return self.train.max_epochs

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
        problems += self._metric_problems()
        problems += objective_problems(self.objectives, self.metrics(), self.sweep)
        problems += self._train_problems()
        problems += self._outcome_problems()
        problems += sweep_problems(self.sweep, self.objective, self.search_space, self.data.folds)
        return problems

    def _metric_problems(self) -> list[tuple[str, str]]:
        """The objective and early stopping must name a metric the model logs."""
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
        listed = len(self.objectives) > 1
        for index, objective in enumerate(self.objectives):
            where = f"objective.{index}.mode" if listed else "objective.mode"
            problems += mode_problem(where, objective.metric, objective.mode)
        es = self.train.early_stopping
        if es is not None:
            problems += mode_problem("train.early_stopping.mode", es.monitor, es.mode)
        if es is not None and es.monitor not in metrics:
            problems.append(
                (
                    "train.early_stopping.monitor",
                    f"'{es.monitor}' is never logged; allowed: {', '.join(metrics)}",
                )
            )
        return problems

    def _outcome_problems(self) -> list[tuple[str, str]]:
        """What the sweep's end asks that the model cannot give (sweep.final, baselines)."""
        problems = []
        final, arch = self.sweep.final, self.model.arch
        if final in ("ensemble", "top_ensemble") and not self.model.supervised:
            problems.append(
                (
                    "sweep.final",
                    f"'{final}' averages class probabilities or values; "
                    f"a '{arch}' gives neither (use best)",
                )
            )
        if final == "top_ensemble" and self.data.folds > 1:
            problems.append(
                (
                    "sweep.final",
                    "'top_ensemble' weighs fits on the validation split, but with "
                    f"data.folds = {self.data.folds} each fit trained on the others' "
                    "validation rows (use ensemble, or data.folds: 1)",
                )
            )
        if self.tracking.baselines and not self.model.supervised:
            problems.append(
                (
                    "tracking.baselines",
                    "baselines are classifiers and regressors to hold a model against; "
                    f"a '{arch}' has none (set false, or leave it out)",
                )
            )
        return problems

    def _train_problems(self) -> list[tuple[str, str]]:
        """Training settings that do not fit the model, the data or each other."""
        problems = []
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
        problems += mixup_problems(self.data.augment, self.task, self.model.arch, self.loss)
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
        return problems

    def _view_problems(self) -> list[tuple[str, str]]:
        arch, kind = self.model.arch, self.data.kind
        view, views = self.view, ARCHITECTURES[self.model.arch].views
        if view not in KIND_VIEWS[kind]:
            if self.data.view == "auto":
                allowed = ", ".join(KIND_VIEWS[kind])
                return [
                    (
                        "model.arch",
                        f"a '{arch}' model needs a {' or '.join(views)} view, but "
                        f"{kind} dataset '{self.data.dataset}' has only: {allowed}",
                    )
                ]
            return []  # DataConfig.problems names the view that does not fit the dataset
        if view not in views:
            return [
                (
                    "data.view",
                    f"a '{arch}' model does not take the '{view}' view; "
                    f"allowed: auto, {', '.join(views)}",
                )
            ]
        if isinstance(self.model, AutoencoderConfig):
            want = "image" if self.model.kind == "conv" else "flat"
            if view != want:
                return [("data.view", f"a {self.model.kind} autoencoder takes '{want}' input")]
        return []
