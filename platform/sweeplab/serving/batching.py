"""Requests that arrive while the model is busy are answered by one call of it.

While the model predicts, the requests that come in wait in a queue; when it is free,
they go together: their rows stacked into one array (up to ``max_rows`` rows, of one
loaded version and one row shape), one call of the model, and each request gets its
own rows' outputs back. A request that finds the model free goes at once: no timer, so
a lone client waits for nothing, and batches grow only with the load.

Neither Starlette, uvicorn nor MLflow's scoring server batch requests; Ray Serve does
(``@serve.batch``), but it is a serving framework of its own; hence this small queue.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from sweeplab.serving.holder import Loaded


@dataclass
class _Request:
    loaded: Loaded
    rows: np.ndarray
    done: asyncio.Future[np.ndarray]


class Batcher:
    """One model call at a time, for every request that waited for it."""

    def __init__(self, *, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, but got {max_rows}.")
        self.max_rows = max_rows
        self.calls = 0  # model calls made
        self.answered = 0  # requests answered by them
        self._queue: list[_Request] = []
        self._drain: asyncio.Task[None] | None = None

    async def outputs(self, loaded: Loaded, rows: np.ndarray) -> np.ndarray:
        """The model's outputs for ``rows`` (``loaded.outputs``), from a call that may
        take other requests' rows too."""
        request = _Request(loaded, rows, asyncio.get_running_loop().create_future())
        self._queue.append(request)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run())
        return await request.done

    async def _run(self) -> None:
        while self._queue:
            batch = self._take()
            stacked = batch[0].rows if len(batch) == 1 else np.concatenate([r.rows for r in batch])
            try:
                out = await run_in_threadpool(batch[0].loaded.outputs, stacked)
            except Exception as exc:  # the requests' own error: each of them gets it
                for request in batch:
                    if not request.done.done():
                        request.done.set_exception(exc)
                continue
            self.calls += 1
            start = 0
            for request in batch:
                end = start + len(request.rows)
                if not request.done.done():  # its client may have gone
                    request.done.set_result(out[start:end])
                    self.answered += 1
                start = end

    def _take(self) -> list[_Request]:
        """The first request, and the next ones of its version and row shape while the
        rows fit in ``max_rows``; the others stay queued, in their order."""
        first = self._queue[0]
        batch, kept, rows = [first], [], len(first.rows)
        for request in self._queue[1:]:
            fits = rows + len(request.rows) <= self.max_rows
            alike = (
                request.loaded is first.loaded and request.rows.shape[1:] == first.rows.shape[1:]
            )
            if fits and alike and request.rows.dtype == first.rows.dtype:
                batch.append(request)
                rows += len(request.rows)
            else:
                kept.append(request)
        self._queue = kept
        return batch
