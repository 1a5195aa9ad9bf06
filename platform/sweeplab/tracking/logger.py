"""A Lightning logger that buffers metrics and writes them to MLflow in batches."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from mlflow import MlflowClient
from mlflow.entities import Metric

from sweeplab.interrupts import whole

# MLflow's log_batch accepts at most 1000 metrics per call.
MAX_BATCH = 1000


class BatchedMlflowLogger(Logger):
    """Per-epoch metrics into one MLflow run, written ``log_batch`` at a time.

    Lightning's MLFlowLogger makes one request per ``log_metrics`` call. This
    logger keeps values in memory and writes them when ``flush_every`` seconds
    have passed, when the buffer is full, and when the fit ends, so logging costs
    a handful of writes per fit. The step of each value is the epoch, so a
    metric's history has one point per epoch. ``history`` keeps every value for
    the learning-curve plot without reading them back.

    ``hold``: the end of a fit does not write what is left; its owner takes it
    (``take``) and writes it with the run's other last values in one call.
    """

    def __init__(
        self, client: MlflowClient, run_id: str, flush_every: float = 10.0, hold: bool = False
    ) -> None:
        super().__init__()
        self._hold = hold
        self._client = client
        self._run_id = run_id
        self._flush_every = flush_every
        self._buffer: list[Metric] = []
        self._last_flush = time.monotonic()
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)

    @property
    def name(self) -> str:
        return "sweeplab"

    @property
    def version(self) -> str:
        return self._run_id

    @property
    def run_id(self) -> str:
        return self._run_id

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Params are logged by the trial runner from the spec, not from the module."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        epoch = int(metrics.get("epoch", step or 0))
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if key == "epoch":
                continue
            value = float(value)
            self.history[key].append((epoch, value))
            self._buffer.append(Metric(key, value, now, epoch))
        if (
            len(self._buffer) >= MAX_BATCH
            or time.monotonic() - self._last_flush > self._flush_every
        ):
            self.flush()

    @whole  # a Ctrl-C waits for the points being written: interrupts.uninterrupted
    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
            self._client.log_batch(self._run_id, metrics=chunk)
        self._last_flush = time.monotonic()

    @rank_zero_only
    def log_figure(self, figure: Any, path: str) -> None:
        """A matplotlib figure as an artifact of the run (a GAN's samples each epoch)."""
        import matplotlib.pyplot as plt

        self._client.log_figure(self._run_id, figure, path)
        plt.close(figure)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if not self._hold:
            self.flush()

    def take(self) -> list[Metric]:
        """The points not written yet; the caller writes them."""
        points, self._buffer = self._buffer, []
        return points

    def load_history(self, keys: tuple[str, ...]) -> None:
        """Read the run's history of ``keys`` back, for a fit that goes on in a run that
        already holds epochs (a PBT trial after a pause); its curve then shows them all."""
        for key in keys:
            points = self._client.get_metric_history(self._run_id, key)
            points.sort(key=lambda m: (m.timestamp, m.step))
            self.history[key] = [(m.step, m.value) for m in points]

    def carry(self, run_id: str, upto: int, wanted: Callable[[str], bool]) -> None:
        """Copy the points of epochs 0..``upto`` of the ``wanted`` metrics of run
        ``run_id`` (an earlier try of this fit) into this logger's run, now, and into its
        history: the fit goes on from epoch ``upto`` + 1, and its curve holds each epoch
        once."""
        keys = [k for k in self._client.get_run(run_id).data.metrics if wanted(k)]
        points = []
        for key in keys:
            kept = [m for m in self._client.get_metric_history(run_id, key) if m.step <= upto]
            kept.sort(key=lambda m: (m.step, m.timestamp))
            self.history[key] = [(m.step, m.value) for m in kept]
            points += kept
        for start in range(0, len(points), MAX_BATCH):
            self._client.log_batch(self._run_id, metrics=points[start : start + MAX_BATCH])

    def curve(self, key: str) -> list[float]:
        """Per-epoch values of ``key`` (the last value when an epoch logged it twice)."""
        by_epoch = {epoch: value for epoch, value in self.history.get(key, [])}
        return [by_epoch[e] for e in sorted(by_epoch)]
