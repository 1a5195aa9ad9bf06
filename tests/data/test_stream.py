"""An image folder larger than ``data.memory_mb``: read from disk as it is used, by
DataLoader worker processes, giving the split and the training of the same folder read
into memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from sweeplab.cli import app
from sweeplab.data.split import split
from sweeplab.data.stream import ImageFiles
from sweeplab.spec import DataConfig, spec_from_dict
from sweeplab.training.fit import fit
from tests.helpers import tiny_spec

runner = CliRunner()


def image_folder(root: Path, per_class: int = 40) -> Path:
    """Three classes of 8x8 RGB PNGs: a bright square whose place is the class."""
    rng = np.random.default_rng(0)
    for label in range(3):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(8, 8, 3), dtype=np.uint8)
            pixels[2 * label : 2 * label + 3, 2:6] = 250
            Image.fromarray(pixels).save(root / f"c{label}" / f"{i}.png")
    return root


def folder_spec(path: Path, **data: Any) -> dict[str, Any]:
    return tiny_spec(
        model={"arch": "cnn", "channels": [4], "norm": "none"},
        data={"dataset": "image_folder", "path": str(path), **data},
        train={"optimizer": "adam", "lr": 0.01, "batch_size": 16, "max_epochs": 2},
    )


def test_a_folder_over_the_memory_budget_is_split_as_files_with_the_same_rows(
    tmp_path: Path,
) -> None:
    folder = image_folder(tmp_path / "images")  # 120 images of 192 bytes: 23 KB
    held = split(DataConfig(dataset="image_folder", path=str(folder)))
    streamed = split(DataConfig(dataset="image_folder", path=str(folder), memory_mb=0.01))
    assert isinstance(held.x_train, np.ndarray)
    assert isinstance(streamed.x_train, ImageFiles) and streamed.per_batch
    for part in ("x_train", "x_val", "x_test"):
        np.testing.assert_array_equal(np.asarray(getattr(streamed, part)), getattr(held, part))
    np.testing.assert_allclose(streamed.mean, held.mean)
    np.testing.assert_allclose(streamed.std, held.std)
    np.testing.assert_array_equal(streamed.y_train, held.y_train)
    np.testing.assert_allclose(streamed.raw(streamed.x_test[:5]), held.raw(held.x_test[:5]))


def test_streamed_training_reads_with_worker_processes_and_trains_as_in_memory(
    tmp_path: Path,
) -> None:
    folder = image_folder(tmp_path / "images")
    in_memory = fit(spec_from_dict(folder_spec(folder)))
    streamed = fit(spec_from_dict(folder_spec(folder, memory_mb=0.01, workers=2)))
    assert streamed.data.train_dataloader().num_workers == 2
    # the same batches in the same order: the same weights and test metrics
    for (name, got), (_, want) in zip(
        streamed.module.state_dict().items(), in_memory.module.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
    assert streamed.test["test_acc"] == in_memory.test["test_acc"]


def test_a_corrupt_image_in_a_streamed_folder_exits_2_before_anything_is_written(
    tmp_path: Path,
) -> None:
    folder = image_folder(tmp_path / "images", per_class=5)
    (folder / "c1" / "broken.png").write_bytes(b"\x89PNG not really")
    spec = tmp_path / "spec.yaml"
    spec.write_text(str(folder_spec(folder, memory_mb=0.001)).replace("'", '"'))
    store = tmp_path / "store"
    result = runner.invoke(app, ["train", str(spec), "--store", str(store)])
    assert result.exit_code == 2, result.output
    assert "broken.png: not a readable image" in result.output
    assert "Traceback" not in result.output and not store.exists()


def test_memory_and_workers_apply_to_image_folders_only() -> None:
    problems = DataConfig(dataset="digits", memory_mb=10, workers=4).problems()
    assert ("data.memory_mb", "only applies to dataset 'image_folder'") in problems
    assert ("data.workers", "only applies to dataset 'image_folder'") in problems


def test_a_streamed_folder_is_scored_from_disk_with_the_hash_and_score_of_memory(
    tmp_path: Path,
) -> None:
    """What promotion compares: the held-out test rows' hash and a model's score on them
    are those of the same folder read into memory, while the rows stay on disk."""
    from sweeplab.registry import evaluate

    folder = image_folder(tmp_path / "images")
    held = evaluate.held_out(spec_from_dict(folder_spec(folder)))
    streamed = evaluate.held_out(spec_from_dict(folder_spec(folder, memory_mb=0.01)))
    assert isinstance(streamed.x, ImageFiles) and isinstance(held.x, np.ndarray)
    assert streamed.hash == held.hash
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))
    read = evaluate.predict_rows(model, streamed.x, chunk=7)  # 3 chunks of the 18 test rows
    # logits of ~50: the sums of another chunking differ in float32's last digits
    np.testing.assert_allclose(read, evaluate.predict(model, held.x), rtol=1e-4, atol=1e-5)
    assert evaluate.score(model, streamed) == evaluate.score(model, held)
