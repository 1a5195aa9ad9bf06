"""Accuracy against cost: a spec whose objective is a list makes a multi-objective study;
its result is a Pareto front, shown by status, drawn by compare, and picked from by
`models promote --best-of SWEEP --within TOL`."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweeplab.spec import SpecError, spec_from_dict
from sweeplab.store import Store
from tests.helpers import in_process, sweeplab, tiny_spec

OBJECTIVES = [{"metric": "val_acc", "mode": "max"}, {"metric": "param_count", "mode": "min"}]
SPACE = {
    "model.hidden": {
        "type": "layers",
        "depth": {"low": 1, "high": 2},
        "width": {"low": 2, "high": 64, "log": True},
    }
}


def _dominates(a: list[float], b: list[float]) -> bool:
    """val_acc up, param_count down: ``a`` is no worse on both and better on one."""
    no_worse = a[0] >= b[0] and a[1] <= b[1]
    return no_worse and (a[0] > b[0] or a[1] < b[1])


def test_a_multi_objective_sweep_returns_a_front_and_promotes_the_rule_s_pick(
    store: Store, tmp_path: Path, write_spec: Any
) -> None:
    spec = write_spec(
        tiny_spec(
            name="pareto",
            objective=OBJECTIVES,
            train={"max_epochs": 2},
            search_space=SPACE,
            sweep={"trials": 6, "sampler": "nsga2", "seed": 1},
            tracking={"experiment": "pareto"},
        )
    )
    root = ["--store", str(store.root)]
    out = sweeplab("sweep", str(spec), "--no-smoke", "-q", *root)
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name="pareto", storage=store.storage_url)
    assert len(study.directions) == 2
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6
    front = study.best_trials
    assert front
    for t in front:  # no trial of the front is dominated, by the front or any other
        assert not any(_dominates(o.values, t.values) for o in complete if o is not t)
    for t in complete:  # each trial's second value is its network's size
        widths = [t.params[f"model.hidden.{i}"] for i in range(t.params["model.hidden.depth"])]
        sizes = [4, *widths, 3]  # iris: 4 features, 3 classes
        expected = sum(a * b + b for a, b in itertools.pairwise(sizes))
        assert t.values[1] == expected, (widths, t.values)

    # the reading commands in this process (the sweep above ran as a user's shell runs it)
    status = in_process("status", "pareto", *root)
    assert status.returncode == 0, status.stderr
    assert "param_count" in status.stdout and "Pareto front" in status.stdout
    for t in front:
        assert f"#{t.number}" in status.stdout.rsplit("Pareto front", 1)[1]

    out_dir = ["--out", str(tmp_path / "cmp")]
    compared = in_process("compare", "pareto", *root, *out_dir, "-f", "csv")
    assert compared.returncode == 0, compared.stderr
    assert (tmp_path / "cmp" / "pareto_front.png").stat().st_size > 5000
    import csv

    rows = list(csv.DictReader(compared.stdout.splitlines()))
    assert {int(r["trial"]) for r in rows if r["front"] == "*"} == {t.number for t in front}
    assert all(r["param_count"] for r in rows)

    # the README's rule: of the front's trials within TOL of the best val_acc, the
    # smallest (ties: the more accurate)
    tol = 0.05
    top = max(t.values[0] for t in complete)
    near = [t for t in front if t.values[0] >= top - tol]
    pick = min(near, key=lambda t: (t.values[1], -t.values[0]))
    promoted = in_process(
        "models", "promote", "pareto-model", "--best-of", "pareto", "--within", str(tol), *root
    )
    assert promoted.returncode == 0, promoted.stderr
    from mlflow import MlflowClient

    client = MlflowClient(store.tracking_uri)
    version = client.get_model_version_by_alias("pareto-model", "champion")
    assert version.run_id == pick.user_attrs["mlflow_run_id"]
    # --trial N takes any complete trial; --within needs several objectives
    other = in_process(
        "models", "promote", "pareto-model", "--best-of", "pareto", "--trial", "0", *root
    )
    assert other.returncode in (0, 1), other.stderr  # 1: the guard refused a worse one
    assert "registering trial #0 of sweep pareto" in other.stderr


def test_a_pruner_or_a_one_objective_sampler_is_refused_with_several_objectives() -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict(
            tiny_spec(objective=OBJECTIVES, sweep={"pruner": "median", "sampler": "cmaes"})
        )
    text = str(err.value)
    assert "sweep.pruner: Optuna's pruners judge one objective" in text
    assert "sweep.sampler: cmaes optimizes one objective" in text
    with pytest.raises(SpecError, match=r"objective\.1\.metric: 'param_cnt' is never measured"):
        spec_from_dict(tiny_spec(objective=[OBJECTIVES[0], {"metric": "param_cnt"}]))
