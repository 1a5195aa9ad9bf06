"""Mid-trial checkpoints (``train.checkpoint_every``): a fit goes on from its last
checkpoint with the weights it would have had, and a trial whose worker was killed goes
on from there under ``resume``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweeplab.spec import SpecError, spec_from_dict
from sweeplab.store import Store
from sweeplab.training.checkpoints import ResumePoint, checkpoint_epoch
from tests.battery import load, popen, wait_for_study
from tests.helpers import sweeplab, tiny_spec


class _Dies(pl.Callback):
    """Stops the fit at the start of epoch ``epoch``, as a kill would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def _saver(tmp_path: Path, kept: dict[int, Path], every: int, held: bool = False) -> ResumePoint:
    """Checkpoints every ``every`` epochs into ``kept``; ``held``: a held save at every
    epoch's end too."""

    def keep(path: Path, epoch: int) -> None:
        kept[epoch] = tmp_path / f"epoch-{epoch}.ckpt"
        shutil.copy(path, kept[epoch])

    hold = {"hold_seconds": 0.0, "hold_cost": 0.0} if held else {}
    return ResumePoint(every_epochs=every, every_seconds=None, keep=keep, **hold)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    first, second = a.state_dict(), b.state_dict()
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=1e-5)


SPEC = tiny_spec(
    model={"arch": "mlp", "hidden": [16], "dropout": 0.0},
    train={"max_epochs": 10, "batch_size": 16, "schedule": {"name": "cosine"}},
)


def test_a_fit_resumed_from_its_checkpoint_ends_with_the_uninterrupted_fit_s_weights(
    tmp_path: Path,
) -> None:
    from sweeplab.training.fit import fit

    exp = spec_from_dict(SPEC)
    whole = fit(exp, test=False)
    kept: dict[int, Path] = {}
    with pytest.raises(KeyboardInterrupt):
        fit(exp, test=False, callbacks=[_saver(tmp_path, kept, every=2), _Dies(6)])
    assert sorted(kept) == [1, 3, 5]  # every 2 epochs, until the kill in epoch 6
    assert checkpoint_epoch(kept[5]) == 5
    resumed = fit(exp, test=False, ckpt_path=str(kept[5]), callbacks=[_saver(tmp_path, {}, 2)])
    _same_weights(whole.module, resumed.module)  # the best weights, and so the last ones
    assert (resumed.value, resumed.best_epoch, resumed.epochs) == (
        whole.value,
        whole.best_epoch,
        whole.epochs,
    )


def test_an_interrupted_fit_hands_over_its_held_save_and_goes_on_from_it(
    tmp_path: Path,
) -> None:
    """No checkpoint is due (every 100 epochs), but a Ctrl-C or SIGTERM in epoch 6 hands
    over the fit as it was at the end of epoch 5, which a resumed fit goes on from to the
    uninterrupted fit's weights. An error raised by the fit hands over nothing."""
    from sweeplab.training.fit import fit

    exp = spec_from_dict(SPEC)
    whole = fit(exp, test=False)
    kept: dict[int, Path] = {}

    with pytest.raises(KeyboardInterrupt):
        fit(exp, test=False, callbacks=[_saver(tmp_path, kept, 100, held=True), _Dies(6)])
    assert sorted(kept) == [5] and checkpoint_epoch(kept[5]) == 5
    again = [_saver(tmp_path, {}, 100, held=True)]
    resumed = fit(exp, test=False, ckpt_path=str(kept[5]), callbacks=again)
    _same_weights(whole.module, resumed.module)
    assert (resumed.value, resumed.epochs) == (whole.value, whole.epochs)

    class _Fails(_Dies):
        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if trainer.current_epoch == self.epoch:
                raise ValueError("not an interrupt")

    kept.clear()
    with pytest.raises(ValueError, match="not an interrupt"):
        fit(exp, test=False, callbacks=[_saver(tmp_path, kept, 100, held=True), _Fails(6)])
    assert kept == {}


def test_fused_members_resume_with_their_own_dropout_draws_and_batches(tmp_path: Path) -> None:
    """Dropout on: the random generators travel in the checkpoint, so even the members'
    dropout masks after the resume are the uninterrupted fit's."""
    from sweeplab.training.fused import fit_fused

    exp = spec_from_dict({**SPEC, "model": {"arch": "mlp", "hidden": [16], "dropout": 0.3}})
    whole = fit_fused(exp, [0, 1], 0, [None, None])
    kept: dict[int, Path] = {}
    with pytest.raises(KeyboardInterrupt):
        fit_fused(exp, [0, 1], 0, [None, None], callbacks=[_saver(tmp_path, kept, 1), _Dies(7)])
    again = [_saver(tmp_path, {}, 1)]  # as a trial's fits: the generators are its state
    resumed = fit_fused(exp, [0, 1], 0, [None, None], callbacks=again, ckpt_path=str(kept[6]))
    for alone, again in zip(whole, resumed, strict=True):
        _same_weights(alone.module, again.module)
        assert (alone.value, alone.best_epoch) == (again.value, again.best_epoch)


def test_checkpoint_every_takes_epochs_a_time_or_null() -> None:
    assert spec_from_dict(tiny_spec()).train.checkpoint_period == (None, 300.0)  # the default
    period = spec_from_dict(tiny_spec(train={"checkpoint_every": "2h"})).train.checkpoint_period
    assert period == (None, 7200.0)
    assert spec_from_dict(tiny_spec(train={"checkpoint_every": 3})).train.checkpoint_period == (
        3,
        None,
    )
    for wrong in (0, "5 minutes", -1, True):
        with pytest.raises(SpecError, match=r"train\.checkpoint_every: must be a number of epochs"):
            spec_from_dict(tiny_spec(train={"checkpoint_every": wrong}))


# a sweep killed mid-trial and resumed in processes of their own (20-30 s): CI runs it
# with the distributed tests
@pytest.mark.distributed
def test_kill_9_in_epoch_6_of_10_then_resume_goes_on_from_the_checkpoint(
    store: Store, write_spec: Any
) -> None:
    spec = tiny_spec(
        name="resumable",
        model={"arch": "mlp", "hidden": [64], "dropout": 0.0},
        data={"dataset": "digits"},
        train={"max_epochs": 10, "batch_size": 8, "checkpoint_every": 1},
        search_space={},
        sweep={"trials": 1, "restarts": 2},  # fused, as the default spec trains
        tracking={"experiment": "resumable"},
    )
    proc = popen("sweep", str(write_spec(spec)), "--store", str(store.root), "--no-smoke", "-q")
    study = wait_for_study(store, "resumable", proc)
    client = None  # made once the sweep's process has made MLflow's tables
    deadline = time.monotonic() + 120
    # kill -9 once epoch 6 is reported: epoch 5's checkpoint is in the trial's run by then
    # (a checkpoint is sent at the end of its epoch, after that epoch's report)
    while True:
        trials = study.get_trials(deepcopy=False)
        run_id = trials[0].user_attrs.get("mlflow_run_id") if trials else None
        if run_id and client is None:
            client = MlflowClient(store.tracking_uri)
        listed = client.list_artifacts(run_id, "resume") if client and run_id else []
        if listed and 6 <= max(trials[0].intermediate_values, default=-1) < 8:
            break
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the trial never reached epoch 6"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.time() * 1000

    out = sweeplab("resume", "resumable", "--store", str(store.root), "-q")
    assert out.returncode == 0, out.stderr
    assert client is not None
    dead, retry = load(store, "resumable").get_trials()
    assert dead.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["sweeplab.retry_of"] == 0
    went_on = retry.user_attrs["sweeplab.resumed_at"]
    assert 6 <= went_on <= 8  # after the checkpoint of epoch 5 (or a later one), not 0
    status = sweeplab("status", "resumable", "--store", str(store.root), "-f", "json")
    reasons = [r["reason"] for r in json.loads(status.stdout)["rows"]]
    assert f"went on from #0's checkpoint at epoch {went_on}" in reasons[1]
    # the pruner saw the whole curve: the earlier epochs reported again, each once
    assert sorted(retry.intermediate_values) == list(range(10))
    # each member's curve holds each epoch once; those before the kill were copied over,
    # and the resumed fit trained from epoch 5 or later, not from 0
    nested = client.search_runs(
        [client.get_run(retry.user_attrs["mlflow_run_id"]).info.experiment_id],
        f"tags.mlflow.parentRunId = '{retry.user_attrs['mlflow_run_id']}'",
    )
    assert len(nested) == 2
    for run in nested:
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert sorted(m.step for m in history) == list(range(10))
        before = [m.step for m in history if m.timestamp < killed_at]
        assert before == list(range(went_on))  # copied over; the rest trained after
        seconds = client.get_metric_history(run.info.run_id, "epoch_seconds")
        assert sorted(m.step for m in seconds) == list(range(10))
    statuses = [r.info.status for r in client.search_runs([nested[0].info.experiment_id])]
    assert "RUNNING" not in statuses

    # the weights equal those of the same two members trained without a kill
    from sweeplab.training.fused import fit_fused

    exp = spec_from_dict(spec)
    alone = fit_fused(exp, [0, 1], 0, [None, None])
    best = max(alone, key=lambda r: r.value)
    local = client.download_artifacts(
        retry.user_attrs["mlflow_run_id"], "checkpoint", str(store.root)
    )
    saved = torch.load(Path(local, "model_state.pt"), weights_only=True)
    for key, value in best.module.state_dict().items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=1e-5)
    assert retry.value == pytest.approx(best.value)  # restart_aggregate: best
    assert retry.user_attrs["restart_values"] == pytest.approx([r.value for r in alone])
