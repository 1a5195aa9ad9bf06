"""Ray's OptunaSearch on the sweep's own study: Tune asks the spec's sampler."""

from __future__ import annotations

import pickle
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sweeplab import compat
from sweeplab.search.claims import owner, retry
from sweeplab.search.keys import ATTR_OWNER, ATTR_REASON
from sweeplab.search.sampling import suggest
from sweeplab.search.states import TrialState
from sweeplab.search.sweep import OnTrial, Sweep
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

    A failed trial's configuration is queued again as on the Optuna backend
    (``claims.retry``: ``sweep.max_retries`` when its code raised, ``sweep.death_retries``
    when its Ray worker died), and the searcher says it has finished once the study
    holds the sweep's target and none of its own trials still runs, or the sweep is
    stopped; Tune's ``num_samples`` is then only an upper bound. Tune's own
    ``max_failures`` would restart a killed trial on the same Optuna trial, its first
    run left open. Once the study is told how a trial ended, ``on_trial`` gets its event
    and ``sweep.stop_when`` is checked.
    """

    def __init__(
        self,
        *,
        sweep: Sweep,
        space: Any,
        metric: str | list[str],
        mode: str | list[str],
        workers_report: bool,
        on_trial: OnTrial | None,
    ) -> None:
        super().__init__(
            space=space,
            metric=metric,
            mode=mode,
            sampler=sweep.study.sampler,  # the sweep's stream (a resumed sweep: a new one)
            study_name=sweep.name,
            storage=sweep.storage,
        )
        self.sweep = sweep
        self.workers_report = workers_report
        self.on_trial = on_trial
        self._full: bool | None = None  # whether the study holds its trials (None: count)
        self._live: set[str] = set()  # Tune's ids of the trials started and not ended

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its Tuner (search algorithm included) into the experiment folder,
        # and OptunaSearch.save its __dict__: the sweep (its MLflow client, its storage's
        # engine and lock hold weak references) and the progress callback stay out; they
        # are the driver's own, which never restores a Tuner from that file
        return {k: v for k, v in self.__dict__.items() if k not in ("sweep", "on_trial")}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as out:
            pickle.dump(self.__getstate__(), out)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if not self.workers_report:
            super().on_trial_result(trial_id, result)

    # Ray types suggest as dict | None, but takes its own Searcher.FINISHED (a str) too
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        sweep = self.sweep
        if self._full is None:
            self._full = not sweep.state.takes_trials or sweep.counts.taken >= sweep.target
        if self._full:  # done, or wait: a running trial may die and be queued again
            return None if self._live else Searcher.FINISHED
        self._full = None
        config = super().suggest(trial_id)
        trial = compat.search_trial(self, trial_id)
        if config is None or trial is None:
            return None
        # the driver owns the trial and records its heartbeats (claims.owned_heartbeats),
        # the first one now: if the driver dies, so do its Ray workers, and `resume` fails
        # the trial at once on this host, after the grace period on another
        trial.set_user_attr(ATTR_OWNER, owner())
        number = compat.trial_id(trial)
        compat.study_storage(trial.study).record_heartbeat(number)
        self._live.add(trial_id)
        return {**config, TRIAL_ID: number}  # how its worker finds the trial again

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if result is not None and not result.get(FINAL):
            result = None  # stopped by the scheduler (or failed): no value to tell
        trial = compat.search_trial(self, trial_id)
        if error and trial is not None:
            self._failed(trial)
        self._full = None
        self._live.discard(trial_id)
        super().on_trial_complete(trial_id, result, error)
        if trial is not None:
            frozen = self.sweep.storage.get_trial(compat.trial_id(trial))
            self.sweep.check_stop_when(frozen)
            if self.on_trial is not None:
                self.on_trial(self.sweep.event(frozen))

    def _failed(self, trial: optuna.Trial) -> None:
        """Record why, if its worker could not (killed), and queue it again if it has
        retries left; before OptunaSearch tells FAIL, which ends the trial's attributes."""
        # the storage, not the trial object, which caches its attributes
        storage = compat.study_storage(trial.study)
        number = compat.trial_id(trial)
        reason = storage.get_trial(number).user_attrs.get(ATTR_REASON)
        if reason is None:
            trial.set_user_attr(ATTR_REASON, WORKER_DIED)
        # a Ctrl-C is no fault of the configuration either (as on the Optuna backend)
        died = reason is None or str(reason).startswith(TrialState.INTERRUPTED.value)
        spec = self.sweep.exp.sweep
        limit = spec.death_retries if died else spec.max_retries
        retry(self.sweep.study, storage, number, limit, died=died)
