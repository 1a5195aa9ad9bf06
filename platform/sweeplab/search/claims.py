"""Several processes on one study: exact trial counts, heartbeats, and dead workers.

Optuna numbers trials atomically but any process may create one more than the sweep
asked for; so a worker takes a trial only under the study's **claim lock** (a
PostgreSQL advisory lock, or a file lock beside a SQLite file), after counting the
trials already finished or running. Optuna has no such lock of its own.

While a trial runs, a thread records Optuna heartbeats (the Optuna backend's worker
for its trial, a Ray driver for all the trials it started), and the trial carries its
owner (``host:pid``). ``Recovery`` fails the trials of dead workers: at once when the
owner is a dead process on this host, after the heartbeat's grace period otherwise;
their MLflow runs (and nested runs) end KILLED with the reason.

The same thread watches the sweep's state: after ``sweeplab stop --now`` (from any
host) it interrupts the trial as a Ctrl-C would (``interrupt_main``), so the trial is
failed as interrupted and its configuration queued again, on every backend alike.
"""

from __future__ import annotations

import _thread
import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState as OptunaState

from sweeplab import compat
from sweeplab.search.keys import (
    ATTR_ATTEMPT,
    ATTR_DEATHS,
    ATTR_OWNER,
    ATTR_OWNERS_LOCKED,
    ATTR_REASON,
    ATTR_RETRIED,
    ATTR_RETRY_OF,
    ATTR_RUN,
    TAG_REASON,
    TAG_RESTART,
    TAG_STATE,
    TAG_SWEEP,
    TAG_TRIAL,
)
from sweeplab.search.states import SweepState, TrialState
from sweeplab.search.storage import HEARTBEAT_SECONDS
from sweeplab.search.sweep import Sweep

STOP_WATCH_SECONDS = 1.0  # how often a running trial's worker looks for `stop --now`


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def heartbeat(sweep: Sweep, *trials: optuna.Trial) -> Iterator[None]:
    """Record Optuna heartbeats for ``trials`` (several: a fused batch) until the block
    ends, and interrupt it if the sweep is stopped ``--now`` (daemon threads).

    Optuna records heartbeats itself only inside ``Study.optimize``, which sweeplab's
    workers do not use (they take trials under the claim lock).
    """
    storage, ids = sweep.storage, [compat.trial_id(trial) for trial in trials]

    def beat() -> None:
        for trial_id in ids:
            storage.record_heartbeat(trial_id)

    beat()
    with every(HEARTBEAT_SECONDS, beat), stop_watch(sweep):
        yield


@contextlib.contextmanager
def owned_heartbeats(sweep: Sweep, who: str) -> Iterator[None]:
    """Record heartbeats for every running trial of the sweep that ``who`` owns, until
    the block ends: a Ray driver's, whose trials run in worker processes, perhaps on
    other hosts. If the driver's host is lost, the beats stop, and ``Recovery`` (in
    ``resume`` or a joining worker, on any host) fails its trials after the grace period.
    """

    def beat() -> None:
        for t in sweep.study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
            if t.user_attrs.get(ATTR_OWNER) == who:
                sweep.storage.record_heartbeat(compat.trial_id(t))

    with every(HEARTBEAT_SECONDS, beat), stop_watch(sweep):
        yield


@contextlib.contextmanager
def stop_watch(sweep: Sweep) -> Iterator[None]:
    """While the block runs: once the sweep is stopped ``--now``, interrupt this
    process's main thread as Ctrl-C does (once)."""
    sent = threading.Event()

    def look() -> None:
        if not sent.is_set() and sweep.state is SweepState.STOPPING_NOW:
            sent.set()
            _thread.interrupt_main()

    with every(STOP_WATCH_SECONDS, look):
        yield


@contextlib.contextmanager
def every(seconds: float, call: Callable[[], None]) -> Iterator[None]:
    """Call ``call`` every ``seconds`` in a daemon thread until the block ends (heartbeats,
    a pool's progress); a call that raises is skipped: the next one comes on time."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            with contextlib.suppress(Exception):  # a lost beat only delays nothing
                call()

    thread = threading.Thread(target=loop, name="sweeplab-every", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs; a zombie (dead, not yet reaped by its
    parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: the state is the field after the command's closing parenthesis
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class Recovery:
    """Fails the running trials of dead workers and ends their MLflow runs.

    ``run()`` is called before every trial a worker takes; each failed trial's MLflow
    runs are looked at once per worker (``checked``), not again before every trial.
    """

    def __init__(self, sweep: Sweep) -> None:
        self.study = sweep.study
        self.storage: Any = sweep.storage
        self.tracker = sweep.tracker
        self.max_retries = sweep.exp.sweep.max_retries
        self.death_retries = sweep.exp.sweep.death_retries
        self.checked: set[int] = set()
        self._last = -math.inf

    def run(self, every: float = 0.0) -> list[int]:
        """Fail dead workers' trials; end the runs left RUNNING. Returns those trials' numbers.

        ``every``: do nothing if it ran less than that many seconds ago (its queries
        were the largest part of a worker's bookkeeping between two short trials)."""
        if time.monotonic() - self._last < every:
            return []
        self._last = time.monotonic()
        storage = self.storage
        host = socket.gethostname()
        # the reason goes first: a finished trial cannot take one afterwards
        stale = compat.stale_trial_ids(storage, self.study)
        # The Optuna backend creates a trial and records its owner under the claim lock,
        # which Recovery also holds: a running trial with no owner seen here lost its
        # worker in between (killed, or its disk full). Ray's driver records the owner
        # outside the lock, so there only the heartbeat's grace period tells.
        ownerless_dead = bool(self.study.user_attrs.get(ATTR_OWNERS_LOCKED, True))
        for t in self.study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
            who = str(t.user_attrs.get(ATTR_OWNER, ""))
            name, _, pid = who.rpartition(":")
            if name == host and pid.isdigit():
                # a live process of this host is not dead for a late heartbeat: its
                # beats wait with it while the study's database restarts (``outages``)
                if not _alive(int(pid)):
                    self._fail(compat.trial_id(t), f"worker {who} died")
            elif not who and ownerless_dead:
                self._fail(compat.trial_id(t), "its worker died before the trial started")
            elif compat.trial_id(t) in stale:
                self._fail(compat.trial_id(t), f"worker {who or '?'} died (no heartbeat)")
        return self._end_orphan_runs()

    def release(self, who: str, reason: str) -> list[int]:
        """Fail the running trials that ``who`` owns, with ``reason``, and queue them
        again as a dead worker's: a Ray driver's after a Ctrl-C or SIGTERM, which stopped
        its workers with Ray. Returns the trials whose runs were ended here."""
        for t in self.study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
            if t.user_attrs.get(ATTR_OWNER) == who:
                self._fail(compat.trial_id(t), reason)
        return self._end_orphan_runs()

    def _fail(self, trial_id: int, reason: str) -> None:
        """Record why (and queue its params again, up to ``sweep.death_retries``: the
        worker died, not the configuration), then fail the trial.

        Workers call ``run()`` under the claim lock, so one dead trial is failed (and
        retried) once, not by every worker that sees it."""
        storage = self.storage
        with contextlib.suppress(UpdateFinishedTrialError):
            storage.set_trial_user_attr(trial_id, ATTR_REASON, reason)
            self._find_run(trial_id)
            if storage.get_trial(trial_id).state == OptunaState.RUNNING:
                retry(self.study, storage, trial_id, self.death_retries, died=True)
            storage.set_trial_state_values(trial_id, state=OptunaState.FAIL)
            self._end_told_run(trial_id, reason)

    def _end_told_run(self, trial_id: int, reason: str) -> None:
        """A worker that died between ending its trial's run FINISHED and telling the
        trial (two databases, two writes) left a run that says the trial ended: the
        trial failed and runs again, so the run ends KILLED with the reason, as the
        other dead tries' do (the five kills in a row met this once in CI)."""
        run_id = self.storage.get_trial(trial_id).user_attrs.get(ATTR_RUN)
        if run_id and self.tracker.client.get_run(run_id).info.status == "FINISHED":
            self._kill_run(run_id, reason)

    def _kill_run(self, run_id: str, reason: str) -> None:
        """A dead try's run: tagged failed with ``reason``, ended KILLED."""
        self.tracker.set_tags(run_id, {TAG_STATE: TrialState.FAILED.value, TAG_REASON: reason})
        self.tracker.end_run(run_id, "KILLED")

    def _find_run(self, trial_id: int) -> None:
        """A trial whose worker died between creating its MLflow run and noting the run
        on the trial (two databases, two writes): its run, found by its tags, is noted
        now, so that it is ended KILLED and the trial names it."""
        trial = self.storage.get_trial(trial_id)
        if ATTR_RUN in trial.user_attrs:
            return
        found = self.tracker.search(
            f"tags.`{TAG_SWEEP}` = '{self.study.study_name}' "
            f"and tags.`{TAG_TRIAL}` = '{trial.number}'"
        )
        runs = [r for r in found if TAG_RESTART not in r.data.tags]  # not a restart's
        if len(runs) == 1:
            self.storage.set_trial_user_attr(trial_id, ATTR_RUN, runs[0].info.run_id)

    def _end_orphan_runs(self) -> list[int]:
        ended = []
        for t in self.study.get_trials(deepcopy=False, states=(OptunaState.FAIL,)):
            run_id = t.user_attrs.get(ATTR_RUN)
            if not run_id or t.number in self.checked:
                continue
            self.checked.add(t.number)
            run = self.tracker.client.get_run(run_id)
            if run.info.status != "RUNNING":
                continue
            reason = str(t.user_attrs.get(ATTR_REASON) or "worker died")
            nested = self.tracker.client.search_runs(
                [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
            )
            for r in [*nested, run]:
                if r.info.status == "RUNNING":
                    self._kill_run(r.info.run_id, reason)
            ended.append(t.number)
        return ended


def retry(study: optuna.Study, storage: Any, trial_id: int, limit: int, died: bool = False) -> bool:
    """Queue a failed (or failing) trial's params again if it has retries left: ``limit``
    tries that raised (``sweep.max_retries``), or, when its worker ``died``, ``limit``
    deaths (``sweep.death_retries``), each counted on its own.

    A trial that died before its first suggest has no params: its retry samples its own.
    The failed trial is marked (``sweeplab.retried_as``) and no longer counts towards
    the sweep's trials; the retry is a WAITING trial that the next ``ask`` takes.
    Call before the trial is told FAIL: Optuna refuses attributes on finished trials.
    """
    failed = storage.get_trial(trial_id)
    attempt = int(failed.user_attrs.get(ATTR_ATTEMPT, 0))
    deaths = int(failed.user_attrs.get(ATTR_DEATHS, 0))
    if (deaths if died else attempt) >= limit:
        return False
    study.enqueue_trial(
        failed.params,
        user_attrs={
            ATTR_ATTEMPT: attempt + (not died),
            ATTR_DEATHS: deaths + died,
            ATTR_RETRY_OF: failed.number,
        },
        skip_if_exists=False,
    )
    queued = study.get_trials(deepcopy=False, states=(OptunaState.WAITING,))[-1]
    storage.set_trial_user_attr(trial_id, ATTR_RETRIED, queued.number)
    return True
