"""``tracking.system_metrics``: what the machine did while a trial trained, in its run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sweeplab.spec import SpecError, spec_from_dict
from sweeplab.tracking.machine import PEAK_RSS, PeakMemory
from tests.helpers import sweeplab, tiny_spec


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
    # the peak memory of its fits: in its run, on its trial, in status and compare
    peak = run.data.metrics[PEAK_RSS]
    assert 50 < peak < 24 * 1024  # a process that holds torch, below the machine's size
    status = json.loads(
        sweeplab("status", "machine", "-f", "json", "--store", str(store.root)).stdout
    )
    assert [r["peak_rss_mb"] for r in status["rows"]] == [peak]
    table = sweeplab("compare", "machine", "--no-plots", "-f", "csv", "--store", str(store.root))
    assert [float(r["peak_rss_mb"]) for r in csv.DictReader(io.StringIO(table.stdout))] == [peak]
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


def test_the_peak_memory_is_the_block_s_own_not_the_process_s_so_far() -> None:
    import torch

    with PeakMemory() as big:
        block = torch.ones(64 * 2**20)  # 256 MiB, every page touched
        del block
    with PeakMemory() as small:  # the 256 MiB are freed: the peak is set back
        torch.ones(1024).sum()
    assert big.rss_mb is not None and small.rss_mb is not None
    assert big.rss_mb - small.rss_mb > 200
    assert set(small.metrics()) == {PEAK_RSS}  # no GPU here: no GPU figure
