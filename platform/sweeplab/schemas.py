"""A new local store's databases copied from empty ones made once per library version.

MLflow makes a new SQLite tracking database by creating its first tables and then
running every schema migration since its first release, one by one (1.1 s on this
project's 2-core machine, more under load); Optuna creates its tables and stamps their
version (0.45 s). Each new store paid both at its first sweep, and so did every test that
makes one. The result is the same empty database each time for a given version of the
library, so it is made once, kept in a cache folder (``SWEEPLAB_CACHE``, else
``$XDG_CACHE_HOME/sweeplab``, else ``~/.cache/sweeplab``) under the library's version,
and copied (a copy takes a few milliseconds).

Neither library offers this: MLflow has no "create from template" and Optuna none either;
both open an existing database with all their tables as they open any database of
theirs (MLflow then creates its default experiment under the store's own artifact root,
as in a database it made itself; ``tests/test_schemas.py`` checks it).

Nothing here can lose data: a database file that exists is never touched (the copy is
linked into place, which fails if the name exists), a template is written beside its
final name and renamed (two processes making it at once leave one whole file), and when
the cache cannot be written the libraries make the tables themselves, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

_log = logging.getLogger(__name__)

MLFLOW = "mlflow"
OPTUNA = "optuna"


def cache_folder() -> Path:
    """Where the empty databases are kept (``SWEEPLAB_CACHE``, then XDG's cache)."""
    named = os.environ.get("SWEEPLAB_CACHE")
    if named:
        return Path(named)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sweeplab"


def seed(path: Path, library: str) -> bool:
    """Create the SQLite database ``path`` for ``library`` (``MLFLOW`` or ``OPTUNA``) as a
    copy of its empty database of the installed version, making that first if needed.
    Returns whether ``path`` was created; False (and nothing changed) when it exists
    already or the cache cannot be used, so the library creates its tables itself."""
    if path.exists():
        return False
    try:
        return _link_copy(_template(library), path)
    except (OSError, _Unusable) as exc:  # the library makes its tables, as it always could
        _log.debug("no empty %s database copied to %s: %s", library, path, exc)
        return False


class _Unusable(Exception):
    """The cache's empty database cannot be made here."""


def _template(library: str) -> Path:
    make = _MAKERS[library]
    name = f"{library}-{metadata.version(library)}.db"
    template = cache_folder() / "schemas" / name
    if template.is_file() and template.stat().st_size > 0:
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=template.parent, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)  # the library creates the file itself
    try:
        make(f"sqlite:///{tmp}")
        os.replace(tmp, template)
    except Exception as exc:
        raise _Unusable(f"making {template} failed: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return template


def _link_copy(template: Path, path: Path) -> bool:
    """Copy ``template`` to ``path`` unless ``path`` exists by then (no overwrite)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(template, tmp)
        os.link(tmp, path)  # unlike a rename, fails where the name exists
    except FileExistsError:  # made meanwhile by another process (or its library)
        return False
    finally:
        os.unlink(tmp)
    return True


def _make_mlflow(url: str) -> None:
    from sqlalchemy import create_engine

    from sweeplab import compat

    engine = create_engine(url)
    try:
        compat.create_mlflow_tables(engine)
    finally:
        engine.dispose()


def _make_optuna(url: str) -> None:
    import optuna

    storage = optuna.storages.RDBStorage(url)
    storage.engine.dispose()


_MAKERS: dict[str, Callable[[str], None]] = {MLFLOW: _make_mlflow, OPTUNA: _make_optuna}
