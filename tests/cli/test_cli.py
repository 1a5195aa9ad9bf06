"""The commands as a user runs them: sweep → status → train, and Ctrl-C on a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from sweeplab.cli import app
from tests.helpers import ROOT, all_runs, default_signals, tiny_spec

runner = CliRunner()


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command of the app, sub-commands included (``models promote``)."""
    found = [(path, group)]
    if hasattr(group, "commands"):  # a group (Typer's own, or click's)
        for name, command in group.commands.items():
            found += _commands(command, (*path, name))
    return found


def test_help_on_every_command() -> None:
    import typer.main

    commands = _commands(typer.main.get_command(app))
    names = {" ".join(path) for path, _ in commands}
    assert {"validate", "sweep", "agent", "status", "resume", "train", "compare"} <= names
    assert {"models list", "models show", "models promote", "serve", "ui", "stop", "push"} <= names
    for path, command in commands:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        assert f"Usage: sweeplab {' '.join(path)}".rstrip() in " ".join(result.output.split())
        summary = (command.help or "").split("\n")[0].strip()
        assert summary, f"{path} has no help text"
        assert " ".join(summary.split()[:4]) in " ".join(result.output.split()), path


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from sweeplab.cli import app; "
        # the Python API's face loads its modules on first use, Ray's options without Ray
        "from sweeplab.search import RayOptions; import sweeplab.spec; "
        "heavy = [m for m in ('torch', 'mlflow', 'optuna', 'ray', 'lightning') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sweep_status_train_through_the_cli(tmp_path: Path, write_spec: Any, store: Any) -> None:
    spec = write_spec(tiny_spec(tracking={"experiment": "cli", "register_as": "cli-model"}))
    args = ["--store", str(store.root)]
    result = runner.invoke(app, ["sweep", str(spec), "--quiet", *args, "--set", "sweep.trials=2"])
    assert result.exit_code == 0, result.output
    assert "Sweep tiny finished: 2 trials (2 complete, 0 pruned, 0 failed)" in result.output
    assert "Best trial #" in result.output and "test_acc = " in result.output
    assert "Registered model: cli-model version 1" in result.output
    assert f"sweeplab ui --store {store.root}" in result.output

    again = runner.invoke(
        app, ["sweep", str(spec), "--quiet", "--no-smoke", *args, "--set", "sweep.trials=1"]
    )
    assert again.exit_code == 0 and "Sweep tiny-2 finished" in again.output

    listing = runner.invoke(app, ["status", *args])
    assert listing.exit_code == 0
    assert "tiny " in listing.output and "tiny-2" in listing.output
    table = runner.invoke(app, ["status", "tiny", *args])
    assert table.exit_code == 0
    assert "2 complete, 0 pruned, 0 failed, 0 running of 2 requested" in table.output
    assert "train.lr" in table.output
    missing = runner.invoke(app, ["status", "tiyn", *args])
    assert missing.exit_code == 1 and "did you mean 'tiny'" in missing.output

    trained = runner.invoke(app, ["train", str(spec), *args, "--set", "train.lr=0.02"])
    assert trained.exit_code == 0, trained.output
    assert "val_acc = " in trained.output and "test: test_acc" in trained.output
    run = next(r for r in all_runs(store, "cli") if r.data.tags.get("sweeplab.kind") == "train")
    assert run.data.params["train.lr"] == "0.02"
    assert run.info.status == "FINISHED"
    files = {f.path for f in MlflowClient(store.tracking_uri).list_artifacts(run.info.run_id)}
    assert {"model", "learning_curve.png", "spec.yaml"} <= files


def test_status_on_an_empty_store(store: Any) -> None:
    result = runner.invoke(app, ["status", "--store", str(store.root)])
    assert result.exit_code == 1 and "no sweeps yet" in result.output
    assert not store.root.exists()


def test_ctrl_c_keeps_finished_trials_and_leaves_nothing_running(
    tmp_path: Path, write_spec: Any, store: Any
) -> None:
    spec = write_spec(
        tiny_spec(
            data={"dataset": "digits"},
            train={"max_epochs": 400, "batch_size": 16},
            model={"arch": "mlp", "hidden": [64]},
            search_space={"train.lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}},
            sweep={"trials": 50},
            tracking={"experiment": "sigint"},
        )
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "sweeplab",
        "sweep",
        str(spec),
        "--quiet",
        "--no-smoke",
        "--store",
        str(store.root),
        "--set",
        "train.max_epochs=2",
    ]
    # First a finished sweep in the same store (its runs must survive), then the long one.
    subprocess.run(
        [*cmd[:-1], "train.max_epochs=1", "--set", "sweep.trials=1", "--name", "done"],
        env=env,
        check=True,
        capture_output=True,
    )
    cmd[-1] = "train.max_epochs=400"
    proc = subprocess.Popen(
        [*cmd, "--name", "long"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_signals,  # Ctrl-C works in the child even under `make test &`
    )
    deadline = time.monotonic() + 120
    running = False
    while time.monotonic() < deadline and not running:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="long", storage=store.storage_url)
            running = any(
                t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
                for t in study.trials
            )
        except KeyError:
            continue
    assert running, "the sweep never started a trial"
    time.sleep(2.0)  # well inside the first trial's 400 epochs
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert f"Continue it:  sweeplab resume long --store {store.root}" in output

    study = optuna.load_study(study_name="long", storage=store.storage_url)
    # the interrupted trial failed, and its configuration waits for `sweeplab resume`
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert "interrupted" in study.trials[0].user_attrs["fail_reason"]
    assert study.trials[1].user_attrs["sweeplab.retry_of"] == 0
    runs = all_runs(store, "sigint")
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert {r.data.tags["mlflow.runName"] for r in killed} == {"long", "trial-0"}
    done = optuna.load_study(study_name="done", storage=store.storage_url)
    assert [t.state for t in done.trials] == [TrialState.COMPLETE]


def _script(code: str, preexec: Any) -> subprocess.CompletedProcess[str]:
    """Python ``code`` in a child of the repository's root, ``preexec`` run in it first."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        preexec_fn=preexec,
    )


BACKGROUND_JOB = """
import signal, subprocess, sys
from tests.helpers import default_signals
child = subprocess.Popen(
    [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
    stdout=subprocess.PIPE, text=True, preexec_fn=default_signals,
)
child.stdout.readline()
child.send_signal(signal.SIGINT)
try:
    print(child.wait(20))
except subprocess.TimeoutExpired:
    child.kill()
    print("the Ctrl-C was ignored")
"""


def test_a_ctrl_c_reaches_a_tests_child_when_the_suite_runs_as_a_background_job() -> None:
    """``make test &``: the shell starts the suite with SIGINT ignored and its children
    inherit that; the Ctrl-C tests start theirs with the default disposition."""
    out = _script(BACKGROUND_JOB, lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # as `&`
    assert out.stdout.strip() == str(-signal.SIGINT), out.stdout + out.stderr


CTRL_C_IN_A_CALLBACK = """
import time, weakref
from sweeplab.logs import quiet_libraries
quiet_libraries(mlflow=False)
class Held: pass
def callback(ref):  # as SQLAlchemy's callback when SIGINT landed in it
    raise KeyboardInterrupt
held = Held()
ref = weakref.ref(held, callback)
try:
    del held
    time.sleep(5)
    print("the Ctrl-C was lost")
except KeyboardInterrupt:
    print("stopped by the Ctrl-C")
"""


def test_a_ctrl_c_in_a_garbage_collector_callback_still_stops_and_prints_no_traceback() -> None:
    """Python drops a KeyboardInterrupt raised inside a weakref callback ("Exception
    ignored", a traceback on stderr); a sweeplab entry point raises it again instead."""
    out = _script(CTRL_C_IN_A_CALLBACK, default_signals)
    assert out.stdout.strip() == "stopped by the Ctrl-C", out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr


def test_bad_store_locations_fail_clearly_and_create_nothing(
    tmp_path: Path, write_spec: Any
) -> None:
    spec = write_spec(tiny_spec())
    before = set(tmp_path.rglob("*"))
    bad_url = runner.invoke(
        app,
        [
            "sweep",
            str(spec),
            "--quiet",
            "--no-smoke",
            "--store",
            str(tmp_path / "s"),
            "--storage",
            "nosuchdb://x/y",
        ],
    )
    assert bad_url.exit_code == 1, bad_url.output
    assert "--storage 'nosuchdb://x/y' is not a database URL" in bad_url.output
    assert "Traceback" not in bad_url.output
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    under_file = runner.invoke(
        app, ["sweep", str(spec), "--quiet", "--no-smoke", "--store", str(blocker / "store")]
    )
    assert under_file.exit_code == 1, under_file.output
    assert f"is not a folder (in {blocker}, a file)" in under_file.output
    assert set(tmp_path.rglob("*")) == before | {blocker}


def test_the_default_spec_is_valid_on_both_backends() -> None:
    for backend in ("optuna", "ray"):
        result = runner.invoke(
            app,
            [
                "validate",
                str(ROOT / "experiments" / "mlp_digits.yaml"),
                "--set",
                f"sweep.backend={backend}",
            ],
        )
        assert result.exit_code == 0, result.output
