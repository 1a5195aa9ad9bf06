"""A trial in a Ray worker process: the config Tune gives it, ``sweep_trial``, and
a report to Tune after each epoch and at the end."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from ray import tune

from sweeplab.logs import quiet_libraries
from sweeplab.search.keys import ATTR_RUN, TAG_HOST, TAG_NODE, TAG_RANKS
from sweeplab.search.ray_backend.searcher import FINAL, TRIAL_ID
from sweeplab.search.sampling import build_pruner, pruning_callback
from sweeplab.search.storage import open_storage
from sweeplab.search.sweep import Sweep
from sweeplab.search.trial import sweep_trial
from sweeplab.spec import Experiment
from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.callbacks import val_loss_diverged


@dataclass(frozen=True)
class RaySweep:
    """What every Ray worker of a sweep needs (picklable); ``open`` connects to it."""

    exp: Experiment
    store: Store
    name: str

    def open(self) -> Sweep:
        storage = open_storage(self.store.storage_url)
        # the spec's pruner judges this worker's trial against the study's others
        study = optuna.load_study(
            study_name=self.name, storage=storage, pruner=build_pruner(self.exp)
        )
        return Sweep(study=study, storage=storage, exp=self.exp, store=self.store)

    def params(self, config: dict[str, Any]) -> dict[str, Any]:
        """The spec values of a trial's config (Tune's, as the searcher drew them)."""
        return {path: config[path] for path, _ in self.exp.space.items() if path in config}


def report(metrics: dict[str, Any], parallel: bool) -> None:
    """Report to Tune: from the trial's own process, or from every rank of a
    data-parallel trial (Ray Train's report is collective; rank 0's metrics reach Tune)."""
    if parallel:
        import ray.train

        ray.train.report(metrics)
    else:
        tune.report(metrics)


class TuneReport(Callback):
    """Reports the objective metric to Ray Tune after each validation epoch, except an
    epoch whose val_loss diverged (``val_loss_diverged``, as Optuna's pruning callback)."""

    def __init__(self, metric: str, parallel: bool = False) -> None:
        self.metric = metric
        self.parallel = parallel

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        if val_loss_diverged(trainer):
            return
        value = float(trainer.callback_metrics[self.metric])
        report({self.metric: value, "epoch": trainer.current_epoch + 1}, self.parallel)


def ddp_options() -> dict[str, Any]:
    """Trainer options of one fit on a rank of a Ray Train worker group."""
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

    return {
        "strategy": RayDDPStrategy(),
        "plugins": [RayLightningEnvironment()],
        "devices": "auto",
    }


class FitHooks:
    """What each fit of a Ray trial trains with: a report to Tune each epoch (first
    restart only) and, on every rank of a data-parallel trial, the DDP strategy.

    Every rank of a data-parallel trial takes these from here, so that all ranks run
    the same collectives.
    """

    def __init__(self, metric: str, parallel: bool = False, each_epoch: bool = True) -> None:
        self.metric = metric
        self.parallel = parallel
        # a multi-objective trial reports once, at the end, with every objective's value
        # (Tune wants each report to hold all the searcher's metrics)
        self.each_epoch = each_epoch

    def callbacks(self, restart: int) -> Sequence[Callback]:
        report_now = restart == 0 and self.each_epoch
        return [TuneReport(self.metric, self.parallel)] if report_now else []

    def trainer_options(self) -> dict[str, Any]:
        return ddp_options() if self.parallel else {}


class RayHooks(FitHooks):
    """A trial under Ray; a scheduler's stop reaches the worker as SystemExit at a
    report, and ends the trial as pruned; so does the spec's Optuna pruner (``prune``),
    as on the Optuna backend.

    ``ranks`` (host:pid of each rank) makes it rank 0 of a data-parallel trial.
    """

    pruned: tuple[type[BaseException], ...] = (SystemExit, optuna.TrialPruned)
    paused: tuple[type[BaseException], ...] = ()

    def __init__(
        self,
        trial: optuna.Trial,
        metric: str,
        tracker: Tracker,
        ranks: list[str] | None = None,
        each_epoch: bool = True,
        prune: bool = False,
    ) -> None:
        super().__init__(metric, parallel=bool(ranks), each_epoch=each_epoch)
        self.trial = trial
        self.tracker = tracker
        self.ranks = ranks
        self.prune = prune

    def callbacks(self, restart: int) -> Sequence[Callback]:
        pruning = [pruning_callback(self.trial, self.metric)] if self.prune and restart == 0 else []
        return [*super().callbacks(restart), *pruning]

    def on_run(self, run_id: str) -> None:
        import ray

        self.trial.set_user_attr(ATTR_RUN, run_id)
        node = ray.get_runtime_context().get_node_id()
        tags = {TAG_NODE: node, TAG_HOST: socket.gethostname()}
        if self.ranks:
            tags[TAG_RANKS] = ",".join(self.ranks)
        self.tracker.set_tags(run_id, tags)


def run_ray_trial(
    config: dict[str, Any], *, sweep: RaySweep, ranks: list[str] | None = None
) -> None:
    """One trial in a Ray worker process (or rank 0 of a data-parallel trial, ``ranks``):
    the config's params on the trial the searcher created, reported to Tune."""
    quiet_libraries(training=True)  # a Ray worker's start is an entry point
    opened = sweep.open()
    trial = optuna.Trial(opened.study, int(config[TRIAL_ID]))
    metric = sweep.exp.objective.metric
    trade_offs = sweep.exp.trade_offs
    prune = sweep.exp.sweep.pruner != "none"
    hooks = RayHooks(trial, metric, opened.tracker, ranks, each_epoch=not trade_offs, prune=prune)
    try:
        outcome = sweep_trial(opened, trial, sweep.params(config), hooks)
    except optuna.TrialPruned:
        return  # its last report has no FINAL: the searcher tells the study PRUNED
    values = {o.metric: v for o, v in zip(trade_offs, outcome.trade_offs, strict=True)}
    final = {metric: outcome.value, **values, "epoch": outcome.epochs, FINAL: 1}
    report(final, bool(ranks))
