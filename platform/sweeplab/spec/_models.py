"""The ``model`` section: one config class per architecture, chosen by ``arch``.

Each class says which validation metrics its model logs (the objective and
early stopping must name one of them) and what else it needs of the rest of
the spec (``problems``). Names come from ``models.catalog``; nothing here
imports torch.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from sweeplab.spec._data import DataConfig
from sweeplab.spec._names import ActivationName, InitName, Norm2dName, NormName

PositiveInt = Annotated[int, Field(ge=1)]
Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]
Problems = list[tuple[str, str]]


class ArchConfig(BaseModel):
    """What every architecture's config has: metrics it logs, cross-section checks."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, validate_by_name=True, serialize_by_alias=True
    )

    arch: str

    def metrics(self, data: DataConfig) -> tuple[str, ...]:
        """The validation metrics this model logs each epoch (objective candidates)."""
        if data.resolved_task == "classification":
            return ("val_loss", "val_acc")
        return ("val_loss", "val_rmse")

    def problems(self, data: DataConfig) -> Problems:
        """Checks against the data section, as (dotted path, message) pairs."""
        return []

    @property
    def supervised(self) -> bool:
        """True when the model predicts the dataset's targets (loss and task apply)."""
        return True


class MLPConfig(ArchConfig):
    """A feed-forward network: ``hidden`` widths (``[]`` = no hidden layer)."""

    arch: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 64])
    activation: ActivationName = "relu"
    dropout: Dropout = 0.0
    norm: NormName = "none"
    init: InitName = "default"


class CNNConfig(ArchConfig):
    """Conv blocks (conv → norm → activation → pool → dropout), then a dense head."""

    arch: Literal["cnn"] = "cnn"
    channels: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        default_factory=lambda: [32, 64]
    )
    kernel_size: PositiveInt = 3
    pool: Literal["max", "avg", "none"] = "max"
    norm: Norm2dName = "batch"
    activation: ActivationName = "relu"
    dropout: Dropout = 0.0
    head: list[PositiveInt] = Field(default_factory=list)  # hidden widths before the output
    init: InitName = "default"


class RecurrentConfig(ArchConfig):
    """A recurrent classifier or forecaster over a sequence (``data.view``)."""

    arch: Literal["rnn", "lstm", "gru"] = "lstm"
    hidden_size: PositiveInt = 64
    layers: PositiveInt = 1
    bidirectional: bool = False
    dropout: Dropout = 0.0  # between recurrent layers, and before the head
    pool: Literal["last", "mean"] = "last"  # the last step's output, or the mean over steps
    embedding: PositiveInt = 64  # text: the size of each word's vector


class TransformerConfig(ArchConfig):
    """A Transformer encoder over tokens (image rows or sequence steps) with a class head."""

    arch: Literal["transformer"] = "transformer"
    d_model: PositiveInt = 64
    heads: PositiveInt = 4
    layers: PositiveInt = 2
    ff_dim: PositiveInt = 128
    dropout: Dropout = 0.1
    activation: Literal["relu", "gelu"] = "gelu"
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    norm: Literal["pre", "post"] = "pre"  # layer norm before or after each sub-layer
    pool: Literal["cls", "mean"] = "cls"
    embedding: PositiveInt = 64  # text: the size of each word's vector (then a Linear to d_model)

    def problems(self, data: DataConfig) -> Problems:
        if self.d_model % self.heads:
            return [
                (
                    "model.d_model",
                    f"must be a multiple of model.heads, but got d_model={self.d_model}, "
                    f"heads={self.heads}",
                )
            ]
        return []


class AutoencoderConfig(ArchConfig):
    """Dense or convolutional autoencoder; ``noise`` > 0 makes it denoising.

    With ``data.holdout_classes``, those classes are left out of training and the
    model scores every sample by its reconstruction error: ``val_auroc`` says how
    well that separates the held-out (anomalous) classes.
    """

    arch: Literal["autoencoder"] = "autoencoder"
    kind: Literal["dense", "conv"] = "dense"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128])  # dense
    channels: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        default_factory=lambda: [16, 32]
    )  # conv
    bottleneck: PositiveInt = 16
    activation: ActivationName = "relu"
    noise: Annotated[float, Field(ge=0.0)] = 0.0  # std of Gaussian input noise in training

    def metrics(self, data: DataConfig) -> tuple[str, ...]:
        return ("val_loss", "val_auroc") if data.holdout_classes else ("val_loss",)

    @property
    def supervised(self) -> bool:
        return False


class GANConfig(ArchConfig):
    """Generator + discriminator (dense), trained with two Adam optimizers.

    Sample quality is measured each epoch with a classifier trained on the real
    training split: ``val_fid`` (Fréchet distance of its logits, real vs
    generated; lower is better) and ``val_is`` (its inception score; higher).
    """

    arch: Literal["gan"] = "gan"
    latent_dim: PositiveInt = 32
    generator: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        default_factory=lambda: [128, 256]
    )
    discriminator: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        default_factory=lambda: [256, 128]
    )
    activation: ActivationName = "leaky_relu"
    lr_g: Annotated[float, Field(gt=0.0)] = 2e-4
    lr_d: Annotated[float, Field(gt=0.0)] = 2e-4
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    beta2: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999
    samples: Annotated[int, Field(ge=10)] = 500  # generated per epoch for the metrics

    def metrics(self, data: DataConfig) -> tuple[str, ...]:
        return ("val_loss", "val_fid", "val_is", "val_confidence")

    def problems(self, data: DataConfig) -> Problems:
        if data.resolved_task != "classification":
            return [
                (
                    "data.dataset",
                    "a gan needs a classification dataset (its sample-quality metrics use a "
                    f"classifier of the real classes), but '{data.dataset}' is "
                    f"{data.resolved_task}",
                )
            ]
        return []

    @property
    def supervised(self) -> bool:
        return False


class TransferConfig(ArchConfig):
    """A pretrained backbone with a new head.

    ``source``: ``models:/name@alias``, ``models:/name/3`` (the MLflow registry),
    a local MLflow model folder, or a file saved with ``torch.save(model)``.
    ``mode``: ``finetune`` (every layer trains, the backbone at ``lr *
    backbone_lr_factor``), ``feature_extraction`` (frozen backbone), or
    ``scratch`` (same network, random weights: the baseline).
    """

    arch: Literal["transfer"] = "transfer"
    source: Annotated[str, Field(min_length=1)]
    mode: Literal["finetune", "feature_extraction", "scratch"] = "finetune"
    backbone_lr_factor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    head: list[PositiveInt] = Field(default_factory=list)
    dropout: Dropout = 0.0

    def problems(self, data: DataConfig) -> Problems:
        if self.source.startswith(("models:/", "torchvision:")):
            return []
        if not Path(self.source).exists():
            return [
                (
                    "model.source",
                    f"{self.source!r} does not exist; expected models:/name@alias, "
                    "models:/name/VERSION, an MLflow model folder or a torch.save() file",
                )
            ]
        return []


class CustomConfig(ArchConfig):
    """Your own LightningModule by import path: ``class: package.module:ClassName``, or a
    function that builds one (``package.module:build``, called with ``spec=`` the trial's
    spec besides the keywords below); the Python API's ``model=`` writes it for you.

    The contract (see the README): ``__init__`` takes keyword arguments
    ``n_features`` (flat input width), ``n_outputs``, ``input_shape`` (the
    ``data.view`` shape of one example) and ``task``, plus ``kwargs`` from the
    spec (searchable as ``model.kwargs.NAME``); ``forward`` takes a batch of
    view-shaped inputs; ``training_step``/``validation_step`` get ``(x, y)``
    batches; it logs ``val_loss`` and each name in ``metrics`` once per epoch,
    and configures its own optimizers.
    """

    arch: Literal["custom"] = "custom"
    class_: str = Field(alias="class", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    metrics_: list[str] = Field(default_factory=lambda: ["val_loss"], alias="metrics")

    def metrics(self, data: DataConfig) -> tuple[str, ...]:
        return tuple(dict.fromkeys(["val_loss", *self.metrics_]))

    def problems(self, data: DataConfig) -> Problems:
        try:
            cls = load_class(self.class_)
        except ImportError as exc:
            return [("model.class", f"cannot import {self.class_!r}: {exc}")]
        return [("model.class", p) for p in signature_problems(cls, self.kwargs)]


CUSTOM_ARGS = ("n_features", "n_outputs", "input_shape", "task")


def load_class(target: str) -> Any:
    """``package.module:Name`` → the object; ImportError saying what is missing."""
    module_name, _, name = target.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a user's module next to the spec, as `python -m` would
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user's module may fail in any way while importing
        raise ImportError(f"{type(exc).__name__}: {exc}") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {name!r}") from None


def signature_problems(cls: Any, kwargs: dict[str, Any]) -> list[str]:
    """Why ``cls(n_features=…, n_outputs=…, input_shape=…, task=…, **kwargs)`` cannot work
    (a function that builds the module is called with ``spec=`` the trial's spec too)."""
    import lightning.pytorch as pl

    builder = inspect.isfunction(cls)
    if not builder and not (inspect.isclass(cls) and issubclass(cls, pl.LightningModule)):
        return [f"{cls!r} is not a LightningModule subclass, nor a function that builds one"]
    params = dict(inspect.signature(cls if builder else cls.__init__).parameters)
    if not builder:
        params.pop(next(iter(params)))  # self
    given = {*CUSTOM_ARGS, *kwargs, *(["spec"] if builder else [])}
    name = cls.__name__ if builder else f"{cls.__name__}.__init__"
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    problems = []
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown:
        problems.append(f"{name} does not take {', '.join(unknown)} (from model.kwargs)")
    missing = [
        arg
        for arg, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and arg not in given
    ]
    if missing:
        problems.append(
            f"{name} needs {', '.join(missing)}, which neither sweeplab "
            f"({', '.join(CUSTOM_ARGS)}) nor model.kwargs provides"
        )
    return problems


@dataclass(frozen=True)
class Architecture:
    """One row of the architecture table: what a spec's ``model.arch`` names."""

    config: type[ArchConfig]  # the ``model`` section's class (its ``arch`` Literal names it)
    module: str  # "package.module:Name": built as Name(exp, split); imported when built
    views: tuple[str, ...]  # the data views it takes; the first is what data.view: auto picks


_RECURRENT = ("sequence", "rows", "tokens")

# arch name -> its row. The spec's model union and MODEL_CONFIGS below are made from it,
# so a new architecture is its config class above, its module, and one line here.
ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(MLPConfig, "sweeplab.models.mlp:MLP", ("flat",)),
    "cnn": Architecture(CNNConfig, "sweeplab.models.cnn:CNN", ("image",)),
    "rnn": Architecture(RecurrentConfig, "sweeplab.models.recurrent:Recurrent", _RECURRENT),
    "lstm": Architecture(RecurrentConfig, "sweeplab.models.recurrent:Recurrent", _RECURRENT),
    "gru": Architecture(RecurrentConfig, "sweeplab.models.recurrent:Recurrent", _RECURRENT),
    "transformer": Architecture(
        TransformerConfig,
        "sweeplab.models.transformer:Transformer",
        ("rows", "sequence", "tokens"),
    ),
    # dense / conv
    "autoencoder": Architecture(
        AutoencoderConfig, "sweeplab.models.autoencoder:Autoencoder", ("flat", "image")
    ),
    "gan": Architecture(GANConfig, "sweeplab.models.gan:GAN", ("flat",)),
    # a sweeplab source brings its own view; a torchvision backbone takes images
    "transfer": Architecture(
        TransferConfig, "sweeplab.models.transfer:Transfer", ("image", "flat", "sequence", "rows")
    ),
    "custom": Architecture(
        CustomConfig, "sweeplab.models.custom:build_custom", ("flat", "image", "sequence", "rows")
    ),
}

# arch name -> its config class (the discriminator's table, for error messages)
MODEL_CONFIGS: dict[str, type[ArchConfig]] = {
    arch: row.config for arch, row in ARCHITECTURES.items()
}

if TYPE_CHECKING:  # mypy cannot read a union built at run time: the base class stands in
    ModelConfig = ArchConfig
else:
    ModelConfig = Annotated[
        Union[tuple(dict.fromkeys(MODEL_CONFIGS.values()))],  # noqa: UP007
        Field(discriminator="arch"),
    ]
