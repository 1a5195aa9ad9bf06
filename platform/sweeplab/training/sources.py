"""Transfer sources: the model a ``transfer`` architecture takes its backbone from.

``models:/name@alias`` and ``models:/name/3`` come from the MLflow registry (read with
an explicit client), a folder is an MLflow model, a file was written by
``torch.save(model)``, and ``torchvision:NAME`` is a torchvision model with its
pretrained weights where torchvision is installed (and its weights are cached). The
model itself (``models.transfer.Transfer``) is handed the loaded source.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from sweeplab.models.transfer import SourceError

__all__ = ["SourceError", "load_source"]


def _download(uri: str, tracking_uri: str | None, target: str) -> Path:
    """A registry URI → a model folder in ``target``, read with an explicit client."""
    from mlflow.exceptions import MlflowException

    from sweeplab.registry.models import ModelRef, client_for, download, resolve

    try:
        ref = ModelRef.parse(uri.removeprefix("models:/"))
    except ValueError:
        raise SourceError(
            f"{uri!r}: expected models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME/latest"
        ) from None
    local_db = (tracking_uri or "").removeprefix("sqlite:///")
    if tracking_uri and tracking_uri.startswith("sqlite:///") and not Path(local_db).is_file():
        raise SourceError(f"{uri}: there is no model registry at {tracking_uri}")  # none made
    try:
        return download(tracking_uri, resolve(client_for(tracking_uri), ref), target)
    except (LookupError, MlflowException) as exc:
        message = exc.message if isinstance(exc, MlflowException) else exc.args[0]
        raise SourceError(
            f"{uri}: {message} (register a model first, e.g. sweeplab train SPEC "
            f"--register {ref.name})"
        ) from None


@lru_cache(maxsize=4)
def load_source(source: str, tracking_uri: str | None = None) -> nn.Module:
    """The source model as an ``nn.Module`` (sweeplab's InferenceModel for its own models).

    Cached: every trial of a sweep transfers from the same source, read once (callers
    copy what they train, see ``backbone_of``).
    """
    if source.startswith("torchvision:"):
        return _torchvision(source.removeprefix("torchvision:"))
    if source.startswith("models:/"):
        with tempfile.TemporaryDirectory(prefix="sweeplab-source-") as tmp:
            return _load_path(_download(source, tracking_uri, tmp), source)
    return _load_path(Path(source), source)


def _load_path(path: Path, source: str) -> nn.Module:
    """A local MLflow model folder or a torch.save file, loaded whole into memory."""
    if path.is_dir():
        # a portable version (a torch.export program) keeps the pickled module beside it:
        # its layers and their training behaviour are what a transfer takes
        pickled = path / "extra_files" / "module.pt"
        if not pickled.is_file():  # a text model (strings in) keeps it among its artifacts
            pickled = path / "artifacts" / "module.pt"
        if pickled.is_file():
            module: nn.Module = torch.load(pickled, map_location="cpu", weights_only=False)
            return module
        import mlflow.pytorch

        model: nn.Module = mlflow.pytorch.load_model(str(path), map_location="cpu")
        return model
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch.load raises many kinds for a file it cannot read
        raise SourceError(f"{source}: not a file written by torch.save ({exc})") from None
    if not isinstance(loaded, nn.Module):
        raise SourceError(f"{source}: holds a {type(loaded).__name__}, not a whole nn.Module")
    return loaded


def _torchvision(name: str) -> nn.Module:
    try:
        import torchvision
    except ImportError:
        raise SourceError(
            "torchvision is not installed; pip install torchvision to use torchvision:NAME"
        ) from None
    model: nn.Module = torchvision.models.get_model(name, weights="DEFAULT")
    for attr in ("fc", "classifier", "heads", "head"):  # the classifier torchvision attaches
        if hasattr(model, attr):
            setattr(model, attr, nn.Flatten())
            break
    return model
