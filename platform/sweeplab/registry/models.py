"""Read the model registry: references (``name@alias``, ``name/3``, ``name/latest``),
listing, one model's versions with their lineage and promotion history, and loading."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from sweeplab.registry.lineage import HISTORY, TAG_TEST_METRIC, TAG_TEST_SCORE
from sweeplab.spec._errors import did_you_mean

REF = re.compile(r"(?:models:/)?([^/@]+)(?:@([^/@]+)|/(\d+|latest))?")


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None  # a number or "latest"; both None means latest

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        match = REF.fullmatch(text.strip())
        if match is None:
            raise ValueError(
                "model reference must be NAME@ALIAS, NAME/VERSION or NAME/latest, "
                f"but got {text!r}."
            )
        name, alias, version = match.groups()
        return cls(name, alias, version)

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}/{self.version or 'latest'}"


@dataclass
class VersionInfo:
    version: int
    aliases: list[str]
    run_id: str
    created: int  # ms since epoch
    tags: dict[str, str]

    @property
    def test(self) -> str:
        metric, value = self.tags.get(TAG_TEST_METRIC), self.tags.get(TAG_TEST_SCORE)
        return f"{metric} = {float(value):.4f}" if metric and value else ""


@dataclass
class ModelInfo:
    name: str
    aliases: dict[str, int]
    versions: list[VersionInfo] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    latest: int | None = None


def client_for(tracking_uri: str | None) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def model_names(client: MlflowClient) -> list[str]:
    return sorted(m.name for m in client.search_registered_models(max_results=1000))


def _missing(client: MlflowClient, name: str) -> LookupError:
    names = model_names(client)
    known = ", ".join(names) if names else "none yet (register one: sweeplab sweep with "
    known += "" if names else "tracking.register_as, or sweeplab train --register NAME)"
    return LookupError(
        f"no registered model named '{name}'{did_you_mean(name, names)}; models: {known}"
    )


def list_models(client: MlflowClient) -> list[ModelInfo]:
    out = []
    for m in sorted(client.search_registered_models(max_results=1000), key=lambda m: m.name):
        latest = max((int(v.version) for v in m.latest_versions or []), default=None)
        out.append(
            ModelInfo(m.name, {a: int(v) for a, v in (m.aliases or {}).items()}, latest=latest)
        )
    return out


def show_model(client: MlflowClient, name: str) -> ModelInfo:
    """Every version (newest first) with aliases and tags, and the promotion history."""
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        raise _missing(client, name) from None
    aliases = {a: int(v) for a, v in (model.aliases or {}).items()}
    versions = [
        VersionInfo(
            int(v.version),
            sorted(a for a, n in aliases.items() if n == int(v.version)),
            v.run_id or "",
            int(v.creation_timestamp or 0),
            dict(v.tags or {}),
        )
        for v in client.search_model_versions(f"name = '{name}'", max_results=1000)
    ]
    versions.sort(key=lambda v: -v.version)
    history = [
        json.loads(value)
        for key, value in sorted((model.tags or {}).items())
        if key.startswith(HISTORY)
    ]
    latest = versions[0].version if versions else None
    return ModelInfo(name, aliases, versions, history, latest)


def resolve(client: MlflowClient, ref: ModelRef) -> ModelVersion:
    """The version ``ref`` points at now; LookupError naming what exists."""
    try:
        client.get_registered_model(ref.name)
    except MlflowException:
        raise _missing(client, ref.name) from None
    try:
        if ref.alias is not None:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        if ref.version in (None, "latest"):
            found = client.search_model_versions(f"name = '{ref.name}'", max_results=1000)
            if not found:
                raise LookupError(f"registered model '{ref.name}' has no versions")
            return max(found, key=lambda v: int(v.version))
        return client.get_model_version(ref.name, str(ref.version))
    except MlflowException:
        model = client.get_registered_model(ref.name)
        aliases = ", ".join(f"@{a} → {v}" for a, v in (model.aliases or {}).items()) or "none"
        numbers = sorted(
            int(v.version) for v in client.search_model_versions(f"name = '{ref.name}'")
        )
        raise LookupError(
            f"model {ref} does not exist; versions of '{ref.name}': "
            f"{', '.join(map(str, numbers)) or 'none'}; aliases: {aliases}"
        ) from None


def download(tracking_uri: str | None, version: ModelVersion, target: str | Path) -> Path:
    """The version's model folder (MLmodel, weights) copied into ``target``."""
    from mlflow.artifacts import download_artifacts

    try:
        path = download_artifacts(
            artifact_uri=version.source, dst_path=str(target), tracking_uri=tracking_uri
        )
    except (MlflowException, OSError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise MissingArtifacts(
            f"the files of model {version.name} version {version.version} cannot be read "
            f"from {version.source} ({detail}); restore them, or point the alias at another "
            "version (sweeplab models promote)"
        ) from None
    if not Path(path, "MLmodel").is_file():
        raise MissingArtifacts(
            f"model {version.name} version {version.version} has no MLmodel file in "
            f"{version.source}: its files are missing or incomplete"
        )
    return Path(path)


class MissingArtifacts(LookupError):
    """A registered version whose files are gone from the artifact store (exit 1)."""


def load_torch(tracking_uri: str, version: ModelVersion) -> Any:
    """The version's model as torch loads it: the portable program (what is served), or
    the pickled InferenceModel of an older or unexportable version; ``output`` says what
    it answers either way."""
    import mlflow.pytorch
    import torch
    from mlflow.models import Model

    from sweeplab.registry.lineage import TAG_OUTPUT
    from sweeplab.registry.register import TEXT_MODULE_PATH

    with tempfile.TemporaryDirectory(prefix="sweeplab-model-") as tmp:
        path = download(tracking_uri, version, tmp)
        text_module = path / TEXT_MODULE_PATH  # a text model (strings in) keeps it there
        if text_module.is_file():
            return torch.load(text_module, map_location="cpu", weights_only=False).eval()
        model = mlflow.pytorch.load_model(str(path), map_location="cpu")
        if not hasattr(model, "output"):  # a torch.export program carries no attributes
            metadata = Model.load(str(path)).metadata or {}
            model.output = metadata.get(TAG_OUTPUT, version.tags.get(TAG_OUTPUT, "unknown"))
        return model
