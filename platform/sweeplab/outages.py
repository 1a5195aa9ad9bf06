"""What a running sweep does when its database server stops answering for a while (a
PostgreSQL restart, a fail-over, a network blip): it waits for it, within a bound.

SQLAlchemy finds a dropped connection before using it (``pool_pre_ping``: Optuna's
storage is opened with it, MLflow opens its own so) and connects again, but it does not
wait: with the server down, the new connection fails at once, and the trial, its
heartbeat or its worker with it. ``wait_for_server`` makes an engine try each new
connection again, once a second, for up to ``SWEEPLAB_SERVICE_WAIT`` seconds (default
``SERVICE_WAIT``), saying once on the log that it waits and once that it is back. It
tries connecting again, not statements (those are ``again_after_reconnect``'s). Past the
bound, ``DatabaseLost`` (a ``StoreError``: one line and exit 1 at the command line)
names the database and how long it waited. SQLAlchemy has no waiting of its own (its
``pool_pre_ping`` and ``pool_recycle`` only replace dead connections); hence this.

A statement that was running when the server went down fails with its connection (its
transaction rolled back); ``again_after_reconnect`` makes such a call again, for the
calls where a second one is harmless (Optuna's storage wraps its reads and the writes
that set a value: ``search.storage``).

Only server databases wait: a SQLite file has no server to come back. A command checks
its services within seconds before it starts (``Store.reachable``); the wait is for one
that went away after that.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sweeplab.store import StoreError

SERVICE_WAIT = 120.0  # seconds a running sweep waits for a database server to come back
RETRY_SECONDS = 1.0
_MARK = "_sweeplab_waits"  # set on an engine that waits already: listen once

logger = logging.getLogger(__name__)


class DatabaseLost(StoreError):
    """A database server that stopped answering did not come back within the wait."""


def service_wait() -> float:
    """``SWEEPLAB_SERVICE_WAIT`` in seconds (0: do not wait), or ``SERVICE_WAIT``."""
    raw = os.environ.get("SWEEPLAB_SERVICE_WAIT", "")
    try:
        seconds = float(raw) if raw else SERVICE_WAIT
    except ValueError:
        raise StoreError(
            f"SWEEPLAB_SERVICE_WAIT must be a number of seconds, but got {raw!r}."
        ) from None
    if seconds < 0:
        raise StoreError(f"SWEEPLAB_SERVICE_WAIT must be >= 0, but got {raw!r}.")
    return seconds


def wait_for_server(engine: Any, what: str) -> None:
    """Make ``engine`` (a SQLAlchemy engine of ``what``, e.g. "the study database") wait
    for its server as the module says; nothing for SQLite or an engine that waits already."""
    from sqlalchemy import event

    if engine.dialect.name == "sqlite" or getattr(engine, _MARK, False):
        return
    seconds = service_wait()
    where = engine.url.render_as_string(hide_password=True)
    dbapi_error = engine.dialect.loaded_dbapi.OperationalError

    def connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        deadline = time.monotonic() + seconds
        waited = False
        while True:
            try:
                connection = dialect.connect(*cargs, **cparams)
            except dbapi_error as exc:
                if time.monotonic() >= deadline:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc
                    raise DatabaseLost(
                        f"{what} at {where} stopped answering and was not back within "
                        f"{seconds:g} s ({first}). What was committed is kept: start it "
                        "again, then `sweeplab resume NAME` (SWEEPLAB_SERVICE_WAIT sets "
                        "the wait)"
                    ) from None
                if not waited:
                    logger.warning(
                        "%s at %s does not answer; waiting up to %g s for it to come back",
                        what,
                        where,
                        seconds,
                    )
                    waited = True
                time.sleep(RETRY_SECONDS)
                continue
            if waited:
                logger.warning("%s at %s answers again; the sweep goes on", what, where)
            return connection

    event.listen(engine, "do_connect", connect)
    setattr(engine, _MARK, True)


def dropped_connection(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is SQLAlchemy saying that the
    server dropped the connection a statement was on (a restart under a running query):
    the transaction was rolled back, so the call can be made again."""
    from sqlalchemy.exc import DBAPIError

    seen: BaseException | None = exc
    for _ in range(6):  # Optuna wraps it in StorageInternalError: a short chain
        if seen is None:
            return False
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


F = TypeVar("F", bound=Callable[..., Any])


def again_after_reconnect(method: F) -> F:
    """``method`` made again (up to twice) when the server dropped its connection under
    it; the next connection waits for the server (``wait_for_server``). For calls that
    can be made twice: reads, and writes that set a value (a second call sets it again)."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        tries = 0
        while True:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                tries += 1
                if tries == 3 or not dropped_connection(exc):
                    raise

    return call  # type: ignore[return-value]
