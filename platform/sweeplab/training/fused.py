"""Fused fits: several fits trained in lockstep as one batched model
(``training.batched.FusedModule``): a trial's restarts (``fit_fused``), or several
trials whose configurations differ only in fusible fields (``fit_batch``;
``training.fusing`` says which). Each member gets the training batches a fit of its
own would (``LockstepBatches``: one gather for all); they share the validation rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import CombinedLoader

from sweeplab.data.module import ArrayDataModule
from sweeplab.spec import Experiment
from sweeplab.training.batched import FusedModule
from sweeplab.training.fusing import unfused

__all__ = [
    "FusedModule",
    "LockstepBatches",
    "fit_batch",
    "fit_fused",
    "free_memory",
    "out_of_memory",
    "unfused",
]


class LockstepBatches:
    """The training batches of members that share their rows, each member's in its own
    order, as the loader of a fit of its own draws them: one ``torch.randperm`` of its
    own generator an epoch, batches of ``batch_size`` in that order, and where the last
    batch is shorter, a second randperm drawn as it is taken (``RandomSampler`` runs out
    before ``BatchSampler`` yields a short batch; a full one comes first, and Lightning
    stops at the length). One index gathers every member's batch at once: a DataLoader
    per member drew its rows one index at a time and fetched them one member at a time,
    ~15% of the fit of 16 trials x 2 restarts of the default MLP on 2 cores (profiled).
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, orders: Sequence[torch.Generator], batch_size: int
    ) -> None:
        self.x, self.y, self.orders, self.batch_size = x, y, list(orders), batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        n = len(self.x)
        order = torch.stack([torch.randperm(n, generator=g) for g in self.orders])
        for start in range(0, n, self.batch_size):
            rows = order[:, start : start + self.batch_size]
            if rows.shape[1] < self.batch_size:  # the sampler's end
                for g in self.orders:
                    torch.randperm(n, generator=g)
            xs, ys = self.x[rows], self.y[rows]
            yield [(xs[m], ys[m]) for m in range(len(self.orders))]


class FusedData(pl.LightningDataModule):
    """Each member's training batches (its own order: the batches of its own fit), in
    lockstep; validation on the split they share."""

    def __init__(self, datas: Sequence[ArrayDataModule]) -> None:
        super().__init__()
        self.datas = list(datas)

    def train_dataloader(self) -> Any:
        trainer = self.trainer
        one_cpu = trainer is None or (
            trainer.world_size == 1 and trainer.strategy.root_device.type == "cpu"
        )
        x, y = self.datas[0].train_rows() if one_cpu else (None, None)
        if isinstance(x, np.ndarray):  # in memory, one process, on a CPU
            orders = [d.shuffler() for d in self.datas]
            rows = torch.as_tensor(x), torch.as_tensor(y)
            return LockstepBatches(*rows, orders, self.datas[0].batch_size)
        # files read from disk, a sharded sampler, a copy to a GPU from pinned memory:
        # each member's own loader
        return CombinedLoader([d.train_dataloader() for d in self.datas], mode="min_size")

    def val_dataloader(self) -> Any:
        return self.datas[0].val_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Each member's training batch with its own augmentation draws; the shared
        validation batch as the members see it."""
        if self.trainer is None or not self.trainer.training:
            return self.datas[0].prepared(batch, training=False)
        pairs = zip(self.datas, batch, strict=True)
        return [data.prepared(b, training=True) for data, b in pairs]

    def state_dict(self) -> dict[str, Any]:
        return {"members": [d.state_dict() for d in self.datas]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for data, state in zip(self.datas, state_dict["members"], strict=True):
            data.load_state_dict(state)


def fit_fused(
    exp: Experiment,
    seeds: Sequence[int],
    fold: int,
    loggers: Sequence[Logger | None],
    callbacks: Sequence[Callback] = (),
    tracking_uri: str | None = None,
    *,
    refit: bool = False,
    ckpt_path: str | None = None,
) -> list[Any]:
    """Train the restarts of ``seeds`` fused: ``fit_batch`` with one trial."""
    batch = [(exp, list(seeds))]
    return fit_batch(
        batch, fold, loggers, callbacks, tracking_uri, refit=refit, ckpt_path=ckpt_path
    )


def fit_batch(
    trials: Sequence[tuple[Experiment, Sequence[int]]],
    fold: int,
    loggers: Sequence[Logger | None],
    callbacks: Sequence[Callback] = (),
    tracking_uri: str | None = None,
    *,
    refit: bool = False,
    ckpt_path: str | None = None,
) -> list[Any]:
    """Train the members of ``trials`` (each trial's configuration and its restarts'
    seeds; ``training.fusing.unfused_batch`` says whether they may share a batch) as one
    batched model. Returns each member's FitResult, or the TrainingDiverged that dropped
    it, in order. Raises TrainingDiverged when all diverged. ``loggers``: one per member.
    ``refit``: on the training and validation rows, each member's last weights kept (as
    ``fit(refit=True)``). ``ckpt_path``: a checkpoint of the same batch to go on from
    (``training.checkpoints``)."""
    from sweeplab.training.cost import model_cost
    from sweeplab.training.fit import (
        FitResult,
        TrainingDiverged,
        fit_or_interrupt,
        make_trainer,
        metrics_on_test,
        prepare,
        seeded,
    )

    built = []
    for exp, seeds in trials:
        for seed in seeds:
            with seeded(seed):
                built.append((exp, *prepare(exp, seed, fold, tracking_uri, refit=refit)))
    costs = [model_cost(m, exp, d.split) for exp, d, m in built]
    for logger, cost in zip(loggers, costs, strict=True):
        # a resumed fit's runs have them, and so do those of a batch tried again in halves
        if logger is not None and ckpt_path is None and not _logged(logger, cost):
            logger.log_metrics(cost, step=0)
    members = iter(m for _, _, m in built)
    fused = FusedModule([(exp, [next(members) for _ in seeds]) for exp, seeds in trials])
    fused.loggers_ = list(loggers)
    epochs = max(exp.train.max_epochs for exp, _ in trials)
    with seeded(trials[0][1][0]):
        trainer = make_trainer(trials[0][0], list(callbacks), max_epochs=epochs)
        fit_or_interrupt(trainer, fused, FusedData([d for _, d, _ in built]), ckpt_path)  # type: ignore[arg-type]
    fused.restore(last=refit)
    results: list[Any] = []
    for m, (exp, data, member) in enumerate(built):
        keeper, t = fused.keepers[m], fused.trial_of[m]
        if fused.dead[m] or keeper.best is None:
            reason = fused.reasons[m] or f"{exp.objective.metric} was never finite"
            results.append(TrainingDiverged(reason))
            continue
        test = metrics_on_test(make_trainer(exp), member, data)
        if loggers[m] is not None:  # each member's test metrics in its own run
            loggers[m].log_metrics(test, step=0)  # type: ignore[union-attr]
        stopped = fused.ends.reasons[t]
        epochs_run = fused.epochs_of(t)
        results.append(
            FitResult(
                keeper.best, keeper.best_epoch, epochs_run, test, member, data, costs[m], stopped
            )
        )
    if all(isinstance(r, TrainingDiverged) for r in results):
        raise results[0]
    return results


def _logged(logger: Logger, metrics: dict[str, float]) -> bool:
    """Whether ``logger`` (sweeplab's, which keeps a history) has ``metrics`` already."""
    history = getattr(logger, "history", {})
    return all(key in history for key in metrics)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch running out of memory: a GPU's (``torch.OutOfMemoryError``)
    or the CPU allocator's, which raises a plain RuntimeError that says so."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    )


def free_memory() -> None:
    """What a fit that raised left: its tensors collected, the GPU's cache given back."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
