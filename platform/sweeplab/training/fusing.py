"""Whether a spec's restarts train fused (``training.fused``), and why not: strings
only, no torch import, so ``sweeplab validate`` says it at once."""

from __future__ import annotations

from sweeplab.spec import Experiment

# the architectures whose restarts train as one batched model; the README lists them
FUSED_ARCHS = ("mlp", "cnn", "autoencoder")


def unfused(exp: Experiment) -> str | None:
    """Why the restarts of ``exp`` train one after another, or None: they train fused."""
    if exp.sweep.restarts < 2:
        return "one restart"
    if not exp.sweep.fused_restarts:
        return "sweep.fused_restarts is false"
    if exp.model.arch not in FUSED_ARCHS:
        return f"the {exp.model.arch} architecture is not batched (fused: {', '.join(FUSED_ARCHS)})"
    if exp.train.schedule.name == "plateau":
        return "the plateau schedule follows each fit's own val_loss"
    if exp.train.mixed_precision:
        return "mixed precision"
    return None
