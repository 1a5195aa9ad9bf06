"""The Ray Tune backend (``sweeplab sweep --backend ray``).

The sweep is still one Optuna study in sweeplab's storage: Ray's ``OptunaSearch`` asks
the spec's sampler (same seed, same distributions as the Optuna backend) for each
trial and tells the study how it ended, so ``status``, ``compare``, ``resume`` and the
registry read a Ray sweep like any other. Ray decides where and when trials run (its
schedulers, resources per trial, ``max_concurrent``, retries, a cluster).

    driver                               Ray worker (one per trial)
    ------                               --------------------------
    SweepSearch.suggest  → config with   optuna.Trial(study, id): params read back,
      the Optuna trial id                run_trial (MLflow child run), TuneReport
                                         each epoch; a final report with the value
    scheduler: continue / stop           stop = SystemExit at a report → run "pruned"
    SweepSearch.on_trial_complete:
      final report → COMPLETE, none → PRUNED, error → FAIL
    TrialEnd callback: ends a run its worker could not end, progress events
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from sweeplab.search.catalog import SCHEDULERS
from sweeplab.search.claims import ATTR_OWNER, claim_lock, owner
from sweeplab.search.optuna_backend import (
    ATTR_REASON,
    ATTR_RUN,
    _load,
    build_sampler,
    counts,
    make_objective,
    max_epochs,
    open_storage,
    suggest,
    taken,
)
from sweeplab.search.trial import TAG_REASON, TAG_STATE
from sweeplab.spec import Experiment, InputError, SearchSpace, SpecError, spec_from_dict
from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.callbacks import val_loss_diverged

if TYPE_CHECKING:
    from sweeplab.search.sweep import SweepResult, TrialEvent

FINAL = "sweeplab_final"  # in a trial's last report: it trained to the end
TRIAL_ID = "sweeplab_trial_id"  # in a trial's config: its Optuna trial
TAG_NODE = "sweeplab.ray_node"  # on a trial's run: the Ray node and host that ran it
TAG_HOST = "sweeplab.host"
TAG_RANKS = "sweeplab.ranks"  # a data-parallel trial: host:pid of each rank, rank 0 first
ATTR_TUNE = "sweeplab.ray_trial"  # on a PBT trial's Optuna trial: its Tune trial id


@dataclass(frozen=True)
class RayOptions:
    """Where and with what a Ray sweep runs (command-line options, not the spec)."""

    address: str | None = None  # None: start Ray here with this machine's cores
    cpus_per_trial: float = 1.0  # with workers_per_trial > 1: per worker
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1  # > 1: data-parallel trials on Ray Train (ray_parallel.py)

    def check(self, scheduler: str = "none") -> None:
        if self.workers_per_trial > 1 and scheduler == "pbt":
            raise InputError(
                "--workers-per-trial above 1 cannot be used with sweep.scheduler 'pbt', "
                f"but got {self.workers_per_trial}; use asha, hyperband, median or none."
            )
        if self.workers_per_trial < 1:
            raise InputError(f"--workers-per-trial must be >= 1, but got {self.workers_per_trial}.")
        if not self.cpus_per_trial > 0:
            raise InputError(f"--cpus-per-trial must be > 0, but got {self.cpus_per_trial}.")
        if self.gpus_per_trial < 0:
            raise InputError(f"--gpus-per-trial must be >= 0, but got {self.gpus_per_trial}.")
        if 1 < self.gpus_per_trial != int(self.gpus_per_trial):
            raise InputError(
                "--gpus-per-trial above 1 must be a whole number of GPUs, "
                f"but got {self.gpus_per_trial}."
            )

    def kept(self) -> dict[str, Any]:
        """What a resumed sweep runs with again (the address may change)."""
        return {
            "cpus_per_trial": self.cpus_per_trial,
            "gpus_per_trial": self.gpus_per_trial,
            "workers_per_trial": self.workers_per_trial,
        }


# ------------------------------------------------------------------ scheduler


def build_scheduler(exp: Experiment) -> Any:
    """Ray Tune's scheduler of the spec, on the epoch count; a bad option is a SpecError."""
    name = exp.sweep.scheduler
    options: dict[str, Any] = dict(exp.sweep.scheduler_options)
    given = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
    if name != "none":
        options.update(metric=exp.objective.metric, mode=exp.objective.mode)
    if name in ("asha", "hyperband"):
        # max_t one past the last epoch: a trial that trains to the end is never stopped
        # at its last epoch's report, before its test metrics and checkpoint are saved
        options.update(time_attr="epoch", max_t=max_epochs(exp) + 1)
        if name == "hyperband":
            options.setdefault("brackets", 3)
    elif name == "median":
        options["time_attr"] = "epoch"
    elif name == "pbt":
        from sweeplab.search.pbt import TIME, mutations

        options.setdefault("perturbation_interval", max(1, max_epochs(exp) // 4))
        options.update(
            time_attr=TIME,
            require_attrs=False,  # the last epoch's report has no TIME (pbt.PbtReport)
            hyperparam_mutations=mutations(SearchSpace.model_validate(exp.search_space)),
        )
    try:
        return _load(SCHEDULERS[name])(**options)
    except (TypeError, ValueError, AssertionError) as exc:  # Ray checks options with assert
        raise SpecError.single(
            None,
            "sweep.scheduler_options",
            f"{given} invalid for scheduler '{name}': {exc}",
        ) from None


# ------------------------------------------------------------------- searcher


def _define_by_run(space: SearchSpace, trial: optuna.Trial) -> None:
    suggest(trial, space)  # the Optuna backend's own suggest: same distributions


WORKER_DIED = "its Ray worker died"


class SweepSearch(OptunaSearch):
    """Ray's OptunaSearch on the sweep's study, telling PRUNED for stopped trials.

    OptunaSearch tells COMPLETE with the last reported value when a scheduler stops a
    trial; a trial is complete here only when its worker sent the final report.
    """

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if config is None:
            return None
        trial = self._ot_trials[trial_id]
        # the driver owns the trial: if it dies, so do its Ray workers, and `resume`
        # fails the trial at once (claims.Recovery, as for the Optuna backend)
        trial.set_user_attr(ATTR_OWNER, owner())
        return {**config, TRIAL_ID: trial._trial_id}

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if result is not None and not result.get(FINAL):
            result = None  # stopped by the scheduler (or failed): no value to tell
        trial = self._ot_trials.get(trial_id)
        if error and trial is not None:
            # a worker that raised recorded why (read from the storage: the trial object
            # caches its attributes); one that was killed could not
            storage = trial.study._storage
            if ATTR_REASON not in storage.get_trial(trial._trial_id).user_attrs:
                trial.set_user_attr(ATTR_REASON, WORKER_DIED)
        super().on_trial_complete(trial_id, result, error)


# --------------------------------------------------------------------- worker


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


class FitHooks:
    """What each fit of a Ray trial trains with: a report to Tune each epoch (first
    restart only) and, on every rank of a data-parallel trial, the DDP strategy.

    Every rank of a data-parallel trial takes these from here, so that all ranks run
    the same collectives.
    """

    def __init__(self, metric: str, parallel: bool = False) -> None:
        self.metric = metric
        self.parallel = parallel

    def callbacks(self, restart: int) -> Sequence[Callback]:
        return [TuneReport(self.metric, self.parallel)] if restart == 0 else []

    def trainer_options(self) -> dict[str, Any]:
        if not self.parallel:
            return {}
        from sweeplab.search.ray_parallel import ddp_options

        return ddp_options()


class RayHooks(FitHooks):
    """A trial under Ray; a scheduler's stop reaches the worker as SystemExit at a
    report, and ends the trial as pruned.

    ``ranks`` (host:pid of each rank) makes it rank 0 of a data-parallel trial.
    """

    pruned: tuple[type[BaseException], ...] = (SystemExit,)
    paused: tuple[type[BaseException], ...] = ()

    def __init__(
        self, trial: optuna.Trial, metric: str, tracker: Tracker, ranks: list[str] | None = None
    ) -> None:
        super().__init__(metric, parallel=bool(ranks))
        self.trial = trial
        self.tracker = tracker
        self.ranks = ranks

    def on_run(self, run_id: str) -> None:
        import ray

        self.trial.set_user_attr(ATTR_RUN, run_id)
        node = ray.get_runtime_context().get_node_id()
        tags = {TAG_NODE: node, TAG_HOST: socket.gethostname()}
        if self.ranks:
            tags[TAG_RANKS] = ",".join(self.ranks)
        self.tracker.set_tags(run_id, tags)


def run_ray_trial(
    config: dict[str, Any],
    *,
    spec: dict[str, Any],
    store: Store,
    sweep: str,
    parent: str,
    ranks: list[str] | None = None,
) -> None:
    """One trial in a Ray worker process (or rank 0 of a data-parallel trial, ``ranks``):
    the Optuna backend's objective, reported to Tune."""
    from sweeplab.cli._common import quiet_libraries

    quiet_libraries()
    exp = spec_from_dict(spec)
    study = optuna.load_study(study_name=sweep, storage=open_storage(store.storage_url))
    trial = optuna.Trial(study, int(config[TRIAL_ID]))
    metric = exp.objective.metric
    tracker = Tracker(store, exp.experiment_name)
    objective = make_objective(
        exp, tracker, sweep, parent, lambda t: RayHooks(t, metric, tracker, ranks)
    )
    value = objective(trial)
    epochs = int(study._storage.get_trial(trial._trial_id).user_attrs.get("epochs", 0))
    report({metric: value, "epoch": epochs, FINAL: 1}, bool(ranks))


# --------------------------------------------------------------------- driver


class TrialEnd(tune.Callback):
    """On the driver, when a trial ends: end its MLflow run if its worker was stopped or
    killed before it could (pruned → FINISHED, error → FAILED), and send a progress event."""

    def __init__(
        self,
        store: Store,
        sweep: str,
        exp: Experiment,
        on_trial: Callable[[TrialEvent], None] | None,
    ) -> None:
        self.store = store
        self.sweep = sweep
        self.experiment = exp.experiment_name
        self.metric = exp.objective.metric
        self.total = exp.sweep.trials
        self.on_trial = on_trial
        self._open: tuple[optuna.Study, Tracker] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its callbacks with the experiment; the study and the MLflow
        # client hold locks and connections, and are opened again where needed
        return {**self.__dict__, "_open": None, "on_trial": None}

    @property
    def opened(self) -> tuple[optuna.Study, Tracker]:
        if self._open is None:
            storage = open_storage(self.store.storage_url)
            study = optuna.load_study(study_name=self.sweep, storage=storage)
            self._open = study, Tracker(self.store, self.experiment)
        return self._open

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, error=True)

    def _ended(self, trial: Any, error: bool) -> None:
        from sweeplab.search.sweep import TrialEvent

        study, tracker = self.opened
        trial_id = trial.config.get(TRIAL_ID)
        if trial_id is not None:
            frozen: optuna.trial.FrozenTrial | None = study._storage.get_trial(int(trial_id))
        else:  # a PBT trial, which no searcher tells the study about: told here
            frozen = _pbt_trial(study, trial.trial_id, error)
        if frozen is None:
            return
        final = bool((trial.last_result or {}).get(FINAL))
        state = "failed" if error else "complete" if final else "pruned"
        reason = frozen.user_attrs.get(ATTR_REASON)
        if state == "failed" and reason is None:  # killed: its worker could not say why
            reason = WORKER_DIED
        run_id = frozen.user_attrs.get(ATTR_RUN)
        if run_id and tracker.client.get_run(run_id).info.status == "RUNNING":
            if state == "failed":
                why = str(reason)
                tracker.set_tags(run_id, {TAG_STATE: "failed", TAG_REASON: why})
                tracker.end_run(run_id, "FAILED")
            else:
                tracker.set_tags(run_id, {TAG_STATE: state})
                tracker.end_run(run_id, "FINISHED")
        if self.on_trial is None:
            return
        now = counts(study)
        if not frozen.state.is_finished():  # the searcher tells the study after this callback
            now[state] += 1
            now["running"] = max(0, now["running"] - 1)
        try:
            best: float | None = study.best_value
        except ValueError:
            best = None
        value = (trial.last_result or {}).get(self.metric) if final else None
        self.on_trial(TrialEvent(frozen.number, state, value, reason, now, best, self.total))


def tune_trial(
    study: optuna.Study, tune_id: str, states: tuple[TrialState, ...] | None = None
) -> optuna.trial.FrozenTrial | None:
    """The Optuna trial of PBT's Tune trial ``tune_id`` (tagged ``ATTR_TUNE``), if any."""
    for t in study.get_trials(deepcopy=False, states=states):
        if t.user_attrs.get(ATTR_TUNE) == tune_id:
            return t
    return None


def _pbt_trial(study: optuna.Study, tune_id: str, error: bool) -> optuna.trial.FrozenTrial | None:
    """The Optuna trial of PBT's Tune trial ``tune_id``, told FAIL (error) or PRUNED
    (stopped) if its worker did not tell it COMPLETE."""
    t = tune_trial(study, tune_id)
    if t is None or t.state.is_finished():
        return t
    if error and ATTR_REASON not in t.user_attrs:
        study._storage.set_trial_user_attr(t._trial_id, ATTR_REASON, WORKER_DIED)
    study.tell(t.number, state=TrialState.FAIL if error else TrialState.PRUNED)
    return study._storage.get_trial(t._trial_id)


def start_ray(options: RayOptions) -> None:
    """Join the cluster at ``--address``, or start Ray here with this machine's cores."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # sweeplab shows its own progress
    # PBT checkpoints every epoch, which Tune warns about; sweeplab means to
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        ray.init(
            address=options.address,
            # Ray Train's placement-group cleaner asks the dashboard's State API whether a
            # stopped trial's Train run is gone; without it the run's CPUs are never freed
            include_dashboard=options.workers_per_trial > 1,
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.ERROR,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = options.address or "a local Ray"
        raise InputError(f"could not start or join {where}: {exc}") from None


def tune_sweep(
    study: optuna.Study,
    exp: Experiment,
    tracker: Tracker,
    parent: str,
    on_trial: Callable[[TrialEvent], None] | None,
    options: RayOptions,
) -> SweepResult:
    """Run the sweep's trials with Ray Tune, then finish it as the Optuna backend does."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    from sweeplab.search.sweep import finish

    start_ray(options)
    store = tracker.store
    trials = exp.sweep.trials - taken(counts(study))  # a resumed sweep: those it lacks
    spec = exp.model_dump(mode="json")
    space = SearchSpace.model_validate(exp.search_space)
    pbt = exp.sweep.scheduler == "pbt"
    if pbt:  # no searcher: Tune draws the population (pbt.py)
        from sweeplab.search.pbt import population, run_pbt_trial

        searcher: Any = BasicVariantGenerator(
            max_concurrent=exp.sweep.max_concurrent or 0, random_state=exp.sweep.seed
        )
        trainable: Any = functools.partial(
            run_pbt_trial,
            spec=spec,
            store=store,
            sweep=study.study_name,
            parent=parent,
            driver=owner(),
        )
    else:
        searcher = SweepSearch(
            space=functools.partial(_define_by_run, space),
            metric=exp.objective.metric,
            mode=exp.objective.mode,
            sampler=build_sampler(exp),
            study_name=study.study_name,
            storage=study._storage,
        )
        if exp.sweep.max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=exp.sweep.max_concurrent)
        trainable = functools.partial(
            run_ray_trial, spec=spec, store=store, sweep=study.study_name, parent=parent
        )
    resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
    if options.workers_per_trial > 1:
        from sweeplab.search.ray_parallel import Sweep, parallel_trainable

        sweep = Sweep(spec, store, study.study_name, parent)
        trainable, resources, at_once = parallel_trainable(sweep, options)
        if not exp.sweep.max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=at_once)
    # Tune's own CSV, JSON and TensorBoard files of every result: the trials are tracked in
    # MLflow, and writing them cost the 20-trial bench about 3 s (bench/distributed.py)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space=population(space) if pbt else None,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=build_scheduler(exp),
            num_samples=trials,
            time_budget_s=exp.sweep.timeout,
            # a new worker process costs seconds of imports per trial; but a data-parallel
            # trial's actor owns its Train run, which must end with it when Tune stops it
            reuse_actors=options.workers_per_trial == 1,
        ),
        run_config=tune.RunConfig(
            name=study.study_name,
            storage_path=str(Path(store.root, "ray").absolute()),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=exp.sweep.max_retries),
            callbacks=[TrialEnd(store, study.study_name, exp, on_trial)],
        ),
    )
    with warnings.catch_warnings():  # the searcher asks without Study.optimize, and
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        # Tune hands it some results twice; Optuna keeps the first of a step
        warnings.filterwarnings("ignore", message="The reported value is ignored")
        tuner.fit()
    if pbt:
        from sweeplab.search.pbt import settle

        settle(study, tracker, owner())
    return finish(study, exp, tracker, parent, claim_lock(store.storage_url, study.study_name))
