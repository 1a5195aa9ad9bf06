"""Training techniques: input views, k-fold, schedules, cost metrics, forecasting, precision."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from sweeplab.data.split import split
from sweeplab.models.blocks import ToView
from sweeplab.search import run_sweep
from sweeplab.spec import DataConfig, spec_from_dict
from sweeplab.tracking.logger import BatchedMlflowLogger
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.fit import fit, make_trainer
from tests.helpers import all_runs, tiny_spec


def test_views_of_an_image_row_major() -> None:
    image = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)  # (N, C, H, W)
    flat = image.reshape(1, -1)
    assert torch.equal(ToView((2, 3, 4), "image")(flat), image)
    sequence = ToView((2, 3, 4), "sequence")(flat)  # one step per pixel, channels as features
    assert sequence.shape == (1, 12, 2)
    assert sequence[0, 5].tolist() == [image[0, 0, 1, 1].item(), image[0, 1, 1, 1].item()]
    rows = ToView((2, 3, 4), "rows")(flat)  # one token per row: both channels' pixels
    assert rows.shape == (1, 3, 8)
    assert rows[0, 2].tolist() == image[0, :, 2, :].reshape(-1).tolist()
    assert ToView((5,), "sequence")(torch.zeros(3, 5)).shape == (3, 5, 1)


def test_k_fold_tracks_each_fold_and_the_value_is_their_mean(store: Any) -> None:
    exp = spec_from_dict(
        tiny_spec(data={"folds": 3}, sweep={"trials": 1}, tracking={"experiment": "folds"})
    )
    result = run_sweep(exp, store)
    runs = all_runs(store, "folds")
    trial = next(r for r in runs if r.info.run_name == "trial-0")
    folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == trial.info.run_id]
    assert sorted(r.data.tags["sweeplab.fold"] for r in folds) == ["0", "1", "2"]
    client = MlflowClient(store.tracking_uri)
    values = [
        max(m.value for m in client.get_metric_history(r.info.run_id, "val_acc")) for r in folds
    ]
    assert result.best_value == pytest.approx(statistics.fmean(values))
    # the folds' validation rows are disjoint and cover everything but the test split
    parts = [split(exp.data, fold) for fold in range(3)]
    val_rows = [set(map(tuple, p.raw(p.x_val).round(4).tolist())) for p in parts]
    assert all(not (a & b) for i, a in enumerate(val_rows) for b in val_rows[i + 1 :])
    whole = split(DataConfig(dataset="iris"))
    assert sum(map(len, val_rows)) == len(whole.x_train) + len(whole.x_val)


def _lr_curve(store: Any, **train: Any) -> list[float]:
    exp = spec_from_dict(tiny_spec(train={"max_epochs": 8, "lr": 0.01, **train}))
    tracker = Tracker(store, "lr")
    logger = BatchedMlflowLogger(tracker.client, tracker.start_run("r"))
    fit(exp, logger=logger, test=False)
    return logger.curve("lr")


def test_learning_rate_schedules_shape_the_lr_curve(store: Any) -> None:
    assert _lr_curve(store) == pytest.approx([0.01] * 8)
    step = _lr_curve(store, schedule={"name": "step", "step_size": 3, "gamma": 0.5})
    assert step == pytest.approx([0.01] * 3 + [0.005] * 3 + [0.0025] * 2)
    warm_cosine = _lr_curve(store, schedule={"name": "cosine", "warmup_epochs": 3})
    assert warm_cosine[0] == pytest.approx(0.001)  # the warm-up starts at lr / 10
    assert warm_cosine[0] < warm_cosine[1] < warm_cosine[2] < warm_cosine[3] == pytest.approx(0.01)
    assert warm_cosine[3] > warm_cosine[5] > warm_cosine[7]  # then the cosine decays
    onecycle = _lr_curve(store, schedule={"name": "onecycle"})
    assert max(onecycle) <= 0.01 and onecycle[0] < 0.001 and onecycle[-1] < onecycle[2]
    plateau = _lr_curve(
        store,
        lr=0.5,
        max_epochs=12,
        schedule={"name": "plateau", "patience": 0, "factor": 0.5},
        optimizer="sgd",
    )
    assert plateau[0] == 0.5 and min(plateau) < 0.5  # reduced when val_loss stopped improving


def test_label_smoothing_raises_the_loss_of_a_confident_model() -> None:
    def train_loss(smoothing: float) -> float:
        exp = spec_from_dict(
            tiny_spec(train={"max_epochs": 30, "lr": 0.05, "label_smoothing": smoothing})
        )
        result = fit(exp)
        return result.test["test_loss"]

    assert train_loss(0.3) > train_loss(0.0) + 0.1


def test_mixed_precision_is_full_precision_where_the_hardware_lacks_it() -> None:
    exp = spec_from_dict(tiny_spec(train={"mixed_precision": True}))
    trainer = make_trainer(exp)
    expected = "32-true"
    if torch.cuda.is_available():
        expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert trainer.precision == expected
    assert make_trainer(spec_from_dict(tiny_spec())).precision == "32-true"  # not asked for
    assert fit(exp).epochs == 3


def test_sunspots_split_in_time_order_with_a_persistence_baseline() -> None:
    cfg = DataConfig(dataset="sunspots", window=10)
    s = split(cfg)
    assert s.shape == (10, 1) and s.task == "regression"
    # the last window of train leads into the first of validation: consecutive years
    last_train, first_val = s.raw(s.x_train[-1:])[0], s.raw(s.x_val[:1])[0]
    assert np.allclose(last_train[1:], first_val[:-1])
    baselines = dict(s.baselines)
    truth = s.y_test * s.target_std + s.target_mean
    naive = s.raw(s.x_test)[:, -1]
    assert baselines["test_rmse_persistence"] == pytest.approx(
        float(np.sqrt(np.mean((naive - truth) ** 2))), rel=1e-5
    )
    exp = spec_from_dict(
        tiny_spec(
            model={"arch": "gru", "hidden_size": 8},
            data={"dataset": "sunspots", "window": 10},
            objective={"metric": "val_rmse", "mode": "min"},
            train={"max_epochs": 2},
            search_space={},
        )
    )
    assert "test_rmse_persistence" in fit(exp).test


def test_flops_count_recurrent_and_attention_layers() -> None:
    from sweeplab.training.cost import _lstm_flops

    def cost(model: dict[str, Any], data: dict[str, Any] | None = None) -> dict[str, float]:
        exp = spec_from_dict(
            tiny_spec(model=model, data=data or {"dataset": "digits"}, train={"max_epochs": 1})
        )
        return fit(exp, test=False).cost

    lstm = cost({"arch": "lstm", "hidden_size": 8})
    # 64 steps of 1 pixel: the gates by hand, plus the head (8 → 10)
    assert lstm["flops_per_sample"] == _lstm_flops(torch.nn.LSTM(1, 8), 64) + 2 * 8 * 10
    one = cost({"arch": "transformer", "d_model": 16, "heads": 2, "layers": 1})
    two = cost({"arch": "transformer", "d_model": 16, "heads": 2, "layers": 2})
    assert two["flops_per_sample"] > 1.5 * one["flops_per_sample"]
    assert two["param_count"] > one["param_count"]


def test_fit_leaves_the_process_as_it_found_it() -> None:
    """A library call: no warning filter, logger level, signal handler or environment
    variable of the process is changed by training."""
    import logging
    import os
    import signal
    import warnings

    # imports set loggers up (Lightning) and OpenMP variables (scikit-learn): before the look
    import lightning.pytorch  # noqa: F401
    import sklearn  # noqa: F401

    exp = spec_from_dict(tiny_spec(train={"max_epochs": 2}))
    names = ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "optuna")
    before = (
        list(warnings.filters),
        {name: logging.getLogger(name).level for name in names},
        signal.getsignal(signal.SIGINT),
        dict(os.environ),
    )
    result = fit(exp)
    after = (
        list(warnings.filters),
        {name: logging.getLogger(name).level for name in names},
        signal.getsignal(signal.SIGINT),
        dict(os.environ),
    )
    assert result.epochs == 2
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[2] == before[2]
    assert {k: v for k, v in after[3].items() if before[3].get(k) != v} == {}
    assert set(before[3]) - set(after[3]) == set()
