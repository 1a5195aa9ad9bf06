"""Local workers: ``sweeplab sweep SPEC --workers N`` runs N worker processes on this
machine over the sweep's store (the embedded SQLite one too), under the claim lock.

    this process (the pool)                 worker i (a spawned process)
    -----------------------                 ----------------------------
    start N workers (N-1 on CPUs, where     its GPU (CUDA_VISIBLE_DEVICES), its torch
      this process is worker 0), each with    threads; take_trials until the study holds
      its share of the cores and, where       sweep.trials (as an agent would)
      CUDA GPUs are given, its own GPU
    every 0.5 s: one progress event per     a worker killed: the others fail its trial
      trial that ended, for all workers       (claims.Recovery) and run its params again
    Ctrl-C: every worker stops cleanly      Ctrl-C: its trial is failed and queued again
      (its trial queued again), then the      for resume, then it exits
      sweep is reported interrupted
    every trial ended: the sweep finished   no trial left: it waits for the others (and
      (its model registered) at once,         takes any queued again), then draws the
      the plots waited for if a worker        plots (Work.end_ahead) and exits
      draws them
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sweeplab.interrupts import exit_status, signals_as_interrupts
from sweeplab.logs import scoped_environ
from sweeplab.search.claims import every
from sweeplab.search.options import LocalWorkers
from sweeplab.search.optuna_backend.worker import RECOVERY_SECONDS, take_trials
from sweeplab.search.ranking import own
from sweeplab.search.sweep import OnTrial, Sweep, Work
from sweeplab.store import Store

POLL_SECONDS = 0.5


def visible_gpus() -> int:
    """How many CUDA GPUs this process sees (0 without torch's CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_workers(sweep: Sweep, options: LocalWorkers, work: Work) -> Ending:
    """Start the workers, report each trial as it ends, wait for them all to end their
    trials; the workers still alive then (one drawing the plots) come back to be waited
    for once the sweep is finished.

    Without GPUs this process is worker 0: it has imported torch already and trains at
    once, while the spawned workers import theirs on the other cores.
    With GPUs every worker is spawned, each with its own ``CUDA_VISIBLE_DEVICES``.
    """
    threads = options.threads
    gpus = visible_gpus() if options.gpus is None else len(options.gpus)
    here = options.gpu_of(0, gpus) is None
    indices = range(1 if here else 0, options.workers)
    processes = _spawn(sweep, options, indices, threads, gpus, work)
    if options.started is not None:
        options.started.close()  # any left over (a GPU each: spawned with it instead)
    progress = Progress(sweep, work.on_trial)
    # progress events come from the poll, for all
    shared = Work(deadline=work.deadline, workers=options.workers)
    try:
        if here:
            # progress events from a thread while this process trains as worker 0
            with every(POLL_SECONDS, progress.report), _torch_threads(threads):
                take_trials(sweep, shared)
        # every worker asked each time (not any(), which stops at the first alive): asking
        # reaps a dead one, which until then is a zombie that looks alive to the others.
        # Once every trial has ended, the sweep is finished at once: a worker may still
        # draw its plots meanwhile (Work.end_ahead), and exits when they are drawn
        while sum([p.is_alive() for p in processes]) and not sweep.counts.ended(sweep.target):
            progress.report()
            time.sleep(POLL_SECONDS)
        if here and any(p.exitcode for p in processes):
            # a worker died after this one had taken its last trial: its trial is failed
            # and run again here (Recovery in take_trials), not left to `resume`
            with _torch_threads(threads):
                take_trials(sweep, Work(deadline=work.deadline))  # the only worker left
    except KeyboardInterrupt:
        _stop(processes)
        raise
    progress.report()
    return Ending(tuple(p for p in processes if p.is_alive()))


@dataclass(frozen=True)
class Ending:
    """Spawned workers to see out: those alive when every trial had ended, each exiting
    by itself within a poll or once it has drawn the sweep's plots (``Work.end_ahead``,
    which the process that finishes the sweep waits for under the plots lock anyway);
    or, at a Ctrl-C, those told to stop (``_stop``)."""

    processes: tuple[Any, ...] = ()

    def wait(self, seconds: float = 60) -> None:
        """Join them; one still alive after ``seconds`` (or at a Ctrl-C) is terminated."""
        deadline = time.monotonic() + seconds
        try:
            for p in self.processes:
                p.join(max(0.0, deadline - time.monotonic()))
        finally:
            for p in self.processes:
                if p.is_alive():
                    p.terminate()
                    p.join(5)


def _spawn(
    sweep: Sweep,
    options: LocalWorkers,
    indices: range,
    threads: int,
    gpus: int,
    shared: Work,
) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    store, name = sweep.store, sweep.name
    processes = []
    for index in indices:
        env = {"OMP_NUM_THREADS": str(threads)}
        gpu = options.gpu_of(index, gpus)
        args = (store, name, threads, shared.deadline, options.workers, shared.end_ahead)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        elif options.started is not None:
            started = options.started.hand(env, args)
            if started is not None:  # it has imported torch and the rest already
                processes.append(started)
                continue
        # a spawned process takes this process's environment as it is at its start
        with scoped_environ(env, override=True):
            process = context.Process(
                target=work,
                args=args,
                name=f"sweeplab-worker-{index}",
            )
            process.start()
        processes.append(process)
    return processes


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """This process's torch threads set to its share of the cores for the block."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _stop(processes: list[Any]) -> None:
    """Ctrl-C: each worker fails its trial as interrupted (and queues it again) and exits;
    one that does not within a minute is terminated."""
    for p in processes:  # a terminal's Ctrl-C reached the workers too: give them a moment
        p.join(2)
    for p in processes:  # a SIGINT sent to this process alone did not
        if p.is_alive() and p.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGINT)
    Ending(tuple(processes)).wait(60)


@dataclass
class Progress:
    """One progress event per trial that ended, whichever worker ran it."""

    sweep: Sweep
    on_trial: OnTrial | None
    seen: set[int] = field(default_factory=set)

    def report(self) -> None:
        if self.on_trial is None:
            return
        for t in own(self.sweep.study):
            if t.number not in self.seen and t.state.is_finished():
                self.seen.add(t.number)
                self.on_trial(self.sweep.event(t))


def work(
    store: Store,
    name: str,
    threads: int,
    deadline: float | None,
    workers: int,
    end_ahead: Callable[[Sweep], None] | None = None,
) -> None:
    """One worker process of ``workers``: its share of the cores, then trials until there
    are enough (``deadline``: of ``time.monotonic``, one clock for every process of this
    machine), then ``end_ahead`` once the other workers' trials have ended too."""
    from sweeplab.logs import quick_exit, quiet_libraries

    quiet_libraries(training=True)  # a worker's start is an entry point
    import torch

    torch.set_num_threads(threads)
    from sweeplab.search.claims import owner

    sweep = Sweep.open(store, name, stream=owner())
    try:
        with signals_as_interrupts():  # SIGTERM to the whole group (systemd) as Ctrl-C
            mine = Work(deadline=deadline, workers=workers)
            take_trials(sweep, mine)
            if end_ahead is not None and _until_the_others_end(sweep, mine):
                end_ahead(sweep)
    except KeyboardInterrupt as exc:
        sys.exit(exit_status(exc))
    finally:
        quick_exit()  # the pool waits for this process to end


def _until_the_others_end(sweep: Sweep, work: Work) -> bool:
    """A spawned worker done with its trials waits while the others train, and takes any
    trial queued again meanwhile (``take_trials``: a dead worker's trial is failed and
    queued at most every ``RECOVERY_SECONDS``). True once every trial has ended; False
    when the sweep is stopped or out of time, or the pool that started it is gone."""
    pool = multiprocessing.parent_process()
    claimed = time.monotonic()
    while not work.out_of_time() and sweep.state.takes_trials:
        counts = sweep.counts  # one query a poll, but after trials are taken
        if counts.waiting or time.monotonic() - claimed >= RECOVERY_SECONDS:
            take_trials(sweep, work)
            claimed, counts = time.monotonic(), sweep.counts
        if not counts.running:
            return counts.ended(sweep.target)
        if pool is not None and not pool.is_alive():
            return False
        time.sleep(POLL_SECONDS)
    return False
