"""Shared fixtures: a real store in a temp folder, tiny specs, and leak checks."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ROOT = Path(__file__).resolve().parents[1]

TINY: dict[str, Any] = {
    "name": "tiny",
    "model": {"arch": "mlp", "hidden": [16]},
    "data": {"dataset": "iris"},
    "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "max_epochs": 3},
    "objective": {"metric": "val_acc", "mode": "max"},
    "search_space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
    "sweep": {"trials": 2, "sampler": "random", "seed": 0},
    "tracking": {"experiment": "tiny"},
}


def tiny_spec(**sections: Any) -> dict[str, Any]:
    """TINY with sections merged in: tiny_spec(train={"max_epochs": 5}).

    A model of another architecture replaces TINY's MLP instead of merging into it.
    """
    spec = copy.deepcopy(TINY)
    for key, value in sections.items():
        other_arch = key == "model" and value.get("arch", "mlp") != "mlp"
        if (
            isinstance(value, dict)
            and isinstance(spec.get(key), dict)
            and key != "search_space"
            and not other_arch
        ):
            spec[key].update(value)
        else:
            spec[key] = value
    return spec


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from sweeplab.store import Store

    return Store.resolve(tmp_path / "store")


@pytest.fixture
def write_spec(tmp_path: Path) -> Any:
    """Write a spec mapping as YAML into tmp_path; returns its path."""
    import yaml

    def write(spec: dict[str, Any], name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


@pytest.fixture(autouse=True)
def _end_leaked_mlflow_runs() -> Any:
    """Like MLflow's own suite: a test that leaks a fluent active run does not poison the next."""
    yield
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run("KILLED")


def all_runs(store: Any, experiment: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(store.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return list(client.search_runs([exp.experiment_id], max_results=1000))
