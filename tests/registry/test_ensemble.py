"""``sweep.final: ensemble``: the best trial's restarts registered as one model, their
mean prediction, exported like any other version."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sweeplab.spec import SpecError, spec_from_dict
from tests.helpers import tiny_spec
from tests.registry.test_portable import LOAD_WITHOUT_SWEEPLAB, _no_sweeplab


def test_an_ensemble_predicts_the_mean_of_its_members_and_exports(tmp_path: Path) -> None:
    import mlflow.pyfunc
    from mlflow import MlflowClient

    from sweeplab.models.build import inference_model
    from sweeplab.registry.evaluate import held_out
    from sweeplab.search import create_sweep, keys
    from sweeplab.store import Store
    from sweeplab.training.fit import prepare

    store = Store.resolve(tmp_path / "store")
    spec = tiny_spec(
        sweep={"trials": 2, "sampler": "random", "seed": 0, "restarts": 3, "final": "ensemble"},
        tracking={"register_as": "ens"},
    )
    sweep = create_sweep(spec_from_dict(spec), store=store)
    result = sweep.optimize()
    assert result.registered is not None
    client = MlflowClient(store.tracking_uri)
    version = client.get_model_version("ens", str(result.registered.version))
    assert version.tags[keys.TAG_FINAL] == "ensemble"
    fits = version.tags[keys.TAG_MEMBERS].split(",")
    assert len(fits) == 3 and all(
        client.get_run(f).data.tags.get("mlflow.parentRunId") == result.best_run_id for f in fits
    )
    assert version.tags["sweeplab.portable"] == "yes"

    # the members, rebuilt from their own checkpoints, and their mean on raw test rows
    best = result.best
    assert best is not None and best.run_id is not None
    exp = sweep.exp.with_params(best.params)
    data, module = prepare(exp, tracking_uri=store.tracking_uri)
    rows = data.split.raw(data.split.x_test)
    outputs = []
    for i in range(3):
        member = copy.deepcopy(module)
        path = sweep.tracker.download(best.run_id, f"{keys.MEMBERS}/member_{i}.pt")
        member.load_state_dict(torch.load(path, weights_only=True))
        with torch.no_grad():
            outputs.append(
                inference_model(member, exp, data.split).eval()(torch.as_tensor(rows)).numpy()
            )
    loaded = mlflow.pyfunc.load_model(version.source)  # the pt2 program, as served
    predicted = np.asarray(loaded.predict(rows))
    np.testing.assert_allclose(predicted, np.mean(outputs, axis=0), atol=1e-6)
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, atol=1e-5)  # still probabilities
    # and where sweeplab cannot be imported, with torch and mlflow alone
    assert result.registered.version == 1
    np.save(tmp_path / "ens-in.npy", rows)
    script = [sys.executable, "-c", LOAD_WITHOUT_SWEEPLAB, str(tmp_path), "ens"]
    env = _no_sweeplab(tmp_path, store)
    done = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "ens-out.npy"), predicted, atol=1e-6)
    # the version's test score is the ensemble's own, on the same held-out rows
    test = held_out(exp)
    own = float((predicted.argmax(axis=1) == test.y).mean())
    assert float(version.tags["sweeplab.test_score"]) == pytest.approx(own)
    members = [float((o.argmax(axis=1) == test.y).mean()) for o in outputs]
    assert min(members) <= own + 1e-9  # no worse than its worst member here


def test_an_ensemble_needs_restarts_and_averageable_outputs() -> None:
    with pytest.raises(SpecError, match=r"sweep\.final"):
        spec_from_dict(tiny_spec(sweep={"final": "ensemble"}))
    gan = tiny_spec(
        model={"arch": "gan"},
        objective={"metric": "val_loss", "mode": "min"},
        sweep={"final": "ensemble", "restarts": 2},
        search_space={},
    )
    with pytest.raises(SpecError, match=r"sweep\.final"):
        spec_from_dict(gan)
