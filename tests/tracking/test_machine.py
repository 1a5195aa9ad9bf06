"""``tracking.system_metrics``: what the machine did while a trial trained, in its run."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from sweeplab.spec import SpecError, spec_from_dict
from tests.helpers import tiny_spec


def test_a_trial_run_holds_the_machine_s_use_while_it_trained(tmp_path: Path) -> None:
    from sweeplab.search import create_sweep
    from sweeplab.store import Store

    store = Store.resolve(tmp_path / "store")
    sampled = tiny_spec(
        name="machine",
        train={"max_epochs": 60},  # a second or two on iris
        sweep={"trials": 1},
        tracking={"experiment": "machine", "system_metrics": 0.25},
    )
    result = create_sweep(spec_from_dict(sampled), store=store).optimize()
    client = MlflowClient(store.tracking_uri)
    assert result.best_run_id is not None
    run = client.get_run(result.best_run_id)
    history = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 2 and all(0 <= m.value <= 100 for m in history)
    assert run.data.metrics["system/system_memory_usage_megabytes"] > 0
    # off: nothing sampled
    off = tiny_spec(
        name="unwatched",
        train={"max_epochs": 60},
        sweep={"trials": 1},
        tracking={"experiment": "unwatched", "system_metrics": None},
    )
    quiet = create_sweep(spec_from_dict(off), store=store).optimize()
    assert quiet.best_run_id is not None
    assert not [k for k in client.get_run(quiet.best_run_id).data.metrics if "system/" in k]


def test_a_sampling_interval_must_be_positive() -> None:
    with pytest.raises(SpecError, match=r"tracking\.system_metrics"):
        spec_from_dict(tiny_spec(tracking={"system_metrics": 0}))
