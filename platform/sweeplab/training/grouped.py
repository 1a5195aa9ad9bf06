"""The batched-matrix path of fused restarts: a net of Linear layers (and batch norm,
and elementwise layers) run for every member at once, each Linear one ``torch.baddbmm``
of the members' stacked weights. ``vmap`` over ``functional_call`` does the same for
any net, at a cost per call that is most of a small MLP's step on a CPU."""

from __future__ import annotations

import torch
from torch import nn

# Layers without weights of their own that act on each value or row alone: the same
# module serves every member of a (k, batch, features) tensor (dropout draws per value)
ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.Dropout,
    nn.Identity,
)

Layers = list[tuple[str, nn.Module]]


def grouped_layers(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The layers of ``module.net`` in order, when each is a Linear (with a bias), a
    BatchNorm1d, an elementwise layer or a flat view; None for any other net (vmap
    then runs it)."""
    from sweeplab.models.blocks import ToView

    net = getattr(module, "net", None)
    if not isinstance(net, nn.Sequential):
        return None
    layers: list[tuple[str, nn.Module]] = []
    for name, layer in net.named_modules(prefix="net"):
        if isinstance(layer, nn.Sequential):
            continue
        flat = isinstance(layer, ToView) and layer.view == "flat"
        linear = isinstance(layer, nn.Linear) and layer.bias is not None
        norm = isinstance(layer, nn.BatchNorm1d) and layer.affine and layer.track_running_stats
        if not (flat or linear or norm or isinstance(layer, ELEMENTWISE)):
            return None
        layers.append((name, layer))
    return layers


def grouped_forward(
    layers: Layers, state: dict[str, torch.Tensor], x: torch.Tensor, training: bool
) -> torch.Tensor:
    """Every member's output: ``x`` (k, batch, ...), ``state`` the stacked parameters and
    buffers by name."""
    x = x.reshape(x.shape[0], x.shape[1], -1)
    for name, layer in layers:
        if isinstance(layer, nn.Linear):
            weight, bias = state[f"{name}.weight"], state[f"{name}.bias"]
            x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        elif isinstance(layer, nn.BatchNorm1d):
            x = batch_norm(x, layer, name, state, training)
        elif isinstance(layer, nn.Dropout):  # each member's own rate, where the state has them
            x = dropout(x, state.get(f"{name}.rate", layer.p)) if training else x
        elif isinstance(layer, ELEMENTWISE):
            x = layer(x)
    return x


def dropout(x: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """nn.Dropout in training: each value zeroed with probability ``p``, the others
    scaled by 1 / (1 - p); every member draws its own. ``p``: one rate, or each
    member's, (k,), for ``x`` (k, batch, ...).

    Written out because torch's CPU dropout draws its mask with ``bernoulli_``, which
    takes twice the time of ``rand_like`` and a comparison: on the default MLP's fused
    step (k = 2, two dropout layers) that was half a millisecond of 3.5. The mask is
    scaled outside the graph, so that the backward pass has one product to go through,
    not a product and a division: 1.09 ms against 1.40 a layer for 16 members (forward,
    backward and the draw).
    """
    if isinstance(p, torch.Tensor):
        if not bool((p > 0).any()):
            return x
        p = p.view(-1, *[1] * (x.dim() - 1))
    elif p <= 0:
        return x
    elif p >= 1:
        return torch.zeros_like(x)
    with torch.no_grad():  # the mask scaled: one product in the graph, as torch's dropout
        scale = (torch.rand_like(x) >= p) * (1 / (1 - p))
    return x * scale


def batch_norm(
    x: torch.Tensor,
    layer: nn.BatchNorm1d,
    name: str,
    state: dict[str, torch.Tensor],
    training: bool,
) -> torch.Tensor:
    """BatchNorm1d of every member: in training its own batch's statistics, which
    update its own running ones (in place, as torch does for one model); in evaluation
    its running ones.

    One call of torch's own batch norm over the members' features side by side, (batch,
    k * features), with the stacked statistics and affine parameters as flat views:
    each (member, feature) is a channel of its own, so the statistics are each member's.
    Written out in tensor ops instead (a mean, a variance, four elementwise ops and their
    backward), it took 2.8 ms a step against 0.55 ms for k = 16, batch 64, 256 features.
    """
    k, rows, features = x.shape
    y = torch.nn.functional.batch_norm(
        x.transpose(0, 1).reshape(rows, k * features),
        state[f"{name}.running_mean"].view(-1),
        state[f"{name}.running_var"].view(-1),
        state[f"{name}.weight"].reshape(-1),
        state[f"{name}.bias"].reshape(-1),
        training,
        float(layer.momentum or 0.1),
        layer.eps,
    )
    if training:
        state[f"{name}.num_batches_tracked"].add_(1)
    return y.view(rows, k, features).transpose(0, 1)
