"""A sweep's study: its storage, how its trials are counted, and its result read back.

A sweep is one Optuna study in RDB storage (SQLite by default, PostgreSQL for teams)
and one MLflow parent run; the study's attributes (``keys``) lead from one to the other.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeplab.search import keys
from sweeplab.search.sampling import build_pruner, build_sampler
from sweeplab.spec import CategoricalDist, Experiment, InputError, LayersDist, SearchSpace
from sweeplab.spec._errors import did_you_mean
from sweeplab.spec._space import decode_choice
from sweeplab.store import Store

if TYPE_CHECKING:
    from sweeplab.tracking.tracker import Tracker

HEARTBEAT_SECONDS = 5  # a running trial's heartbeat; dead after GRACE_SECONDS without one
GRACE_SECONDS = 30

STATE_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


# ------------------------------------------------------------------------- storage


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``url``, with heartbeats (SQLite: write-ahead log)."""
    kwargs: dict[str, Any] = {
        "heartbeat_interval": HEARTBEAT_SECONDS,
        "grace_period": GRACE_SECONDS,
    }
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    storage = _create_schema_once(url, kwargs)
    if url.startswith("sqlite"):
        _write_ahead(storage.engine)
    return storage


def _create_schema_once(url: str, kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage, created again if another process was creating the same
    database's tables at that moment.

    Optuna creates its tables and stamps their version without a lock, so two processes
    opening a new database together (a sweep and ``sweeplab status``, two agents) can
    collide: one gets "UNIQUE constraint failed: alembic_version" or "table already
    exists". The tables are complete once the other has committed, so opening it again
    succeeds.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError

    def create() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, **kwargs)

    for attempt in range(4):
        try:
            return create()
        except (IntegrityError, OperationalError) as exc:
            if "alembic_version" not in str(exc) and "already exists" not in str(exc):
                raise
            time.sleep(0.5 * (attempt + 1))
    return create()


def _write_ahead(engine: Any) -> None:
    """SQLite in write-ahead-log mode: readers (``status``, an agent counting trials) do not
    block the writer, and a commit appends to the log instead of syncing the whole file.

    An epoch's report and pruning decision took 6.2 ms instead of 9.5 ms in one
    measurement. A commit survives a killed process; only a power cut may lose the last
    ones, never the file.
    """
    from sqlalchemy import event

    def pragmas(connection: Any, _: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()  # the connections Optuna opened to create its tables lack them


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def unique_name(storage: optuna.storages.BaseStorage, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``… when a study of that name exists."""
    taken = set(study_names(storage))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


# -------------------------------------------------------------------- an open sweep


@dataclass
class Sweep:
    """An open sweep: its study (and the storage it was opened on), spec and parent run."""

    study: optuna.Study
    storage: optuna.storages.RDBStorage
    exp: Experiment
    tracker: Tracker
    parent: str  # the MLflow parent run's id

    @property
    def name(self) -> str:
        return self.study.study_name


def load_study(
    store: Store, name: str
) -> tuple[optuna.Study, Experiment, optuna.storages.RDBStorage]:
    """The study of sweep ``name``, its spec and storage; LookupError naming the sweeps
    that exist."""
    storage = open_storage(store.storage_url)
    names = study_names(storage)
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise LookupError(
            f"no sweep named '{name}'{did_you_mean(name, names)} in "
            f"{store.storage_url}; sweeps: {known}"
        )
    study, exp = open_study(storage, name)
    return study, exp, storage


def open_study(storage: optuna.storages.BaseStorage, name: str) -> tuple[optuna.Study, Experiment]:
    """Study ``name`` in ``storage`` and the spec it was created with."""
    study = optuna.load_study(study_name=name, storage=storage)
    spec = study.user_attrs.get(keys.ATTR_SPEC)
    if spec is None:  # created this instant (its attributes come next), or not by sweeplab
        raise LookupError(
            f"study '{name}' holds no sweeplab spec: it is being created (try again in a "
            "moment), or it was not created by sweeplab"
        )
    return study, Experiment.model_validate(json.loads(spec))


def open_sweep(store: Store, name: str, worker: str) -> Sweep:
    """Sweep ``name`` opened by ``worker`` (host:pid) for more trials or for finishing:
    its MLflow experiment, the spec's pruner, and a sampler on a stream of its own, so
    that it does not draw the first process's configurations again."""
    study, exp, storage = load_study(store, name)
    study.sampler = build_sampler(exp, stream=f"{worker}:{len(study.trials)}")
    study.pruner = build_pruner(exp)
    from sweeplab.tracking.tracker import Tracker  # MLflow: not for status

    tracker = Tracker(store, exp.experiment_name)
    return Sweep(study, storage, exp, tracker, str(study.user_attrs[keys.ATTR_PARENT]))


# ------------------------------------------------------------------------- counting


def counts(study: optuna.Study) -> dict[str, int]:
    """How many trials are in each state (every state present, zeros included); a failed
    trial that was run again counts as ``retried``, not ``failed``."""
    out = dict.fromkeys([*STATE_NAMES.values(), "retried"], 0)
    for t in study.get_trials(deepcopy=False):
        retried = t.state == TrialState.FAIL and keys.ATTR_RETRIED in t.user_attrs
        out["retried" if retried else STATE_NAMES[t.state]] += 1
    return out


def taken(c: dict[str, int]) -> int:
    """Of ``counts``: the trials that count towards ``sweep.trials`` (finished and not
    retried, or running); a queued retry (waiting) takes the place of its failed try."""
    return c["complete"] + c["pruned"] + c["failed"] + c["running"]


def first_value(trial: FrozenTrial) -> float | None:
    """A trial's value on the (first) objective; None unless it completed."""
    return float(trial.values[0]) if trial.values else None


def best_of(study: optuna.Study) -> FrozenTrial | None:
    """The best trial on the first objective (None before one completed); of a
    multi-objective study, the end of its Pareto front on that objective."""
    if len(study.directions) == 1:
        try:
            return study.best_trial
        except ValueError:  # none completed yet
            return None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    sign = _signs(study)[0]
    return max(complete, key=lambda t: (sign * t.values[0], -t.number))


def top(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` best complete trials on the first objective, best first (ties: earlier)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = _signs(study)[0]
    return sorted(complete, key=lambda t: (-sign * t.values[0], t.number))[:k]


def _signs(study: optuna.Study) -> list[float]:
    """Per objective: 1 where higher is better, -1 where lower is."""
    maximize = optuna.study.StudyDirection.MAXIMIZE
    return [1.0 if d == maximize else -1.0 for d in study.directions]


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of a multi-objective study (Optuna's best trials): no trial of
    it is dominated by another; by number."""
    return sorted(study.best_trials, key=lambda t: t.number)


def choose(
    study: optuna.Study, within: float | None = None, number: int | None = None
) -> FrozenTrial | None:
    """The trial a user picks: trial ``number`` (complete), or, ``within`` a tolerance of
    the best value on the first objective, the front's trial that is best on the second
    (ties: the better first value); by default ``best_of``. InputError if it cannot be."""
    if number is not None:
        found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not found or found[0].state != TrialState.COMPLETE:
            state = STATE_NAMES[found[0].state] if found else "not in the sweep"
            raise InputError(f"trial #{number} of sweep {study.study_name!r} is {state}")
        return found[0]
    if within is None:
        return best_of(study)
    if len(study.directions) < 2:
        raise InputError(
            f"--within picks from a Pareto front, but sweep {study.study_name!r} has one "
            "objective: use --best-of alone, or --trial N"
        )
    if within < 0:
        raise InputError(f"--within must be >= 0, but got {within}")
    best = best_of(study)
    if best is None:
        return None
    sign = _signs(study)
    near = [t for t in front(study) if sign[0] * (t.values[0] - best.values[0]) >= -within]
    return max(near, key=lambda t: (sign[1] * t.values[1], sign[0] * t.values[0]))


def best_value(study: optuna.Study) -> float | None:
    """The best value so far on the first objective (None before a trial completed)."""
    best = best_of(study)
    return None if best is None else first_value(best)


# ------------------------------------------------------------------- result, events


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


def decoded_params(space: SearchSpace, trial: FrozenTrial) -> dict[str, Any]:
    """A trial's params as spec values (categorical keys mapped back to their YAML values,
    a layers entry's depth and widths as one list); an entry not sampled is absent."""
    out: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, LayersDist):
            depth = trial.params.get(dist.part(key, "depth"))
            if depth is not None:
                out[key] = [trial.params[dist.part(key, i)] for i in range(int(depth))]
        elif key in trial.params:
            value = trial.params[key]
            out[key] = decode_choice(dist, value) if isinstance(dist, CategoricalDist) else value
    return out


def sweep_result(
    study: optuna.Study, exp: Experiment, store: Store, chosen: FrozenTrial | None = None
) -> SweepResult:
    """The sweep's counts and best trial so far, or the ``chosen`` one (nothing written)."""
    result = SweepResult(
        study.study_name,
        store,
        exp.experiment_name,
        str(study.user_attrs.get(keys.ATTR_EXPERIMENT, "")),
        str(study.user_attrs.get(keys.ATTR_PARENT, "")),
        counts(study),
    )
    best = chosen or best_of(study)
    if best is None:
        return result
    result.best_trial = best.number
    result.best_value = first_value(best)
    # a PBT trial ends with other values than it started with: its model was trained by those
    result.best_params = best.user_attrs.get(keys.ATTR_FINAL_PARAMS) or decoded_params(
        exp.space, best
    )
    result.best_run_id = best.user_attrs.get(keys.ATTR_RUN)
    result.test = {k: v for k, v in best.user_attrs.items() if k.startswith("test_")}
    return result


def trial_event(study: optuna.Study, trial: FrozenTrial, total: int) -> TrialEvent:
    """The progress event of a trial that just ended."""
    return TrialEvent(
        trial.number,
        STATE_NAMES[trial.state],
        first_value(trial),
        trial.user_attrs.get(keys.ATTR_REASON),
        counts(study),
        best_value(study),
        total,
    )


def same_as(study: optuna.Study, trial: optuna.Trial, grid: bool = False) -> int | None:
    """The earlier trial whose params the sampler drew again, if any (a grid run out, a
    space of few choices). A retry repeats its failed try on purpose: not counted.

    A draw of a continuous float (off a grid) is never drawn again, so such a trial is
    not compared with every earlier one."""
    if keys.ATTR_RETRY_OF in trial.user_attrs:
        return None
    if not grid and any(_continuous(d) for d in trial.distributions.values()):
        return None
    for t in study.get_trials(deepcopy=False):
        if t.number >= trial.number:
            break
        if t.params == trial.params and keys.ATTR_RETRY_OF not in t.user_attrs:
            return t.number
    return None


def _continuous(distribution: optuna.distributions.BaseDistribution) -> bool:
    return (
        isinstance(distribution, optuna.distributions.FloatDistribution)
        and distribution.step is None
    )
