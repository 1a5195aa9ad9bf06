"""fit: train one configuration with Lightning and return its result.

The one trial function for every backend. A backend adds its own Lightning
callbacks (Optuna's pruning callback, Ray's reporting) through ``callbacks``;
this module imports neither Optuna nor Ray.
"""

from __future__ import annotations

import contextlib
import signal
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.loggers import Logger
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sweeplab.data.module import ArrayDataModule
from sweeplab.interrupts import Terminated
from sweeplab.logs import LIGHTNING_NOISE, environ_kept
from sweeplab.models.build import batch_view, build_model
from sweeplab.spec import AutoencoderConfig, Experiment, TransferConfig
from sweeplab.training.callbacks import EpochTimer, KeepBestWeights, SpecOptimizerSettings
from sweeplab.training.cost import model_cost
from sweeplab.training.sources import load_source


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial fails with this message."""


@dataclass
class FitResult:
    value: float  # best value of the objective metric over the epochs
    best_epoch: int  # 0-based epoch of that value; the module holds its weights
    epochs: int  # epochs run (early stopping or pruning may end before max_epochs)
    test: dict[str, float]  # test metrics of the module (best weights), and data baselines
    module: pl.LightningModule
    data: ArrayDataModule
    cost: dict[str, float]  # param_count, flops_per_sample
    stopped: str | None = None  # why early stopping ended the fit, if it did


def make_trainer(
    exp: Experiment,
    callbacks: Sequence[Callback] = (),
    logger: Logger | None = None,
    **overrides: object,
) -> pl.Trainer:
    """A Trainer with nothing sweeplab does not need: no bar or summary, and no
    checkpoints but those of a checkpoint callback given (``training.checkpoints``)."""
    kwargs: dict[str, object] = {
        "max_epochs": exp.train.max_epochs,
        "accelerator": "auto",
        "devices": 1,
        "logger": logger if logger is not None else False,
        "callbacks": list(callbacks),
        "enable_checkpointing": any(isinstance(c, Checkpoint) for c in callbacks),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "gradient_clip_val": exp.train.gradient_clip_val,
        "log_every_n_steps": 1_000_000,  # per-epoch metrics only
    }
    if exp.train.mixed_precision:
        kwargs["precision"] = mixed_precision()
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)  # type: ignore[arg-type]


def mixed_precision() -> str:
    """16-bit mixed precision where the hardware has it (a CUDA GPU), else full precision."""
    import torch

    if not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def check_inputs(exp: Experiment, tracking_uri: str | None = None) -> None:
    """Read the data and load a transfer source once, before anything is created.

    Raises InputError (a corrupt data file, a missing source) for the caller to report.
    """
    prepare(exp, tracking_uri=tracking_uri)


def prepare(
    exp: Experiment,
    seed: int = 0,
    fold: int = 0,
    tracking_uri: str | None = None,
    *,
    refit: bool = False,
) -> tuple[ArrayDataModule, pl.LightningModule]:
    """The data module and the freshly built model of ``exp`` (shared with the smoke test);
    ``refit``: training on the training and validation rows (``ArrayDataModule``)."""
    data = ArrayDataModule(
        exp.data,
        exp.train.batch_size,
        seed=seed,
        fold=fold,
        refit=refit,
        eval_batch_size=eval_batch_size(exp),
    )
    data.view = batch_view(exp, data.split)
    source = None
    if isinstance(exp.model, TransferConfig):
        source = load_source(exp.model.source, tracking_uri)
    return data, build_model(exp, data.split, source)


def eval_batch_size(exp: Experiment) -> int:
    """Rows per validation and test batch. A dense network evaluates 512 rows at a time
    (its activations are a few KB a row: fewer, larger steps). Any other keeps its
    training batch size: a convolution's activations are ~100x larger per row, so 512
    rows cost memory and cache and gain nothing (MNIST-sized CNN on 2 CPU cores,
    batch 128: 183-219 MB peak and 14.2-14.9 s an epoch at 512 evaluation rows,
    132 MB and 12.3 s at 128)."""
    dense = exp.model.arch == "mlp" or (
        isinstance(exp.model, AutoencoderConfig) and exp.model.kind == "dense"
    )
    return max(exp.train.batch_size, 512) if dense else exp.train.batch_size


@contextlib.contextmanager
def lightning_advice_ignored() -> Iterator[None]:
    """Lightning's warnings that do not apply to sweeplab's fits, silenced in the block only."""
    with warnings.catch_warnings():
        for message in LIGHTNING_NOISE:
            warnings.filterwarnings("ignore", message=message)
        yield


def fit_or_interrupt(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    data: ArrayDataModule,
    ckpt_path: str | None = None,
) -> None:
    """trainer.fit, but Ctrl-C stays a KeyboardInterrupt, and SIGTERM one too
    (``interrupts.Terminated``).

    Lightning turns Ctrl-C into ``sys.exit(1)`` after ignoring SIGINT; a sweep
    must see the interrupt to mark the trial and end its runs, so it is raised
    again as KeyboardInterrupt and the SIGINT handler the process had is put back.
    Any other SystemExit (Ray Tune stopping a trial from its reporting thread) goes
    through. Lightning's advice that does not apply here is silenced for this fit only.
    """
    handler = signal.getsignal(signal.SIGINT)
    try:
        with lightning_advice_ignored():
            trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    except SIGTERMException as exc:  # Lightning's own SIGTERM handler: not a success
        raise Terminated(signal.SIGTERM) from exc
    except SystemExit as exc:
        ctrl_c = exc.__context__
        if (
            isinstance(ctrl_c, KeyboardInterrupt)
            and trainer.state.status == TrainerStatus.INTERRUPTED
        ):
            if handler is not None and signal.getsignal(signal.SIGINT) != handler:
                signal.signal(signal.SIGINT, handler)
            raise ctrl_c from exc  # Ctrl-C, or SIGTERM or SIGHUP (interrupts.Terminated)
        raise


def fit(
    exp: Experiment,
    *,
    seed: int | None = None,
    logger: Logger | None = None,
    callbacks: Sequence[Callback] = (),
    test: bool = True,
    fold: int = 0,
    tracking_uri: str | None = None,
    trainer_options: Mapping[str, object] | None = None,
    ckpt_path: str | None = None,
    refit: bool = False,
) -> FitResult:
    """Train ``exp`` once (seeded) on fold ``fold``; raises TrainingDiverged on NaN/inf loss.

    ``tracking_uri`` is where a transfer source in the model registry is found;
    ``trainer_options`` override the Trainer's (a data-parallel strategy). ``ckpt_path``:
    a Lightning checkpoint to go on from (its weights, epoch, optimizer state), with the
    optimizer settings of ``exp``. ``refit``: trained on the training and validation rows,
    and the last epoch's weights kept (the validation rows cannot choose an epoch they
    were trained on).
    """
    seed = exp.train.seed if seed is None else seed
    with seeded(seed):
        data, module = prepare(exp, seed, fold, tracking_uri, refit=refit)
        cost = model_cost(module, exp, data.split)
        if logger is not None and ckpt_path is None:
            logger.log_metrics(cost, step=0)
        best = KeepBestWeights(exp.objective.metric, exp.objective.mode)
        stoppers = early_stoppers(exp)
        all_callbacks: list[Callback] = [best, EpochTimer(), *stoppers, *callbacks]
        if ckpt_path is not None:
            all_callbacks.append(SpecOptimizerSettings())
        trainer = make_trainer(exp, all_callbacks, logger, **(trainer_options or {}))
        fit_or_interrupt(trainer, module, data, ckpt_path)
        _check_finite(exp, trainer, stoppers, best)
        if not refit:
            best.restore(module)
        results = metrics_on_test(trainer, module, data) if test else {}
    stopped = next((es.stopping_reason_message for es in stoppers if es.stopped_epoch), None)
    return FitResult(
        value=float(best.best or 0.0),
        best_epoch=best.best_epoch,
        epochs=best.epochs,
        test=results,
        module=module,
        data=data,
        cost=cost,
        stopped=stopped,
    )


def _check_finite(
    exp: Experiment, trainer: pl.Trainer, stoppers: list[EarlyStopping], best: KeepBestWeights
) -> None:
    """TrainingDiverged if the loss became NaN or inf, or the objective never was finite."""
    for es in stoppers:
        if es.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC:
            raise TrainingDiverged(
                f"{es.monitor} became {trainer.callback_metrics.get(es.monitor)} at epoch "
                f"{trainer.current_epoch}: {es.stopping_reason_message}"
            )
    if best.best is None:
        raise TrainingDiverged(f"{exp.objective.metric} was never finite")


# What Lightning's seed_everything writes to the environment (for DDP ranks and loader
# workers): set for the fit, then taken back
_SEED_VARIABLES = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Python's, NumPy's and torch's generators seeded for one fit (Lightning's
    seed_everything); the environment variables it sets last for the fit only."""
    with environ_kept(_SEED_VARIABLES):
        pl.seed_everything(seed, workers=False, verbose=False)
        yield


def metrics_on_test(
    trainer: pl.Trainer, module: pl.LightningModule, data: ArrayDataModule
) -> dict[str, float]:
    """The test metrics of ``module``'s best weights, and the data's baselines."""
    with lightning_advice_ignored():
        out = trainer.test(module, datamodule=data, verbose=False)
    results = {k: float(v) for k, v in (out[0] if out else {}).items()}
    results.update(data.split.baselines)
    return results


def early_stoppers(exp: Experiment) -> list[EarlyStopping]:
    """The spec's early stopping, and a guard that ends the fit when val_loss is not finite.

    Both are Lightning's EarlyStopping with ``check_finite``; the guard's patience
    is longer than the fit, so it only ever stops on NaN or inf.
    """
    cfg = exp.train.early_stopping
    stoppers = []
    if cfg is not None:
        stoppers.append(
            EarlyStopping(
                monitor=cfg.monitor,
                patience=cfg.patience,
                mode=cfg.mode,
                min_delta=cfg.min_delta,
                check_finite=True,
            )
        )
    if cfg is None or cfg.monitor != "val_loss":
        stoppers.append(
            EarlyStopping(monitor="val_loss", patience=exp.train.max_epochs + 1, check_finite=True)
        )
    return stoppers
