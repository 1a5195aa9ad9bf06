"""sweeplab push: a finished sweep copied to another store, whole, once.

The checks compare both sides as a user would: the study's trials, every run's params,
tags and metric histories, every artifact's bytes, the versions and their aliases."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient

from sweeplab.store import Store
from tests.helpers import (
    Finished,
    Postgres,
    call,
    free_port,
    in_process,
    start_mlflow_server,
    start_server,
    stop_server,
    sweeplab,
    tiny_spec,
)

PUSH_TAGS = {"sweeplab.pushed_from", "sweeplab.pushed"}
MAPPED_TAGS = {"mlflow.parentRunId", "sweeplab.best_run_id"}


def _runs(store: Store, experiment: str, sweep: str) -> list[Any]:
    client = MlflowClient(store.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return client.search_runs(
        [found.experiment_id], f"tags.`sweeplab.sweep` = '{sweep}'", max_results=5000
    )


def _files(client: MlflowClient, run_id: str) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(client.download_artifacts(run_id, "", tmp))
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _histories(client: MlflowClient, run: Any) -> dict[str, list[tuple[int, float, int]]]:
    return {
        key: sorted(
            (m.step, m.value, m.timestamp) for m in client.get_metric_history(run.info.run_id, key)
        )
        for key in run.data.metrics
    }


def assert_pushed(source: Store, target: Store, sweep: str, experiment: str) -> dict[str, str]:
    """Both sides hold the same sweep; returns source run id → target run id."""
    src, dst = MlflowClient(source.tracking_uri), MlflowClient(target.tracking_uri)
    ours, theirs = _runs(source, experiment, sweep), _runs(target, experiment, sweep)
    assert len(theirs) == len(ours)  # nothing duplicated
    ids = {r.data.tags["sweeplab.pushed_from"]: r.info.run_id for r in theirs}
    assert set(ids) == {r.info.run_id for r in ours}
    by_id = {r.info.run_id: r for r in theirs}
    for run in ours:
        copy = by_id[ids[run.info.run_id]]
        assert copy.data.params == run.data.params
        assert copy.info.status == run.info.status and copy.info.run_name == run.info.run_name
        assert copy.info.start_time == run.info.start_time
        mine = {k: v for k, v in run.data.tags.items() if k not in MAPPED_TAGS}
        copied = {k: v for k, v in copy.data.tags.items() if k not in MAPPED_TAGS | PUSH_TAGS}
        assert copied == mine
        for key in MAPPED_TAGS & set(run.data.tags):
            assert copy.data.tags[key] == ids[run.data.tags[key]]
        assert _histories(dst, copy) == _histories(src, run)
        assert _files(dst, copy.info.run_id) == _files(src, run.info.run_id)
    a = optuna.load_study(study_name=sweep, storage=source.storage_url)
    b = optuna.load_study(study_name=sweep, storage=target.storage_url)
    assert len(b.trials) == len(a.trials)
    for t, u in zip(a.trials, b.trials, strict=True):
        assert (u.number, u.state, u.params, u.values) == (t.number, t.state, t.params, t.values)
        assert u.intermediate_values == t.intermediate_values
        assert u.datetime_start == t.datetime_start
        assert u.user_attrs == {**t.user_attrs, "mlflow_run_id": ids[t.user_attrs["mlflow_run_id"]]}
    assert b.user_attrs["sweeplab.parent_run_id"] == ids[a.user_attrs["sweeplab.parent_run_id"]]
    return ids


def _versions(store: Store, name: str) -> dict[int, Any]:
    client = MlflowClient(store.tracking_uri)
    return {int(v.version): v for v in client.search_model_versions(f"name = '{name}'")}


def _sweep_versions(store: Store, sweep: str) -> int:
    """The model versions registered from ``sweep``'s runs, under any name (the shared
    sweep may have been promoted under other names by tests that ran earlier)."""
    client = MlflowClient(store.tracking_uri)
    return sum(
        v.tags.get("sweeplab.sweep") == sweep
        for model in client.search_registered_models()
        for v in client.search_model_versions(f"name = '{model.name}'")
    )


def test_push_copies_a_sweep_to_another_store_once(finished: Finished, tmp_path: Path) -> None:
    target = Store.resolve(tmp_path / "team")
    versions = _sweep_versions(finished.store, finished.sweep)
    assert versions >= 1
    where = ["--store", str(finished.store.root), "--to-store", str(target.root)]
    first = in_process("push", finished.sweep, *where)
    assert first.returncode == 0, first.stderr
    assert "runs: 4 copied" in first.stdout and "trials: 3 (copied)" in first.stdout
    assert f"model versions: {versions} copied" in first.stdout
    ids = assert_pushed(finished.store, target, finished.sweep, finished.experiment)

    # the sweep's registered version (not the train run's), its lineage run mapped
    theirs = _versions(target, finished.model)
    assert len(theirs) == 1
    version = theirs[1]
    good = _versions(finished.store, finished.model)[finished.good]
    assert version.run_id == ids[good.run_id]
    assert version.tags["sweeplab.run_id"] == ids[good.tags["sweeplab.run_id"]]
    assert version.tags["sweeplab.spec"] == good.tags["sweeplab.spec"]
    parent = MlflowClient(target.tracking_uri).get_run(ids[_parent(finished)])
    source = MlflowClient(finished.store.tracking_uri).get_run(_parent(finished))
    assert parent.data.tags["sweeplab.registered"] == source.data.tags["sweeplab.registered"]
    assert source.data.tags["sweeplab.registered"].endswith("/1")  # numbered as the target's

    again = in_process("push", finished.sweep, *where)
    assert again.returncode == 0, again.stderr
    assert "runs: 0 copied, 4 already there" in again.stdout
    assert "trials: 3 (unchanged)" in again.stdout and f"{versions} already there" in again.stdout
    assert assert_pushed(finished.store, target, finished.sweep, finished.experiment) == ids
    assert len(_versions(target, finished.model)) == 1

    shown = in_process("status", finished.sweep, "--store", str(target.root))
    assert shown.returncode == 0 and "3 complete" in shown.stdout, shown.stderr


def _parent(finished: Finished) -> str:
    study = optuna.load_study(study_name=finished.sweep, storage=finished.store.storage_url)
    return str(study.user_attrs["sweeplab.parent_run_id"])


def test_push_refuses_a_running_sweep_and_writes_nothing(
    finished: Finished, tmp_path: Path
) -> None:
    laptop = tmp_path / "laptop"
    shutil.copytree(finished.store.root, laptop)
    study = optuna.load_study(study_name=finished.sweep, storage=f"sqlite:///{laptop}/optuna.db")
    study.ask()  # a trial in progress
    result = in_process(
        "push", finished.sweep, "--store", str(laptop), "--to-store", str(tmp_path / "team")
    )
    assert result.returncode == 1
    assert f"sweep '{finished.sweep}' has 1 running trial(s)" in result.stderr
    assert not (tmp_path / "team").exists()


def test_push_refuses_a_name_taken_by_another_sweep(finished: Finished, tmp_path: Path) -> None:
    team = Store.resolve(tmp_path / "team")
    team.root.mkdir()
    theirs = optuna.create_study(study_name=finished.sweep, storage=team.storage_url)
    theirs.set_user_attr("sweeplab.spec", "{}")  # a sweep of that name run there
    result = in_process(
        "push", finished.sweep, "--store", str(finished.store.root), "--to-store", str(team.root)
    )
    assert result.returncode == 1
    assert f"already has a sweep named '{finished.sweep}' that is not this one" in result.stderr
    assert not (team.root / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ([], "say where to push"),
        (["--to-tracking-uri", "http://127.0.0.1:1"], "go together"),
        (["--to-tracking-uri", "sqlite:///x.db", "--to-storage", "sqlite:///y.db"], "--to-store"),
    ],
)
def test_push_says_what_its_options_lack(options: list[str], words: str, tmp_path: Path) -> None:
    result = in_process("push", "any", "--store", str(tmp_path), *options)
    assert result.returncode == 2 and words in result.stderr
    assert not list(tmp_path.iterdir())


# a sweep with restarts, a model server and PostgreSQL (about two minutes): CI runs it
# with the distributed tests, to keep `make test` under its 15 minutes
@pytest.mark.distributed
def test_push_to_a_server_survives_a_kill_and_serves_there(
    postgres: Postgres, tmp_path: Path
) -> None:
    from sweeplab.search import run_sweep
    from sweeplab.spec import spec_from_dict

    laptop = Store.resolve(tmp_path / "laptop")
    exp = spec_from_dict(
        tiny_spec(
            train={"max_epochs": 3},
            search_space={"train.lr": {"type": "float", "low": 5e-3, "high": 5e-2, "log": True}},
            sweep={"trials": 4, "sampler": "random", "restarts": 2},
            tracking={"experiment": "pushing", "register_as": "pushing"},
        )
    )
    run_sweep(exp, laptop, name="pushing")
    promoted = sweeplab(
        "models", "promote", "pushing", "--version", "1", "--store", str(laptop.root)
    )
    assert promoted.returncode == 0, promoted.stderr

    server, tracking = start_mlflow_server(
        postgres.create("push_mlflow"), tmp_path / "server-artifacts"
    )
    team = Store(tmp_path / "unused", tracking, postgres.create("push_optuna"))
    to = ["--to-tracking-uri", team.tracking_uri, "--to-storage", team.storage_url]
    push = [sys.executable, "-m", "sweeplab", "push", "pushing", "--store", str(laptop.root), *to]
    try:
        # killed once its first runs are on the server, before the study is there
        proc = subprocess.Popen(push, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        client = MlflowClient(tracking)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            experiment = client.get_experiment_by_name("pushing")
            if experiment and len(client.search_runs([experiment.experiment_id])) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the push ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert "pushing" not in optuna.get_all_study_names(team.storage_url)

        finish = subprocess.run(push, capture_output=True, text=True)
        assert finish.returncode == 0, finish.stderr
        assert "trials: 4 (copied)" in finish.stdout, finish.stdout
        ids = assert_pushed(laptop, team, "pushing", "pushing")
        again = subprocess.run(push, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert "runs: 0 copied, 13 already there" in again.stdout, again.stdout
        assert assert_pushed(laptop, team, "pushing", "pushing") == ids
        assert list(_versions(team, "pushing")) == [1]
        assert MlflowClient(tracking).get_registered_model("pushing").aliases == {"champion": "1"}
        _use_the_server(team, tmp_path)
    finally:
        stop_server(server)


def _use_the_server(team: Store, tmp_path: Path) -> None:
    """status, compare, models show and serve NAME@ALIAS, against the server alone."""
    nowhere = ["--store", str(tmp_path / "nothing-here")]
    status = sweeplab("status", "pushing", "--storage", team.storage_url, *nowhere)
    assert status.returncode == 0 and "4 complete" in status.stdout, status.stderr
    where = ["--tracking-uri", team.tracking_uri, *nowhere]
    compare = sweeplab(
        "compare", "pushing", "--format", "json", "--storage", team.storage_url, *where
    )
    assert compare.returncode == 0, compare.stderr
    assert len(json.loads(compare.stdout)["trials"]) == 4
    shown = sweeplab("models", "show", "pushing", *where)
    assert shown.returncode == 0 and "@champion" in shown.stdout, shown.stderr
    assert "promoted" in shown.stdout
    port = free_port()
    command = [sys.executable, "-m", "sweeplab", "serve", "pushing@champion"]
    command += ["--port", str(port), "--tracking-uri", team.tracking_uri]
    proc = start_server(command, f"http://127.0.0.1:{port}/health")
    try:
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        code, body = call(f"http://127.0.0.1:{port}/predict", json.dumps({"rows": rows}).encode())
        assert code == 200 and len(body["predictions"]) == 2
    finally:
        stop_server(proc)
