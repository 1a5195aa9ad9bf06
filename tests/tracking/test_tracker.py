"""The tracker's writes under a Ctrl-C."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading

import pytest

from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker


def test_a_ctrl_c_during_a_write_comes_after_it(store: Store, ctrl_c: None) -> None:
    """A Ctrl-C that comes while a trial's run is being written lets the write finish
    (a write cut in MLflow's session is lost, and left the SQLite file locked for the
    process's next write: its run's ending), then interrupts."""
    tracker = Tracker(store, "interrupted")
    run = tracker.start_run("t0")
    other = sqlite3.connect(store.root / "mlflow.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another worker's write: this one waits for it
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    threading.Timer(1.5, other.execute, ("COMMIT",)).start()
    with pytest.raises(KeyboardInterrupt):
        tracker.set_tags(run, {"points": "kept"})
    other.close()
    tracker.end_run(run, "KILLED")  # the next write: no lock left behind
    finished = tracker.client.get_run(run)
    assert finished.data.tags["points"] == "kept" and finished.info.status == "KILLED"
