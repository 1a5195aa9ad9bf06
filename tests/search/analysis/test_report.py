"""A sweep's figures and report: trial figures drawn at the sweep's end (not by each
trial), the HTML report in the parent run, plots reused while the trials are the same."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from mlflow import MlflowClient

from sweeplab.search import compare, run_sweep, write_plots
from sweeplab.search.curves import draw_missing
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from tests.helpers import Finished, tiny_spec


def _files(client: MlflowClient, run_id: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id)}


def test_the_sweeps_end_draws_the_top_trials_figures_and_compare_the_missing(
    tmp_path: Path,
) -> None:
    """7 trials: the 5 best get learning_curve.png from the sweep's end, the other 2 do
    not (their curves are in their metric history). A figure that a killed end did not
    draw is drawn by compare."""
    store = Store.resolve(tmp_path / "store")
    exp = spec_from_dict(
        tiny_spec(
            train={"max_epochs": 2},
            search_space={"train.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
            sweep={"trials": 7, "sampler": "random", "seed": 3},
            tracking={"experiment": "figures"},
        )
    )
    run_sweep(exp, store, name="figures")
    client = MlflowClient(store.tracking_uri)
    study = optuna.load_study(study_name="figures", storage=store.storage_url)
    ranked = sorted(study.trials, key=lambda t: (-t.value, t.number))
    runs = [t.user_attrs["mlflow_run_id"] for t in ranked]
    for run_id in runs[:5]:
        assert "learning_curve.png" in _files(client, run_id)
        assert client.get_run(run_id).data.tags["sweeplab.learning_curve"] == "learning_curve.png"
    for run_id in runs[5:]:
        assert "learning_curve.png" not in _files(client, run_id)
        assert len(client.get_metric_history(run_id, "val_acc")) == 2
    # tracking.report: false — the sweep's end drew no plots and no report
    parent = study.user_attrs["sweeplab.parent_run_id"]
    assert "report.html" not in _files(client, parent)
    assert not (store.root / "compare").exists()

    # as if the sweep's end had been killed before drawing the best trial's figure
    client.delete_tag(runs[0], "sweeplab.learning_curve")
    figure = next(Path(store.root).rglob(f"{runs[0]}/artifacts/learning_curve.png"))
    figure.unlink()
    comparison, sweeps = compare(store, ["figures"])
    write_plots(comparison, sweeps, tmp_path / "plots")
    assert "learning_curve.png" in _files(client, runs[0])
    assert draw_missing(sweeps[0].tracker, exp, runs[:5]) == 0  # all there now


def test_the_report_is_in_the_parent_run_with_every_trial(finished: Finished) -> None:
    """The sweep's end logs report.html: one self-contained file (no script or style
    from elsewhere) under 5 MB, with a row per trial linked to its MLflow run."""
    client = MlflowClient(finished.store.tracking_uri)
    study = optuna.load_study(study_name=finished.sweep, storage=finished.store.storage_url)
    parent = study.user_attrs["sweeplab.parent_run_id"]
    assert "report.html" in _files(client, parent)
    path = Path(client.download_artifacts(parent, "report.html", str(finished.store.root / "dl")))
    html = path.read_text(encoding="utf-8")
    assert path.stat().st_size < 5_000_000
    assert not re.search(r"<(script|link)[^>]+(src|href)=", html)  # nothing fetched
    rows = re.findall(r'<tr data-trial="(\d+)">(.*?)</tr>', html)
    assert sorted(int(n) for n, _ in rows) == [t.number for t in study.trials]
    experiment = client.get_experiment_by_name(finished.experiment)
    assert experiment is not None
    for number, row in rows:
        run_id = study.trials[int(number)].user_attrs["mlflow_run_id"]
        link = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{run_id}"
        assert link in row


def test_compare_reuses_current_plots_and_draws_again_when_trials_change(
    tmp_path: Path,
) -> None:
    store = Store.resolve(tmp_path / "store")
    exp = spec_from_dict(
        tiny_spec(
            train={"max_epochs": 1},
            search_space={"train.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
            sweep={"trials": 3, "sampler": "random"},
            tracking={"experiment": "reuse", "report": True},
        )
    )
    run_sweep(exp, store, name="reuse")
    folder = store.root / "compare" / "reuse"  # where the sweep's end drew them
    report = folder / "report.html"
    drawn = report.stat().st_mtime_ns
    comparison, sweeps = compare(store, ["reuse"])
    write_plots(comparison, sweeps, folder)
    assert comparison.reused and report.stat().st_mtime_ns == drawn
    assert {p.name for p in comparison.plots} >= {"optimization_history.png", "slice.png"}
    sections = re.findall(r"<h2>([^<]*)</h2>", report.read_text())
    assert sections[:2] == ["optimization history", "parallel coordinates"]
    assert "learning curves of the top 3 trials" in sections

    again, sweeps = compare(store, ["reuse"])
    write_plots(again, sweeps, folder, redraw=True)
    assert not again.reused and report.stat().st_mtime_ns > drawn

    study = optuna.load_study(study_name="reuse", storage=store.storage_url)
    lr = optuna.distributions.FloatDistribution(1e-3, 0.1, log=True)
    study.tell(study.ask({"train.lr": lr}), 0.5)
    changed, sweeps = compare(store, ["reuse"])
    write_plots(changed, sweeps, folder)
    assert not changed.reused and len(changed.rows) == 4
