"""Push a finished sweep from one store to another: typically a laptop's folder to the
team's MLflow server and PostgreSQL.

    refuse a sweep with running trials
    MLflow runs     the parent, trial and restart runs, whole (tracking.copy), parents first
    registry        the versions made from those runs, aliases, promotion history
                    (registry.copy)
    parent's tags   its best run and registered version, as the target names them
    study           every trial (params, states, values, intermediate values, attributes
                    with run ids mapped), written last and marked done last

Each part finds what an earlier push wrote (by its ``sweeplab.pushed_from`` tag or
attribute) and keeps it, and remakes what a killed push left half-written, so a push
run again changes nothing, and one cut short finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweeplab.search import keys
from sweeplab.search.storage import open_storage, study_names
from sweeplab.search.sweep import Sweep
from sweeplab.store import Store
from sweeplab.tracking.copy import RunCopies, copy_runs
from sweeplab.tracking.tracker import Tracker

logger = logging.getLogger(__name__)

ATTR_FROM = "sweeplab.pushed_from"  # on a pushed study: the source sweep's parent run id
ATTR_DONE = "sweeplab.pushed"  # written last: the number of trials pushed


class PushRefused(Exception):
    """The sweep cannot be pushed now (still running, or its name taken by another)."""


@dataclass
class PushResult:
    name: str
    trials: int
    study: str  # "copied", "unchanged", or "copied again" (a changed or half-written one)
    runs: RunCopies
    versions: int  # copied by this push
    versions_kept: int
    aliases: dict[str, str]
    aliases_left: list[str]


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def push_sweep(
    source: Store, name: str, target: Store, progress: Progress = lambda *_: None
) -> PushResult:
    """Copy sweep ``name`` from ``source`` into ``target``; see the module's doc."""
    from sweeplab.registry.copy import copy_versions, versions_of_runs

    sweep = Sweep.open(source, name)
    study, exp = sweep.study, sweep.exp
    running = sweep.counts.running
    if running:
        raise PushRefused(
            f"sweep '{name}' has {running} running trial(s): push it once it has finished "
            f"(a sweep whose workers died: `sweeplab resume {name}` ends it first)"
        )
    parent = sweep.parent
    target.check()
    if target.storage_exists():  # refused before the target's databases are made
        _check_name(open_storage(target.storage_url), name, parent)
    target.prepare()
    to_storage = open_storage(target.storage_url)
    src = Tracker(source, exp.experiment_name)
    dst = Tracker(target, exp.experiment_name)
    runs = src.search(f"tags.`{keys.TAG_SWEEP}` = '{name}'")
    progress("runs", 0, len(runs))
    copies = copy_runs(src, dst, runs, lambda done, total: progress("runs", done, total))
    versions = versions_of_runs(src.client, copies.ids)
    progress("versions", 0, len(versions))
    registry = copy_versions(
        src.client,
        dst.client,
        versions,
        copies.ids,
        lambda run_id: str(dst.client.get_run(run_id).info.artifact_uri),
    )
    progress("versions", len(versions), len(versions))
    _map_parent_tags(src, dst, parent, copies.ids, registry.numbers)
    progress("trials", 0, len(study.trials))
    state = _copy_study(study, to_storage, copies.ids, dst.experiment_id)
    progress("trials", len(study.trials), len(study.trials))
    return PushResult(
        name,
        len(study.trials),
        state,
        copies,
        registry.copied,
        registry.kept,
        registry.aliases,
        registry.left,
    )


def _check_name(storage: Any, name: str, parent: str) -> None:
    """A study of that name in the target must be an earlier push of this sweep."""
    if name not in study_names(storage):
        return
    there = optuna.load_study(study_name=name, storage=storage)
    shell = not there.user_attrs and not there.trials  # a push killed as it created it
    if there.user_attrs.get(ATTR_FROM) != parent and not shell:
        raise PushRefused(
            f"the target already has a sweep named '{name}' that is not this one (it was run "
            "there, or pushed from another store); sweeplab changed nothing"
        )


def _map_parent_tags(
    src: Tracker,
    dst: Tracker,
    parent: str,
    ids: dict[str, str],
    numbers: dict[tuple[str, int], int],
) -> None:
    """The copied parent run names its best run and registered version as the target has
    them."""
    if parent not in ids:
        return
    tags = src.client.get_run(parent).data.tags
    fixed: dict[str, str] = {}
    if keys.TAG_BEST_RUN in tags:
        fixed[keys.TAG_BEST_RUN] = ids.get(tags[keys.TAG_BEST_RUN], tags[keys.TAG_BEST_RUN])
    registered = tags.get(keys.TAG_REGISTERED, "")
    model, _, number = registered.rpartition("/")
    if number.isdigit() and (model, int(number)) in numbers:
        fixed[keys.TAG_REGISTERED] = f"{model}/{numbers[(model, int(number))]}"
    if fixed:
        dst.set_tags(ids[parent], fixed)


def _copy_study(study: optuna.Study, storage: Any, ids: dict[str, str], experiment_id: str) -> str:
    """The study with every trial, run ids mapped; marked done last. A target study that
    an earlier push left half-written, or that lacks trials added since, is made again."""
    name = study.study_name
    parent = str(study.user_attrs.get(keys.ATTR_PARENT, ""))
    state = "copied"
    if name in study_names(storage):
        there = optuna.load_study(study_name=name, storage=storage)
        if there.user_attrs.get(ATTR_DONE) == len(study.trials):
            return "unchanged"
        optuna.delete_study(study_name=name, storage=storage)
        state = "copied again"
    copy = optuna.create_study(study_name=name, storage=storage, directions=study.directions)
    # the pushing mark first: a study cut short is then known as ours on the next push
    copy.set_user_attr(ATTR_FROM, parent)
    for key, value in study.user_attrs.items():
        if key == keys.ATTR_PARENT:
            value = ids.get(parent, parent)
        elif key == keys.ATTR_EXPERIMENT:
            value = experiment_id
        copy.set_user_attr(key, value)
    copy.add_trials(_mapped(t, ids) for t in study.get_trials(deepcopy=False))
    copy.set_user_attr(ATTR_DONE, len(study.trials))
    return state


def _mapped(trial: FrozenTrial, ids: dict[str, str]) -> FrozenTrial:
    """The trial with its run id as the target names it."""
    attrs = dict(trial.user_attrs)
    run = attrs.get(keys.ATTR_RUN)
    if isinstance(run, str):
        attrs[keys.ATTR_RUN] = ids.get(run, run)
    return FrozenTrial(
        number=trial.number,
        state=trial.state,
        value=None,
        values=trial.values,
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=attrs,
        system_attrs=trial.system_attrs,
        intermediate_values=trial.intermediate_values,
        trial_id=0,  # add_trials gives the trial the target's own id
    )
