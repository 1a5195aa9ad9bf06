"""``sweep.fuse_trials`` on the Optuna backend: a worker asks several trials that share
a shape and trains them as one batched model (``training.fused.fit_batch``). Each stays
its own trial: its own Optuna trial and MLflow run, its own curve, value, best weights
and test metrics; the pruner prunes it alone, and it leaves the batch.

How the members are drawn (``ask_batch``): the first trial is asked as any other; the
others are asked with its *shape* parameters (every searched path that is not fusible,
``training.fusing.FUSIBLE``) fixed by Optuna's ``PartialFixedSampler`` over the sweep's
own sampler, which draws their fusible values. TPE's model of the space stays honest:
every trial is told with all its params, fixed or drawn, and the fixed values are ones
TPE drew itself for the first trial, so the observations it learns from are what was
trained; only the shape is drawn once per batch instead of once per trial (as a
constant liar's batch of parallel trials, concentrated on one shape at a time).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

from sweeplab import compat
from sweeplab.search.claims import heartbeat, retry
from sweeplab.search.fits import Fits
from sweeplab.search.keys import (
    ATTR_BATCH,
    ATTR_BATCH_FITS,
    ATTR_EPOCHS,
    ATTR_REASON,
    ATTR_SAME_AS,
    TAG_BATCH,
    TAG_SAME_AS,
    TAG_SWEEP,
    TAG_TRIAL,
)
from sweeplab.search.optuna_backend.objective import OptunaHooks
from sweeplab.search.restarts import fold_groups
from sweeplab.search.sampling import same_as, suggest
from sweeplab.search.states import Counts
from sweeplab.search.sweep import Sweep
from sweeplab.search.trial import (
    close_trial,
    describe,
    end_unfinished,
    failure_reason,
    record,
)
from sweeplab.spec import Experiment
from sweeplab.tracking.machine import PeakMemory
from sweeplab.training.fusing import FUSIBLE, batch_shape, fused_count, unbatched

logger = logging.getLogger(__name__)

Asked = tuple[optuna.Trial, dict[str, Any]]  # a trial and its params (spec values)
Shaped = tuple[optuna.Trial, dict[str, Any], Experiment]  # ... and its spec, validated once


def claim_size(sweep: Sweep, *, gpu: bool, workers: int = 1) -> int:
    """How many trials a worker claims next (``training.fusing.fused_count``).

    With ``sweep.fuse_trials: auto``, no more than a batch that trains within one
    checkpoint period (``train.checkpoint_every``): a fused batch saves no mid-fit
    checkpoint, so a worker killed during one loses about what a lone trial between two
    checkpoints would. A trial's cost is read from the study's finished trials (its
    seconds, shared by its batch; its epochs); until one finished, a trial trains alone
    to show it.

    ``workers``: how many workers share the sweep on this machine (``--workers``). None
    claims more than its share of the trials not finished yet, so that one worker does
    not take a batch that the others then wait out idle (24 trials, 2 workers and
    ``fuse_trials: 16``: 12 each, not 16 and 8)."""
    n = _batch_size(sweep, gpu=gpu)
    return n if n == 1 or workers == 1 else min(n, _share(sweep, workers))


def _batch_size(sweep: Sweep, *, gpu: bool) -> int:
    n = fused_count(sweep.exp, gpu=gpu)
    if n > 1:  # the study read only where trials fuse: each claim holds the claim lock
        fits = sweep.study.user_attrs.get(ATTR_BATCH_FITS)  # a batch ran out of memory
        n = n if fits is None else max(1, min(n, int(fits)))
    epochs, seconds = sweep.exp.train.checkpoint_period
    if n == 1 or sweep.exp.sweep.fuse_trials != "auto" or (epochs is None and seconds is None):
        return n
    fits = []  # each finished trial's batches that would fit in one period
    for t in sweep.study.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,)):
        trained = t.user_attrs.get(ATTR_EPOCHS)
        if t.datetime_start is None or t.datetime_complete is None or not trained:
            continue
        if epochs is not None:  # a batch trains its members' epochs in lockstep
            fits.append(epochs / float(trained))
            continue
        size = len(str(t.user_attrs.get(ATTR_BATCH, "0")).split(","))
        took = (t.datetime_complete - t.datetime_start).total_seconds() / size
        fits.append(float(seconds or 0.0) / max(took, 1e-3))
    return max(1, min(n, math.floor(statistics.median(fits)))) if fits else 1


def _share(sweep: Sweep, workers: int) -> int:
    """One worker's share of the work not done: the trials not taken yet (or queued
    again), and each trial running elsewhere as the fraction of its epochs (its
    ``train.max_epochs``) not reported yet: all of it where it reports none (no pruner).
    As whole trials, a batch about to end would leave the last trials to the first
    worker freed, and the other would find one left, then wait that batch out."""
    trials = sweep.study.get_trials(deepcopy=False)
    left = sum(_epochs_left(sweep, t) for t in trials if t.state is OptunaState.RUNNING)
    return max(1, math.ceil((sweep.target - Counts.of(trials).taken + left) / workers))


def _epochs_left(sweep: Sweep, trial: FrozenTrial) -> float:
    epochs = trial.params.get("train.max_epochs", sweep.exp.train.max_epochs)
    return max(0.0, 1.0 - len(trial.intermediate_values) / max(1.0, float(epochs)))


def ask_batch(sweep: Sweep, ask: Callable[[], optuna.Trial | None], size: int) -> list[Asked]:
    """Up to ``size`` trials with their params, the later ones sharing the first one's
    shape parameters (see the module's docstring). ``ask``: the worker's next trial, or
    None when the sweep has its trials; called under the claim lock by the caller."""
    first = ask()
    if first is None:
        return []
    batch = [(first, suggest(first, sweep.exp.space))]
    fixed = {name: v for name, v in first.params.items() if name not in FUSIBLE}
    study, sampler = sweep.study, sweep.study.sampler
    with warnings.catch_warnings():  # "experimental" since Optuna 2.4, unchanged since
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.PartialFixedSampler(fixed, sampler)
    try:
        while len(batch) < size:
            trial = ask()
            if trial is None:
                break
            batch.append((trial, suggest(trial, sweep.exp.space)))
    finally:
        study.sampler = sampler
    return batch


def by_shape(sweep: Sweep, batch: Sequence[Asked]) -> list[list[Shaped]]:
    """The trials of ``batch`` with their specs, in groups that can train together, in
    order: a queued trial (a retry, an enqueued configuration) may have another shape,
    and a shape that is not batched trains alone."""
    groups: dict[str, list[Shaped]] = {}
    for number, (trial, params) in enumerate(batch):
        exp = sweep.exp.with_params(params)
        key = f"alone {number}" if unbatched(exp) else json.dumps(batch_shape(exp), sort_keys=True)
        groups.setdefault(key, []).append((trial, params, exp))
    return list(groups.values())


class MemberPruning(Callback):
    """Each epoch, each trial of a fused batch reports its own members' mean of
    ``monitor`` to its Optuna trial; a trial the pruner prunes leaves the batch alone
    (``FusedModule.end``), the others go on, and ``on_pruned`` is called with its index
    (its caller tells the study at once)."""

    def __init__(
        self,
        trials: Sequence[optuna.Trial],
        loggers: Sequence[Sequence[Any]],
        monitor: str,
        on_pruned: Callable[[int], None],
    ) -> None:
        self.trials, self.loggers, self.monitor = list(trials), list(loggers), monitor
        self.on_pruned = on_pruned

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        epoch, ended = trainer.current_epoch, pl_module.ends.ended_at
        for t, trial in enumerate(self.trials):
            if ended[t] is not None and ended[t] < epoch:  # ended before this epoch
                continue
            value = self.value(t, epoch)
            if value is None:  # every member diverged: it fails, not pruned
                continue
            trial.report(value, epoch)
            if ended[t] is None and trial.should_prune():
                pl_module.end(t)
                self.on_pruned(t)
        if all(e is not None for e in ended):
            trainer.should_stop = True

    def value(self, t: int, epoch: int) -> float | None:
        """Trial ``t``'s members' mean of the monitored metric at ``epoch``."""
        values = [
            v
            for logger in self.loggers[t]
            for e, v in logger.history.get(self.monitor, [])
            if e == epoch and math.isfinite(v)
        ]
        return statistics.fmean(values) if values else None


@dataclass
class _Member:
    """One trial of a batch: its Optuna trial, configuration, fits and their runs."""

    trial: optuna.Trial
    exp: Experiment
    fits: Fits
    fold: int
    group: list[tuple[int, str, int]]
    subs: list[str] = field(default_factory=list)
    loggers: list[Any] = field(default_factory=list)


def run_fused_trials(sweep: Sweep, group: Sequence[Shaped]) -> list[FrozenTrial]:
    """Train the trials of ``group`` (one shape) as one batched model, and tell the
    study how each ended. A Ctrl-C or ``stop --now`` interrupts them all: each is queued
    again (``sweep.death_retries``) and the interrupt goes on."""
    numbers = ",".join(str(trial.number) for trial, *_ in group)
    members: list[_Member] = []
    memory = PeakMemory()
    started = time.perf_counter()
    # a trial pruned while the others train is told at once: its state is true while
    # they run, the sampler and the other workers' claims see it, and a worker killed
    # later in the batch does not take it for unfinished (its run ends with it)
    early: dict[int, FrozenTrial] = {}

    def tell_pruned(t: int) -> None:
        members[t].fits.seconds = time.perf_counter() - started
        early[t] = _close(sweep, members[t], [], memory, pruned=True)

    with heartbeat(sweep, *(trial for trial, *_ in group)):
        try:  # from the first run on: an interrupt while they open fails them all too
            for shaped in group:
                members.append(_open(sweep, shaped, numbers))
            with memory:
                results = _fit(sweep, members, list(range(len(members))), tell_pruned)
        except BaseException as exc:
            seconds = time.perf_counter() - started
            for m in [m for t, m in enumerate(members) if t not in early]:
                m.fits.seconds = seconds
                m.fits.abandon_fused(m.group, m.subs, m.loggers, exc)
                end_unfinished(m.fits, memory, exc)
            unfinished = [trial for t, (trial, *_) in enumerate(group) if t not in early]
            return list(early.values()) + _all_failed(sweep, unfinished, exc)
    seconds = time.perf_counter() - started  # the batch's fit, which each trial shared
    for m in members:
        m.fits.seconds = seconds
    return _close_all(sweep, members, results, memory, early)


def _fit(
    sweep: Sweep, members: Sequence[_Member], at: list[int], tell_pruned: Callable[[int], None]
) -> list[Any]:
    """The members ``at`` trained as one batched model: each fit's FitResult or
    TrainingDiverged, in order (``fit_batch``).

    Where the batch runs out of memory before any member reported an epoch, each half
    of it trains in turn instead (halved again as needed), from its start, and the
    sweep's later batches hold at most a half (``ATTR_BATCH_FITS``): a batch too large
    for its device costs a first step, not its trials. Its first step is where a batch's
    memory grows most (the optimizer's state); after its first epoch the members' best
    weights are copied. Out of memory after that, its trials fail as any failure."""
    from sweeplab.training.fit import TrainingDiverged
    from sweeplab.training.fused import fit_batch, free_memory, out_of_memory

    mine = [members[i] for i in at]
    metric = sweep.exp.objective.metric
    prunes = sweep.exp.sweep.pruner != "none" and len(sweep.study.directions) == 1
    pruning = MemberPruning(
        [m.trial for m in mine], [m.loggers for m in mine], metric, lambda t: tell_pruned(at[t])
    )
    try:
        return fit_batch(
            [(m.exp, [m.exp.train.seed + r for *_, r in m.group]) for m in mine],
            mine[0].fold,
            [each for m in mine for each in m.loggers],
            callbacks=[pruning] if prunes else [],
            tracking_uri=sweep.tracker.store.tracking_uri,
        )
    except Exception as exc:
        started = any(each.history.get(metric) for m in mine for each in m.loggers)
        if len(mine) == 1 or started or not out_of_memory(exc):
            raise
        logger.warning("a batch of %d trials ran out of memory: its halves train in turn", len(at))
    free_memory()
    half = len(at) // 2
    with sweep.lock.held():
        fits = sweep.study.user_attrs.get(ATTR_BATCH_FITS)
        sweep.study.set_user_attr(ATTR_BATCH_FITS, min(half, fits or half))
    results: list[Any] = []
    for part in (at[:half], at[half:]):
        try:
            results += _fit(sweep, members, part, tell_pruned)
        except TrainingDiverged as diverged:  # every fit of this half: not the other's
            results += [diverged] * sum(len(members[i].group) for i in part)
    if all(isinstance(r, TrainingDiverged) for r in results):
        raise results[0]
    return results


def _close_all(
    sweep: Sweep,
    members: Sequence[_Member],
    results: Sequence[Any],
    memory: PeakMemory,
    early: dict[int, FrozenTrial],
) -> list[FrozenTrial]:
    """Tell the study how each trial of a batch that trained ended (``early``: those
    told while it trained, pruned). An interrupt while they close (MLflow writes:
    seconds for a large batch) fails the trials not told yet and queues them again,
    their runs KILLED, as during the fit; it goes on."""
    told: list[FrozenTrial] = []
    start = 0
    try:
        for t, m in enumerate(members):
            mine, start = results[start : start + len(m.group)], start + len(m.group)
            told.append(early[t] if t in early else _close(sweep, m, mine, memory, pruned=False))
    except BaseException as exc:
        # the first may have ended some of its runs; those told early are left as they are
        left = [m for t, m in enumerate(members) if t >= len(told) and t not in early]
        for m in left:
            with contextlib.suppress(Exception):
                m.fits.abandon_fused(m.group, m.subs, m.loggers, exc)
            with contextlib.suppress(Exception):
                end_unfinished(m.fits, memory, exc)
        state = sweep.storage.get_trial
        running = [
            m.trial for m in left if state(compat.trial_id(m.trial)).state is OptunaState.RUNNING
        ]
        return told + _all_failed(sweep, running, exc)
    return told


def _open(sweep: Sweep, shaped: Shaped, numbers: str) -> _Member:
    """A trial's run (tagged with its batch, and with the earlier trial whose params
    the sampler drew again, as ``trial.sweep_trial`` does) and its fits' runs and loggers."""
    trial, params, exp = shaped
    tags: dict[str, Any] = {TAG_SWEEP: sweep.name, TAG_TRIAL: trial.number, TAG_BATCH: numbers}
    trial.set_user_attr(ATTR_BATCH, numbers)
    same = same_as(sweep.study, trial, sweep.exp.sweep.sampler == "grid")
    if same is not None:
        trial.set_user_attr(ATTR_SAME_AS, same)
        tags[TAG_SAME_AS] = same
    name = f"trial-{trial.number}"
    run_id = sweep.tracker.start_run(name, parent=sweep.parent, tags=tags, params=params)
    hooks = OptunaHooks(trial, sweep.exp.objective.metric)
    hooks.on_run(run_id)
    (fold, group), *_ = fold_groups(exp)  # one fold: sweep.fuse_trials needs data.folds 1
    m = _Member(trial, exp, Fits(exp, sweep.tracker, run_id, name, tags, hooks, False), fold, group)
    m.subs, m.loggers = m.fits.open_fused(fold, group)
    return m


def _close(
    sweep: Sweep, m: _Member, results: Sequence[Any], memory: PeakMemory, *, pruned: bool
) -> FrozenTrial:
    """Tell the study how one trial of a batch that trained ended: pruned, complete,
    or failed (every fit of it diverged)."""
    study = sweep.study
    for key, value in memory.metrics().items():
        m.trial.set_user_attr(key, value)
    if pruned:  # its intermediate values were reported each epoch (MemberPruning)
        exc = optuna.TrialPruned()
        m.fits.abandon_fused(m.group, m.subs, m.loggers, exc)
        end_unfinished(m.fits, memory, exc)
        return study.tell(m.trial, state=OptunaState.PRUNED)
    try:
        m.fits.close_fused(m.fold, m.group, m.subs, m.loggers, results)
        outcome = close_trial(m.exp, sweep.tracker, m.fits.run_id, m.fits, memory)
    except Exception as exc:  # close_trial ended its run as failed
        m.trial.set_user_attr(ATTR_REASON, describe(exc))
        retry(study, sweep.storage, compat.trial_id(m.trial), sweep.exp.sweep.max_retries)
        return study.tell(m.trial, state=OptunaState.FAIL)
    record(m.trial, outcome)
    return study.tell(m.trial, outcome.objective_values)


def _all_failed(
    sweep: Sweep, trials: Sequence[optuna.Trial], exc: BaseException
) -> list[FrozenTrial]:
    """Every trial of a batch that raised ``exc``: failed and queued again while it has
    retries left (a Ctrl-C or ``stop --now``: ``death_retries``, then re-raised)."""
    study, spec = sweep.study, sweep.exp.sweep
    died = isinstance(exc, KeyboardInterrupt)
    why = failure_reason(sweep, exc) or describe(exc)
    told = []
    for trial in trials:
        trial.set_user_attr(ATTR_REASON, why)
        with contextlib.suppress(Exception):  # a failed write must not keep it from the tell
            limit = spec.death_retries if died else spec.max_retries
            retry(study, sweep.storage, compat.trial_id(trial), limit, died=died)
        told.append(study.tell(trial, state=OptunaState.FAIL))
    if not isinstance(exc, Exception):  # Ctrl-C, SIGTERM, stop --now: the worker stops
        raise exc
    return told
