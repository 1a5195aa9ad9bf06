"""Log a trained model as an MLflow pytorch model (signature, input example) and register it."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeplab.data.split import Split
from sweeplab.models.base import InferenceModel
from sweeplab.registry.lineage import TAG_OUTPUT, lineage_tags
from sweeplab.spec import Experiment
from sweeplab.tracking.tracker import Tracker

MODEL_PATH = "model"


def log_trained_model(
    tracker: Tracker, run_id: str, module: Any, exp: Experiment, split: Split
) -> str:
    """Wrap a trained module for serving (its split's standardization inside) and log it.

    The input example is five raw test rows, as a client would send them (five
    latent vectors for a generator).
    """
    import torch

    from sweeplab.models.build import example_input, inference_model

    model = inference_model(module, exp, split).eval()
    if model.output == "samples":
        latent = example_input(module, split).shape[1]
        example = torch.randn(5, latent, generator=torch.Generator().manual_seed(0)).numpy()
    else:
        example = split.raw(split.x_test[:5])
    return log_model(tracker, run_id, model, example)


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


def version_tags(
    module: Any,
    exp: Experiment,
    split: Split,
    run_id: str,
    *,
    sweep: str | None = None,
    trial: int | None = None,
) -> dict[str, str]:
    """Lineage tags for a version of ``module``, with its score on the held-out test split."""
    from sweeplab.models.build import inference_model
    from sweeplab.registry.evaluate import held_out, score

    model = inference_model(module, exp, split)
    test = held_out(exp)
    result = score(model, test)
    return lineage_tags(
        spec=exp.model_dump(mode="json"),
        run_id=run_id,
        test=(test.hash, result.metric, result.value) if result else (test.hash, "", math.nan),
        output=model.output,
        sweep=sweep,
        trial=trial,
    )


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
