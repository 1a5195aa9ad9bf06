"""DatabaseLock: one holder at a time, across processes, for what the databases cannot
guard on their own (Optuna creating one trial too many, MLflow moving an alias twice).

The lock lives beside the data it guards: a file lock next to a SQLite file, or a
PostgreSQL advisory lock on the server. Other URLs (a tracking server, MySQL) get no
lock; callers say what that means for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DatabaseLock:
    """The lock ``purpose``/``name`` of the database at ``url`` (e.g. "claim", a study)."""

    def __init__(self, url: str, purpose: str, name: str) -> None:
        self.url = url
        digest = hashlib.sha256(f"{purpose}:{name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._engine: Any = None
        self.file: Path | None = None
        if url.startswith("sqlite:///"):
            db = Path(url.removeprefix("sqlite:///"))
            safe = re.sub(r"[^\w.-]", "_", name)
            self.file = db.with_name(f"{db.name}.{purpose}-{safe}.lock")

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.file is not None:
            with _locked_file(self.file):
                yield
        elif self.url.startswith("postgresql"):
            from sqlalchemy import text
            from sqlalchemy.exc import DBAPIError

            with self._connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
                try:
                    yield
                finally:
                    # a connection the server dropped (a restart) took the lock with it
                    with contextlib.suppress(DBAPIError):
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                        conn.commit()
        else:
            yield

    def busy(self) -> bool:
        """Whether another process holds the lock now (or waits for it); False where
        there is no lock. What it says may change at once: for a choice that is right
        either way, never to skip taking the lock."""
        if self.file is not None:
            return self.file.exists()  # it exists only while held or waited for
        if self.url.startswith("postgresql"):
            from sqlalchemy import text

            with self._connect() as conn:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
                if got.scalar():
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                    conn.commit()
                    return False
                return True
        return False

    def _connect(self) -> Any:
        if self._engine is None:
            from sqlalchemy import create_engine

            from sweeplab.outages import wait_for_server

            self._engine = create_engine(self.url, pool_size=1, max_overflow=0, pool_pre_ping=True)
            wait_for_server(self._engine, "the lock's database")
        return self._engine.connect()


@contextlib.contextmanager
def _locked_file(file: Path) -> Iterator[None]:
    """flock on the lock file, which exists only while it is held.

    The holder removes the file before it lets go. A process that opened the file
    before then holds a lock on a name that no longer exists, so after each flock it
    checks that the path is still the file it locked, and starts again if not (the
    usual pattern; fcntl and the filelock package leave the file behind)."""
    while True:
        handle = file.open("a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            same = os.stat(file).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()  # lets go of the lock on the removed file
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
        handle.close()
