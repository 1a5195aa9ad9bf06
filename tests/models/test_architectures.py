"""Every architecture through a real (short) sweep: MLflow tree, cost metrics, registry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from sweeplab.data.split import split
from sweeplab.search import run_sweep
from sweeplab.spec import spec_from_dict
from tests.helpers import all_runs, tiny_spec

DIGITS = {"dataset": "digits", "limit": 300}
ACC = {"metric": "val_acc", "mode": "max"}

# id: (model, data, objective, what the registered model returns)
ARCHS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]] = {
    "mlp": ({"arch": "mlp", "hidden": [16]}, DIGITS, ACC, "probabilities"),
    "cnn": ({"arch": "cnn", "channels": [4, 8], "head": [8]}, DIGITS, ACC, "probabilities"),
    "rnn": ({"arch": "rnn", "hidden_size": 8}, {**DIGITS, "view": "rows"}, ACC, "probabilities"),
    "lstm": ({"arch": "lstm", "hidden_size": 8}, DIGITS, ACC, "probabilities"),
    "gru": (
        {"arch": "gru", "hidden_size": 8, "layers": 2, "bidirectional": True, "dropout": 0.1},
        {**DIGITS, "view": "rows"},
        ACC,
        "probabilities",
    ),
    "transformer": (
        {"arch": "transformer", "d_model": 16, "heads": 2, "layers": 1, "ff_dim": 32},
        DIGITS,
        ACC,
        "probabilities",
    ),
    "lstm-forecaster": (
        {"arch": "lstm", "hidden_size": 8},
        {"dataset": "sunspots", "window": 6},
        {"metric": "val_rmse", "mode": "min"},
        "values",
    ),
    "autoencoder": (
        {"arch": "autoencoder", "hidden": [16], "bottleneck": 4, "noise": 0.1},
        {**DIGITS, "holdout_classes": [0]},
        {"metric": "val_auroc", "mode": "max"},
        "anomaly_score",
    ),
    "conv-autoencoder": (
        {"arch": "autoencoder", "kind": "conv", "channels": [4, 8], "bottleneck": 4},
        DIGITS,
        {"metric": "val_loss", "mode": "min"},
        "anomaly_score",
    ),
    "gan": (
        {"arch": "gan", "generator": [16], "discriminator": [16], "samples": 50},
        DIGITS,
        {"metric": "val_fid", "mode": "min"},
        "samples",
    ),
    "custom": (
        {
            "arch": "custom",
            "class": "examples.custom_mlp:TinyMLP",
            "kwargs": {"width": 8},
            "metrics": ["val_acc"],
        },
        DIGITS,
        ACC,
        "probabilities",
    ),
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_architecture_runs_a_tracked_sweep_and_registers_a_model(
    store: Any, arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, data, objective, output = ARCHS[arch]
    exp = spec_from_dict(
        tiny_spec(
            model=model,
            data=data,
            objective=objective,
            train={"max_epochs": 2, "lr": 3e-3},
            search_space={"train.batch_size": {"type": "categorical", "choices": [32, 64]}},
            sweep={"trials": 2},
            tracking={"experiment": arch, "register_as": arch},
        )
    )
    result = run_sweep(exp, store)
    assert result.counts.complete == 2, result.counts
    client = MlflowClient(store.tracking_uri)
    trials = [r for r in all_runs(store, arch) if r.data.tags.get("mlflow.parentRunId") is not None]
    assert len(trials) == 2
    for run in trials:
        assert run.data.metrics["param_count"] > 0
        assert run.data.metrics["flops_per_sample"] > 0
        epochs = int(run.data.metrics["epochs"])
        assert len(client.get_metric_history(run.info.run_id, "epoch_seconds")) == epochs
        history = client.get_metric_history(run.info.run_id, objective["metric"])
        assert len(history) == epochs and all(np.isfinite(m.value) for m in history)
        files = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert "learning_curve.png" in files
        if arch == "gan":  # a grid of samples each epoch
            samples = {f.path for f in client.list_artifacts(run.info.run_id, "samples")}
            assert samples == {f"samples/epoch_{e:03d}.png" for e in range(epochs)}
            assert {"val_is", "val_confidence"} <= set(run.data.metrics)

    # The version's guard score is the test metric the trial logged (the same rows).
    tags = client.get_model_version(arch, "1").tags
    guard = {
        "probabilities": ("test_accuracy", "test_acc"),
        "values": ("test_rmse", "test_rmse"),
        "anomaly_score": ("test_auroc", "test_auroc"),
        "samples": ("", None),
    }[output]
    if output == "anomaly_score" and not exp.data.holdout_classes:
        guard = ("test_reconstruction", None)
    assert tags["sweeplab.test_metric"] == guard[0]
    if guard[1] is not None:
        assert float(tags["sweeplab.test_score"]) == pytest.approx(result.test[guard[1]], rel=1e-3)

    # The registered model answers raw rows (latent vectors for a generator).
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    served = mlflow.pyfunc.load_model(f"models:/{arch}/1")
    s = split(exp.data)
    if output == "samples":
        z = np.random.default_rng(0).normal(size=(4, 32)).astype(np.float32)
        rows = np.asarray(served.predict(z))
        assert rows.shape == (4, s.n_features)
        assert rows.min() >= -20 and rows.max() <= 40  # digits' pixels are 0..16
        return
    out = np.asarray(served.predict(s.raw(s.x_test[:6])))
    if output == "probabilities":
        assert out.shape == (6, s.n_outputs)
        assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    elif output == "values":
        assert out.shape[0] == 6 and np.isfinite(out).all()
    else:
        assert out.shape == (6,) and (out >= 0).all()
