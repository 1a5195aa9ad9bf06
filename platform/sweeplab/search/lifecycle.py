"""The life of a sweep, whichever backend runs its trials:

    run_sweep        check everything (spec, backend options, data, stores): a mistake
                     stops here, before anything is written
                     create the study and the MLflow parent run (spec, search space)
    backend.run      the trials (a backend of catalog.BACKENDS, behind the Backend protocol)
    finish           best params and value, history plot, the best model registered

``continue_sweep`` (``resume``, ``agent``) opens a sweep again, fails its dead workers'
trials, and runs the trials it lacks on the backend it was created with. Whoever ends
the last trial finishes the sweep; this module is the only place that does.

Ctrl-C: the running trial is marked failed ("interrupted") with its run KILLED, the
parent run ends KILLED, and ``SweepInterrupted`` carries what was finished.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

import optuna
import yaml
from optuna.trial import TrialState

from sweeplab.search import keys
from sweeplab.search.catalog import BACKENDS
from sweeplab.search.claims import Recovery, claim_lock, owner
from sweeplab.search.curves import draw_trial_figures
from sweeplab.search.publish import register_best
from sweeplab.search.sampling import build_pruner, build_sampler, load
from sweeplab.search.study import (
    Sweep,
    SweepResult,
    TrialEvent,
    first_value,
    open_storage,
    open_sweep,
    sweep_result,
    unique_name,
)
from sweeplab.spec import NAME_PATTERN, Experiment, InputError
from sweeplab.store import Store
from sweeplab.tracking.plots import sweep_history
from sweeplab.tracking.tracker import Tracker, flatten

logger = logging.getLogger(__name__)

OnTrial = Callable[[TrialEvent], None]


class Backend(Protocol):
    """What runs a sweep's trials. A backend is made by ``create(options, address,
    kept)``: its own options (``RayOptions``), where it runs, and what a resumed sweep
    kept of them."""

    # True when a trial's owner is recorded under the claim lock as the trial is
    # created (then a running trial without an owner lost its worker)
    owners_locked: bool

    def check(self, exp: Experiment) -> None:
        """Raise SpecError or InputError for whatever this backend refuses of ``exp``."""
        ...

    def kept(self) -> dict[str, Any]:
        """The options a resumed sweep runs with again (stored with the study)."""
        ...

    def run(self, sweep: Sweep, on_trial: OnTrial | None) -> None:
        """Run trials until the study holds ``sweep.trials`` (or the timeout), then return
        without finishing the sweep."""
        ...


def backend_for(
    name: str, options: Any = None, address: str | None = None, kept: Any = None
) -> Backend:
    backend: Backend = load(BACKENDS[name]).create(options, address=address, kept=kept)
    return backend


class SweepInterrupted(Exception):
    """Ctrl-C ended the sweep; ``result`` holds what was finished and kept."""

    def __init__(self, result: SweepResult) -> None:
        super().__init__(f"sweep {result.name!r} interrupted")
        self.result = result


def run_sweep(
    exp: Experiment,
    store: Store,
    *,
    name: str | None = None,
    on_trial: OnTrial | None = None,
    options: Any = None,
) -> SweepResult:
    """Create the sweep's study and parent run, run ``sweep.trials`` trials, finish.

    ``options``: the backend's own (``RayOptions`` for ``sweep.backend: ray``).
    """
    from sweeplab.training.fit import check_inputs

    if name is not None and not re.fullmatch(NAME_PATTERN, name):
        raise InputError(
            "a sweep name must start with a letter or digit and hold only letters, digits, "
            f"'_', '.' and '-', but got {name!r}"
        )
    backend = backend_for(exp.sweep.backend, options)
    sampler = build_sampler(exp)
    pruner = build_pruner(exp)  # a bad pruner option stops here, before anything is written
    backend.check(exp)  # so does a backend's (a bad scheduler option)
    store.check()
    check_inputs(exp, store.tracking_uri)  # so do unreadable data and a missing source
    store.prepare()
    storage = open_storage(store.storage_url)
    tracker = Tracker(store, exp.experiment_name)
    study = optuna.create_study(
        storage=storage,
        study_name=unique_name(storage, name or exp.name),
        sampler=sampler,
        pruner=pruner,
        directions=["maximize" if o.mode == "max" else "minimize" for o in exp.objectives],
    )
    sweep = Sweep(study, storage, exp, tracker, _parent_run(study, exp, tracker))
    study.set_user_attr(keys.ATTR_BACKEND, exp.sweep.backend)
    study.set_user_attr(keys.ATTR_BACKEND_OPTIONS, backend.kept())
    study.set_user_attr(keys.ATTR_OWNERS_LOCKED, backend.owners_locked)
    return _run(sweep, backend, on_trial)


def _parent_run(study: optuna.Study, exp: Experiment, tracker: Tracker) -> str:
    """The sweep's MLflow parent run (the spec as params and artifacts), tied to the study."""
    spec = exp.model_dump(mode="json")
    params = flatten({k: v for k, v in spec.items() if k != "search_space"})
    tags = {keys.TAG_SWEEP: study.study_name, keys.TAG_KIND: "sweep"}
    parent = tracker.start_run(study.study_name, tags=tags, params=params)
    tracker.log_text(parent, yaml.safe_dump(spec, sort_keys=False), "spec.yaml")
    tracker.log_text(parent, yaml.safe_dump(exp.search_space, sort_keys=False), "search_space.yaml")
    study.set_user_attr(keys.ATTR_SPEC, json.dumps(spec))
    study.set_user_attr(keys.ATTR_PARENT, parent)
    study.set_user_attr(keys.ATTR_EXPERIMENT, tracker.experiment_id)
    return parent


def continue_sweep(
    store: Store,
    name: str,
    on_trial: OnTrial | None = None,
    address: str | None = None,
    options: Any = None,
) -> SweepResult:
    """Resume sweep ``name`` (after a crash, kill -9 or Ctrl-C), or join it as one more
    worker: dead workers' trials are failed, then trials are taken until there are enough.

    A Ray sweep continues on Ray (the cluster at ``address``, or a local one) with the
    trials it still lacks.
    """
    sweep = open_sweep(store, name, owner())
    study, tracker = sweep.study, sweep.tracker
    backend = backend_for(
        str(study.user_attrs.get(keys.ATTR_BACKEND, "optuna")),
        options,
        address=address,
        kept=study.user_attrs.get(keys.ATTR_BACKEND_OPTIONS, {}),
    )
    backend.check(sweep.exp)  # its options (--workers), before the parent run is touched
    if tracker.client.get_run(sweep.parent).data.tags.get(keys.TAG_STATE) != "complete":
        tracker.client.update_run(sweep.parent, status="RUNNING")
        tracker.set_tags(sweep.parent, {keys.TAG_STATE: "running"})
    with claim_lock(store.storage_url, name).held():
        Recovery(sweep).run()  # the trials of dead workers (or of a dead Ray driver)
    return _run(sweep, backend, on_trial)


def _run(sweep: Sweep, backend: Backend, on_trial: OnTrial | None) -> SweepResult:
    tracker = sweep.tracker
    try:
        backend.run(sweep, on_trial)
    except KeyboardInterrupt:
        tracker.set_tags(sweep.parent, {keys.TAG_STATE: "interrupted"})
        result = summarize(sweep)
        tracker.end_run(sweep.parent, "KILLED")
        raise SweepInterrupted(result) from None
    return finish(sweep)


def finish(sweep: Sweep) -> SweepResult:
    """Finish the sweep if every trial has ended and nobody finished it yet."""
    exp, tracker = sweep.exp, sweep.tracker
    with claim_lock(tracker.store.storage_url, sweep.name).held():
        done = tracker.client.get_run(sweep.parent).data.tags.get(keys.TAG_STATE) == "complete"
        result = sweep_result(sweep.study, exp, tracker.store)
        if result.counts["running"] or done:  # other workers still run, or finished it
            return result
        _end_orphans(sweep)
        summarize(sweep, result)
        draw_trial_figures(sweep)
        if exp.tracking.report:
            _plots(sweep)
        if result.best_run_id is not None and exp.tracking.register_as:
            result.registered = register_best(exp, tracker, result)
        tracker.set_tags(sweep.parent, {keys.TAG_STATE: "complete"})
        tracker.end_run(sweep.parent)
        return result


def _end_orphans(sweep: Sweep) -> None:
    """End the sweep's runs that a worker left RUNNING: one that stopped before it could
    end them, its trial's run id lost with it (a disk that filled up as it wrote).
    When the sweep finishes no trial runs, so no run of it should."""
    tracker = sweep.tracker
    left = tracker.search(
        f"tags.`{keys.TAG_SWEEP}` = '{sweep.name}' and attributes.status = 'RUNNING'"
    )
    for run in left:
        if run.info.run_id != sweep.parent:
            reason = "its worker stopped before ending it; the trial was run again"
            tags = {keys.TAG_STATE: "interrupted", keys.TAG_REASON: reason}
            tracker.write(run.info.run_id, tags=tags)
            tracker.end_run(run.info.run_id, "KILLED")


def _plots(sweep: Sweep) -> None:
    """The sweep's plots and HTML report in its parent run (``compare``'s, drawn once
    here); a sweep whose plots fail still ends (``compare`` draws them again)."""
    from sweeplab.search.analysis.plots import draw_for_sweep

    try:
        draw_for_sweep(sweep)
    except Exception as exc:
        logger.warning("the plots of sweep %s could not be drawn: %s", sweep.name, exc)


def summarize(sweep: Sweep, result: SweepResult | None = None) -> SweepResult:
    """The sweep's result, also written to the parent run (best params, value, history)."""
    tracker, parent = sweep.tracker, sweep.parent
    result = result or sweep_result(sweep.study, sweep.exp, tracker.store)
    tracker.log_metrics(parent, {f"trials_{k}": v for k, v in result.counts.items()})
    if result.best_trial is None:
        return result
    tracker.log_params(parent, {f"best.{k}": v for k, v in result.best_params.items()})
    tracker.log_metrics(parent, {"best_value": float(result.best_value or 0.0), **result.test})
    tracker.set_tags(
        parent, {keys.TAG_BEST_TRIAL: result.best_trial, keys.TAG_BEST_RUN: result.best_run_id}
    )
    complete = sweep.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    numbers = [t.number for t in complete]
    values = [float(first_value(t) or 0.0) for t in complete]
    objective = sweep.exp.objective
    figure = sweep_history(numbers, values, objective.mode, objective.metric)
    tracker.log_figure(parent, figure, "sweep_history.png")
    return result
