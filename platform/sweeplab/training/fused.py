"""Fused fits: several fits trained in lockstep as one batched model
(``training.batched.FusedModule``): a trial's restarts (``fit_fused``), or several
trials whose configurations differ only in fusible fields (``fit_batch``;
``training.fusing`` says which). Each member reads its own loader, as in a fit of its
own; they share the validation rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import CombinedLoader

from sweeplab.data.module import ArrayDataModule
from sweeplab.spec import Experiment
from sweeplab.training.batched import FusedModule
from sweeplab.training.fusing import unfused

__all__ = ["FusedModule", "fit_batch", "fit_fused", "unfused"]


class FusedData(pl.LightningDataModule):
    """One loader per member (its own generator: the batches of its own fit), in
    lockstep; validation on the split they share."""

    def __init__(self, datas: Sequence[ArrayDataModule]) -> None:
        super().__init__()
        self.datas = list(datas)

    def train_dataloader(self) -> Any:
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
        if logger is not None and ckpt_path is None:  # a resumed fit's runs have them
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
