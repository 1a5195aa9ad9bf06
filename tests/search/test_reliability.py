"""The reliability battery, fast cases (the long ones are in test_soak.py, `make soak`):
kill -9 five times in a row, fuzzed specs, corrupt stores, missing artifacts, a full disk."""

from __future__ import annotations

import copy
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sweeplab.cli import app
from sweeplab.store import Store
from tests.battery import (
    assert_nothing_lost,
    fuzz_bases,
    kill_and_resume,
    killable_spec,
    load,
    mutate,
    mutations,
    shorten,
)
from tests.helpers import sweeplab

runner = CliRunner()


# five kill -9 and resumes in a row (over a minute): CI runs it with the distributed
# tests (kills), to keep `make test` under its 15 minutes
@pytest.mark.distributed
def test_five_kills_in_a_row_then_resume_lose_nothing(store: Store, write_spec: Any) -> None:
    spec = write_spec(killable_spec("battered", trials=12))
    kills = kill_and_resume(store, spec, "battered", kills=5, seed=8, window=(2.0, 6.0))
    assert kills.delivered == 5
    assert kills.killed_trials, "no kill landed mid-trial"
    assert_nothing_lost(store, "battered", "battered", 12)
    from mlflow import MlflowClient

    client = MlflowClient(store.tracking_uri, registry_uri=store.tracking_uri)
    study = load(store, "battered")
    for number, run_id in kills.killed_trials.items():  # failed as dead, its run KILLED,
        trial = study.trials[number]  # and its configuration run again
        assert trial.state.name == "FAIL" and "died" in trial.user_attrs["fail_reason"]
        retry = study.trials[trial.user_attrs["sweeplab.retried_as"]]
        # a trial killed between its ask and its first suggest had no configuration
        # yet: its retry samples one of its own, like any new trial
        assert retry.params == trial.params or (not trial.params and retry.params)
        if run_id is not None:
            assert client.get_run(run_id).info.status == "KILLED"
    assert len(client.search_model_versions("name = 'battered-model'")) == 1
    again = sweeplab("resume", "battered", "--store", str(store.root), "-q")
    assert again.returncode == 0 and "nothing to run" in again.stdout
    assert len(load(store, "battered").trials) == 12 + len(kills.killed_trials)


# A path in an error line: "error: FILE: dotted.path: message" (or the --set / --name
# option that caused it).
PATH_IN_ERROR = re.compile(r"^error: (\S+: )?[\w\-\[\].']+: .+", re.MULTILINE)


def check_fuzzed(base: dict[str, Any], steps: list[Any], tally: dict[str, int]) -> None:
    """Either the sweep runs (exit 0, its trials all finished) or it is refused with exit
    2 and a message naming the path, no traceback, and nothing written."""
    spec = copy.deepcopy(base)
    done = mutate(spec, steps)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "spec.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        check = runner.invoke(app, ["validate", str(path)])
        if check.exit_code == 0:
            shorten(spec)
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
        store = folder / "store"
        result = runner.invoke(app, ["sweep", str(path), "--store", str(store), "-q"])
        what = f"mutations {done}: exit {result.exit_code}\n{result.output[-3000:]}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(what) from result.exception
        assert "Traceback" not in result.output, what
        if result.exit_code == 0:
            tally["run"] += 1
            assert "Sweep " in result.output and " finished: " in result.output, what
        else:
            tally["rejected"] += 1
            assert result.exit_code == 2, what
            assert PATH_IN_ERROR.search(result.output), what
            assert sorted(p.name for p in folder.iterdir()) == ["spec.yaml"], what


def fuzz(examples: int, **options: Any) -> dict[str, int]:
    """Run ``examples`` fuzzed specs through ``check_fuzzed``; how many ran and how many
    were rejected (counted here, whatever else runs before or after)."""
    tally = {"run": 0, "rejected": 0}

    @settings(
        max_examples=examples,
        deadline=None,
        # no shrinking: a failure prints its mutations, and shrinking a sweep takes minutes
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
        **options,
    )
    @given(steps=mutations(), which=st.integers(0, 1))
    def one(steps: list[Any], which: int) -> None:
        check_fuzzed(fuzz_bases()[which], steps, tally)

    one()
    return tally


def test_fuzzed_specs_run_or_are_rejected_with_a_path() -> None:
    """Each fuzzed spec runs or is refused with its path; together they reach both."""
    tally = fuzz(int(os.environ.get("SWEEPLAB_FUZZ_EXAMPLES", "15")), derandomize=True)
    assert tally["run"] >= 1 and tally["rejected"] >= 1, tally


# --- damaged stores, missing files, a version deleted under a served alias ------------


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "header overwritten":
        path.write_bytes(b"not a database" * 8 + data[112:])
    else:  # "pages overwritten": the header intact, every page after the first garbage
        page = int.from_bytes(data[16:18], "big")
        path.write_bytes(data[:page] + bytes(range(256)) * ((len(data) - page) // 256))


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


DAMAGES = ["truncated", "emptied", "header overwritten", "pages overwritten"]


@pytest.fixture(scope="module")
def served_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store with a finished sweep ("kept") and two versions of model "kept-model"."""
    from sweeplab.search import run_sweep, train_once
    from sweeplab.spec import spec_from_dict
    from tests.helpers import tiny_spec

    store = Store.resolve(tmp_path_factory.mktemp("kept") / "store")
    tracking = {"experiment": "kept", "register_as": "kept-model"}
    run_sweep(spec_from_dict(tiny_spec(name="kept", tracking=tracking)), store)
    train_once(spec_from_dict(tiny_spec(tracking=tracking)), store, register_as="kept-model")
    return store


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("which", ["optuna.db", "mlflow.db"])
def test_a_damaged_store_file_stops_each_command_with_a_clear_error(
    served_store: Store, tmp_path: Path, which: str, how: str
) -> None:
    import shutil

    root = tmp_path / "store"
    shutil.copytree(served_store.root, root)
    _damage(root / which, how)
    before = _sha(root / which)
    drawn = sorted((root / "compare").rglob("*"))  # the sweep's end drew its plots there
    spec = tmp_path / "spec.yaml"
    from tests.helpers import tiny_spec

    spec.write_text(yaml.safe_dump(tiny_spec(name="kept", tracking={"experiment": "kept"})))
    commands = {  # which command reads which file
        "optuna.db": [["status", "kept"], ["resume", "kept"], ["compare", "kept", "--no-plots"]],
        "mlflow.db": [["models", "list"], ["models", "show", "kept-model"], ["ui"]],
    }[which]
    if how != "emptied":  # SQLite creates an empty file first: a new sweep may fill it
        commands.append(["sweep", str(spec), "--no-smoke", "-q"])
    for command in commands:
        result = runner.invoke(app, [*command, "--store", str(root)])
        said = result.output
        assert result.exit_code == 1, (command, result.exit_code, said[-2000:])
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        ), (command, said)
        assert "Traceback" not in said
        if how == "pages overwritten":  # found before the command (or while it reads)
            assert "corrupt" in said, (command, said)
        else:  # found from the header, before anything is opened
            assert f"{root / which} is " in said and "changed nothing" in said, (command, said)
        assert _sha(root / which) == before, f"{command} wrote to the damaged file"
    assert sorted((root / "compare").rglob("*")) == drawn  # no command drew a plot


def test_a_served_alias_outlives_missing_files_and_a_deleted_version(served_store: Store) -> None:
    """Last in the file: it deletes from ``served_store``. The service keeps answering
    with the version it has, says what went wrong once per problem (no retry storm), and
    a fresh start on the broken reference fails with a message."""
    import shutil
    import time
    import urllib.parse

    from sweeplab.registry.models import client_for
    from sweeplab.registry.promote import promote
    from tests.helpers import call, free_port, in_process, server_output, start_server, stop_server

    uri, root = served_store.tracking_uri, str(served_store.root)
    client = client_for(uri)
    promote(uri, "kept-model", 2, "live", force=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "sweeplab", "serve", "kept-model@live", "--port", str(port)]
    command += ["--store", root, "--follow-alias", "--poll-seconds", "0.2"]
    command += ["--allowed-hosts", "models.example"]
    proc = start_server(command, f"{base}/health")
    row = b'{"rows": [[5.1, 3.5, 1.4, 0.2]]}'
    try:
        assert call(f"{base}/health", headers={"Host": "models.example"})[0] == 200
        for foreign in ("attacker.example", "models.example.attacker.example"):
            assert call(f"{base}/health", headers={"Host": foreign})[0] == 400
        first = client.get_model_version("kept-model", "1")
        shutil.rmtree(urllib.parse.urlparse(first.source).path)  # version 1's files go
        # moved by hand (sweeplab's promote would refuse: it scores the version first)
        client.set_registered_model_alias("kept-model", "live", "1")
        time.sleep(2.5)  # a dozen polls
        assert call(f"{base}/predict", row)[1]["version"] == 2
        client.delete_model_version("kept-model", "1")  # the alias goes with it
        time.sleep(2.5)
        assert call(f"{base}/health") == (200, {"status": "ok", "version": 2})
        assert call(f"{base}/predict", row)[0] == 200
        assert proc.poll() is None
    finally:
        stop_server(proc)
    said = server_output(proc)
    assert "Traceback" not in said
    warnings = [line for line in said.splitlines() if line.startswith("warning: could not")]
    assert len(warnings) == 2, said  # one per problem, not one per poll
    assert "cannot be read" in warnings[0] and "still serving version 2" in warnings[0]
    assert "does not exist" in warnings[1] or "no alias" in warnings[1], warnings[1]
    for ref in ("kept-model@live", "kept-model/1"):
        out = in_process("serve", ref, "--store", root, "--port", str(free_port()))
        assert out.returncode == 1 and "does not exist" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


# --- a full disk, a read-only store ------------------------------------------------------


# a sweep stopped by a full disk, then resumed (30 s): CI runs it with the distributed
# tests, to keep `make test` under its 15 minutes
@pytest.mark.distributed
def test_a_full_disk_stops_the_sweep_with_its_state_saved_then_resume_finishes(
    tmp_path: Path, write_spec: Any
) -> None:
    from tests.battery import fill, mount_tmpfs, popen, unmount, wait_for_study

    disk = tmp_path / "disk"
    mount_tmpfs(disk, "32m")
    try:
        store = Store.resolve(disk / "store")
        spec = write_spec(killable_spec("full", trials=8, epochs=10, register=False))
        refused = runner.invoke(app, ["sweep", str(spec), "--store", str(store.root), "-q"])
        assert refused.exit_code == 1 and "a sweep needs at least 64 MB" in refused.output
        assert not store.root.exists()  # refused before anything was created

        os.environ["SWEEPLAB_MIN_FREE_MB"] = "0"  # inherited by the sweep process
        try:
            proc = popen("sweep", str(spec), "--store", str(store.root), "--no-smoke", "-q")
        finally:
            del os.environ["SWEEPLAB_MIN_FREE_MB"]
        study = wait_for_study(store, "full", proc)
        while sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)) < 2:
            assert proc.poll() is None, proc.communicate()
        filler = fill(disk)  # another program takes the rest of the disk
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 1, stderr[-3000:]
        assert "Traceback" not in stderr
        assert "the disk holding the store is full" in stderr and "resume full" in stderr
        trials = load(store, "full").trials
        saved = {t.number: t.value for t in trials if t.state.name == "COMPLETE"}
        assert len(saved) >= 2

        filler.unlink()  # space again: resume finishes the sweep
        env = {**os.environ, "SWEEPLAB_MIN_FREE_MB": "0"}
        out = sweeplab("resume", "full", "--store", str(store.root), "-q", env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        assert_nothing_lost(store, "full", "full", 8)
        for number, value in saved.items():  # the trials done before the disk filled stay
            assert load(store, "full").trials[number].value == value
    finally:
        unmount(disk)


def test_a_read_only_store_is_refused_before_anything_runs(tmp_path: Path, write_spec: Any) -> None:
    from tests.battery import mount_tmpfs, remount, unmount

    disk = tmp_path / "disk"
    mount_tmpfs(disk, "100m")
    try:
        root = str(disk / "store")
        spec = write_spec(killable_spec("ro", trials=1, epochs=1, register=False))
        # in a process of its own: one that still holds the files open blocks the remount
        made = sweeplab("sweep", str(spec), "--store", root, "--no-smoke", "-q")
        assert made.returncode == 0, made.stderr
        remount(disk, "ro")
        cases = [
            ["sweep", str(spec), "--store", root, "--no-smoke", "-q"],
            ["sweep", str(spec), "--store", str(disk / "new"), "--no-smoke", "-q"],
            ["resume", "ro", "--store", root, "-q"],
        ]
        for args in cases:
            result = runner.invoke(app, args)
            assert result.exit_code == 1, (args, result.output)
            assert "cannot write to" in result.output, (args, result.output)
    finally:
        unmount(disk)


# --- paths from user input stay in the store ---------------------------------------


def test_a_sweep_name_cannot_lead_out_of_the_store(tmp_path: Path, write_spec: Any) -> None:
    import sqlite3

    root = tmp_path / "area" / "store"
    spec = write_spec(killable_spec("named", trials=1, epochs=1, register=False))
    for name in ("../../escape", "a/../../escape", "/tmp/escape", ".hidden", "..", ""):
        args = ["sweep", str(spec), "--name", name, "--store", str(root), "--no-smoke", "-q"]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (name, result.output)
        assert "sweep name must start with a letter or digit" in result.output, result.output
        assert not root.exists()
    # a study renamed in the database behind sweeplab's back cannot steer compare's plots out
    made = runner.invoke(app, ["sweep", str(spec), "--store", str(root), "--no-smoke", "-q"])
    assert made.exit_code == 0, made.output
    with sqlite3.connect(root / "optuna.db") as db:
        db.execute("UPDATE studies SET study_name = '../../escape' WHERE study_name = 'named'")
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, ["compare", "../../escape", "--store", str(root)])
    assert result.exit_code == 2 and "not a folder name" in result.output, result.output
    assert sorted(tmp_path.rglob("*")) == before


def test_the_sqlite_check_takes_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from sweeplab.store import StoreError

    monkeypatch.chdir(tmp_path)
    with sqlite3.connect("studies.db") as db:
        db.execute("CREATE TABLE t (x BLOB)")
        db.executemany("INSERT INTO t VALUES (?)", [(b"x" * 4000,)] * 20)
    db.close()
    where = Store.resolve(tmp_path / "store", storage="sqlite:///studies.db")
    where.verify()  # a good file, named relative to the working directory
    _damage(tmp_path / "studies.db", "truncated")
    with pytest.raises(StoreError, match=r"studies\.db is (truncated|corrupt)"):
        where.verify()


def test_the_sqlite_check_passes_a_file_that_grows_while_it_looks(tmp_path: Path) -> None:
    """A sweep checks the store while another process may be writing it (an agent, the
    MLflow UI creating its tables): a file that grows between two reads is not truncated."""
    import sqlite3
    import threading

    from sweeplab.store import sqlite_problem

    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x BLOB)")
    db.close()
    done = threading.Event()

    def grow() -> None:  # commits that extend the file, rollback-journal mode as MLflow's
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("PRAGMA synchronous=OFF")  # no disk sync: many commits a second
        while not done.is_set():
            writer.execute("INSERT INTO t VALUES (?)", (b"x" * 20000,))
        writer.close()

    thread = threading.Thread(target=grow, daemon=True)
    thread.start()
    try:
        problems = {sqlite_problem(path) for _ in range(100)}
    finally:
        done.set()
        thread.join()
    assert problems == {None}
    assert path.stat().st_size > 100 * 4096  # it did grow while checked
