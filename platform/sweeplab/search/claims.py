"""Several processes on one study: exact trial counts, heartbeats, and dead workers.

Optuna numbers trials atomically but any process may create one more than the sweep
asked for; so a worker takes a trial only under the study's **claim lock** (a
PostgreSQL advisory lock, or a file lock beside a SQLite file), after counting the
trials already finished or running. Optuna has no such lock of its own.

While a trial runs, a thread records Optuna heartbeats, and the trial carries its
owner (``host:pid``). ``recover`` fails the trials of dead workers: at once when the
owner is a dead process on this host, after the heartbeat's grace period otherwise;
their MLflow runs (and nested runs) end KILLED with the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from sweeplab.search.optuna_backend import ATTR_REASON, ATTR_RUN, HEARTBEAT_SECONDS
from sweeplab.search.trial import TAG_REASON, TAG_STATE
from sweeplab.tracking.tracker import Tracker

ATTR_OWNER = "sweeplab.owner"


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ClaimLock:
    """The lock under which a worker counts the study's trials and creates the next one."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.url = storage_url
        digest = hashlib.sha256(study_name.encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._engine: Any = None
        if storage_url.startswith("sqlite:///"):
            db = Path(storage_url.removeprefix("sqlite:///"))
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
            self.file: Path | None = db.with_name(f"{db.name}.claim-{safe}.lock")
        else:
            self.file = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.file is not None:
            with self.file.open("a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        elif self.url.startswith("postgresql"):
            from sqlalchemy import text

            with self._connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                    conn.commit()
        else:  # other databases: no lock, counts may overshoot by the number of workers
            yield

    def _connect(self) -> Any:
        if self._engine is None:
            from sqlalchemy import create_engine

            self._engine = create_engine(self.url, pool_size=1, max_overflow=0)
        return self._engine.connect()


@contextlib.contextmanager
def heartbeat(storage: Any, trial: optuna.Trial) -> Iterator[None]:
    """Record Optuna heartbeats for ``trial`` until the block ends (a daemon thread)."""
    stop = threading.Event()
    trial_id = trial._trial_id  # Optuna's own heartbeat thread uses the same id

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):  # a lost beat only delays nothing
                storage.record_heartbeat(trial_id)

    storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, name="sweeplab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(study: optuna.Study, tracker: Tracker) -> list[int]:
    """Fail the running trials of dead workers; end their MLflow runs. Returns their numbers."""
    storage = study._storage
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat older than the grace period
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = str(t.user_attrs.get(ATTR_OWNER, ""))
        name, _, pid = who.rpartition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(UpdateFinishedTrialError):
                storage.set_trial_user_attr(t._trial_id, ATTR_REASON, f"worker {who} died")
                storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
    return _end_orphan_runs(study, tracker)


def _end_orphan_runs(study: optuna.Study, tracker: Tracker) -> list[int]:
    """End the MLflow runs (and nested runs) still RUNNING of trials that are finished."""
    ended = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = t.user_attrs.get(ATTR_RUN)
        if not run_id:
            continue
        run = tracker.client.get_run(run_id)
        if run.info.status != "RUNNING":
            continue
        reason = str(t.user_attrs.get(ATTR_REASON) or "worker died (no heartbeat)")
        if ATTR_REASON not in t.user_attrs:
            with contextlib.suppress(Exception):
                study._storage.set_trial_user_attr(t._trial_id, ATTR_REASON, reason)
        nested = tracker.client.search_runs(
            [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
        )
        for r in [*nested, run]:
            if r.info.status == "RUNNING":
                tracker.set_tags(r.info.run_id, {TAG_STATE: "failed", TAG_REASON: reason})
                tracker.end_run(r.info.run_id, "KILLED")
        ended.append(t.number)
    return ended
