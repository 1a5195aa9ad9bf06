"""Pictures logged to MLflow: a trial's learning curves, a sweep's history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen: render to files only
import matplotlib.pyplot as plt


def learning_curves(
    runs: Mapping[str, Mapping[str, Sequence[float]]],
    metric: str,
    std: Mapping[str, Sequence[float]] | None = None,
) -> Any:
    """Train and val loss, and the val metric, per epoch; one line per run (restart).

    ``runs`` maps a label to that run's per-epoch curves (``train_loss``,
    ``val_loss``, ``metric``, optionally ``lr``). ``std``: the one run is a mean over
    restarts, and each curve gets a ±1 std band.
    """
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    for label, curves in runs.items():
        prefix = f"{label} " if len(runs) > 1 or std else ""
        for ax, key, style in (
            (ax_loss, "train_loss", "--"),
            (ax_loss, "val_loss", "-"),
            (ax_metric, metric, "-"),
        ):
            values = curves.get(key, [])
            if not values:
                continue
            epochs = range(1, len(values) + 1)
            (line,) = ax.plot(epochs, values, style, label=f"{prefix}{key}")
            spread = (std or {}).get(key)
            if spread and len(spread) == len(values):
                band(ax, epochs, values, spread, line.get_color())
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=metric)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small", loc="upper right" if ax is ax_loss else "lower right")
    # fixed margins: tight_layout measured every label and took half of a trial's
    # bookkeeping time (bench/agents.py)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.92, wspace=0.22)
    return fig


def band(
    ax: Any, x: Sequence[int], values: Sequence[float], std: Sequence[float], color: Any
) -> None:
    """A ±1 std band around a line drawn in ``color``: the spread of a trial's restarts."""
    low = [v - s for v, s in zip(values, std, strict=True)]
    high = [v + s for v, s in zip(values, std, strict=True)]
    ax.fill_between(x, low, high, color=color, alpha=0.2)


def sweep_history(numbers: Sequence[int], values: Sequence[float], mode: str, metric: str) -> Any:
    """Each finished trial's value, and the best so far."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(numbers, values, s=18, label="trial value")
    best: list[float] = []
    for value in values:
        pick = max if mode == "max" else min
        best.append(value if not best else pick(best[-1], value))
    ax.step(numbers, best, where="post", color="C1", label="best so far")
    ax.set(xlabel="trial", ylabel=metric, title="sweep history")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
