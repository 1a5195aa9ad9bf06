"""Shared building blocks: activations, norms, weight init, the input view, dense stacks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sweeplab.models.catalog import ACTIVATIONS, INITS, NORMS, NORMS_2D


def activation(name: str) -> nn.Module:
    """A fresh activation module (PReLU has its own learnable slope per use)."""
    return getattr(nn, ACTIVATIONS[name])()


def norm(name: str, width: int) -> nn.Module | None:
    cls = NORMS[name]
    return None if cls is None else getattr(nn, cls)(width)


def norm2d(name: str, channels: int) -> nn.Module | None:
    cls = NORMS_2D[name]
    if cls is None:
        return None
    if cls == "GroupNorm":  # layer norm over each feature map: one group of all channels
        return nn.GroupNorm(1, channels)
    if cls == "InstanceNorm2d":
        return nn.InstanceNorm2d(channels, affine=True)
    return getattr(nn, cls)(channels)


def init_weights(module: nn.Module, scheme: str, activation_name: str) -> None:
    """He or Xavier initialization of every Linear/Conv weight (biases to zero)."""
    fn_name = INITS[scheme]
    if fn_name is None:
        return
    fn = getattr(nn.init, fn_name)
    nonlinearity = {"leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid"}.get(
        activation_name, "relu"
    )
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d):
            if fn_name == "kaiming_normal_":
                fn(layer.weight, nonlinearity=nonlinearity)
            else:
                fn(layer.weight, gain=nn.init.calculate_gain(nonlinearity))  # type: ignore[arg-type]
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def dense(
    n_in: int,
    widths: list[int],
    n_out: int | None,
    act: str = "relu",
    dropout: float = 0.0,
    norm_name: str = "none",
) -> nn.Sequential:
    """Linear → [norm] → activation → [dropout] per width, then a Linear to ``n_out``."""
    layers: list[nn.Module] = []
    width = n_in
    for hidden in widths:
        layers.append(nn.Linear(width, hidden))
        norm_layer = norm(norm_name, hidden)
        if norm_layer is not None:
            layers.append(norm_layer)
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    if n_out is not None:
        layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def view_shape(shape: tuple[int, ...], view: str) -> tuple[int, ...]:
    """The shape of one example of natural ``shape`` seen as ``view``."""
    size = 1
    for dim in shape:
        size *= dim
    if view == "flat":
        return (size,)
    if view == "image":
        return shape
    if view == "rows":  # (C, H, W) → H tokens of C·W values
        return (shape[1], shape[0] * shape[2])
    if len(shape) == 3:  # sequence of pixels: H·W steps of C values
        return (shape[1] * shape[2], shape[0])
    return shape if len(shape) == 2 else (size, 1)


class ToView(nn.Module):
    """Flat rows (N, F) → the view a model takes (see ``view_shape``)."""

    def __init__(self, shape: tuple[int, ...], view: str) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.view = view
        self.out_shape = view_shape(self.shape, view)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        if self.view == "flat":
            return x.reshape(n, -1)
        if len(self.shape) == 3 and self.view in ("sequence", "rows"):
            image = x.reshape(n, *self.shape)
            order = (0, 2, 3, 1) if self.view == "sequence" else (0, 2, 1, 3)
            return image.permute(*order).reshape(n, *self.out_shape)
        return x.reshape(n, *self.out_shape)

    def extra_repr(self) -> str:
        return f"{self.shape} as {self.view} {self.out_shape}"


class TokenEmbedding(nn.Module):
    """Token ids (N, T) → word vectors (N, T, dim), the view of a text.

    Padding (id 0) is the zero vector and learns nothing (``padding_idx``): an encoder
    told its input is ``masked`` takes an all-zero step for padding.
    """

    def __init__(self, vocab_size: int, dim: int, length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.out_shape = (length, dim)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.embed(x.long())
        return out


def padding(x: Tensor) -> Tensor:
    """(N, T) True where a step of embedded tokens (N, T, F) is padding; the last step
    never is (a text left-padded to T keeps its last word there, and attention over no
    step at all would give NaN)."""
    pad = x.eq(0).all(dim=-1)
    last = torch.arange(x.shape[1], device=x.device) == x.shape[1] - 1
    return pad & ~last
