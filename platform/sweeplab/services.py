"""Whether the services a store names are there: a database URL SQLAlchemy reads and
whose driver is installed, a tracking server or database server that answers within
seconds. Each returns the one line that says which service, where, and what to do, or
None when it is there (``Store.check`` and ``Store.reachable`` raise it)."""

from __future__ import annotations


def database_url_problem(option: str, url: str) -> str | None:
    """What is wrong with a URL SQLAlchemy cannot read, or whose driver is not installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        return (
            f"{option} {url!r} is not a database URL ({exc}); for example "
            "sqlite:///sweeps.db or postgresql+psycopg2://user@host:5432/db"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        how = "install it"
        if parsed.get_backend_name() == "postgresql":  # the extra installs psycopg2
            how = "pip install 'sweeplab[postgres]'"
            if parsed.get_driver_name() != "psycopg2":
                how = f"use postgresql+psycopg2:// ({how}), or install it"
        return (
            f"{option} {url!r} needs the database driver {exc.name or parsed.drivername!r}, "
            f"which is not installed: {how}"
        )
    return None


def server_problem(what: str, url: str, seconds: float) -> str | None:
    """Unless an HTTP server answers at ``url`` within ``seconds`` (any status
    is an answer: it is there)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=seconds):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        plain = getattr(reason, "strerror", None) or str(reason)
        why = f"no answer within {seconds:g} s" if "timed out" in str(reason) else plain
        return (
            f"{what} at {url} does not answer ({why}): start it (sweeplab ui, or mlflow "
            "server), or check --tracking-uri / SWEEPLAB_TRACKING_URI"
        )


def database_problem(option: str, url: str, seconds: float) -> str | None:
    """Unless the database server at ``url`` takes a connection within
    ``seconds``."""
    import sqlalchemy

    args = {"connect_timeout": max(1, round(seconds))} if url.startswith("postgresql") else {}
    engine = sqlalchemy.create_engine(url, connect_args=args)
    try:
        with engine.connect():
            return None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        where = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
        return (
            f"the database at {where} ({option}) does not answer: {first}. Start it, or "
            f"check {option}"
        )
    finally:
        engine.dispose()
