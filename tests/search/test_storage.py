"""The study database's calls under a Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading

import optuna
import pytest

from sweeplab.interrupts import Terminated, signals_as_interrupts
from sweeplab.search.storage import open_storage
from sweeplab.store import Store


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_sigterm_during_a_write_comes_after_it(store: Store) -> None:
    """A SIGTERM that comes while a trial's value is being written (here: while the
    write waits for another worker's) lets the write finish, then interrupts; the file
    is left unlocked for the other workers and for this process's next write."""
    store.prepare()
    storage = open_storage(store.storage_url)
    study = optuna.create_study(study_name="interrupted", storage=storage)
    trial = study.ask()
    other = sqlite3.connect(store.root / "optuna.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another worker's write: this one waits for it
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    threading.Timer(1.5, other.execute, ("COMMIT",)).start()
    with pytest.raises(Terminated), signals_as_interrupts():
        storage.set_trial_intermediate_value(trial._trial_id, 3, 0.5)
    other.execute("BEGIN IMMEDIATE")  # no lock left behind: another process writes at once
    other.execute("COMMIT")
    other.close()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # and so does this one
    (stored,) = study.get_trials(deepcopy=False)
    assert stored.intermediate_values == {3: 0.5}
    assert stored.state == optuna.trial.TrialState.FAIL
