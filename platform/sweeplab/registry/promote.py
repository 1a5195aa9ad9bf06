"""Guarded promotion: move an alias to a version only if it scores no worse than the holder.

    candidate's spec (tag) → its test split, rebuilt and checked against the recorded hash
    candidate and current holder scored on those same rows (``evaluate.score``)
    worse → refused (PromotionRefused, both scores), unless ``force``
    alias set; the version gets ``sweeplab.promoted.<alias>``; the model one history event

Every decision (promoted, forced, refused) is one ``sweeplab.history.<time>`` tag on the
registered model. On a SQLite or PostgreSQL store, promotions of one model take a lock, so two
racing promotions run one after the other: the second is guarded against the first.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sweeplab.locks import DatabaseLock
from sweeplab.registry.evaluate import Score, held_out, score
from sweeplab.registry.lineage import HISTORY, PROMOTED, TAG_DATA_HASH, TAG_SPEC, now, who
from sweeplab.registry.models import ModelRef, load_torch, resolve


class GuardError(Exception):
    """The guard cannot compare the two versions (no spec, data changed, a generator...)."""


@dataclass
class Decision:
    name: str
    alias: str
    version: int
    previous: int | None  # the alias's holder before
    outcome: str  # promoted, forced, refused, unchanged
    candidate: Score | None = None
    holder: Score | None = None
    note: str = ""
    force: bool = False  # --force was given
    by: str = ""
    at: str = ""

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("candidate", "holder"):
            value = getattr(self, key)
            out[key] = None if value is None else {"metric": value.metric, "value": value.value}
        return out


class PromotionRefused(Exception):
    def __init__(self, decision: Decision) -> None:
        c, h = decision.candidate, decision.holder
        super().__init__(
            f"refused: version {decision.version} scores {c} on its test split, worse than "
            f"{h} of version {decision.previous} (@{decision.alias}); "
            "--force promotes it anyway (and is recorded)"
        )
        self.decision = decision


def promote(
    tracking_uri: str, name: str, version: int, alias: str, *, force: bool = False
) -> Decision:
    """Point ``name@alias`` at ``version`` if it is no worse than the holder (or ``force``)."""
    from sweeplab.registry.models import client_for

    client = client_for(tracking_uri)
    # MLflow has no compare-and-set for aliases: on a SQLite or PostgreSQL store one
    # promotion of a model runs at a time; through a tracking server the last write wins
    # (both decisions are still in the history)
    with DatabaseLock(tracking_uri, "promote", name).held():
        candidate = resolve(client, ModelRef(name, version=str(version)))
        previous = _holder(client, name, alias)
        decision = Decision(
            name, alias, version, previous, "promoted", force=force, by=who(), at=now()
        )
        if previous == version:
            decision.outcome = "unchanged"
            return decision
        try:
            _judge(tracking_uri, client, decision, candidate)
        except GuardError as exc:
            if not force:
                raise
            decision.outcome, decision.note = "forced", f"not compared: {exc}"
        if decision.outcome == "refused":
            if not force:
                _history(client, decision)
                raise PromotionRefused(decision)
            decision.outcome, decision.note = "forced", "worse than the holder"
        client.set_registered_model_alias(name, alias, str(version))
        client.set_model_version_tag(
            name,
            str(version),
            f"{PROMOTED}{alias}",
            json.dumps(
                {
                    "by": decision.by,
                    "at": decision.at,
                    "forced": decision.outcome == "forced",
                    "previous": previous,
                }
            ),
        )
        _history(client, decision)
        return decision


def _holder(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _judge(tracking_uri: str, client: MlflowClient, decision: Decision, candidate: Any) -> None:
    """Score the candidate (and the holder) on the candidate's test split; may refuse."""
    from sweeplab.spec import spec_from_dict

    spec = (candidate.tags or {}).get(TAG_SPEC)
    if not spec:
        raise GuardError(
            f"version {decision.version} has no {TAG_SPEC} tag (not registered by sweeplab): "
            "its test split is unknown"
        )
    test = held_out(spec_from_dict(json.loads(spec)))
    recorded = (candidate.tags or {}).get(TAG_DATA_HASH)
    if recorded and recorded != test.hash:
        raise GuardError(
            f"the test data of version {decision.version} changed since registration "
            f"(hash {recorded} then, {test.hash} now)"
        )
    decision.candidate = score(load_torch(tracking_uri, candidate), test)
    if decision.candidate is None:
        raise GuardError(
            f"version {decision.version} is a generator: there is no test split to score it on"
        )
    if decision.previous is None:
        return
    holder = client.get_model_version(decision.name, str(decision.previous))
    try:
        decision.holder = score(load_torch(tracking_uri, holder), test)
    except RuntimeError as exc:  # another input width or output
        raise GuardError(
            f"version {decision.previous} cannot be scored on the test split of version "
            f"{decision.version}: {str(exc).splitlines()[0]}"
        ) from None
    if decision.holder is None or decision.holder.metric != decision.candidate.metric:
        raise GuardError(
            f"versions {decision.version} and {decision.previous} are scored differently "
            f"({decision.candidate.metric} vs {decision.holder and decision.holder.metric})"
        )
    if (holder.tags or {}).get(TAG_DATA_HASH) not in (None, test.hash):
        decision.note = f"version {decision.previous} was registered with another test split"
    if decision.candidate.worse_than(decision.holder):
        decision.outcome = "refused"


def _history(client: MlflowClient, decision: Decision) -> None:
    key = f"{HISTORY}{time.time_ns()}"
    client.set_registered_model_tag(decision.name, key, json.dumps(decision.record()))
