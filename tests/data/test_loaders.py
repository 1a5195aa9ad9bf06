"""File datasets read from files the tests write in the published formats, and corrupt ones.

IDX (MNIST, Fashion-MNIST), CIFAR-10 python batches, an image folder, CSV; each
corrupt or hostile file is rejected with a message naming it.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sweeplab.cli import app
from sweeplab.data.files import DataError, read_idx
from sweeplab.data.split import split
from sweeplab.spec import DataConfig, spec_from_dict
from sweeplab.training.fit import fit
from tests.helpers import tiny_spec

runner = CliRunner()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """The IDX format: 0, 0, type code (0x08: unsigned byte), ndim, big-endian sizes, values."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def mnist_folder(folder: Path, per_class: int = 4, compress: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part, count in (("train", per_class), ("t10k", 1)):
        labels = np.repeat(np.arange(10), count)
        images = rng.integers(0, 256, size=(len(labels), 28, 28))
        images[:, labels, labels] = 255  # a class-dependent pixel: learnable
        write_idx(folder / f"{part}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{part}-labels-idx1-ubyte", labels, compress)
    return folder


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_read_as_28x28_images(tmp_path: Path, compress: bool) -> None:
    folder = mnist_folder(tmp_path / "mnist", compress=compress)
    s = split(DataConfig(dataset="mnist", path=str(folder)))
    assert s.shape == (1, 28, 28) and s.n_features == 784 and s.n_classes == 10
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 50  # train and t10k files
    first = read_idx(folder / ("train-images-idx3-ubyte" + (".gz" if compress else "")))
    assert first.shape == (40, 28, 28)


def test_a_cnn_trains_on_idx_files(tmp_path: Path) -> None:
    folder = mnist_folder(tmp_path / "fashion")
    exp = spec_from_dict(
        tiny_spec(
            model={"arch": "cnn", "channels": [4]},
            data={"dataset": "fashion_mnist", "path": str(folder)},
            train={"max_epochs": 1},
        )
    )
    assert fit(exp).epochs == 1


def test_a_cnn_evaluates_as_many_rows_as_it_trains_on_and_an_mlp_512(tmp_path: Path) -> None:
    """A convolution's activations are large per row: evaluating 512 rows at once would
    cost a CNN memory its training batch does not need; a dense network's are small."""
    from sweeplab.training.fit import prepare

    folder = str(mnist_folder(tmp_path / "mnist"))
    sizes = {}
    for arch, model in (("cnn", {"arch": "cnn", "channels": [4]}), ("mlp", {"arch": "mlp"})):
        exp = spec_from_dict(
            tiny_spec(
                model=model,
                data={"dataset": "mnist", "path": folder},
                train={"batch_size": 4},
            )
        )
        data, _ = prepare(exp)
        sizes[arch] = [
            len(next(iter(loader()))[0]) for loader in (data.val_dataloader, data.test_dataloader)
        ]
    assert sizes["cnn"] == [4, 4]
    assert sizes["mlp"] == [min(512, n) for n in (len(data.split.x_val), len(data.split.x_test))]


def test_images_are_held_as_bytes_and_standardized_per_batch(tmp_path: Path) -> None:
    from sweeplab.data.module import ArrayDataModule

    cfg = DataConfig(dataset="mnist", path=str(mnist_folder(tmp_path / "mnist")))
    s = split(cfg)
    assert s.per_batch and s.x_train.dtype == np.uint8  # a quarter of float32's memory
    assert s.x_train.nbytes == len(s.x_train) * 784
    data = ArrayDataModule(cfg, 8, seed=0, eval_batch_size=len(s.x_val))  # one batch
    rows, labels = next(iter(data.val_dataloader()))
    assert rows.dtype == torch.uint8
    x, _ = data.prepared((rows, labels), training=False)
    assert torch.allclose(x, torch.as_tensor(s.standardized(s.x_val)), atol=1e-6)
    # one mean and std per channel, over the training rows' pixels
    pixels = s.x_train.astype(np.float64)
    assert np.allclose(s.mean, pixels.mean(), rtol=1e-5)
    assert np.allclose(s.std, pixels.std(), rtol=1e-5)
    # the model a fit registers takes the raw bytes, as a client sends them
    exp = spec_from_dict(
        tiny_spec(
            model={"arch": "cnn", "channels": [4]}, data=cfg.model_dump(), train={"max_epochs": 1}
        )
    )
    result = fit(exp)
    served = result.module.inference_model(result.data.split).eval()
    with torch.no_grad():
        probabilities = served(torch.as_tensor(s.raw(s.x_test)))
        logits = result.module.eval()(torch.as_tensor(s.standardized(s.x_test)))
    assert torch.allclose(probabilities, torch.softmax(logits, -1), atol=1e-5)


def test_large_image_data_is_split_in_place_into_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over KEEP_LOADED_BYTES, the loaded array is not kept: its rows are moved so each
    part of the split is a view of it (in memory once), with the rows a copy would have."""
    import sweeplab.data.split as splitting

    cfg = DataConfig(dataset="mnist", path=str(mnist_folder(tmp_path / "mnist", per_class=6)))
    copied = split(cfg)
    assert copied.x_train.base is None  # small data: copies, the loaded array kept
    monkeypatch.setattr(splitting, "KEEP_LOADED_BYTES", 0)
    splitting.load.cache_clear()
    splitting._split.cache_clear()
    in_place = split(cfg)
    assert in_place is not copied
    for part in ("x_train", "x_val", "x_test", "y_train", "y_test"):
        assert np.array_equal(getattr(in_place, part), getattr(copied, part)), part
    assert in_place.x_train.base is not None and in_place.x_train.base is in_place.x_test.base
    assert np.allclose(in_place.mean, copied.mean) and np.allclose(in_place.std, copied.std)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda raw: b"\x12\x34" + raw[2:], ["not an IDX file", "[18, 52"]),
        (lambda raw: raw[:-10], ["truncated", "needs 31376 bytes, found 31366"]),
        (lambda raw: raw[:6], ["truncated IDX header"]),
    ],
    ids=["bad magic", "truncated data", "truncated header"],
)
def test_corrupt_idx_files_are_named_with_what_was_expected(
    tmp_path: Path, damage: Any, words: list[str]
) -> None:
    folder = mnist_folder(tmp_path / "mnist")
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(damage(images.read_bytes()))
    with pytest.raises(DataError) as err:
        split(DataConfig(dataset="mnist", path=str(folder)))
    assert str(images) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_a_corrupt_data_file_stops_the_sweep_before_anything_is_created(
    tmp_path: Path, write_spec: Any
) -> None:
    folder = mnist_folder(tmp_path / "mnist")
    (folder / "train-labels-idx1-ubyte").write_bytes(b"not idx at all")
    spec = write_spec(
        tiny_spec(
            model={"arch": "cnn", "channels": [4]}, data={"dataset": "mnist", "path": str(folder)}
        )
    )
    store = tmp_path / "store"
    for command in (["validate", str(spec)], ["sweep", str(spec), "--store", str(store)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "train-labels-idx1-ubyte: not an IDX file" in result.output
        assert "Traceback" not in result.output
    assert not store.exists()
    result = runner.invoke(app, ["train", str(spec), "--store", str(store)])
    assert result.exit_code == 2 and not store.exists()


def test_missing_files_say_which_ones_and_how_to_fetch(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"expected train-images-idx3-ubyte.*data.download"):
        split(DataConfig(dataset="mnist", path=str(tmp_path / "empty")))
    with pytest.raises(DataError, match="CIFAR-10 python batches"):
        split(DataConfig(dataset="cifar10", path=str(tmp_path / "empty")))


# ------------------------------------------------------------------------------ CIFAR


def cifar_folder(folder: Path) -> Path:
    folder = folder / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("data_batch_1", "test_batch"):
        labels = list(np.repeat(np.arange(10), 3))
        data = rng.integers(0, 256, size=(30, 3072)).astype(np.uint8)
        with (folder / name).open("wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, fh)
    return folder.parent


def test_cifar_batches_read_as_32x32_colour_images(tmp_path: Path) -> None:
    s = split(DataConfig(dataset="cifar10", path=str(cifar_folder(tmp_path))))
    assert s.shape == (3, 32, 32) and s.n_features == 3072 and s.n_classes == 10
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 60
    assert s.x_train.dtype == np.uint8
    assert len(set(s.mean.tolist())) == 3  # one mean per colour channel


def test_a_cnn_trains_on_cifar_batches(tmp_path: Path) -> None:
    exp = spec_from_dict(
        tiny_spec(
            model={"arch": "cnn", "channels": [4, 8], "pool": "avg", "norm": "instance"},
            data={"dataset": "cifar10", "path": str(cifar_folder(tmp_path))},
            train={"max_epochs": 1},
        )
    )
    result = fit(exp)
    assert result.epochs == 1
    # 32x32 halved twice: 8 channels of 8x8 into the 10-way head
    assert result.module.net.head[-1].in_features == 8 * 8 * 8


class _Exploit:
    def __reduce__(self) -> Any:
        return (os.system, ("touch /tmp/sweeplab-pwned",))


def test_a_hostile_or_corrupt_cifar_batch_is_refused(tmp_path: Path) -> None:
    folder = cifar_folder(tmp_path) / "cifar-10-batches-py"
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}))
    with pytest.raises(DataError, match=r"(posix|os)\.system is not allowed"):
        split(DataConfig(dataset="cifar10", path=str(folder.parent)))
    assert not Path("/tmp/sweeplab-pwned").exists()
    (folder / "data_batch_1").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="data_batch_1: not a CIFAR-10 python batch"):
        split(DataConfig(dataset="cifar10", path=str(folder.parent), seed=1))


# ---------------------------------------------------------------------- image folder


def image_folder(folder: Path, size: tuple[int, int] = (10, 12), mode: str = "RGB") -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        for i in range(8):
            shape = (*size, 3) if mode == "RGB" else size
            pixels = rng.integers(0, 256, size=shape).astype(np.uint8)
            Image.fromarray(pixels, mode=mode).save(folder / name / f"{i}.png")
    return folder


def test_an_image_folder_reads_one_class_per_subfolder(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "pets")
    s = split(DataConfig(dataset="image_folder", path=str(folder)))
    assert s.shape == (3, 10, 12) and s.n_classes == 2
    assert s.labels == ("cat", "dog")  # the class names a model's outputs answer with
    resized = split(DataConfig(dataset="image_folder", path=str(folder), image_size=[6, 6]))
    assert resized.shape == (3, 6, 6)
    gray = split(
        DataConfig(dataset="image_folder", path=str(image_folder(tmp_path / "g", mode="L")))
    )
    assert gray.shape == (1, 10, 12)


def test_image_folder_errors_name_the_file(tmp_path: Path) -> None:
    from PIL import Image

    folder = image_folder(tmp_path / "pets")
    odd = folder / "dog" / "odd.png"
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(odd)
    with pytest.raises(DataError, match=r"odd.png: size \(5, 5\) differs.*image_size"):
        split(DataConfig(dataset="image_folder", path=str(folder)))
    odd.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match=r"odd\.png: not a readable image"):
        split(DataConfig(dataset="image_folder", path=str(folder), seed=3))


def test_built_in_classes_are_named_as_the_data_names_them() -> None:
    """A classifier's output i answers with the data's class: iris' species; with
    data.classes, the i-th class listed there (digits 7 and 3: outputs 0 and 1)."""
    assert split(DataConfig(dataset="iris")).labels == ("setosa", "versicolor", "virginica")
    assert split(DataConfig(dataset="digits", classes=[7, 3])).labels == ("7", "3")
    assert split(DataConfig(dataset="xor")).labels == ("0", "1")  # no names: the labels


# ------------------------------------------------------------------------------- CSV


def test_csv_classification_and_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    size = 2 * x[:, 0] + x[:, 1]
    species = np.where(x[:, 0] > 0, "big", "small")
    rows = [f"{a:.4f},{b:.4f},{c:.4f}" for a, b, c in x]
    labelled = tmp_path / "labelled.csv"
    labelled.write_text(
        "a,b,c,species\n" + "".join(f"{r},{s}\n" for r, s in zip(rows, species, strict=True))
    )
    numeric = tmp_path / "numeric.csv"
    numeric.write_text(
        "a,b,c,size\n" + "".join(f"{r},{v:.4f}\n" for r, v in zip(rows, size, strict=True))
    )

    classes = split(
        DataConfig(dataset="csv", path=str(labelled), target="species", task="classification")
    )
    assert classes.n_classes == 2 and classes.n_features == 3  # "big" → 0, "small" → 1
    assert classes.labels == ("big", "small")
    regression = split(
        DataConfig(dataset="csv", path=str(numeric), target="size", task="regression")
    )
    assert regression.task == "regression" and regression.n_features == 3
    exp = spec_from_dict(
        tiny_spec(
            data={"dataset": "csv", "path": str(numeric), "target": "size", "task": "regression"},
            objective={"metric": "val_rmse", "mode": "min"},
            train={"max_epochs": 30, "lr": 0.03},
            search_space={},
        )
    )
    result = fit(exp)
    assert result.value < 0.5 * regression.target_std  # a linear target: learned well


@pytest.mark.parametrize(
    ("text", "target", "match"),
    [
        ("a,b\n1,2\n", "y", "no column 'y'.*columns: a, b"),
        ("a,name,y\n1,x,0\n2,z,1\n", "y", "feature columns must be numeric, but name"),
        ("a,y\n1,0\n,1\n", "y", "missing values, first in data row 2"),
    ],
    ids=["no target column", "text feature", "missing value"],
)
def test_csv_errors_name_the_column_or_row(
    tmp_path: Path, text: str, target: str, match: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        split(DataConfig(dataset="csv", path=str(path), target=target, task="classification"))
