"""The Python API: create or load a sweep, optimize it with a trial count, a timeout and
callbacks, read its typed trials, register and compare it; the README's section runs as
written; a user's own model without an import string."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sweeplab.store import Store
from tests.custom_modules import build_tiny_mlp
from tests.helpers import ROOT, tiny_spec


def readme_python_api() -> str:
    """The first ```python block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's Python API section holds no python block"
    return found.group(1)


def test_the_readme_python_api_section_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from the project root as a user would, on a store of its own.

    The code runs as written; only the spec it names is shrunk (one restart, 2–3 epochs,
    a small network) so that its six trials take seconds, not minutes.
    """
    import yaml

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SWEEPLAB_STORE", str(tmp_path / "store"))
    spec = yaml.safe_load((ROOT / "experiments" / "mlp_digits.yaml").read_text())
    spec["model"]["hidden"] = [32]
    spec["train"]["max_epochs"] = 3
    spec["sweep"]["restarts"] = 1
    spec["tracking"]["report"] = False
    space = yaml.safe_load((ROOT / "search_spaces" / "mlp.yaml").read_text())
    space["train.max_epochs"] = {"type": "int", "low": 2, "high": 3}
    spec["search_space"] = space
    small = tmp_path / "mlp_digits.yaml"
    small.write_text(yaml.safe_dump(spec), encoding="utf-8")
    code = readme_python_api()
    assert '"experiments/mlp_digits.yaml"' in code, "the README example names another spec"
    code = code.replace('"experiments/mlp_digits.yaml"', repr(str(small)))
    code = code.replace('"sweeplab-store"', repr(str(tmp_path / "store")))
    scope: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), scope)
    sweep = scope["sweep"]
    assert sweep.name == "digits-api" and sweep.state.finished
    assert [t.number for t in sweep.trials] == list(range(len(sweep.trials)))
    assert len(sweep.trials) == sweep.counts.taken >= 3  # 4 (or fewer, if stopped), then 2
    values = [t.value for t in sweep.trials if t.value is not None]
    # the best is within one validation example of the top value (ties go to the lower loss)
    best = sweep.best_trial
    assert best is not None and best.value is not None
    assert max(values) - best.value <= (best.resolution or 0.0) * (1 + 1e-9)
    assert scope["result"].registered is not None


def test_a_name_that_exists_is_refused_unless_loaded(store: Store) -> None:
    """A script run twice does not silently make ``name-2``."""
    from sweeplab import create_sweep, load_sweep
    from sweeplab.search import DuplicateSweep

    first = create_sweep(tiny_spec(), store=store, name="twice")
    with pytest.raises(DuplicateSweep, match="a sweep named 'twice' exists"):
        create_sweep(tiny_spec(), store=store, name="twice")
    again = create_sweep(tiny_spec(), store=store, name="twice", load_if_exists=True)
    assert again.name == first.name == load_sweep("twice", store=store).name
    with pytest.raises(LookupError, match="did you mean 'twice'"):
        load_sweep("twise", store=store)


def test_optimize_runs_the_trials_asked_and_callbacks_can_stop_it(store: Store) -> None:
    from sweeplab import SweepState, TrialState, create_sweep
    from sweeplab.search import Sweep, Trial

    sweep = create_sweep(tiny_spec(sweep={"trials": 20, "sampler": "random"}), store=store)
    seen: list[Trial] = []

    def stop_after_two(s: Sweep, trial: Trial) -> None:
        seen.append(trial)
        if len(seen) == 2:
            s.stop()

    result = sweep.optimize(callbacks=[stop_after_two])
    assert [t.number for t in seen] == [0, 1]
    assert all(t.state is TrialState.COMPLETE and t.run_id for t in seen)
    assert result.state is SweepState.STOPPED and len(sweep.trials) == 2
    assert sweep.state is SweepState.STOPPED
    more = sweep.optimize(n_trials=1)  # a stopped sweep goes on, with exactly one more
    assert len(sweep.trials) == 3 and more.state is SweepState.COMPLETE
    trial = sweep.trials[2]
    assert isinstance(trial.params["train.lr"], float) and trial.values == (trial.value,)
    assert sweep.best_trial in sweep.trials


def test_register_best_and_compare(store: Store) -> None:
    from sweeplab import create_sweep
    from sweeplab.search import Comparison, Registered

    spec = tiny_spec(tracking={"experiment": "api", "register_as": "api-model", "report": False})
    sweep = create_sweep(spec, store=store, name="api")
    result = sweep.optimize(n_trials=2)
    assert result.registered == Registered(name="api-model", version=1)
    assert sweep.register_best() == Registered(name="api-model", version=1)  # not twice
    other = create_sweep(spec, store=store, name="api-other")
    other.optimize(n_trials=1)
    comparison = sweep.compare(other)
    assert isinstance(comparison, Comparison)
    assert comparison.sweeps == ["api", "api-other"]
    assert sorted(r.rank for r in comparison.rows if r.rank) == [1, 2, 3]


def test_your_own_module_without_an_import_string(store: Store) -> None:
    """A LightningModule class, or a function that builds one from the trial's spec."""
    from examples.custom_mlp import TinyMLP

    from sweeplab import create_sweep

    spec = tiny_spec(
        model={"arch": "custom", "kwargs": {"width": 8, "lr": 3e-3}, "metrics": ["val_acc"]},
        search_space={"model.kwargs.lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
    )
    by_class = create_sweep(spec, store=store, name="by-class", model=TinyMLP)
    assert by_class.exp.model.class_ == "examples.custom_mlp:TinyMLP"  # type: ignore[union-attr]
    assert by_class.optimize(n_trials=1).best is not None
    by_function = create_sweep(spec, store=store, name="by-function", model=build_tiny_mlp)
    best = by_function.optimize(n_trials=1).best
    assert best is not None and best.value is not None
    from sweeplab.search import list_sweeps
    from sweeplab.spec import InputError

    with pytest.raises(InputError, match="defined at a module's top level"):
        create_sweep(spec, store=store, name="lambda", model=lambda **kw: TinyMLP(**kw))
    assert "lambda" not in [s.name for s in list_sweeps(store)]


def test_the_wrong_backends_options_are_refused(store: Store) -> None:
    from sweeplab import LocalWorkers, RayOptions, create_sweep
    from sweeplab.search import list_sweeps
    from sweeplab.spec import InputError

    sweep = create_sweep(tiny_spec(), store=store, name="optuna-one")
    with pytest.raises(InputError, match="RayOptions are options of the ray backend"):
        sweep.optimize(options=RayOptions(cpus_per_trial=2))
    assert sweep.counts.taken == 0
    ray_spec = tiny_spec(sweep={"trials": 2, "sampler": "random", "backend": "ray"})
    with pytest.raises(InputError, match="LocalWorkers are options of the optuna backend"):
        create_sweep(ray_spec, store=store, name="ray-one", options=LocalWorkers(workers=2))
    assert "ray-one" not in [s.name for s in list_sweeps(store)]
