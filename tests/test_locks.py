"""DatabaseLock across real processes: one holder at a time, and no file left behind."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from sweeplab.locks import DatabaseLock


def _count(url: str, counter: str, times: int) -> None:
    lock = DatabaseLock(url, "test", "counter")
    for _ in range(times):
        with lock.held():
            path = Path(counter)
            value = int(path.read_text())  # read, then write: lost updates without the lock
            path.write_text(str(value + 1))


def test_a_file_lock_admits_one_holder_and_is_gone_when_released(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    counter = tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_count, args=(url, str(counter), 200)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    assert counter.read_text() == "600"
    assert list(tmp_path.glob("*.lock")) == []


def _hold(url: str, held: Any, release: Any) -> None:
    with DatabaseLock(url, "test", "busy").held():
        held.set()
        release.wait(60)


@pytest.mark.parametrize("where", ["sqlite", "postgresql"])
def test_a_lock_held_by_another_process_is_busy_and_free_once_released(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if where == "sqlite":
        url = f"sqlite:///{tmp_path / 'optuna.db'}"
    else:
        url = request.getfixturevalue("postgres").create("busy")
    lock = DatabaseLock(url, "test", "busy")
    assert not lock.busy()
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(url, held, release))
    holder.start()
    try:
        assert held.wait(60)
        assert lock.busy()
        assert not DatabaseLock(url, "test", "other").busy()  # another lock's name
    finally:
        release.set()
        holder.join(60)
    assert holder.exitcode == 0
    assert not lock.busy()
    with lock.held():  # asking took nothing
        pass
