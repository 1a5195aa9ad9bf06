"""Process-wide set-up: library loggers, warning filters, environment defaults, the
hook that keeps a Ctrl-C from being lost, and a quick exit.

Called only at entry points (a CLI command, a Ray worker's start), never from a
library function: ``fit()`` or ``run_sweep()`` called from Python leave the
process's loggers, warning filters and environment as they found them.
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator

# Libraries whose own FutureWarnings (about their internals, not about sweeplab's calls)
# are kept off the terminal; a FutureWarning raised at sweeplab's own call still shows.
_LIBRARIES = r"(mlflow|ray|optuna|optuna_integration|lightning|torch|sklearn|pydantic)(\.|$)"

# Lightning's advice that does not apply to sweeplab's fits
LIGHTNING_NOISE = (
    ".*does not have many workers.*",  # data are in-memory tensors: workers would slow it
    ".*GPU available but not used.*",
    ".*smaller than the logging interval.*",  # per-epoch metrics only
    ".*LeafSpec.*",
    # a data-parallel trial tests on every rank's shard; metrics are reduced over ranks
    ".*it is recommended to use `Trainer\\(devices=1.*",
)


def quiet_libraries(training: bool = False, mlflow: bool = True) -> None:
    """Keep library chatter (MLflow migrations and download bars, Optuna's per-trial lines,
    Lightning's start-up lines) off the terminal: sweeplab shows its own progress.

    MLflow, Optuna and Lightning set their loggers up when imported, so they are imported
    here before being quieted; Lightning (seconds to import) only for a process that
    trains (``training``), MLflow (a second) only for one that reads or writes runs.
    Every entry point calls it, so it also installs ``keep_ctrl_c``.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if mlflow:
        import mlflow as _  # noqa: F401
    import optuna

    if training:
        import lightning.pytorch  # noqa: F401

    keep_ctrl_c()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for name in ("mlflow", "alembic", "lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # it logs each failed write (a full disk) with its SQL; sweeplab reports it once
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
    warnings.filterwarnings("ignore", category=FutureWarning, module=_LIBRARIES)
    for message in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", message=message)


def keep_ctrl_c() -> None:
    """A Ctrl-C that lands in a garbage collector's callback is delivered again, not lost.

    Python raises KeyboardInterrupt in whatever code runs when SIGINT arrives; in a weakref
    or ``__del__`` callback (SQLAlchemy has some) it cannot propagate, so Python prints
    "Exception ignored ... KeyboardInterrupt" with a traceback and goes on as if no key
    was pressed. This hook prints nothing for it and has it raised again in the main
    thread (``_thread.interrupt_main``) from a short-lived thread: raised at once, it would
    land in this hook, which runs inside the same callback. Should it land in another
    callback, it comes back here and is sent once more.
    """
    if getattr(sys.unraisablehook, "sweeplab_ctrl_c", False):
        return
    before = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            again = threading.Timer(0.05, _thread.interrupt_main)
            again.daemon = True
            again.start()
        else:
            before(unraisable)

    hook.sweeplab_ctrl_c = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def quick_exit() -> None:
    """Just before an entry point's process exits: its objects frozen out of the
    interpreter's last garbage collections, which walk every object that torch,
    Lightning and MLflow created (2.4 s after a sweep on 2 cores, 0.2 s frozen). Only
    objects in reference cycles are left to the end of the process; atexit handlers,
    ``weakref.finalize`` and the ``__del__`` of the others still run."""
    gc.freeze()


def ray_environment() -> dict[str, str]:
    """Environment defaults for a Ray driver while it runs a sweep (``scoped_environ``)."""
    return {
        "RAY_DEDUP_LOGS": "0",
        "RAY_AIR_NEW_OUTPUT": "0",  # sweeplab shows its own progress
        # PBT checkpoints every epoch, which Tune warns about; sweeplab means to
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
        # Tune's own CSV, JSON and TensorBoard files of every result: the trials are
        # tracked in MLflow, and writing them cost the 20-trial bench about 3 s
        # (bench/distributed.py)
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    }


@contextlib.contextmanager
def environ_kept(keys: Iterable[str]) -> Iterator[None]:
    """The environment variables ``keys`` as they are now, put back after the block
    (set again, or removed if they were not set)."""
    before = {key: os.environ.get(key) for key in keys}
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def scoped_environ(values: dict[str, str], override: bool = False) -> Iterator[None]:
    """Set environment variables for the block, then put the environment back as it was:
    for a library call that starts Ray or Tune (which read their settings from the
    environment only) or a process (which takes it as it is). Defaults, unless
    ``override``: a variable the user set wins."""
    with environ_kept(values):
        os.environ.update(
            {key: value for key, value in values.items() if override or key not in os.environ}
        )
        yield
