"""The Optuna backend's worker loop: take a trial under the claim lock, run it with
heartbeats, tell the study how it ended; until the study holds ``sweep.trials``."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

from sweeplab import compat
from sweeplab.search.baselines import yardstick
from sweeplab.search.claims import Recovery, heartbeat, owner, retry
from sweeplab.search.curves import draw_trial_figures
from sweeplab.search.keys import ATTR_OWNER
from sweeplab.search.optuna_backend.batches import (
    Asked,
    ask_batch,
    by_shape,
    claim_size,
    run_fused_trials,
)
from sweeplab.search.optuna_backend.objective import objective_for
from sweeplab.search.states import SweepState
from sweeplab.search.sweep import Sweep, Work
from sweeplab.store import DiskFull, disk_full

# Dead workers' trials are looked for at most this often while trials remain (and always
# before a worker stops): a dead worker's trial is failed and retried a little later
RECOVERY_SECONDS = 2.0


def take_trials(
    sweep: Sweep,
    work: Work,
    *,
    objective: Callable[[optuna.Trial], float | list[float]] | None = None,
) -> None:
    """Take trials (under the claim lock) until the study holds the sweep's target, the
    sweep is stopped, or ``work`` is out of time.

    Several processes may run this on one study (``sweeplab agent``): together they run
    exactly the sweep's target. ``sweeplab stop --now`` interrupts the running trial
    (``claims.stop_watch``): it is queued again, and this returns. ``objective``: what
    each trial runs (default: the spec's training, ``objective_for``; bench/storage.py
    times the bookkeeping around a trivial one).
    """
    import torch

    objective = objective or objective_for(sweep)
    recovery = Recovery(sweep)
    gpu = torch.cuda.is_available()
    try:
        while not work.out_of_time():
            batch = _claim(sweep, recovery, claim_size(sweep, gpu=gpu, workers=work.workers))
            if not batch:
                _end_work_ahead(sweep)
                break
            try:
                told = _run(sweep, batch, objective)
            except KeyboardInterrupt:
                if sweep.state is SweepState.STOPPING_NOW:  # a stop, not a Ctrl-C
                    break
                raise
            for frozen in told:
                sweep.check_stop_when(frozen)
                if work.on_trial is not None:
                    work.on_trial(sweep.event(frozen))
    except DiskFull:
        raise
    except Exception as exc:
        full = disk_full(exc)
        if full is None:
            raise
        raise full_disk(sweep, full, "between trials") from None


def _end_work_ahead(sweep: Sweep) -> None:
    """Nothing left to claim while other workers still train: this worker does the part
    of the sweep's end that the trials still running do not change, on a core that
    would idle: the baselines, and the figures of the top trials so far (the end draws
    those of the trials that finish later). The claim lock held: each is done once."""
    if sweep.state.takes_trials and sweep.counts.running:
        with sweep.lock.held():
            yardstick(sweep)
            draw_trial_figures(sweep)


def take_batch(sweep: Sweep, workers: int = 1) -> list[FrozenTrial]:
    """Claim one batch of ``sweep.fuse_trials`` trials (under the claim lock; no more
    than one of ``workers``' share), train it and tell the study how each ended: what a
    Ray Tune trial carries (``ray_backend.batches``). None when the sweep has its trials."""
    import torch

    size = claim_size(sweep, gpu=torch.cuda.is_available(), workers=workers)
    batch = _claim(sweep, Recovery(sweep), size)
    told = _run(sweep, batch, objective_for(sweep)) if batch else []
    for frozen in told:
        sweep.check_stop_when(frozen)
    return told


def _claim(sweep: Sweep, recovery: Recovery, size: int) -> list[Asked]:
    """The next trial, or up to ``size`` (``sweep.fuse_trials``) with their params for a
    fused batch (``batches.ask_batch``), under the claim lock; none when the sweep has
    its trials or takes none (stopped). A lone trial's params are asked by its objective."""
    with sweep.lock.held():
        if size == 1:
            trial = _ask(sweep, recovery)
            return [] if trial is None else [(trial, {})]
        return ask_batch(sweep, lambda: _ask(sweep, recovery), size)


def _run(
    sweep: Sweep,
    batch: list[Asked],
    objective: Callable[[optuna.Trial], float | list[float]],
) -> list[FrozenTrial]:
    """Run the claimed trials: alone, or in groups of one shape as one batched model."""
    if len(batch) == 1:
        return [run_one(sweep, batch[0][0], objective)]
    told = []
    for group in by_shape(sweep, batch):
        if len(group) == 1:  # its params are asked again: Optuna returns the same values
            told.append(run_one(sweep, group[0][0], objective))
        else:
            told += run_fused_trials(sweep, group)
    return told


def _ask(sweep: Sweep, recovery: Recovery) -> optuna.Trial | None:
    """The next trial, created with this worker as its owner (the claim lock held); None
    when the sweep has its trials (a queued retry still runs) or takes none (stopped)."""
    if not sweep.state.takes_trials:
        return None
    recovery.run(every=RECOVERY_SECONDS)
    c, total = sweep.counts, sweep.target
    if c.taken >= total and c.running:  # a dead worker's trial must not count
        recovery.run()
        c = sweep.counts
    if c.taken >= total and not c.waiting:
        return None
    with warnings.catch_warnings():  # heartbeats are recorded by run_one
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = sweep.study.ask()
    trial.set_user_attr(ATTR_OWNER, owner())
    return trial


def full_disk(sweep: Sweep, why: str, where: str) -> DiskFull:
    return DiskFull(
        f"the disk holding the store is full ({why}): the sweep stopped {where}; finished "
        f"trials are saved. Free some space, then run: sweeplab resume {sweep.name}"
    )


def run_one(
    sweep: Sweep,
    trial: optuna.Trial,
    objective: Callable[[optuna.Trial], float | list[float]],
) -> FrozenTrial:
    """Run ``objective`` on ``trial`` with heartbeats and tell the study how it ended;
    a trial that raised is queued again while it has retries left (``sweep.max_retries``),
    and so is one that Ctrl-C or ``stop --now`` interrupted (``sweep.death_retries``;
    ``resume`` then runs it)."""
    study, storage, spec = sweep.study, sweep.storage, sweep.exp.sweep
    with heartbeat(sweep, trial):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=OptunaState.PRUNED)
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):  # a failed write must not keep it from the tell
                retry(study, storage, compat.trial_id(trial), spec.death_retries, died=True)
            study.tell(trial, state=OptunaState.FAIL)
            raise
        except Exception as exc:  # the objective recorded the reason on the trial
            full = disk_full(exc)
            if full is not None:  # every next trial would fail the same way: stop here.
                # The trial is left running, not told FAIL: `resume` finds its worker gone
                # and queues its params again, as for a kill (a FAIL that the full disk
                # let through would count a sound configuration as failed)
                raise full_disk(sweep, full, f"in trial {trial.number}") from None
            retry(study, storage, compat.trial_id(trial), spec.max_retries)
            return study.tell(trial, state=OptunaState.FAIL)
    return study.tell(trial, value)
