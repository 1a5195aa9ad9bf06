"""Datasets read from local files in their published formats (no torchvision needed).

- MNIST and Fashion-MNIST: IDX files (``train-images-idx3-ubyte`` …, gzipped or not)
- CIFAR-10: the python batches (``data_batch_1`` … ``data_batch_5``, ``test_batch``)
- an image folder: ``<path>/<class>/<image>.png|jpg``, classes in sorted order
- a CSV file with a header row and a target column

Each reader returns flat features (images as their uint8 bytes, a quarter of float32's
memory: they are standardized per batch; other values as float32), labels and the
shape of one example;
a missing, corrupt or truncated file raises ``DataError`` naming the file and what
was expected. Nothing is downloaded unless ``data.download`` is true.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import pickle
import tarfile
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sweeplab.spec import InputError


class DataError(InputError):
    """A dataset's files are missing, corrupt or not in the expected format."""


# ------------------------------------------------------------------------------ IDX

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
DOWNLOADS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
}


def idx_header(path: Path) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """An IDX file's value type and shape, from its header: magic (0, 0, type, ndim),
    then ndim big-endian sizes."""
    with _open_idx(path) as fh:
        return _header(path, fh)[:2]


def read_idx(path: Path, out: np.ndarray | None = None) -> np.ndarray:
    """One IDX file's values, in its shape; read straight into ``out`` (a contiguous
    array of its type and size) when given, so a large file is in memory once."""
    with _open_idx(path) as fh:
        dtype, shape, header = _header(path, fh)
        size = int(np.prod(shape))
        values = np.empty(size, dtype=dtype) if out is None else out.reshape(-1)
        target = values.view(np.uint8).data  # the array's bytes, written in place
        got = 0
        while got < len(target):
            count = fh.readinto(target[got:])
            if not count:
                break
            got += count
        extra = len(fh.read())
    if got != size * dtype.itemsize or extra:
        raise DataError(
            f"{path}: truncated or padded IDX file: shape {shape} needs "
            f"{header + size * dtype.itemsize} bytes, found {header + got + extra}"
        )
    return values.reshape(shape)


@contextlib.contextmanager
def _open_idx(path: Path) -> Iterator[Any]:
    """The file, decompressed as it is read when it ends in .gz; an unreadable gzip
    stream is a DataError."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as fh:
            yield fh
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None


def _header(path: Path, fh: Any) -> tuple[np.dtype[Any], tuple[int, ...], int]:
    magic = fh.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_DTYPES:
        raise DataError(
            f"{path}: not an IDX file (it must start with bytes 0, 0, a type code and "
            f"the number of dimensions, but starts with {list(magic)})"
        )
    ndim = magic[3]
    sizes = fh.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({4 + len(sizes)} bytes)")
    shape = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    return np.dtype(IDX_DTYPES[magic[2]]), shape, 4 + 4 * ndim


def find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx(folder: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """MNIST-style folder: the train pair, plus the t10k pair when present. Bytes are
    read into one array of all the images (no second copy); other types as float32."""
    pairs = []
    for part, (images_name, labels_name) in IDX_FILES.items():
        images, labels = find_file(folder, images_name), find_file(folder, labels_name)
        if images is None or labels is None:
            if part == "train":
                raise DataError(
                    f"{folder}: expected {images_name} and {labels_name} (or .gz) in this "
                    "folder; set data.download: true to fetch them"
                )
            continue
        pairs.append((images, labels, *idx_header(images), idx_header(labels)[1]))
    for images, _, _, shape, label_shape in pairs:
        if len(shape) != 3 or len(label_shape) != 1 or shape[0] != label_shape[0]:
            raise DataError(
                f"{images}: expected N images of HxW and N labels, but got shapes "
                f"{shape} and {label_shape}"
            )
    image = pairs[0][3][1:]
    if any(shape[1:] != image for *_, shape, _ in pairs):
        raise DataError(f"{folder}: the test images are not {image[0]}x{image[1]} as the train")
    if all(dtype == np.uint8 for _, _, dtype, _, _ in pairs):
        x = np.empty((sum(shape[0] for *_, shape, _ in pairs), image[0] * image[1]), np.uint8)
        start = 0
        for images, _, _, shape, _ in pairs:
            read_idx(images, out=x[start : start + shape[0]])
            start += shape[0]
    else:
        x = np.concatenate([read_idx(p[0]).reshape(p[3][0], -1) for p in pairs]).astype(np.float32)
    y = np.concatenate([read_idx(labels) for _, labels, *_ in pairs]).astype(np.int64)
    return x, y, (1, *image)


# -------------------------------------------------------------------------- CIFAR-10

CIFAR_BATCHES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles: allow only what they hold (numpy arrays, builtins),
    so a hostile file in the data folder cannot run code."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("builtins", "bytes"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def load_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    found = [folder / name for name in CIFAR_BATCHES if (folder / name).is_file()]
    if not found:
        raise DataError(
            f"{folder}: expected CIFAR-10 python batches ({', '.join(CIFAR_BATCHES)}); "
            "set data.download: true to fetch them"
        )
    xs, ys = [], []
    for path in found:
        try:
            with path.open("rb") as fh:
                batch = _BatchUnpickler(fh, encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{path}: not a CIFAR-10 python batch (a pickled dict with b'data' and "
                f"b'labels'): {type(exc).__name__}: {exc}"
            ) from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise DataError(
                f"{path}: expected N x 3072 pixel rows and N labels, but got {data.shape} "
                f"and {labels.shape}"
            )
        xs.append(data)
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys), (3, 32, 32)


# ---------------------------------------------------------------------- image folder

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


@dataclass(frozen=True)
class ImageFolder:
    """``folder/<class>/<image>`` listed, each image's header read (not its pixels)."""

    paths: tuple[Path, ...]
    labels: np.ndarray
    classes: list[str]
    shape: tuple[int, ...]  # (C, H, W) of every image as read
    mode: str  # "L" or "RGB"
    size: tuple[int, int] | None  # (H, W) every image is resized to, or None

    @property
    def nbytes(self) -> int:
        """The images' pixels in memory, as bytes."""
        return len(self.paths) * int(np.prod(self.shape))

    def read(self, i: int) -> np.ndarray:
        """Image ``i`` decoded: one flat row of uint8 pixels, channel first."""
        from PIL import Image, UnidentifiedImageError

        path = self.paths[i]
        try:
            with Image.open(path) as opened:
                img = opened.convert(self.mode)
                if self.size is not None:
                    img = img.resize((self.size[1], self.size[0]))
                pixels = np.asarray(img, dtype=np.uint8)  # L or RGB: 8 bits
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
        chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        if chw.shape != self.shape:
            raise DataError(
                f"{path}: size {chw.shape[1:]} differs from the first image's "
                f"{self.shape[1:]}; set data.image_size: [H, W] to resize all images"
            )
        return chw.reshape(-1)


def scan_image_folder(folder: Path, size: tuple[int, int] | None) -> ImageFolder:
    """The images of ``folder`` by class, each opened for its header (a file that is not
    an image, or of another size with no ``size``, is a DataError naming it)."""
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(
            f"{folder}: expected one sub-folder per class (at least 2), found {classes}"
        )
    paths, labels = [], []
    mode: str | None = None
    first: tuple[int, int] | None = None  # (W, H) of the first image
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as opened:  # the header only: pixels stay on disk
                    mode = mode or ("L" if opened.mode in ("L", "1", "I;16") else "RGB")
                    first = first or opened.size
                    if size is None and opened.size != first:
                        raise DataError(
                            f"{path}: size {opened.size[::-1]} differs from the first "
                            f"image's {first[::-1]}; set data.image_size: [H, W] to resize "
                            "all images"
                        )
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"{path}: not a readable image ({exc})") from None
            paths.append(path)
            labels.append(label)
    if mode is None or first is None:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    height, width = size if size is not None else (first[1], first[0])
    shape = (1 if mode == "L" else 3, height, width)
    return ImageFolder(tuple(paths), np.asarray(labels, np.int64), classes, shape, mode, size)


def load_image_folder(
    found: ImageFolder,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], list[str]]:
    """The images ``scan_image_folder`` found, read into one uint8 array."""
    x = np.empty((len(found.paths), int(np.prod(found.shape))), np.uint8)
    for i in range(len(found.paths)):
        x[i] = found.read(i)
    return x, found.labels, found.shape, found.classes


# ------------------------------------------------------------------------------- CSV


def load_csv(path: Path, target: str, task: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Numeric feature columns and the target; classes are the sorted distinct targets."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if target not in frame.columns:
        raise DataError(
            f"{path}: no column {target!r} (data.target); columns: {', '.join(map(str, frame))}"
        )
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    text = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if text:
        raise DataError(f"{path}: feature columns must be numeric, but {', '.join(text)} are not")
    missing = frame.isna().any(axis=1)
    if missing.any():
        row = int(missing.to_numpy().argmax())
        raise DataError(f"{path}: missing values, first in data row {row + 1}")
    labels = frame[target]
    if task == "classification":
        classes = sorted(labels.unique().tolist(), key=str)
        index = {c: i for i, c in enumerate(classes)}
        y = labels.map(index).to_numpy(dtype=np.int64)
        return features.to_numpy(dtype=np.float32), y, [str(c) for c in classes]
    if not pd.api.types.is_numeric_dtype(labels):
        raise DataError(f"{path}: a regression target must be numeric, but {target!r} is not")
    return features.to_numpy(dtype=np.float32), labels.to_numpy(dtype=np.float32), []


# -------------------------------------------------------------------------- download


def download(dataset: str, folder: Path) -> None:
    """Fetch the published files of ``dataset`` into ``folder`` (only with data.download)."""
    base = DOWNLOADS.get(dataset)
    if base is None:
        raise DataError(f"dataset '{dataset}' has nothing to download; put its files in {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if dataset == "cifar10":
            with urllib.request.urlopen(base, timeout=60) as response:
                payload = response.read()
            with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
                tar.extractall(folder, filter="data")
            return
        for names in IDX_FILES.values():
            for name in names:
                if find_file(folder, name) is None:
                    urllib.request.urlretrieve(f"{base}{name}.gz", folder / f"{name}.gz")
    except OSError as exc:
        raise DataError(f"cannot download {dataset} from {base}: {exc} (offline?)") from None
