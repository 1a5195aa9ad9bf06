"""Publish a trained model: log it (with its split's standardization inside) and register
a version with its lineage, for a sweep's best trial or a ``sweeplab train`` run."""

from __future__ import annotations

import math
from typing import Any

from sweeplab.data.split import Split
from sweeplab.models.base import InferenceModel
from sweeplab.models.build import example_input, inference_model
from sweeplab.models.ensemble import EnsembleModel
from sweeplab.registry.evaluate import held_out, score
from sweeplab.registry.lineage import TAG_PORTABLE, lineage_tags
from sweeplab.registry.register import Logged, log_model, register
from sweeplab.search.keys import (
    CHECKPOINT,
    MEMBERS,
    TAG_FINAL,
    TAG_MEMBERS,
    TAG_REGISTERED,
    TAG_VALUE,
)
from sweeplab.search.results import Registered, SweepResult
from sweeplab.search.sweep import Sweep
from sweeplab.spec import Experiment
from sweeplab.tracking.tracker import Tracker


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
    latent vectors for a generator).
    """
    import torch

    model = model.eval()
    if model.output == "samples":
        latent = example_input(module, split).shape[1]
        example = torch.randn(5, latent, generator=torch.Generator().manual_seed(0)).numpy()
    else:
        example = split.raw(split.x_test[:5])
    return log_model(tracker, run_id, model, example)


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
    with): found if registered already, else rebuilt from its checkpoint, logged and
    registered with its lineage."""
    import torch

    from sweeplab.registry.models import client_for
    from sweeplab.training.fit import prepare

    best, tracker = result.best, sweep.tracker
    if best is None or best.run_id is None:
        raise LookupError(f"sweep {result.name!r} has no completed trial to register")
    client = client_for(tracker.store.tracking_uri)
    for found in client.search_model_versions(f"run_id = '{best.run_id}'"):
        if found.name == name:
            return Registered(name=name, version=int(found.version))
    resolved = sweep.exp.with_params(best.params)
    data, module = prepare(resolved, tracking_uri=tracker.store.tracking_uri)
    state = torch.load(tracker.download(best.run_id, CHECKPOINT), weights_only=True)
    module.load_state_dict(state)
    final: dict[str, Any] = {TAG_FINAL: resolved.sweep.final}
    if resolved.sweep.final == "ensemble":
        model: InferenceModel | EnsembleModel
        model, fits = _ensemble(tracker, best.run_id, module, resolved, data.split)
        final[TAG_MEMBERS] = ",".join(fits)
    else:
        model = inference_model(module, resolved, data.split)
        final.update(best.test)  # the trial's own test metrics are this model's
    logged = log_inference_model(tracker, best.run_id, model, module, data.split)
    lineage = version_tags(model, resolved, best.run_id, sweep=result.name, trial=best.number)
    tags = {**lineage, TAG_VALUE: best.value, **final, **portability(logged)}
    version = register(tracker, name, logged.uri, best.run_id, tags)
    tracker.set_tags(result.parent_run_id, {TAG_REGISTERED: f"{name}/{version}"})
    return Registered(name=name, version=version)


def _ensemble(
    tracker: Tracker, run_id: str, module: Any, exp: Experiment, split: Split
) -> tuple[EnsembleModel, list[str]]:
    """The trial's fits as one model (their mean output), and their runs' ids."""
    import copy

    import torch

    names = sorted(a.path for a in tracker.client.list_artifacts(run_id, MEMBERS))
    members = []
    for name in names:
        member = copy.deepcopy(module)
        member.load_state_dict(torch.load(tracker.download(run_id, name), weights_only=True))
        members.append(inference_model(member, exp, split))
    fits = tracker.search(
        f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'FINISHED'"
    )
    return EnsembleModel(members), sorted(r.info.run_id for r in fits)
