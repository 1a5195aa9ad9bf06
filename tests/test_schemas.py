"""A new store's SQLite databases come from empty ones made once per library version
(``sweeplab.schemas``), and a database that exists is never replaced."""

from __future__ import annotations

import logging
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import optuna
import pytest

from sweeplab import schemas
from sweeplab.search.storage import open_storage
from sweeplab.store import Store


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SWEEPLAB_CACHE", str(folder))
    return folder


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_new_store_gets_its_databases_made_once_and_copied(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = Store.resolve(tmp_path / "one")
    first.prepare()
    templates = sorted(p.name for p in (cache / "schemas").iterdir())
    assert [t.split("-")[0] for t in templates] == ["mlflow", "optuna"]
    made = {p: p.stat().st_mtime_ns for p in (cache / "schemas").iterdir()}
    assert {"experiments", "runs"} <= _tables(tmp_path / "one" / "mlflow.db")
    assert {"studies", "trials"} <= _tables(tmp_path / "one" / "optuna.db")

    second = Store.resolve(tmp_path / "two")
    second.prepare()
    assert {p: p.stat().st_mtime_ns for p in (cache / "schemas").iterdir()} == made  # reused

    from mlflow import MlflowClient

    with caplog.at_level(logging.INFO, logger="mlflow.store.db.utils"):
        client = MlflowClient(second.tracking_uri)
        default = client.get_experiment("0")
    assert "Creating initial MLflow database tables" not in caplog.text  # none made again
    made_by_mlflow = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment("0")
    assert default.artifact_location == made_by_mlflow.artifact_location  # as MLflow makes it
    run = client.create_run(client.create_experiment("e", second.artifact_location))
    client.log_metric(run.info.run_id, "val_acc", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"val_acc": 0.5}
    study = optuna.create_study(storage=open_storage(second.storage_url), study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2


def test_a_database_that_exists_is_never_replaced(tmp_path: Path, cache: Path) -> None:
    store = Store.resolve(tmp_path / "store")
    store.root.mkdir()
    db = store.root / "optuna.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE mine (x)")
    before = db.read_bytes()
    store.prepare()
    assert db.read_bytes() == before
    assert schemas.seed(db, schemas.OPTUNA) is False
    assert {"experiments"} <= _tables(store.root / "mlflow.db")  # the other one is made


def test_a_cache_that_cannot_be_written_leaves_the_tables_to_the_libraries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("SWEEPLAB_CACHE", str(tmp_path / "file" / "cache"))
    store = Store.resolve(tmp_path / "store")
    store.prepare()  # no error: the databases are made as before, when first opened
    assert not (store.root / "optuna.db").exists()
    assert list(store.root.iterdir()) == [store.artifact_root]  # no stray temporary file
    study = optuna.create_study(storage=open_storage(store.storage_url), study_name="s")
    assert study.study_name == "s"


def test_two_processes_seeding_one_new_store_make_one_whole_database(
    tmp_path: Path, cache: Path
) -> None:
    db = tmp_path / "optuna.db"
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        made = list(pool.map(_seed_with_cache, [(db, cache)] * 2))
    assert sorted(made) == [False, True]  # one copied it in; the other found it there
    assert {"studies", "trials"} <= _tables(db)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert len(list((cache / "schemas").iterdir())) == 1


def _seed_with_cache(args: tuple[Path, Path]) -> bool:
    import os

    db, cache = args
    os.environ["SWEEPLAB_CACHE"] = str(cache)
    return schemas.seed(db, schemas.OPTUNA)
