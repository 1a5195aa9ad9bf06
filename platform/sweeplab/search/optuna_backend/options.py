"""How the Optuna backend runs a sweep's trials here: the command-line options (not in
the spec; imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalWorkers:
    """How many worker processes run a sweep's trials here, and on which GPUs."""

    workers: int = 1
    gpus: tuple[str, ...] | None = None  # CUDA device ids; None: every visible one

    def gpu_of(self, index: int, visible: int) -> str | None:
        """The GPU of worker ``index`` (round-robin), or None without a GPU."""
        ids = list(self.gpus) if self.gpus is not None else [str(i) for i in range(visible)]
        return ids[index % len(ids)] if ids else None
