"""The seeded train / validation / test split of a dataset, standardized on train only.

    load (cached) → keep data.classes → data.limit → test split
      → validation split, or fold k of data.folds → drop data.holdout_classes from train
      → data.label_fraction of train → standardize with the training rows' statistics
        (per feature; an image's per channel), or, for text, fit the vocabulary on the
        training texts and turn every text into token ids

Splits are stratified on the class; a time series is split in time order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from sweeplab.data.builtin import LOADERS, Arrays, Rows
from sweeplab.data.catalog import DATASETS, Task
from sweeplab.data.text import Vocabulary
from sweeplab.spec import DataConfig


@dataclass(frozen=True, eq=False)  # compared (and cached) by identity: split() is cached
class Split:
    """The splits' rows; ``mean``/``std`` are the training rows' statistics (per feature).

    Rows are standardized float32, except images read as bytes, which stay uint8 (a
    quarter of the memory) and are standardized per batch (``per_batch``): by the
    DataModule on the batch's device, or by ``standardized`` for whole arrays. A text's
    rows are int64 token ids of the ``tokenizer`` (``data.text.Vocabulary`` as JSON) fit
    on the training texts; ``mean`` and ``std`` are then 0 and 1. A streamed image
    folder's rows are its files (``data.stream.ImageFiles``: read as they are used).
    """

    task: Task
    shape: tuple[int, ...]  # of one example
    x_train: Rows
    y_train: np.ndarray
    x_val: Rows
    y_val: np.ndarray
    x_test: Rows
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    target_mean: float
    target_std: float
    n_classes: int = 0
    holdout: tuple[int, ...] = ()  # labels left out of train (anomalies for an autoencoder)
    baselines: tuple[tuple[str, float], ...] = ()  # e.g. ("val_rmse_persistence", 21.3)
    labels: tuple[str, ...] = ()  # a classifier's output i is the data's class labels[i]
    vocab_size: int = 0  # text: the tokenizer's vocabulary, ids 0 (padding) to vocab_size - 1
    tokenizer: str = ""  # text: the tokenizer fit on the training texts, as JSON
    test_texts: tuple[str, ...] = ()  # text: the test rows as written (what a client sends)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_outputs(self) -> int:
        return self.n_classes if self.task == "classification" else 1

    @property
    def per_batch(self) -> bool:
        """The rows are the data's own bytes, standardized as they are used."""
        return bool(self.x_train.dtype == np.uint8)

    def standardized(self, x: Rows) -> np.ndarray:
        """Rows of this split, standardized (as the models see them), as float32."""
        if x.dtype != np.uint8:
            return np.asarray(x)
        return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)

    def raw(self, x: Rows) -> np.ndarray:
        """Rows of this split in the dataset's own units (what a client sends; a text's
        token ids: its client sends strings, which the registered model encodes)."""
        if self.vocab_size:
            return np.asarray(x)
        if x.dtype == np.uint8:
            return np.asarray(x, np.float32)
        return (np.asarray(x) * self.std + self.mean).astype(np.float32)

    def units(self, y: np.ndarray) -> np.ndarray:
        """Targets in their own units: labels as they are, standardized values scaled back."""
        if self.task == "classification":
            return y
        return y * self.target_std + self.target_mean


def split(cfg: DataConfig, fold: int = 0) -> Split:
    """The split of ``cfg`` (fold ``fold`` of ``data.folds``); cached: a sweep loads once."""
    # augmentation changes batches, not the split: trials that differ in it share one
    # nor do the processes that read a streamed folder
    return _split(cfg.model_dump_json(exclude={"augment", "workers"}), fold)


# Loaded arrays larger than this are not kept for another split of the same data (the
# splits themselves are cached): a 60,000-image MNIST in memory once, not twice.
KEEP_LOADED_BYTES = 32 * 2**20


@lru_cache(maxsize=4)
def load(cfg_json: str) -> Arrays:
    """The dataset's arrays (cached on the fields that choose them)."""
    cfg = DataConfig.model_validate_json(cfg_json)
    return LOADERS[cfg.dataset](cfg)


def _loading_key(cfg: DataConfig) -> str:
    """The fields that choose the arrays (not how they are split): one load per dataset."""
    fields: dict[str, Any] = dict.fromkeys(
        ("dataset", "path", "download", "target", "task", "window", "image_size", "memory_mb"),
        True,
    )
    if DATASETS[cfg.dataset].generated:  # drawn from a seeded generator
        fields |= dict.fromkeys(("n_samples", "noise", "seed"), True)
    if DATASETS[cfg.dataset].kind == "text":  # the texts, not how they are tokenized
        fields["text"] = {"column"}
    return cfg.model_dump_json(include=fields)


def _stratified(
    index: np.ndarray, size: int, seed: int, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, picked): ``size`` rows of ``index`` picked at random, stratified on ``labels``."""
    from sklearn.model_selection import train_test_split

    strata = None if labels is None else labels[index]
    try:
        rest, picked = train_test_split(index, test_size=size, random_state=seed, stratify=strata)
    except ValueError:  # fewer rows than classes, or a class of one row: pick at random
        rest, picked = train_test_split(index, test_size=size, random_state=seed)
    return np.sort(rest), np.sort(picked)


@lru_cache(maxsize=8)
def _split(cfg_json: str, fold: int) -> Split:
    cfg = DataConfig.model_validate_json(cfg_json)
    arrays = load(_loading_key(cfg))
    task = cfg.resolved_task
    x, y = arrays.x, arrays.y
    classify = task == "classification"
    keep, train, val, test = _indices(cfg, arrays, fold)

    large = isinstance(x, np.ndarray) and x.nbytes > KEEP_LOADED_BYTES
    if large:  # not held twice (loaded and split): the split is made of the loaded rows
        load.cache_clear()
    rows = _rows(x, (train, val, test), in_place=large and x.dtype == np.uint8)
    text = _tokenized(rows, cfg) if x.dtype == object else None
    if text is not None:
        rows, shape = text.rows, tuple[int, ...]((cfg.text.max_length,))
        mean, std = np.zeros(shape, np.float32), np.ones(shape, np.float32)
    else:
        shape = arrays.shape
        mean, std = _statistics(rows[0], shape, DATASETS[cfg.dataset].kind)
    t_mean, t_std = 0.0, 1.0
    n_classes, holdout = 0, tuple[int, ...]()
    labels_of = None  # data.classes: original label → 0..k-1, in the spec's order
    if classify:
        n_classes, holdout, labels_of = _classes(cfg, y[keep])
    else:
        t_mean, t_std = float(y[train].mean()), float(y[train].std() or 1.0)

    def fx(part: int) -> Rows:  # an image's bytes and token ids are kept as they are
        if x.dtype == np.uint8 or text is not None:
            return rows[part]
        return ((np.asarray(rows[part]) - mean) / std).astype(np.float32)

    def fy(i: np.ndarray) -> np.ndarray:
        if not classify:
            return ((y[i] - t_mean) / t_std).astype(np.float32)
        return (y[i] if labels_of is None else labels_of[y[i]]).astype(np.int64)

    baselines = _baselines(arrays, val, test)
    return Split(
        task,
        shape,
        fx(0),
        fy(train),
        fx(1),
        fy(val),
        fx(2),
        fy(test),
        mean,
        std,
        t_mean,
        t_std,
        n_classes,
        holdout,
        baselines,
        _labels(arrays, cfg.classes, n_classes) if classify else (),
        *(() if text is None else (text.vocab_size, text.tokenizer, text.test_texts)),
    )


def _classes(cfg: DataConfig, labels: np.ndarray) -> tuple[int, tuple[int, ...], np.ndarray | None]:
    """The number of classes, the held-out ones (as output labels), and the map from a
    label to its output (None: the labels are the outputs) of the kept ``labels``."""
    present = cfg.classes if cfg.classes is not None else sorted(np.unique(labels).tolist())
    n_classes = int(max(present)) + 1 if cfg.classes is None else len(present)
    labels_of = None
    if cfg.classes is not None:
        labels_of = np.full(max(int(labels.max()), *cfg.classes) + 1, -1, dtype=np.int64)
        labels_of[cfg.classes] = np.arange(len(cfg.classes))
    holdout = tuple(
        int(labels_of[c]) if labels_of is not None else c
        for c in cfg.holdout_classes
        if c in present
    )
    return n_classes, holdout, labels_of


@dataclass(frozen=True)
class _Tokenized:
    rows: list[Rows]  # each part's token ids
    vocab_size: int
    tokenizer: str  # JSON
    test_texts: tuple[str, ...]


def _tokenized(rows: list[Rows], cfg: DataConfig) -> _Tokenized:
    """A text's parts as token ids of a vocabulary fit on the training texts only:
    nothing leaks from validation or test."""
    documents = [np.asarray(part).tolist() for part in rows]
    vocabulary = Vocabulary.fit(documents[0], cfg.text)
    return _Tokenized(
        [vocabulary.encode(part) for part in documents],
        vocabulary.size,
        vocabulary.to_json(),
        tuple(str(t) for t in documents[2]),
    )


def _rows(x: Rows, parts: tuple[np.ndarray, ...], *, in_place: bool) -> list[Rows]:
    """The rows of each part of ``x``: copies, or (``in_place``, where the parts cover
    every row) views of ``x`` itself, its rows moved so that each part is contiguous: a
    large set of images is then in memory once, not twice."""
    order = np.concatenate(parts)
    if not in_place or len(order) != len(x) or not isinstance(x, np.ndarray):
        return [x[part] for part in parts]
    _permute_rows(x, order.tolist())
    ends = np.cumsum([len(part) for part in parts]).tolist()
    return [x[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _permute_rows(x: np.ndarray, order: list[int]) -> None:
    """``x[:] = x[order]`` with one row of extra memory: each cycle of the permutation
    followed, its first row held aside (0.06 s for 70,000 rows of 784 bytes here)."""
    done = bytearray(len(order))
    for start in range(len(order)):
        if done[start] or order[start] == start:
            continue
        held, i = x[start].copy(), start
        while order[i] != start:
            x[i] = x[order[i]]
            done[i] = 1
            i = order[i]
        x[i] = held
        done[i] = 1


def _statistics(x: Rows, shape: tuple[int, ...], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's mean and standard deviation over the training rows ``x``.

    Images take their channel's (over every pixel of it), repeated for each pixel: a
    pixel then means the same wherever it is, so a flipped or shifted image is seen as
    the model sees any other (with each pixel's own statistics, a shift moved a digit's
    stroke onto a border pixel whose std is 0, set to 1, and gave it a value of 16).
    """
    if kind == "image" and len(shape) == 3:
        pixels = int(np.prod(shape[1:]))
        total = np.zeros(shape[0])
        squares = np.zeros(shape[0])
        for start in range(0, len(x), 256):  # in chunks: no float64 copy of the whole data
            # (a streamed folder's chunk is read here: its only pass over the training images)
            chunk = np.asarray(x[start : start + 256], np.float64).reshape(-1, shape[0], pixels)
            total += chunk.sum(axis=(0, 2))
            squares += (chunk**2).sum(axis=(0, 2))
        count = len(x) * pixels
        channel_mean = total / count
        channel_std = np.sqrt(np.maximum(squares / count - channel_mean**2, 0.0))
        mean, std = np.repeat(channel_mean, pixels), np.repeat(channel_std, pixels)
    else:
        values = np.asarray(x)
        mean, std = values.mean(axis=0), values.std(axis=0)
    std[std == 0] = 1.0  # a constant feature stays at 0 after centring
    return mean.astype(np.float32), std.astype(np.float32)


def _labels(arrays: Arrays, classes: list[int] | None, n_classes: int) -> tuple[str, ...]:
    """The data's own name of each output class: its class name where the data has
    names (a folder, a CSV's values, a built-in's target names), else its label; with
    ``data.classes``, output i is the i-th class listed there."""
    original = list(classes) if classes is not None else list(range(n_classes))
    names = arrays.names
    return tuple(names[c] if c < len(names) else str(c) for c in original)


def _baselines(arrays: Arrays, val: np.ndarray, test: np.ndarray) -> tuple[tuple[str, float], ...]:
    """A series' naive forecast scored on the validation and test rows (RMSE)."""
    if arrays.baseline is None:
        return ()
    return tuple(
        (
            f"{stage}_rmse_{arrays.baseline_name}",
            float(np.sqrt(np.mean((arrays.baseline[i] - arrays.y[i]) ** 2))),
        )
        for stage, i in (("val", val), ("test", test))
    )


def _indices(
    cfg: DataConfig, arrays: Arrays, fold: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows kept (class filter, limit), and the train, validation and test rows."""
    x, y = arrays.x, arrays.y
    keep = np.arange(len(x))
    if cfg.classes is not None:
        keep = np.flatnonzero(np.isin(y, cfg.classes))
    labels = y if cfg.resolved_task == "classification" else None
    strata = arrays.strata if arrays.strata is not None else labels
    if cfg.limit is not None and cfg.limit < len(keep):
        keep, _ = _stratified(keep, len(keep) - cfg.limit, cfg.seed, strata)
    n = len(keep)
    n_test = max(round(cfg.test_fraction * n), 1)
    n_val = max(round(cfg.val_fraction * n), 1)
    # Whole counts (not fractions of what is left), so equal strata stay equal in every split.
    if arrays.ordered:  # the past trains, the most recent years validate and test
        first_val, first_test = n - n_val - n_test, n - n_test
        train, val, test = keep[:first_val], keep[first_val:first_test], keep[first_test:]
    else:
        rest, test = _stratified(keep, n_test, cfg.seed, strata)
        if cfg.folds > 1:
            train, val = _fold(rest, cfg.folds, fold, cfg.seed, strata)
        else:
            train, val = _stratified(rest, n_val, cfg.seed, strata)
    if cfg.holdout_classes:
        train = train[~np.isin(y[train], cfg.holdout_classes)]
    if cfg.label_fraction < 1.0:
        size = len(train) - max(math.ceil(cfg.label_fraction * len(train)), 1)
        if size > 0:
            train, _ = _stratified(train, size, cfg.seed, strata)
    return keep, train, val, test


def _fold(
    rest: np.ndarray, k: int, fold: int, seed: int, strata: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if strata is not None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = list(splitter.split(rest, strata[rest]))
    else:
        parts = list(KFold(n_splits=k, shuffle=True, random_state=seed).split(rest))
    train, val = parts[fold]
    return rest[train], rest[val]
