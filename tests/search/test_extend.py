"""Sweeps that build on earlier ones: more trials for a finished sweep, a warm start from
earlier sweeps, configurations enqueued to run first."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweeplab.store import Store
from tests.helpers import in_process, tiny_spec


def test_resume_trials_adds_exactly_the_trials_asked(store: Store, write_spec: Any) -> None:
    spec = write_spec(tiny_spec(sweep={"trials": 2, "sampler": "tpe", "seed": 0}))
    root = ("--store", str(store.root))
    assert in_process("sweep", str(spec), "--no-smoke", "-q", *root).returncode == 0
    out = in_process("resume", "tiny", "--trials", "3", "-q", *root)
    assert out.returncode == 0, out.stderr
    assert "5 trials (5 complete" in out.stdout
    status = in_process("status", "tiny", *root)
    assert "5 complete, 0 pruned, 0 failed, 0 running of 5 requested" in status.stdout
    assert "state: complete" in status.stdout


def test_the_first_new_trial_learns_from_every_earlier_one(store: Store) -> None:
    """TPE after 3 start-up draws: the first trial a later process adds is TPE's model
    draw given the 3 earlier trials, not a start-up draw (which it would be if the
    sampler saw none of them)."""
    from sweeplab import create_sweep, load_sweep

    options = {"n_startup_trials": 3}
    spec = tiny_spec(sweep={"trials": 3, "sampler": "tpe", "sampler_options": options})
    create_sweep(spec, store=store, name="learns").optimize()
    sweep = load_sweep("learns", store=store)
    sampler = copy.deepcopy(sweep.study.sampler)  # its state just before the new trial
    sweep.optimize(n_trials=1)
    drawn = sweep.trials[3].params["train.lr"]
    earlier = [t for t in sweep.study.trials if t.number < 3]

    def replay(trials: list[optuna.trial.FrozenTrial]) -> float:
        study = optuna.create_study(direction="maximize", sampler=copy.deepcopy(sampler))
        study.add_trials(trials)
        return study.ask().suggest_float("train.lr", 1e-3, 1e-1, log=True)

    assert drawn == replay(earlier)  # the model draw, given the earlier trials
    assert drawn != replay([])  # not the start-up draw its stream would give


OLD_SPACE = {
    "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "train.weight_decay": {"type": "float", "low": 0.0, "high": 1e-3},
}
# train.lr narrowed, model.dropout dropped, train.weight_decay renamed: train.l1 is new
NEW_SPACE = {
    "train.lr": {"type": "float", "low": 1e-2, "high": 1e-1, "log": True},
    "train.l1": {"type": "float", "low": 0.0, "high": 1e-4},
}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store with a finished 8-trial sweep over OLD_SPACE."""
    from sweeplab import create_sweep

    store = Store.resolve(tmp_path_factory.mktemp("warm") / "store")
    spec = tiny_spec(search_space=OLD_SPACE, sweep={"trials": 8, "sampler": "random", "seed": 3})
    create_sweep(spec, store=store, name="old").optimize()
    return store


def _expected(store: Store) -> tuple[int, int]:
    from sweeplab import load_sweep

    old = load_sweep("old", store=store)
    fits = [t for t in old.trials if t.value is not None and 1e-2 <= t.params["train.lr"] <= 1e-1]
    return len(fits), len(old.trials) - len(fits)


def test_a_warm_start_takes_and_skips_exactly_what_it_says(earlier: Store, write_spec: Any) -> None:
    from sweeplab import create_sweep

    taken, skipped = _expected(earlier)
    assert taken and skipped  # the seed gives both
    spec = tiny_spec(search_space=NEW_SPACE, sweep={"trials": 3, "warm_start": ["old"]})
    path = write_spec(spec)
    said = in_process("validate", str(path), "--store", str(earlier.root))
    assert said.returncode == 0, said.stderr
    summary = f"warm start: {taken} prior trials ({taken} from old); {skipped} skipped"
    assert summary in said.stdout
    assert "with train.lr outside this space" in said.stdout
    assert "ignored, not in this space: model.dropout, train.weight_decay" in said.stdout
    assert "drawn anew: train.l1" in said.stdout

    sweep = create_sweep(spec, store=earlier, name="new")
    prior = sweep.prior_trials
    assert len(prior) == taken and sweep.counts.prior == taken
    assert all(set(t.params) == {"train.lr"} and t.prior.startswith("old#") for t in prior)
    result = sweep.optimize()
    assert result.warm_start is not None and result.warm_start.startswith(summary)
    assert len(sweep.trials) == 3 and sweep.counts.taken == 3  # priors do not count
    assert all(t.prior is None and "train.l1" in t.params for t in sweep.trials)
    assert result.best is not None and result.best.prior is None

    status = in_process("status", "new", "--store", str(earlier.root))
    assert status.stdout.count("prior") >= taken and "3 complete" in status.stdout
    out = in_process(
        "compare", "new", "--no-plots", "--format", "json", "--store", str(earlier.root)
    )
    import json

    rows = json.loads(out.stdout)["trials"]
    assert sorted(r["rank"] for r in rows if r["rank"]) == [1, 2, 3]
    assert len([r for r in rows if r["prior"]]) == taken
    assert all(r["rank"] is None for r in rows if r["prior"])


def test_a_warm_start_from_a_sweep_that_is_not_there_creates_nothing(
    earlier: Store, write_spec: Any
) -> None:
    spec = write_spec(tiny_spec(search_space=NEW_SPACE, sweep={"trials": 2, "warm_start": ["olb"]}))
    out = in_process(
        "sweep", str(spec), "--no-smoke", "--name", "nowhere", "--store", str(earlier.root)
    )
    assert out.returncode == 2
    assert "sweep.warm_start.0: no sweep named 'olb'" in out.stderr and "old" in out.stderr
    assert "nowhere" not in in_process("status", "--store", str(earlier.root)).stdout


def test_enqueued_configurations_run_first(store: Store, write_spec: Any, tmp_path: Path) -> None:
    from sweeplab import create_sweep

    configs = [{"train.lr": 0.05}, {"train.lr": 0.002}]
    sweep = create_sweep(tiny_spec(sweep={"trials": 3, "enqueue": configs}), store=store)
    sweep.optimize()
    assert [t.params["train.lr"] for t in sweep.trials[:2]] == [0.05, 0.002]
    bad = write_spec(tiny_spec(), "bad.yaml")
    out = in_process(
        "sweep",
        str(bad),
        "--no-smoke",
        "--enqueue",
        "{train.lr: 0.5}",
        "--store",
        str(tmp_path / "s"),
    )
    assert out.returncode == 2
    assert "sweep.enqueue.0.train.lr: 0.5 is outside [0.001, 0.1]" in out.stderr
    assert not (tmp_path / "s").exists()
