"""A database server that stops answering mid-sweep: waited for within a bound, a
statement it dropped made again, two agents that outlive a real PostgreSQL restart."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from sqlalchemy import create_engine, text

from sweeplab.compat import trial_id
from sweeplab.outages import DatabaseLost, wait_for_server
from sweeplab.search.storage import open_storage
from sweeplab.store import Store
from tests.battery import load, popen, wait_for_study
from tests.helpers import (
    Postgres,
    free_port,
    postgres_server,
    start_mlflow_server,
    stop_server,
    tiny_spec,
)


def test_a_database_that_stays_away_is_named_after_the_wait(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SWEEPLAB_SERVICE_WAIT", "2")
    engine = create_engine(f"postgresql+psycopg2://sweeplab@127.0.0.1:{free_port()}/gone")
    wait_for_server(engine, "the study database")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "sweeplab.outages"), pytest.raises(DatabaseLost) as lost:
        engine.connect()
    assert 2 <= time.monotonic() - started < 10
    message = str(lost.value)
    assert "the study database at postgresql+psycopg2://sweeplab@127.0.0.1:" in message
    assert "not back within 2 s" in message and "sweeplab resume" in message
    waits = [r.getMessage() for r in caplog.records if "waiting up to 2 s" in r.getMessage()]
    assert len(waits) == 1  # said once, not once a second


def test_a_bad_service_wait_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from sweeplab.store import StoreError

    monkeypatch.setenv("SWEEPLAB_SERVICE_WAIT", "soon")
    engine = create_engine(f"postgresql+psycopg2://sweeplab@127.0.0.1:{free_port()}/x")
    with pytest.raises(StoreError, match="SWEEPLAB_SERVICE_WAIT must be a number"):
        wait_for_server(engine, "the study database")


def test_a_report_whose_connection_the_server_drops_is_made_again(postgres: Postgres) -> None:
    """The server ends the connection an Optuna write is running on (as a restart does):
    the write is made again on a new connection, and the trial goes on."""
    url = postgres.create("dropped")
    study = optuna.create_study(study_name="dropped", storage=open_storage(url))
    trial = study.ask()
    admin = create_engine(postgres.url("dropped"), isolation_level="AUTOCOMMIT")
    with admin.connect() as holder, admin.connect() as killer:
        # hold the trial's row, so that Optuna's write waits on it mid-statement
        holder.execute(text("BEGIN"))
        holder.execute(
            text("SELECT 1 FROM trials WHERE trial_id = :t FOR UPDATE"), {"t": trial_id(trial)}
        )
        errors: list[BaseException] = []

        def report() -> None:
            try:
                trial.report(0.5, step=3)
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=report)
        writer.start()
        waiting = (
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = 'dropped' AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 30
        while not (pids := killer.execute(text(waiting)).scalars().all()):
            assert time.monotonic() < deadline and writer.is_alive(), errors
            time.sleep(0.05)
        killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]})
        holder.execute(text("ROLLBACK"))
        writer.join(timeout=30)
    admin.dispose()
    assert not errors, errors
    assert study.trials[0].intermediate_values == {3: 0.5}


@pytest.mark.distributed
def test_two_agents_wait_out_a_postgresql_restart_and_lose_nothing(
    tmp_path: Any, write_spec: Any
) -> None:
    """PostgreSQL stopped for 20 s under a sweep and an agent, both in a trial, then
    started again: both finish with exactly the sweep's trials, none failed, doubled or
    left RUNNING, each epoch once in each trial's curve."""
    if shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with postgres_server() as server:
        storage = server.create("restart_optuna")
        store = Store.resolve(tmp_path / "store", None, storage)  # runs: the shared folder
        args = ["--store", str(store.root), "--storage", storage, "-q"]
        spec = write_spec(
            tiny_spec(
                name="restart",
                train={"max_epochs": 60},
                sweep={"trials": 10, "sampler": "random", "seed": 0},
                tracking={"experiment": "restart"},
            )
        )
        first = popen("sweep", str(spec), "--no-smoke", *args)
        study = wait_for_study(store, "restart", first)
        agent = popen("agent", "restart", *args)
        deadline = time.monotonic() + 180
        while True:  # both processes in a trial: stop the server under them
            owners = {
                t.user_attrs.get("sweeplab.owner")
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if "mlflow_run_id" in t.user_attrs
            }
            if len(owners) == 2:
                break
            for proc in (first, agent):  # what an early end printed, to say why
                assert proc.poll() is None, f"a process ended early: {proc.communicate()}"
            assert time.monotonic() < deadline, "the two never ran trials together"
            time.sleep(0.05)
        server.stop()
        time.sleep(20)
        server.start()
        outputs = [p.communicate(timeout=600) for p in (first, agent)]
        for proc, (_out, err) in zip((first, agent), outputs, strict=True):
            assert proc.returncode == 0, err
            assert "waiting up to 120 s" in err and "answers again" in err, err
        trials = load(store, "restart").get_trials()
    assert sorted(t.number for t in trials) == list(range(10))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [
        (t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials
    ]
    client = MlflowClient(store.tracking_uri)
    for t in trials:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert steps and len(steps) == len(set(steps)), (t.number, steps)


@pytest.mark.distributed
def test_a_sweep_outlives_its_tracking_server_gone_for_a_minute(
    tmp_path: Any, write_spec: Any
) -> None:
    """The MLflow tracking server stopped for 60 s during the sweep's last trial and
    started again on the same port: MLflow's client retries, the trial's points wait in
    its buffer, the sweep finishes and registers its best model once (its registration
    came during or after the outage), and each trial's run holds each epoch once."""
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    server, url = start_mlflow_server(backend, tmp_path / "artifacts")
    port = int(url.rsplit(":", 1)[1])
    try:
        store = Store.resolve(tmp_path / "store", url, None)
        spec = write_spec(
            tiny_spec(
                name="away",
                train={"max_epochs": 100},
                sweep={"trials": 4, "sampler": "random", "seed": 0, "pruner": "none"},
                tracking={"experiment": "away", "register_as": "away-model"},
            )
        )
        args = ("--store", str(store.root), "--tracking-uri", url, "--no-smoke", "-q")
        proc = popen("sweep", str(spec), *args)
        study = wait_for_study(store, "away", proc)
        deadline = time.monotonic() + 180
        while True:  # three trials done, the last running: stop the server under it
            states = [t.state for t in study.get_trials(deepcopy=False)]
            if states.count(TrialState.COMPLETE) == 3 and TrialState.RUNNING in states:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the sweep never reached its last trial"
            time.sleep(0.05)
        stop_server(server)
        time.sleep(60)
        server, _ = start_mlflow_server(backend, tmp_path / "artifacts", port)
        _out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        trials = load(store, "away").get_trials()
        assert sorted(t.number for t in trials) == list(range(4))
        assert all(t.state == TrialState.COMPLETE for t in trials)
        client = MlflowClient(url, registry_uri=url)
        for t in trials:
            run = client.get_run(t.user_attrs["mlflow_run_id"])
            assert run.info.status == "FINISHED"
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
            # each epoch once, none lost: 0, 1, … up to its last
            assert steps and sorted(steps) == list(range(len(steps))), (t.number, steps)
        assert len(client.search_model_versions("name = 'away-model'")) == 1
    finally:
        stop_server(server)
