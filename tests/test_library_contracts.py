"""The private parts of Optuna and Ray that sweeplab still uses, each where no public API
serves (the comment at each use says why). Each test fails when the part disappears or
changes shape, so a library upgrade that breaks one shows here first, by name."""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import optuna
import pytest

from sweeplab.search.study import open_storage


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    return optuna.create_study(storage=storage, study_name="contract")


def test_trial_ids_are_the_storages_ids(study: optuna.Study) -> None:
    """``Trial._trial_id`` and ``FrozenTrial._trial_id`` (claims, worker, searcher, pbt)."""
    storage = study._storage
    study_id = storage.get_study_id_from_name("contract")
    trial = study.ask()
    assert isinstance(trial._trial_id, int)
    assert trial._trial_id == storage.get_trial_id_from_study_id_trial_number(study_id, 0)
    frozen = study.get_trials(deepcopy=False)[0]
    assert frozen._trial_id == trial._trial_id
    assert optuna.Trial(study, trial._trial_id).number == 0  # what Ray workers rebuild


def test_a_studys_id_and_storage(study: optuna.Study, tmp_path: Path) -> None:
    """``Study._study_id`` (claims, pbt) and ``Study._storage`` (the Ray searcher)."""
    assert study._study_id == study._storage.get_study_id_from_name("contract")
    loaded = optuna.load_study(study_name="contract", storage=study._storage)
    assert loaded._storage is study._storage


def test_heartbeat_storage_and_its_stale_trial_query(tmp_path: Path) -> None:
    """``optuna.storages._heartbeat.BaseHeartbeat`` and ``_get_stale_trial_ids`` (claims):
    the trials that missed their heartbeats, asked before they are failed."""
    from optuna.storages._heartbeat import BaseHeartbeat

    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'beats.db'}", heartbeat_interval=1, grace_period=1
    )
    assert isinstance(storage, BaseHeartbeat)
    assert isinstance(open_storage(f"sqlite:///{tmp_path / 'o.db'}"), BaseHeartbeat)
    assert list(inspect.signature(storage._get_stale_trial_ids).parameters) == ["study_id"]
    study = optuna.create_study(storage=storage)
    alive, dead = study.ask(), study.ask()
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.2)
    storage.record_heartbeat(alive._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == [dead._trial_id]


def test_ray_optuna_search_keeps_its_optuna_trials(study: optuna.Study) -> None:
    """``OptunaSearch._ot_trials`` (the sweep's searcher): Tune's trial id → Optuna trial."""
    from ray.tune.search.optuna import OptunaSearch

    def space(trial: optuna.Trial) -> dict[str, float]:
        return {"x": trial.suggest_float("x", 0.0, 1.0)}

    search = OptunaSearch(
        space=space,
        metric="v",
        mode="max",
        study_name="contract",
        storage=study._storage,
    )
    config = search.suggest("tune-1")
    assert config is not None and set(config) == {"x"}
    trial = search._ot_trials["tune-1"]
    assert isinstance(trial, optuna.Trial)
    assert trial.params["x"] == config["x"]
    assert trial.study._storage is study._storage
