"""The Optuna backend's worker loop: take a trial under the claim lock, run it with
heartbeats, tell the study how it ended; until the study holds ``sweep.trials``."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeplab.search.claims import Recovery, claim_lock, heartbeat, owner, retry
from sweeplab.search.keys import ATTR_OWNER
from sweeplab.search.optuna_backend.objective import objective_for
from sweeplab.search.study import Sweep, TrialEvent, counts, taken, trial_event
from sweeplab.store import DiskFull, disk_full

# Dead workers' trials are looked for at most this often while trials remain (and always
# before a worker stops): a dead worker's trial is failed and retried a little later
RECOVERY_SECONDS = 2.0


def take_trials(sweep: Sweep, on_trial: Callable[[TrialEvent], None] | None) -> None:
    """Take trials (under the claim lock) until the study has ``sweep.trials``.

    Several processes may run this on one study (``sweeplab agent``): together they run
    exactly ``sweep.trials`` trials.
    """
    study, exp = sweep.study, sweep.exp
    objective = objective_for(sweep)
    total = exp.sweep.trials
    claims = claim_lock(sweep.tracker.store.storage_url, study.study_name)
    recovery = Recovery(sweep)
    deadline = None if exp.sweep.timeout is None else time.monotonic() + exp.sweep.timeout
    try:
        while deadline is None or time.monotonic() < deadline:
            with claims.held():
                recovery.run(every=RECOVERY_SECONDS)
                c = counts(study)
                if taken(c) >= total and c["running"]:  # a dead worker's trial must not count
                    recovery.run()
                    c = counts(study)
                if taken(c) >= total and not c["waiting"]:  # a queued retry still runs
                    break
                with warnings.catch_warnings():  # heartbeats are recorded by run_one
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = study.ask()
                trial.set_user_attr(ATTR_OWNER, owner())
            retries = (exp.sweep.max_retries, exp.sweep.death_retries)
            frozen = run_one(study, sweep.storage, trial, objective, *retries)
            if on_trial is not None:
                on_trial(trial_event(study, frozen, total))
    except DiskFull:
        raise
    except Exception as exc:
        full = disk_full(exc)
        if full is None:
            raise
        raise full_disk(study, full, "between trials") from None


def full_disk(study: optuna.Study, why: str, where: str) -> DiskFull:
    return DiskFull(
        f"the disk holding the store is full ({why}): the sweep stopped {where}; finished "
        f"trials are saved. Free some space, then run: sweeplab resume {study.study_name}"
    )


def run_one(
    study: optuna.Study,
    storage: Any,
    trial: optuna.Trial,
    objective: Callable[[optuna.Trial], float | list[float]],
    max_retries: int = 0,
    death_retries: int = 0,
) -> FrozenTrial:
    """Run ``objective`` on ``trial`` with heartbeats and tell the study how it ended;
    a trial that raised is queued again while it has retries left, and so is one that
    Ctrl-C interrupted (``resume`` then runs it)."""
    with heartbeat(storage, trial):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):  # a failed write must not keep it from the tell
                retry(study, storage, trial._trial_id, death_retries, died=True)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # the objective recorded the reason on the trial
            full = disk_full(exc)
            if full is not None:  # every next trial would fail the same way: stop here.
                # The trial is left running, not told FAIL: `resume` finds its worker gone
                # and queues its params again, as for a kill (a FAIL that the full disk
                # let through would count a sound configuration as failed)
                raise full_disk(study, full, f"in trial {trial.number}") from None
            # Trial._trial_id (private): the storage's calls take it (see claims.heartbeat)
            retry(study, storage, trial._trial_id, max_retries)
            return study.tell(trial, state=TrialState.FAIL)
    return study.tell(trial, value)
