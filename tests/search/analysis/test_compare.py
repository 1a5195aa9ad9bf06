"""sweeplab compare on finished sweeps: ranking, formats, plots on disk and in MLflow."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from sweeplab.search import compare
from sweeplab.search.keys import ATTR_RESOLUTION
from sweeplab.search.ranking import best_of
from tests.helpers import Finished, in_process, sweeplab

PLOTS = {
    "optimization_history.png",
    "parallel_coordinate.png",
    "param_importances.png",
    "slice.png",
    "top_learning_curves.png",
}


def test_compare_ranks_trials_and_logs_plots_to_the_parent_run(
    finished: Finished, tmp_path: Path
) -> None:
    out = sweeplab(
        "compare",
        finished.sweep,
        "--format",
        "json",
        "--out",
        str(tmp_path / "plots"),
        "--store",
        str(finished.store.root),
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["metric"], report["mode"]) == ("val_acc", "max")
    study = optuna.load_study(study_name=finished.sweep, storage=finished.store.storage_url)
    trials = report["trials"]
    assert len(trials) == len(study.trials) == 3
    # best first; a later row beats an earlier one by at most one validation example
    for earlier, later in itertools.pairwise(trials):
        gap = (study.trials[earlier["trial"]].user_attrs.get(ATTR_RESOLUTION) or 0.0) * (1 + 1e-9)
        assert later["value"] - earlier["value"] <= gap
    best = best_of(study)
    assert best is not None and trials[0]["trial"] == best.number and trials[0]["rank"] == 1
    for t in trials:
        frozen = study.trials[t["trial"]]
        assert t["state"] == "complete" and t["epochs"] == frozen.user_attrs["epochs"]
        assert t["params"]["train.lr"] == frozen.params["train.lr"]
        assert t["param_count"] == 4 * 16 + 16 + 16 * 3 + 3  # iris MLP, hidden [16]
        assert t["seconds"] > 0
    assert {Path(p).name for p in report["plots"]} == PLOTS
    for name in PLOTS:
        assert (tmp_path / "plots" / name).stat().st_size > 5000  # a drawn figure
    client = MlflowClient(finished.store.tracking_uri)
    parent = study.user_attrs["sweeplab.parent_run_id"]
    logged = {Path(a.path).name for a in client.list_artifacts(parent, "compare")}
    assert logged == PLOTS


def test_compare_formats(finished: Finished) -> None:
    root = str(finished.store.root)
    table = in_process("compare", finished.sweep, "--no-plots", "--store", root)
    assert table.returncode == 0 and "val_acc" in table.stdout and "train.lr" in table.stdout
    as_csv = in_process("compare", finished.sweep, "-f", "csv", "--no-plots", "--store", root)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert set(rows[0]) >= {"trial", "state", "val_acc", "train.lr", "epochs", "param_count"}
    md = in_process("compare", finished.sweep, "-f", "markdown", "--no-plots", "--store", root)
    lines = md.stdout.strip().splitlines()
    assert lines[0].startswith("| rank | trial | state | val_acc") and len(lines) == 5


def test_two_sweeps_side_by_side(finished: Finished, tmp_path: Path) -> None:
    from sweeplab.search import run_sweep
    from sweeplab.spec import spec_from_dict
    from tests.helpers import tiny_spec

    other = spec_from_dict(tiny_spec(sweep={"trials": 2}, tracking={"experiment": "finished"}))
    run_sweep(other, finished.store, name="other")
    comparison, _ = compare(finished.store, ["good", "other"])
    assert {r.sweep for r in comparison.rows} == {"good", "other"} and len(comparison.rows) == 5
    ranked = [r.value for r in comparison.rows if r.rank is not None]
    assert ranked == sorted(ranked, reverse=True)
    out = sweeplab(
        "compare",
        "good",
        "other",
        "-f",
        "csv",
        "--out",
        str(tmp_path),
        "--store",
        str(finished.store.root),
    )
    assert out.returncode == 0, out.stderr
    assert next(csv.reader(io.StringIO(out.stdout)))[:3] == ["rank", "sweep", "trial"]
    assert (tmp_path / "good_slice.png").is_file() and (tmp_path / "other_slice.png").is_file()


def test_sweeps_of_other_objectives_cannot_be_compared(finished: Finished) -> None:
    from sweeplab.search import run_sweep
    from sweeplab.spec import spec_from_dict
    from tests.helpers import tiny_spec

    loss = spec_from_dict(
        tiny_spec(
            objective={"metric": "val_loss", "mode": "min"},
            sweep={"trials": 1},
            train={"max_epochs": 1},
            tracking={"experiment": "finished"},
        )
    )
    run_sweep(loss, finished.store, name="by-loss")
    out = in_process("compare", "good", "by-loss", "--store", str(finished.store.root))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "only sweeps of the same objective" in out.stderr and "val_loss" in out.stderr
    missing = in_process("compare", "god", "--store", str(finished.store.root))
    assert missing.returncode == 1 and "did you mean 'good'" in missing.stderr


# over 5,000 runs written (40 s): CI runs it with the distributed tests, to keep
# `make test` under its 15 minutes
@pytest.mark.distributed
def test_compare_reads_every_run_of_a_sweep_past_5000(tmp_path: Path) -> None:
    """A sweep whose experiment holds more than 5,000 runs of it (restart runs, written
    through MLflow's client after the trials, so newer than theirs): every trial still
    gets its parameter count; nothing is dropped at a page's end."""
    from sweeplab.search import run_sweep
    from sweeplab.spec import spec_from_dict
    from sweeplab.store import Store
    from tests.helpers import tiny_spec

    store = Store.resolve(tmp_path / "store")
    exp = spec_from_dict(
        tiny_spec(train={"max_epochs": 1}, sweep={"trials": 3}, tracking={"experiment": "big"})
    )
    run_sweep(exp, store, name="big")
    client = MlflowClient(store.tracking_uri)
    experiment = client.get_experiment_by_name("big")
    assert experiment is not None
    trial_run = optuna.load_study(study_name="big", storage=store.storage_url).trials[0]
    parent = trial_run.user_attrs["mlflow_run_id"]
    for i in range(5_001):
        client.create_run(
            experiment.experiment_id,
            run_name=f"trial-0-restart{i}",
            tags={"sweeplab.sweep": "big", "mlflow.parentRunId": parent, "sweeplab.restart": i},
        )
    comparison, _ = compare(store, ["big"])
    assert sorted(r.trial for r in comparison.rows if r.param_count is not None) == [0, 1, 2]
