"""Metric ingestion: 10,000 metric values through sweeplab's logger vs mlflow.log_metric.

The same values (10 metrics x 1,000 steps) go into one run each, on the default
store (the SQLite file a sweep writes):

    mlflow.log_metric    a loop of the fluent call, one write per value
    sweeplab             BatchedMlflowLogger.log_metrics once per step, as Lightning
                         calls it, and finalize at the end (log_batch, 1,000 at a time)

Both histories are read back and counted. Target: sweeplab >= 20x faster.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
from tiny import TINY_HELP  # bench/tiny.py: this script's folder is on sys.path

from sweeplab.store import Store
from sweeplab.tracking.logger import BatchedMlflowLogger
from sweeplab.tracking.tracker import Tracker

METRICS = 10


def stored(client: mlflow.MlflowClient, run_id: str) -> int:
    return sum(len(client.get_metric_history(run_id, f"m{k}")) for k in range(METRICS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=10_000)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    if args.tiny:
        args.values = 200
    steps = args.values // METRICS
    rows = [
        {f"m{k}": (step * METRICS + k) / args.values for k in range(METRICS)}
        for step in range(steps)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.resolve(Path(tmp))
        store.prepare()
        tracker = Tracker(store, "bench")
        client = tracker.client
        mlflow.set_tracking_uri(store.tracking_uri)

        with mlflow.start_run(experiment_id=tracker.experiment_id, run_name="fluent") as run:
            start = time.perf_counter()
            for step, row in enumerate(rows):
                for key, value in row.items():
                    mlflow.log_metric(key, value, step=step)
            fluent = time.perf_counter() - start
        fluent_count = stored(client, run.info.run_id)

        run_id = tracker.start_run("sweeplab")
        logger = BatchedMlflowLogger(client, run_id)
        start = time.perf_counter()
        for step, row in enumerate(rows):
            logger.log_metrics(row, step)
        logger.finalize("success")
        ours = time.perf_counter() - start
        ours_count = stored(client, run_id)
    n = steps * METRICS
    print(f"metric ingestion: {n} values ({METRICS} metrics x {steps} steps), SQLite store")
    for label, seconds, count in (
        ("mlflow.log_metric loop", fluent, fluent_count),
        ("sweeplab logger", ours, ours_count),
    ):
        print(f"  {label:22s} {seconds:7.2f} s  {n / seconds:7.0f} values/s  stored {count}")
    ratio = fluent / ours
    print(f"target: sweeplab >= 20x faster: {'met' if ratio >= 20 else 'MISSED'} ({ratio:.0f}x)")


if __name__ == "__main__":
    main()
