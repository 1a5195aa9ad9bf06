"""What a trial and a sweep can be, and how a sweep's trials are counted: one enum per
thing and one type for the counts. Every module says a state through these names.

Imports nothing heavy: the command line renders states and counts with them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sweeplab.search.keys import ATTR_PRIOR, ATTR_RETRIED


class TrialState(StrEnum):
    """A trial's state (the Optuna trial's, and its MLflow run's ``sweeplab.state`` tag)."""

    RUNNING = "running"
    WAITING = "waiting"  # queued: an enqueued configuration, or a retry of a failed one
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    # a run stopped by Ctrl-C, ``sweeplab stop --now`` or its worker's end; its
    # Optuna trial is FAILED with that reason, and its configuration is queued again
    INTERRUPTED = "interrupted"

    @classmethod
    def of(cls, trial: Any) -> TrialState:
        """The state of an Optuna trial (a FrozenTrial: its ``state.name``)."""
        return _OPTUNA[trial.state.name]


_OPTUNA = {
    "RUNNING": TrialState.RUNNING,
    "WAITING": TrialState.WAITING,
    "COMPLETE": TrialState.COMPLETE,
    "PRUNED": TrialState.PRUNED,
    "FAIL": TrialState.FAILED,
}


class SweepState(StrEnum):
    """A sweep's state, kept with its study (``keys.ATTR_STATE``) and shown on its parent run.

    A sweep that asks for no more trials (``stopping``, ``stopping now``, ``reached``)
    lets its running trials end, then whoever ends the last one finishes it.
    """

    RUNNING = "running"
    INTERRUPTED = "interrupted"  # Ctrl-C: `sweeplab resume` continues it
    STOPPING = "stopping"  # `sweeplab stop`: running trials finish
    STOPPING_NOW = "stopping now"  # `sweeplab stop --now`: running trials are interrupted
    REACHED = "reached"  # a trial reached sweep.stop_when: running trials finish
    STOPPED = "stopped"  # ended by `sweeplab stop` (resume continues it)
    COMPLETE = "complete"

    @property
    def takes_trials(self) -> bool:
        """Workers take new trials (an interrupted sweep's other workers go on)."""
        return self in (SweepState.RUNNING, SweepState.INTERRUPTED)

    @property
    def asks_no_trials(self) -> bool:
        """Stopping: workers take no new trial, and exit."""
        return self in (SweepState.STOPPING, SweepState.STOPPING_NOW, SweepState.REACHED)

    @property
    def finished(self) -> bool:
        return self in (SweepState.STOPPED, SweepState.COMPLETE)

    @property
    def ending(self) -> SweepState:
        """The state a sweep in this state finishes in."""
        return SweepState.STOPPED if self in _STOPS else SweepState.COMPLETE


_STOPS = (SweepState.STOPPING, SweepState.STOPPING_NOW, SweepState.STOPPED)


@dataclass(frozen=True, kw_only=True)
class Counts:
    """How many of a sweep's trials are in each state.

    ``failed`` leaves out the failed tries that ran again (``retried``: their retry
    counts instead), and no count holds the ``prior`` trials of a warm start.
    """

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    retried: int = 0
    prior: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def taken(self) -> int:
        """The trials that count towards the sweep's target: finished or running (a
        queued retry takes the place of its failed try once it runs)."""
        return self.finished + self.running

    def ended(self, target: int) -> bool:
        """Every trial of ``target`` has ended and none waits to run again: what is left
        of the sweep is its end."""
        return not self.running and not self.waiting and self.taken >= target

    @classmethod
    def of(cls, trials: Iterable[Any]) -> Counts:
        """The counts of Optuna trials (FrozenTrials)."""
        n = dict.fromkeys(("complete", "pruned", "failed", "running", "waiting"), 0)
        retried = prior = 0
        for t in trials:
            if ATTR_PRIOR in t.user_attrs:
                prior += 1
                continue
            state = TrialState.of(t)
            if state is TrialState.FAILED and ATTR_RETRIED in t.user_attrs:
                retried += 1
            else:
                n[state.value] += 1
        return cls(**n, retried=retried, prior=prior)

    def as_dict(self) -> dict[str, int]:
        """Every count by name (what the parent run logs as ``trials_<name>``)."""
        return {
            "complete": self.complete,
            "pruned": self.pruned,
            "failed": self.failed,
            "running": self.running,
            "waiting": self.waiting,
            "retried": self.retried,
            "prior": self.prior,
        }
