"""``data.augment``: each change does what it says, on training batches only, seeded per
fit, each fused restart with its own draws; a change that does not fit the data exits 2."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from sweeplab.data.augment import Augmenter, erase, flip, shift
from sweeplab.data.module import ArrayDataModule
from sweeplab.spec import DataConfig, spec_from_dict
from sweeplab.training.fit import fit
from sweeplab.training.fused import fit_fused
from tests.helpers import ROOT, sweeplab, tiny_spec


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 2000, h: int = 8, w: int = 8) -> torch.Tensor:
    """Images whose every pixel says where it is (so a flip or a shift shows)."""
    grid = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w) + 1
    return grid.expand(n, 1, h, w).clone()


def test_a_flip_mirrors_left_to_right_with_its_chance() -> None:
    images = _images()
    out = flip(images, 0.3, _generator())
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert bool((flipped | kept).all())  # every image is one or the other
    assert flipped.float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert bool((flip(images, 1.0, _generator()) == images.flip(-1)).all())


def test_a_shift_keeps_the_shape_and_moves_the_image_by_at_most_its_pixels() -> None:
    images = _images()
    out = shift(images, 2, _generator())
    assert out.shape == images.shape
    seen = set()
    for image in out[:400, 0]:
        # the pixel at (4, 4) is 4*8+4+1 = 37: find where it went
        where = (image == 37).nonzero()
        assert len(where) == 1
        dy, dx = (int(v) - 4 for v in where[0])
        assert abs(dy) <= 2 and abs(dx) <= 2
        # the image moved whole: its neighbour is the neighbour it had; what came in is 0
        r, c = int(where[0][0]), int(where[0][1])
        assert image[r, c + 1] == 38 and image[r + 1, c] == 45
        assert int((image == 0).sum()) == 8 * 8 - (8 - abs(dy)) * (8 - abs(dx))
        seen.add((dy, dx))
    assert len(seen) == 25  # every offset in [-2, 2]², drawn per image


def test_erasing_sets_one_square_to_the_mean_with_its_chance() -> None:
    images = torch.ones(2000, 1, 16, 16)
    out = erase(images, 0.5, _generator())
    zeros = (out == 0).flatten(1).sum(1)
    erased = zeros > 0
    assert erased.float().mean().item() == pytest.approx(0.5, abs=0.04)
    side = zeros[erased].float().sqrt()
    assert bool((side == side.round()).all())  # squares
    area = zeros[erased].float() / 256
    assert area.min() >= 0.01 and area.max() <= 0.27


# the split's mean and std of 4 tabular features, as the DataModule hands them over
STATISTICS = (torch.zeros(4), torch.ones(4))


def _augmenter(seed: int = 0, **augment: float) -> Augmenter:
    cfg = DataConfig(dataset="iris", augment=augment)
    return Augmenter(cfg, shape=(4,), n_classes=3, seed=seed)


def test_noise_has_the_asked_spread_and_a_seed_gives_the_same_draws() -> None:
    x, y = torch.zeros(50_000, 4), torch.zeros(50_000, dtype=torch.long)
    noisy, same_y = _augmenter(noise=0.3)(x, y, STATISTICS)
    assert noisy.std().item() == pytest.approx(0.3, abs=0.01)
    assert noisy.mean().item() == pytest.approx(0.0, abs=0.01) and torch.equal(same_y, y)
    assert torch.equal(_augmenter(noise=0.3)(x, y, STATISTICS)[0], noisy)  # the same seed: the same
    assert not torch.equal(_augmenter(seed=1, noise=0.3)(x, y, STATISTICS)[0], noisy)


def test_mixup_mixes_pairs_and_their_labels_alike() -> None:
    n = 256
    x = torch.eye(n)  # example i is one-hot on i: a mix shows its two examples and weight
    y = torch.randint(0, 3, (n,), generator=_generator())
    mixed, soft = _augmenter(mixup=0.4)(x, y, STATISTICS)
    assert soft.shape == (n, 3) and torch.allclose(soft.sum(1), torch.ones(n))
    weight = mixed.diagonal()  # each row's weight on its own example
    other = torch.where(mixed > 0, 1.0, 0.0).mul(1 - torch.eye(n)).argmax(1)
    onehot = torch.nn.functional.one_hot(y, 3).float()
    mixes = weight < 1 - 1e-6
    assert mixes.float().mean() > 0.9  # Beta(0.4, 0.4) rarely draws 1
    expected = weight[:, None] * onehot + (1 - weight[:, None]) * onehot[other]
    assert torch.allclose(soft[mixes], expected[mixes], atol=1e-6)
    assert torch.allclose(mixed.sum(1), torch.ones(n))  # a mix of two, weights summing to 1
    assert 0.35 < weight.mean() < 0.65  # Beta(a, a) is symmetric around 0.5


def test_a_resumed_augmenter_draws_what_the_uninterrupted_one_would() -> None:
    x, y = torch.zeros(100, 4), torch.zeros(100, dtype=torch.long)
    one = _augmenter(noise=1.0)
    one(x, y, STATISTICS)
    state = one.state_dict()
    after = one(x, y, STATISTICS)[0]
    resumed = _augmenter(noise=1.0)
    resumed.load_state_dict(state)
    assert torch.equal(resumed(x, y, STATISTICS)[0], after)


def test_bytes_moved_before_standardizing_match_a_float_batch_moved_after() -> None:
    """The DataModule moves a batch of bytes in pixel units and then standardizes it; a
    batch of floats is moved after: the same draws give the same batch."""
    cfg = DataConfig(dataset="digits", augment={"flip": 0.5, "shift": 2, "erase": 0.5})
    pixels = torch.randint(0, 256, (64, 64), generator=torch.Generator().manual_seed(0))
    mean, std = torch.full((64,), 100.0), torch.full((64,), 60.0)
    y = torch.zeros(64, dtype=torch.long)

    def augmenter() -> Augmenter:
        return Augmenter(cfg, shape=(1, 8, 8), n_classes=10, seed=3)

    first = augmenter()
    bytes_way = first((first.move(pixels.float()) - mean) / std, y, (mean, std), moved=True)[0]
    float_way = augmenter()((pixels.float() - mean) / std, y, (mean, std))[0]
    torch.testing.assert_close(bytes_way, float_way, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(bytes_way, (pixels.float() - mean) / std)  # it did change


class _Batches(pl.Callback):
    """The inputs each training and validation step gets (after the data's hooks)."""

    def __init__(self) -> None:
        self.train: list[torch.Tensor] = []
        self.val: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, i: int) -> None:
        self.train.append(batch[0].clone() if not isinstance(batch, list) else batch)

    def on_validation_batch_start(self, trainer: Any, module: Any, batch: Any, i: int) -> None:
        self.val.append(batch[0].clone())


def _digits(**augment: Any) -> Any:
    return spec_from_dict(
        tiny_spec(
            model={"arch": "mlp", "hidden": [16]},
            data={"dataset": "digits", "augment": augment},
            train={"max_epochs": 1, "seed": 0, "batch_size": 64},
        )
    )


def test_only_training_batches_change_and_the_same_seed_trains_the_same() -> None:
    exp = _digits(noise=0.5, shift=1)
    seen = _Batches()
    result = fit(exp, callbacks=[seen])
    split = result.data.split
    rows = {tuple(np.round(r, 4)) for r in split.x_train}
    assert all(tuple(np.round(r, 4)) not in rows for r in seen.train[0].numpy())  # changed
    assert torch.allclose(seen.val[-1], torch.as_tensor(split.x_val))  # as they are
    again = fit(exp, callbacks=[(seen_again := _Batches())])
    assert torch.equal(seen_again.train[3], seen.train[3])
    assert result.value == again.value


def test_fused_restarts_draw_their_own_changes_and_train_as_alone() -> None:
    exp = spec_from_dict(
        tiny_spec(
            model={"arch": "mlp", "hidden": [16]},
            data={"dataset": "digits", "augment": {"noise": 0.5, "mixup": 0.3, "shift": 1}},
            train={"max_epochs": 2, "seed": 0},
            sweep={"restarts": 2},
        )
    )
    fused = fit_fused(exp, [0, 1], 0, [None, None])
    for seed, member in zip([0, 1], fused, strict=True):
        alone = fit(exp, seed=seed)  # its own seed: its own shuffling and its own draws
        sa, sb = alone.module.state_dict(), member.module.state_dict()
        assert max((sa[k] - sb[k]).abs().max().item() for k in sa) < 1e-5
    # the two members' augmenters, on the same batch, draw differently
    x = torch.zeros(32, 64)
    y = torch.zeros(32, dtype=torch.long)
    a = ArrayDataModule(exp.data, 32, seed=0).prepared((x, y), training=True)[0]
    b = ArrayDataModule(exp.data, 32, seed=1).prepared((x, y), training=True)[0]
    assert not torch.allclose(a, b)


def test_a_searched_augmentation_validates_and_one_that_does_not_fit_exits_2(
    write_spec: Any, tmp_path: Any
) -> None:
    space = {
        "data.augment.shift": {"type": "int", "low": 0, "high": 2},
        "data.augment.erase": {"type": "float", "low": 0.0, "high": 0.5},
    }
    spec = write_spec(tiny_spec(data={"dataset": "digits"}, search_space=space), "ok.yaml")
    said = sweeplab("validate", str(spec))
    assert said.returncode == 0, said.stdout + said.stderr
    assert "augmentation of training batches: none (searched)" in said.stdout
    shipped = sweeplab("validate", "experiments/cnn_digits_augmented.yaml", cwd=ROOT)
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert "augmentation of training batches: shift 1, erase 0.25" in shipped.stdout
    bad = write_spec(tiny_spec(data={"dataset": "iris", "augment": {"flip": 0.5}}), "bad.yaml")
    said = sweeplab("train", str(bad), "--store", str(tmp_path / "store"))
    assert said.returncode == 2
    assert "bad.yaml" in said.stderr and "data.augment.flip" in said.stderr
    assert "image datasets only" in said.stderr and "Traceback" not in said.stderr
    assert not (tmp_path / "store").exists()  # nothing written
    mixed = write_spec(
        tiny_spec(data={"dataset": "diabetes", "augment": {"mixup": 0.2}}), "mix.yaml"
    )
    said = sweeplab("validate", str(mixed))
    assert said.returncode == 2 and said.stderr.count("data.augment.mixup") == 1, said.stderr
    assert "needs a classification dataset, not regression" in said.stderr
    # searched onto tabular data: the space's corner is refused before anything runs
    corner = write_spec(
        tiny_spec(search_space={"data.augment.flip": {"type": "float", "low": 0, "high": 1}}),
        "corner.yaml",
    )
    said = sweeplab("validate", str(corner))
    assert said.returncode == 2 and "data.augment.flip" in said.stderr
