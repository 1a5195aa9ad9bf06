"""Local workers started before their sweep exists (``--workers N``, no GPU).

A spawned worker spends about 4 s importing torch, Lightning, MLflow and Optuna before
its first trial; the command that starts it spends as long on the same imports, then on
the study and the parent run. Started as soon as the command has read its spec and
options, a worker imports beside the command on another core, then waits for its work:

    the command (this process)                 a started worker
    --------------------------                 ----------------
    prestart(n): n spawned processes           SIGINT ignored (the command stops it);
                                                 the training stack imported
    ... the store, the study, the parent run   waits on its pipe
    pool: hand(env, args) to each              its environment set, then pool.work
    close(): the ones never handed a sweep     (a closed pipe: it exits, nothing written)
      are terminated

Imports nothing heavy: the command calls it before its own imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from sweeplab.search.options import LocalWorkers


@dataclass
class Prestarted:
    """Spawned worker processes waiting for a sweep; each is handed one, or terminated
    (``options.StartedWorkers``)."""

    waiting: list[tuple[BaseProcess, Connection]] = field(default_factory=list)

    def hand(self, env: dict[str, str], args: tuple[Any, ...]) -> Any | None:
        """A started process set to work on ``pool.work(*args)`` with ``env`` in its
        environment, or None where none is left (or the one left had died)."""
        while self.waiting:
            process, connection = self.waiting.pop(0)
            try:
                connection.send((env, args))
            except OSError:  # it died while waiting (killed): the pool spawns one instead
                process.join(1)
                continue
            finally:
                connection.close()
            return process
        return None

    def close(self) -> None:
        """Terminate the processes never handed a sweep (they have written nothing)."""
        for process, connection in self.waiting:
            connection.close()
            process.terminate()
        for process, _ in self.waiting:
            process.join(5)
        self.waiting.clear()


@contextlib.contextmanager
def prestart(count: int, *, threads: int) -> Iterator[Prestarted]:
    """``count`` workers started now, each with ``threads`` cores; the ones the pool did
    not use are terminated when the block ends, however it ends."""
    started = Prestarted()
    context = multiprocessing.get_context("spawn")
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # a spawned process takes it at its start
    try:
        for index in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_wait_for_work, args=(theirs,), name=f"sweeplab-worker-{index + 1}"
            )
            process.start()
            theirs.close()
            started.waiting.append((process, ours))
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before
    try:
        yield started
    finally:
        started.close()


@contextlib.contextmanager
def prestarted(options: LocalWorkers | None) -> Iterator[LocalWorkers | None]:
    """``options`` with their spawned workers started now, where they run on CPUs
    (``--workers`` above 1, no ``--gpus``); as they are otherwise.

    Without ``--gpus`` on a machine with CUDA GPUs, every worker is spawned with its own
    GPU and those started here are terminated unused: knowing needs torch's import.
    """
    if options is None or options.workers < 2 or options.gpus is not None:
        yield options
        return
    with prestart(options.workers - 1, threads=options.threads) as started:
        yield dataclasses.replace(options, started=started)


def _wait_for_work(connection: Connection) -> None:
    """A started worker: the imports of a trial, then the sweep it is handed (or none)."""
    # until it has work, the command stops it (terminate): a Ctrl-C to the terminal's
    # group would otherwise print a traceback from the middle of an import
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from sweeplab.logs import quiet_libraries

    quiet_libraries(training=True)  # a worker's start is an entry point
    import lightning  # noqa: F401  (what the first trial would import: done ahead)
    import mlflow  # noqa: F401

    from sweeplab.search import trial  # noqa: F401
    from sweeplab.search.optuna_backend import pool

    try:
        env, args = connection.recv()
    except EOFError:  # the command ended (or was killed) before its sweep started
        return
    finally:
        connection.close()
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    pool.work(*args)
