"""What a new user hits: mistakes that must be refused in one line, services that do not
answer named within seconds, stores that are files or read-only. Real ports, real files."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sweeplab.cli import app
from tests.helpers import sweeplab, tiny_spec

runner = CliRunner()

QUICK = {"train": {"max_epochs": 1}, "sweep": {"trials": 1, "sampler": "random", "seed": 0}}


def quick_sweep(spec: Path, store: Any, *args: str) -> Any:
    return runner.invoke(
        app, ["sweep", str(spec), "-q", "--no-smoke", "--store", str(store.root), *args]
    )


def test_a_name_given_is_refused_when_taken_and_sweeps_on_other_data_are_not_ranked_together(
    write_spec: Any, store: Any
) -> None:
    spec = write_spec(tiny_spec(**QUICK))
    assert quick_sweep(spec, store, "--name", "a").exit_code == 0
    other = quick_sweep(spec, store, "--name", "b", "--set", "data.seed=1")
    assert other.exit_code == 0, other.output
    again = quick_sweep(spec, store, "--name", "a")
    assert again.exit_code == 2, again.output
    assert "a sweep named 'a' exists" in again.output and "sweeplab resume a" in again.output
    listing = runner.invoke(app, ["status", "--store", str(store.root)])
    assert "a-2" not in listing.output and " a " in listing.output, listing.output

    # for scripts: status as JSON and CSV, with the counts and each trial
    import csv
    import io
    import json

    listed = runner.invoke(app, ["status", "-f", "json", "--store", str(store.root)])
    assert listed.exit_code == 0, listed.output
    sweeps = {s["sweep"]: s for s in json.loads(listed.stdout)}
    assert set(sweeps) == {"a", "b"} and sweeps["a"]["complete"] == 1
    one = json.loads(
        runner.invoke(app, ["status", "a", "-f", "json", "--store", str(store.root)]).stdout
    )
    assert one["state"] == "complete" and [r["trial"] for r in one["rows"]] == [0]
    assert one["rows"][0]["val_acc"] == one["best_value"] and "train.lr" in one["rows"][0]
    table = runner.invoke(app, ["status", "a", "-f", "csv", "--store", str(store.root)]).stdout
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [r["state"] for r in rows] == ["complete"] and float(rows[0]["train.lr"]) > 0

    refused = runner.invoke(app, ["compare", "a", "b", "--no-plots", "--store", str(store.root)])
    assert refused.exit_code == 2, refused.output
    assert "does not share 'a''s dataset and split (data.seed 1 (not 0))" in refused.output
    assert "--force" in refused.output
    forced = runner.invoke(
        app, ["compare", "a", "b", "--no-plots", "--force", "--store", str(store.root)]
    )
    assert forced.exit_code == 0 and "compare a, b" in forced.output, forced.output


def test_a_tracking_server_that_does_not_answer_is_named_within_seconds(
    tmp_path: Path, write_spec: Any
) -> None:
    """A port with nothing listening, and a server that takes the connection and never
    answers: each named in one line in seconds, and no store created."""
    spec = write_spec(tiny_spec(**QUICK))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections queue; nothing ever answers
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once it is closed
    env = {"SWEEPLAB_CONNECT_TIMEOUT": "2"}
    try:
        for url, why in (
            (f"http://127.0.0.1:{closed}", "Connection refused"),
            (f"http://127.0.0.1:{silent.getsockname()[1]}", "no answer within 2 s"),
        ):
            for command in (
                ["models", "list"],
                ["sweep", str(spec), "-q", "--store", str(tmp_path / "s")],
            ):
                start = time.monotonic()
                done = sweeplab(*command, "--tracking-uri", url, cwd=tmp_path, env=_env(env))
                took = time.monotonic() - start
                assert done.returncode == 1, done.stderr
                line = f"error: the tracking server at {url} does not answer ({why})"
                assert done.stderr.startswith(line), done.stderr
                assert "Traceback" not in done.stderr and took < 15, took
                assert not (tmp_path / "s").exists() and not (tmp_path / "sweeplab-store").exists()
    finally:
        silent.close()


def test_database_urls_a_user_can_get_wrong(tmp_path: Path, write_spec: Any) -> None:
    """A URL that is not one, a driver that is not installed, a database server that is
    not there: one line each, exit 1, nothing created."""
    spec = write_spec(tiny_spec(**QUICK))
    store = ["--store", str(tmp_path / "s")]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    for args, words in (
        (["status", "--storage", "notaurl"], "--storage 'notaurl' is not a database URL"),
        (
            ["sweep", str(spec), "-q", "--storage", "postgresql+pg8000://u@127.0.0.1/db"],
            "--storage 'postgresql+pg8000://u@127.0.0.1/db' needs the database driver "
            "'pg8000', which is not installed: use postgresql+psycopg2:// (pip install "
            "'sweeplab[postgres]')",
        ),
        (
            ["status", "--storage", f"postgresql+psycopg2://u@127.0.0.1:{closed}/db"],
            f"the database at postgresql+psycopg2://u@127.0.0.1:{closed}/db (--storage) does "
            "not answer",
        ),
    ):
        done = sweeplab(*args, *store, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(f"error: {words}"), done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2, done.stderr  # one line, wrapped
        assert not (tmp_path / "s").exists()


def test_a_store_that_is_a_file_is_said_to_be_one(tmp_path: Path, write_spec: Any) -> None:
    file = tmp_path / "store.txt"
    file.write_text("notes")
    spec = write_spec(tiny_spec(**QUICK))
    for command in (["status"], ["sweep", str(spec), "-q", "--no-smoke"]):
        result = runner.invoke(app, [*command, "--store", str(file)])
        assert result.exit_code == 1, result.output
        assert f"--store {file} is not a folder: name a folder" in result.output
    assert file.read_text() == "notes"


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


def test_a_read_only_store_is_read_and_nothing_is_written(write_spec: Any, store: Any) -> None:
    """An archived copy on read-only media: status and compare read it where it is (a
    moved copy, so its artifact paths are old ones) and write nothing to it."""
    import hashlib
    import shutil
    import stat
    import subprocess
    import sys
    import tempfile

    spec = write_spec(tiny_spec(**QUICK))
    assert quick_sweep(spec, store, "--name", "kept").exit_code == 0
    top = Path(tempfile.mkdtemp(prefix="sweeplab-ro-"))  # a folder another user can reach
    try:
        top.chmod(0o755)
        copy = top / "archived"
        shutil.copytree(store.root, copy)
        for path in [copy, *copy.rglob("*")]:
            mode = path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
            path.chmod(mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in copy.rglob("*.db")}
        files = sorted(copy.rglob("*"))
        home = top / "home"
        home.mkdir(mode=0o777)
        as_user: list[str] = []
        if os.geteuid() == 0:  # root writes to any folder: read as nobody, as a user would
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv to read as another user")
            as_user = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        env = {**os.environ, "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
        for command in (["status"], ["status", "kept"], ["compare", "kept"]):
            done = subprocess.run(
                [*as_user, sys.executable, "-m", "sweeplab", *command, "--store", str(copy)],
                capture_output=True,
                text=True,
                env=env,
                cwd=top,
            )
            assert done.returncode == 0, done.stderr
            assert f"the store at {copy} is read-only: reading it, nothing is written" in (
                done.stderr
            )
            assert "kept" in done.stdout and "complete" in done.stdout, done.stdout
        assert "no plots: they are written into the store" in done.stderr
        assert sorted(copy.rglob("*")) == files
        assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before} == before
    finally:
        for path in [top, *top.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(top)


def test_a_reader_that_goes_away_ends_the_command_quietly(
    tmp_path: Path, write_spec: Any, store: Any
) -> None:
    """``sweeplab … | head``: the pipe closes before the summary; the command ends with
    the status of a tool killed by SIGPIPE, prints nothing else, and the sweep is whole."""
    import subprocess
    import sys

    from tests.battery import load

    spec = write_spec(tiny_spec(**QUICK))
    for command in (
        ["sweep", str(spec), "-q", "--no-smoke", "--name", "piped"],
        ["status", "piped"],
    ):
        read, write = os.pipe()
        os.close(read)  # the reader has gone before the first line
        try:
            done = subprocess.run(
                [sys.executable, "-m", "sweeplab", *command, "--store", str(store.root)],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp_path,
            )
        finally:
            os.close(write)
        assert done.returncode == 141, done.stderr
        assert done.stderr == "", done.stderr
    trials = load(store, "piped").trials
    assert [t.state.name for t in trials] == ["COMPLETE"]


def test_a_missing_postgres_driver_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's agent URL where psycopg2 is not installed (an import of it fails, as
    Python fails it for a package that is not there)."""
    import sys

    from sweeplab.store import Store, StoreError

    monkeypatch.setitem(sys.modules, "psycopg2", None)
    url = "postgresql+psycopg2://me@db:5432/optuna"
    with pytest.raises(StoreError) as missing:
        Store.resolve(tmp_path / "s", storage=url).check()
    assert str(missing.value) == (
        f"--storage '{url}' needs the database driver 'psycopg2', which is not installed: "
        "pip install 'sweeplab[postgres]'"
    )
    assert not (tmp_path / "s").exists()
