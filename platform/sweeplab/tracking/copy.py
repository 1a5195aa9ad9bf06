"""Copy MLflow runs from one tracking store to another, whole: params, tags, every point
of every metric's history, artifacts, status and times.

MLflow has no call that copies a run between stores, and the maintained export/import
tool (mlflow-export-import) works through folders of JSON and files on disk, writes its
own tag scheme, and pins MLflow versions of its own; these are the few client calls it
would make, run store to store, with the run ids mapped as they go.

A copied run is found again by its tag ``sweeplab.pushed_from`` (the source run's id);
``sweeplab.pushed`` is written last, so a copy cut short (a killed process) lacks it and
is deleted and made again on the next try.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweeplab.tracking.tracker import Tracker

TAG_FROM = "sweeplab.pushed_from"  # on a copied run: the source run's id
TAG_DONE = "sweeplab.pushed"  # on a copied run, written last: "yes"


@dataclass
class RunCopies:
    """Source run id → copied run id, and what this call did."""

    ids: dict[str, str] = field(default_factory=dict)
    copied: int = 0
    kept: int = 0  # copied by an earlier push
    redone: int = 0  # cut short by an earlier push: deleted and copied again


def parents_first(runs: Iterable[Any]) -> list[Any]:
    """Runs ordered so that a run's parent comes before it (a parent outside the set
    counts as none)."""
    by_id = {r.info.run_id: r for r in runs}

    def depth(run: Any) -> int:
        n, parent = 0, run.data.tags.get(MLFLOW_PARENT_RUN_ID)
        while parent in by_id and n < len(by_id):
            n, parent = n + 1, by_id[parent].data.tags.get(MLFLOW_PARENT_RUN_ID)
        return n

    return sorted(by_id.values(), key=lambda r: (depth(r), r.info.start_time or 0))


def copy_runs(
    source: Tracker,
    target: Tracker,
    runs: list[Any],
    on_run: Callable[[int, int], None] = lambda done, total: None,
) -> RunCopies:
    """Copy ``runs`` into ``target``'s experiment, parents first; runs copied by an
    earlier call are kept, runs it left half-copied are made again."""
    earlier = {r.data.tags[TAG_FROM]: r for r in target.search(f"tags.`{TAG_FROM}` != ''")}
    copies = RunCopies()
    ordered = parents_first(runs)
    for index, run in enumerate(ordered):
        old = earlier.get(run.info.run_id)
        if old is not None and old.data.tags.get(TAG_DONE) == "yes":
            copies.ids[run.info.run_id] = old.info.run_id
            copies.kept += 1
        else:
            if old is not None:  # cut short: its points and files may be part-written
                target.client.delete_run(old.info.run_id)
                copies.redone += 1
            copies.ids[run.info.run_id] = copy_run(source, target, run, copies.ids)
            copies.copied += 1
        on_run(index + 1, len(ordered))
    return copies


def copy_run(source: Tracker, target: Tracker, run: Any, ids: Mapping[str, str]) -> str:
    """One run into ``target``'s experiment; returns its new id. Tags naming a run (its
    parent) are mapped through ``ids``."""
    tags = {k: ids.get(v, v) if k == MLFLOW_PARENT_RUN_ID else v for k, v in run.data.tags.items()}
    tags[TAG_FROM] = run.info.run_id
    tags.pop(TAG_DONE, None)
    new = target.client.create_run(
        target.experiment_id,
        start_time=run.info.start_time,
        tags=tags,
        run_name=run.info.run_name,
    )
    new_id: str = new.info.run_id
    target.log_params(new_id, run.data.params)
    points = [p for key in sorted(run.data.metrics) for p in _history(source.client, run, key)]
    if points:
        target.write(new_id, pending=points)
    copy_artifacts(source.client, target.client, run.info.run_id, new_id)
    target.set_tags(new_id, {TAG_DONE: "yes"})
    if run.info.status != "RUNNING":
        target.end_run(new_id, run.info.status, end_time=run.info.end_time)
    return new_id


def _history(client: MlflowClient, run: Any, key: str) -> list[Metric]:
    return [
        Metric(m.key, m.value, m.timestamp, m.step)
        for m in client.get_metric_history(run.info.run_id, key)
    ]


def copy_artifacts(source: MlflowClient, target: MlflowClient, run_id: str, new_id: str) -> None:
    """Every file of the run, through the clients (a local folder or a server's store)."""
    if not source.list_artifacts(run_id):
        return
    with tempfile.TemporaryDirectory(prefix="sweeplab-push-") as tmp:
        local = Path(source.download_artifacts(run_id, "", tmp))
        target.log_artifacts(new_id, str(local))
