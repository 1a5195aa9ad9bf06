"""Ray's OptunaSearch on the sweep's own study: Tune asks the spec's sampler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sweeplab.search.claims import owner, retry
from sweeplab.search.keys import ATTR_OWNER, ATTR_REASON
from sweeplab.search.sampling import suggest
from sweeplab.search.study import counts, taken
from sweeplab.spec import SearchSpace

FINAL = "sweeplab_final"  # in a trial's last report: it trained to the end
TRIAL_ID = "sweeplab_trial_id"  # in a trial's config: its Optuna trial
WORKER_DIED = "its Ray worker died"


def define_by_run(space: SearchSpace, trial: optuna.Trial) -> dict[str, Any]:
    """The Optuna backend's own suggest (same distributions); the spec values it returns
    are the trial's config, which its worker trains with."""
    return suggest(trial, space)


@dataclass(frozen=True)
class Budget:
    """What a sweep's searcher counts against: ``trials`` that count, and how often a
    configuration runs again after its code raised or after its worker died."""

    study: optuna.Study
    trials: int
    max_retries: int = 0
    death_retries: int = 0


class SweepSearch(OptunaSearch):
    """Ray's OptunaSearch on the sweep's study, telling PRUNED for stopped trials.

    OptunaSearch tells COMPLETE with the last reported value when a scheduler stops a
    trial; a trial is complete here only when its worker sent the final report.

    ``workers_report``: the spec's Optuna pruner runs in the workers, which report each
    epoch to the trial themselves; the driver then does not report Tune's results too
    (one step would hold two epochs' values, whichever came first).

    ``budget``: a failed trial's configuration is queued again as on the Optuna backend
    (``claims.retry``: ``sweep.max_retries`` when its code raised, ``sweep.death_retries``
    when its Ray worker died), and the searcher says it has finished once the study
    holds ``sweep.trials`` that count and none of its own still runs; Tune's
    ``num_samples`` is then only an upper bound. Tune's own ``max_failures`` would
    restart a killed trial on the same Optuna trial, its first run left open.
    """

    workers_report = False
    budget: Budget | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._full: bool | None = None  # whether the study holds its trials (None: count)
        self._live: set[str] = set()  # Tune's ids of the trials started and not ended

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if not self.workers_report:
            super().on_trial_result(trial_id, result)

    # Ray types suggest as dict | None, but takes its own Searcher.FINISHED (a str) too
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        budget = self.budget
        if budget is not None:
            if self._full is None:
                self._full = taken(counts(budget.study)) >= budget.trials
            if self._full:  # done, or wait: a running trial may die and be queued again
                return None if self._live else Searcher.FINISHED
            self._full = None
        config = super().suggest(trial_id)
        if config is None:
            return None
        # private: OptunaSearch keeps its Optuna trials in this dict and offers no
        # accessor; the trial's id and owner must be recorded as Tune starts it
        # (tests/test_library_contracts.py)
        trial = self._ot_trials[trial_id]
        # the driver owns the trial and records its heartbeats (claims.owned_heartbeats),
        # the first one now: if the driver dies, so do its Ray workers, and `resume` fails
        # the trial at once on this host, after the grace period on another
        trial.set_user_attr(ATTR_OWNER, owner())
        trial.study._storage.record_heartbeat(trial._trial_id)  # private: the study's storage
        self._live.add(trial_id)
        return {**config, TRIAL_ID: trial._trial_id}  # private: how a worker finds it again

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if result is not None and not result.get(FINAL):
            result = None  # stopped by the scheduler (or failed): no value to tell
        trial = self._ot_trials.get(trial_id)
        if error and trial is not None:
            self._failed(trial)
        self._full = None
        self._live.discard(trial_id)
        super().on_trial_complete(trial_id, result, error)

    def _failed(self, trial: optuna.Trial) -> None:
        """Record why, if its worker could not (killed), and queue it again if it has
        retries left; before OptunaSearch tells FAIL, which ends the trial's attributes."""
        # the storage, not the trial object, which caches its attributes
        storage = trial.study._storage  # private: the study's storage, as Ray holds it
        reason = storage.get_trial(trial._trial_id).user_attrs.get(ATTR_REASON)
        if reason is None:
            trial.set_user_attr(ATTR_REASON, WORKER_DIED)
        if self.budget is None:
            return
        # a Ctrl-C is no fault of the configuration either (as on the Optuna backend)
        died = reason is None or str(reason).startswith("interrupted")
        limit = self.budget.death_retries if died else self.budget.max_retries
        retry(self.budget.study, storage, trial._trial_id, limit, died=died)
