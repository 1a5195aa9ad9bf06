"""The Optuna backend as the lifecycle sees it (``lifecycle.Backend``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sweeplab.search.optuna_backend.options import LocalWorkers
from sweeplab.search.optuna_backend.pool import run_workers
from sweeplab.search.optuna_backend.worker import take_trials
from sweeplab.search.study import Sweep, TrialEvent
from sweeplab.spec import Experiment, InputError


class OptunaBackend:
    """Trials in this process, one at a time, or in local worker processes
    (``LocalWorkers``); agents on other machines join the same sweep."""

    owners_locked = True  # a trial's owner is recorded under the claim lock

    def __init__(self, options: LocalWorkers) -> None:
        self.options = options

    @classmethod
    def create(cls, options: Any = None, address: str | None = None, kept: Any = None) -> Any:
        return cls(options if isinstance(options, LocalWorkers) else LocalWorkers())

    def check(self, exp: Experiment) -> None:
        if self.options.workers < 1:
            raise InputError(f"--workers must be >= 1, but got {self.options.workers}.")

    def kept(self) -> dict[str, Any]:
        return {}

    def run(self, sweep: Sweep, on_trial: Callable[[TrialEvent], None] | None) -> None:
        if self.options.workers > 1:
            run_workers(sweep, self.options, on_trial)
        else:
            take_trials(sweep, on_trial)
