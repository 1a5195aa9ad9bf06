"""An image folder larger than ``data.memory_mb``, read from disk as it is used.

``ImageFiles`` stands where a split's array of uint8 rows would: it is indexed like
one (a part of it is another ``ImageFiles``: no pixels read), and becomes an array only
when asked (``np.asarray``: a few rows, an input example, a chunk of the statistics
pass). Training reads it through ``dataset``: a DataLoader's worker processes
(``data.workers``) decode its images batch by batch, so memory holds the batches in
flight, not the folder. Written here because a DataLoader over files is what is needed
and torchvision (whose ``ImageFolder`` does this) is optional for sweeplab.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sweeplab.data.files import ImageFolder


class ImageFiles:
    """Rows ``index`` of an image folder: (N, C·H·W) uint8, read when used."""

    dtype = np.dtype(np.uint8)
    ndim = 2

    def __init__(self, folder: ImageFolder, index: np.ndarray | None = None) -> None:
        self.folder = folder
        self.index = np.arange(len(folder.paths)) if index is None else np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.index), int(np.prod(self.folder.shape))

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1]

    def __getitem__(self, key: Any) -> ImageFiles:
        """A part of these rows (a slice or an index array), still on disk."""
        return ImageFiles(self.folder, self.index[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, np.uint8)
        for row, i in enumerate(self.index.tolist()):
            out[row] = self.folder.read(i)
        return out if dtype is None else out.astype(dtype)

    def joined(self, other: ImageFiles) -> ImageFiles:
        """These rows, then ``other``'s (of the same folder)."""
        return ImageFiles(self.folder, np.concatenate([self.index, other.index]))

    def dataset(self, labels: np.ndarray) -> ImageDataset:
        """A map-style dataset of (pixels, label): an item, or a whole batch when indexed
        by a list of positions (what a BatchSampler gives: a worker decodes a batch)."""
        return ImageDataset(self, labels)


class ImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(pixels, label) of streamed images, read when indexed (``ImageFiles.dataset``)."""

    def __init__(self, files: ImageFiles, labels: np.ndarray) -> None:
        self.files, self.labels = files, labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.from_numpy(np.asarray(self.files[np.atleast_1d(i)]))
        labels = torch.as_tensor(self.labels[i])
        return (pixels[0], labels) if isinstance(i, int) else (pixels, labels)
