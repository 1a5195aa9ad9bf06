"""The Optuna backend: a sweep is one Optuna study in RDB storage.

Samplers and pruners are Optuna's, configured from the spec; pruning inside a
fit is optuna-integration's Lightning callback. Each trial runs ``run_trial``.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback
from optuna.trial import TrialState

from sweeplab.search.catalog import PRUNERS, SAMPLERS
from sweeplab.search.trial import (
    TAG_SWEEP,
    TAG_TRIAL,
    TrialHooks,
    TrialOutcome,
    describe,
    run_trial,
)
from sweeplab.spec import (
    CategoricalDist,
    Experiment,
    FloatDist,
    IntDist,
    SearchSpace,
    SpecError,
    apply_params,
    spec_from_dict,
)
from sweeplab.spec._space import choice_keys, decode_choice
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.callbacks import val_loss_diverged

# Study user attributes: what an agent, `resume` or `status` needs to find everything.
ATTR_SPEC = "sweeplab.spec"
ATTR_PARENT = "sweeplab.parent_run_id"
ATTR_EXPERIMENT = "sweeplab.experiment_id"
ATTR_RUN = "mlflow_run_id"  # on each trial
ATTR_REASON = "fail_reason"  # on each failed trial


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# ------------------------------------------------------------------ sampler, pruner


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` once the grid is visited.

    ``stop()`` works only inside ``study.optimize``; sweeplab's workers take trials
    with ask/tell under a claim lock and stop on the trial count instead.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def grid_of(space: SearchSpace) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDist):
            grid[key] = choice_keys(dist.choices)
        elif isinstance(dist, IntDist):
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            step = dist.step or (dist.high - dist.low)
            count = math.floor((dist.high - dist.low) / step + 1e-9) + 1
            grid[key] = [dist.low + i * step for i in range(count)]
    return grid


def build_sampler(exp: Experiment) -> optuna.samplers.BaseSampler:
    name, seed = exp.sweep.sampler, exp.sweep.seed
    cls = _load(SAMPLERS[name])
    if name == "grid":
        return cls(grid_of(SearchSpace.model_validate(exp.search_space)), seed=seed)
    if name == "cmaes":
        return cls(seed=seed, warn_independent_sampling=False)
    return cls(seed=seed)


def max_epochs(exp: Experiment) -> int:
    """The most epochs a trial of ``exp`` may train (the search space's bound, if searched)."""
    dist = exp.search_space.get("train.max_epochs")
    return int(dist["high"]) if isinstance(dist, dict) and "high" in dist else exp.train.max_epochs


def build_pruner(exp: Experiment) -> optuna.pruners.BasePruner:
    """The spec's pruner with its options; a bad option is a SpecError (before any side effect)."""
    name, options = exp.sweep.pruner, dict(exp.sweep.pruner_options)
    if name == "hyperband":
        options.setdefault("min_resource", 1)
        options.setdefault("max_resource", max_epochs(exp))
    try:
        return _load(PRUNERS[name])(**options)
    except (TypeError, ValueError) as exc:
        raise SpecError.single(
            None, "sweep.pruner_options", f"invalid for pruner '{name}': {exc}"
        ) from None


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Ask the trial for a value of every distribution; categorical keys decoded back."""
    params: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, FloatDist):
            params[key] = trial.suggest_float(
                key, dist.low, dist.high, log=dist.log, step=dist.step
            )
        elif isinstance(dist, IntDist):
            params[key] = trial.suggest_int(key, dist.low, dist.high, log=dist.log, step=dist.step)
        else:
            params[key] = decode_choice(
                dist, trial.suggest_categorical(key, choice_keys(dist.choices))
            )
    return params


# -------------------------------------------------------------------------- hooks


def _pruning_callback(trial: optuna.Trial, monitor: str) -> Callback:
    """optuna-integration's pruning callback, silent on an epoch whose val_loss is NaN/inf
    (``val_loss_diverged``: the trial then fails with its reason, not pruned)."""
    from optuna_integration import PyTorchLightningPruningCallback

    class FinitePruningCallback(PyTorchLightningPruningCallback):
        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if val_loss_diverged(trainer):
                return
            super().on_validation_end(trainer, pl_module)

    return FinitePruningCallback(trial, monitor=monitor)


class OptunaHooks:
    """Pruning through optuna-integration's Lightning callback, on the first restart only.

    Later restarts of the same configuration would report the same epochs again,
    which Optuna ignores; the first restart's curve decides.
    """

    pruned: tuple[type[BaseException], ...] = (optuna.TrialPruned,)
    paused: tuple[type[BaseException], ...] = ()

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def callbacks(self, restart: int) -> Sequence[Callback]:
        if restart > 0:
            return []
        return [_pruning_callback(self.trial, self.monitor)]

    def on_run(self, run_id: str) -> None:
        self.trial.set_user_attr(ATTR_RUN, run_id)

    def trainer_options(self) -> dict[str, Any]:
        return {}


# -------------------------------------------------------------------------- study


HEARTBEAT_SECONDS = 5  # a running trial's heartbeat; dead after GRACE_SECONDS without one
GRACE_SECONDS = 30


def open_storage(url: str) -> optuna.storages.RDBStorage:
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
    taken = set(study_names(storage))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def resolve(
    trial: optuna.Trial, space: SearchSpace, base: dict[str, Any]
) -> tuple[dict[str, Any], Experiment]:
    """The trial's params (sampled, or read back when already set) and the spec they make."""
    params = suggest(trial, space)
    return params, spec_from_dict(apply_params(base, params))


def make_objective(
    exp: Experiment,
    tracker: Tracker,
    sweep: str,
    parent_run_id: str,
    hooks: Callable[[optuna.Trial], TrialHooks] | None = None,
) -> Callable[[optuna.Trial], float]:
    """The objective of a sweep's trials: sample (or read back) the params, run the trial,
    record its run, reason, restarts and test metrics on the Optuna trial.

    ``hooks`` gives a backend's hooks for a trial (default: Optuna's pruning callback).
    """

    def optuna_hooks(trial: optuna.Trial) -> TrialHooks:
        return OptunaHooks(trial, exp.objective.metric)

    hooks_for = hooks or optuna_hooks
    space = SearchSpace.model_validate(exp.search_space)
    base = exp.model_dump(mode="json")

    def objective(trial: optuna.Trial) -> float:
        with reason_noted(trial):
            params, resolved = resolve(trial, space, base)
            outcome = run_trial(
                resolved,
                tracker=tracker,
                name=f"trial-{trial.number}",
                params=params,
                parent=parent_run_id,
                hooks=hooks_for(trial),
                tags={TAG_SWEEP: sweep, TAG_TRIAL: trial.number},
            )
        record(trial, outcome)
        return outcome.value

    return objective


@contextlib.contextmanager
def reason_noted(trial: optuna.Trial) -> Iterator[None]:
    """Record on ``trial`` why its run failed or was interrupted; the exception goes on.

    Pruning (optuna.TrialPruned) and a Ray stop or PBT pause (SystemExit) are no failure.
    """
    try:
        yield
    except optuna.TrialPruned:
        raise
    except KeyboardInterrupt:
        trial.set_user_attr(ATTR_REASON, "interrupted (Ctrl-C)")
        raise
    except Exception as exc:
        trial.set_user_attr(ATTR_REASON, describe(exc))
        raise


def record(trial: optuna.Trial, outcome: TrialOutcome) -> None:
    """What a finished trial keeps besides its value: spread, epochs, test metrics."""
    trial.set_user_attr("value_std", outcome.std)
    trial.set_user_attr("restart_values", outcome.values)
    trial.set_user_attr("epochs", outcome.epochs)
    for key, value in outcome.test.items():
        trial.set_user_attr(key, value)


STATE_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}

# ------------------------------------------------------------------------ retries

ATTR_ATTEMPT = "sweeplab.attempt"  # 0 for a first try, n for the n-th retry
ATTR_RETRY_OF = "sweeplab.retry_of"  # the trial number a retry repeats
ATTR_RETRIED = "sweeplab.retried_as"  # on a failed trial: the number of its retry


def retry(study: optuna.Study, trial_id: int, max_retries: int) -> bool:
    """Queue a failed (or failing) trial's params again if it has retries left.

    The failed trial is marked (``sweeplab.retried_as``) and no longer counts towards
    the sweep's trials; the retry is a WAITING trial that the next ``ask`` takes.
    Call before the trial is told FAIL: Optuna refuses attributes on finished trials.
    """
    storage = study._storage
    failed = storage.get_trial(trial_id)
    attempt = int(failed.user_attrs.get(ATTR_ATTEMPT, 0))
    if attempt >= max_retries:
        return False
    study.enqueue_trial(
        failed.params,
        user_attrs={ATTR_ATTEMPT: attempt + 1, ATTR_RETRY_OF: failed.number},
        skip_if_exists=False,
    )
    queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))[-1]
    storage.set_trial_user_attr(trial_id, ATTR_RETRIED, queued.number)
    return True


def counts(study: optuna.Study) -> dict[str, int]:
    """How many trials are in each state (every state present, zeros included); a failed
    trial that was run again counts as ``retried``, not ``failed``."""
    out = dict.fromkeys([*STATE_NAMES.values(), "retried"], 0)
    for t in study.get_trials(deepcopy=False):
        retried = t.state == TrialState.FAIL and ATTR_RETRIED in t.user_attrs
        out["retried" if retried else STATE_NAMES[t.state]] += 1
    return out


def taken(c: dict[str, int]) -> int:
    """Of ``counts``: the trials that count towards ``sweep.trials`` (finished and not
    retried, or running); a queued retry (waiting) takes the place of its failed try."""
    return c["complete"] + c["pruned"] + c["failed"] + c["running"]
