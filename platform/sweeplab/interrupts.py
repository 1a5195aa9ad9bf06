"""SIGTERM and SIGHUP taken like Ctrl-C.

Kubernetes, Slurm, systemd and cloud pre-emption stop a process with SIGTERM (a closed
terminal sends SIGHUP), then SIGKILL after a grace period. Python's default for both is
to die at once, and Lightning's own SIGTERM handling ends a fit with a ``SystemExit``
of status 0, so a stopped sweep looked finished and left its trial RUNNING. Inside
``signals_as_interrupts`` both raise ``Terminated``, a ``KeyboardInterrupt``, where
Python was when the signal came: every path that handles Ctrl-C (the trial failed as
interrupted and queued again, its runs KILLED, the workers stopped) handles them too,
and the command exits ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM, 129 for
SIGHUP), as a shell reports a process a signal ended.

``uninterrupted`` keeps those signals out of a block (a write to the tracking store):
one that comes meanwhile is raised as the block ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar, cast

TAKEN = (signal.SIGTERM, signal.SIGHUP)  # besides SIGINT, which Python raises already
F = TypeVar("F", bound=Callable[..., Any])


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived (``signum``)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def exit_status(exc: KeyboardInterrupt) -> int:
    """The status a command that ``exc`` stopped exits with: 128 + the signal's number."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


def reason(exc: KeyboardInterrupt) -> str:
    """What stopped it, in a few words: ``interrupted (Ctrl-C)``, ``interrupted (SIGTERM)``."""
    return f"interrupted ({exc if isinstance(exc, Terminated) else 'Ctrl-C'})"


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Until the block ends, SIGTERM and SIGHUP raise ``Terminated`` in the main thread
    (elsewhere the block changes nothing: only the main thread may set handlers). The
    first one is raised; those that follow while the interrupted work winds down are
    ignored, as Lightning ignores a second Ctrl-C. The handlers before are put back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in TAKEN}
    for signum in TAKEN:
        signal.signal(signum, _raise)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _raise(signum: int, frame: FrameType | None) -> None:
    for taken in TAKEN:
        signal.signal(taken, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP wait; the first that came is handled
    as the block ends, by the handler it had before (Ctrl-C's ``KeyboardInterrupt``,
    ``Terminated``, or the signal's default). Outside the main thread nothing changes
    (signals reach the main thread only).

    For the writes to the tracking store: MLflow's store turns an exception raised in
    the middle of its database session into a connection that keeps the SQLite file
    locked, so the interrupted process's own next write (a trial's points, its run
    ended KILLED) waited 20 s for that lock and failed; and a write cut in two is lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        came.append(signum)

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, *TAKEN)}
    held = {s: h for s, h in before.items() if h is not None and h != signal.SIG_IGN}
    for signum in held:
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in held.items():
            signal.signal(signum, handler)
    if came:
        handler = held[signal.Signals(came[0])]
        if callable(handler):
            handler(came[0], None)
        else:  # SIG_DFL: the signal's own default (SIGTERM ends the process)
            os.kill(os.getpid(), came[0])


def whole(method: F) -> F:
    """``method`` run inside ``uninterrupted``: done whole, then interrupted."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with uninterrupted():
            return method(*args, **kwargs)

    return cast(F, call)


@contextlib.contextmanager
def signal_named() -> Iterator[None]:
    """Within the block, an interrupt that a library raised again as a plain
    ``KeyboardInterrupt`` is raised as the signal's own: Ray's C code does so with the
    ``Terminated`` that a SIGTERM raised while it waited, which would make a SIGTERM look
    like a Ctrl-C (exit 130, not 143). Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    before = {signum: signal.getsignal(signum) for signum in TAKEN}

    def note(signum: int, frame: FrameType | None) -> None:
        came.append(signum)
        handler = before[signal.Signals(signum)]
        if callable(handler):
            handler(signum, frame)

    for signum, handler in before.items():
        if callable(handler):
            signal.signal(signum, note)
    try:
        yield
    except KeyboardInterrupt as exc:
        if came and not isinstance(exc, Terminated):
            raise Terminated(came[0]) from None
        raise
    finally:
        for signum, handler in before.items():
            if signal.getsignal(signum) is note:  # not ignored since (a first one came)
                signal.signal(signum, handler)
