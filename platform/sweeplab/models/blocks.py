"""Shared building blocks: activations, normalizations and weight initialization by name."""

from __future__ import annotations

from torch import nn

from sweeplab.models.catalog import ACTIVATIONS, INITS, NORMS


def activation(name: str) -> nn.Module:
    """A fresh activation module (PReLU has its own learnable slope per use)."""
    return getattr(nn, ACTIVATIONS[name])()


def norm(name: str, width: int) -> nn.Module | None:
    cls = NORMS[name]
    return None if cls is None else getattr(nn, cls)(width)


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
