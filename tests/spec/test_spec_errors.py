"""The bad-spec matrix: each mistake exits 2, names file, path and value, and creates nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sweeplab.cli import app
from tests.helpers import tiny_spec

runner = CliRunner()

OPTIMIZERS = {"train.optimizer": {"type": "categorical", "choices": ["sgd", "adam"]}}
MOMENTUM = {"type": "float", "low": 0.5, "high": 0.95}
LR = {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}
SMALL_LAYERS = {"type": "layers", "depth": {"low": 1, "high": 2}, "width": {"low": 4, "high": 8}}


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


CASES: list[tuple[str, dict[str, Any], str, list[str]]] = [
    # id, spec sections, dotted path expected in the message, other words expected
    ("unknown key", {"train": {"lrr": 0.1}}, "train.lrr", ["did you mean 'lr'", "allowed keys"]),
    ("unknown top key", {"modle": {}}, "modle", ["did you mean 'model'"]),
    (
        "lcb of a minimized metric",
        {
            "objective": {"metric": "val_loss", "mode": "min"},
            "sweep": {"restarts": 2, "restart_aggregate": "lcb"},
        },
        "sweep.restart_aggregate",
        ["val_loss is minimized", "use 'ucb'"],
    ),
    (
        "accuracy minimized",
        {"objective": {"metric": "val_acc", "mode": "min"}},
        "objective.mode",
        ["'min' would minimize val_acc", "better higher", "allowed: max"],
    ),
    (
        "loss maximized",
        {"objective": {"metric": "val_loss", "mode": "max"}},
        "objective.mode",
        ["'max' would maximize val_loss", "allowed: min"],
    ),
    (
        "early stopping on accuracy, minimized",
        {"train": {"early_stopping": {"monitor": "val_acc", "mode": "min"}}},
        "train.early_stopping.mode",
        ["val_acc", "allowed: max"],
    ),
    (
        "low >= high",
        {"search_space": {"train.lr": {"type": "float", "low": 0.1, "high": 0.01}}},
        "train.lr",
        ["low must be < high", "0.1"],
    ),
    (
        "nan bound",
        {"search_space": {"train.lr": {"type": "float", "low": float("nan"), "high": 0.1}}},
        "train.lr",
        ["finite", "nan"],
    ),
    (
        "inf bound",
        {"search_space": {"train.lr": {"type": "float", "low": 0.001, "high": float("inf")}}},
        "train.lr",
        ["finite", "inf"],
    ),
    (
        "log low <= 0",
        {"search_space": {"train.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}},
        "train.lr",
        ["log", "low=0.0"],
    ),
    (
        "float bounds on int",
        {"search_space": {"train.batch_size": {"type": "int", "low": 8.5, "high": 64}}},
        "train.batch_size.low",
        ["integers", "8.5"],
    ),
    (
        "float dist on int field",
        {"search_space": {"train.batch_size": {"type": "float", "low": 8, "high": 64}}},
        "train.batch_size",
        ["integer field", "use type: int"],
    ),
    (
        "empty choices",
        {"search_space": {"model.activation": {"type": "categorical", "choices": []}}},
        "model.activation.choices",
        ["at least 1"],
    ),
    (
        "search key not in spec",
        {"search_space": {"train.learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}},
        "train.learning_rate",
        ["not a field of the spec"],
    ),
    (
        "search key typo",
        {"search_space": {"model.dropuot": {"type": "float", "low": 0.0, "high": 0.5}}},
        "model.dropuot",
        ["did you mean 'model.dropout'"],
    ),
    (
        "bad choice",
        {
            "search_space": {
                "model.activation": {"type": "categorical", "choices": ["relu", "relux"]}
            }
        },
        "model.activation",
        ["'relux'", "allowed"],
    ),
    (
        "unknown activation",
        {"model": {"arch": "mlp", "activation": "swish"}},
        "model.activation",
        ["'swish'", "relu, leaky_relu, prelu, sigmoid, tanh, gelu"],
    ),
    (
        "unknown optimizer",
        {"train": {"optimizer": "adamm"}},
        "train.optimizer",
        ["did you mean 'adam'", "sgd, adam, adamw, rmsprop, adadelta"],
    ),
    ("unknown dataset", {"data": {"dataset": "mnistt"}}, "data.dataset", ["'mnistt'", "digits"]),
    (
        "unknown pruner",
        {"sweep": {"pruner": "hyperbandd"}},
        "sweep.pruner",
        ["did you mean 'hyperband'", "median"],
    ),
    (
        "unknown sampler",
        {"sweep": {"sampler": "bayes"}},
        "sweep.sampler",
        ["'bayes'", "tpe, random, grid, cmaes"],
    ),
    (
        "metric never logged",
        {"objective": {"metric": "val_f1", "mode": "max"}},
        "objective.metric",
        ["never logged", "val_loss, val_acc"],
    ),
    (
        "regression metric on classification",
        {"objective": {"metric": "val_rmse"}},
        "objective.metric",
        ["never logged"],
    ),
    ("negative lr", {"train": {"lr": -1}}, "train.lr", ["greater than 0", "-1"]),
    ("loss for other task", {"train": {"loss": "mse"}}, "train.loss", ["regression", "iris"]),
    ("grid needs steps", {"sweep": {"sampler": "grid"}}, "train.lr", ["grid sampler", "step"]),
    (
        "bad pruner option",
        {"sweep": {"pruner": "median", "pruner_options": {"n_startup": 1}}},
        "sweep.pruner_options.n_startup",
        ["median", "did you mean 'n_startup_trials'"],
    ),
    (
        "bad sampler option",
        {"sweep": {"sampler": "tpe", "sampler_options": {"n_startup": 3}}},
        "sweep.sampler_options.n_startup",
        ["sampler 'tpe'", "did you mean 'n_startup_trials'", "multivariate"],
    ),
    (
        "sampler seed in its options",
        {"sweep": {"sampler": "random", "sampler_options": {"seed": 3}}},
        "sweep.sampler_options.seed",
        ["from sweep.seed"],
    ),
    # architectures, views, data and training techniques
    ("unknown arch", {"model": {"arch": "lstmm"}}, "model.arch", ["did you mean 'lstm'", "gru"]),
    (
        "unknown key of an arch",
        {"model": {"arch": "cnn", "chanels": [8]}, "data": {"dataset": "digits"}},
        "model.chanels",
        ["did you mean 'channels'", "kernel_size"],
    ),
    (
        "heads do not divide d_model",
        {
            "model": {"arch": "transformer", "d_model": 30, "heads": 4},
            "data": {"dataset": "digits"},
        },
        "model.d_model",
        ["multiple of model.heads", "d_model=30"],
    ),
    ("cnn on a table", {"model": {"arch": "cnn"}}, "model.arch", ["image view", "iris"]),
    (
        "view the arch does not take",
        {"model": {"arch": "lstm"}, "data": {"dataset": "digits", "view": "image"}},
        "data.view",
        ["'image'", "allowed: auto, sequence, rows"],
    ),
    (
        "view the data does not have",
        {"data": {"dataset": "iris", "view": "rows"}},
        "data.view",
        ["'rows'", "allowed: auto, flat, sequence"],
    ),
    (
        "holdout without an autoencoder",
        {"data": {"dataset": "iris", "holdout_classes": [2]}},
        "data.holdout_classes",
        ["autoencoder"],
    ),
    (
        "gan with a schedule",
        {
            "model": {"arch": "gan"},
            "data": {"dataset": "digits"},
            "objective": {"metric": "val_fid", "mode": "min"},
            "train": {"schedule": {"name": "cosine"}},
        },
        "train.schedule.name",
        ["lr_g", "do not apply"],
    ),
    (
        "gan on regression",
        {
            "model": {"arch": "gan"},
            "data": {"dataset": "diabetes"},
            "objective": {"metric": "val_fid"},
        },
        "data.dataset",
        ["classification", "regression"],
    ),
    (
        "autoencoder objective it does not log",
        {"model": {"arch": "autoencoder"}, "objective": {"metric": "val_acc"}},
        "objective.metric",
        ["never logged", "val_loss"],
    ),
    (
        "warm-up with plateau",
        {"train": {"schedule": {"name": "plateau", "warmup_epochs": 2}}},
        "train.schedule",
        ["plateau", "warmup_epochs=2"],
    ),
    (
        "unknown schedule",
        {"train": {"schedule": {"name": "cosin"}}},
        "train.schedule.name",
        ["did you mean 'cosine'"],
    ),
    (
        "label smoothing on regression",
        {
            "data": {"dataset": "diabetes"},
            "objective": {"metric": "val_rmse"},
            "train": {"label_smoothing": 0.1},
        },
        "train.label_smoothing",
        ["cross_entropy", "mse"],
    ),
    (
        "folds on a series",
        {
            "model": {"arch": "lstm"},
            "data": {"dataset": "sunspots", "folds": 3},
            "objective": {"metric": "val_rmse"},
        },
        "data.folds",
        ["past and future"],
    ),
    (
        "file dataset without a path",
        {"data": {"dataset": "mnist"}},
        "data.path",
        ["required", "IDX"],
    ),
    (
        "missing data path",
        {"data": {"dataset": "csv", "path": "nope.csv", "target": "y", "task": "classification"}},
        "data.path",
        ["'nope.csv' does not exist"],
    ),
    (
        "csv without target",
        {"data": {"dataset": "csv", "path": ".", "task": "classification"}},
        "data.target",
        ["required"],
    ),
    (
        "wrong task for a built-in",
        {"data": {"dataset": "iris", "task": "regression"}},
        "data.task",
        ["classification", "leave data.task out"],
    ),
    (
        "missing transfer source",
        {"model": {"arch": "transfer", "source": "nope.pt"}},
        "model.source",
        ["'nope.pt' does not exist", "models:/"],
    ),
    (
        "custom class that cannot be imported",
        {"model": {"arch": "custom", "class": "no_such_pkg.mod:Net"}},
        "model.class",
        ["cannot import", "No module named 'no_such_pkg'"],
    ),
    (
        "custom class that is not a module",
        {"model": {"arch": "custom", "class": "examples.custom_mlp:Any"}},
        "model.class",
        ["not a LightningModule"],
    ),
    (
        "custom kwargs the class does not take",
        {
            "model": {
                "arch": "custom",
                "class": "examples.custom_mlp:TinyMLP",
                "kwargs": {"depth": 3},
            }
        },
        "model.class",
        ["does not take depth"],
    ),
    (
        "custom class missing an argument",
        {"model": {"arch": "custom", "class": "tests.custom_modules:NeedsVocab"}},
        "model.class",
        ["needs vocab", "model.kwargs"],
    ),
    # conditions (when) and layers entries: each mistake names the entry
    (
        "condition on an unknown entry",
        {
            "search_space": {
                **OPTIMIZERS,
                "train.momentum": MOMENTUM | {"when": {"train.optimzer": "sgd"}},
            }
        },
        "train.momentum.when",
        ["'train.optimzer' is not an entry of the space", "did you mean 'train.optimizer'"],
    ),
    (
        "condition on a value the entry never takes",
        {
            "search_space": {
                **OPTIMIZERS,
                "train.momentum": MOMENTUM | {"when": {"train.optimizer": ["sgd", "sdg"]}},
            }
        },
        "train.momentum.when",
        ["never takes 'sdg'", "its choices are sgd, adam"],
    ),
    (
        "condition on a float entry",
        {
            "search_space": {
                "train.momentum": MOMENTUM | {"when": {"train.lr": 0.01}},
                "train.lr": LR,
            }
        },
        "train.momentum.when",
        ["'train.lr' is a float entry", "categorical or int"],
    ),
    (
        "circle of conditions",
        {
            "search_space": {
                "train.optimizer": {
                    "type": "categorical",
                    "choices": ["sgd", "adam"],
                    "when": {"train.batch_size": 8},
                },
                "train.batch_size": {
                    "type": "categorical",
                    "choices": [8, 16],
                    "when": {"train.optimizer": "sgd"},
                },
            }
        },
        "train.optimizer.when",
        ["circle", "train.optimizer → train.batch_size → train.optimizer"],
    ),
    (
        "layers on a number",
        {"search_space": {"train.lr": SMALL_LAYERS}},
        "train.lr",
        ["a layers distribution gives a list of layer widths", "0.01"],
    ),
    (
        "layers with the grid sampler",
        {
            "sweep": {"sampler": "grid"},
            "search_space": {"model.hidden": SMALL_LAYERS},
        },
        "model.hidden",
        ["the grid sampler takes no conditional or layers entries"],
    ),
]


@pytest.mark.parametrize("command", ["validate", "sweep"])
@pytest.mark.parametrize(("case", "sections", "path", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_spec_exits_2_names_path_and_creates_nothing(
    tmp_path: Path,
    write_spec: Any,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    case: str,
    sections: dict[str, Any],
    path: str,
    words: list[str],
) -> None:
    spec_path = write_spec(tiny_spec(**sections))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWEEPLAB_STORE", raising=False)
    before = _files(tmp_path)
    args = [command, str(spec_path)] + (["--no-smoke", "--quiet"] if command == "sweep" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = result.output
    assert "Traceback" not in message
    assert str(spec_path) in message or "--set" in message
    assert f"{path}:" in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert _files(tmp_path) == before, "a rejected spec must not create any file"
    assert not (tmp_path / "sweeplab-store").exists()


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.output and "not found" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: [unclosed\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "invalid YAML at line" in result.output


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys: the first section's settings would be lost."""
    spec = tmp_path / "twice.yaml"
    spec.write_text(
        "name: twice\ndata: {dataset: iris}\nmodel: {arch: mlp, hidden: [8]}\n"
        "sweep:\n  sampler: random\n  seed: 3\ntrain:\n  max_epochs: 1\n  lr: 0.01\n"
        "  lr: 0.1\nsweep:\n  trials: 2\n"
    )
    for command in (["validate"], ["sweep", "--no-smoke", "-q", "--store", str(tmp_path / "s")]):
        result = runner.invoke(app, [command[0], str(spec), *command[1:]])
        assert result.exit_code == 2, result.output
        assert "twice.yaml: train.lr: is given twice, at lines 9 and 10" in result.output
    assert not (tmp_path / "s").exists()
    spec.write_text(spec.read_text().replace("  lr: 0.1\n", ""))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2 and "twice.yaml: sweep: is given twice, at lines 4 and 10" in (
        result.output
    ), result.output


def test_search_space_file_errors_name_that_file(tmp_path: Path, write_spec: Any) -> None:
    (tmp_path / "space.yaml").write_text("train.lr: {type: float, low: 1, high: 0.5}\n")
    spec = write_spec(tiny_spec(search_space="space.yaml"))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert "space.yaml: train.lr: low must be < high" in result.output


def test_bad_set_override(write_spec: Any) -> None:
    spec = write_spec(tiny_spec())
    for bad, expected in [
        ("train.lr", "dotted.path=value"),
        ("train.lr.x=1", "not a mapping"),
        ("train.optimizer=adamm", "train.optimizer"),
    ]:
        result = runner.invoke(app, ["validate", str(spec), "--set", bad])
        assert result.exit_code == 2, bad
        assert expected in result.output, result.output


def test_valid_spec_and_every_shipped_experiment() -> None:
    from tests.helpers import ROOT

    for spec in sorted((ROOT / "experiments").glob("*.yaml")):
        result = runner.invoke(app, ["validate", str(spec)])
        assert result.exit_code == 0, f"{spec}: {result.output}"
        assert "valid" in result.output


def test_smoke_catches_a_corner_that_fails(
    tmp_path: Path, write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batch norm cannot train on a batch of one sample: only the low corner of batch_size fails.
    spec = write_spec(
        tiny_spec(
            model={"arch": "mlp", "hidden": [8], "norm": "batch"},
            search_space={"train.batch_size": {"type": "int", "low": 1, "high": 16}},
        )
    )
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    result = runner.invoke(app, ["validate", "--smoke", str(spec)])
    assert result.exit_code == 2, result.output
    assert "smoke test failed" in result.output and "'train.batch_size': 1" in result.output
    assert "Expected more than 1 value per channel" in result.output
    assert _files(tmp_path) == before
    ok = runner.invoke(app, ["validate", "--smoke", str(spec), "--set", "model.norm=layer"])
    assert ok.exit_code == 0, ok.output
    assert "smoke test passed" in ok.output
    assert _files(tmp_path) == before


def test_overrides_reach_the_spec(write_spec: Any) -> None:
    from sweeplab.spec import load_spec

    path = write_spec(tiny_spec())
    exp = load_spec(
        path,
        [
            "train.lr=3e-3",
            "model.hidden=[4, 5]",
            "train.early_stopping.patience=2",
            "tracking.register_as=m",
        ],
    )
    assert exp.train.lr == pytest.approx(3e-3)
    assert exp.model.hidden == [4, 5]
    assert exp.train.early_stopping is not None and exp.train.early_stopping.patience == 2
    assert exp.tracking.register_as == "m"
    assert os.fspath(path).endswith("spec.yaml")


def test_a_mistake_outside_the_search_space_is_reported_once(write_spec: Any) -> None:
    """Not blamed on every search-space entry (each corner would inherit it)."""
    spec = write_spec(
        tiny_spec(
            sweep={"pruner": "none", "pruner_options": {"n_startup_trials": 2}},
            search_space={
                "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
                "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
                "model.activation": {"type": "categorical", "choices": ["relu", "tanh"]},
            },
        )
    )
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "sweep.pruner_options.n_startup_trials" in errors[0]
