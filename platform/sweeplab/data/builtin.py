"""Every dataset as arrays: the built-ins, generated sets, the sunspots series, and files.

A loader returns flat float32 features (one row per example), targets, and the
shape of one example (``(1, 8, 8)`` for digits), so models can see the same data
flat, as an image or as a sequence. Every built-in loader works offline:
scikit-learn and statsmodels ship their data, generated sets are seeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from sweeplab.data import files, text
from sweeplab.spec import DataConfig

if TYPE_CHECKING:
    from sweeplab.data.stream import ImageFiles

Rows: TypeAlias = "np.ndarray | ImageFiles"  # a split's rows: an array, or files on disk


@dataclass(frozen=True)
class Arrays:
    """Features (N, F), targets, and what the split needs to know about them."""

    # a text dataset's: its documents, strings (tokenized by the split); a streamed image
    # folder's: its files (``data.stream.ImageFiles``, read as they are used)
    x: Rows
    y: np.ndarray
    shape: tuple[int, ...]  # of one example, e.g. (1, 8, 8); prod(shape) == F (text: (1,))
    strata: np.ndarray | None = None  # stratify the split on these (None: on y if classes)
    ordered: bool = False  # a time series: split in time order, never shuffled
    baseline: np.ndarray | None = None  # a naive prediction per example, for comparison
    baseline_name: str = ""
    names: tuple[str, ...] = ()  # a classifier's class names, by label (none: the labels)


def _sklearn(name: str, image: bool = False) -> Callable[[DataConfig], Arrays]:
    def load(cfg: DataConfig) -> Arrays:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        x = bunch.data.astype(np.float32)
        shape = (1, 8, 8) if image else (x.shape[1],)
        if cfg.resolved_task == "classification":
            names = tuple(str(n) for n in bunch.target_names)
            return Arrays(x, bunch.target.astype(np.int64), shape, names=names)
        return Arrays(x, bunch.target.astype(np.float32), shape)

    return load


def _xor(cfg: DataConfig) -> Arrays:
    """Four equal Gaussian clusters at (±1, ±1), label 1 where x0·x1 > 0.

    Stratifying on the cluster keeps the four clusters equal in every split,
    so a linear model is bounded by 3 clusters of 4: accuracy 0.75.
    """
    rng = np.random.default_rng(cfg.seed)
    per = max(cfg.n_samples // 4, 1)
    centers = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=np.float32)
    cluster = np.repeat(np.arange(4), per)
    x = centers[cluster] + rng.normal(0.0, cfg.noise, size=(4 * per, 2)).astype(np.float32)
    y = (cluster < 2).astype(np.int64)
    return Arrays(x.astype(np.float32), y, (2,), strata=cluster)


def _generated(name: str) -> Callable[[DataConfig], Arrays]:
    def load(cfg: DataConfig) -> Arrays:
        from sklearn import datasets

        x, y = getattr(datasets, f"make_{name}")(
            n_samples=cfg.n_samples, noise=cfg.noise, random_state=cfg.seed
        )
        return Arrays(x.astype(np.float32), y.astype(np.int64), (2,))

    return load


def _sunspots(cfg: DataConfig) -> Arrays:
    """Yearly sunspot numbers: ``window`` past years → the next year.

    The persistence baseline predicts next year = this year; a forecaster
    earns its keep by beating it.
    """
    import statsmodels.api as sm

    series = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float32)
    w = cfg.window
    if len(series) <= w + 10:
        raise files.DataError(f"sunspots: data.window {w} leaves too few examples")
    x = np.lib.stride_tricks.sliding_window_view(series[:-1], w).copy()
    y = series[w:].copy()
    return Arrays(x, y, (w, 1), ordered=True, baseline=x[:, -1].copy(), baseline_name="persistence")


def _idx(cfg: DataConfig) -> Arrays:
    folder = Path(str(cfg.path))
    if cfg.download and files.find_file(folder, files.IDX_FILES["train"][0]) is None:
        files.download(cfg.dataset, folder)
    x, y, shape = files.load_idx(folder)
    return Arrays(x, y, shape)


def _cifar10(cfg: DataConfig) -> Arrays:
    folder = Path(str(cfg.path))
    if cfg.download and not any(folder.rglob("data_batch_1")):
        files.download(cfg.dataset, folder)
    x, y, shape = files.load_cifar10(folder)
    return Arrays(x, y, shape)


def _image_folder(cfg: DataConfig) -> Arrays:
    """Read into memory, or, larger than ``data.memory_mb`` as bytes, streamed from disk."""
    size = None if cfg.image_size is None else (cfg.image_size[0], cfg.image_size[1])
    found = files.scan_image_folder(Path(str(cfg.path)), size)
    if found.nbytes > cfg.memory_mb * 2**20:
        from sweeplab.data.stream import ImageFiles

        return Arrays(ImageFiles(found), found.labels, found.shape, names=tuple(found.classes))
    x, y, shape, classes = files.load_image_folder(found)
    return Arrays(x, y, shape, names=tuple(classes))


def _csv(cfg: DataConfig) -> Arrays:
    x, y, classes = files.load_csv(Path(str(cfg.path)), str(cfg.target), cfg.resolved_task)
    return Arrays(x, y, (x.shape[1],), names=tuple(classes or ()))


def _text_csv(cfg: DataConfig) -> Arrays:
    x, y, classes = text.load_text_csv(Path(str(cfg.path)), cfg.text.column, str(cfg.target))
    return Arrays(x, y, (1,), names=tuple(classes))  # one document: the split tokenizes


def _text_folder(cfg: DataConfig) -> Arrays:
    x, y, classes = text.load_text_folder(Path(str(cfg.path)))
    return Arrays(x, y, (1,), names=tuple(classes))  # one document: the split tokenizes


LOADERS: dict[str, Callable[[DataConfig], Arrays]] = {
    "digits": _sklearn("digits", image=True),
    "iris": _sklearn("iris"),
    "wine": _sklearn("wine"),
    "breast_cancer": _sklearn("breast_cancer"),
    "diabetes": _sklearn("diabetes"),
    "xor": _xor,
    "moons": _generated("moons"),
    "circles": _generated("circles"),
    "sunspots": _sunspots,
    "mnist": _idx,
    "fashion_mnist": _idx,
    "cifar10": _cifar10,
    "image_folder": _image_folder,
    "csv": _csv,
    "text_csv": _text_csv,
    "text_folder": _text_folder,
}
