"""Ray's OptunaSearch on the sweep's own study: Tune asks the spec's sampler."""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from sweeplab.search.claims import owner
from sweeplab.search.keys import ATTR_OWNER, ATTR_REASON
from sweeplab.search.sampling import suggest
from sweeplab.spec import SearchSpace

FINAL = "sweeplab_final"  # in a trial's last report: it trained to the end
TRIAL_ID = "sweeplab_trial_id"  # in a trial's config: its Optuna trial
WORKER_DIED = "its Ray worker died"


def define_by_run(space: SearchSpace, trial: optuna.Trial) -> dict[str, Any]:
    """The Optuna backend's own suggest (same distributions); the spec values it returns
    are the trial's config, which its worker trains with."""
    return suggest(trial, space)


class SweepSearch(OptunaSearch):
    """Ray's OptunaSearch on the sweep's study, telling PRUNED for stopped trials.

    OptunaSearch tells COMPLETE with the last reported value when a scheduler stops a
    trial; a trial is complete here only when its worker sent the final report.

    ``workers_report``: the spec's Optuna pruner runs in the workers, which report each
    epoch to the trial themselves; the driver then does not report Tune's results too
    (one step would hold two epochs' values, whichever came first).
    """

    workers_report = False

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if not self.workers_report:
            super().on_trial_result(trial_id, result)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if config is None:
            return None
        # private: OptunaSearch keeps its Optuna trials in this dict and offers no
        # accessor; the trial's id and owner must be recorded as Tune starts it
        # (tests/test_library_contracts.py)
        trial = self._ot_trials[trial_id]
        # the driver owns the trial: if it dies, so do its Ray workers, and `resume`
        # fails the trial at once (claims.Recovery, as for the Optuna backend)
        trial.set_user_attr(ATTR_OWNER, owner())
        return {**config, TRIAL_ID: trial._trial_id}  # private: how a worker finds it again

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if result is not None and not result.get(FINAL):
            result = None  # stopped by the scheduler (or failed): no value to tell
        trial = self._ot_trials.get(trial_id)
        if error and trial is not None:
            # a worker that raised recorded why (read from the storage: the trial object
            # caches its attributes); one that was killed could not
            storage = trial.study._storage  # private: the study's storage, as Ray holds it
            if ATTR_REASON not in storage.get_trial(trial._trial_id).user_attrs:
                trial.set_user_attr(ATTR_REASON, WORKER_DIED)
        super().on_trial_complete(trial_id, result, error)
