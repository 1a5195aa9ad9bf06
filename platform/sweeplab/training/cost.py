"""What a configuration costs: parameters, forward FLOPs per example (torch's counter)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sweeplab.data.split import Split
from sweeplab.models.build import example_input, inference_model
from sweeplab.spec import Experiment


def _lstm_flops(lstm: nn.LSTM, steps: int) -> int:
    """torch's counter sees no FLOPs in the fused CPU LSTM kernel: count them by hand.

    Per step, layer and direction: the four gates' two matrix products (2·4h·(in + h))."""
    hidden, total = lstm.hidden_size, 0
    directions = 2 if lstm.bidirectional else 1
    for layer in range(lstm.num_layers):
        n_in = lstm.input_size if layer == 0 else hidden * directions
        total += steps * directions * 2 * 4 * hidden * (n_in + hidden)
    return total


def model_cost(module: pl.LightningModule, exp: Experiment, split: Split) -> dict[str, float]:
    """``param_count`` (trainable and frozen) and ``flops_per_sample`` of one forward pass."""
    params = sum(p.numel() for p in module.parameters())
    model = inference_model(module, exp, split)
    was = module.training
    model.eval()
    steps: dict[nn.LSTM, int] = {}

    def record(layer: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        steps[layer] = int(args[0].shape[1 if layer.batch_first else 0])  # type: ignore[index]

    lstms = [m for m in model.modules() if isinstance(m, nn.LSTM)]
    hooks = [m.register_forward_pre_hook(record) for m in lstms]
    counter = FlopCounterMode(display=False)
    # The fused "fast path" of Transformer layers in eval mode hides their FLOPs from the
    # counter; the plain path computes the same thing op by op.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), counter:
            model(example_input(module, split))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for hook in hooks:
            hook.remove()
        module.train(was)
    counted = {name: sum(c.values()) for name, c in counter.get_flop_counts().items()}
    flops = counted.get("Global", 0)
    names = {m: name for name, m in model.named_modules()}
    for lstm, n_steps in steps.items():
        if not any(k.endswith(names[lstm]) and v for k, v in counted.items()):
            flops += _lstm_flops(lstm, n_steps)
    return {"param_count": float(params), "flops_per_sample": float(flops)}
