"""The shipped experiments' quality figures (slow: run with `make test-slow`)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from mlflow import MlflowClient

from sweeplab.search import run_sweep
from sweeplab.spec import load_spec
from tests.helpers import ROOT


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


# ------------------------------------------------------------- one per architecture


def _sweep(name: str, store: Any) -> tuple[Any, dict[str, Any]]:
    """Run experiments/<name>.yaml on ``store``; the result and its trials by number."""
    import optuna

    result = run_sweep(load_spec(ROOT / "experiments" / f"{name}.yaml"), store)
    study = optuna.load_study(study_name=result.name, storage=store.storage_url)
    return result, {t.number: t for t in study.trials}


def _by_param(trials: dict[str, Any], key: str) -> dict[str, Any]:
    return {str(t.params[key]): t for t in trials.values()}


@pytest.mark.slow
def test_cnn_on_digits_reaches_098_test_accuracy(store: Any) -> None:
    result, _ = _sweep("cnn_digits", store)
    print(f"cnn-digits: best val_loss {result.best_value:.4f}, test {result.test}")
    assert result.test["test_acc"] >= 0.98


@pytest.mark.slow
def test_lstm_and_gru_beat_the_plain_rnn_on_64_step_pixel_sequences(store: Any) -> None:
    _, trials = _sweep("recurrent_digits", store)
    cells = _by_param(trials, "model.arch")
    print({arch: (t.value, t.user_attrs.get("test_acc")) for arch, t in cells.items()})
    assert cells["lstm"].value > cells["rnn"].value + 0.05
    assert cells["gru"].value > cells["rnn"].value + 0.05


@pytest.mark.slow
def test_transformer_on_digit_rows(store: Any) -> None:
    result, _ = _sweep("transformer_digits", store)
    print(f"transformer-digits: best val_acc {result.best_value:.4f}, test {result.test}")
    assert result.test["test_acc"] >= 0.95


@pytest.mark.slow
def test_the_lstm_reads_reviews_in_order_where_a_bag_of_words_cannot(store: Any) -> None:
    result, _ = _sweep("lstm_reviews", store)
    words = {b.name: b.value for b in result.baselines}
    print(f"lstm-reviews: {result.test}, bag of words {words}")
    assert result.test["test_acc"] >= 0.95
    assert words["logistic"] < 0.7


@pytest.mark.slow
def test_the_forecaster_beats_persistence_on_sunspots(store: Any) -> None:
    result, _ = _sweep("lstm_sunspots", store)
    print(f"lstm-sunspots: {result.test}")
    assert result.test["test_rmse"] < 0.8 * result.test["test_rmse_persistence"]


@pytest.mark.slow
def test_the_autoencoder_finds_the_held_out_digit(store: Any) -> None:
    result, _ = _sweep("autoencoder_digits", store)
    print(f"autoencoder-digits: best val_auroc {result.best_value:.4f}, test {result.test}")
    assert result.test["test_auroc"] >= 0.9


@pytest.mark.slow
def test_gan_samples_are_recognized_by_the_digits_classifier(store: Any) -> None:
    result, _ = _sweep("gan_digits", store)
    print(f"gan-digits: best val_fid {result.best_value:.2f}, test {result.test}")
    # an inception score of 1 is one class or noise; real test digits score about 9
    assert result.test["test_is"] >= 4.0
    assert result.test["test_confidence"] >= 0.7


@pytest.mark.slow
def test_custom_module_sweep(store: Any) -> None:
    result, _ = _sweep("custom_digits", store)
    assert result.test["test_acc"] >= 0.95


@pytest.fixture(scope="module")
def transfer_trials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sweeplab.search import train_once
    from sweeplab.store import Store

    store = Store.resolve(tmp_path_factory.mktemp("transfer") / "store")
    train_once(
        load_spec(ROOT / "experiments" / "cnn_digits_0to4.yaml"), store, register_as="digits-0to4"
    )
    _, trials = _sweep("transfer_digits", store)
    return _by_param(trials, "model.mode")


@pytest.mark.slow
def test_transfer_reports_scratch_finetune_and_feature_extraction(
    transfer_trials: dict[str, Any],
) -> None:
    print({mode: (t.value, t.user_attrs.get("test_acc")) for mode, t in transfer_trials.items()})
    assert set(transfer_trials) == {"scratch", "finetune", "feature_extraction"}
    assert all(t.value > 0.8 for t in transfer_trials.values())  # each learned the 5 digits


@pytest.mark.slow
def test_transfer_learns_digits_5_to_9_as_well_as_scratch(transfer_trials: dict[str, Any]) -> None:
    """What the README reports for this experiment: 8x8 digits 5-9 are learned from ~63
    labels as well from scratch as from the 0-4 backbone (within 0.05 of validation
    accuracy either way). A robust gain or loss fails this, and the README must change."""
    scratch = transfer_trials["scratch"].value
    for mode in ("finetune", "feature_extraction"):
        assert abs(transfer_trials[mode].value - scratch) <= 0.05, (mode, scratch)


@pytest.mark.slow
def test_the_pareto_experiment_gives_a_front_over_a_tenfold_range_of_sizes(store: Any) -> None:
    started = time.monotonic()
    result, trials = _sweep("mlp_pareto", store)
    seconds = time.monotonic() - started
    front = [t for t in trials.values() if t.number in _front_numbers(store, result.name)]
    sizes = [t.values[1] for t in front]
    print(
        f"mlp-pareto: {seconds:.0f} s, {len(sizes)} trials on the front, "
        f"{min(sizes):.0f} to {max(sizes):.0f} parameters"
    )
    assert max(sizes) >= 10 * min(sizes)
    assert seconds < 300


def _front_numbers(store: Any, name: str) -> set[int]:
    import optuna

    study = optuna.load_study(study_name=name, storage=store.storage_url)
    return {t.number for t in study.best_trials}
