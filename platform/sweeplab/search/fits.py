"""The fits of one trial (folds × restarts), each in its own nested run when there
are several: one after another, or fused (``training.fused``) where the architecture
is batched. What a backend plugs into them: ``TrialHooks``."""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from lightning.pytorch.callbacks import Callback

from sweeplab.search.curves import curve_keys, plot_curves
from sweeplab.search.keys import TAG_FOLD, TAG_REASON, TAG_RESTART, TAG_STATE
from sweeplab.search.restarts import members
from sweeplab.search.resumes import RESUME, Carried, carried_key, fit_unit, fused_unit
from sweeplab.search.states import TrialState
from sweeplab.spec import Experiment
from sweeplab.tracking.logger import BatchedMlflowLogger
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.checkpoints import ResumePoint
from sweeplab.training.fit import FitResult, TrainingDiverged, fit

INTERRUPTED = "interrupted (Ctrl-C or sweeplab stop --now)"  # a run's reason


class TrialHooks(Protocol):
    """How a backend plugs into a trial."""

    pruned: tuple[type[BaseException], ...]
    # paused: the run stays open, and the trial goes on later in the same run (PBT)
    paused: tuple[type[BaseException], ...]

    def callbacks(self, restart: int) -> Sequence[Callback]:
        """Lightning callbacks for the trial's fit number ``restart`` (0-based)."""
        ...

    def on_run(self, run_id: str) -> None:
        """The trial's MLflow run exists; record its id on the backend's trial."""
        ...

    def trainer_options(self) -> dict[str, Any]:
        """Trainer options of each fit (a data-parallel strategy), fresh for every fit."""
        ...


class NoHooks:
    """A trial with no search backend (``sweeplab train``)."""

    pruned: tuple[type[BaseException], ...] = ()
    paused: tuple[type[BaseException], ...] = ()

    def callbacks(self, restart: int) -> Sequence[Callback]:
        return []

    def on_run(self, run_id: str) -> None:
        return None

    def trainer_options(self) -> dict[str, Any]:
        return {}


class Fits:
    """The fits of one trial, each in its own nested run when there are several.

    A run's last metric points wait (``pending``) to go with its summary and state in
    one write: a trial's MLflow writes are its run, params, that write, the checkpoint
    and the end."""

    def __init__(
        self,
        exp: Experiment,
        tracker: Tracker,
        run_id: str,
        name: str,
        tags: Mapping[str, Any],
        hooks: TrialHooks,
        figures: bool = True,
        carry: Carried | None = None,
    ) -> None:
        self.exp, self.tracker, self.run_id, self.name = exp, tracker, run_id, name
        self.tags, self.hooks, self.figures = tags, hooks, figures
        self.carry = carry  # an earlier try's checkpoints, to go on from (search.resumes)
        self.nested = len(members(exp)) > 1
        self.results: list[FitResult] = []
        self.folds: list[int] = []  # each result's fold
        self.epochs: dict[str, dict[str, dict[int, float]]] = {}  # label → key → epoch → value
        self.diverged: list[TrainingDiverged] = []  # fits left out of the trial's value
        self.curves: dict[str, dict[str, list[float]]] = {}
        self.pending: list[Any] = []  # the trial run's metric points not written yet
        self.seconds = 0.0  # inside Lightning's fit, over the fits so far (fused: once)

    def run(self, index: int, label: str, fold: int, restart: int, ckpt: str | None) -> None:
        exp, tracker = self.exp, self.tracker
        sub_id = self.run_id
        if self.nested:
            sub_tags = {**self.tags, TAG_RESTART: restart, TAG_FOLD: fold}
            sub_id = tracker.start_run(f"{self.name}-{label}", parent=self.run_id, tags=sub_tags)
        logger = BatchedMlflowLogger(tracker.client, sub_id, hold=True)
        unit = fit_unit(index)
        if ckpt is not None:
            logger.load_history(curve_keys(exp))
        else:
            ckpt = self._carried(unit, {label: logger})
        started = time.perf_counter()
        try:
            result = fit(
                exp,
                seed=exp.train.seed + restart,
                fold=fold,
                logger=logger,
                callbacks=[*self.hooks.callbacks(index), *self._saves(unit, [logger])],
                tracking_uri=tracker.store.tracking_uri,
                trainer_options=self.hooks.trainer_options(),
                ckpt_path=ckpt,
            )
        except BaseException as exc:
            # paused: its process ends right away
            if self.figures and not isinstance(exc, self.hooks.paused):
                plot_curves(tracker, sub_id, {label: curves_of(logger, exp)}, exp)
            if self.nested:
                end_run(tracker, sub_id, exc, self.hooks, logger.take())
                if isinstance(exc, TrainingDiverged):  # the others go on without it
                    self.diverged.append(exc)
                    return
                self.epochs[label] = self._epochs_of(logger)  # pruned: the epochs it had
            else:
                self.pending = logger.take()
            raise
        finally:
            self.seconds += time.perf_counter() - started
        self._kept(label, fold, sub_id, logger, result)

    def _kept(
        self, label: str, fold: int, sub_id: str, logger: BatchedMlflowLogger, result: FitResult
    ) -> None:
        """A fit that ended well: its curves, and its run's last points and end."""
        tracker = self.tracker
        self.curves[label] = curves_of(logger, self.exp)
        self.epochs[label] = self._epochs_of(logger)
        self.folds.append(fold)
        if self.nested:
            if self.figures:
                plot_curves(tracker, sub_id, {"": self.curves[label]}, self.exp)
            tags = {TAG_STATE: TrialState.COMPLETE.value}
            tracker.write(sub_id, tags=tags, pending=logger.take())
            tracker.end_run(sub_id)
        else:
            self.pending = logger.take()
        self.results.append(result)

    def _epochs_of(self, logger: BatchedMlflowLogger) -> dict[str, dict[int, float]]:
        return {k: dict(logger.history.get(k, [])) for k in curve_keys(self.exp)}

    def run_fused(self, fold: int, group: Sequence[tuple[int, str, int]]) -> None:
        """The restarts ``group`` ((index, label, restart) each) of one fold, trained
        fused: each in its nested run; what the backend's callbacks see is their mean."""
        from sweeplab.training.fused import fit_fused

        exp = self.exp
        subs, loggers = self.open_fused(fold, group)
        unit = fused_unit(fold)
        ckpt = self._carried(
            unit, {label: lg for (_, label, _), lg in zip(group, loggers, strict=True)}
        )
        started = time.perf_counter()
        try:
            results = fit_fused(
                exp,
                [exp.train.seed + restart for *_, restart in group],
                fold,
                loggers,
                callbacks=[*self.hooks.callbacks(group[0][0]), *self._saves(unit, loggers)],
                tracking_uri=self.tracker.store.tracking_uri,
                ckpt_path=ckpt,
            )
        except BaseException as exc:  # pruned, interrupted: the epochs they had
            self.abandon_fused(group, subs, loggers, exc)
            raise
        finally:
            self.seconds += time.perf_counter() - started
        self.close_fused(fold, group, subs, loggers, results)

    def open_fused(
        self, fold: int, group: Sequence[tuple[int, str, int]]
    ) -> tuple[list[str], list[BatchedMlflowLogger]]:
        """The runs and loggers of the fits ``group`` of one fold, before a fused fit:
        a nested run each when the trial has several fits, else the trial's run."""
        tracker = self.tracker
        subs = [
            tracker.start_run(
                f"{self.name}-{label}",
                parent=self.run_id,
                tags={**self.tags, TAG_RESTART: restart, TAG_FOLD: fold},
            )
            if self.nested
            else self.run_id
            for _, label, restart in group
        ]
        return subs, [BatchedMlflowLogger(tracker.client, sub, hold=True) for sub in subs]

    def abandon_fused(
        self,
        group: Sequence[tuple[int, str, int]],
        subs: Sequence[str],
        loggers: Sequence[BatchedMlflowLogger],
        exc: BaseException,
    ) -> None:
        """A fused fit that raised ``exc`` (pruned, interrupted): the epochs each fit had,
        its nested run ended (the trial's own run is its caller's to end)."""
        for (_, label, _), sub, logger in zip(group, subs, loggers, strict=True):
            self.epochs[label] = self._epochs_of(logger)
            if self.nested:
                end_run(self.tracker, sub, exc, self.hooks, logger.take())
            else:
                self.pending = logger.take()

    def close_fused(
        self,
        fold: int,
        group: Sequence[tuple[int, str, int]],
        subs: Sequence[str],
        loggers: Sequence[BatchedMlflowLogger],
        results: Sequence[Any],
    ) -> None:
        """The fits of a fused fit that ended: each kept, or left out if it diverged."""
        for (_, label, _), sub, logger, result in zip(group, subs, loggers, results, strict=True):
            if isinstance(result, TrainingDiverged):  # dropped from the mean, the others went on
                if self.nested:
                    end_run(self.tracker, sub, result, self.hooks, logger.take())
                else:  # the trial fails with it (``close_trial``), its points kept
                    self.pending = logger.take()
                self.diverged.append(result)
            else:
                self._kept(label, fold, sub, logger, result)

    def _carried(self, unit: str, loggers: Mapping[str, BatchedMlflowLogger]) -> str | None:
        """The earlier try's checkpoint of ``unit``, if it saved one; its fits' points up
        to that epoch copied into their runs here (``loggers``, by the fit's label)."""
        carry = self.carry
        if carry is None or unit not in carry.files:
            return None
        for label, logger in loggers.items():
            logger.carry(carry.run_of(label), carry.epochs[unit], carried_key)
        return str(carry.files[unit])

    def _saves(self, unit: str, loggers: Sequence[BatchedMlflowLogger]) -> list[Callback]:
        """The callback that saves ``unit``'s checkpoints into the trial's run (none for
        a data-parallel fit, or with ``train.checkpoint_every: null``); the fits' points
        are written first, so the runs hold every epoch a checkpoint holds."""
        epochs, seconds = self.exp.train.checkpoint_period
        if (epochs is None and seconds is None) or self.hooks.trainer_options():
            return []

        def keep(path: Path, epoch: int) -> None:
            for logger in loggers:
                logger.flush()
            self.tracker.log_file(self.run_id, path, RESUME)

        return [
            ResumePoint(every_epochs=epochs, every_seconds=seconds, keep=keep, name=f"{unit}.ckpt")
        ]


def curves_of(logger: BatchedMlflowLogger, exp: Experiment) -> dict[str, list[float]]:
    return {key: logger.curve(key) for key in curve_keys(exp)}


def end_run(
    tracker: Tracker,
    run_id: str,
    exc: BaseException,
    hooks: TrialHooks,
    pending: Sequence[Any] = (),
) -> None:
    """End a run after ``exc``, with its ``pending`` metric points: pruned → FINISHED,
    Ctrl-C → KILLED, anything else → FAILED; a paused trial's run stays open."""
    if isinstance(exc, hooks.paused):
        if pending:
            tracker.write(run_id, pending=list(pending))
        return
    if isinstance(exc, hooks.pruned):
        tracker.write(run_id, tags={TAG_STATE: TrialState.PRUNED.value}, pending=list(pending))
        tracker.end_run(run_id, "FINISHED")
    elif isinstance(exc, KeyboardInterrupt | SystemExit):
        tags = {TAG_STATE: TrialState.INTERRUPTED.value, TAG_REASON: INTERRUPTED}
        tracker.write(run_id, tags=tags, pending=list(pending))
        tracker.end_run(run_id, "KILLED")
    else:
        reason = f"{type(exc).__name__}: {exc}"
        tags = {TAG_STATE: TrialState.FAILED.value, TAG_REASON: reason[:5000]}
        tracker.write(run_id, tags=tags, pending=list(pending))
        tracker.log_text(run_id, "".join(traceback.format_exception(exc)), "error.txt")
        tracker.end_run(run_id, "FAILED")
