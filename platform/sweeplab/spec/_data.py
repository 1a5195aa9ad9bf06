"""The ``data`` section of a spec: which dataset, how it is split and seen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sweeplab.data.catalog import DATASETS, KIND_VIEWS, Task
from sweeplab.spec._names import DatasetName, ViewName

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]  # what numpy, torch and Optuna accept


class Section(BaseModel):
    """A spec section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ------------------------------------------------------------------------------ data

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class AugmentConfig(Section):
    """Random changes to each training batch (never to validation or test batches), a
    regularizer beside dropout and weight decay; every field is searchable.
    ``data.augment`` is off by default (every field 0)."""

    flip: Probability = 0.0  # images: each example's chance of a horizontal flip
    shift: Annotated[int, Field(ge=0)] = 0  # images: padded by this many pixels, cropped back
    erase: Probability = 0.0  # images: each example's chance of a random square set to the mean
    noise: Annotated[float, Field(ge=0.0)] = 0.0  # Gaussian noise, in each feature's std
    mixup: Annotated[float, Field(ge=0.0)] = 0.0  # classification: Beta(a, a) mixes of pairs

    # the fields that move pixels: they need an image's shape
    IMAGE_ONLY: ClassVar[tuple[str, ...]] = ("flip", "shift", "erase")

    @property
    def active(self) -> bool:
        return any(getattr(self, name) > 0 for name in type(self).model_fields)


def mixup_problems(
    augment: AugmentConfig, task: str, arch: str, loss: str
) -> list[tuple[str, str]]:
    """Mixup's soft labels go into the cross-entropy loss of a built-in classifier: one
    problem, the first that applies."""
    if not augment.mixup:
        return []
    if task != "classification":
        why = f"mixes labels and needs a classification dataset, not {task}"
    elif loss != "cross_entropy" or arch in NOT_MIXED:
        why = (
            "mixes labels into the cross_entropy loss of a built-in classifier, but "
            f"the model is '{arch}' with the '{loss}' loss"
        )
    else:
        return []
    return [("data.augment.mixup", why)]


class TextConfig(Section):
    """How a text dataset becomes token ids: a word-level vocabulary fit on the training
    split only (a word seen only in validation or test is unknown), each text cut or
    padded to ``max_length`` tokens. ``vocab_size`` and ``max_length`` are searchable."""

    column: str = "text"  # text_csv: the column holding each document
    vocab_size: Annotated[int, Field(ge=4)] = 5000  # most frequent training words (with specials)
    max_length: Annotated[int, Field(ge=2)] = 64  # tokens per text: longer ones are cut
    lowercase: bool = True


# architectures whose training step is not a classifier's loss on (inputs, labels)
NOT_MIXED = ("autoencoder", "gan", "custom")


class DataConfig(Section):
    dataset: DatasetName
    path: str | None = None  # file datasets: the folder or file to read
    download: bool = False  # file datasets: fetch the published files when missing (online)
    target: str | None = None  # csv: the target column
    task: Task | None = None  # csv: classification or regression
    view: ViewName = "auto"  # how a model sees an example; auto: the architecture's choice
    window: Annotated[int, Field(ge=2)] = 12  # series: past values in each example
    image_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None
    # image_folder: a folder whose images take more than this many MB as bytes is not read
    # into memory; its images are read from disk as batches need them, by ``workers``
    # processes
    memory_mb: Annotated[float, Field(gt=0.0)] = 2048.0
    workers: Annotated[int, Field(ge=0)] = 2  # streamed images: decoding processes (0: none)
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
    augment: AugmentConfig = Field(default_factory=AugmentConfig)  # training batches only
    text: TextConfig = Field(default_factory=TextConfig)  # text datasets: tokenization

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
        if self.dataset == "text_csv" and self.target is None:
            problems.append(("data.target", "is required for a text_csv dataset: the label column"))
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
        if self.dataset != "image_folder":
            for name, default in (("image_size", None), ("memory_mb", 2048.0), ("workers", 2)):
                if getattr(self, name) != default:
                    problems.append((f"data.{name}", "only applies to dataset 'image_folder'"))
        if self.kind != "text" and self.text != TextConfig():
            problems.append(("data.text", f"only applies to text datasets, not '{self.dataset}'"))
        return problems + self._augment_problems()

    def _augment_problems(self) -> list[tuple[str, str]]:
        """Pixel moves on data without pixels (mixup is checked with the model:
        ``mixup_problems``); nothing on token ids."""
        if self.kind == "image":
            return []
        if self.kind == "text":
            return [
                (
                    f"data.augment.{name}",
                    f"changes numbers, and text dataset '{self.dataset}' is token ids: leave it 0",
                )
                for name in type(self.augment).model_fields
                if getattr(self.augment, name) > 0
            ]
        return [
            (
                f"data.augment.{name}",
                f"moves pixels and applies to image datasets only; dataset "
                f"'{self.dataset}' is {self.kind}: leave it 0",
            )
            for name in self.augment.IMAGE_ONLY
            if getattr(self.augment, name) > 0
        ]
