"""Fused restarts: a trial's k restarts trained in lockstep, as one batched model.

PyTorch's model ensembling (``torch.func``): the members' parameters and buffers are
stacked (``stack_module_state``), and each step is one forward and one backward for all
of them (``vmap`` over ``functional_call``), so Lightning's work per step is paid once.

- Each member keeps its own initialization (built under its own seed), its own
  shuffling order (its own loader and generator, as in a fit of its own) and its own
  dropout draws (``vmap(randomness="different")``); batch norm keeps running
  statistics per member (the stacked buffers).
- The optimizer acts on the stacked tensors. For every optimizer sweeplab offers (sgd,
  adam, adamw, rmsprop, adadelta) the update, weight decay included, is elementwise,
  so each member gets exactly its own update; a schedule by epoch or step is the same
  for all. Gradient clipping is per member.
- Each epoch the trial reports the mean over the members that are still finite (its
  ``val_loss``, its metric): that is what pruners, Ray schedulers and early stopping
  see. Each member logs its own curve and keeps its own best weights; a member whose
  loss becomes NaN is dropped from the mean and returned as ``TrainingDiverged``.

Lightning has no fused ensemble of its own; torch.func provides the batching, and
this module is the LightningModule and loaders around it.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import CombinedLoader
from torch import nn

from sweeplab.data.module import ArrayDataModule
from sweeplab.optim.optimizers import build_optimizer
from sweeplab.optim.schedules import build_scheduler
from sweeplab.spec import Experiment
from sweeplab.training.callbacks import KeepBestWeights
from sweeplab.training.fusing import unfused
from sweeplab.training.grouped import grouped_forward, grouped_layers

__all__ = ["FusedModule", "fit_fused", "unfused"]


class FusedModule(pl.LightningModule):
    """The members' stacked parameters, trained together; the mean is what is logged."""

    def __init__(self, exp: Experiment, members: Sequence[pl.LightningModule]) -> None:
        from torch.func import stack_module_state

        super().__init__()
        self.exp, self.k = exp, len(members)
        self.members = list(members)  # not submodules: their weights are set at the end
        params, buffers = stack_module_state(list(members))
        self.names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[n].detach()) for n in self.names])
        self.buffer_names = list(buffers)
        for i, name in enumerate(self.buffer_names):
            self.register_buffer(f"stacked_buffer_{i}", buffers[name].clone())
        self.template: list[Any] = [copy.deepcopy(members[0])]  # a list: not a submodule
        self.grouped = grouped_layers(self.template[0])
        self.task = getattr(members[0], "task", "reconstruction")
        self.dead = torch.zeros(self.k, dtype=torch.bool)
        self.reasons: list[str | None] = [None] * self.k
        self.loggers_: list[Logger | None] = [None] * self.k
        monitor, mode = exp.objective.metric, exp.objective.mode
        self.keepers = [KeepBestWeights(monitor, mode) for _ in range(self.k)]  # per member
        self._sums: dict[str, torch.Tensor] = {}  # per member, over the epoch's batches
        self._counts: dict[str, int] = {}
        self._scores: list[tuple[torch.Tensor, torch.Tensor]] = []  # autoencoder: for auroc
        self._started, self._lr = 0.0, math.nan
        self.epochs = 0  # epochs run
        self.silent: set[int] = set()  # dropped members whose last epoch is logged

    # ------------------------------------------------------------------ the batched call

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = dict(zip(self.names, self.stacked, strict=True))
        buffers = {n: getattr(self, f"stacked_buffer_{i}") for i, n in enumerate(self.buffer_names)}
        return params, buffers

    def _outputs(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Every member's output: ``x`` is (k, batch, ...) or, ``shared``, one batch."""
        from torch.func import functional_call, vmap

        template = self.template[0]
        template.train(self.training)
        if self.grouped is not None:
            return self._grouped(x.expand(self.k, *x.shape) if shared else x)

        def one(params: Any, buffers: Any, rows: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(template, (params, buffers), (rows,))
            return out

        params, buffers = self._state()
        batched = vmap(one, in_dims=(0, 0, None if shared else 0), randomness="different")
        return batched(params, buffers, x)

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        """A net of Linear, batch norm and elementwise layers (``training.grouped``)."""
        params, buffers = self._state()
        out = grouped_forward(self.grouped or [], {**params, **buffers}, x, self.training)
        return out.squeeze(-1) if self.task == "regression" else out

    def _train_losses(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each member's training loss, (k,), in one batched call: forward and loss."""
        from torch.func import functional_call, vmap

        template = self.template[0]
        template.train(True)
        if self.grouped is not None:
            return self._losses(self._grouped(inputs), targets)
        loss_fn = F.mse_loss if self.task == "reconstruction" else template.loss_fn

        def one(params: Any, buffers: Any, rows: torch.Tensor, target: torch.Tensor) -> Any:
            return loss_fn(functional_call(template, (params, buffers), (rows,)), target)

        params, buffers = self._state()
        return vmap(one, randomness="different")(params, buffers, inputs, targets)

    def _losses(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each member's loss, (k,): ``out`` (k, batch, ...), ``target`` the same rows."""
        template = self.template[0]
        if self.task == "reconstruction":
            return ((out - target) ** 2).flatten(1).mean(dim=1)
        per_row = copy.copy(template.loss_fn)  # the spec's loss, per row: one call for all
        per_row.reduction = "none"
        rows = per_row(out.flatten(0, 1), target.flatten(0, 1))
        return rows.reshape(self.k, -1).mean(dim=1)

    # ------------------------------------------------------------------------- training

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        xs = torch.stack([b[0] for b in batch])
        ys = torch.stack([b[1] for b in batch])
        if self.task == "reconstruction":
            noise = self.template[0].noise
            noisy = xs + noise * torch.randn_like(xs) if noise > 0 else xs
            losses = self._train_losses(noisy, xs)
        else:
            losses = self._train_losses(xs, ys)
        self._add("train_loss", losses.detach() * xs.shape[1], xs.shape[1])
        l1 = self.exp.train.l1
        if l1 > 0:
            penalty = [p.abs().flatten(1).sum(1) for p in self.stacked if p.dim() > 2]
            losses = losses + l1 * torch.stack(penalty).sum(0)
        alive = (~self.dead).to(losses.device)
        # the gradient of each member is its own loss's; a dropped one's NaN stays in its
        # own slice of the stacked tensors (every update is elementwise)
        return torch.where(alive, losses, torch.zeros_like(losses)).sum()

    def _add(self, name: str, total: torch.Tensor, count: int) -> None:
        sums = self._sums.get(name)
        self._sums[name] = total if sums is None else sums + total
        self._counts[name] = self._counts.get(name, 0) + count

    def _mean(self, name: str) -> torch.Tensor:
        return self._sums[name] / self._counts[name]

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        """Each member's gradients scaled to norm ``gradient_clip_val`` as torch's
        clip_grad_norm_ scales one model's."""
        if not gradient_clip_val:
            return
        grads = [p.grad for p in self.stacked if p.grad is not None]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        scale = (float(gradient_clip_val) / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))

    def configure_optimizers(self) -> Any:
        train = self.exp.train
        optimizer = build_optimizer(train, [{"params": list(self.stacked)}])
        steps = int(self.trainer.estimated_stepping_batches)
        schedule = build_scheduler(train.schedule, optimizer, train.max_epochs, steps)
        return optimizer if schedule is None else {"optimizer": optimizer, "lr_scheduler": schedule}

    def on_train_epoch_start(self) -> None:
        self._started = time.perf_counter()
        optimizers = self.trainer.optimizers
        self._lr = float(optimizers[0].param_groups[-1]["lr"]) if optimizers else math.nan

    # ------------------------------------------------------------------------ validation

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        out = self._outputs(x, shared=True)
        rows = len(x)
        if self.task == "reconstruction":
            score = ((out - x) ** 2).flatten(2).mean(dim=2)  # (k, rows)
            holdout = self.template[0].holdout.to(y.device)
            anomaly = torch.isin(y, holdout)
            self._add("val_loss", score[:, ~anomaly].sum(1), int((~anomaly).sum()))
            if len(holdout):
                self._scores.append((score.detach(), anomaly))
            return
        target = y.expand(self.k, *y.shape)
        self._add("val_loss", self._losses(out, target) * rows, rows)
        if self.task == "classification":
            self._add("val_acc", (out.argmax(dim=-1) == y).float().sum(1), rows)
        else:
            std = self.template[0].target_std
            self._add("val_rmse", ((out - y) * std).pow(2).sum(1), rows)

    def on_validation_epoch_end(self) -> None:
        metrics = {k: self._mean(k) for k in self._sums}
        self._sums.clear()
        self._counts.clear()
        if "val_rmse" in metrics:
            metrics["val_rmse"] = metrics["val_rmse"].sqrt()
        if self._scores:
            metrics["val_auroc"] = self._auroc()
        lr, self.epochs = self._lr, self.current_epoch + 1
        self._drop_diverged(metrics["val_loss"])
        alive = ~self.dead
        for name, values in metrics.items():  # the mean is what callbacks see
            mean = values[alive].mean() if alive.any() else torch.tensor(math.nan)
            self.log(name, mean, on_epoch=True)
        self.log("lr", lr, on_epoch=True)
        self._per_member(metrics, lr)

    def _auroc(self) -> torch.Tensor:
        """Each member's AUROC of its reconstruction error against the held-out classes."""
        from torchmetrics.functional.classification import binary_auroc

        scores = torch.cat([s for s, _ in self._scores], dim=1)
        labels = torch.cat([a for _, a in self._scores]).long()
        self._scores.clear()
        return torch.stack([binary_auroc(scores[m], labels) for m in range(self.k)])

    def _drop_diverged(self, val_loss: torch.Tensor) -> None:
        epoch = self.current_epoch
        for m in range(self.k):
            if not self.dead[m] and not math.isfinite(float(val_loss[m])):
                self.dead[m] = True
                self.reasons[m] = f"val_loss became {float(val_loss[m])} at epoch {epoch}"

    def _per_member(self, metrics: dict[str, torch.Tensor], lr: float) -> None:
        """Each member's curve into its logger, and its best weights so far."""
        epoch, monitor = self.current_epoch, self.exp.objective.metric
        seconds = time.perf_counter() - self._started
        for m in range(self.k):
            if m in self.silent:  # dropped: its curve ends with the epoch it diverged
                continue
            if self.dead[m]:
                self.silent.add(m)
            values = {name: float(v[m]) for name, v in metrics.items()}
            logger = self.loggers_[m]
            if logger is not None:
                logger.log_metrics(
                    {**values, "lr": lr, "epoch_seconds": seconds, "epoch": epoch}, step=epoch
                )
            if not self.dead[m]:
                keeper = self.keepers[m]
                keeper.offer(
                    values.get(monitor, math.nan), epoch, functools.partial(self._member, m)
                )

    def _member(self, m: int) -> dict[str, torch.Tensor]:
        """Member ``m``'s parameters and buffers: views of the stacked tensors."""
        params, buffers = self._state()
        return {n: t[m] for n, t in {**params, **buffers}.items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """What the members keep besides the stacked weights: their best weights so far,
        which were dropped, and why."""
        checkpoint["sweeplab_members"] = {
            "keepers": [keeper.state_dict() for keeper in self.keepers],
            "dead": self.dead.clone(),
            "reasons": list(self.reasons),
            "silent": sorted(self.silent),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["sweeplab_members"]
        for keeper, kept in zip(self.keepers, state["keepers"], strict=True):
            keeper.load_state_dict(kept)
        self.dead = state["dead"].clone()
        self.reasons, self.silent = list(state["reasons"]), set(state["silent"])

    def restore(self, *, last: bool = False) -> None:
        """Each member's module with its best weights (``last``: its last epoch's)."""
        for m, (keeper, member) in enumerate(zip(self.keepers, self.members, strict=True)):
            if last:
                member.load_state_dict(self._member(m), strict=False)
            else:
                keeper.restore(member, strict=False)  # the stacked tensors: parameters, buffers


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
    """Train the members of ``seeds`` fused; each member's FitResult, or the
    TrainingDiverged that dropped it. Raises TrainingDiverged when all diverged.
    ``refit``: on the training and validation rows, each member's last weights kept
    (as ``fit(refit=True)``). ``ckpt_path``: a checkpoint of the same batch to go on
    from (``training.checkpoints``)."""
    from sweeplab.training.cost import model_cost
    from sweeplab.training.fit import (
        FitResult,
        TrainingDiverged,
        early_stoppers,
        fit_or_interrupt,
        make_trainer,
        metrics_on_test,
        prepare,
        seeded,
    )

    built = []
    for seed in seeds:
        with seeded(seed):
            built.append(prepare(exp, seed, fold, tracking_uri, refit=refit))
    datas, members = [d for d, _ in built], [m for _, m in built]
    costs = [model_cost(m, exp, d.split) for d, m in built]
    for logger, cost in zip(loggers, costs, strict=True):
        if logger is not None and ckpt_path is None:  # a resumed fit's runs have them
            logger.log_metrics(cost, step=0)
    fused = FusedModule(exp, members)
    fused.loggers_ = list(loggers)
    stoppers = early_stoppers(exp)
    with seeded(seeds[0]):
        trainer = make_trainer(exp, [*stoppers, *callbacks])
        fit_or_interrupt(trainer, fused, FusedData(datas), ckpt_path)  # type: ignore[arg-type]
    fused.restore(last=refit)
    results: list[Any] = []
    epochs = fused.epochs
    stopped = next((es.stopping_reason_message for es in stoppers if es.stopped_epoch), None)
    for m, (data, member) in enumerate(built):
        keeper = fused.keepers[m]
        if fused.dead[m] or keeper.best is None:
            reason = fused.reasons[m] or f"{exp.objective.metric} was never finite"
            results.append(TrainingDiverged(reason))
            continue
        test = metrics_on_test(make_trainer(exp), member, data)
        if loggers[m] is not None:  # each member's test metrics in its own run
            loggers[m].log_metrics(test, step=0)  # type: ignore[union-attr]
        results.append(
            FitResult(keeper.best, keeper.best_epoch, epochs, test, member, data, costs[m], stopped)
        )
    if all(isinstance(r, TrainingDiverged) for r in results):
        raise results[0]
    return results
