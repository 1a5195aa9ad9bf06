"""Log a model as an MLflow pytorch model (signature, input example) and register a version."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeplab.models.base import InferenceModel
from sweeplab.registry.lineage import TAG_OUTPUT
from sweeplab.tracking.tracker import Tracker

MODEL_PATH = "model"


def log_model(tracker: Tracker, run_id: str, model: InferenceModel, example: Any) -> str:
    """Save ``model`` in MLflow's pytorch format into ``run_id``'s artifacts; returns its URI.

    The pickled module (``serialization_format="pickle"``), not MLflow's default exported
    program: a transfer source must keep its layers (``net.backbone``) and their training
    behaviour (dropout, batch norm), and a user's module need not be exportable.
    """
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        output = model(torch.as_tensor(example)).numpy()
    signature = infer_signature(example, output)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, MODEL_PATH)
        mlflow.pytorch.save_model(
            model,
            str(path),
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            serialization_format="pickle",
            metadata={TAG_OUTPUT: model.output},
        )
        tracker.client.log_artifacts(run_id, str(path), MODEL_PATH)
    artifact_uri: str = tracker.client.get_run(run_id).info.artifact_uri
    return f"{artifact_uri}/{MODEL_PATH}"


def register(tracker: Tracker, name: str, source: str, run_id: str, tags: Mapping[str, Any]) -> int:
    """A new version of registered model ``name`` from ``source``; returns the version number."""
    from mlflow.exceptions import MlflowException

    client = tracker.client
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(
            exc.error_code
        ):
            raise
    version = client.create_model_version(
        name, source, run_id=run_id, tags={k: str(v) for k, v in tags.items()}
    )
    return int(version.version)
