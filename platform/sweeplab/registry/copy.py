"""Copy registered versions to another registry: their files (already copied with their
runs), lineage tags, aliases and promotion history, with run ids and version numbers
mapped to the other side's.

A copied version carries ``sweeplab.pushed_from`` (``name/version`` on the source side),
written with the version in one call, so a copy is found again and never made twice.
An alias is set only where the other registry has none of that name, or has it on a
version copied from this source: a team's own promotion is never moved by a copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sweeplab.registry.lineage import HISTORY, PROMOTED, TAG_RUN_ID
from sweeplab.tracking.copy import TAG_FROM  # on a copied version: name/version it was


@dataclass
class VersionCopies:
    """(name, source version) → target version, and what this call did."""

    numbers: dict[tuple[str, int], int] = field(default_factory=dict)
    copied: int = 0
    kept: int = 0
    aliases: dict[str, str] = field(default_factory=dict)  # "name@alias" → version set
    left: list[str] = field(default_factory=list)  # aliases the target holds elsewhere


def versions_of_runs(client: MlflowClient, run_ids: Mapping[str, str]) -> list[Any]:
    """The source registry's versions made from these runs, oldest first."""
    found: list[Any] = []
    for run_id in run_ids:
        found += client.search_model_versions(f"run_id = '{run_id}'")
    return sorted(found, key=lambda v: (v.name, int(v.version)))


def copy_versions(
    source: MlflowClient,
    target: MlflowClient,
    versions: list[Any],
    runs: Mapping[str, str],
    artifact_uri: Callable[[str], str],
) -> VersionCopies:
    """Copy ``versions`` whose runs were copied (``runs``: source → target run id);
    ``artifact_uri(run_id)`` is a target run's artifact root."""
    copies = VersionCopies()
    for version in versions:
        name, number = version.name, int(version.version)
        _ensure_model(source, target, name)
        mark = f"{name}/{number}"
        earlier = target.search_model_versions(f"name = '{_quoted(name)}'")
        done = [v for v in earlier if (v.tags or {}).get(TAG_FROM) == mark]
        if done:
            copies.numbers[(name, number)] = int(done[0].version)
            copies.kept += 1
            continue
        new_run = runs[version.run_id]
        source_uri = _relative(source, version)
        tags = {k: v for k, v in (version.tags or {}).items() if not k.startswith(PROMOTED)}
        tags[TAG_FROM] = mark
        if TAG_RUN_ID in tags:
            tags[TAG_RUN_ID] = runs.get(tags[TAG_RUN_ID], tags[TAG_RUN_ID])
        made = target.create_model_version(
            name,
            f"{artifact_uri(new_run)}/{source_uri}",
            run_id=new_run,
            tags=tags,
            description=version.description or None,
        )
        copies.numbers[(name, number)] = int(made.version)
        copies.copied += 1
    for name in sorted({v.name for v in versions}):
        _promotions(source, target, name, copies)
    return copies


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")


def _ensure_model(source: MlflowClient, target: MlflowClient, name: str) -> None:
    try:
        target.get_registered_model(name)
    except MlflowException:
        model = source.get_registered_model(name)
        try:
            target.create_registered_model(name, description=model.description or None)
        except MlflowException as exc:  # made meanwhile by another process
            if "already exists" not in str(exc).lower():
                raise


def _relative(client: MlflowClient, version: Any) -> str:
    """Where the version's files are inside its run's artifacts (``model``)."""
    source: str = version.source
    root: str = client.get_run(version.run_id).info.artifact_uri
    if source.startswith(root + "/"):
        return source[len(root) + 1 :]
    prefix = f"runs:/{version.run_id}/"
    if source.startswith(prefix):
        return source[len(prefix) :]
    raise ValueError(
        f"version {version.version} of {version.name} keeps its files at {source}, outside "
        "its run's artifacts: it cannot be copied with its run"
    )


def _promotions(
    source: MlflowClient, target: MlflowClient, name: str, copies: VersionCopies
) -> None:
    """Aliases, each version's promotion tags and the model's history decisions of the
    copied versions, with version numbers mapped."""
    model = source.get_registered_model(name)
    theirs = target.get_registered_model(name)
    ours = {n for (m, _), n in copies.numbers.items() if m == name}
    for alias, number in (model.aliases or {}).items():
        mapped = copies.numbers.get((name, int(number)))
        if mapped is None:
            continue
        holder = (theirs.aliases or {}).get(alias)
        if holder is not None and int(holder) not in ours:
            copies.left.append(f"{name}@{alias} (version {holder} there)")
            continue
        if holder is None or int(holder) != mapped:
            target.set_registered_model_alias(name, alias, str(mapped))
        copies.aliases[f"{name}@{alias}"] = str(mapped)
    for version in source.search_model_versions(f"name = '{_quoted(name)}'"):
        mapped = copies.numbers.get((name, int(version.version)))
        for key, value in (version.tags or {}).items():
            if mapped is not None and key.startswith(PROMOTED):
                target.set_model_version_tag(name, str(mapped), key, _mapped(value, name, copies))
    for key, value in (model.tags or {}).items():
        fresh = key not in (theirs.tags or {})
        if fresh and key.startswith(HISTORY) and _decides(value, name, copies):
            target.set_registered_model_tag(name, key, _mapped(value, name, copies))


def _decides(text: str, name: str, copies: VersionCopies) -> bool:
    """A history decision about a copied version."""
    try:
        record = json.loads(text)
    except ValueError:
        return False
    return isinstance(record, dict) and (name, record.get("version")) in copies.numbers


def _mapped(text: str, name: str, copies: VersionCopies) -> str:
    """A decision or promotion record with its version numbers as the target has them."""
    try:
        record = json.loads(text)
    except ValueError:
        return text
    if not isinstance(record, dict):
        return text
    for key in ("version", "previous"):
        number = record.get(key)
        if isinstance(number, int):
            record[key] = copies.numbers.get((name, number), number)
    return json.dumps(record)
