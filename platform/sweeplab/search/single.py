"""train_once: one tracked run of a spec, no search (``sweeplab train``)."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from sweeplab.models.build import inference_model
from sweeplab.registry.register import register
from sweeplab.search.fits import NoHooks
from sweeplab.search.keys import TAG_KIND
from sweeplab.search.publish import log_trained_model, portability, version_tags
from sweeplab.search.trial import TrialOutcome, run_trial
from sweeplab.spec import Experiment
from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker, flatten


@dataclass
class TrainResult:
    outcome: TrialOutcome
    experiment: str
    model_uri: str
    registered: tuple[str, int] | None


def train_once(exp: Experiment, store: Store, *, register_as: str | None = None) -> TrainResult:
    """Train ``exp`` as written, log curves, metrics and the model; register if asked."""
    from sweeplab.training.fit import check_inputs

    store.check()
    check_inputs(exp, store.tracking_uri)  # unreadable data, a missing source: nothing created
    store.prepare()
    tracker = Tracker(store, exp.experiment_name)
    spec = exp.model_dump(mode="json")
    params = flatten({k: v for k, v in spec.items() if k not in ("search_space", "sweep")})
    outcome = run_trial(
        exp,
        tracker=tracker,
        name=f"{exp.name}-train",
        params=params,
        parent=None,
        hooks=NoHooks(),
        tags={TAG_KIND: "train"},
    )
    tracker.log_text(outcome.run_id, yaml.safe_dump(spec, sort_keys=False), "spec.yaml")
    best = outcome.best
    logged = log_trained_model(tracker, outcome.run_id, best.module, exp, best.data.split)
    registered = None
    if register_as:
        model = inference_model(best.module, exp, best.data.split)
        tags = {**version_tags(model, exp, outcome.run_id), **outcome.test}
        version = register(
            tracker, register_as, logged.uri, outcome.run_id, {**tags, **portability(logged)}
        )
        registered = (register_as, version)
    return TrainResult(outcome, tracker.experiment, logged.uri, registered)
