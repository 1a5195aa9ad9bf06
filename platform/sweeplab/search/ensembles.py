"""The fits a sweep registers as one model (``sweep.final``): a trial's restarts
(``ensemble``), or the fits of the top trials weighed by greedy selection on the
validation split (``top_ensemble``). Each is an ``EnsembleModel`` of inference models
loaded from the trials' stored weights (``checkpoint/members/``, else the trial's best
weights), with the tags that say which fits it holds."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sweeplab.data.split import Split
from sweeplab.models.base import InferenceModel
from sweeplab.models.build import inference_model
from sweeplab.models.ensemble import EnsembleModel, select
from sweeplab.registry.evaluate import predict
from sweeplab.search import ranking
from sweeplab.search.keys import CHECKPOINT, MEMBERS, TAG_MEMBERS, TAG_WEIGHTS
from sweeplab.search.results import Trial
from sweeplab.search.sweep import Sweep
from sweeplab.spec import Experiment
from sweeplab.tracking.tracker import Tracker

# the trials whose fits top_ensemble chooses from, best first: 10 of a 24-trial sweep
# covers the near-ties at the top (bench/final_model.py) and loads in a second or two
TOP_TRIALS = 10


@dataclass(frozen=True)
class Candidate:
    """One stored fit: the trial it belongs to, its file, and the model it serves."""

    trial: Trial
    name: str  # member_<i>, or best for a trial's best weights alone
    model: InferenceModel

    @property
    def label(self) -> str:
        return f"#{self.trial.number} {self.name}"


def trial_ensemble(
    tracker: Tracker, run_id: str, module: Any, exp: Experiment, split: Split
) -> tuple[EnsembleModel, dict[str, str]]:
    """A trial's fits as one model (their mean output), and the tag naming their runs."""
    states = _stored(tracker, run_id)
    members = [inference_model(_loaded(module, state), exp, split) for _, state in states]
    fits = tracker.search(
        f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'FINISHED'"
    )
    ids = sorted(r.info.run_id for r in fits)
    return EnsembleModel(members), {TAG_MEMBERS: ",".join(ids)}


def top_ensemble(
    sweep: Sweep, best: Trial, exp: Experiment, split: Split
) -> tuple[EnsembleModel, dict[str, str]]:
    """The fits of the top trials (``best`` first, then ``ranking.top``) weighed by
    greedy selection on ``split``'s validation rows, and the tags naming the trials'
    runs and each chosen fit's weight. Trials on other data (a searched data field) are
    left out: their validation rows are not these."""
    from sweeplab.training.fit import prepare

    tracker = sweep.tracker
    others = [sweep.trial(t) for t in ranking.top(sweep.study, TOP_TRIALS)]
    trials = [best, *(t for t in others if t.number != best.number)][:TOP_TRIALS]
    candidates = []
    for trial in trials:
        own = sweep.exp.with_params(trial.params)
        if trial.run_id is None or own.data != exp.data:
            continue
        _, module = prepare(own, tracking_uri=tracker.store.tracking_uri)
        for name, state in _stored(tracker, trial.run_id):
            served = inference_model(_loaded(module, state), own, split)
            candidates.append(Candidate(trial, name, served))
    x, y = split.raw(split.x_val), split.units(split.y_val)
    output = candidates[0].model.output
    counts = select([predict(c.model, x) for c in candidates], y, output=output)
    chosen = [(c, n) for c, n in zip(candidates, counts, strict=True) if n]
    model = EnsembleModel([c.model for c, _ in chosen], weights=[n for _, n in chosen])
    runs = dict.fromkeys(str(c.trial.run_id) for c, _ in chosen)
    share = sum(counts)
    weights = ", ".join(f"{c.label}: {n / share:.3g}" for c, n in chosen)
    return model, {TAG_MEMBERS: ",".join(runs), TAG_WEIGHTS: weights}


def _stored(tracker: Tracker, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """A trial's stored fits, as (name, state dict): every fit's best weights where the
    trial kept them, else its best fit's alone."""
    import torch

    paths = sorted(a.path for a in tracker.client.list_artifacts(run_id, MEMBERS))
    named = [(p.rsplit("/", 1)[-1].removesuffix(".pt"), p) for p in paths] or [("best", CHECKPOINT)]
    return [
        (name, torch.load(tracker.download(run_id, path), weights_only=True))
        for name, path in named
    ]


def _loaded(module: Any, state: dict[str, Any]) -> Any:
    member = copy.deepcopy(module)
    member.load_state_dict(state)
    return member
