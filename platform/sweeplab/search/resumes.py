"""A trial that goes on from the checkpoints of its earlier try (``train.checkpoint_every``).

A trial whose worker died, or that Ctrl-C, SIGTERM or ``stop --now`` interrupted, is
queued again as a new trial with the same params (``claims.retry``: its
``sweeplab.retry_of`` names the earlier try). While it trained, each of its fits saved a
checkpoint now and then into its run (``resume/<unit>.ckpt``, ``training.checkpoints``).
The new trial, when it starts:

- downloads them and logs them into its own run at once (a second death resumes from
  them too);
- tells Optuna the earlier try's intermediate values up to the checkpoint's epoch, so a
  pruner judges the whole curve;
- copies each fit's metric points up to that epoch from the earlier try's runs into its
  own, so its curve holds each epoch once (the earlier run keeps what it had: KILLED);
- and each fit goes on from its checkpoint (``search.fits``).

A trial that failed on its own (an exception, ``sweep.max_retries``) starts again from
epoch 0: its checkpoints would lead to the same failure.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from sweeplab.search.keys import (
    ATTR_DEATHS,
    ATTR_RESUMED_AT,
    ATTR_RETRY_OF,
    ATTR_RUN,
    SUMMARY_METRICS,
    TAG_FOLD,
    TAG_RESTART,
)
from sweeplab.search.restarts import members
from sweeplab.search.sweep import Sweep
from sweeplab.spec import Experiment
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.checkpoints import checkpoint_epoch

RESUME = "resume"  # the artifact folder of a trial's run that holds its checkpoints


def carried_key(key: str) -> bool:
    """Whether a fit's metric ``key`` is copied into the run of the try that goes on."""
    return key not in SUMMARY_METRICS and not key.startswith(("system/", "test_"))


def fused_unit(fold: int) -> str:
    """The checkpoint's name of a fold's restarts trained fused."""
    return f"fold-{fold}"


def fit_unit(index: int) -> str:
    """The checkpoint's name of the trial's fit number ``index``, trained alone."""
    return f"fit-{index}"


@dataclass(frozen=True)
class Carried:
    """What a trial takes over from its earlier try."""

    run_id: str  # the earlier try's trial run
    files: dict[str, Path]  # unit (fused_unit, fit_unit) → its last checkpoint
    epochs: dict[str, int]  # unit → the epoch that checkpoint was saved at the end of
    runs: dict[str, str] = field(default_factory=dict)  # fit label → its run there
    intermediate: dict[int, float] = field(default_factory=dict)  # what it told Optuna

    def run_of(self, label: str) -> str:
        """The earlier try's run of fit ``label`` (the trial run for a lone fit)."""
        return self.runs.get(label, self.run_id)

    @property
    def epoch(self) -> int:
        """The epoch the trial's first fit goes on at (0: it starts again): the first fit
        is the one a pruner watches."""
        return self.epochs.get(fused_unit(0), self.epochs.get(fit_unit(0), -1)) + 1

    def report(self, trial: optuna.Trial) -> None:
        """Tell Optuna the earlier try's intermediate values of the epochs before
        ``epoch``, and note on ``trial`` where it went on (``status`` says so)."""
        for step, value in sorted(self.intermediate.items()):
            if step < self.epoch:
                trial.report(value, step)
        trial.set_user_attr(ATTR_RESUMED_AT, self.epoch)


@contextlib.contextmanager
def carried(sweep: Sweep, trial: optuna.Trial) -> Iterator[Carried | None]:
    """What ``trial`` takes over from the try it repeats, while the block runs (the
    downloaded checkpoints are removed after it); None when it repeats none, when that
    try failed on its own, or when it saved no checkpoint."""
    earlier = _earlier(sweep, trial)
    run_id = None if earlier is None else earlier.user_attrs.get(ATTR_RUN)
    if earlier is None or not run_id:
        yield None
        return
    client = sweep.tracker.client
    if not client.list_artifacts(run_id, RESUME):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="sweeplab-resume-") as tmp:
        folder = Path(client.download_artifacts(run_id, RESUME, tmp))
        files = {path.stem: path for path in sorted(folder.glob("*.ckpt"))}
        epochs = {key: checkpoint_epoch(path) for key, path in files.items()}
        runs = _fit_runs(sweep.tracker, sweep.exp, run_id)
        yield Carried(run_id, files, epochs, runs, dict(earlier.intermediate_values))


def _earlier(sweep: Sweep, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """The try ``trial`` repeats, if it repeats one because that try's worker died or
    was interrupted."""
    number = trial.user_attrs.get(ATTR_RETRY_OF)
    if number is None:
        return None
    earlier = sweep.study.get_trials(deepcopy=False)[int(number)]
    died = int(trial.user_attrs.get(ATTR_DEATHS, 0)) > int(earlier.user_attrs.get(ATTR_DEATHS, 0))
    return earlier if died else None


def _fit_runs(tracker: Tracker, exp: Experiment, run_id: str) -> dict[str, str]:
    """The nested run of each fit of the earlier try, by the fit's label."""
    labels = {(str(fold), str(restart)): label for label, fold, restart in members(exp)}
    runs = tracker.search(f"tags.`mlflow.parentRunId` = '{run_id}'")
    out = {}
    for run in runs:
        where = (run.data.tags.get(TAG_FOLD), run.data.tags.get(TAG_RESTART))
        if where in labels:
            out[labels[where]] = run.info.run_id
    return out
