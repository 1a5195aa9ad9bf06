"""A warm start: the finished trials of earlier sweeps, as prior trials of a new one.

``sweep.warm_start: [SWEEP, ...]`` names sweeps of the same storage. Each of their own
complete and pruned trials is read as spec values (with the space it was drawn from)
and checked against the new space:

    an entry the new space lacks (dropped, or renamed)   ignored: the trial goes in without it
    an entry the old trial lacks (new, or renamed)       nothing: the sampler draws it
    a value the new space cannot give (a narrowed range,  the trial is skipped
      a choice taken out)
    a failed trial, or one still running                 skipped

The trials taken go into the new study with Optuna's ``add_trials``, marked with where
they came from (``keys.ATTR_PRIOR``), so TPE, CMA-ES and the GP sampler learn from them
from the first trial on; they never count towards the new sweep's trials, and are never
its best. Optuna has no warm start across studies of different spaces of its own.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

from sweeplab.search import keys, ranking
from sweeplab.search.results import decoded_params
from sweeplab.search.sampling import distributions, encode
from sweeplab.search.states import TrialState
from sweeplab.search.storage import study_names
from sweeplab.search.sweep import Sweep
from sweeplab.spec import Experiment, SearchSpace, SpecError
from sweeplab.store import Store

TAKEN_STATES = (OptunaState.COMPLETE, OptunaState.PRUNED)


@dataclass(frozen=True)
class WarmStart:
    """The prior trials a warm start adds, and what it left out and why."""

    trials: list[FrozenTrial] = field(default_factory=list)
    taken: dict[str, int] = field(default_factory=dict)  # per earlier sweep
    skipped: dict[str, int] = field(default_factory=dict)  # per reason
    ignored: list[str] = field(default_factory=list)  # old entries the new space lacks
    drawn: list[str] = field(default_factory=list)  # new entries no old trial has

    def summary(self) -> str:
        """One line: how many were taken from which sweeps, how many skipped, and why."""
        taken = ", ".join(f"{n} from {name}" for name, n in self.taken.items())
        line = f"warm start: {len(self.trials)} prior trials ({taken})"
        if self.skipped:
            why = ", ".join(f"{n} {reason}" for reason, n in self.skipped.items())
            line += f"; {sum(self.skipped.values())} skipped ({why})"
        if self.ignored:
            line += f"; ignored, not in this space: {', '.join(self.ignored)}"
        if self.drawn:
            line += f"; drawn anew: {', '.join(self.drawn)}"
        return line

    def as_json(self) -> str:
        return json.dumps({"summary": self.summary(), "taken": self.taken, "skipped": self.skipped})


def plan(exp: Experiment, store: Store, storage: optuna.storages.RDBStorage | None) -> WarmStart:
    """What ``exp``'s warm start takes from the sweeps it names (nothing is written).
    SpecError at ``sweep.warm_start.N`` for a sweep that is not there or has another
    objective."""
    if not exp.sweep.warm_start:
        return WarmStart()
    names = study_names(storage) if storage is not None else []
    trials: list[FrozenTrial] = []
    taken: dict[str, int] = {}
    skipped: Counter[str] = Counter()
    ignored: dict[str, None] = {}
    seen: set[str] = set()
    for i, name in enumerate(exp.sweep.warm_start):
        path = f"sweep.warm_start.{i}"
        if name not in names or storage is None:
            known = ", ".join(names) or "none"
            raise SpecError.single(
                None, path, f"no sweep named {name!r} in {store.storage_url}; sweeps: {known}"
            )
        source = Sweep.open(store, name, storage=storage)
        _same_objectives(exp, source, path)
        before = len(trials)
        for t in ranking.own(source.study):
            params, why = _fit(exp.space, source.exp.space, t, ignored)
            if why is not None:
                skipped[why] += 1
                continue
            trials.append(_prior(exp.space, name, t, params))
            seen.update(params)
        taken[name] = len(trials) - before
    drawn = [key for key in exp.space.root if key not in seen]
    return WarmStart(trials, taken, dict(skipped), list(ignored), drawn if trials else [])


def _same_objectives(exp: Experiment, source: Sweep, path: str) -> None:
    ours = [(o.metric, o.mode) for o in exp.objectives]
    theirs = [(o.metric, o.mode) for o in source.exp.objectives]
    if ours != theirs:

        def say(objectives: Sequence[tuple[str, str]]) -> str:
            return " against ".join(f"{m} ({mode})" for m, mode in objectives)

        raise SpecError.single(
            None,
            path,
            f"sweep {source.name!r} optimizes {say(theirs)}, but this spec optimizes "
            f"{say(ours)}: a warm start needs the same objectives",
        )


def _fit(
    space: SearchSpace, old: SearchSpace, trial: FrozenTrial, ignored: dict[str, None]
) -> tuple[dict[str, Any], str | None]:
    """The spec values of an old trial that the new space keeps, or why it is skipped."""
    if trial.state not in TAKEN_STATES:
        failed = trial.state == OptunaState.FAIL
        return {}, TrialState.FAILED.value if failed else "not finished"
    values = decoded_params(old, trial)
    kept: dict[str, Any] = {}
    for key, dist in space.ordered():
        if key not in values or not space.holds(key, kept):
            continue  # not drawn by the old trial, or not drawn here with its values
        why = dist.refuses(values[key])
        if why is not None:
            return {}, f"with {key} outside this space"
        kept[key] = values[key]
    for key in values:
        if key not in space.root:
            ignored[key] = None
    return kept, None


def _prior(
    space: SearchSpace, source: str, trial: FrozenTrial, values: dict[str, Any]
) -> FrozenTrial:
    """The template of a prior trial: its values on this space, its outcome, its origin."""
    params: dict[str, Any] = {}
    for key, value in values.items():
        params |= encode(space, key, value)
    every = distributions(space)
    attrs = {keys.ATTR_PRIOR: f"{source}#{trial.number}"}
    if keys.ATTR_RUN in trial.user_attrs:
        attrs[keys.ATTR_PRIOR_RUN] = trial.user_attrs[keys.ATTR_RUN]
    return optuna.trial.create_trial(
        state=trial.state,
        params=params,
        distributions={p: every[p] for p in params},
        values=trial.values if trial.state == OptunaState.COMPLETE else None,
        intermediate_values=dict(trial.intermediate_values),
        user_attrs=attrs,
    )


def add(study: optuna.Study, warm: WarmStart) -> None:
    """Put the prior trials into the new study (before its first trial)."""
    if warm.trials:
        study.add_trials(warm.trials)
    if warm.taken:
        study.set_user_attr(keys.ATTR_WARM_START, warm.as_json())
