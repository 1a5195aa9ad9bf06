"""Local workers (``pool``): what a spawned worker does once its own trials are done."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import warnings

from optuna.trial import TrialState

from sweeplab.search import create_sweep
from sweeplab.search.analysis.plots import MANIFEST, TAG_PLOTS
from sweeplab.search.keys import ATTR_OWNER
from sweeplab.search.lifecycle import plots_ahead
from sweeplab.search.optuna_backend.pool import _until_the_others_end
from sweeplab.search.optuna_backend.worker import take_trials
from sweeplab.search.states import SweepState
from sweeplab.search.sweep import Work
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from tests.helpers import tiny_spec


def test_a_worker_done_first_waits_runs_a_dead_workers_trial_then_draws_the_plots(
    store: Store,
) -> None:
    """Of 2 trials, one runs in another worker: this one runs the other, then waits
    (drawing nothing: a trial still runs). The other worker dies: its trial is failed
    and queued again, and the waiting worker runs it. Every trial has ended: it draws
    the sweep's plots, which the process finishing the sweep will find current."""
    exp = spec_from_dict(
        tiny_spec(
            sweep={"trials": 2, "sampler": "random"},
            tracking={"experiment": "waits", "baselines": True, "report": True},
        )
    )
    sweep = create_sweep(exp, store=store, name="waits")
    other = subprocess.Popen(["sleep", "60"])  # the worker that trains the other trial
    try:
        with warnings.catch_warnings():  # Optuna's note: heartbeats belong to Study.optimize
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            elsewhere = sweep.study.ask()
        elsewhere.set_user_attr(ATTR_OWNER, f"{socket.gethostname()}:{other.pid}")
        ended: list[bool] = []

        def spawned_worker() -> None:
            mine = Work(workers=2)
            take_trials(sweep, mine)
            ended.append(_until_the_others_end(sweep, mine))
            plots_ahead(sweep)

        worker = threading.Thread(target=spawned_worker)
        worker.start()
        deadline = time.monotonic() + 120
        while sweep.counts.complete < 1:
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.2)
        time.sleep(2.5)  # longer than RECOVERY_SECONDS: the live worker's trial is kept
        assert worker.is_alive() and sweep.counts.running == 1
        folder = store.root / "compare" / "waits"
        assert not (folder / MANIFEST).exists()
    finally:
        other.kill()
        other.wait()
    worker.join(120)
    assert not worker.is_alive() and ended == [True]
    trials = sweep.study.trials
    assert trials[elsewhere.number].state == TrialState.FAIL
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2  # its retry ran here
    assert (folder / MANIFEST).is_file() and (folder / "report.html").is_file()
    assert TAG_PLOTS in sweep.tracker.client.get_run(sweep.parent).data.tags
    assert sweep.state is SweepState.RUNNING  # the pool's own process finishes it
