"""What the machine did while a trial trained: MLflow's system metrics in its run, and
the peak memory of its fits.

Every ``tracking.system_metrics`` seconds the trial's run gets one point of each of
MLflow's system metrics (``system/cpu_utilization_percentage``,
``system/system_memory_usage_megabytes``, ``system/disk_usage_percentage``, the
network's bytes, and with ``pip install sweeplab[gpu]`` on an NVIDIA machine
``system/gpu_<i>_utilization_percentage`` and ``system/gpu_<i>_memory_usage_megabytes``),
drawn in the MLflow UI's system-metrics tab beside the trial's curves. A trial shorter
than one interval gets none: a seconds-long trial costs what it did.

``PeakMemory`` measures what the samples cannot: the highest resident memory of the
process while the trial's fits ran (``peak_rss_mb``), and on a GPU the most memory torch
allocated on it (``peak_gpu_mb``): the figures that say which trial ran out of memory.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING

from sweeplab import compat

if TYPE_CHECKING:
    from mlflow.entities import Metric

PEAK_RSS = "peak_rss_mb"  # the process's highest resident memory while the fits ran
PEAK_GPU = "peak_gpu_mb"  # the most memory torch allocated on the GPU meanwhile

# Linux keeps a process's peak resident memory (VmHWM) and lets the process set it back
# to the current one (writing 5 to clear_refs, Linux 4.0+): an exact peak per trial at
# no cost. psutil offers no peak on Linux, and sampling would miss a short spike.
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


@contextlib.contextmanager
def watched(run_id: str, tracking_uri: str, seconds: float | None) -> Iterator[None]:
    """Sample the machine into run ``run_id`` every ``seconds`` while the block runs
    (None: not at all); the samples taken are written when it ends."""
    if seconds is None:
        yield
        return
    monitor = compat.system_metrics_monitor(run_id, tracking_uri, seconds)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


class PeakMemory:
    """The peak memory of what runs inside ``with meter:``, in MiB, read when it ends.

    ``rss_mb``: the process's highest resident set size in the block. Where the peak
    cannot be set back (not Linux), the process's peak since it started, which is never
    below the block's. ``gpu_mb``: torch's peak allocation on the current CUDA device in
    the block; None without a GPU (or where torch never touched it).
    """

    def __init__(self) -> None:
        self.rss_mb: float | None = None
        self.gpu_mb: float | None = None

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):
            _CLEAR_REFS.write_text("5")
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rss_mb = _peak_rss_mb()
        cuda = _cuda()
        if cuda is not None:
            self.gpu_mb = cuda.max_memory_allocated() / 2**20

    def metrics(self) -> dict[str, float]:
        """What was measured, by metric name (a run's summary)."""
        out = {PEAK_RSS: self.rss_mb, PEAK_GPU: self.gpu_mb}
        return {k: round(v, 1) for k, v in out.items() if v is not None}

    def points(self) -> list[Metric]:
        """The same, as metric points for a run's last write."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        return [Metric(k, v, now, 0) for k, v in self.metrics().items()]


def _peak_rss_mb() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, kB here


def _cuda() -> ModuleType | None:
    """torch.cuda where torch is loaded and a GPU is in use by this process, else None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    cuda: ModuleType = torch.cuda
    return cuda
