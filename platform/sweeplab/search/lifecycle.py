"""The life of a sweep, whichever backend runs its trials:

    optimize         (a created or loaded Sweep) the target, reopened if it was finished;
                     the trials of dead workers failed and queued again; the backend's
                     options checked (a wrong backend's refused)
    backend.run      the trials (a backend of catalog.BACKENDS, behind the Backend protocol)
    finish           state, best params and value, figures, plots, the best model
                     registered; whoever ends the last trial does it, and only here
                     (a spawned local worker may draw the plots meanwhile: plots_ahead)

``Lifecycle`` is the ``Runner`` that the Python API hands to every sweep it creates or
loads (``search.api``): ``Sweep.optimize``, ``register_best`` and ``compare`` are
carried out here, above the search core.

Ctrl-C: the running trial is marked failed ("interrupted") with its run KILLED and its
configuration queued again, the sweep is ``interrupted``, its parent run ends KILLED,
and ``SweepInterrupted`` carries what was finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from optuna.trial import TrialState as OptunaState

from sweeplab.interrupts import reason
from sweeplab.locks import DatabaseLock
from sweeplab.search import keys
from sweeplab.search.baselines import yardstick
from sweeplab.search.catalog import BACKEND_OPTIONS, BACKENDS
from sweeplab.search.claims import Recovery
from sweeplab.search.curves import draw_trial_figures
from sweeplab.search.fits import INTERRUPTED
from sweeplab.search.options import BackendOptions
from sweeplab.search.publish import register_best
from sweeplab.search.ranking import first_value, own
from sweeplab.search.results import Comparison, Registered, SweepResult, Trial, TrialEvent
from sweeplab.search.sampling import load
from sweeplab.search.states import SweepState, TrialState
from sweeplab.search.sweep import OnTrial, Plan, Sweep, Work
from sweeplab.spec import Experiment, InputError
from sweeplab.tracking.plots import sweep_history

logger = logging.getLogger(__name__)


class Backend(Protocol):
    """What runs a sweep's trials. Made by its class's ``create(options, address,
    kept)``: its own options (``search.options``; None: its defaults), where it runs,
    and what a resumed sweep kept of them."""

    # True when a trial's owner is recorded under the claim lock as the trial is
    # created (then a running trial without an owner lost its worker)
    owners_locked: bool

    def check(self, exp: Experiment) -> None:
        """Raise SpecError or InputError for whatever this backend refuses of ``exp``."""
        ...

    def kept(self) -> dict[str, Any]:
        """The options a resumed sweep runs with again (stored with the study)."""
        ...

    def run(self, sweep: Sweep, work: Work) -> None:
        """Run trials as ``work`` says, then return without finishing the sweep."""
        ...

    def close(self) -> None:
        """Once the sweep is finished (or ``run`` was interrupted): wait for what ``run``
        left running to end (a local worker that draws the plots), so nothing of the
        sweep outlives the call that ran it."""
        ...


def backend_for(
    name: str,
    options: BackendOptions | None = None,
    address: str | None = None,
    kept: dict[str, Any] | None = None,
) -> Backend:
    """Backend ``name`` with ``options``; InputError for another backend's options."""
    if options is not None and type(options).__name__ != BACKEND_OPTIONS[name]:
        theirs = next(b for b, o in BACKEND_OPTIONS.items() if o == type(options).__name__)
        raise InputError(
            f"{type(options).__name__} are options of the {theirs} backend, but this sweep "
            f"runs on {name}: give {BACKEND_OPTIONS[name]}, or none"
        )
    backend: Backend = load(BACKENDS[name]).create(options, address=address, kept=kept or {})
    return backend


class SweepInterrupted(Exception):
    """Ctrl-C (or SIGTERM, SIGHUP: ``interrupts``) ended the sweep; ``result`` holds what
    was finished and kept, ``signal`` the interrupt."""

    def __init__(self, result: SweepResult, signal: KeyboardInterrupt) -> None:
        super().__init__(f"sweep {result.name!r} {reason(signal)}")
        self.result = result
        self.signal = signal


class Lifecycle:
    """Runs, finishes, registers and compares sweeps (``Runner``)."""

    def __init__(self, *, address: str | None = None) -> None:
        self.address = address  # a Ray sweep's cluster, when resumed without options

    def optimize(self, sweep: Sweep, plan: Plan) -> SweepResult:
        backend = self.backend(sweep, plan.options)
        backend.check(sweep.exp)  # its options, before the sweep is touched
        reopen(sweep, plan.n_trials)
        if plan.options is not None:
            sweep.study.set_user_attr(keys.ATTR_BACKEND_OPTIONS, backend.kept())
        timeout = sweep.exp.sweep.timeout if plan.timeout is None else plan.timeout
        work = Work(
            deadline=None if timeout is None else time.monotonic() + timeout,
            on_trial=_with_callbacks(sweep, plan),
            end_ahead=plots_ahead,
        )
        return run(sweep, backend, work)

    def backend(self, sweep: Sweep, options: BackendOptions | None) -> Backend:
        attrs = sweep.study.user_attrs
        return backend_for(
            str(attrs.get(keys.ATTR_BACKEND, sweep.exp.sweep.backend)),
            options,
            address=self.address,
            kept=dict(attrs.get(keys.ATTR_BACKEND_OPTIONS) or {}),
        )

    def register_best(self, sweep: Sweep, name: str | None, trial: Trial | None) -> Registered:
        name = name or sweep.exp.tracking.register_as
        if name is None:
            raise InputError(
                f"sweep {sweep.name!r} registers no model (tracking.register_as is not "
                "set): give a model name"
            )
        return register_best(sweep, sweep.result(trial), name)

    def compare(self, sweeps: Sequence[Sweep]) -> Comparison:
        from sweeplab.search.analysis.compare import ranked, same_objective

        same_objective(sweeps)
        return ranked(list(sweeps))


def _with_callbacks(sweep: Sweep, plan: Plan) -> OnTrial | None:
    """``plan``'s progress display, then its callbacks, after each trial that ends."""
    if plan.on_trial is None and not plan.callbacks:
        return None

    def on_trial(event: TrialEvent) -> None:
        if plan.on_trial is not None:
            plan.on_trial(event)
        for callback in plan.callbacks:
            callback(sweep, event.trial)

    return on_trial


def reopen(sweep: Sweep, n_trials: int | None) -> None:
    """Before a process runs trials: the target (``n_trials`` more than the sweep holds),
    the dead workers' trials failed and queued again, and the sweep running again if
    there is anything to run (a stopped, interrupted or finished one)."""
    with sweep.lock.held():
        if n_trials is not None:
            sweep.set_target(sweep.counts.taken + n_trials)
        Recovery(sweep).run()  # the trials of dead workers (or of a dead Ray driver)
        counts, state = sweep.counts, sweep.state
        more = counts.taken < sweep.target or counts.waiting > 0 or counts.running > 0
        if state is not SweepState.RUNNING and more:
            sweep.set_state(SweepState.RUNNING)
            if sweep.parent:
                sweep.tracker.client.update_run(sweep.parent, status="RUNNING")


def run(sweep: Sweep, backend: Backend, work: Work) -> SweepResult:
    """The backend's trials, then the sweep's end; Ctrl-C: ``SweepInterrupted``."""
    try:
        try:
            backend.run(sweep, work)
        except KeyboardInterrupt as exc:
            sweep.set_state(SweepState.INTERRUPTED)
            result = summarize(sweep)
            sweep.tracker.end_run(sweep.parent, "KILLED")
            raise SweepInterrupted(result, exc) from None
        return finish(sweep)
    finally:
        backend.close()


def finish(sweep: Sweep) -> SweepResult:
    """Finish the sweep if every trial has ended and nobody finished it yet."""
    with sweep.lock.held():
        state = sweep.state
        if state.finished or sweep.counts.running:  # finished, or other workers still run
            return sweep.result()
        _end_orphans(sweep)
        result = summarize(sweep)
        yardstick(sweep)
        draw_trial_figures(sweep)
        # the plots are drawn from what is stored before the model is registered: where
        # a worker draws them now (plots_ahead), the model is registered meanwhile
        report = sweep.exp.tracking.report
        ahead = report and _plots_lock(sweep).busy()
        if report and not ahead:
            _plots(sweep)
        registered = None
        if result.best is not None and sweep.exp.tracking.register_as:
            registered = register_best(sweep, result, sweep.exp.tracking.register_as)
        if ahead:
            _plots(sweep)  # the worker's, once drawn (or drawn here if it died)
        sweep.set_state(state.ending)
        sweep.tracker.end_run(sweep.parent)
        return sweep.result(registered=registered)


def _end_orphans(sweep: Sweep) -> None:
    """End the sweep's runs that a worker left RUNNING: one that stopped before it could
    end them, its trial's run id lost with it (a disk that filled up as it wrote).
    When the sweep finishes no trial runs, so no run of it should."""
    tracker = sweep.tracker
    left = tracker.search(
        f"tags.`{keys.TAG_SWEEP}` = '{sweep.name}' and attributes.status = 'RUNNING'"
    )
    for r in left:
        if r.info.run_id != sweep.parent:
            reason = f"{INTERRUPTED}: its worker stopped before ending it; the trial ran again"
            tags = {keys.TAG_STATE: TrialState.INTERRUPTED.value, keys.TAG_REASON: reason}
            tracker.write(r.info.run_id, tags=tags)
            tracker.end_run(r.info.run_id, "KILLED")


def plots_ahead(sweep: Sweep) -> None:
    """A spawned local worker's last work (``Work.end_ahead``), once every trial has
    ended: the sweep's plots and report, on a core that would idle while the process
    that finishes the sweep registers its model; ``finish`` then finds them current.
    Only where the baselines the report shows are in already (a worker left with no
    trial to claim fit them): fitting them would hold the claim lock, which ``finish``
    waits for."""
    exp = sweep.exp
    if not (exp.tracking.report and sweep.counts.ended(sweep.target)):
        return
    none = not exp.model.supervised or exp.tracking.baselines is False
    if (none or keys.ATTR_BASELINES in sweep.study.user_attrs) and not sweep.state.finished:
        _plots(sweep)


def _plots(sweep: Sweep) -> None:
    """The sweep's plots and HTML report in its parent run (``compare``'s, drawn once
    here); a sweep whose plots fail still ends (``compare`` draws them again). Under the
    plots lock: one process draws them, and another then finds them current."""
    from sweeplab.search.analysis.plots import draw_for_sweep

    with _plots_lock(sweep).held():
        try:
            draw_for_sweep(sweep)
        except Exception as exc:
            logger.warning("the plots of sweep %s could not be drawn: %s", sweep.name, exc)


def _plots_lock(sweep: Sweep) -> DatabaseLock:
    return DatabaseLock(sweep.store.storage_url, "plots", sweep.name)


def summarize(sweep: Sweep) -> SweepResult:
    """The sweep's result, also written to the parent run (best params, value, history)."""
    tracker, parent = sweep.tracker, sweep.parent
    result = sweep.result()
    counts = {f"trials_{k}": v for k, v in result.counts.as_dict().items()}
    tracker.log_metrics(parent, counts)
    if result.best is None:
        return result
    # params cannot change in MLflow: ``best.*`` are the best's at the sweep's first end;
    # an extended sweep's later best is in the tags below and in ``best_value``
    logged = tracker.client.get_run(parent).data.params
    best = {f"best.{k}": v for k, v in result.best_params.items()}
    tracker.log_params(parent, {k: v for k, v in best.items() if k not in logged})
    tracker.log_metrics(parent, {"best_value": float(result.best_value or 0.0), **result.test})
    tracker.set_tags(
        parent, {keys.TAG_BEST_TRIAL: result.best_trial, keys.TAG_BEST_RUN: result.best_run_id}
    )
    complete = own(sweep.study, (OptunaState.COMPLETE,))
    numbers = [t.number for t in complete]
    values = [float(first_value(t) or 0.0) for t in complete]
    objective = sweep.exp.objective
    figure = sweep_history(numbers, values, objective.mode, objective.metric)
    tracker.log_figure(parent, figure, "sweep_history.png")
    return result
