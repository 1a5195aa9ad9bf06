"""The reliability battery, fast cases (the long ones are in test_soak.py, `make soak`):
kill -9 five times in a row, fuzzed specs, corrupt stores, missing artifacts, a full disk."""

from __future__ import annotations

import copy
import os
import re
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
from tests.conftest import sweeplab

runner = CliRunner()


def test_five_kills_in_a_row_then_resume_lose_nothing(store: Store, write_spec: Any) -> None:
    spec = write_spec(killable_spec("battered", trials=14))
    kills = kill_and_resume(store, spec, "battered", kills=5, seed=8)
    assert kills.delivered == 5
    assert kills.killed_trials, "no kill landed mid-trial"
    assert_nothing_lost(store, "battered", "battered", 14)
    from mlflow import MlflowClient

    client = MlflowClient(store.tracking_uri, registry_uri=store.tracking_uri)
    study = load(store, "battered")
    for number, run_id in kills.killed_trials.items():  # failed as dead, its run KILLED
        trial = study.trials[number]
        assert trial.state.name == "FAIL" and "died" in trial.user_attrs["fail_reason"]
        if run_id is not None:
            assert client.get_run(run_id).info.status == "KILLED"
    assert len(client.search_model_versions("name = 'battered-model'")) == 1
    again = sweeplab("resume", "battered", "--store", str(store.root), "-q")
    assert again.returncode == 0 and "nothing to run" in again.stdout
    assert len(load(store, "battered").trials) == 14


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


FUZZ_TALLY = {"run": 0, "rejected": 0}


@settings(
    max_examples=int(os.environ.get("SWEEPLAB_FUZZ_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,
    # no shrinking: a failure prints its mutations, and shrinking a sweep takes minutes
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps=mutations(), which=st.integers(0, 1))
def test_fuzzed_specs_run_or_are_rejected_with_a_path(steps: list[Any], which: int) -> None:
    check_fuzzed(fuzz_bases()[which], steps, FUZZ_TALLY)


def test_the_fuzzer_both_runs_and_rejects() -> None:
    """Runs after the fuzz test (file order): the mutations reached both outcomes."""
    if not any(FUZZ_TALLY.values()):
        pytest.skip("the fuzz test did not run in this session")
    assert FUZZ_TALLY["run"] >= 1 and FUZZ_TALLY["rejected"] >= 1, FUZZ_TALLY
