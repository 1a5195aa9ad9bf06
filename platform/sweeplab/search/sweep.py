"""``Sweep``: one object per sweep, the one owner of its state, counts and trials.

A sweep is an Optuna study in RDB storage, the spec it was created with, and an MLflow
parent run; the study's attributes (``keys``) lead from one to the other and hold the
sweep's state, so every process that opens the sweep (a worker, an agent on another
host, ``status``, ``stop``) sees the same. Backends, the command line and the analysis
read a sweep through this object; none of them works out a state or a count itself.

Running, registering and comparing are the layers above the search core
(``search.lifecycle``): they hand a ``Runner`` to the sweeps they create or load, and
``optimize``, ``register_best`` and ``compare`` call it.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import optuna
from optuna.trial import FrozenTrial

from sweeplab.locks import DatabaseLock
from sweeplab.search import keys, ranking
from sweeplab.search.options import BackendOptions, LocalWorkers
from sweeplab.search.results import (
    Comparison,
    Registered,
    SweepResult,
    Trial,
    TrialEvent,
    Yardstick,
    trial_of,
)
from sweeplab.search.sampling import build_pruner, build_sampler
from sweeplab.search.states import Counts, SweepState
from sweeplab.search.storage import open_storage, study_names
from sweeplab.spec import Experiment, InputError
from sweeplab.spec._errors import did_you_mean
from sweeplab.store import Store
from sweeplab.training.baselines import Baseline

if TYPE_CHECKING:
    from sweeplab.tracking.tracker import Tracker

# A callback of ``Sweep.optimize``: called with the sweep and each trial that ends; it
# may end the sweep with ``sweep.stop()``
Callback = Callable[["Sweep", Trial], None]
OnTrial = Callable[[TrialEvent], None]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What one ``optimize`` asks for."""

    n_trials: int | None = None  # run this many more trials (None: to the sweep's target)
    timeout: float | None = None  # seconds after which no new trial starts
    callbacks: tuple[Callback, ...] = ()
    options: BackendOptions | None = None  # the backend's own (None: its defaults)
    on_trial: OnTrial | None = None  # a progress display's, called before the callbacks


@dataclass(frozen=True, kw_only=True)
class Work:
    """What a backend runs: trials until the sweep holds ``sweep.target`` (read as it
    goes), or until it asks for none (stopped), none started after ``deadline``
    (``time.monotonic()``); ``on_trial`` after each that ends; ``workers`` (``--workers``)
    each claim their share, and a spawned one ends with ``end_ahead`` (lifecycle's)."""

    deadline: float | None = None
    on_trial: OnTrial | None = None
    workers: int = 1
    end_ahead: Callable[[Sweep], None] | None = None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


class Runner(Protocol):
    """What the layers above the search core do with a sweep (``search.lifecycle``)."""

    def optimize(self, sweep: Sweep, plan: Plan) -> SweepResult:
        """Run the trials ``plan`` asks for on the sweep's backend, then finish it."""
        ...

    def register_best(self, sweep: Sweep, name: str | None, trial: Trial | None) -> Registered:
        """Register the model of ``trial`` (default: the best), unless registered already."""
        ...

    def compare(self, sweeps: Sequence[Sweep]) -> Comparison:
        """The ranked trials of ``sweeps`` (one objective)."""
        ...


class Sweep:
    """One sweep: its study, spec, store, parent run, state, counts and trials.

    ``Sweep.open`` (or the Python API's ``load_sweep``) opens one by name; the lifecycle
    creates them. ``stream`` gives the study the spec's sampler on a stream of draws of
    its own and its pruner, for a process that takes trials; without it the sweep is
    opened to be read (``status``, ``compare``, ``stop``).
    """

    def __init__(
        self,
        *,
        study: optuna.Study,
        storage: optuna.storages.RDBStorage,
        exp: Experiment,
        store: Store,
        runner: Runner | None = None,
    ) -> None:
        self.study = study
        self.storage = storage
        self.exp = exp
        self.store = store
        self._runner = runner

    @classmethod
    def open(
        cls,
        store: Store,
        name: str,
        *,
        stream: str | None = None,
        runner: Runner | None = None,
        storage: optuna.storages.RDBStorage | None = None,
    ) -> Sweep:
        """Sweep ``name`` of ``store``; LookupError naming the sweeps that exist."""
        storage = storage or open_storage(store.storage_url)
        names = study_names(storage)
        if name not in names:
            known = ", ".join(names) if names else "none"
            raise LookupError(
                f"no sweep named '{name}'{did_you_mean(name, names)} in "
                f"{store.storage_url}; sweeps: {known}"
            )
        study = optuna.load_study(study_name=name, storage=storage)
        spec = study.user_attrs.get(keys.ATTR_SPEC)
        if spec is None:  # created this instant (its attributes come next), or not by sweeplab
            raise LookupError(
                f"study '{name}' holds no sweeplab spec: it is being created (try again in a "
                "moment), or it was not created by sweeplab"
            )
        exp = Experiment.model_validate(json.loads(spec))
        if stream is not None:
            # its own stream: a joining process does not redraw the first one's draws
            study.sampler = build_sampler(exp, stream=f"{stream}:{len(study.trials)}")
            study.pruner = build_pruner(exp)
        return cls(study=study, storage=storage, exp=exp, store=store, runner=runner)

    # ------------------------------------------------------------------ what it is

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def parent(self) -> str:
        """The MLflow parent run's id."""
        return str(self.study.user_attrs.get(keys.ATTR_PARENT, ""))

    @property
    def experiment_id(self) -> str:
        return str(self.study.user_attrs.get(keys.ATTR_EXPERIMENT, ""))

    @functools.cached_property
    def tracker(self) -> Tracker:
        """The sweep's MLflow experiment (opened on first use: ``status`` needs none)."""
        from sweeplab.tracking.tracker import Tracker

        return Tracker(self.store, self.exp.experiment_name)

    @functools.cached_property
    def lock(self) -> DatabaseLock:
        """The claim lock: held to count the trials and take one, to finish, to stop.
        Not reentrant: a holder must not take it again."""
        return DatabaseLock(self.store.storage_url, "claim", self.name)

    @property
    def state(self) -> SweepState:
        attrs = self.study.user_attrs
        if keys.ATTR_STATE in attrs:
            return SweepState(attrs[keys.ATTR_STATE])
        return self._state_before_attrs()

    def _state_before_attrs(self) -> SweepState:
        """A sweep made before its state was kept with its study: its parent run's tag."""
        if not self.parent:
            return SweepState.RUNNING
        tags = self.tracker.client.get_run(self.parent).data.tags
        return SweepState(tags.get(keys.TAG_STATE, SweepState.RUNNING))

    def set_state(self, state: SweepState, reason: str | None = None) -> None:
        """The sweep's new state, with the study, and shown on its parent run."""
        self.study.set_user_attr(keys.ATTR_STATE, state.value)
        if reason is not None or state is SweepState.RUNNING:  # running again: no reason
            self.study.set_user_attr(keys.ATTR_STOP_REASON, reason)
        if self.parent:
            self.tracker.set_tags(self.parent, {keys.TAG_STATE: state.value})

    @property
    def stop_reason(self) -> str | None:
        reason = self.study.user_attrs.get(keys.ATTR_STOP_REASON)
        return None if reason is None else str(reason)

    @property
    def target(self) -> int:
        """The trials the sweep runs to: ``sweep.trials``, or more once extended."""
        return int(self.study.user_attrs.get(keys.ATTR_TRIALS, self.exp.sweep.trials))

    def set_target(self, trials: int) -> None:
        self.study.set_user_attr(keys.ATTR_TRIALS, trials)

    @property
    def counts(self) -> Counts:
        return Counts.of(self.study.get_trials(deepcopy=False))

    @property
    def warm_start(self) -> str | None:
        """What its warm start took and skipped, in one line (None without one)."""
        raw = self.study.user_attrs.get(keys.ATTR_WARM_START)
        return None if raw is None else str(json.loads(raw)["summary"])

    @property
    def baselines(self) -> tuple[Baseline, ...]:
        """The scikit-learn baselines fit at its end (none before, or when off)."""
        return tuple(Baseline(**b) for b in self.study.user_attrs.get(keys.ATTR_BASELINES, []))

    # ------------------------------------------------------------------ its trials

    @property
    def trials(self) -> list[Trial]:
        """The sweep's trials by number (not a warm start's prior ones)."""
        space = self.exp.space
        return [trial_of(t, space) for t in ranking.own(self.study)]

    @property
    def prior_trials(self) -> list[Trial]:
        """The trials a warm start took from earlier sweeps."""
        space = self.exp.space
        trials = self.study.get_trials(deepcopy=False)
        return [trial_of(t, space) for t in trials if keys.ATTR_PRIOR in t.user_attrs]

    def trial(self, frozen: FrozenTrial) -> Trial:
        return trial_of(frozen, self.exp.space)

    @property
    def best_trial(self) -> Trial | None:
        """The best trial on the first objective (None before one completed)."""
        best = ranking.best_of(self.study)
        return None if best is None else self.trial(best)

    @property
    def best_value(self) -> float | None:
        best = ranking.best_of(self.study)
        return None if best is None else ranking.first_value(best)

    def top(self, k: int) -> list[Trial]:
        """The ``k`` best complete trials on the first objective, best first."""
        return [self.trial(t) for t in ranking.top(self.study, k)]

    def front(self) -> list[Trial]:
        """A multi-objective sweep's Pareto front, by number."""
        return [self.trial(t) for t in ranking.front(self.study)]

    def choose(self, *, number: int | None = None, within: float | None = None) -> Trial | None:
        """Trial ``number``, or the front's best on the second objective ``within`` a
        tolerance of the best first value, or the best (``ranking.choose``)."""
        chosen = ranking.choose(self.study, number=number, within=within)
        return None if chosen is None else self.trial(chosen)

    def yardstick(self, best: Trial | None) -> Yardstick:
        """``best``'s test metrics and the registered version's beside the baselines."""
        registered = self.study.user_attrs.get(keys.ATTR_REGISTERED_SCORE)
        test = {} if best is None else best.test
        return Yardstick.of(self.name, test, self.baselines, registered)

    def result(
        self, chosen: Trial | None = None, registered: Registered | None = None
    ) -> SweepResult:
        """The sweep's state, counts and best trial (or ``chosen``) now."""
        return SweepResult(
            name=self.name,
            store=self.store,
            experiment=self.exp.experiment_name,
            experiment_id=self.experiment_id,
            parent_run_id=self.parent,
            state=self.state,
            counts=self.counts,
            target=self.target,
            best=chosen or self.best_trial,
            registered=registered,
            stop_reason=self.stop_reason,
            warm_start=self.warm_start,
            baselines=self.baselines,
            final=self.exp.final,
            registered_score=self.study.user_attrs.get(keys.ATTR_REGISTERED_SCORE),
        )

    def event(self, frozen: FrozenTrial) -> TrialEvent:
        """The progress event of a trial that just ended."""
        return TrialEvent(
            trial=self.trial(frozen),
            counts=self.counts,
            best_value=self.best_value,
            total=self.target,
        )

    # ------------------------------------------------------------------ stopping

    def stop(self, *, now: bool = False, reason: str | None = None) -> bool:
        """Ask the sweep's workers, on every host, to take no new trial and exit: their
        running trials finish (``now``: are interrupted, their configurations queued
        again for ``resume``). Whoever ends the last trial finishes the sweep, as
        ``stopped``. False if the sweep had finished already."""
        with self.lock.held():
            if self.state.finished:
                return False
            state = SweepState.STOPPING_NOW if now else SweepState.STOPPING
            self.set_state(state, reason or "sweeplab stop" + (" --now" if now else ""))
        return True

    def check_stop_when(self, frozen: FrozenTrial) -> bool:
        """Whether trial ``frozen`` reached ``sweep.stop_when``; if so the sweep takes no
        new trial and completes once its running ones end."""
        goal = self.exp.sweep.stop_when
        value = ranking.first_value(frozen)
        if goal is None or value is None or keys.ATTR_PRIOR in frozen.user_attrs:
            return False
        mode, metric = self.exp.objective.mode, self.exp.objective.metric
        if not (value >= goal.value if mode == "max" else value <= goal.value):
            return False
        if not self.state.asks_no_trials:
            sign = ">=" if mode == "max" else "<="
            why = f"trial #{frozen.number} reached {metric} = {value:.4g} ({sign} {goal.value})"
            self.set_state(SweepState.REACHED, why)
        return True

    # ------------------------------------------------------------------ the Python API

    def optimize(
        self,
        n_trials: int | None = None,
        timeout: float | None = None,
        *,
        callbacks: Sequence[Callback] = (),
        workers: int | None = None,
        options: BackendOptions | None = None,
        on_trial: OnTrial | None = None,
    ) -> SweepResult:
        """Run trials, then finish the sweep (its best model registered if the spec says).

        ``n_trials``: this many more trials (a finished sweep is extended; the sampler
        learns from every earlier trial); None: on to the sweep's target.
        ``timeout``: no new trial starts after this many seconds. ``callbacks``: each is
        called with the sweep and every trial that ends, and may ``sweep.stop()`` it.
        ``workers``: local worker processes (the Optuna backend); ``options``: the
        backend's own (``LocalWorkers``, ``RayOptions``), refused for another backend.
        ``on_trial``: called with a ``TrialEvent`` after each trial (a progress display).
        """
        if n_trials is not None and n_trials < 1:
            raise InputError(f"n_trials must be >= 1, but got {n_trials}.")
        if timeout is not None and not timeout > 0:
            raise InputError(f"timeout must be > 0, but got {timeout}.")
        if workers is not None:
            if options is not None:
                raise InputError("give workers= or options=, not both")
            options = LocalWorkers(workers)
        plan = Plan(
            n_trials=n_trials,
            timeout=timeout,
            callbacks=tuple(callbacks),
            options=options,
            on_trial=on_trial,
        )
        return self._runs().optimize(self, plan)

    def register_best(self, name: str | None = None, *, trial: Trial | None = None) -> Registered:
        """Register the best trial's model (or ``trial``'s) as a version of ``name``
        (default: the spec's ``tracking.register_as``), unless it is registered already."""
        return self._runs().register_best(self, name, trial)

    def compare(self, *others: Sweep) -> Comparison:
        """This sweep's trials ranked, with ``others`` of the same objective."""
        return self._runs().compare([self, *others])

    def _runs(self) -> Runner:
        if self._runner is None:
            raise InputError(
                f"sweep {self.name!r} was opened to be read: open it with "
                "sweeplab.load_sweep to run, register or compare it"
            )
        return self._runner

    def __repr__(self) -> str:
        return f"Sweep({self.name!r}, {self.state.value}, {self.counts.taken} of {self.target})"
