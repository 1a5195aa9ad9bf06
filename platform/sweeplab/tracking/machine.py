"""What the machine did while a trial trained: MLflow's system metrics in its run.

Every ``tracking.system_metrics`` seconds the trial's run gets one point of each of
MLflow's system metrics (``system/cpu_utilization_percentage``,
``system/system_memory_usage_megabytes``, ``system/disk_usage_percentage``, the
network's bytes, and with ``pip install sweeplab[gpu]`` on an NVIDIA machine
``system/gpu_<i>_utilization_percentage`` and ``system/gpu_<i>_memory_usage_megabytes``),
drawn in the MLflow UI's system-metrics tab beside the trial's curves. A trial shorter
than one interval gets none: a seconds-long trial costs what it did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sweeplab import compat


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
