"""``data.augment``: random changes to training batches, drawn batched on the batch's device.

``Augmenter`` takes a batch as the loaders give it (flat, standardized rows and their
labels) and returns it changed:

- **images**: a horizontal flip (``flip``: each example's chance), a random shift
  (``shift``: padded by that many background pixels, then cropped back to its size at a
  random offset), random erasing (``erase``: each example's chance of a square of 2–25 %
  of the image set to the training mean, i.e. 0 once standardized); pixels move in the
  data's own units (a shift brings in 0, the background), and the rows are standardized
  again afterwards;
- **any data**: Gaussian noise (``noise``, in units of each feature's standard deviation);
- **classification**: mixup (``mixup`` = a: each example mixed with another of the batch
  with a weight drawn from Beta(a, a), its label becoming the same mix of the two one-hot
  labels: the cross-entropy loss takes such soft labels as they are).

Each fit draws from a generator of its own, seeded by the fit's seed and kept in its
checkpoints (``state_dict``): a trial is reproducible, a resumed fit draws what the
uninterrupted one would have, and each member of fused restarts (its own seed) draws its
own changes. That is why these are written here with torch ops rather than taken from
kornia: kornia's augmentations draw from torch's global generator, which dropout shares
and checkpoints do not keep. Every change is one batched op (no loop over examples).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sweeplab.spec import DataConfig

__all__ = ["Augmenter"]

# random erasing: the square's share of the image's area (Zhong et al.'s default range, 2-33 %,
# kept under a quarter so a digit keeps most of its strokes)
ERASE_AREA = (0.02, 0.25)


class Augmenter:
    """The changes ``cfg.augment`` asks for, on batches of one fit (seeded by ``seed``)."""

    def __init__(
        self,
        cfg: DataConfig,
        *,
        shape: tuple[int, ...],
        n_classes: int,
        seed: int,
    ) -> None:
        self.cfg = cfg.augment
        self.image = cfg.kind == "image" and len(shape) == 3
        self.shape = tuple(shape)
        self.n_classes = n_classes
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._restored: Tensor | None = None

    @property
    def moves_pixels(self) -> bool:
        return self.image and any(getattr(self.cfg, n) > 0 for n in self.cfg.IMAGE_ONLY)

    def move(self, x: Tensor) -> Tensor:
        """Rows of pixels in the data's own units (bytes not yet standardized), flipped
        and shifted: the first stage of ``__call__``, for a batch the DataModule
        standardizes after it (then ``__call__(..., moved=True)``)."""
        if not self.moves_pixels:
            return x
        g = self._generator_on(x.device)
        images = self._flip_and_shift(x.reshape(len(x), *self.shape), g)
        return images.reshape(len(x), -1)

    def __call__(
        self, x: Tensor, y: Tensor, statistics: tuple[Tensor, Tensor], *, moved: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``x`` (standardized) and ``y`` changed; ``statistics``: the split's mean and std
        per feature, on ``x``'s device (the DataModule's), to move pixels in the data's
        own units; ``moved``: ``move`` has flipped and shifted ``x`` already."""
        g = self._generator_on(x.device)
        if self.moves_pixels and not moved:
            mean, std = statistics
            images = self._flip_and_shift((x * std + mean).reshape(len(x), *self.shape), g)
            x = (images.reshape(len(x), -1) - mean) / std
        if self.image and self.cfg.erase > 0:
            x = erase(x.reshape(len(x), *self.shape), self.cfg.erase, g).reshape(len(x), -1)
        if self.cfg.noise > 0:
            x = x + self.cfg.noise * torch.randn(x.shape, generator=g, device=x.device)
        if self.cfg.mixup > 0:
            x, y = self._mixup(x, y, g)
        return x, y

    # ------------------------------------------------------------------------- images

    def _flip_and_shift(self, images: Tensor, g: torch.Generator) -> Tensor:
        """Images (N, C, H, W) in the data's own units: a shift brings in 0s, the
        background of a scan or a photo's border, not the mean."""
        if self.cfg.flip > 0:
            images = flip(images, self.cfg.flip, g)
        if self.cfg.shift > 0:
            images = shift(images, self.cfg.shift, g)
        return images

    # ------------------------------------------------------------------------- labels

    def _mixup(self, x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        weight = _beta(self.cfg.mixup, len(x), g).to(x.device)
        other = torch.randperm(len(x), generator=g, device=x.device)
        w = weight.view(-1, *[1] * (x.dim() - 1))
        onehot = torch.nn.functional.one_hot(y.long(), self.n_classes).to(x.dtype)
        wy = weight.view(-1, 1)
        return w * x + (1 - w) * x[other], wy * onehot + (1 - wy) * onehot[other]

    # -------------------------------------------------------------------------- state

    def _generator_on(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
            if self._restored is not None:
                self._generator.set_state(self._restored)
                self._restored = None
        return self._generator

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self._generator is None else {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self._generator, self._restored = None, state.get("generator")


def flip(images: Tensor, p: float, g: torch.Generator) -> Tensor:
    """Each image (N, C, H, W) mirrored left to right with chance ``p``."""
    chosen = torch.rand(len(images), generator=g, device=images.device) < p
    return torch.where(chosen.view(-1, 1, 1, 1), images.flip(-1), images)


def shift(images: Tensor, pixels: int, g: torch.Generator) -> Tensor:
    """Each image (N, C, H, W) padded by ``pixels`` zeros and cropped back to H×W at a
    random offset (the same as a random crop with padding), in two gathers."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pixels,) * 4)
    dy = torch.randint(0, 2 * pixels + 1, (n,), generator=g, device=images.device)
    dx = torch.randint(0, 2 * pixels + 1, (n,), generator=g, device=images.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=images.device)).view(n, 1, h, 1)
    padded = padded.gather(2, rows.expand(n, c, h, w + 2 * pixels))
    cols = (dx.view(n, 1) + torch.arange(w, device=images.device)).view(n, 1, 1, w)
    return padded.gather(3, cols.expand(n, c, h, w))


def erase(images: Tensor, p: float, g: torch.Generator) -> Tensor:
    """With chance ``p``, a square of each image (N, C, H, W; standardized) set to 0."""
    n, _, h, w = images.shape
    device = images.device
    low, high = ERASE_AREA
    area = low + (high - low) * torch.rand(n, generator=g, device=device)
    side = (area * h * w).sqrt().round().clamp(1, min(h, w)).long()
    top = (torch.rand(n, generator=g, device=device) * (h - side + 1)).long()
    left = (torch.rand(n, generator=g, device=device) * (w - side + 1)).long()
    chosen = torch.rand(n, generator=g, device=device) < p
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    inside = (
        (ys >= top.view(n, 1, 1))
        & (ys < (top + side).view(n, 1, 1))
        & (xs >= left.view(n, 1, 1))
        & (xs < (left + side).view(n, 1, 1))
        & chosen.view(n, 1, 1)
    )
    return images.masked_fill(inside.unsqueeze(1), 0.0)


def _beta(alpha: float, n: int, g: torch.Generator) -> Tensor:
    """``n`` draws of Beta(alpha, alpha), by NumPy's generator seeded from ``g``: torch's
    Beta distribution takes no generator, and this keeps every draw a function of ``g``."""
    seed = int(torch.randint(2**31, (1,), generator=g, device=g.device))
    draws = np.random.default_rng(seed).beta(alpha, alpha, size=n)
    return torch.as_tensor(draws, dtype=torch.float32)
