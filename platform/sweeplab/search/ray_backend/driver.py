"""The Ray driver: start or join Ray, run the sweep's trials with Tune, and end what a
stopped or killed worker left open."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray import tune

from sweeplab.interrupts import reason, signal_named
from sweeplab.logs import ray_environment, scoped_environ
from sweeplab.search.claims import Recovery, every, owned_heartbeats, owner
from sweeplab.search.keys import ATTR_REASON, ATTR_RUN, TAG_REASON, TAG_STATE
from sweeplab.search.options import BackendOptions, RayOptions
from sweeplab.search.optuna_backend.pool import POLL_SECONDS, Progress
from sweeplab.search.ray_backend.batches import (
    BATCH,
    carries_batches,
    concurrent_trials,
    run_ray_batch,
)
from sweeplab.search.ray_backend.pbt import pbt_trial_ended, population, run_pbt_trial, settle
from sweeplab.search.ray_backend.schedulers import build_scheduler
from sweeplab.search.ray_backend.searcher import FINAL, TRIAL_ID, WORKER_DIED, SweepSearch
from sweeplab.search.ray_backend.searcher import define_by_run as _define_by_run
from sweeplab.search.ray_backend.worker import RaySweep, run_ray_trial
from sweeplab.search.states import TrialState
from sweeplab.search.sweep import OnTrial, Sweep, Work
from sweeplab.spec import Experiment, InputError
from sweeplab.store import Store

SETTLE_SECONDS = 10.0  # after a Ctrl-C, how long stopped workers are waited for


class RayBackend:
    """Trials on Ray Tune: this machine's cores, or a cluster (``RayOptions.address``)."""

    owners_locked = False  # the driver records a trial's owner as Tune starts it

    def __init__(self, options: RayOptions) -> None:
        self.options = options

    @classmethod
    def create(
        cls,
        options: BackendOptions | None = None,
        address: str | None = None,
        kept: dict[str, Any] | None = None,
    ) -> RayBackend:
        # another backend's options never get here (lifecycle.backend_for refuses them)
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
        if self.options.workers_per_trial > 1 and exp.sweep.fuse_trials not in (1, "auto"):
            raise InputError(
                "--workers-per-trial above 1 trains one configuration data-parallel, but "
                f"sweep.fuse_trials is {exp.sweep.fuse_trials}: set 1"
            )

    def kept(self) -> dict[str, Any]:
        return self.options.kept()

    def run(self, sweep: Sweep, work: Work) -> None:
        with scoped_environ(ray_environment()):
            start_ray(self.options)
            batches = carries_batches(sweep, self.options)
            tuner = _tuner(sweep, work, self.options, batches)
            # the workers tell the study how a batch's trials ended, not a searcher: the
            # driver polls the study for progress events
            polled = Progress(sweep, work.on_trial) if batches else None
            with _library_notes_ignored(), owned_heartbeats(sweep, owner()):
                fit(sweep, tuner, polled)
        if sweep.exp.sweep.scheduler == "pbt":
            settle(sweep.study, sweep.tracker, owner())

    def close(self) -> None:
        pass  # a Ray started here stays up, for the next sweep of this process (ray.init)


def fit(sweep: Sweep, tuner: tune.Tuner, polled: Progress | None) -> None:
    """Run ``tuner``'s Tune trials (``polled``: a progress event for each trial that the
    study says has ended). A Ctrl-C or SIGTERM stops Ray, its workers with it: the
    trials they held are failed and queued again (``sweep.death_retries``) for
    ``resume``, their runs ended KILLED, and the interrupt goes on."""
    import ray

    polls = every(POLL_SECONDS, polled.report) if polled else contextlib.nullcontext()
    try:
        # Tune's own SIGINT handler would end the run as if it had finished: exit 0,
        # its trials left RUNNING
        with (
            scoped_environ({"TUNE_DISABLE_SIGINT_HANDLER": "1"}, override=True),
            signal_named(),
            polls,
        ):
            tuner.fit()
    except KeyboardInterrupt as exc:
        # the searcher's trials first: Ray's shutdown takes seconds once its own
        # processes had the signal too (a terminal's Ctrl-C, a SIGTERM to the group)
        Recovery(sweep).release(owner(), reason(exc))
        ray.shutdown()
        _settle(sweep, wait=SETTLE_SECONDS)
        raise
    if polled is not None:
        _settle(sweep, wait=0.0)
        polled.report()


def _settle(sweep: Sweep, wait: float) -> None:
    """Fail the trials whose Ray worker died, waiting up to ``wait`` seconds for
    stopped workers to exit (a worker on another host: its heartbeat tells later)."""
    recovery, deadline = Recovery(sweep), time.monotonic() + wait
    while True:
        # under the claim lock, as the Tune trials' claims run it: a dead trial seen by
        # both at once was failed twice and its configuration queued twice (CI, once)
        with sweep.lock.held():
            recovery.run()
        if not sweep.counts.running or time.monotonic() >= deadline:
            return
        time.sleep(POLL_SECONDS)


def start_ray(options: RayOptions) -> None:
    """Join the cluster at ``--address``, or start Ray here with this machine's cores."""
    import ray

    if ray.is_initialized():
        return
    # ray.init installs a SIGTERM handler of its own in the driver, which aborts the
    # process (exit -6, nothing settled): sweeplab's, SIGTERM as Ctrl-C, is put back
    main = threading.current_thread() is threading.main_thread()
    kept = signal.getsignal(signal.SIGTERM) if main else None
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
    if kept is not None:
        signal.signal(signal.SIGTERM, kept)


@contextlib.contextmanager
def _library_notes_ignored() -> Iterator[None]:
    """Two warnings about how sweeplab uses Optuna under Tune, for the fit only."""
    with warnings.catch_warnings():
        # the searcher asks without Study.optimize, which records heartbeats itself
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        # Tune hands it some results twice; Optuna keeps the first of a step
        warnings.filterwarnings("ignore", message="The reported value is ignored")
        yield


def _tuner(sweep: Sweep, work: Work, options: RayOptions, batches: bool) -> tune.Tuner:
    """Tune's run of the trials the sweep lacks (all of them, unless resumed); ``batches``:
    a batch of them in each Tune trial (``carries_batches``)."""
    from ray.tune.search import ConcurrencyLimiter

    exp, study, store = sweep.exp, sweep.study, sweep.store
    ray_sweep = RaySweep(exp, store, sweep.name)
    pbt = exp.sweep.scheduler == "pbt"
    shared = concurrent_trials(options, exp.sweep.max_concurrent) if batches else 1
    searcher, trainable = _search(sweep, work, ray_sweep, batches)
    resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
    if options.workers_per_trial > 1:
        from sweeplab.search.ray_backend.parallel import parallel_trainable

        trainable, resources, at_once = parallel_trainable(ray_sweep, options)
        if not exp.sweep.max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=at_once)
    return tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={BATCH: shared} if batches else population(exp.space) if pbt else None,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=build_scheduler(exp),
            num_samples=_samples(sweep),
            time_budget_s=None if work.deadline is None else work.deadline - time.monotonic(),
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
            callbacks=[TrialEnd(store, study.study_name, exp, work.on_trial if pbt else None)],
        ),
    )


def _search(sweep: Sweep, work: Work, ray_sweep: RaySweep, batches: bool) -> tuple[Any, Any]:
    """What draws the Tune trials' configs, and what each Tune trial runs (``batches``:
    a batch of trials each)."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    exp = sweep.exp
    at_once = exp.sweep.max_concurrent or 0
    if batches:  # no searcher: each Tune trial claims its batch (batches.py)
        return BasicVariantGenerator(max_concurrent=at_once), functools.partial(
            run_ray_batch, sweep=ray_sweep
        )
    if exp.sweep.scheduler == "pbt":  # no searcher: Tune draws the population (pbt.py)
        searcher = BasicVariantGenerator(max_concurrent=at_once, random_state=exp.sweep.seed)
        return searcher, functools.partial(run_pbt_trial, sweep=ray_sweep, driver=owner())
    search: Any = SweepSearch(
        sweep=sweep,
        space=functools.partial(_define_by_run, exp.space),
        metric=[o.metric for o in exp.objectives] if exp.trade_offs else exp.objective.metric,
        mode=[o.mode for o in exp.objectives] if exp.trade_offs else exp.objective.mode,
        workers_report=exp.sweep.pruner != "none",
        on_trial=work.on_trial,
    )
    if at_once:
        search = ConcurrencyLimiter(search, max_concurrent=at_once)
    return search, functools.partial(run_ray_trial, sweep=ray_sweep)


def _samples(sweep: Sweep) -> int:
    """Tune's ``num_samples``: the trials the sweep lacks (all of them, unless resumed);
    with a searcher, which stops Tune itself when the study has them, or with batches
    (one trial or more each; one that finds none left ends at once, in milliseconds), as
    many as their retries could take."""
    exp = sweep.exp
    lacking = max(0, sweep.target - sweep.counts.taken)
    if exp.sweep.scheduler == "pbt":
        return lacking
    return lacking * (1 + exp.sweep.max_retries + exp.sweep.death_retries)


class TrialEnd(tune.Callback):
    """On the driver, when a trial ends: end its MLflow run if its worker was stopped or
    killed before it could (pruned → FINISHED, error → FAILED). A PBT trial, which no
    searcher tells the study about, is told here, and its progress event sent
    (``on_trial``); the searcher sends the others' once it has told the study."""

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
            self._open = Sweep.open(self.store, self.sweep)
        return self._open

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, error=True)

    def _ended(self, trial: Any, error: bool) -> None:
        sweep = self.opened
        if trial.config.get(BATCH):  # its worker told the study, unless it died
            if error:
                with sweep.lock.held():  # as in _settle: once, not by each who sees it
                    Recovery(sweep).run()
            return
        trial_id = trial.config.get(TRIAL_ID)
        pbt = trial_id is None
        if pbt:  # a PBT trial, which no searcher tells the study about: told here
            frozen = pbt_trial_ended(sweep, trial.trial_id, error)
        else:
            frozen = sweep.storage.get_trial(int(trial_id))
        if frozen is None:
            return
        final = bool((trial.last_result or {}).get(FINAL))
        state = TrialState.FAILED if error else TrialState.COMPLETE if final else TrialState.PRUNED
        reason = frozen.user_attrs.get(ATTR_REASON)
        if state is TrialState.FAILED and reason is None:  # killed: its worker could not say
            reason = WORKER_DIED
        self._end_run(frozen.user_attrs.get(ATTR_RUN), state, reason)
        if pbt and self.on_trial is not None:
            self.on_trial(sweep.event(frozen))

    def _end_run(self, run_id: str | None, state: TrialState, reason: str | None) -> None:
        tracker = self.opened.tracker
        if not run_id or tracker.client.get_run(run_id).info.status != "RUNNING":
            return
        if state is TrialState.FAILED:
            tracker.set_tags(run_id, {TAG_STATE: state.value, TAG_REASON: str(reason)})
            tracker.end_run(run_id, "FAILED")
        else:
            tracker.set_tags(run_id, {TAG_STATE: state.value})
            tracker.end_run(run_id, "FINISHED")
