"""Log a model as an MLflow pytorch model (signature, input example) and register a version."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeplab import compat
from sweeplab.models.base import InferenceModel
from sweeplab.models.ensemble import EnsembleModel
from sweeplab.registry.lineage import TAG_INPUT, TAG_LABELS, TAG_OUTPUT
from sweeplab.tracking.tracker import Tracker

MODEL_PATH = "model"
MODULE_FILE = "module.pt"  # the pickled module beside the program: a transfer source's
MODULE_PATH = f"extra_files/{MODULE_FILE}"  # where it is in the model's folder
TEXT_MODULE_PATH = f"artifacts/{MODULE_FILE}"  # where a text model (pyfunc) keeps it
TEXT_CODE = Path(__file__).with_name("text_model.py")  # a text model's pyfunc, from code

logger = logging.getLogger(__name__)


@dataclass
class Logged:
    """A logged model: its URI, and why it is not portable (None: it is)."""

    uri: str
    portable: str | None = None


def log_model(
    tracker: Tracker,
    run_id: str,
    model: InferenceModel | EnsembleModel,
    example: Any,
    *,
    texts: Sequence[str] = (),
) -> Logged:
    """Save ``model`` in MLflow's pytorch format into ``run_id``'s artifacts.

    **Portable**: the network as a ``torch.export`` program (MLflow's "pt2" format) with
    a dynamic batch dimension, the standardization and the softmax or score inside it, so
    a version loads and predicts with its logged requirements alone (torch, mlflow),
    without sweeplab. The pickled module goes with it (``extra_files/module.pt``): a
    transfer source takes its layers (``net.backbone``) and their training behaviour
    (dropout, batch norm) from it. A model that ``torch.export`` cannot trace (a user's
    module may not be) is saved pickled, as before, and ``Logged.portable`` says why not.

    **Text** (a model with a ``tokenizer``; ``example``: token ids, ``texts``: the same
    rows as written): an MLflow pyfunc model from code (``text_model.py``) that takes raw
    strings, encodes them with the tokenizer and runs the program (``_save_text``).
    """
    import mlflow
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        output = model(torch.as_tensor(example)).numpy()
    signature = infer_signature(example, output)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    options = {
        "signature": signature,
        "input_example": example,
        "pip_requirements": requirements,
        "metadata": {TAG_OUTPUT: model.output, **_labels(model)},
    }
    # the pins are this environment's versions: MLflow's check of them by name alone
    pinned = ["torch", "mlflow", "tokenizers"]
    with tempfile.TemporaryDirectory() as tmp, compat.requirements_checked_by_name(pinned):
        module = Path(tmp, MODULE_FILE)
        torch.save(model, module)
        if getattr(model, "tokenizer", ""):
            path, reason = _save_text(model, Path(tmp), module, example, texts, options)
        else:
            path, reason = _save(model, Path(tmp, MODEL_PATH), module, options)
        tracker.client.log_artifacts(run_id, str(path), MODEL_PATH)
    artifact_uri: str = tracker.client.get_run(run_id).info.artifact_uri
    return Logged(f"{artifact_uri}/{MODEL_PATH}", reason)


def _labels(model: Any) -> dict[str, list[str]]:
    """A classifier's class names, for clients of the version (``/predict``'s labels)."""
    labels = getattr(model, "labels", None)
    return {TAG_LABELS: list(labels)} if model.output == "probabilities" and labels else {}


def _save(model: Any, path: Path, module: Path, options: dict[str, Any]) -> tuple[Path, str | None]:
    """The pt2 program where torch.export can trace ``model``; else the pickled module,
    with the reason."""
    import shutil

    import mlflow.pytorch

    try:
        mlflow.pytorch.save_model(
            model, str(path), serialization_format="pt2", extra_files=[str(module)], **options
        )
        return path, None
    except Exception as exc:  # torch.export's errors have no common base class
        shutil.rmtree(path, ignore_errors=True)
        reason = f"torch.export could not trace it ({type(exc).__name__}: {str(exc)[:300]})"
        logger.warning("the model is saved pickled, not portable: %s", reason)
    mlflow.pytorch.save_model(model, str(path), serialization_format="pickle", **options)
    return path, reason


def _save_text(
    model: Any,
    tmp: Path,
    module: Path,
    ids: Any,
    texts: Sequence[str],
    options: dict[str, Any],
) -> tuple[Path, str | None]:
    """A text model: ``text_model.py`` with the tokenizer, the exported program (where
    torch.export traces it) and the pickled module; strings in."""
    import mlflow.pyfunc
    import tokenizers
    import torch
    from mlflow.models import ModelSignature, infer_signature

    tokenizer = tmp / "tokenizer.json"
    tokenizer.write_text(model.tokenizer)
    artifacts = {"tokenizer": str(tokenizer), "module": str(module)}
    ids = torch.as_tensor(ids)
    reason = None
    try:
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(model, (ids,), dynamic_shapes=({0: batch},))
        torch.export.save(program, tmp / "program.pt2")
        artifacts["program"] = str(tmp / "program.pt2")
    except Exception as exc:  # torch.export's errors have no common base class
        reason = f"torch.export could not trace it ({type(exc).__name__}: {str(exc)[:300]})"
        logger.warning("the text model is saved pickled, not portable: %s", reason)
    example = list(texts)  # an unnamed column of strings: a client sends a list
    # strings in; out, what log_model's signature says the ids gave
    signature = ModelSignature(infer_signature(example).inputs, options["signature"].outputs)
    path = tmp / MODEL_PATH
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(TEXT_CODE),
        artifacts=artifacts,
        signature=signature,
        input_example=example,
        pip_requirements=[*options["pip_requirements"], f"tokenizers=={tokenizers.__version__}"],
        metadata={**options["metadata"], TAG_INPUT: "text"},
    )
    return path, reason


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
