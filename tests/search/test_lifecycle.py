"""The sweep's end (``lifecycle.finish``) beside a worker that draws its plots ahead."""

from __future__ import annotations

import threading
import time

from mlflow import MlflowClient

from sweeplab.locks import DatabaseLock
from sweeplab.search import create_sweep
from sweeplab.search.analysis.plots import MANIFEST
from sweeplab.search.lifecycle import finish
from sweeplab.search.optuna_backend.worker import take_trials
from sweeplab.search.states import SweepState
from sweeplab.search.sweep import Work
from sweeplab.spec import spec_from_dict
from sweeplab.store import Store
from tests.helpers import tiny_spec


def test_the_end_registers_the_model_while_another_process_draws_the_plots(
    store: Store,
) -> None:
    """While the plots lock is held (a spawned worker drawing the plots), the sweep's
    end registers the model first, then waits for the plots rather than drawing them
    beside the worker. Here the holder draws nothing, so the end draws them itself, once
    the lock is free."""
    tracking = {"experiment": "ends", "report": True, "register_as": "ends-model"}
    sweep = create_sweep(spec_from_dict(tiny_spec(tracking=tracking)), store=store, name="ends")
    take_trials(sweep, Work())  # every trial ended; the sweep is not finished yet
    client = MlflowClient(store.tracking_uri, registry_uri=store.tracking_uri)
    held, seen, released = threading.Event(), [], []

    def drawer() -> None:
        with DatabaseLock(store.storage_url, "plots", "ends").held():
            held.set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if client.search_model_versions("name='ends-model'"):
                    seen.append(True)
                    break
                time.sleep(0.1)
            released.append(time.time())

    holder = threading.Thread(target=drawer)
    holder.start()
    assert held.wait(30)
    result = finish(sweep)
    holder.join(60)
    assert seen == [True]  # registered while the plots were someone else's to draw
    assert result.registered is not None and sweep.state is SweepState.COMPLETE
    manifest = store.root / "compare" / "ends" / MANIFEST
    assert manifest.stat().st_mtime >= released[0]  # drawn once the lock was let go
