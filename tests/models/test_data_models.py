"""Data splits and the MLP module, trained for real on tiny data (no search, no tracking)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from sweeplab.data.builtin import LOADERS
from sweeplab.data.catalog import DATASETS
from sweeplab.data.split import split
from sweeplab.models.catalog import ACTIVATIONS, INITS, NORMS
from sweeplab.optim.catalog import OPTIMIZERS
from sweeplab.spec import DataConfig, spec_from_dict
from sweeplab.training.fit import TrainingDiverged, fit, prepare
from tests.helpers import tiny_spec


def test_every_catalog_dataset_has_a_loader() -> None:
    assert set(LOADERS) == set(DATASETS)


SHUFFLED_BUILTINS = sorted(
    name for name, info in DATASETS.items() if not info.from_path and info.kind != "series"
)


@pytest.mark.parametrize("name", SHUFFLED_BUILTINS)
def test_splits_are_seeded_stratified_and_standardized_on_train_only(name: str) -> None:
    cfg = DataConfig(dataset=name, seed=1)
    s = split(cfg)
    n = len(s.x_train) + len(s.x_val) + len(s.x_test)
    assert len(s.x_val) == round(0.15 * n) and len(s.x_test) == round(0.15 * n)
    # standardized with the training split's statistics: train is centred, val/test are not exactly
    # (an image's pixels with their channel's statistics: the channel is centred)
    train = s.x_train.reshape(len(s.x_train), *s.shape).swapaxes(0, 1).reshape(s.shape[0], -1)
    axis = 1 if len(s.shape) == 3 else 0
    rows = train if len(s.shape) == 3 else s.x_train
    assert np.allclose(rows.mean(axis=axis), 0.0, atol=1e-4)
    assert np.allclose(rows.std(axis=axis)[rows.std(axis=axis) > 0], 1.0, atol=1e-4)
    assert not np.allclose(s.x_val.mean(axis=0), 0.0, atol=1e-4)
    again = split(DataConfig(dataset=name, seed=1))
    assert np.array_equal(again.x_test, s.x_test)
    other = split(DataConfig(dataset=name, seed=2))
    assert not np.array_equal(other.x_test, s.x_test)
    if DATASETS[name].task == "classification":
        full = np.concatenate([s.y_train, s.y_val, s.y_test])
        share = np.bincount(full) / len(full)
        test_share = np.bincount(s.y_test, minlength=len(share)) / len(s.y_test)
        assert np.abs(share - test_share).max() < 0.05  # stratified
    else:
        assert abs(float(s.y_train.mean())) < 1e-4  # targets standardized too


def test_xor_splits_keep_the_four_clusters_equal() -> None:
    s = split(DataConfig(dataset="xor", n_samples=400, noise=0.2))
    raw_test = s.x_test * s.std + s.mean
    quadrant = (raw_test[:, 0] > 0).astype(int) * 2 + (raw_test[:, 1] > 0).astype(int)
    assert np.bincount(quadrant).tolist() == [15, 15, 15, 15]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_each_activation_is_in_the_network_and_learns(activation: str) -> None:
    exp = spec_from_dict(
        tiny_spec(
            model={"arch": "mlp", "activation": activation},
            train={"max_epochs": 10, "lr": 0.05},
        )
    )
    result = fit(exp, test=False)
    kinds = [type(m).__name__ for m in result.module.net.modules()]
    assert ACTIVATIONS[activation] in kinds
    assert result.value > 0.8  # validation accuracy on iris; chance is 1/3


@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize("init", sorted(INITS))
def test_norms_and_inits(norm: str, init: str) -> None:
    """The norm layer is there, and the first layer's weights have the spread of the
    init scheme: He (normal, std sqrt(2/fan_in)), Xavier (uniform with ReLU's gain), or
    PyTorch's default (uniform, bound 1/sqrt(fan_in)); He and Xavier zero the biases."""
    exp = spec_from_dict(
        tiny_spec(
            model={"arch": "mlp", "norm": norm, "init": init, "hidden": [128]},
            data={"dataset": "digits"},
            train={"max_epochs": 1},
        )
    )
    _, fresh = prepare(exp)
    first = next(m for m in fresh.net.modules() if isinstance(m, torch.nn.Linear))
    weight = first.weight.detach()
    fan_out, fan_in = weight.shape
    expected = {
        "he": math.sqrt(2 / fan_in),
        "xavier": math.sqrt(2) * math.sqrt(6 / (fan_in + fan_out)) / math.sqrt(3),
        "default": 1 / math.sqrt(fan_in) / math.sqrt(3),
    }[init]
    assert float(weight.std()) == pytest.approx(expected, rel=0.05)
    biases_zero = bool(torch.count_nonzero(first.bias.detach()) == 0)
    assert biases_zero == (init != "default")
    result = fit(exp, test=False)
    kinds = {type(m).__name__ for m in result.module.net.modules()}
    expected_norm = {"none": None, "batch": "BatchNorm1d", "layer": "LayerNorm"}[norm]
    if expected_norm is None:
        assert not kinds & {"BatchNorm1d", "LayerNorm"}
    else:
        assert expected_norm in kinds


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_each_optimizer_learns_iris(optimizer: str) -> None:
    lr = {"adadelta": 1.0, "sgd": 0.1}.get(optimizer, 0.01)
    exp = spec_from_dict(tiny_spec(train={"optimizer": optimizer, "lr": lr, "max_epochs": 15}))
    assert fit(exp).value > 0.6  # well above the 1/3 of chance


def test_no_hidden_layer_is_a_single_linear_layer_with_softmax_at_inference() -> None:
    exp = spec_from_dict(tiny_spec(model={"arch": "mlp", "hidden": []}))
    result = fit(exp, test=False)
    layers = [m for m in result.module.net.modules() if list(m.parameters(recurse=False))]
    assert len(layers) == 1 and isinstance(layers[0], torch.nn.Linear)
    model = result.module.inference_model(result.data.split).eval()
    probs = model(torch.rand(5, 4))
    assert torch.allclose(probs.sum(dim=1), torch.ones(5))


def test_regression_logs_rmse_in_target_units_with_mse_and_huber() -> None:
    for loss in ("mse", "huber"):
        exp = spec_from_dict(
            tiny_spec(
                data={"dataset": "diabetes"},
                train={"loss": loss, "max_epochs": 30, "lr": 0.01},
                objective={"metric": "val_rmse", "mode": "min"},
                search_space={},
            )
        )
        result = fit(exp)
        y_std = float(result.data.split.target_std)
        # diabetes targets spread ~77; a model that learned something beats predicting the mean
        assert 30 < result.value < y_std
        assert set(result.test) == {"test_loss", "test_rmse"}


def test_l1_penalty_shrinks_weights() -> None:
    def weight_norm(l1: float) -> float:
        exp = spec_from_dict(tiny_spec(train={"l1": l1, "max_epochs": 20}))
        net = fit(exp, test=False).module.net
        return float(sum(p.detach().abs().sum() for p in net.parameters() if p.dim() > 1))

    assert weight_norm(0.01) < 0.7 * weight_norm(0.0)


def test_logged_metrics_are_the_ones_the_spec_allows(store: Any) -> None:
    from sweeplab.tracking.logger import BatchedMlflowLogger
    from sweeplab.tracking.tracker import Tracker

    exp = spec_from_dict(tiny_spec())
    tracker = Tracker(store, "metrics")
    run = tracker.start_run("r")
    logger = BatchedMlflowLogger(tracker.client, run)
    fit(exp, logger=logger)
    logged = set(logger.history)
    assert set(exp.metrics()) <= logged
    assert logged == {
        *("train_loss", "val_loss", "val_acc", "lr", "test_loss", "test_acc"),
        *("param_count", "flops_per_sample", "epoch_seconds"),  # the cost of the configuration
    }
    # an MLP 4 → 16 → 3: 4·16 + 16 + 16·3 + 3 parameters; 2 FLOPs per multiply-add
    assert logger.history["param_count"] == [(0, 131.0)]
    assert logger.history["flops_per_sample"] == [(0, 2.0 * (4 * 16 + 16 * 3))]
    assert len(logger.history["epoch_seconds"]) == exp.train.max_epochs


def test_divergence_is_an_error_with_the_reason() -> None:
    exp = spec_from_dict(tiny_spec(train={"optimizer": "sgd", "lr": 1e8}))
    with pytest.raises(TrainingDiverged, match="val_loss became nan"):
        fit(exp)


def test_class_filters_relabel_in_the_specs_order_and_hold_out_from_training() -> None:
    s = split(DataConfig(dataset="digits", classes=[5, 6, 7, 8, 9], holdout_classes=[7]))
    assert s.n_classes == 5 and s.holdout == (2,)  # 7 is the third class listed
    assert sorted(np.unique(s.y_train).tolist()) == [0, 1, 3, 4]  # no 7s in training
    assert sorted(np.unique(s.y_val).tolist()) == [0, 1, 2, 3, 4]  # 7s stay in validation
    raw = s.raw(s.x_val)
    digits = split(DataConfig(dataset="digits"))
    # every relabelled validation row is a 5..9 of the unfiltered dataset, label shifted by 5
    full = {
        tuple(r): int(y)
        for r, y in zip(digits.raw(digits.x_train).round(3), digits.y_train, strict=True)
    }
    full |= {
        tuple(r): int(y)
        for r, y in zip(digits.raw(digits.x_val).round(3), digits.y_val, strict=True)
    }
    full |= {
        tuple(r): int(y)
        for r, y in zip(digits.raw(digits.x_test).round(3), digits.y_test, strict=True)
    }
    matched = [
        (full[tuple(r)], int(y))
        for r, y in zip(raw.round(3), s.y_val, strict=True)
        if tuple(r) in full
    ]
    assert matched and all(original == label + 5 for original, label in matched)
    reordered = split(DataConfig(dataset="digits", classes=[9, 3]))
    assert reordered.n_classes == 2 and set(np.unique(reordered.y_test)) == {0, 1}
