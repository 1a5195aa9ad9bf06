"""``sweep.final: ensemble``: the best trial's restarts registered as one model, their
mean prediction, exported like any other version."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sweeplab.spec import SpecError, spec_from_dict
from tests.helpers import tiny_spec
from tests.registry.test_portable import LOAD_WITHOUT_SWEEPLAB, _no_sweeplab


def _registered(tmp_path: Path, name: str, **sections: Any) -> tuple[Any, Any, Any, Any]:
    """A tiny sweep of ``sections`` run to its end in a store of its own, registering
    ``name``: its store, sweep, result and registered version."""
    from mlflow import MlflowClient

    from sweeplab.search import create_sweep
    from sweeplab.store import Store

    store = Store.resolve(tmp_path / "store")
    spec = tiny_spec(tracking={"register_as": name}, **sections)
    sweep = create_sweep(spec_from_dict(spec), store=store)
    result = sweep.optimize()
    assert result.registered is not None
    version = MlflowClient(store.tracking_uri).get_model_version(
        name, str(result.registered.version)
    )
    return store, sweep, result, version


def test_an_ensemble_predicts_the_mean_of_its_members_and_exports(tmp_path: Path) -> None:
    import mlflow.pyfunc
    from mlflow import MlflowClient

    from sweeplab.models.build import inference_model
    from sweeplab.registry.evaluate import held_out
    from sweeplab.search import keys
    from sweeplab.training.fit import prepare

    store, sweep, result, version = _registered(
        tmp_path,
        "ens",
        sweep={"trials": 2, "sampler": "random", "seed": 0, "restarts": 3, "final": "ensemble"},
    )
    client = MlflowClient(store.tracking_uri)
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
    pbt = tiny_spec(sweep={"final": "refit", "backend": "ray", "scheduler": "pbt"})
    with pytest.raises(SpecError, match=r"sweep\.final: 'refit' trains one configuration"):
        spec_from_dict(pbt)


def test_a_refit_trains_on_train_and_validation_never_on_test() -> None:
    from sweeplab.data.module import ArrayDataModule

    exp = spec_from_dict(tiny_spec(data={"dataset": "digits"}))
    data = ArrayDataModule(exp.data, 64, refit=True)
    seen = {row.tobytes() for x, _ in data.train_dataloader() for row in x.numpy()}
    s = data.split
    assert len(seen) == len({r.tobytes() for r in np.concatenate([s.x_train, s.x_val])})
    assert all(r.tobytes() in seen for r in s.x_val)
    assert not any(r.tobytes() in seen for r in s.x_test)
    plain = ArrayDataModule(exp.data, 64)
    assert not any(
        r.tobytes() in {v.tobytes() for v in s.x_val}
        for x, _ in plain.train_dataloader()
        for r in x.numpy()
    )


@pytest.mark.parametrize("restarts", [1, 2])
def test_a_refit_is_registered_with_its_epochs_and_its_own_test_score(
    tmp_path: Path, restarts: int
) -> None:
    import mlflow.pyfunc
    from mlflow import MlflowClient

    from sweeplab.registry.evaluate import held_out
    from sweeplab.search import keys

    store, sweep, result, version = _registered(
        tmp_path,
        "again",
        train={"max_epochs": 6},
        sweep={"trials": 2, "sampler": "random", "seed": 0, "final": "refit", "restarts": restarts},
    )
    assert result.registered is not None and result.best_run_id is not None
    client = MlflowClient(store.tracking_uri)
    assert version.tags[keys.TAG_FINAL] == "refit"
    assert version.run_id == result.best_run_id  # registered again: the same version
    best_epoch = client.get_run(result.best_run_id).data.metrics[keys.BEST_EPOCH]
    epochs = int(version.tags[keys.TAG_REFIT_EPOCHS])
    assert epochs == int(best_epoch) + 1
    refit = client.get_run(version.tags[keys.TAG_REFIT_RUN])
    assert refit.data.tags["mlflow.parentRunId"] == result.parent_run_id
    assert refit.data.metrics["epochs"] == epochs  # trained for exactly that many
    assert refit.info.status == "FINISHED"
    loaded = mlflow.pyfunc.load_model(version.source)
    best = result.best
    assert best is not None
    test = held_out(sweep.exp.with_params(best.params))
    own = float((np.asarray(loaded.predict(test.x)).argmax(axis=1) == test.y).mean())
    assert float(version.tags["sweeplab.test_score"]) == pytest.approx(own)
    assert float(version.tags["test_acc"]) == pytest.approx(own, abs=1e-6)
    assert refit.data.metrics["test_acc"] == pytest.approx(own, abs=1e-6)
    # as many fits as the trial had restarts (fused), their mean served
    assert refit.data.metrics.get("fits", 1.0) == restarts
    assert sweep.register_best() == result.registered  # found, not trained again


def test_fused_restarts_refit_on_train_and_validation_and_keep_their_last_weights() -> None:
    from sweeplab.training.fit import FitResult
    from sweeplab.training.fused import fit_fused

    exp = spec_from_dict(tiny_spec(train={"max_epochs": 3}, sweep={"restarts": 2}))
    fits = fit_fused(exp, [0, 1], 0, [None, None], refit=True)
    assert all(isinstance(f, FitResult) for f in fits)
    for f in fits:
        n = len(f.data.split.y_train) + len(f.data.split.y_val)
        assert f.data.refit and len(f.data.train_dataloader().dataset) == n  # type: ignore[arg-type]
        assert f.epochs == 3
    a, b = (f.module.state_dict() for f in fits)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # two fits, not one copied


def test_auto_registers_an_ensemble_where_a_trial_has_fits_to_average() -> None:
    assert spec_from_dict(tiny_spec(sweep={"restarts": 2})).final == "ensemble"
    assert spec_from_dict(tiny_spec(data={"dataset": "iris", "folds": 3})).final == "ensemble"
    assert spec_from_dict(tiny_spec()).final == "best"
    autoencoder = tiny_spec(
        model={"arch": "autoencoder", "kind": "dense"},
        objective={"metric": "val_loss", "mode": "min"},
        sweep={"restarts": 2},
    )
    assert spec_from_dict(autoencoder).final == "best"
    assert spec_from_dict(tiny_spec(sweep={"restarts": 2, "final": "best"})).final == "best"


def test_a_top_ensemble_weighs_the_top_trials_fits_and_serves_their_weighted_mean(
    tmp_path: Path,
) -> None:
    import mlflow.pyfunc

    from sweeplab.models.build import inference_model
    from sweeplab.models.ensemble import select
    from sweeplab.registry.evaluate import predict
    from sweeplab.registry.promote import promote
    from sweeplab.search import keys, ranking
    from sweeplab.training.fit import prepare

    store, sweep, result, version = _registered(
        tmp_path,
        "top",
        sweep={"trials": 3, "sampler": "random", "seed": 1, "restarts": 2, "final": "top_ensemble"},
    )
    assert version.tags[keys.TAG_FINAL] == "top_ensemble"
    runs = {t.run_id: t for t in map(sweep.trial, sweep.study.trials)}
    assert set(version.tags[keys.TAG_MEMBERS].split(",")) <= set(runs)

    # every trial's fits rebuilt by hand, the best trial's first, then as ranked
    others = [sweep.trial(t) for t in ranking.top(sweep.study, 10)]
    ranked = [result.best, *(t for t in others if t.number != result.best_trial)]
    assert len(ranked) == 3
    models, labels = [], []
    for trial in ranked:
        assert trial is not None and trial.run_id is not None
        exp = sweep.exp.with_params(trial.params)
        data, module = prepare(exp, tracking_uri=store.tracking_uri)
        for i in range(2):
            member = copy.deepcopy(module)
            path = sweep.tracker.download(trial.run_id, f"{keys.MEMBERS}/member_{i}.pt")
            member.load_state_dict(torch.load(path, weights_only=True))
            models.append(inference_model(member, exp, data.split))
            labels.append(f"#{trial.number} member_{i}")
    split = data.split
    val = [predict(m, split.raw(split.x_val)) for m in models]
    counts = select(val, split.y_val, output="probabilities")
    shares = {label: n / sum(counts) for label, n in zip(labels, counts, strict=True) if n}
    tagged = dict(w.split(": ") for w in version.tags[keys.TAG_WEIGHTS].split(", "))
    assert tagged.keys() == shares.keys()
    assert [float(v) for v in tagged.values()] == pytest.approx(list(shares.values()), abs=1e-3)

    # served: the weighted mean of the chosen fits on raw test rows
    rows = split.raw(split.x_test)
    test = sum(
        shares.get(label, 0.0) * predict(m, rows) for label, m in zip(labels, models, strict=True)
    )
    served = np.asarray(mlflow.pyfunc.load_model(version.source).predict(rows))
    np.testing.assert_allclose(served, test, atol=1e-5)
    assert float(version.tags["sweeplab.test_score"]) == pytest.approx(
        float((served.argmax(axis=1) == split.y_test).mean())
    )
    # the promotion guard scores the ensemble itself, as the version's own test score says
    decision = promote(store.tracking_uri, "top", 1, "champion")
    assert decision.candidate is not None and decision.outcome == "promoted"
    assert decision.candidate.value == pytest.approx(float(version.tags["sweeplab.test_score"]))


def test_a_top_ensemble_needs_one_validation_split_and_averageable_outputs() -> None:
    iris = tiny_spec(data={"dataset": "iris", "folds": 3}, sweep={"final": "top_ensemble"})
    with pytest.raises(SpecError, match=r"sweep\.final: 'top_ensemble' weighs fits"):
        spec_from_dict(iris)
    autoencoder = tiny_spec(
        model={"arch": "autoencoder"},
        objective={"metric": "val_loss", "mode": "min"},
        sweep={"final": "top_ensemble"},
        search_space={},
    )
    with pytest.raises(SpecError, match=r"sweep\.final: 'top_ensemble' averages"):
        spec_from_dict(autoencoder)
