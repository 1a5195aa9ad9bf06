"""Fused fits: several fits trained in lockstep, as one batched model.

A batch holds one or several trials, each with its restarts as members. A trial's
restarts share its configuration; different trials may differ in the fusible fields
(``training.fusing``): each trial has its own parameter group of the optimizer (its
learning rate, weight decay, momentum), each member its own dropout rate, L1 penalty and
label smoothing, and each trial ends alone (its ``max_epochs``, its early stopping, or
``end`` called from outside: a pruner), frozen from then on.

PyTorch's model ensembling (``torch.func``): the members' parameters and buffers are
stacked (``stack_module_state``), and each step is one forward and one backward for all
of them (``vmap`` over ``functional_call``), so Lightning's work per step is paid once.

- Each member keeps its own initialization (built under its own seed), its own
  shuffling order (its own loader and generator, as in a fit of its own) and its own
  dropout draws (``vmap(randomness="different")``); batch norm keeps running
  statistics per member (the stacked buffers).
- Each trial's members are stacked into tensors of their own, one parameter group of
  torch's optimizer; the forward joins the trials' tensors. For every optimizer
  sweeplab offers (sgd, adam, adamw, rmsprop, adadelta) the update, weight decay
  included, is elementwise, so each member gets exactly the update it would get alone.
  Measured against a batched update written with torch ops over per-member
  hyperparameter tensors (AdamW, the default MLP, 2 cores): groups took 1.22×, 1.11×
  and 1.07× the step of one stacked group at 4, 8 and 16 members, the hand-written
  update 1.49×, 1.17× and 1.34×; and groups keep torch's own update for every optimizer.
  A schedule scales each group's own rate. Gradient clipping is per member.
- Each epoch a trial's value is the mean over its members that are still finite (its
  ``val_loss``, its metric): that is what pruners, Ray schedulers and early stopping
  see (the batch logs the mean over all members still training, for the callbacks of
  a one-trial batch). Each member logs its own curve and keeps its own best weights; a
  member whose loss becomes NaN is dropped and returned as ``TrainingDiverged``.

Lightning has no fused ensemble of its own; torch.func provides the batching, and
this module is the LightningModule around it (``training.fused`` fits it).
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
from lightning.pytorch.loggers import Logger
from torch import nn

from sweeplab.optim.optimizers import build_optimizer, group_options
from sweeplab.optim.schedules import build_scheduler
from sweeplab.spec import Experiment
from sweeplab.training.callbacks import KeepBestWeights
from sweeplab.training.grouped import grouped_forward, grouped_layers
from sweeplab.training.members import (
    EpochSums,
    TrialEnds,
    aurocs,
    dropout_rates,
    row_losses,
    with_member_dropout,
)

__all__ = ["FusedModule"]


class FusedModule(pl.LightningModule):
    """The members' stacked parameters, trained together; the mean is what is logged.

    ``trials``: each trial's configuration and its members (its restarts), in order."""

    def __init__(self, trials: Sequence[tuple[Experiment, Sequence[pl.LightningModule]]]) -> None:
        from torch.func import stack_module_state

        super().__init__()
        self.exps = [exp for exp, _ in trials]
        self.exp = self.exps[0]  # what the trials share: the batch's shape
        self.members = [m for _, ms in trials for m in ms]  # not submodules: set at the end
        self.k = len(self.members)
        self.trial_of = [t for t, (_, ms) in enumerate(trials) for _ in ms]
        stacks = [stack_module_state(list(ms))[0] for _, ms in trials]
        self.names = list(stacks[0])
        self.stacked = nn.ParameterList(
            [nn.Parameter(params[n].detach()) for params in stacks for n in self.names]
        )
        n = len(self.names)  # each trial's, in the order of names (a list: a ParameterList
        # slice would build a new module at every forward)
        self._pieces: list[list[nn.Parameter]] = [
            list(self.stacked)[t * n : (t + 1) * n] for t in range(len(trials))
        ]
        buffers = stack_module_state(self.members)[1]
        self.buffer_names = list(buffers)
        for i, name in enumerate(self.buffer_names):
            self.register_buffer(f"stacked_buffer_{i}", buffers[name].clone())
        self.template: list[Any] = [copy.deepcopy(self.members[0])]  # a list: not a submodule
        self.grouped = grouped_layers(self.template[0])
        if self.grouped is None:  # vmap: each member's dropout rate from a buffer of its own
            with_member_dropout(self.template[0])
        rates = dropout_rates(self.members)
        if self.grouped is not None:  # a rate all members share stays the layer's own number
            rates = {n: r for n, r in rates.items() if bool((r != r[0]).any())}
        self.rate_names = list(rates)
        for i, values in enumerate(rates.values()):
            self.register_buffer(f"rate_{i}", values, persistent=False)
        l1 = torch.tensor([self.exps[t].train.l1 for t in self.trial_of])
        self.l1: torch.Tensor
        self.register_buffer("l1", l1, persistent=False)
        self.task = getattr(self.members[0], "task", "reconstruction")
        self.trials = [(exp, list(ms)) for exp, ms in trials]
        self.row_losses = row_losses(self.trials) if self.task != "reconstruction" else []
        self.active = list(range(self.k))  # the members the batched step computes
        self.dead = torch.zeros(self.k, dtype=torch.bool)
        self.reasons: list[str | None] = [None] * self.k
        self.loggers_: list[Logger | None] = [None] * self.k
        monitor, mode = self.exp.objective.metric, self.exp.objective.mode
        self.keepers = [KeepBestWeights(monitor, mode) for _ in range(self.k)]  # per member
        self.ends = TrialEnds(self.exps)
        self._sums = EpochSums()  # per member, over the epoch's batches
        self._scores: list[tuple[torch.Tensor, torch.Tensor]] = []  # autoencoder: for auroc
        self._started, self._lrs = 0.0, [math.nan] * len(self.exps)
        self.epochs = 0  # epochs run
        self.silent: set[int] = set()  # dropped members whose last epoch is logged

    def _span(self, t: int) -> range:
        """The members of trial ``t``."""
        return range(self.trial_of.index(t), len(self.trial_of) - self.trial_of[::-1].index(t))

    # ------------------------------------------------------------------ the batched call

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The parameters and buffers of the members still computed (``active``: those
        of trials that have not ended), stacked by name. A subset's buffers are copies:
        ``_keep`` writes back what a training forward changed in them."""
        pieces = [self._pieces[t] for t in range(len(self.exps)) if self.ends.running(t)]
        params: dict[str, torch.Tensor] = dict(zip(self.names, pieces[0], strict=True))
        if len(pieces) > 1:
            params = {name: torch.cat([p[i] for p in pieces]) for i, name in enumerate(self.names)}
        buffers = {n: getattr(self, f"stacked_buffer_{i}") for i, n in enumerate(self.buffer_names)}
        rates = {n: getattr(self, f"rate_{i}") for i, n in enumerate(self.rate_names)}
        state = {**buffers, **rates}
        if len(self.active) < self.k:
            state = {n: b[self.active] for n, b in state.items()}
        return params, state

    def _keep(self, buffers: dict[str, torch.Tensor]) -> None:
        """Write a subset's buffers back (batch norm's running statistics)."""
        if len(self.active) < self.k:
            for i, name in enumerate(self.buffer_names):
                getattr(self, f"stacked_buffer_{i}")[self.active] = buffers[name]

    def _outputs(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Every active member's output: ``x`` is (active, batch, ...) or, ``shared``, one
        batch."""
        from torch.func import functional_call, vmap

        template = self.template[0]
        template.train(self.training)
        params, buffers = self._state()
        if self.grouped is not None:
            inputs = x.expand(len(self.active), *x.shape) if shared else x
            out = grouped_forward(self.grouped, {**params, **buffers}, inputs, self.training)
            out = out.squeeze(-1) if self.task == "regression" else out
        else:

            def one(params: Any, buffers: Any, rows: torch.Tensor) -> torch.Tensor:
                out: torch.Tensor = functional_call(template, (params, buffers), (rows,))
                return out

            batched = vmap(one, in_dims=(0, 0, None if shared else 0), randomness="different")
            out = batched(params, buffers, x)
        if self.training:
            self._keep(buffers)
        return out

    def _full(self, values: torch.Tensor) -> torch.Tensor:
        """An active members' tensor, (active, ...), as one of every member, (k, ...):
        NaN for the members of ended trials."""
        if len(self.active) == self.k:
            return values
        full = values.new_full((self.k, *values.shape[1:]), math.nan)
        full[self.active] = values
        return full

    def _losses(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each active member's loss: ``out`` (active, batch, ...), ``target`` the same rows."""
        if self.task == "reconstruction":
            return ((out - target) ** 2).flatten(1).mean(dim=1)
        losses = []
        for per_row, span in self.row_losses:  # one call for all when the losses agree
            part = slice(span.start, span.stop)
            rows = per_row(out[part].flatten(0, 1), target[part].flatten(0, 1))
            losses.append(rows.reshape(len(span), -1).mean(dim=1))
        return losses[0] if len(losses) == 1 else torch.cat(losses)

    # ------------------------------------------------------------------------- training

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        xs = torch.stack([batch[m][0] for m in self.active])
        ys = torch.stack([batch[m][1] for m in self.active])
        if self.task == "reconstruction":
            noise = self.template[0].noise
            noisy = xs + noise * torch.randn_like(xs) if noise > 0 else xs
            losses = self._losses(self._outputs(noisy, shared=False), xs)
        else:
            losses = self._losses(self._outputs(xs, shared=False), ys)
        self._sums.add("train_loss", self._full(losses.detach()) * xs.shape[1], xs.shape[1])
        if any(exp.train.l1 > 0 for exp in self.exps):
            penalty = [p.abs().flatten(1).sum(1) for p in self._state()[0].values() if p.dim() > 2]
            losses = losses + self.l1[self.active] * torch.stack(penalty).sum(0)
        if not bool(self.dead.any()):  # a CPU tensor: no device sync
            return losses.sum()
        training = (~self.dead[self.active]).to(losses.device)
        # the gradient of each member is its own loss's; a dropped one's NaN stays in its
        # own slice of the stacked tensors (every update is elementwise)
        return torch.where(training, losses, torch.zeros_like(losses)).sum()

    def _training(self) -> torch.Tensor:
        """Which members still train: alive, in a trial that has not ended."""
        running = torch.tensor([self.ends.running(t) for t in self.trial_of])
        return ~self.dead & running

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        """Each member's gradients scaled to norm ``gradient_clip_val`` as torch's
        clip_grad_norm_ scales one model's."""
        if not gradient_clip_val:
            return
        for t in range(len(self.exps)):
            grads = [p.grad for p in self._pieces[t] if p.grad is not None]
            if not grads:  # an ended trial
                continue
            norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
            scale = (float(gradient_clip_val) / (norms + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))

    def configure_optimizers(self) -> Any:
        groups = [
            {"params": list(self._pieces[t]), **group_options(exp.train)}
            for t, exp in enumerate(self.exps)
        ]
        optimizer = build_optimizer(self.exp.train, groups)
        steps = int(self.trainer.estimated_stepping_batches)
        epochs = int(self.trainer.max_epochs or self.exp.train.max_epochs)
        schedule = build_scheduler(self.exp.train.schedule, optimizer, epochs, steps)
        return optimizer if schedule is None else {"optimizer": optimizer, "lr_scheduler": schedule}

    def on_train_epoch_start(self) -> None:
        self._started = time.perf_counter()
        optimizers = self.trainer.optimizers
        if optimizers:
            self._lrs = [float(group["lr"]) for group in optimizers[0].param_groups]

    # ------------------------------------------------------------------------ validation

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        out = self._outputs(x, shared=True)
        rows = len(x)
        if self.task == "reconstruction":
            score = self._full(((out - x) ** 2).flatten(2).mean(dim=2))  # (k, rows)
            holdout = self.template[0].holdout.to(y.device)
            anomaly = torch.isin(y, holdout)
            self._sums.add("val_loss", score[:, ~anomaly].sum(1), int((~anomaly).sum()))
            if len(holdout):
                self._scores.append((score.detach(), anomaly))
            return
        target = y.expand(len(self.active), *y.shape)
        self._sums.add("val_loss", self._full(self._losses(out, target)) * rows, rows)
        if self.task == "classification":
            self._sums.add("val_acc", self._full((out.argmax(dim=-1) == y).float().sum(1)), rows)
        else:
            std = self.template[0].target_std
            self._sums.add("val_rmse", self._full(((out - y) * std).pow(2).sum(1)), rows)

    def on_validation_epoch_end(self) -> None:
        metrics = self._sums.means()
        if "val_rmse" in metrics:
            metrics["val_rmse"] = metrics["val_rmse"].sqrt()
        if self._scores:
            metrics["val_auroc"] = self._auroc()
        self.epochs = self.current_epoch + 1
        self._drop_diverged(metrics["val_loss"])
        training = self._training()
        for name, values in metrics.items():  # the mean is what callbacks see
            mean = values[training].mean() if training.any() else torch.tensor(math.nan)
            self.log(name, mean, on_epoch=True)
        self.log("lr", self._lrs[0], on_epoch=True)
        self._per_member(metrics, training)
        self._end_trials(metrics)

    def _auroc(self) -> torch.Tensor:
        """Each member's AUROC of its reconstruction error against the held-out classes."""
        scores, self._scores = self._scores, []
        return self._full(aurocs(scores, self.active))

    def _drop_diverged(self, val_loss: torch.Tensor) -> None:
        epoch = self.current_epoch
        for m, training in enumerate(self._training().tolist()):
            if training and not math.isfinite(float(val_loss[m])):
                self.dead[m] = True
                self.reasons[m] = f"val_loss became {float(val_loss[m])} at epoch {epoch}"

    def _per_member(self, metrics: dict[str, torch.Tensor], training: torch.Tensor) -> None:
        """Each member's curve into its logger, and its best weights so far."""
        epoch, monitor = self.current_epoch, self.exp.objective.metric
        seconds = time.perf_counter() - self._started
        for m in range(self.k):
            t = self.trial_of[m]
            if m in self.silent or not self.ends.running(t):  # its curve has ended
                continue
            if self.dead[m]:
                self.silent.add(m)
            values = {name: float(v[m]) for name, v in metrics.items()}
            logger = self.loggers_[m]
            if logger is not None:
                logger.log_metrics(
                    {**values, "lr": self._lrs[t], "epoch_seconds": seconds, "epoch": epoch},
                    step=epoch,
                )
            if training[m]:
                keeper = self.keepers[m]
                keeper.offer(
                    values.get(monitor, math.nan), epoch, functools.partial(self._member, m)
                )

    def _end_trials(self, metrics: dict[str, torch.Tensor]) -> None:
        """End each trial whose own max_epochs, early stopping or divergence says so;
        stop the fit when none is left."""
        training = self._training()
        for t in range(len(self.exps)):
            if not self.ends.running(t):
                continue
            alive = training[list(self._span(t))]
            values = {n: float(v[list(self._span(t))][alive].mean()) for n, v in metrics.items()}
            if self.ends.due(t, self.current_epoch, values, bool(alive.any())):
                self.end(t)
        if not any(self.ends.running(t) for t in range(len(self.exps))):
            self.trainer.should_stop = True

    def end(self, t: int) -> None:
        """End trial ``t`` with the epoch that just ran: its members leave the batch (the
        step gets cheaper; their weights and buffers stay as they are), and their curves
        and best weights stop there. A pruner calls it, and ``_end_trials``."""
        self.ends.ended_at[t] = self.current_epoch
        self.silent.update(self._span(t))
        self._running_changed()

    def _running_changed(self) -> None:
        running = [t for t in range(len(self.exps)) if self.ends.running(t)]
        self.active = [m for m in range(self.k) if self.trial_of[m] in running]
        if self.task != "reconstruction" and running:
            self.row_losses = row_losses([self.trials[t] for t in running])

    def epochs_of(self, t: int) -> int:
        """The epochs trial ``t`` trained."""
        ended = self.ends.ended_at[t]
        return self.epochs if ended is None else ended + 1

    def _member(self, m: int) -> dict[str, torch.Tensor]:
        """Member ``m``'s parameters and buffers: views of the stacked tensors."""
        t = self.trial_of[m]
        row = m - self._span(t).start
        params = {n: p[row] for n, p in zip(self.names, self._pieces[t], strict=True)}
        buffers = {
            name: getattr(self, f"stacked_buffer_{i}")[m]
            for i, name in enumerate(self.buffer_names)
        }
        return {**params, **buffers}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """What the members keep besides the stacked weights: their best weights so far,
        which were dropped and why, and which trials ended."""
        checkpoint["sweeplab_members"] = {
            "keepers": [keeper.state_dict() for keeper in self.keepers],
            "dead": self.dead.clone(),
            "reasons": list(self.reasons),
            "silent": sorted(self.silent),
            "ends": self.ends.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["sweeplab_members"]
        for keeper, kept in zip(self.keepers, state["keepers"], strict=True):
            keeper.load_state_dict(kept)
        self.dead = state["dead"].clone()
        self.reasons, self.silent = list(state["reasons"]), set(state["silent"])
        if "ends" in state:  # a checkpoint written before trials were fused has none
            self.ends.load_state_dict(state["ends"])
            self._running_changed()

    def restore(self, *, last: bool = False) -> None:
        """Each member's module with its best weights (``last``: its last epoch's)."""
        for m, (keeper, member) in enumerate(zip(self.keepers, self.members, strict=True)):
            if last:
                member.load_state_dict(self._member(m), strict=False)
            else:
                keeper.restore(member, strict=False)  # the stacked tensors: parameters, buffers
