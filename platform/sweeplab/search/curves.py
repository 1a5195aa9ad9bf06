"""Learning-curve figures of a sweep's trials, drawn once per sweep, off the trials' path.

A trial of a sweep does not draw its ``learning_curve.png``: the figure took about
150 ms of CPU, more than the rest of a tiny trial's bookkeeping (``bench/agents.py``).
Whoever finishes the sweep draws the figures a user opens (the top trials, and a
multi-objective sweep's front) from the curves in MLflow; ``compare`` draws the ones
its top trials still lack (a finish that was killed). Every trial's curves stay in its
metric history, which the MLflow UI and the sweep's report chart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sweeplab.search.keys import TAG_CURVE
from sweeplab.search.sweep import Sweep
from sweeplab.spec import Experiment
from sweeplab.tracking.plots import learning_curves
from sweeplab.tracking.tracker import Tracker

TOP = 5  # the trials whose figures a sweep's end draws


def draw_trial_figures(sweep: Sweep, k: int = TOP) -> int:
    """The figures of the sweep's ``k`` best trials and of its Pareto front, where
    missing; returns how many were drawn."""
    trials = sweep.top(k)
    if sweep.exp.trade_offs:
        trials += sweep.front()
    return draw_missing(sweep.tracker, sweep.exp, [t.run_id for t in trials if t.run_id])


def draw_missing(tracker: Tracker, exp: Experiment, run_ids: Iterable[str]) -> int:
    """``learning_curve.png`` of each trial run in ``run_ids`` that has none yet (its
    fits' curves, one line each); returns how many were drawn."""
    drawn = 0
    for run_id in dict.fromkeys(run_ids):
        run = tracker.client.get_run(run_id)
        if run.data.tags.get(TAG_CURVE):
            continue
        curves, std = _curves(tracker, exp, run)
        if not any(any(curve.values()) for curve in curves.values()):
            continue  # it logged no epoch
        plot_curves(tracker, run_id, curves, exp, std)
        tracker.set_tags(run_id, {TAG_CURVE: "learning_curve.png"})
        drawn += 1
    return drawn


def curve_keys(exp: Experiment) -> tuple[str, ...]:
    """The metrics a learning-curve figure draws (``exp.metrics()`` holds val_loss and the
    objective metric: the spec checks that)."""
    return ("train_loss", *exp.metrics(), "lr")


def figure_metric(exp: Experiment) -> str:
    """The metric a learning-curve figure draws beside the losses."""
    return exp.objective.metric if exp.objective.metric != "val_loss" else exp.metrics()[-1]


def plot_curves(
    tracker: Tracker,
    run_id: str,
    curves: dict[str, dict[str, list[float]]],
    exp: Experiment,
    std: dict[str, list[float]] | None = None,
) -> None:
    """``learning_curve.png`` of a run: ``curves`` maps each fit's label to its curves;
    with ``std``, the one entry is the fits' mean, drawn with a ±1 std band."""
    figure = learning_curves(curves, figure_metric(exp), std)
    tracker.log_figure(run_id, figure, "learning_curve.png")


Band = dict[str, list[float]]


def _curves(
    tracker: Tracker, exp: Experiment, run: Any
) -> tuple[dict[str, dict[str, list[float]]], Band | None]:
    """A trial with several fits: their mean and spread from its own run. One fit: its
    curves, each key's values by epoch (an older trial with several: one line per fit,
    from its nested runs)."""
    run_id, name = run.info.run_id, run.info.run_name
    if f"{figure_metric(exp)}_std" in run.data.metrics:
        shown = ("train_loss", "val_loss", figure_metric(exp))
        mean = {key: _history(tracker, run_id, key) for key in curve_keys(exp)}
        return {"mean": mean}, {key: _history(tracker, run_id, f"{key}_std") for key in shown}
    nested = tracker.search(f"tags.`mlflow.parentRunId` = '{run_id}'")
    fits = {r.info.run_name.removeprefix(f"{name}-"): r.info.run_id for r in nested}
    if not fits:
        fits = {"": run_id}
    return {
        label: {key: _history(tracker, fit_id, key) for key in curve_keys(exp)}
        for label, fit_id in sorted(fits.items())
    }, None


def _history(tracker: Tracker, run_id: str, key: str) -> list[float]:
    """A metric's value per epoch (the last value when an epoch logged it twice)."""
    points = sorted(tracker.client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
    by_epoch = {m.step: m.value for m in points}
    return [by_epoch[e] for e in sorted(by_epoch)]
