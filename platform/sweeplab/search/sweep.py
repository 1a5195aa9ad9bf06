"""run_sweep: the life of a sweep on the Optuna backend, with its MLflow parent run.

    validate sampler/pruner  → nothing written yet; a SpecError stops here
    create study + parent run (spec, search space as artifacts, flattened params)
    optimize: each trial is ``run_trial`` (a nested child run)
    finish: best params/value and the history plot on the parent run, best model
            logged and registered under ``tracking.register_as``

Ctrl-C: the running trial is marked failed ("interrupted") with its run KILLED,
the parent run ends KILLED, and ``SweepInterrupted`` carries what was finished.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from sweeplab.locks import DatabaseLock
from sweeplab.search.claims import ATTR_OWNER, Recovery, claim_lock, heartbeat, owner
from sweeplab.search.optuna_backend import (
    ATTR_EXPERIMENT,
    ATTR_PARENT,
    ATTR_REASON,
    ATTR_RUN,
    ATTR_SPEC,
    STATE_NAMES,
    build_pruner,
    build_sampler,
    counts,
    make_objective,
    open_storage,
    retry,
    taken,
    unique_name,
)
from sweeplab.search.trial import CHECKPOINT, TAG_STATE, TAG_SWEEP
from sweeplab.spec import Experiment, InputError, SearchSpace, apply_params, spec_from_dict
from sweeplab.spec._schema import NAME_PATTERN
from sweeplab.spec._space import CategoricalDist, decode_choice
from sweeplab.store import DiskFull, Store, disk_full
from sweeplab.tracking.plots import sweep_history
from sweeplab.tracking.tracker import Tracker, flatten

if TYPE_CHECKING:
    from sweeplab.search.ray_backend import RayOptions

ATTR_BACKEND = "sweeplab.backend"  # on the study: optuna or ray
ATTR_RAY = "sweeplab.ray_options"  # on a Ray sweep's study: resources, workers per trial


@dataclass
class TrialEvent:
    """Sent to ``on_trial`` after each trial, for progress displays."""

    number: int
    state: str
    value: float | None
    reason: str | None
    counts: dict[str, int]
    best_value: float | None
    total: int


@dataclass
class SweepResult:
    name: str
    store: Store
    experiment: str
    experiment_id: str
    parent_run_id: str
    counts: dict[str, int]
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_run_id: str | None = None
    test: dict[str, float] = field(default_factory=dict)
    registered: tuple[str, int] | None = None


class SweepInterrupted(Exception):
    """Ctrl-C ended the sweep; ``result`` holds what was finished and kept."""

    def __init__(self, result: SweepResult) -> None:
        super().__init__(f"sweep {result.name!r} interrupted")
        self.result = result


def decoded_params(space: SearchSpace, trial: FrozenTrial) -> dict[str, Any]:
    """A trial's params as spec values (categorical keys mapped back to their YAML values)."""
    out = {}
    for key, dist in space.items():
        if key in trial.params:
            value = trial.params[key]
            out[key] = decode_choice(dist, value) if isinstance(dist, CategoricalDist) else value
    return out


def run_sweep(
    exp: Experiment,
    store: Store,
    *,
    name: str | None = None,
    on_trial: Callable[[TrialEvent], None] | None = None,
    ray: RayOptions | None = None,
) -> SweepResult:
    """Create the sweep's study and parent run, run ``sweep.trials`` trials, finish.

    ``sweep.backend: ray`` runs the trials with Ray Tune (``ray``: where and how).
    """
    from sweeplab.training.fit import check_inputs

    if name is not None and not re.fullmatch(NAME_PATTERN, name):
        raise InputError(
            "a sweep name must start with a letter or digit and hold only letters, digits, "
            f"'_', '.' and '-', but got {name!r}"
        )
    sampler = build_sampler(exp)
    pruner = build_pruner(exp)  # a bad pruner option stops here, before anything is written
    if exp.sweep.backend == "ray":
        from sweeplab.search.ray_backend import RayOptions, build_scheduler

        ray = ray or RayOptions()
        ray.check(exp.sweep.scheduler)
        build_scheduler(exp)  # so does a bad scheduler option
    store.check()
    check_inputs(exp, store.tracking_uri)  # so do unreadable data and a missing source
    store.prepare()
    storage = open_storage(store.storage_url)
    sweep_name = unique_name(storage, name or exp.name)
    tracker = Tracker(store, exp.experiment_name)
    study = optuna.create_study(
        storage=storage,
        study_name=sweep_name,
        sampler=sampler,
        pruner=pruner,
        direction="maximize" if exp.objective.mode == "max" else "minimize",
    )
    spec = exp.model_dump(mode="json")
    params = flatten({k: v for k, v in spec.items() if k != "search_space"})
    parent = tracker.start_run(
        sweep_name, tags={TAG_SWEEP: sweep_name, "sweeplab.kind": "sweep"}, params=params
    )
    tracker.log_text(parent, yaml.safe_dump(spec, sort_keys=False), "spec.yaml")
    tracker.log_text(parent, yaml.safe_dump(exp.search_space, sort_keys=False), "search_space.yaml")
    study.set_user_attr(ATTR_SPEC, json.dumps(spec))
    study.set_user_attr(ATTR_PARENT, parent)
    study.set_user_attr(ATTR_EXPERIMENT, tracker.experiment_id)
    study.set_user_attr(ATTR_BACKEND, exp.sweep.backend)
    if ray is not None:
        from sweeplab.search.ray_backend import tune_sweep

        study.set_user_attr(ATTR_RAY, ray.kept())
        return tune_sweep(study, exp, tracker, parent, on_trial, ray)
    return optimize(study, exp, tracker, parent, on_trial)


def optimize(
    study: optuna.Study,
    exp: Experiment,
    tracker: Tracker,
    parent: str,
    on_trial: Callable[[TrialEvent], None] | None,
) -> SweepResult:
    """Take trials (under the claim lock) until the study has ``sweep.trials``; finish.

    Several processes may run this on one study (``sweeplab agent``): together they run
    exactly ``sweep.trials`` trials, and the one that ends the last trial finishes the
    sweep (best params on the parent run, registration).
    """
    objective = make_objective(exp, tracker, study.study_name, parent)
    total = exp.sweep.trials
    claims = claim_lock(tracker.store.storage_url, study.study_name)
    recovery = Recovery(study, tracker, exp.sweep.max_retries)
    deadline = None if exp.sweep.timeout is None else time.monotonic() + exp.sweep.timeout

    def report(trial: FrozenTrial) -> None:
        if on_trial is None:
            return
        try:
            best: float | None = study.best_value
        except ValueError:
            best = None
        on_trial(
            TrialEvent(
                trial.number,
                STATE_NAMES[trial.state],
                trial.value,
                trial.user_attrs.get(ATTR_REASON),
                counts(study),
                best,
                total,
            )
        )

    try:
        while deadline is None or time.monotonic() < deadline:
            with claims.held():
                recovery.run()
                c = counts(study)
                if taken(c) >= total and not c["waiting"]:  # a queued retry still runs
                    break
                with warnings.catch_warnings():  # heartbeats are recorded by run_one
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = study.ask()
                trial.set_user_attr(ATTR_OWNER, owner())
            report(run_one(study, trial, objective, exp.sweep.max_retries))
    except DiskFull:
        raise
    except Exception as exc:
        full = disk_full(exc)
        if full is None:
            raise
        raise full_disk(study, full, "between trials") from None
    except KeyboardInterrupt:
        tracker.set_tags(parent, {TAG_STATE: "interrupted"})
        result = summarize(study, exp, tracker, parent)
        tracker.end_run(parent, "KILLED")
        raise SweepInterrupted(result) from None
    return finish(study, exp, tracker, parent, claims)


def full_disk(study: optuna.Study, why: str, where: str) -> DiskFull:
    return DiskFull(
        f"the disk holding the store is full ({why}): the sweep stopped {where}; finished "
        f"trials are saved. Free some space, then run: sweeplab resume {study.study_name}"
    )


def run_one(
    study: optuna.Study,
    trial: optuna.Trial,
    objective: Callable[[optuna.Trial], float],
    max_retries: int = 0,
) -> FrozenTrial:
    """Run ``objective`` on ``trial`` with heartbeats and tell the study how it ended;
    a trial that raised is queued again while it has retries left."""
    with heartbeat(study._storage, trial):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # the objective recorded the reason on the trial
            full = disk_full(exc)
            if full is not None:  # every next trial would fail the same way: stop here
                with contextlib.suppress(Exception):  # it needs a write, which may fail too
                    study.tell(trial, state=TrialState.FAIL)
                raise full_disk(study, full, f"in trial {trial.number}") from None
            retry(study, trial._trial_id, max_retries)
            return study.tell(trial, state=TrialState.FAIL)
    return study.tell(trial, value)


def finish(
    study: optuna.Study, exp: Experiment, tracker: Tracker, parent: str, claims: DatabaseLock
) -> SweepResult:
    """Finish the sweep if every trial has ended and nobody finished it yet."""
    with claims.held():
        done = tracker.client.get_run(parent).data.tags.get(TAG_STATE) == "complete"
        if counts(study)["running"] or done:  # other workers still run, or finished it
            return current_result(study, exp, tracker, parent)
        result = summarize(study, exp, tracker, parent)
        if result.best_run_id is not None and exp.tracking.register_as:
            result.registered = register_best(exp, tracker, result)
        tracker.set_tags(parent, {TAG_STATE: "complete"})
        tracker.end_run(parent)
        return result


def continue_sweep(
    store: Store,
    name: str,
    on_trial: Callable[[TrialEvent], None] | None = None,
    address: str | None = None,
) -> SweepResult:
    """Resume sweep ``name`` (after a crash, kill -9 or Ctrl-C), or join it as one more
    worker: dead workers' trials are failed, then trials are taken until there are enough.

    A Ray sweep continues on Ray (the cluster at ``address``, or a local one) with the
    trials it still lacks.
    """
    from sweeplab.search.status import load_study

    study, exp = load_study(store, name)
    study.sampler = build_sampler(exp)
    study.pruner = build_pruner(exp)
    tracker = Tracker(store, exp.experiment_name)
    parent = str(study.user_attrs[ATTR_PARENT])
    if tracker.client.get_run(parent).data.tags.get(TAG_STATE) != "complete":
        tracker.client.update_run(parent, status="RUNNING")
        tracker.set_tags(parent, {TAG_STATE: "running"})
    if study.user_attrs.get(ATTR_BACKEND) == "ray":
        from sweeplab.search.ray_backend import RayOptions, tune_sweep

        with claim_lock(store.storage_url, name).held():
            Recovery(study, tracker, exp.sweep.max_retries).run()  # the dead driver's trials
        options = RayOptions(address, **study.user_attrs.get(ATTR_RAY, {}))
        return tune_sweep(study, exp, tracker, parent, on_trial, options)
    return optimize(study, exp, tracker, parent, on_trial)


def current_result(
    study: optuna.Study, exp: Experiment, tracker: Tracker, parent: str
) -> SweepResult:
    """The sweep's counts and best trial so far (nothing written)."""
    result = SweepResult(
        study.study_name,
        tracker.store,
        tracker.experiment,
        tracker.experiment_id,
        parent,
        counts(study),
    )
    if result.counts["complete"]:
        fill_best(result, study, exp)
    return result


def summarize(study: optuna.Study, exp: Experiment, tracker: Tracker, parent: str) -> SweepResult:
    """The sweep's result, also written to the parent run (best params, value, history)."""
    result = current_result(study, exp, tracker, parent)
    tracker.log_metrics(parent, {f"trials_{k}": v for k, v in result.counts.items()})
    if result.best_trial is None:
        return result
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    tracker.log_params(parent, {f"best.{k}": v for k, v in result.best_params.items()})
    tracker.log_metrics(parent, {"best_value": float(result.best_value or 0.0), **result.test})
    tracker.set_tags(
        parent,
        {"sweeplab.best_trial": result.best_trial, "sweeplab.best_run_id": result.best_run_id},
    )
    numbers = [t.number for t in complete]
    values = [float(t.value or 0.0) for t in complete]
    tracker.log_figure(
        parent,
        sweep_history(numbers, values, exp.objective.mode, exp.objective.metric),
        "sweep_history.png",
    )
    return result


ATTR_FINAL_PARAMS = "pbt_params"  # on a complete PBT trial: the values it ended with


def fill_best(result: SweepResult, study: optuna.Study, exp: Experiment) -> FrozenTrial:
    """Copy the study's best trial (number, value, params, run, test metrics) into ``result``."""
    best = study.best_trial
    result.best_trial = best.number
    result.best_value = best.value
    # a PBT trial ends with other values than it started with: its model was trained by those
    result.best_params = best.user_attrs.get(ATTR_FINAL_PARAMS) or decoded_params(
        SearchSpace.model_validate(exp.search_space), best
    )
    result.best_run_id = best.user_attrs.get(ATTR_RUN)
    result.test = {k: v for k, v in best.user_attrs.items() if k.startswith("test_")}
    return best


def register_best(
    exp: Experiment, tracker: Tracker, result: SweepResult, name: str | None = None
) -> tuple[str, int]:
    """Rebuild the best trial's model from its checkpoint, log it, register a new version
    of ``name`` (default ``tracking.register_as``) with its lineage."""
    import torch

    from sweeplab.registry.register import log_trained_model, register, version_tags
    from sweeplab.training.fit import prepare

    if result.best_run_id is None or result.best_trial is None:
        raise LookupError(f"sweep {result.name!r} has no completed trial to register")
    name = name or str(exp.tracking.register_as)
    resolved = spec_from_dict(apply_params(exp.model_dump(mode="json"), result.best_params))
    data, module = prepare(resolved, tracking_uri=tracker.store.tracking_uri)
    state = torch.load(tracker.download(result.best_run_id, CHECKPOINT), weights_only=True)
    module.load_state_dict(state)
    source = log_trained_model(tracker, result.best_run_id, module, resolved, data.split)
    tags = {
        **version_tags(
            module,
            resolved,
            data.split,
            result.best_run_id,
            sweep=result.name,
            trial=result.best_trial,
        ),
        "sweeplab.value": result.best_value,
        **result.test,
    }
    version = register(tracker, name, source, result.best_run_id, tags)
    tracker.set_tags(result.parent_run_id, {"sweeplab.registered": f"{name}/{version}"})
    return name, version


def register_sweep_best(store: Store, sweep: str, name: str) -> int:
    """The version of ``name`` holding sweep ``sweep``'s best trial, registered if not yet."""
    from sweeplab.registry.models import client_for
    from sweeplab.search.status import sweep_result

    exp, result = sweep_result(store, sweep)
    client = client_for(store.tracking_uri)
    if result.best_run_id is not None:
        for version in client.search_model_versions(f"run_id = '{result.best_run_id}'"):
            if version.name == name:
                return int(version.version)
    tracker = Tracker(store, exp.experiment_name)
    return register_best(exp, tracker, result, name)[1]
