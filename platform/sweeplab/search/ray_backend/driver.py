"""The Ray driver: start or join Ray, run the sweep's trials with Tune, and end what a
stopped or killed worker left open."""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from ray import tune

from sweeplab.logs import ray_environment, scoped_environ
from sweeplab.search.claims import owned_heartbeats, owner
from sweeplab.search.keys import ATTR_REASON, ATTR_RUN, TAG_REASON, TAG_STATE
from sweeplab.search.ray_backend.options import RayOptions
from sweeplab.search.ray_backend.pbt import pbt_trial_ended, population, run_pbt_trial, settle
from sweeplab.search.ray_backend.schedulers import build_scheduler
from sweeplab.search.ray_backend.searcher import (
    FINAL,
    TRIAL_ID,
    WORKER_DIED,
    Budget,
    SweepSearch,
)
from sweeplab.search.ray_backend.searcher import define_by_run as _define_by_run
from sweeplab.search.ray_backend.worker import RaySweep, run_ray_trial
from sweeplab.search.study import Sweep, TrialEvent, best_value, counts, open_storage, taken
from sweeplab.spec import Experiment, InputError
from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker

OnTrial = Callable[[TrialEvent], None]


class RayBackend:
    """Trials on Ray Tune: this machine's cores, or a cluster (``RayOptions.address``)."""

    owners_locked = False  # the driver records a trial's owner as Tune starts it

    def __init__(self, options: RayOptions) -> None:
        self.options = options

    @classmethod
    def create(
        cls, options: Any = None, address: str | None = None, kept: Any = None
    ) -> RayBackend:
        if isinstance(options, RayOptions):
            return cls(options)
        return cls(RayOptions(address, **(kept or {})))

    def check(self, exp: Experiment) -> None:
        """The Ray options against the spec, and the scheduler's options (SpecError)."""
        self.options.check(exp.sweep.scheduler, exp.sweep.pruner)
        if exp.trade_offs and self.options.workers_per_trial > 1:
            raise InputError(
                "--workers-per-trial above 1 takes one objective, but the spec's objective "
                f"lists {len(exp.objectives)}: train each trial on one worker"
            )
        build_scheduler(exp)

    def kept(self) -> dict[str, Any]:
        return self.options.kept()

    def run(self, sweep: Sweep, on_trial: OnTrial | None) -> None:
        with scoped_environ(ray_environment()):
            start_ray(self.options)
            tuner = _tuner(sweep, on_trial, self.options)
            with _library_notes_ignored(), owned_heartbeats(sweep.storage, sweep.study, owner()):
                tuner.fit()
        if sweep.exp.sweep.scheduler == "pbt":
            settle(sweep.study, sweep.tracker, owner())


def start_ray(options: RayOptions) -> None:
    """Join the cluster at ``--address``, or start Ray here with this machine's cores."""
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(
            # "local": a new Ray here, as --help says; Ray's default would join the
            # cluster that /tmp/ray/ray_current_cluster names, even one that died
            address=options.address or "local",
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


@contextlib.contextmanager
def _library_notes_ignored() -> Iterator[None]:
    """Two warnings about how sweeplab uses Optuna under Tune, for the fit only."""
    with warnings.catch_warnings():
        # the searcher asks without Study.optimize, which records heartbeats itself
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        # Tune hands it some results twice; Optuna keeps the first of a step
        warnings.filterwarnings("ignore", message="The reported value is ignored")
        yield


def _tuner(sweep: Sweep, on_trial: OnTrial | None, options: RayOptions) -> tune.Tuner:
    """Tune's run of the trials the sweep lacks (all of them, unless resumed)."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    exp, study, store = sweep.exp, sweep.study, sweep.tracker.store
    ray_sweep = RaySweep(exp, store, sweep.name, sweep.parent)
    pbt = exp.sweep.scheduler == "pbt"
    searcher: Any
    if pbt:  # no searcher: Tune draws the population (pbt.py)
        searcher = BasicVariantGenerator(
            max_concurrent=exp.sweep.max_concurrent or 0, random_state=exp.sweep.seed
        )
        trainable: Any = functools.partial(run_pbt_trial, sweep=ray_sweep, driver=owner())
    else:
        searcher = SweepSearch(
            space=functools.partial(_define_by_run, exp.space),
            metric=[o.metric for o in exp.objectives] if exp.trade_offs else exp.objective.metric,
            mode=[o.mode for o in exp.objectives] if exp.trade_offs else exp.objective.mode,
            sampler=sweep.study.sampler,  # the sweep's stream (a resumed sweep: a new one)
            study_name=study.study_name,
            storage=sweep.storage,
        )
        searcher.workers_report = exp.sweep.pruner != "none"
        searcher.budget = Budget(
            study, exp.sweep.trials, exp.sweep.max_retries, exp.sweep.death_retries
        )
        if exp.sweep.max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=exp.sweep.max_concurrent)
        trainable = functools.partial(run_ray_trial, sweep=ray_sweep)
    resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
    if options.workers_per_trial > 1:
        from sweeplab.search.ray_backend.parallel import parallel_trainable

        trainable, resources, at_once = parallel_trainable(ray_sweep, options)
        if not exp.sweep.max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=at_once)
    return tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space=population(exp.space) if pbt else None,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=build_scheduler(exp),
            num_samples=_samples(exp, study),
            time_budget_s=exp.sweep.timeout,
            # a new worker process costs seconds of imports per trial; but a data-parallel
            # trial's actor owns its Train run, which must end with it when Tune stops it
            reuse_actors=options.workers_per_trial == 1,
        ),
        run_config=tune.RunConfig(
            name=study.study_name,
            storage_path=str(Path(store.root, "ray").absolute()),
            verbose=0,
            # PBT's trials are restarted by Tune; others are queued again by the searcher
            failure_config=tune.FailureConfig(max_failures=exp.sweep.max_retries if pbt else 0),
            callbacks=[TrialEnd(store, study.study_name, exp, on_trial)],
        ),
    )


def _samples(exp: Experiment, study: optuna.Study) -> int:
    """Tune's ``num_samples``: the trials the sweep lacks (all of them, unless resumed);
    with a searcher, which stops Tune itself when the study has them, as many as their
    retries could take."""
    lacking = exp.sweep.trials - taken(counts(study))
    if exp.sweep.scheduler == "pbt":
        return lacking
    return lacking * (1 + exp.sweep.max_retries + exp.sweep.death_retries)


class TrialEnd(tune.Callback):
    """On the driver, when a trial ends: end its MLflow run if its worker was stopped or
    killed before it could (pruned → FINISHED, error → FAILED), and send a progress event."""

    def __init__(self, store: Store, sweep: str, exp: Experiment, on_trial: OnTrial | None) -> None:
        self.store = store
        self.sweep = sweep
        self.exp = exp
        self.on_trial = on_trial
        self._open: Sweep | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its callbacks with the experiment; the study and the MLflow
        # client hold locks and connections, and are opened again where needed
        return {**self.__dict__, "_open": None, "on_trial": None}

    @property
    def opened(self) -> Sweep:
        if self._open is None:
            storage = open_storage(self.store.storage_url)
            study = optuna.load_study(study_name=self.sweep, storage=storage)
            tracker = Tracker(self.store, self.exp.experiment_name)
            self._open = Sweep(study, storage, self.exp, tracker, "")
        return self._open

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, error=True)

    def _ended(self, trial: Any, error: bool) -> None:
        sweep = self.opened
        trial_id = trial.config.get(TRIAL_ID)
        if trial_id is not None:
            frozen: optuna.trial.FrozenTrial | None = sweep.storage.get_trial(int(trial_id))
        else:  # a PBT trial, which no searcher tells the study about: told here
            frozen = pbt_trial_ended(sweep, trial.trial_id, error)
        if frozen is None:
            return
        final = bool((trial.last_result or {}).get(FINAL))
        state = "failed" if error else "complete" if final else "pruned"
        reason = frozen.user_attrs.get(ATTR_REASON)
        if state == "failed" and reason is None:  # killed: its worker could not say why
            reason = WORKER_DIED
        self._end_run(frozen.user_attrs.get(ATTR_RUN), state, reason)
        if self.on_trial is None:
            return
        now = counts(sweep.study)
        if not frozen.state.is_finished():  # the searcher tells the study after this callback
            now[state] += 1
            now["running"] = max(0, now["running"] - 1)
        metric = self.exp.objective.metric
        value = (trial.last_result or {}).get(metric) if final else None
        best, total = best_value(sweep.study), self.exp.sweep.trials
        self.on_trial(TrialEvent(frozen.number, state, value, reason, now, best, total))

    def _end_run(self, run_id: str | None, state: str, reason: str | None) -> None:
        tracker = self.opened.tracker
        if not run_id or tracker.client.get_run(run_id).info.status != "RUNNING":
            return
        if state == "failed":
            tracker.set_tags(run_id, {TAG_STATE: "failed", TAG_REASON: str(reason)})
            tracker.end_run(run_id, "FAILED")
        else:
            tracker.set_tags(run_id, {TAG_STATE: state})
            tracker.end_run(run_id, "FINISHED")
