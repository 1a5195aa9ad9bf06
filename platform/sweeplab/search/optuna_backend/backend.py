"""OptunaBackend: a sweep's trials in this process, or in local worker processes."""

from __future__ import annotations

from typing import Any

from sweeplab.search.options import BackendOptions, LocalWorkers
from sweeplab.search.optuna_backend.pool import Ending, run_workers
from sweeplab.search.optuna_backend.worker import take_trials
from sweeplab.search.sweep import Sweep, Work
from sweeplab.spec import Experiment


class OptunaBackend:
    """Trials in this process, one at a time, or in local worker processes
    (``LocalWorkers``); agents on other machines join the same sweep."""

    owners_locked = True  # a trial's owner is recorded under the claim lock

    def __init__(self, options: LocalWorkers) -> None:
        self.options = options
        self._ending = Ending()  # the workers still alive when `run` returned

    @classmethod
    def create(
        cls,
        options: BackendOptions | None = None,
        address: str | None = None,
        kept: dict[str, Any] | None = None,
    ) -> OptunaBackend:
        # another backend's options never get here (lifecycle.backend_for refuses them)
        return cls(options if isinstance(options, LocalWorkers) else LocalWorkers())

    def check(self, exp: Experiment) -> None:
        self.options.check()

    def kept(self) -> dict[str, Any]:
        return {}

    def run(self, sweep: Sweep, work: Work) -> None:
        if self.options.workers > 1:
            self._ending = run_workers(sweep, self.options, work)
        else:
            take_trials(sweep, work)

    def close(self) -> None:
        self._ending.wait()
