"""Where everything lives: the store folder, the MLflow tracking URI, the Optuna storage URL.

The default is one folder in the working directory, ``sweeplab-store/``:

    sweeplab-store/
      mlflow.db      MLflow runs, metrics, registry (SQLite)
      artifacts/     MLflow artifacts (curves, models)
      optuna.db      Optuna studies, one per sweep (SQLite)

Each part can be pointed elsewhere: ``--store`` / ``SWEEPLAB_STORE`` moves the
folder, ``--tracking-uri`` / ``SWEEPLAB_TRACKING_URI`` an MLflow server,
``--storage`` / ``SWEEPLAB_STORAGE`` any SQLAlchemy URL (PostgreSQL for teams).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STORE = "sweeplab-store"


MIN_FREE_MB = 64  # a sweep does not start on a disk with less free space than this
CONNECT_TIMEOUT = 5.0  # seconds a tracking server or database has to answer at start-up


class StoreError(Exception):
    """The store cannot be used: a malformed URL, an unknown database, an unwritable folder."""


class DiskFull(StoreError):
    """The disk holding the store filled up while a sweep ran; what was committed is kept."""


def disk_full(exc: BaseException) -> str | None:
    """How ``exc``, or an exception it was raised from, says the disk is full (OSError
    ENOSPC/EDQUOT, SQLite's "database or disk is full", however wrapped); None if not."""
    import errno

    seen: BaseException | None = exc
    for _ in range(12):  # a bounded walk down the chain of causes
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return os.strerror(seen.errno)
        for words in ("database or disk is full", "No space left on device"):
            if words in str(seen):
                return words
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True)
class Store:
    root: Path
    tracking_uri: str
    storage_url: str

    @classmethod
    def resolve(
        cls,
        store: str | Path | None = None,
        tracking_uri: str | None = None,
        storage: str | None = None,
    ) -> Store:
        """Arguments first, then environment variables, then the default folder."""
        root = Path(store or os.environ.get("SWEEPLAB_STORE") or DEFAULT_STORE).absolute()
        tracking = tracking_uri or os.environ.get("SWEEPLAB_TRACKING_URI")
        storage_url = storage or os.environ.get("SWEEPLAB_STORAGE")
        return cls(
            root=root,
            tracking_uri=tracking or f"sqlite:///{root / 'mlflow.db'}",
            storage_url=storage_url or f"sqlite:///{root / 'optuna.db'}",
        )

    @property
    def local_tracking(self) -> bool:
        return self.tracking_uri.startswith("sqlite:///") and self.tracking_uri.endswith(
            str(self.root / "mlflow.db")
        )

    @property
    def artifact_root(self) -> Path:
        return self.root / "artifacts"

    @property
    def artifact_location(self) -> str | None:
        """Where new MLflow experiments keep artifacts: the store's folder when the runs are
        in a database (SQLite, PostgreSQL); None for a tracking server, which decides."""
        return None if self.tracking_server else self.artifact_root.as_uri()

    @property
    def tracking_server(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def follow_move(self) -> str | None:
        """After the store folder was copied or moved: point its MLflow database at the
        artifacts where they are now. Returns the old artifact root, if it moved.

        MLflow records absolute artifact locations (experiments, runs, model versions)
        and has no call to change them, so the rows are rewritten here, old root to new,
        in one SQLite transaction (a process that opens the store meanwhile sees it
        before or after). Only the store's own database, only locations inside the old
        store's ``artifacts/`` folder."""
        import sqlite3

        if not self.local_tracking or not (self.root / "mlflow.db").is_file() or self.read_only:
            return None  # a read-only copy is read where it is; its artifacts are not moved
        new = self.artifact_root.as_uri()
        try:
            db = sqlite3.connect(self.root / "mlflow.db", timeout=60, isolation_level=None)
        except sqlite3.Error:
            return None
        try:
            old = _old_artifact_root(db, new)
            if old is not None:
                db.execute("BEGIN IMMEDIATE")
                if _old_artifact_root(db, new) == old:  # not moved by another process
                    for table, column in _ARTIFACT_COLUMNS:
                        db.execute(
                            f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                            f"WHERE {column} = ? OR {column} LIKE ? ESCAPE '\\'",
                            (new, len(old) + 1, old, _like_prefix(old + "/")),
                        )
                db.execute("COMMIT")
            return old
        except sqlite3.Error as exc:
            raise StoreError(
                f"the store at {self.root} was moved, and its database cannot be pointed "
                f"at its new place ({exc}); sweeplab changed nothing"
            ) from None
        finally:
            db.close()

    @property
    def read_only(self) -> bool:
        """True when the store's folder exists and cannot be written (a read-only mount,
        an archived copy): reading commands open it read-only (``for_reading``)."""
        return self.root.is_dir() and not os.access(self.root, os.W_OK)

    def for_reading(self) -> Store:
        """This store with its study database opened read-only and immutable: SQLite in
        write-ahead-log mode otherwise writes its shared-memory file even to read."""
        path = _sqlite_file(self.storage_url)
        if path is None or self.storage_url.startswith(_READ_ONLY_PREFIX):
            return self
        # a copy taken while a sweep ran holds its last commits in the log: SQLite reads a
        # log read-only beside its shared-memory file; without a log, the file is immutable
        log = [Path(f"{path}-{end}") for end in ("wal", "shm")]
        logged = all(f.is_file() for f in log) and log[0].stat().st_size > 0
        query = "mode=ro" if logged else "mode=ro&immutable=1"
        return dataclasses.replace(self, storage_url=f"{_READ_ONLY_PREFIX}{path}?{query}&uri=true")

    def storage_exists(self) -> bool:
        """False when the default SQLite study file has not been created yet."""
        path = _sqlite_file(self.storage_url)
        return path is None or path.is_file()

    def check(self) -> None:
        """Reject malformed URLs, and database URLs whose driver is not installed, before
        anything is created (imports SQLAlchemy)."""
        if not self.tracking_uri.startswith(
            ("sqlite:///", "http://", "https://", "postgresql", "mysql", "file:")
        ):
            raise StoreError(
                f"--tracking-uri {self.tracking_uri!r} is not a tracking URI MLflow "
                "reads; use sqlite:///..., postgresql://... or http(s)://server"
            )
        from sweeplab.services import database_url_problem

        urls = [("--storage", self.storage_url)]
        if self.tracking_uri.startswith(("postgresql", "mysql", "sqlite")):
            urls.append(("--tracking-uri", self.tracking_uri))
        for option, url in urls:
            problem = database_url_problem(option, url)
            if problem is not None:
                raise StoreError(problem)
        file = next((f for f in (self.root, *self.root.parents) if f.is_file()), None)
        if file is not None:
            where = "" if file == self.root else f" (in {file}, a file)"
            raise StoreError(f"--store {self.root} is not a folder{where}: name a folder")

    def reachable(self, timeout: float | None = None) -> None:
        """StoreError within ``timeout`` seconds (``SWEEPLAB_CONNECT_TIMEOUT``, default 5)
        when the tracking server or the study database does not answer, naming which,
        where, and what to check. Local SQLite files always answer."""
        from sweeplab.services import database_problem, server_problem

        seconds = timeout or float(os.environ.get("SWEEPLAB_CONNECT_TIMEOUT", CONNECT_TIMEOUT))
        problems = []
        if self.tracking_server:
            problems.append(server_problem("the tracking server", self.tracking_uri, seconds))
        for option, url in (("--storage", self.storage_url), ("--tracking-uri", self.tracking_uri)):
            if url.startswith(("postgresql", "mysql")):
                problems.append(database_problem(option, url, seconds))
        for problem in problems:
            if problem is not None:
                raise StoreError(problem)

    def verify(self, storage: bool = True, creating: bool = False) -> None:
        """Refuse a truncated or overwritten SQLite file before anything reads or writes it:
        a clear error instead of SQLAlchemy's "database disk image is malformed".
        ``storage=False``: the tracking database only (commands that read models).
        ``creating``: an empty file passes, as SQLite creates one before writing the
        tables (another process may be creating the store at this moment)."""
        for path in self._sqlite_paths(storage):
            problem = sqlite_problem(path)
            if problem == EMPTY and creating:
                continue
            if problem is not None:
                raise StoreError(
                    f"{path} {problem}. sweeplab changed nothing: restore the file from a "
                    "backup, or move it aside to start a new store there"
                )

    def prepare(self) -> None:
        """Check the URLs, then create the local folders they point into (before writing)."""
        self.check()
        self.verify(creating=True)
        self.check_writable()
        try:
            for path in self._sqlite_paths():
                path.parent.mkdir(parents=True, exist_ok=True)
            self._seed_databases()
            if not self.tracking_server:
                self.artifact_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            file = next((f for f in (self.root, *self.root.parents) if f.is_file()), None)
            if file is not None:
                raise StoreError(
                    f"cannot create the store at {self.root}: {file} is a file, not a folder"
                ) from None
            raise StoreError(f"cannot create the store at {self.root}: {exc.strerror}") from None

    def _seed_databases(self) -> None:
        """A local SQLite database not made yet is copied from an empty one with its
        tables (``schemas``): about 1.5 s off a new store's first sweep."""
        from sweeplab import schemas

        tracking, storage = _sqlite_file(self.tracking_uri), _sqlite_file(self.storage_url)
        if tracking is not None and tracking != storage:
            schemas.seed(tracking, schemas.MLFLOW)
        if storage is not None and storage != tracking:
            schemas.seed(storage, schemas.OPTUNA)

    def check_writable(self) -> None:
        """Refuse to start on a read-only folder or a nearly full disk
        (``SWEEPLAB_MIN_FREE_MB``, default 64)."""
        import shutil

        folders = {p.parent for p in self._sqlite_paths()}
        if not self.tracking_server:
            folders.add(self.artifact_root)
        need = float(os.environ.get("SWEEPLAB_MIN_FREE_MB", MIN_FREE_MB))
        for folder in sorted(folders):
            while not folder.exists() and folder != folder.parent:  # not created yet
                folder = folder.parent
            if not os.access(folder, os.W_OK):  # also false on a read-only mount, for root
                raise StoreError(f"cannot write to {folder}: put the store elsewhere with --store")
            free = shutil.disk_usage(folder).free / 2**20
            if free < need:
                raise StoreError(
                    f"only {free:.1f} MB free on the disk holding {folder}; a sweep needs at "
                    f"least {need:g} MB (SWEEPLAB_MIN_FREE_MB). Free some space, or put the "
                    "store elsewhere with --store"
                )

    def _sqlite_paths(self, storage: bool = True) -> list[Path]:
        """The SQLite files of the tracking database and (``storage``) the studies."""
        urls = [self.tracking_uri, self.storage_url] if storage else [self.tracking_uri]
        return [path for path in map(_sqlite_file, urls) if path is not None]


# Where MLflow's database keeps absolute artifact locations
_ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def _old_artifact_root(db: object, new: str) -> str | None:
    """The ``file://.../artifacts`` root the database's experiments name, if not ``new``
    (None too while another process is creating the tables: nothing has moved yet)."""
    tables = db.execute(  # type: ignore[attr-defined]
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'experiments'"
    ).fetchall()
    if not tables:
        return None
    rows = db.execute(  # type: ignore[attr-defined]
        "SELECT DISTINCT artifact_location FROM experiments WHERE artifact_location LIKE "
        "'file://%/artifacts'"
    ).fetchall()
    old = [r[0] for r in rows if r[0] != new]
    return old[0] if old else None


def _like_prefix(text: str) -> str:
    """A LIKE pattern for values that start with ``text``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_READ_ONLY_PREFIX = "sqlite:///file:"  # a SQLite URI filename (``for_reading``)


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (a read-only one too); None for any other
    database."""
    if url.startswith(_READ_ONLY_PREFIX):
        return Path(url.removeprefix(_READ_ONLY_PREFIX).split("?", 1)[0])
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


EMPTY = "is empty (0 bytes)"


def sqlite_problem(path: Path) -> str | None:
    """What is wrong with the SQLite file at ``path``, or None (also when it does not exist).

    Asks SQLite itself, read-only, for the header's page size and count and compares them
    with the file's size (a copy cut short, a disk that filled up), so the cost is the
    same for a store of any size. Damage further in is reported by SQLite when it is read.
    The file is never opened directly: closing a descriptor of a database drops the locks
    that this process's SQLite connections hold on it (POSIX locks are per process), and
    SQLite guards against that only for the descriptors it opens itself.
    """
    import sqlite3

    try:
        size = path.stat().st_size
    except OSError:  # not there yet, or under a file: creating the store reports it
        return None
    if size == 0:
        return EMPTY
    try:
        uri = f"{path.absolute().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            # the size is read inside the read transaction, after the count: a writer in
            # another process (an agent, MLflow creating its tables) cannot commit between
            # them, and a file that grew after the count is no truncated file
            connection.execute("BEGIN")
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            size = path.stat().st_size
            wal = path.with_name(path.name + "-wal")
            pending = wal.is_file() and wal.stat().st_size > 0
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            return "is not an SQLite database: its header is missing or overwritten"
        if "malformed" in str(exc):
            return "is corrupt: SQLite reads it as a malformed database"
        return None  # cannot be opened read-only here (a read-only folder): checked elsewhere
    except OSError:  # moved away meanwhile: creating or opening the store reports it
        return None
    if pending:  # pages not yet copied back from the write-ahead log: the count has them
        return None
    if size < pages * page_size:
        return f"is truncated: its header records {pages * page_size} bytes, the file has {size}"
    return None
