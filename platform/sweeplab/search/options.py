"""The backends' own options: how the trials of a sweep run, beside what its spec says.

Command-line options, not spec fields (where a sweep runs is not what it is). Plain data,
importing nothing heavy, so that the search core and the command line type the
backend seam with them; ``catalog.BACKENDS`` says which backend takes which.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from sweeplab.spec import InputError


class StartedWorkers(Protocol):
    """Local worker processes started before their sweep existed, waiting for it
    (``optuna_backend.prestart.Prestarted``)."""

    def hand(self, env: dict[str, str], args: tuple[Any, ...]) -> BaseProcess | None:
        """One of them set to work on the sweep, or None where none is left."""

    def close(self) -> None:
        """Terminate the ones never handed a sweep."""


@dataclass(frozen=True)
class LocalWorkers:
    """How many worker processes run a sweep's trials here, and on which GPUs."""

    workers: int = 1
    gpus: tuple[str, ...] | None = None  # CUDA device ids; None: every visible one
    # workers the command started before its sweep existed (their imports beside its own);
    # the pool hands them the sweep, or spawns its own where there are none
    started: StartedWorkers | None = field(default=None, compare=False, repr=False)

    @property
    def threads(self) -> int:
        """Each worker's torch threads: its share of this machine's cores."""
        return max(1, (os.cpu_count() or 1) // self.workers)

    def gpu_of(self, index: int, visible: int) -> str | None:
        """The GPU of worker ``index`` (round-robin), or None without a GPU."""
        ids = list(self.gpus) if self.gpus is not None else [str(i) for i in range(visible)]
        return ids[index % len(ids)] if ids else None

    def check(self) -> None:
        if self.workers < 1:
            raise InputError(f"--workers must be >= 1, but got {self.workers}.")


@dataclass(frozen=True)
class RayOptions:
    """Where and with what a Ray sweep runs (command-line options, not the spec)."""

    address: str | None = None  # None: start Ray here with this machine's cores
    cpus_per_trial: float = 1.0  # with workers_per_trial > 1: per worker
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1  # > 1: data-parallel trials on Ray Train (ray_parallel.py)

    def check(self, scheduler: str = "none", pruner: str = "none") -> None:
        if self.workers_per_trial > 1 and pruner != "none":
            raise InputError(
                "--workers-per-trial above 1 cannot be used with sweep.pruner "
                f"'{pruner}' (rank 0 alone would stop): use sweep.scheduler: asha, "
                "hyperband or median, and sweep.pruner: none"
            )
        if self.workers_per_trial > 1 and scheduler == "pbt":
            raise InputError(
                "--workers-per-trial above 1 cannot be used with sweep.scheduler 'pbt', "
                f"but got {self.workers_per_trial}; use asha, hyperband, median or none."
            )
        if self.workers_per_trial < 1:
            raise InputError(f"--workers-per-trial must be >= 1, but got {self.workers_per_trial}.")
        if not self.cpus_per_trial > 0:
            raise InputError(f"--cpus-per-trial must be > 0, but got {self.cpus_per_trial}.")
        if self.gpus_per_trial < 0:
            raise InputError(f"--gpus-per-trial must be >= 0, but got {self.gpus_per_trial}.")
        if 1 < self.gpus_per_trial != int(self.gpus_per_trial):
            raise InputError(
                "--gpus-per-trial above 1 must be a whole number of GPUs, "
                f"but got {self.gpus_per_trial}."
            )

    def kept(self) -> dict[str, Any]:
        """What a resumed sweep runs with again (the address may change)."""
        return {
            "cpus_per_trial": self.cpus_per_trial,
            "gpus_per_trial": self.gpus_per_trial,
            "workers_per_trial": self.workers_per_trial,
        }


# What a backend is given: its own options (None: its defaults)
BackendOptions = LocalWorkers | RayOptions
