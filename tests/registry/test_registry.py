"""The registry on a real MLflow store: lineage tags, guarded promotion, --force, races."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from sweeplab.registry.evaluate import held_out
from sweeplab.registry.lineage import git_commit
from sweeplab.registry.models import ModelRef, show_model
from sweeplab.registry.promote import GuardError, PromotionRefused, promote
from sweeplab.search.ranking import best_of
from sweeplab.spec import spec_from_dict
from tests.helpers import ROOT, Finished, in_process


def _client(finished: Finished) -> MlflowClient:
    uri = finished.store.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _history(finished: Finished, alias: str) -> list[dict[str, Any]]:
    info = show_model(_client(finished), finished.model)
    return [e for e in info.history if e["alias"] == alias]


def test_a_registered_version_carries_its_lineage(finished: Finished) -> None:
    client = _client(finished)
    version = client.get_model_version(finished.model, str(finished.good))
    tags = version.tags
    study = __import__("optuna").load_study(
        study_name=finished.sweep, storage=finished.store.storage_url
    )
    best = best_of(study)
    assert best is not None
    assert tags["sweeplab.sweep"] == finished.sweep == tags["sweeplab.study"]
    assert int(tags["sweeplab.trial_number"]) == best.number
    assert tags["sweeplab.run_id"] == version.run_id == best.user_attrs["mlflow_run_id"]
    spec = json.loads(tags["sweeplab.spec"])
    # the spec of the best trial: its sampled learning rate, not the base spec's
    assert spec["train"]["lr"] == pytest.approx(best.params["train.lr"])
    exp = spec_from_dict(spec)
    assert tags["sweeplab.data_hash"] == held_out(exp).hash
    assert tags["sweeplab.test_metric"] == "test_accuracy"
    # the guard's score is the test accuracy the trial itself logged
    assert float(tags["sweeplab.test_score"]) == pytest.approx(
        best.user_attrs["test_acc"], abs=1e-6
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert tags["sweeplab.git_commit"].removesuffix("+dirty") == head
    assert tags["sweeplab.registered_by"] and tags["sweeplab.registered_at"]


def test_git_commit_is_empty_outside_a_repository(tmp_path: Path) -> None:
    assert git_commit(str(tmp_path)) == ""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *env, "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", *env, "-C", str(tmp_path), "commit", "-qm", "m"], check=True)
    clean = git_commit(str(tmp_path))
    assert len(clean) == 40
    (tmp_path / "f").write_text("changed")
    assert git_commit(str(tmp_path)) == clean + "+dirty"


def test_promotion_is_refused_when_worse_and_accepted_when_better(finished: Finished) -> None:
    uri, name, alias = finished.store.tracking_uri, finished.model, "guarded"
    first = promote(uri, name, finished.good, alias)
    assert first.outcome == "promoted" and first.previous is None
    assert first.candidate is not None and first.candidate.metric == "test_accuracy"

    with pytest.raises(PromotionRefused) as refused:
        promote(uri, name, finished.bad, alias)
    decision = refused.value.decision
    assert decision.candidate is not None and decision.holder is not None
    assert decision.candidate.value < decision.holder.value
    message = str(refused.value)
    assert (
        f"{decision.candidate.value:.4f}" in message and f"{decision.holder.value:.4f}" in message
    )
    holder = _client(finished).get_model_version_by_alias(name, alias)
    assert int(holder.version) == finished.good  # untouched

    forced = promote(uri, name, finished.bad, alias, force=True)
    assert forced.outcome == "forced" and forced.previous == finished.good
    tag = _client(finished).get_model_version(name, str(finished.bad)).tags
    assert json.loads(tag[f"sweeplab.promoted.{alias}"])["forced"] is True

    # a refused promotion, as a successful one, leaves no lock file in the store
    assert list(finished.store.root.glob("*.lock")) == []

    back = promote(uri, name, finished.good, alias)  # better than the forced holder
    assert back.outcome == "promoted" and back.previous == finished.bad
    assert back.holder is not None and back.candidate is not None
    assert back.candidate.value > back.holder.value

    events = _history(finished, alias)
    assert [(e["version"], e["outcome"]) for e in events] == [
        (finished.good, "promoted"),
        (finished.bad, "refused"),
        (finished.bad, "forced"),
        (finished.good, "promoted"),
    ]
    assert events[2]["force"] is True and events[0]["by"]


def test_the_guard_refuses_a_version_whose_test_data_changed(finished: Finished) -> None:
    uri, name = finished.store.tracking_uri, finished.model
    client = _client(finished)
    promote(uri, name, finished.good, "hashcheck")
    client.set_model_version_tag(name, str(finished.bad), "sweeplab.data_hash", "0" * 16)
    try:
        with pytest.raises(GuardError, match="changed since registration"):
            promote(uri, name, finished.bad, "hashcheck")
        forced = promote(uri, name, finished.bad, "hashcheck", force=True)
        assert forced.outcome == "forced" and "not compared" in forced.note
    finally:
        real = client.get_model_version(name, str(finished.good)).tags["sweeplab.data_hash"]
        client.set_model_version_tag(name, str(finished.bad), "sweeplab.data_hash", real)


def test_promote_cli_says_both_scores_and_exits_1(finished: Finished) -> None:
    root = str(finished.store.root)
    ok = in_process(
        "models",
        "promote",
        "iris",
        "--version",
        str(finished.good),
        "--alias",
        "cli",
        "--store",
        root,
    )
    assert ok.returncode == 0, ok.stderr
    assert f"iris@cli → version {finished.good}" in ok.stdout
    refused = in_process(
        "models",
        "promote",
        "iris",
        "--version",
        str(finished.bad),
        "--alias",
        "cli",
        "--store",
        root,
    )
    assert refused.returncode == 1
    assert "refused" in refused.stderr and "--force" in refused.stderr
    assert refused.stderr.count("test_accuracy") == 2
    shown = in_process("models", "show", "iris", "--store", root)
    assert shown.returncode == 0 and "@cli" in shown.stdout and "refused" in shown.stdout
    listed = in_process("models", "list", "--store", root)
    assert "iris" in listed.stdout and f"@cli → {finished.good}" in listed.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["promote", "iris", "--version", "99"], 1, "versions of 'iris'"),
        (["promote", "irs", "--version", "1"], 1, "did you mean 'iris'"),
        (["promote", "iris"], 2, "exactly one of --version"),
        (["promote", "iris", "--best-of", "nosuch"], 1, "no sweep named 'nosuch'"),
        (["show", "nosuch"], 1, "no registered model named 'nosuch'"),
    ],
)
def test_models_cli_mistakes(finished: Finished, args: list[str], code: int, message: str) -> None:
    out = in_process("models", *args, "--store", str(finished.store.root))
    assert out.returncode == code, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_best_of_registers_once_and_promotes(finished: Finished) -> None:
    root = str(finished.store.root)
    first = in_process(
        "models", "promote", "iris-best", "--best-of", finished.sweep, "--store", root
    )
    assert first.returncode == 0, first.stderr
    again = in_process(
        "models", "promote", "iris-best", "--best-of", finished.sweep, "--store", root
    )
    assert again.returncode == 0, again.stderr
    assert "already points at version 1" in again.stdout
    info = show_model(_client(finished), "iris-best")
    assert [v.version for v in info.versions] == [1]  # registered once
    best_run = _client(finished).get_model_version("iris", str(finished.good)).run_id
    assert info.versions[0].run_id == best_run and info.aliases == {"champion": 1}


def test_racing_promotions_leave_one_holder_and_a_history_that_says_so(finished: Finished) -> None:
    root = str(finished.store.root)
    command = [sys.executable, "-m", "sweeplab", "models", "promote", "iris", "--alias", "race"]
    procs = [
        subprocess.Popen(
            [*command, "--version", str(v), "--store", root],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in (finished.good, finished.bad)
    ]
    codes = [p.wait(timeout=120) for p in procs]
    holder = int(_client(finished).get_model_version_by_alias("iris", "race").version)
    events = _history(finished, "race")
    assert len(events) == 2
    first, second = events
    # one after the other: the second was judged against the first
    assert first["previous"] is None and first["outcome"] == "promoted"
    assert second["previous"] == first["version"]
    accepted = [e for e in events if e["outcome"] != "refused"]
    assert holder == accepted[-1]["version"]
    assert sorted(codes) == ([0, 0] if second["outcome"] == "promoted" else [0, 1])
    # whichever came first, the worse one cannot have replaced the better
    assert holder == finished.good
    assert ModelRef.parse("iris@race") == ModelRef("iris", "race")
