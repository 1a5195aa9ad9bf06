"""Several trials in one batched fit: each member trains as its trial would alone."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from sweeplab.spec import spec_from_dict
from sweeplab.training.batched import FusedModule
from sweeplab.training.fit import fit
from sweeplab.training.fused import fit_batch
from sweeplab.training.fusing import FUSIBLE, unfused_batch
from sweeplab.training.grouped import dropout
from sweeplab.training.members import MemberDropout
from tests.helpers import tiny_spec


def _built(exp: Any) -> pl.LightningModule:
    """A freshly built module of ``exp``, as a batch takes its members."""
    from sweeplab.training.fit import prepare

    return prepare(exp)[1]


MLP = ({"arch": "mlp", "hidden": [16], "dropout": 0.0}, {"dataset": "iris"})
CNN = (
    {"arch": "cnn", "channels": [4], "head": [8], "norm": "none", "dropout": 0.0},
    {"dataset": "digits"},
)

# four trials of one shape: their own learning rates, weight decays and momentums
HYPER = [
    {"lr": 0.01, "weight_decay": 0.0, "momentum": 0.9},
    {"lr": 0.003, "weight_decay": 0.01, "momentum": 0.5},
    {"lr": 0.03, "weight_decay": 0.001, "momentum": 0.0},
    {"lr": 0.001, "weight_decay": 0.1, "momentum": 0.8},
]


def _exp(net: tuple[dict[str, Any], dict[str, Any]] = MLP, **train: Any) -> Any:
    model, data = net
    return spec_from_dict(
        tiny_spec(model=model, data=data, train={"max_epochs": 2, "seed": 0, **train})
    )


def _difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa if sa[k].is_floating_point())


def _equal_alone(exp: Any, seed: int, member: Any) -> None:
    alone = fit(exp, seed=seed)
    assert _difference(alone.module, member.module) < 1e-5
    assert (member.value, member.best_epoch, member.epochs) == pytest.approx(
        (alone.value, alone.best_epoch, alone.epochs)
    )
    assert member.test == pytest.approx(alone.test, abs=1e-5)


@pytest.mark.parametrize(
    "optimizer", ["sgd", "sgd-nesterov", "adam", "adamw", "rmsprop", "adadelta"]
)
def test_each_trial_of_a_batch_ends_with_the_weights_it_gets_alone(optimizer: str) -> None:
    name, nesterov = optimizer.removesuffix("-nesterov"), optimizer.endswith("-nesterov")
    # sgd-nesterov: Nesterov on where the trial has momentum, off in the one without
    exps = [
        _exp(optimizer=name, nesterov=nesterov and hyper["momentum"] > 0, **hyper)
        for hyper in HYPER
    ]
    assert unfused_batch(exps) is None
    results = fit_batch([(exp, [0]) for exp in exps], 0, [None] * 4)
    for exp, member in zip(exps, results, strict=True):
        _equal_alone(exp, 0, member)
    # their own hyperparameters: other weights than the first trial's
    assert min(_difference(results[0].module, r.module) for r in results[1:]) > 1e-4


def test_trials_with_restarts_and_a_cnn_train_as_alone() -> None:
    """Two trials of two restarts each (four members) on the vmap path."""
    exps = [_exp(CNN, **HYPER[0]), _exp(CNN, **HYPER[1])]
    results = fit_batch([(exps[0], [0, 1]), (exps[1], [0, 1])], 0, [None] * 4)
    for (exp, seed), member in zip(
        [(exps[0], 0), (exps[0], 1), (exps[1], 0), (exps[1], 1)], results, strict=True
    ):
        _equal_alone(exp, seed, member)


def test_a_trial_ends_at_its_own_max_epochs_and_early_stopping_ends_one_alone() -> None:
    short, long = _exp(max_epochs=3, lr=0.01), _exp(max_epochs=6, lr=0.003)
    results = fit_batch([(short, [0]), (long, [0])], 0, [None, None])
    assert [r.epochs for r in results] == [3, 6]
    _equal_alone(short, 0, results[0])
    _equal_alone(long, 0, results[1])
    # min_delta 100: no epoch improves on the first, so patience 1 ends a trial at the
    # second epoch; patience 10 outlasts max_epochs
    stop = {"monitor": "val_loss", "min_delta": 100.0}
    quick = _exp(max_epochs=6, early_stopping={**stop, "patience": 1})
    slow = _exp(max_epochs=6, lr=0.003, early_stopping={**stop, "patience": 10})
    results = fit_batch([(quick, [0]), (slow, [0])], 0, [None, None])
    assert [r.epochs for r in results] == [2, 6]
    assert results[0].stopped and not results[1].stopped
    _equal_alone(quick, 0, results[0])
    _equal_alone(slow, 0, results[1])


class _EndAt(pl.Callback):
    """Ends trial ``t`` at ``epoch``, as a pruner would."""

    def __init__(self, t: int, epoch: int) -> None:
        self.t, self.epoch = t, epoch

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        assert isinstance(module, FusedModule)
        if trainer.current_epoch == self.epoch:
            module.end(self.t)


def test_a_trial_ended_from_outside_stops_there_and_the_others_train_as_alone() -> None:
    exps = [_exp(max_epochs=5, **hyper) for hyper in HYPER[:3]]
    results = fit_batch([(e, [0]) for e in exps], 0, [None] * 3, callbacks=[_EndAt(1, 2)])
    assert [r.epochs for r in results] == [5, 3, 5]
    for exp, member in zip(exps[::2], results[::2], strict=True):
        _equal_alone(exp, 0, member)
    ended = fit(
        exps[1].model_copy(update={"train": exps[1].train.model_copy(update={"max_epochs": 3})}),
        seed=0,
    )
    assert _difference(ended.module, results[1].module) < 1e-5  # trained 3 epochs, then frozen


def test_each_member_drops_its_own_rate_in_both_batched_paths() -> None:
    torch.manual_seed(0)
    rates = torch.tensor([0.0, 0.1, 0.3, 0.5])
    out = dropout(torch.ones(4, 256, 512), rates)  # the Linear path
    zeroed = (out == 0).float().mean(dim=(1, 2))
    assert torch.allclose(zeroed, rates, atol=0.01), zeroed
    layer = MemberDropout(channels=False).train()  # the vmap path: the rate is a buffer
    from torch.func import functional_call, vmap

    def one(rate: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(layer, {"rate": rate}, (x,))
        return out

    out = vmap(one, randomness="different")(rates, torch.ones(4, 256, 512))
    zeroed = (out == 0).float().mean(dim=(1, 2))
    assert torch.allclose(zeroed, rates, atol=0.01), zeroed
    assert torch.allclose(out.mean(dim=(1, 2)), torch.ones(4), atol=0.02)  # scaled by 1/(1-p)


def test_a_batch_of_different_dropout_rates_trains_each_at_its_own() -> None:
    exps = [
        spec_from_dict(
            tiny_spec(model={**MLP[0], "dropout": p}, data=MLP[1], train={"max_epochs": 2})
        )
        for p in (0.1, 0.5)
    ]
    assert unfused_batch(exps) is None
    assert unfused_batch([_exp(), exps[0]]) is not None  # a rate of 0 builds no layer
    module = FusedModule([(e, [_built(e)]) for e in exps])
    assert module.rate_names == ["net.backbone.2.rate"]
    assert module.rate_0.tolist() == pytest.approx([0.1, 0.5])


def test_unfused_batch_names_the_field_that_is_not_fusible() -> None:
    assert "train.lr" in FUSIBLE and "model.hidden" not in FUSIBLE
    wide = spec_from_dict(tiny_spec(model={**MLP[0], "hidden": [32]}, data=MLP[1]))
    why = unfused_batch([_exp(), wide])
    assert why == "trial 1 differs from trial 0 in model.hidden, which is not fusible"
    cosine = {"name": "cosine"}
    why = unfused_batch([_exp(schedule=cosine), _exp(schedule=cosine, max_epochs=3)])
    assert why is not None and "train.max_epochs" in why  # the cosine shape follows it
    assert unfused_batch([_exp(), _exp(max_epochs=3, lr=0.1, l1=0.01)]) is None


def test_batch_norm_statistics_of_an_ended_trial_stay_as_they_were() -> None:
    """The members of an ended trial leave the batch: its batch norm's running
    statistics are not moved by the epochs the others go on training. A refit keeps
    each member's last weights, so the statistics compared are those at the end of the
    fit (biases just before batch norm are left out, as in test_fused's batch-norm test)."""
    norm = ({**MLP[0], "norm": "batch"}, MLP[1])
    short, long = _exp(norm, max_epochs=2), _exp(norm, max_epochs=4, lr=0.003)
    results = fit_batch([(short, [0]), (long, [0])], 0, [None, None], refit=True)
    for exp, member in zip((short, long), results, strict=True):
        alone = fit(exp, seed=0, refit=True)
        mine, theirs = alone.module.state_dict(), member.module.state_dict()
        for key in (k for k in mine if k.endswith("weight") or k.endswith("running_var")):
            assert (mine[key] - theirs[key]).abs().max() < 1e-5, key
    assert [r.epochs for r in results] == [2, 4]


def test_each_trial_keeps_its_own_l1_penalty_and_label_smoothing() -> None:
    exps = [
        _exp(l1=0.0, label_smoothing=0.0),
        _exp(l1=0.01, label_smoothing=0.0),
        _exp(l1=0.0, label_smoothing=0.2),
        _exp(l1=0.003, label_smoothing=0.1),
    ]
    assert unfused_batch(exps) is None
    results = fit_batch([(e, [0]) for e in exps], 0, [None] * 4)
    for exp, member in zip(exps, results, strict=True):
        _equal_alone(exp, 0, member)
