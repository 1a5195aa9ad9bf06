"""A store folder moved elsewhere works there: its MLflow database is pointed at the
artifacts' new place, and nothing is read from the old one."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sweeplab.search import run_sweep
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from tests.helpers import call, free_port, start_server, stop_server, sweeplab, tiny_spec


# a sweep, seven commands and a model server (about a minute): CI runs it with the
# distributed tests, to keep `make test` under its 15 minutes
@pytest.mark.distributed
def test_a_moved_store_works_where_it_is_with_the_old_folder_gone(tmp_path: Path) -> None:
    old = tmp_path / "laptop" / "store"
    exp = spec_from_dict(
        tiny_spec(
            train={"max_epochs": 2},
            search_space={"train.lr": {"type": "float", "low": 5e-3, "high": 5e-2, "log": True}},
            sweep={"trials": 2, "sampler": "random"},
            tracking={"experiment": "moving", "register_as": "moving"},
        )
    )
    run_sweep(exp, Store.resolve(old), name="moving")
    new = tmp_path / "colleague" / "store"
    new.parent.mkdir()
    shutil.move(old, new)
    assert not old.exists()
    where = ["--store", str(new)]

    status = sweeplab("status", "moving", *where)
    assert status.returncode == 0 and "2 complete" in status.stdout, status.stderr
    compare = sweeplab("compare", "moving", "--redraw", "--format", "json", *where)
    assert compare.returncode == 0, compare.stderr
    assert Path(json.loads(compare.stdout)["report"]).is_relative_to(new)
    resume = sweeplab("resume", "moving", *where)  # finished: nothing to run, no error
    assert resume.returncode == 0, resume.stderr
    # one line, not an empty progress bar and the summary again
    assert resume.stdout.splitlines() == [
        "sweep moving is complete with all its 2 trials: nothing to run"
    ], resume.stdout
    assert resume.stderr == "", resume.stderr
    shown = sweeplab("models", "show", "moving", *where)
    assert shown.returncode == 0 and "test_accuracy" in shown.stdout, shown.stderr
    client = MlflowClient(Store.resolve(new).tracking_uri)
    assert client.get_model_version("moving", "1").source.startswith((new / "artifacts").as_uri())
    promoted = sweeplab("models", "promote", "moving", "--version", "1", "--alias", "prod", *where)
    assert promoted.returncode == 0, promoted.stderr

    port = free_port()
    command = [sys.executable, "-m", "sweeplab", "serve", "moving@prod", "--port", str(port)]
    proc = start_server([*command, *where], f"http://127.0.0.1:{port}/health")
    try:
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        status_code, body = call(
            f"http://127.0.0.1:{port}/predict", json.dumps({"rows": rows}).encode()
        )
        assert status_code == 200 and len(body["predictions"]) == 2
        assert set(body["labels"]) <= {"setosa", "versicolor", "virginica"}
    finally:
        stop_server(proc)
    assert not old.exists()  # nothing created at the old place either
