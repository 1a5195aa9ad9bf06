"""The private parts of Optuna, Ray, Lightning and torch that sweeplab uses, all in
``sweeplab.compat``: one test per function there, each failing when the library removes
or reshapes that part, so a library upgrade that breaks one shows here first, by name."""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import optuna
import pytest

from sweeplab import compat
from sweeplab.search.storage import open_storage


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    return optuna.create_study(storage=storage, study_name="contract")


def test_every_compat_function_has_a_contract_test() -> None:
    functions = {
        n
        for n, f in vars(compat).items()
        if inspect.isfunction(f) and f.__module__ == compat.__name__
    }
    tested = {n.removeprefix("test_") for n in globals() if n.startswith("test_")}
    assert functions <= tested, f"no contract test for {sorted(functions - tested)}"


def test_trial_id(study: optuna.Study) -> None:
    """``Trial._trial_id`` and ``FrozenTrial._trial_id``: the storage's ids."""
    storage = compat.study_storage(study)
    trial = study.ask()
    assert compat.trial_id(trial) == storage.get_trial_id_from_study_id_trial_number(
        compat.study_id(study), 0
    )
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.trial_id(frozen) == compat.trial_id(trial)
    assert optuna.Trial(study, compat.trial_id(trial)).number == 0  # what Ray workers rebuild


def test_study_id(study: optuna.Study) -> None:
    """``Study._study_id``: the id the storage's calls take."""
    assert compat.study_id(study) == compat.study_storage(study).get_study_id_from_name("contract")


def test_study_storage(study: optuna.Study) -> None:
    """``Study._storage``: the storage a study was opened on (the Ray searcher's)."""
    loaded = optuna.load_study(study_name="contract", storage=compat.study_storage(study))
    assert compat.study_storage(loaded) is compat.study_storage(study)


def test_records_heartbeats(tmp_path: Path) -> None:
    """``optuna.storages._heartbeat.BaseHeartbeat``: a storage that records heartbeats."""
    assert compat.records_heartbeats(open_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    plain = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'plain.db'}")
    assert not compat.records_heartbeats(plain)
    assert not compat.records_heartbeats(optuna.storages.InMemoryStorage())


def test_stale_trial_ids(tmp_path: Path) -> None:
    """``_get_stale_trial_ids``: the trials that missed their heartbeats, asked before
    they are failed."""
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'beats.db'}", heartbeat_interval=1, grace_period=1
    )
    assert list(inspect.signature(storage._get_stale_trial_ids).parameters) == ["study_id"]
    study = optuna.create_study(storage=storage)
    alive, dead = study.ask(), study.ask()
    storage.record_heartbeat(compat.trial_id(dead))
    time.sleep(2.2)
    storage.record_heartbeat(compat.trial_id(alive))
    assert compat.stale_trial_ids(storage, study) == {compat.trial_id(dead)}


def test_search_trial(study: optuna.Study) -> None:
    """``OptunaSearch._ot_trials``: Tune's trial id → the Optuna trial it asked for."""
    from ray.tune.search.optuna import OptunaSearch

    def space(trial: optuna.Trial) -> dict[str, float]:
        return {"x": trial.suggest_float("x", 0.0, 1.0)}

    search = OptunaSearch(
        space=space,
        metric="v",
        mode="max",
        study_name="contract",
        storage=compat.study_storage(study),
    )
    config = search.suggest("tune-1")
    assert config is not None and set(config) == {"x"}
    trial = compat.search_trial(search, "tune-1")
    assert isinstance(trial, optuna.Trial)
    assert trial.params["x"] == config["x"]
    assert compat.study_storage(trial.study) is compat.study_storage(study)
    assert compat.search_trial(search, "never-asked") is None


def test_configured_optimizers() -> None:
    """Lightning's ``_init_optimizers_and_lr_schedulers``: every shape
    ``configure_optimizers`` may return, parsed into optimizers."""
    import lightning.pytorch as pl
    import torch

    class Two(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False  # two optimizers: as a GAN has
            self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

        def configure_optimizers(self) -> object:
            first = torch.optim.SGD(self.a.parameters(), lr=0.1)
            second = torch.optim.Adam(self.b.parameters(), lr=0.01)
            return [first, second], [torch.optim.lr_scheduler.StepLR(first, 1)]

    module = Two()
    module.trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    optimizers = compat.configured_optimizers(module)
    assert [type(o).__name__ for o in optimizers] == ["SGD", "Adam"]


def test_early_stopping_check() -> None:
    """Lightning's ``EarlyStopping._evaluate_stopping_criteria``: asked epoch by epoch,
    it counts the epochs without improvement as the callback does and stops at its
    patience, with its message."""
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    stopper = EarlyStopping(monitor="val_loss", patience=2, mode="min", check_finite=True)
    said = [compat.early_stopping_check(stopper, torch.tensor(v)) for v in (1.0, 0.5, 0.6, 0.7)]
    assert [stop for stop, _ in said] == [False, False, False, True]
    assert "did not improve in the last 2 records" in str(said[-1][1])
    assert compat.early_stopping_check(stopper, torch.tensor(float("nan")))[0]


def test_chained_schedulers() -> None:
    """torch's ``SequentialLR._schedulers``: the schedulers it chains, each with its own
    base rates."""
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.5, total_iters=2)
    decay = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    chain = torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, decay], milestones=[2])
    assert compat.chained_schedulers(chain) == [chain, warm, decay]
    assert all(hasattr(s, "base_lrs") for s in compat.chained_schedulers(chain)[1:])
    assert compat.chained_schedulers(decay) == [decay]


def test_system_metrics_monitor(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("machine"))
    monitor = compat.system_metrics_monitor(run.info.run_id, uri, 0.2)
    monitor.start()
    time.sleep(1.5)
    monitor.finish()
    metrics = client.get_run(run.info.run_id).data.metrics
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100
    assert metrics["system/system_memory_usage_megabytes"] > 0


def test_mlflow_engines(tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from sqlalchemy import text

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    engines = compat.mlflow_engines(MlflowClient(uri, registry_uri=uri))
    assert engines and all(str(e.url) == uri for e in engines)
    with engines[0].connect() as conn:  # the engine MLflow writes its runs through
        assert conn.execute(text("SELECT count(*) FROM experiments")).scalar() == 1
    server = "http://127.0.0.1:1"  # a tracking server's client has none (nothing is sent)
    assert compat.mlflow_engines(MlflowClient(server, registry_uri=server)) == []


def test_requirements_checked_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib_metadata
    import mlflow.pytorch
    import torch
    from mlflow.utils import requirements_utils as ru

    monkeypatch.setattr(ru, "_MODULES_TO_PACKAGES", None)  # as in a fresh process
    monkeypatch.setattr(ru, "_PACKAGES_TO_MODULES", None)
    scans = []
    every = importlib_metadata.packages_distributions
    monkeypatch.setattr(
        ru.importlib_metadata, "packages_distributions", lambda: scans.append(1) or every()
    )
    pins = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    with compat.requirements_checked_by_name(["torch", "mlflow"]):
        model, folder = torch.nn.Linear(2, 1), str(tmp_path / "m")
        mlflow.pytorch.save_model(
            model, folder, serialization_format="pickle", pip_requirements=pins
        )
        mismatch = ru._check_requirement_satisfied("torch==0.0.1")  # still checked
    assert scans == []  # no scan of every installed distribution
    assert set(pins) <= set((tmp_path / "m" / "requirements.txt").read_text().split())
    assert mismatch is not None and mismatch.installed_version == torch.__version__
    assert ru._MODULES_TO_PACKAGES is None  # built whole again by whatever needs it next
    ru.warn_dependency_requirement_mismatches(pins)
    assert scans == [1] and "numpy" in ru._MODULES_TO_PACKAGES


def test_create_mlflow_tables(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import create_engine, inspect, text

    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    engine = create_engine(url)
    compat.create_mlflow_tables(engine)
    assert {"experiments", "runs", "registered_models"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:  # no experiment yet: each store creates its own default
        assert conn.execute(text("SELECT count(*) FROM experiments")).scalar() == 0
    engine.dispose()
    with caplog.at_level(logging.INFO, logger="mlflow.store.db.utils"):
        store = SqlAlchemyStore(url, (tmp_path / "artifacts").as_uri())
    assert "Creating initial MLflow database tables" not in caplog.text  # none left to make
    default = store.get_experiment("0")
    assert default.artifact_location == (tmp_path / "artifacts" / "0").as_uri()
