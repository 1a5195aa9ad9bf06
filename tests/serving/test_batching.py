"""The request queue of sweeplab serve: what waits goes in one call, never mixed."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from sweeplab.serving.batching import Batcher
from sweeplab.serving.holder import Loaded


class _Scaled:
    """A model that multiplies its rows by ``factor``, taking ``seconds`` per call."""

    def __init__(self, factor: float, seconds: float) -> None:
        self.factor, self.seconds = factor, seconds
        self.calls: list[int] = []  # the rows of each call

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.calls.append(len(rows))
        time.sleep(self.seconds)
        return rows * self.factor


def _loaded(model: _Scaled, version: int) -> Loaded:
    return Loaded(model, version, "run", 2, "values", {})


def test_what_waits_goes_together_by_version_and_within_max_rows() -> None:
    one, two = _Scaled(1.0, 0.05), _Scaled(2.0, 0.0)
    v1, v2 = _loaded(one, 1), _loaded(two, 2)
    batcher = Batcher(max_rows=5)
    asked = [(v1, 1), (v1, 2), (v2, 1), (v1, 3), (v1, 2), (v2, 2)]  # (version, rows)

    async def main() -> list[np.ndarray]:
        tasks = []
        for i, (loaded, n) in enumerate(asked):
            rows = np.full((n, 2), float(i))
            tasks.append(asyncio.create_task(batcher.outputs(loaded, rows)))
            await asyncio.sleep(0)  # each is queued while the first call runs
        return await asyncio.gather(*tasks)

    outs = asyncio.run(main())
    for i, ((loaded, n), out) in enumerate(zip(asked, outs, strict=True)):
        factor = 1.0 if loaded is v1 else 2.0
        np.testing.assert_array_equal(out, np.full((n, 2), i * factor))  # its own rows
    # the first alone; then version 1's waiting rows up to 5 (2 + 3), the rest after
    assert one.calls == [1, 5, 2] and two.calls == [3]
    assert (batcher.calls, batcher.answered) == (4, 6)


def test_a_failing_call_fails_only_its_requests() -> None:
    class _Breaks(_Scaled):
        def predict(self, rows: np.ndarray) -> np.ndarray:
            if len(rows) > 1:
                raise ValueError("too many")
            return super().predict(rows)

    loaded = _loaded(_Breaks(1.0, 0.05), 1)
    batcher = Batcher(max_rows=10)

    async def main() -> list[object]:
        first = asyncio.create_task(batcher.outputs(loaded, np.zeros((1, 2))))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(batcher.outputs(loaded, np.ones((1, 2)))) for _ in "ab"]
        return await asyncio.gather(first, *waiting, return_exceptions=True)

    first, *waiting = asyncio.run(main())
    assert isinstance(first, np.ndarray)
    assert all(isinstance(w, ValueError) for w in waiting)
    with pytest.raises(ValueError, match=r"max_rows must be >= 1, but got 0\."):
        Batcher(max_rows=0)
