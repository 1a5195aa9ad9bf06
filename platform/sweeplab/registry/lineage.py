"""Lineage: the tags every registered version carries, so a model says where it came from.

    sweeplab.sweep, sweeplab.study, sweeplab.trial_number   the search that produced it
    sweeplab.run_id                                         its MLflow run
    sweeplab.spec                                           the resolved spec (JSON)
    sweeplab.data_hash, sweeplab.test_metric/_score         its held-out test split and score
    sweeplab.git_commit                                     the working tree's commit, if any
    sweeplab.registered_by / _at                            who registered it, and when

Promotion adds ``sweeplab.promoted.<alias>`` (who, when, forced or not) on the version,
and one ``sweeplab.history.<time>`` tag per decision on the registered model.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

import numpy as np

PREFIX = "sweeplab."
TAG_SPEC = "sweeplab.spec"
TAG_DATA_HASH = "sweeplab.data_hash"
TAG_TEST_METRIC = "sweeplab.test_metric"
TAG_TEST_SCORE = "sweeplab.test_score"
TAG_OUTPUT = "sweeplab.output"
TAG_LABELS = "sweeplab.labels"  # in a classifier's MLmodel metadata: its classes' names
TAG_INPUT = "sweeplab.input"  # in a text model's MLmodel metadata: "text" (strings in)
TAG_PORTABLE = "sweeplab.portable"  # "yes", or why the version needs sweeplab to load
HISTORY = "sweeplab.history."
TAG_RUN_ID = "sweeplab.run_id"  # the version's MLflow run
PROMOTED = "sweeplab.promoted."  # + alias: who promoted the version to it, and when


def data_hash(x: Any, y: np.ndarray, chunk: int = 4096) -> str:
    """A short SHA-256 of the test rows as float32 and of the labels (their bytes, dtype
    and shape). ``x``: an array, or rows read when indexed (a streamed folder's
    ``ImageFiles``), hashed ``chunk`` rows at a time: the same digest either way."""
    digest = hashlib.sha256()
    digest.update(f"float32{tuple(x.shape)}".encode())
    for start in range(0, len(x), chunk):
        digest.update(np.asarray(x[start : start + chunk], np.float32).tobytes())
    labels = np.ascontiguousarray(y)
    digest.update(f"{labels.dtype}{labels.shape}".encode())
    digest.update(labels.tobytes())
    return digest.hexdigest()[:16]


def git_commit(cwd: str | None = None) -> str:
    """HEAD of the git working tree around ``cwd`` (``+dirty`` with local changes); "" if none."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER", "unknown")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def lineage_tags(
    *,
    spec: Mapping[str, Any],
    run_id: str,
    test: tuple[str, str, float],
    output: str,
    sweep: str | None = None,
    study: str | None = None,
    trial: int | None = None,
) -> dict[str, str]:
    """The tags of a new version. ``test`` is (data hash, metric name, score)."""
    hash_, metric, score = test
    tags = {
        TAG_RUN_ID: run_id,
        TAG_SPEC: json.dumps(spec, sort_keys=True),
        TAG_DATA_HASH: hash_,
        TAG_TEST_METRIC: metric,
        TAG_TEST_SCORE: repr(float(score)),
        TAG_OUTPUT: output,
        "sweeplab.git_commit": git_commit(),
        "sweeplab.registered_by": who(),
        "sweeplab.registered_at": now(),
    }
    if sweep is not None:
        tags["sweeplab.sweep"] = sweep
        tags["sweeplab.study"] = study or sweep
    if trial is not None:
        tags["sweeplab.trial_number"] = str(trial)
    return tags
