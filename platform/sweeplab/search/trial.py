"""run_trial: one trial of any backend — train (with restarts), track, and say how it ended.

The MLflow tree of a trial:

    trial-7                      child of the sweep's parent run
      params: the sampled values; tags: trial number, state, study
      metrics: per-epoch history (several fits: their mean, and <metric>_std), value,
               value_std, test_*,
               param_count, flops_per_sample, epoch_seconds
      artifacts: checkpoint/model_state.pt; learning_curve.png, drawn at the sweep's end
                 (search.curves) for the top trials, at once for ``sweeplab train``
      trial-7-fold-0-restart-1 ...  nested runs, one per fit, when a trial has several:
                                    ``data.folds`` × ``sweep.restarts``

A trial's value: restarts are aggregated per fold (``sweep.restart_aggregate``),
then folds by their mean (``restarts.py``). A trial with several fits keeps their
curves' mean and spread per epoch in its run (``val_acc``, ``val_acc_std``, ...); a fit
that diverged is left out, and the trial fails only when every fit of a fold did.

A backend passes ``TrialHooks``: its Lightning callbacks (pruning, reporting),
which exceptions mean "pruned", and where to note the MLflow run id. ``sweep_trial``
runs one trial of a sweep on its Optuna trial, for every backend: the trial's spec
(validated once), its run, and what the Optuna trial keeps (reason, spread, epochs).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from mlflow.entities import Metric

from sweeplab.interrupts import reason
from sweeplab.search.curves import plot_curves
from sweeplab.search.fits import Fits, TrialHooks, end_run
from sweeplab.search.keys import (
    ATTR_EPOCHS,
    ATTR_FIT_SECONDS,
    ATTR_REASON,
    ATTR_RESOLUTION,
    ATTR_RESTARTS,
    ATTR_SAME_AS,
    ATTR_STD,
    ATTR_TIE_LOSS,
    BEST_EPOCH,
    MEMBERS,
    METRIC_DIVERGED,
    METRIC_VALUE,
    TAG_SAME_AS,
    TAG_STATE,
    TAG_SWEEP,
    TAG_TRIAL,
)
from sweeplab.search.restarts import (
    as_band,
    fold_groups,
    members,
    spread,
    spread_points,
    trial_value,
)
from sweeplab.search.resumes import RESUME, Carried, carried
from sweeplab.search.sampling import same_as
from sweeplab.search.states import SweepState, TrialState
from sweeplab.search.sweep import Sweep
from sweeplab.spec import Experiment, counts_examples
from sweeplab.tracking.machine import PeakMemory, watched
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.fit import FitResult
from sweeplab.training.fusing import unfused


@dataclass
class TrialOutcome:
    value: float
    run_id: str
    values: list[float]  # one per fit (fold × restart)
    std: float
    epochs: int
    test: dict[str, float]
    best: FitResult = field(repr=False)
    trade_offs: list[float] = field(default_factory=list)  # the other objectives' values
    seconds: float = 0.0  # inside Lightning's fit, over its fits
    # an accuracy's step on the validation split, and the loss that breaks ties (ranking)
    resolution: float | None = None
    tie_loss: float | None = None

    @property
    def objective_values(self) -> float | list[float]:
        """What Optuna is told: the value, or every objective's (multi-objective)."""
        return [self.value, *self.trade_offs] if self.trade_offs else self.value


def run_trial(
    exp: Experiment,
    *,
    tracker: Tracker,
    name: str,
    params: Mapping[str, Any],
    parent: str | None,
    hooks: TrialHooks,
    tags: Mapping[str, Any] | None = None,
    resume: tuple[str, str] | None = None,
    figures: bool = True,
    memory: PeakMemory | None = None,
    carry: Carried | None = None,
) -> TrialOutcome:
    """Train ``exp`` ``sweep.restarts`` times (on each fold) and track it under one run.

    ``resume``: (run id, Lightning checkpoint) of a trial that goes on from the checkpoint,
    in its run (PBT; one fit only). ``figures``: draw ``learning_curve.png`` now; a sweep's
    trials leave it to the sweep's end (``search.curves``), off their critical path.
    ``memory``: measures the fits' peak memory (a caller's, to read it after a failure
    too); the run gets its figures either way. ``carry``: an earlier try's checkpoints,
    which the fits go on from (``search.resumes``).

    Raises what the fit raised (after ending the runs with the right state): the
    backend's pruned exception, TrainingDiverged, KeyboardInterrupt, ...
    """
    if resume is None:
        run_id, ckpt_path = tracker.start_run(name, parent=parent, tags=tags, params=params), None
    else:
        run_id, ckpt_path = resume
    hooks.on_run(run_id)
    if carry is not None:  # in this run at once: a second death goes on from them too
        for path in carry.files.values():
            tracker.log_file(run_id, path, RESUME)
    fits = Fits(exp, tracker, run_id, name, tags or {}, hooks, figures, carry)
    fused = resume is None and not hooks.trainer_options() and unfused(exp) is None
    memory = memory or PeakMemory()
    try:
        with watched(run_id, tracker.store.tracking_uri, exp.tracking.system_metrics), memory:
            if fused:
                for fold, group in fold_groups(exp):
                    fits.run_fused(fold, group)
            else:
                for index, (label, fold, restart) in enumerate(members(exp)):
                    fits.run(index, label, fold, restart, ckpt_path)
    except BaseException as exc:
        if figures and fits.curves and fits.nested:
            plot_curves(tracker, run_id, fits.curves, exp)
        end_unfinished(fits, memory, exc)
        raise
    return close_trial(exp, tracker, run_id, fits, memory)


def end_unfinished(fits: Fits, memory: PeakMemory, exc: BaseException) -> None:
    """End the run of a trial whose fits raised ``exc`` (pruned, interrupted, failed):
    a pruned trial's curve is the epochs it had, and the seconds and memory it took."""
    if fits.nested and fits.epochs:
        fits.pending += spread_points(spread(list(fits.epochs.values())))
    fits.pending += [seconds_point(fits.seconds), *memory.points()]
    end_run(fits.tracker, fits.run_id, exc, fits.hooks, fits.pending)


def close_trial(
    exp: Experiment, tracker: Tracker, run_id: str, fits: Fits, memory: PeakMemory
) -> TrialOutcome:
    """A trial whose fits all ended: its value, summary metrics, curve and checkpoint."""
    results = fits.results
    left = {fold for _, fold, _ in members(exp)} - set(fits.folds)
    if fits.diverged and left:  # every fit of a fold diverged
        end_run(tracker, run_id, fits.diverged[0], fits.hooks, fits.pending)
        raise fits.diverged[0]
    values = [r.value for r in results]
    value = trial_value(exp, values, fits.folds)
    pick = max if exp.objective.mode == "max" else min
    best = results[values.index(pick(values))]
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    summary = {METRIC_VALUE: value, ATTR_STD: std, ATTR_EPOCHS: float(best.epochs)}
    summary[BEST_EPOCH] = float(best.best_epoch)  # 0-based: what a refit trains to
    summary[ATTR_FIT_SECONDS] = fits.seconds
    summary.update(memory.metrics())
    curves: dict[str, dict[int, tuple[float, float]]] = {}
    if fits.nested:
        summary.update(best.test)  # nested runs hold their own; the trial shows the best's
        summary.update(best.cost)
        curves = spread(list(fits.epochs.values()))
        fits.pending += spread_points(curves)
    if fits.diverged:
        summary[METRIC_DIVERGED] = float(len(fits.diverged))
    if fits.figures and fits.nested:  # the fits' mean, with its spread
        mean, band = as_band(curves)
        plot_curves(tracker, run_id, {"mean": mean}, exp, band)
    elif fits.figures:
        plot_curves(tracker, run_id, fits.curves, exp)
    _save_checkpoint(tracker, run_id, best)
    if exp.keeps_fits:
        _save_members(tracker, run_id, results)
    tracker.write(run_id, summary, {TAG_STATE: TrialState.COMPLETE.value}, fits.pending)
    tracker.end_run(run_id)
    trade_offs = [_trade_off(fits, best, o.metric) for o in exp.trade_offs]
    resolution, tie_loss = None, None
    if counts_examples(exp.objective.metric):
        resolution = 1.0 / min(len(r.data.split.y_val) for r in results)
        tie_loss = _trade_off(fits, best, "val_loss")
    return TrialOutcome(
        value,
        run_id,
        values,
        std,
        best.epochs,
        best.test,
        best,
        trade_offs,
        fits.seconds,
        resolution,
        None if tie_loss is None or math.isnan(tie_loss) else tie_loss,
    )


def seconds_point(seconds: float) -> Metric:
    """A trial's seconds inside Lightning's fit, as its run's ``fit_seconds``."""
    return Metric(ATTR_FIT_SECONDS, seconds, int(time.time() * 1000), 0)


def _trade_off(fits: Fits, best: FitResult, metric: str) -> float:
    """A further objective's value: a cost of the model, or a validation metric at each
    fit's best epoch (of the first objective), averaged over the fits."""
    if metric in best.cost:
        return float(best.cost[metric])
    at_best = [
        curve[metric][min(result.best_epoch, len(curve[metric]) - 1)]
        for curve, result in zip(fits.curves.values(), fits.results, strict=True)
        if curve.get(metric)
    ]
    return statistics.fmean(at_best) if at_best else math.nan


def _save_checkpoint(tracker: Tracker, run_id: str, result: FitResult) -> None:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model_state.pt")
        torch.save(result.module.state_dict(), path)
        tracker.log_file(run_id, path, "checkpoint")


def _save_members(tracker: Tracker, run_id: str, results: list[FitResult]) -> None:
    """Every fit's best weights, for an ensemble of them (``publish``), in one upload."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        for i, result in enumerate(results):
            torch.save(result.module.state_dict(), Path(tmp, f"member_{i}.pt"))
        tracker.client.log_artifacts(run_id, tmp, MEMBERS)


def describe(exc: BaseException) -> str:
    """One line for a failed trial: the reason recorded with it."""
    return f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------ a trial of a sweep


def sweep_trial(
    sweep: Sweep,
    trial: optuna.Trial,
    params: dict[str, Any],
    hooks: TrialHooks,
    resume: tuple[str, str] | None = None,
) -> TrialOutcome:
    """Trial ``trial`` of ``sweep`` with ``params`` (the spec values of its sampled
    paths): its spec, its run under the sweep's parent run, and on the Optuna trial why
    it failed or what it keeps. Every backend runs its trials through here."""
    tags: dict[str, Any] = {TAG_SWEEP: sweep.name, TAG_TRIAL: trial.number}
    grid = sweep.exp.sweep.sampler == "grid"
    same = same_as(sweep.study, trial, grid) if resume is None else None
    if same is not None:
        trial.set_user_attr(ATTR_SAME_AS, same)
        tags[TAG_SAME_AS] = same
    memory = PeakMemory()
    # a PBT trial goes on from Tune's checkpoint (``resume``), not from an earlier try's
    taking = carried(sweep, trial) if resume is None else contextlib.nullcontext(None)
    try:
        with reason_noted(sweep, trial), taking as carry:
            if carry is not None:
                carry.report(trial)
            exp = sweep.exp.with_params(params)
            outcome = run_trial(
                exp,
                tracker=sweep.tracker,
                name=f"trial-{trial.number}",
                params=params,
                parent=sweep.parent,
                hooks=hooks,
                tags=tags,
                resume=resume,
                figures=False,
                memory=memory,
                carry=carry,
            )
    finally:  # pruned, failed or complete: how much memory its fits took
        for key, value in memory.metrics().items():
            trial.set_user_attr(key, value)
    record(trial, outcome)
    return outcome


@contextlib.contextmanager
def reason_noted(sweep: Sweep, trial: optuna.Trial) -> Iterator[None]:
    """Record on ``trial`` why its run failed or was interrupted; the exception goes on.

    Pruning (optuna.TrialPruned) and a Ray stop or PBT pause (SystemExit) are no failure.
    """
    try:
        yield
    except BaseException as exc:
        why = failure_reason(sweep, exc)
        if why is not None:
            trial.set_user_attr(ATTR_REASON, why)
        raise


def failure_reason(sweep: Sweep, exc: BaseException) -> str | None:
    """Why a trial that raised ``exc`` failed or was interrupted, as its trial records
    it; None for pruning and a Ray stop or PBT pause (SystemExit)."""
    if isinstance(exc, optuna.TrialPruned):
        return None
    if isinstance(exc, KeyboardInterrupt):
        return STOPPED_NOW if sweep.state is SweepState.STOPPING_NOW else reason(exc)
    if isinstance(exc, Exception):
        return describe(exc)
    return None


STOPPED_NOW = "interrupted (sweeplab stop --now)"


def record(trial: optuna.Trial, outcome: TrialOutcome) -> None:
    """What a finished trial keeps besides its value: epochs, seconds of fitting, test
    metrics, and the spread of its fits when it had several (each attribute is one write
    to the storage)."""
    if len(outcome.values) > 1:
        trial.set_user_attr(ATTR_STD, outcome.std)
        trial.set_user_attr(ATTR_RESTARTS, outcome.values)
    trial.set_user_attr(ATTR_EPOCHS, outcome.epochs)
    trial.set_user_attr(ATTR_FIT_SECONDS, outcome.seconds)
    for key, value in outcome.test.items():
        trial.set_user_attr(key, value)
    if outcome.resolution is not None:
        trial.set_user_attr(ATTR_RESOLUTION, outcome.resolution)
    if outcome.tie_loss is not None:
        trial.set_user_attr(ATTR_TIE_LOSS, outcome.tie_loss)
