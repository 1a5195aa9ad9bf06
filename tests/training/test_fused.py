"""Fused restarts: k restarts trained in lockstep as one batched model (torch.func)."""

from __future__ import annotations

import math
import statistics
from typing import Any

import lightning.pytorch as pl
import optuna
import pytest
import torch
from mlflow import MlflowClient

from sweeplab.search import run_sweep
from sweeplab.spec import spec_from_dict
from sweeplab.training.fit import TrainingDiverged, fit
from sweeplab.training.fused import FusedModule, fit_fused
from sweeplab.training.fusing import unfused
from sweeplab.training.grouped import dropout
from tests.helpers import all_runs, tiny_spec

MODELS = {
    "mlp": ({"arch": "mlp", "hidden": [16]}, {"dataset": "iris"}),
    "cnn": (
        {"arch": "cnn", "channels": [4], "head": [8], "norm": "none", "dropout": 0.0},
        {"dataset": "digits"},
    ),
}


def _spec(arch: str, **train: Any) -> Any:
    model, data = MODELS[arch]
    return spec_from_dict(
        tiny_spec(model=model, data=data, train={"max_epochs": 2, **train}, sweep={"restarts": 2})
    )


def _largest_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(
        (sa[k] - sb[k]).abs().max().item() for k in sa if k in sb and sa[k].is_floating_point()
    )


@pytest.mark.parametrize("arch", list(MODELS))
def test_a_fused_member_equals_the_same_restart_trained_alone(arch: str) -> None:
    exp = _spec(arch, seed=0)
    assert unfused(exp) is None
    fused = fit_fused(exp, [0, 1], 0, [None, None])
    for seed, member in zip([0, 1], fused, strict=True):
        alone = fit(exp, seed=seed)
        assert _largest_difference(alone.module, member.module) < 1e-5
        assert (member.value, member.best_epoch) == pytest.approx((alone.value, alone.best_epoch))
        assert member.test == pytest.approx(alone.test, abs=1e-5)
    # another seed: another initialization and batch order, so other weights
    assert _largest_difference(fused[0].module, fused[1].module) > 1e-3


class _PoisonMember(pl.Callback):
    """Member 1's weights become NaN before training: its loss is NaN from the start."""

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        assert isinstance(module, FusedModule)
        with torch.no_grad():
            module.stacked[0][1].fill_(math.nan)


def test_a_member_that_diverges_is_dropped_and_the_others_train_as_alone() -> None:
    exp = _spec("mlp", seed=0)
    results = fit_fused(exp, [0, 1], 0, [None, None], callbacks=[_PoisonMember()])
    assert isinstance(results[1], TrainingDiverged) and "val_loss became nan" in str(results[1])
    assert _largest_difference(fit(exp, seed=0).module, results[0].module) < 1e-5


def test_validate_says_whether_restarts_train_fused(tmp_path: Any, write_spec: Any) -> None:
    from tests.helpers import sweeplab

    fused = write_spec(tiny_spec(sweep={"restarts": 3}), "fused.yaml")
    said = sweeplab("validate", str(fused))
    assert said.returncode == 0 and "restarts: 3 per trial, fused" in said.stdout
    alone = write_spec(tiny_spec(model={"arch": "rnn"}, sweep={"restarts": 2}), "rnn.yaml")
    said = sweeplab("validate", str(alone))
    assert "one after another (the rnn architecture is not batched" in said.stdout


def test_batch_norm_members_keep_their_own_statistics_and_train_as_alone() -> None:
    """A bias just before batch norm has no effect and a zero gradient up to rounding,
    which Adam's normalization turns into steps of any sign: those biases (and the
    running means that include them) are not compared; every weight is."""
    exp = spec_from_dict(
        tiny_spec(
            model={"arch": "mlp", "hidden": [16], "norm": "batch"},
            train={"max_epochs": 2, "seed": 0},
            sweep={"restarts": 2},
        )
    )
    fused = fit_fused(exp, [0, 1], 0, [None, None])
    for seed, member in zip([0, 1], fused, strict=True):
        alone = fit(exp, seed=seed)
        mine, theirs = alone.module.state_dict(), member.module.state_dict()
        for key in (k for k in mine if k.endswith("weight") or k.endswith("running_var")):
            assert (mine[key] - theirs[key]).abs().max() < 1e-5, key
    stats = [m.module.state_dict()["net.backbone.1.running_var"] for m in fused]
    assert (stats[0] - stats[1]).abs().max() > 1e-3  # each member its own statistics


def test_grouped_dropout_zeroes_p_of_the_values_keeps_the_mean_and_draws_per_member() -> None:
    """The batched path's own dropout does what nn.Dropout does in training."""
    torch.manual_seed(0)
    x = torch.ones(2, 256, 512)
    out = dropout(x, 0.2)
    zeroed = (out == 0).float().mean().item()
    assert abs(zeroed - 0.2) < 0.01, zeroed
    assert set(out.unique().tolist()) == {0.0, 1.25}  # kept values scaled by 1 / (1 - p)
    assert abs(out.mean().item() - 1.0) < 0.02
    assert not torch.equal(out[0] == 0, out[1] == 0)  # each member its own mask
    assert torch.equal(dropout(x, 0.0), x) and not dropout(x, 1.0).any()


def test_unfused_says_why() -> None:
    assert unfused(_spec("mlp")) is None
    rnn = spec_from_dict(tiny_spec(model={"arch": "rnn"}, sweep={"restarts": 2}))
    assert "not batched" in str(unfused(rnn))
    plateau = _spec("mlp", schedule={"name": "plateau"})
    assert "plateau" in str(unfused(plateau))


def test_the_pruner_is_told_the_mean_of_the_restarts(store: Any) -> None:
    """Each epoch's intermediate value, what Optuna's pruner judges, is the restarts'
    mean: the trial run's val_acc curve, the mean of its nested runs' curves."""
    exp = spec_from_dict(
        tiny_spec(
            train={"max_epochs": 3},
            sweep={"trials": 1, "restarts": 3, "pruner": "median"},
            tracking={"experiment": "told-mean"},
        )
    )
    result = run_sweep(exp, store)
    trial = optuna.load_study(study_name=result.name, storage=store.storage_url).trials[0]
    client = MlflowClient(store.tracking_uri)
    nested = [r for r in all_runs(store, "told-mean") if "sweeplab.restart" in r.data.tags]
    assert len(nested) == 3
    curves = [
        {m.step: m.value for m in client.get_metric_history(r.info.run_id, "val_acc")}
        for r in nested
    ]
    assert all("test_acc" in r.data.metrics for r in nested)  # each member's own test
    assert sorted(trial.intermediate_values) == [0, 1, 2]
    for epoch, told in trial.intermediate_values.items():
        assert told == pytest.approx(statistics.fmean(c[epoch] for c in curves), abs=1e-6)


@pytest.mark.parametrize("short_last", [True, False])
def test_lockstep_batches_are_each_members_own_loaders_batches(short_last: bool) -> None:
    """Fused members' training batches come from one gather, each member's what its own
    DataLoader gives a fit, epoch after epoch (Lightning takes len(loader) batches of a
    new iterator each epoch), with a short last batch or none."""
    import itertools

    from sweeplab.data.module import ArrayDataModule
    from sweeplab.training.fused import LockstepBatches

    exp, seeds = _spec("mlp"), (0, 1, 7)
    n = len(ArrayDataModule(exp.data, 32).train_rows()[1])
    size = 32 if short_last else next(d for d in range(5, n) if n % d == 0)
    assert (n % size != 0) is short_last
    datas = [ArrayDataModule(exp.data, size, seed=seed) for seed in seeds]
    x, y = datas[0].train_rows()
    lockstep = LockstepBatches(
        torch.as_tensor(x), torch.as_tensor(y), [d.shuffler() for d in datas], size
    )
    loaders = [ArrayDataModule(exp.data, size, seed=seed).train_dataloader() for seed in seeds]
    assert len(lockstep) == len(loaders[0]) == math.ceil(n / size)
    for _ in range(3):  # each epoch a new order
        fused = list(itertools.islice(iter(lockstep), len(lockstep)))
        for m, loader in enumerate(loaders):
            alone = list(itertools.islice(iter(loader), len(loader)))
            for (fx, fy), (ax, ay) in zip((b[m] for b in fused), alone, strict=True):
                assert torch.equal(fx, ax) and torch.equal(fy, ay)
    assert len(fused[-1][0][0]) == n - size * (len(fused) - 1)
    assert not torch.equal(fused[0][0][0], fused[0][1][0])  # members differ in order
