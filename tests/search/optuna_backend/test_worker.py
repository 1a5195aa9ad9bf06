"""The Optuna backend's worker loop: what a worker does between its trials."""

from __future__ import annotations

import socket
import subprocess
import warnings

from optuna.trial import TrialState

from sweeplab.search import create_sweep
from sweeplab.search.claims import Recovery
from sweeplab.search.keys import ATTR_BASELINES, ATTR_OWNER, TAG_CURVE
from sweeplab.search.optuna_backend.worker import take_trials
from sweeplab.search.states import SweepState
from sweeplab.search.sweep import Work
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from tests.helpers import tiny_spec


def test_a_worker_left_with_nothing_to_claim_does_end_work_while_others_train(
    store: Store,
) -> None:
    """Of the sweep's 2 trials, one runs in another (live) worker: this one runs the
    other, then has none to claim; on its idle core it fits the sweep's baselines and
    draws its finished trial's learning curve instead of leaving them to the end. The
    sweep is not finished by it."""
    exp = spec_from_dict(
        tiny_spec(
            sweep={"trials": 2, "sampler": "random"},
            tracking={"experiment": "ahead", "baselines": True},
        )
    )
    sweep = create_sweep(exp, store=store, name="ahead")
    other = subprocess.Popen(["sleep", "60"])  # the worker that trains the trial
    try:
        with warnings.catch_warnings():  # Optuna's note: heartbeats belong to Study.optimize
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            elsewhere = sweep.study.ask()
        elsewhere.set_user_attr(ATTR_OWNER, f"{socket.gethostname()}:{other.pid}")
        take_trials(sweep, Work())
        assert Recovery(sweep).run() == []  # the other worker's trial was left to it
        (ran,) = [t for t in sweep.study.trials if t.state == TrialState.COMPLETE]
        run = sweep.tracker.client.get_run(ran.user_attrs["mlflow_run_id"])
        assert run.data.tags[TAG_CURVE] == "learning_curve.png"
        baselines = sweep.study.user_attrs[ATTR_BASELINES]
        assert {b["name"] for b in baselines} >= {"logistic"}
        logged = sweep.tracker.client.get_run(sweep.parent).data.metrics
        assert "baseline.logistic.test_acc" in logged
        assert sweep.counts.running == 1 and sweep.state is SweepState.RUNNING
    finally:
        other.kill()
        other.wait()
