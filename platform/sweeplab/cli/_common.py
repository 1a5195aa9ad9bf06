"""What the commands share: store options, error rendering, quiet library loggers."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from sweeplab.interrupts import exit_status, reason, signals_as_interrupts
from sweeplab.logs import quiet_libraries

if TYPE_CHECKING:
    pass

__all__ = ["quiet_libraries"]  # the entry points' process set-up, with the options

F = TypeVar("F", bound=Callable[..., Any])

SIGPIPE_STATUS = 128 + 13  # the status of a tool killed by SIGPIPE (| head closed)


def _drop_stdout() -> None:
    """Point standard output at /dev/null: its reader went away, and nothing written at
    exit (a flush) may fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _Output(Console):
    """Standard output: a reader that went away (``sweeplab … | head``) ends the command
    quietly with the status of a tool killed by SIGPIPE, not rich's 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _drop_stdout()
        raise SystemExit(SIGPIPE_STATUS)


out = _Output(
    highlight=False, soft_wrap=True, markup=False, width=None if sys.stdout.isatty() else 160
)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

# Typer options used by several commands (same names, same help everywhere).
SET = typer.Option(
    [],
    "--set",
    "-s",
    metavar="PATH=VALUE",
    help="Override a spec field by dotted path, e.g. --set train.lr=3e-3, or a search-space "
    "entry's field, e.g. --set search_space.train.lr.high=0.1 (repeatable).",
)
UI_URL = typer.Option(
    None,
    "--ui-url",
    envvar="SWEEPLAB_UI_URL",
    help="The MLflow UI the report's run links name when the report is opened as a file "
    "(inside the UI they follow its address) [default: the tracking server, or "
    "http://127.0.0.1:5000 (sweeplab ui) for an embedded store].",
)
STORE = typer.Option(
    None,
    "--store",
    envvar="SWEEPLAB_STORE",
    help="Store folder for the defaults below [default: ./sweeplab-store].",
)
TRACKING_URI = typer.Option(
    None,
    "--tracking-uri",
    envvar="SWEEPLAB_TRACKING_URI",
    help="MLflow tracking URI [default: SQLite in the store].",
)
STORAGE = typer.Option(
    None,
    "--storage",
    envvar="SWEEPLAB_STORAGE",
    help="Optuna storage (SQLAlchemy URL) [default: SQLite in the store].",
)
ADDRESS = typer.Option(
    None,
    "--address",
    help="Ray cluster to join (auto, ray://host:10001, host:6379) [default: "
    "$SWEEPLAB_RAY_ADDRESS for a Ray sweep, else start Ray here].",
)


def ray_address(address: str | None) -> str | None:
    """--address, or the team's SWEEPLAB_RAY_ADDRESS: read for Ray sweeps only, so the
    variable set for a cluster does not stop a sweep on the Optuna backend."""
    return address or os.environ.get("SWEEPLAB_RAY_ADDRESS") or None


WORKERS = typer.Option(
    1,
    "--workers",
    "-w",
    help="Optuna backend: run the trials in this many worker processes on this machine "
    "(each with its share of the cores, and its own GPU where there are several).",
)
GPUS = typer.Option(
    None,
    "--gpus",
    metavar="IDS",
    help="CUDA devices for the workers, round-robin, e.g. 0,1 [default: every visible one].",
)


def gpu_ids(gpus: str | None) -> tuple[str, ...] | None:
    """``"0,1"`` → ("0", "1"); an InputError names a list that is not of device ids."""
    from sweeplab.spec import InputError

    if gpus is None:
        return None
    ids = tuple(part.strip() for part in gpus.split(",") if part.strip())
    if not ids or not all(i.isdigit() for i in ids):
        raise InputError(f"--gpus takes CUDA device ids such as 0,1, but got {gpus!r}.")
    return ids


QUIET = typer.Option(False, "--quiet", "-q", help="No progress display; only the summary.")


def open_store(
    store: Any,
    tracking_uri: str | None = None,
    storage: str | None = None,
    creating: bool = False,
    reading: bool = False,
) -> Any:
    """The Store the options name, its SQLite files checked (a truncated or overwritten
    one stops the command with StoreError, exit 1, before anything reads it). Commands
    that create the store (``creating``) accept an empty file, as ``Store.prepare`` does.
    Commands that only read (``reading``) open a read-only store read-only, and say so."""
    from sweeplab.store import Store

    where = Store.resolve(store, tracking_uri, storage)
    if reading and where.read_only:
        err.print(f"the store at {where.root} is read-only: reading it, nothing is written")
        where = where.for_reading()
    where.check()  # a malformed URL, a missing driver, a store that is a file
    where.verify(creating=creating)
    where.reachable()  # a server that does not answer: named in seconds, nothing created
    where.follow_move()  # a store folder that was copied or moved works where it is
    return where


def tracking_store(store: Any, tracking_uri: str | None) -> Any:
    """The Store of a command that reads runs or models; exit 1 when it points at the
    default local tracking database and that does not exist yet (nothing is created)."""
    from sweeplab.store import Store

    where = Store.resolve(store, tracking_uri)
    where.check()
    where.verify(storage=False)
    where.reachable()
    if tracking_uri is None and not (where.root / "mlflow.db").is_file():
        raise fail(
            f"no tracking database or model registry at {where.root / 'mlflow.db'}: "
            "run a sweep first"
        )
    where.follow_move()
    return where


def use_ui_url(ui_url: str | None) -> None:
    """``--ui-url``, for the report a sweep's end draws (``SWEEPLAB_UI_URL``, read where
    the report is written)."""
    if ui_url:
        os.environ["SWEEPLAB_UI_URL"] = ui_url


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"error: {message}", style="bold red")
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """SpecError → its issues and exit 2, as an unreadable data file or transfer source
    (InputError); a missing sweep or a bad store → exit 1;
    Ctrl-C outside a trial → exit 130, SIGTERM 143, SIGHUP 129 (both taken like Ctrl-C
    while the command runs: ``interrupts``). No tracebacks for any of them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sweeplab.spec import InputError, SpecError
        from sweeplab.store import StoreError

        try:
            with signals_as_interrupts():
                result = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe is found here, not at exit
            return result
        except SpecError as exc:
            for issue in exc.issues:
                err.print(f"error: {issue}", style="bold red")
            raise typer.Exit(2) from None
        except InputError as exc:
            raise fail(str(exc), 2) from None
        except LookupError as exc:
            raise fail(str(exc.args[0] if exc.args else exc)) from None
        except StoreError as exc:
            raise fail(str(exc)) from None
        except BrokenPipeError:
            # the reader went away (sweeplab … | head) while plain output was flushed:
            # stop quietly, as _Output does for rich's output
            _drop_stdout()
            raise typer.Exit(SIGPIPE_STATUS) from None
        except Exception as exc:
            from sweeplab.store import disk_full

            full = disk_full(exc)
            if full is not None:  # outside a trial: start-up, the end of a sweep
                raise fail(
                    f"the disk holding the store is full ({full}); what was saved before is "
                    "kept. Free some space, then run the command again (a sweep: sweeplab "
                    "resume NAME)"
                ) from None
            if "unable to open database file" in str(exc):
                raise fail(
                    "cannot open the store's database (unable to open database file): its "
                    "folder is read-only or gone"
                ) from None
            if _is_database_damage(exc):  # damage past the header, found while reading
                raise fail(
                    f"the store's database cannot be read ({_damage_line(exc)}); it is "
                    "corrupt: restore it from a backup, or move it aside"
                ) from None
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP (interrupts)
            raise fail(reason(exc), exit_status(exc)) from None

    return wrapper  # type: ignore[return-value]


DAMAGE = ("database disk image is malformed", "file is not a database")


def _is_database_damage(exc: BaseException) -> bool:
    """SQLite's own words for a damaged file, however SQLAlchemy or MLflow wrapped them."""
    return any(words in str(exc) for words in DAMAGE)


def _damage_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if any(w in line for w in DAMAGE)]
    return lines[0].strip() if lines else type(exc).__name__


def num(value: object, missing: str = "—") -> str:
    """A cell of a table: floats to 4 significant digits, ``missing`` for None."""
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plain_table(head: list[str], rows: list[list[str]]) -> str:
    """Columns aligned with spaces: a table of many rows at once."""
    widths = [max(len(cell) for cell in column) for column in zip(head, *rows, strict=True)]
    lines = [head, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def is_tty() -> bool:
    return sys.stderr.isatty()
