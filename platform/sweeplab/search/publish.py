"""Publish a trained model: log it (with its split's standardization inside) and register
a version with its lineage, for a sweep's best trial or a ``sweeplab train`` run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sweeplab.data.split import Split
from sweeplab.models.base import InferenceModel
from sweeplab.models.build import example_input, inference_model
from sweeplab.models.ensemble import EnsembleModel
from sweeplab.registry.evaluate import held_out, score
from sweeplab.registry.lineage import TAG_PORTABLE, TAG_TEST_METRIC, TAG_TEST_SCORE, lineage_tags
from sweeplab.registry.register import Logged, log_model, register
from sweeplab.search.ensembles import top_ensemble, trial_ensemble
from sweeplab.search.keys import (
    ATTR_REGISTERED_SCORE,
    BEST_EPOCH,
    CHECKPOINT,
    TAG_FINAL,
    TAG_REFIT_EPOCHS,
    TAG_REFIT_RUN,
    TAG_REGISTERED,
    TAG_SWEEP,
    TAG_TRIAL,
    TAG_VALUE,
)
from sweeplab.search.results import Registered, SweepResult, Trial
from sweeplab.search.sweep import Sweep
from sweeplab.spec import Experiment
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.fusing import unfused

# the held-out score's name (registry.evaluate) → the name a trial's test metric has
TRIAL_METRIC = {"test_accuracy": "test_acc", "test_rmse": "test_rmse"}


def log_trained_model(
    tracker: Tracker, run_id: str, module: Any, exp: Experiment, split: Split
) -> Logged:
    """Wrap a trained module for serving (its split's standardization inside) and log it."""
    return log_inference_model(tracker, run_id, inference_model(module, exp, split), module, split)


def log_inference_model(
    tracker: Tracker, run_id: str, model: InferenceModel | EnsembleModel, module: Any, split: Split
) -> Logged:
    """Log ``model`` (an inference model, or an ensemble of them, of ``module``'s kind).

    The input example is five raw test rows, as a client would send them (five
    latent vectors for a generator; a text's five test texts).
    """
    import torch

    model = model.eval()
    if model.output == "samples":
        latent = example_input(module, split).shape[1]
        example = torch.randn(5, latent, generator=torch.Generator().manual_seed(0)).numpy()
    else:
        example = split.raw(split.x_test[:5])
    return log_model(tracker, run_id, model, example, texts=split.test_texts[:5])


def portability(logged: Logged) -> dict[str, str]:
    """The version's tag that says whether it loads without sweeplab."""
    return {TAG_PORTABLE: "yes" if logged.portable is None else f"no: {logged.portable}"}


def version_tags(
    model: InferenceModel | EnsembleModel,
    exp: Experiment,
    run_id: str,
    *,
    sweep: str | None = None,
    trial: int | None = None,
) -> dict[str, str]:
    """Lineage tags for a version of ``model`` (what is served: an inference model or an
    ensemble), with its score on the held-out test split."""
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


def register_best(sweep: Sweep, result: SweepResult, name: str) -> Registered:
    """The version of ``name`` holding ``result``'s best trial (or the trial it was read
    with): found if registered already, else built as ``sweep.final`` says (the trial's
    checkpoint, its fits' mean, or its configuration trained again), logged and
    registered with its lineage. The version's run is the trial's either way."""
    from sweeplab.registry.models import client_for

    best, tracker = result.best, sweep.tracker
    if best is None or best.run_id is None:
        raise LookupError(f"sweep {result.name!r} has no completed trial to register")
    client = client_for(tracker.store.tracking_uri)
    for found in client.search_model_versions(f"run_id = '{best.run_id}'"):
        if found.name == name:
            return Registered(name=name, version=int(found.version))
    resolved = sweep.exp.with_params(best.params)
    built = _refit(tracker, result, best, resolved) if resolved.final == "refit" else None
    built = built or _from_checkpoints(sweep, best, resolved)
    logged = log_inference_model(tracker, built.run_id, built.model, built.module, built.split)
    lineage = version_tags(
        built.model, built.exp, best.run_id, sweep=result.name, trial=best.number
    )
    tags = {**lineage, TAG_VALUE: best.value, **built.tags, **portability(logged)}
    held = TRIAL_METRIC.get(lineage.get(TAG_TEST_METRIC, ""))
    if held is not None and isinstance(built.model, EnsembleModel):
        tags[held] = lineage[TAG_TEST_SCORE]  # its test metric under the trial's name for it
        if TAG_REFIT_RUN in built.tags:  # and in the run that trained it
            tracker.write(built.run_id, {held: float(lineage[TAG_TEST_SCORE])})
    version = register(tracker, name, logged.uri, best.run_id, tags)
    tracker.set_tags(result.parent_run_id, {TAG_REGISTERED: f"{name}/{version}"})
    if held is not None:
        score_of = float(lineage[TAG_TEST_SCORE])
        sweep.study.set_user_attr(ATTR_REGISTERED_SCORE, {"metric": held, "value": score_of})
    return Registered(name=name, version=version)


@dataclass(frozen=True, kw_only=True)
class _Built:
    """What ``register_best`` logs: the model served, the module and split it came from,
    the spec it was trained with, the run it is logged in, and its own tags."""

    model: InferenceModel | EnsembleModel
    module: Any
    split: Split
    exp: Experiment
    run_id: str
    tags: dict[str, Any]


def _from_checkpoints(sweep: Sweep, best: Trial, exp: Experiment) -> _Built:
    """The best trial's weights (``best``), its fits' mean (``ensemble``), or the top
    trials' fits weighed on the validation split (``top_ensemble``)."""
    import torch

    from sweeplab.training.fit import prepare

    tracker = sweep.tracker
    run_id = str(best.run_id)  # register_best checked it has one
    data, module = prepare(exp, tracking_uri=tracker.store.tracking_uri)
    state = torch.load(tracker.download(run_id, CHECKPOINT), weights_only=True)
    module.load_state_dict(state)
    tags: dict[str, Any] = {TAG_FINAL: exp.final}
    model: InferenceModel | EnsembleModel
    if exp.final == "ensemble":
        model, members = trial_ensemble(tracker, run_id, module, exp, data.split)
        tags.update(members)
    elif exp.final == "top_ensemble":
        model, members = top_ensemble(sweep, best, exp, data.split)
        tags.update(members)
    else:
        model = inference_model(module, exp, data.split)
        tags.update(best.test)  # the trial's own test metrics are this model's
    return _Built(model=model, module=module, split=data.split, exp=exp, run_id=run_id, tags=tags)


def _refit(tracker: Tracker, result: SweepResult, best: Trial, exp: Experiment) -> _Built:
    """The best trial's configuration trained again on train + validation for the epochs
    its best fit needed (its best epoch, counted from 1), with no early stopping: the
    validation rows are training rows now, so they choose nothing. As many fits as the
    trial had restarts (fused where they can be), their mean served where there are
    several; in a run of its own under the parent run, tagged with the trial's."""
    metrics = tracker.client.get_run(str(best.run_id)).data.metrics
    epochs = int(metrics[BEST_EPOCH]) + 1 if BEST_EPOCH in metrics else int(best.epochs or 1)
    again = exp.with_params({"train.max_epochs": epochs, "train.early_stopping": None})
    tags = {TAG_SWEEP: result.name, TAG_REFIT_EPOCHS: epochs}
    run_id = tracker.start_run(
        f"refit of trial {best.number}",
        parent=result.parent_run_id,
        tags={**tags, TAG_TRIAL: best.number},
    )
    try:
        fits = _refit_fits(again, tracker.store.tracking_uri)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    first = fits[0]
    own = {TAG_FINAL: "refit", TAG_REFIT_RUN: run_id, TAG_REFIT_EPOCHS: epochs}
    model: InferenceModel | EnsembleModel
    if len(fits) == 1:
        model = inference_model(first.module, again, first.data.split)
        own.update(first.test)
        tracker.write(run_id, {"epochs": float(first.epochs), **first.test})
    else:  # its test metric is the ensemble's own: register_best adds it
        members = [inference_model(f.module, again, f.data.split) for f in fits]
        model = EnsembleModel(members)
        tracker.write(run_id, {"epochs": float(first.epochs), "fits": float(len(fits))})
    tracker.end_run(run_id)
    return _Built(
        model=model,
        module=first.module,
        split=first.data.split,
        exp=again,
        run_id=run_id,
        tags=own,
    )


def _refit_fits(exp: Experiment, tracking_uri: str) -> list[Any]:
    """``exp``'s restarts trained on train + validation: fused where they can be (the
    members that diverged left out), else one after another."""
    from sweeplab.training.fit import FitResult, fit
    from sweeplab.training.fused import fit_fused

    seeds = [exp.train.seed + restart for restart in range(exp.sweep.restarts)]
    if unfused(exp) is None:
        found = fit_fused(exp, seeds, 0, [None] * len(seeds), tracking_uri=tracking_uri, refit=True)
        return [f for f in found if isinstance(f, FitResult)]
    return [fit(exp, seed=seed, refit=True, tracking_uri=tracking_uri) for seed in seeds]
