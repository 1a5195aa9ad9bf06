"""Tracker: the MLflow experiment of a spec, and its runs, written through MlflowClient."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from sweeplab import compat
from sweeplab.interrupts import whole
from sweeplab.outages import wait_for_server
from sweeplab.store import Store

# MLflow limits a param value to 6000 characters.
MAX_PARAM = 6000


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` → ``{"train.lr": 0.1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM]


SEARCH_PAGE = 5000  # runs per call of MLflow's search
MAX_POINTS = 1000  # metrics per call of MLflow's log_batch


class Tracker:
    """One MLflow experiment; every write names its run id explicitly. The methods that
    reach the tracking database are ``@whole``: a Ctrl-C or SIGTERM that comes during
    one is raised when it is done (``interrupts.uninterrupted`` says why)."""

    def __init__(self, store: Store, experiment: str) -> None:
        self.store = store
        store.follow_move()  # a store folder that was copied or moved works where it is
        self.client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.tracking_uri)
        for engine in compat.mlflow_engines(self.client):  # a database server: restarts waited for
            wait_for_server(engine, "the tracking database")
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=store.artifact_location
            )
        else:
            self.experiment_id = found.experiment_id
        self.experiment = experiment
        # where the runs this process started keep their files: MLflow's client asks the
        # store for a run's artifact location before its first file, one query per run
        self._artifact_uris: dict[str, str] = {}

    @whole
    def start_run(
        self,
        name: str,
        *,
        parent: str | None = None,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> str:
        all_tags = {MLFLOW_RUN_NAME: name, **(tags or {})}
        if parent is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={k: str(v) for k, v in all_tags.items()}
        )
        run_id: str = run.info.run_id
        self._artifact_uris[run_id] = run.info.artifact_uri
        if params:
            self.log_params(run_id, params)
        return run_id

    @whole
    def search(self, filter_string: str) -> list[Any]:
        """Every run of the experiment that matches ``filter_string``, page by page: one
        call of MLflow's search returns at most a page, and nothing says more were left."""
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string, max_results=SEARCH_PAGE, page_token=token
            )
            runs += page
            token = page.token
            if not token:
                return runs

    @whole
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(k, _param_text(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # log_batch takes at most 100 params
            self.client.log_batch(run_id, params=items[start : start + 100])

    @whole
    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(run_id, metrics=batch)

    @whole
    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @whole
    def write(
        self,
        run_id: str,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        pending: list[Metric] | None = None,
    ) -> None:
        """Metrics, tags and ``pending`` metric points (a logger's buffer) in one write."""
        now = int(time.time() * 1000)
        points = [
            *(pending or []),
            *(Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()),
        ]
        labels = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for start in range(0, max(len(points), 1), MAX_POINTS):  # log_batch's limit
            chunk = points[start : start + MAX_POINTS]
            self.client.log_batch(run_id, metrics=chunk, tags=labels if start == 0 else [])

    def log_figure(self, run_id: str, figure: Any, path: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(run_id, figure, path)
        plt.close(figure)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_file(self, run_id: str, local: Path, folder: str | None = None) -> None:
        uri = self._artifact_uris.get(run_id)
        if uri is None:
            self.client.log_artifact(run_id, str(local), folder)
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        get_artifact_repository(uri, tracking_uri=self.store.tracking_uri).log_artifact(
            str(local), folder
        )

    def download(self, run_id: str, path: str) -> Path:
        target = tempfile.mkdtemp(prefix="sweeplab-")
        return Path(self.client.download_artifacts(run_id, path, target))

    @whole
    def end_run(self, run_id: str, status: str = "FINISHED", end_time: int | None = None) -> None:
        self.client.set_terminated(run_id, status, end_time=end_time)
        self._artifact_uris.pop(run_id, None)
