"""The shipped experiments' quality figures (slow: run with `make test-slow`)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from mlflow import MlflowClient

from sweeplab.search.sweep import run_sweep
from sweeplab.spec import load_spec
from tests.conftest import ROOT


@pytest.mark.slow
def test_default_sweep_registers_a_model_with_test_accuracy_of_at_least_097(store: Any) -> None:
    exp = load_spec(ROOT / "experiments" / "mlp_digits.yaml")
    started = time.monotonic()
    result = run_sweep(exp, store)
    seconds = time.monotonic() - started
    assert result.registered is not None
    name, version = result.registered
    tags = MlflowClient(store.tracking_uri).get_model_version(name, str(version)).tags
    print(
        f"default sweep: {seconds:.0f} s, best val_acc {result.best_value:.4f}, "
        f"registered test_acc {float(tags['test_acc']):.4f}"
    )
    assert float(tags["test_acc"]) >= 0.97
    assert seconds < 300
