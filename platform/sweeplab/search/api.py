"""The Python API in Optuna's spirit: create or load a sweep, then ``optimize`` it.

    sweep = create_sweep("experiments/mlp_digits.yaml", store="sweeplab-store")
    sweep.optimize(n_trials=10, callbacks=[...])
    sweep.best_trial, sweep.trials, sweep.register_best(), sweep.compare()

A spec is a YAML path, a mapping or an ``Experiment``, validated exactly as a YAML file
is; ``model=`` puts your own LightningModule class (or a function that builds one) in
it without an import string. Nothing is written before everything is checked: the
spec, the sampler's and pruner's options, the backend's, the warm start's sweeps, the
data and a transfer source.

``run_sweep``, ``continue_sweep`` and ``stop_sweep`` are what ``sweeplab sweep``,
``resume``/``agent`` and ``stop`` call.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml

from sweeplab.search import keys, warm
from sweeplab.search.claims import Recovery, owner
from sweeplab.search.lifecycle import Lifecycle, backend_for, finish
from sweeplab.search.options import BackendOptions
from sweeplab.search.results import SweepResult
from sweeplab.search.sampling import build_pruner, build_sampler, encode
from sweeplab.search.states import SweepState
from sweeplab.search.storage import free_name, open_storage, study_names
from sweeplab.search.sweep import OnTrial, Sweep
from sweeplab.spec import NAME_PATTERN, Experiment, InputError, load_spec, spec_from_dict
from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker, flatten

SpecLike = str | Path | Mapping[str, Any] | Experiment
StoreLike = Store | str | Path | None


class DuplicateSweep(InputError):
    """A sweep of that name exists (``load_if_exists=True`` opens it instead)."""


def as_store(store: StoreLike) -> Store:
    """A ``Store``, or the store folder of that path (None: ``./sweeplab-store``)."""
    return store if isinstance(store, Store) else Store.resolve(store)


def as_experiment(spec: SpecLike, model: Callable[..., Any] | None = None) -> Experiment:
    """The spec validated as a YAML file is (a mapping's ``search_space`` may be a path);
    with ``model``, ``model.arch: custom`` with that class or function."""
    if isinstance(spec, str | Path) and model is None:
        return load_spec(spec)
    if isinstance(spec, str | Path):
        raw = yaml.safe_load(Path(spec).read_text())
        if isinstance(raw, dict) and isinstance(raw.get("search_space"), str):
            raw["search_space"] = str(Path(spec).parent / raw["search_space"])
    elif isinstance(spec, Experiment):
        raw = spec.model_dump(mode="json", by_alias=True)
    else:
        raw = json.loads(json.dumps(dict(spec)))  # a deep copy of plain values
    if isinstance(raw, dict) and isinstance(raw.get("search_space"), str):
        raw["search_space"] = yaml.safe_load(Path(raw["search_space"]).read_text()) or {}
    if model is not None and isinstance(raw, dict):
        raw["model"] = _custom_model(raw.get("model"), model)
    return spec_from_dict(raw)


def _custom_model(section: Any, model: Callable[..., Any]) -> dict[str, Any]:
    """The model section for ``model`` (its import path), keeping a custom section's
    kwargs and metrics."""
    qualname = getattr(model, "__qualname__", "")
    if not qualname or "<" in qualname:
        raise InputError(
            f"model= takes a class or function defined at a module's top level, so that "
            f"worker processes can import it, but got {model!r}"
        )
    kept = section if isinstance(section, dict) and section.get("arch") == "custom" else {}
    out = {k: v for k, v in kept.items() if k in ("kwargs", "metrics")}
    return {"arch": "custom", "class": f"{model.__module__}:{qualname}", **out}


def create_sweep(
    spec: SpecLike,
    *,
    store: StoreLike = None,
    name: str | None = None,
    load_if_exists: bool = False,
    rename_if_exists: bool = False,
    model: Callable[..., Any] | None = None,
    options: BackendOptions | None = None,
) -> Sweep:
    """A new sweep of ``spec`` in ``store``: its study and MLflow parent run, its warm
    start's prior trials and its enqueued configurations. ``name`` (default the spec's)
    taken: DuplicateSweep, unless ``load_if_exists`` (the sweep of that name is
    opened) or ``rename_if_exists`` (``name-2``, ``name-3``…, as ``sweeplab sweep``).
    ``options``: the backend's, checked now. SpecError or InputError before anything is
    written."""
    return new_sweep(
        as_experiment(spec, model),
        as_store(store),
        name=name,
        load_if_exists=load_if_exists,
        rename_if_exists=rename_if_exists,
        options=options,
    )


def new_sweep(
    exp: Experiment,
    where: Store,
    *,
    name: str | None = None,
    load_if_exists: bool = False,
    rename_if_exists: bool = False,
    options: BackendOptions | None = None,
) -> Sweep:
    """``create_sweep`` of a spec validated already (the command line's)."""
    name = exp.name if name is None else name
    if not re.fullmatch(NAME_PATTERN, name):
        raise InputError(
            "a sweep name must start with a letter or digit and hold only letters, digits, "
            f"'_', '.' and '-', but got {name!r}"
        )
    where.check()  # a store that cannot be written: before anything reads it
    where.check_writable()
    existing = open_storage(where.storage_url) if where.storage_exists() else None
    if existing is not None and name in study_names(existing):
        if load_if_exists:
            return load_sweep(name, store=where)
        if not rename_if_exists:
            raise DuplicateSweep(
                f"a sweep named {name!r} exists in {where.storage_url}: load it "
                "(load_sweep, or load_if_exists=True), or choose another name"
            )
    prior = check(exp, where, options, existing)
    return _create(exp, where, name, prior, options)


def check(
    exp: Experiment,
    store: Store,
    options: BackendOptions | None = None,
    storage: optuna.storages.RDBStorage | None = None,
) -> warm.WarmStart:
    """Everything a new sweep of ``exp`` could get wrong, before anything is written;
    returns what its warm start would take."""
    from sweeplab.training.fit import check_inputs

    build_sampler(exp)
    build_pruner(exp)  # a bad option stops here
    backend_for(exp.sweep.backend, options).check(exp)  # so does a backend's
    prior = warm.plan(exp, store, storage)  # so does a warm start's missing sweep
    store.check()
    store.reachable()  # a tracking server or database that does not answer
    check_inputs(exp, store.tracking_uri)  # so do unreadable data and a missing source
    return prior


def _create(
    exp: Experiment,
    store: Store,
    name: str,
    prior: warm.WarmStart,
    options: BackendOptions | None,
) -> Sweep:
    store.prepare()
    storage = open_storage(store.storage_url)
    backend = backend_for(exp.sweep.backend, options)
    study = optuna.create_study(
        storage=storage,
        study_name=free_name(storage, name),
        sampler=build_sampler(exp),
        pruner=build_pruner(exp),
        directions=["maximize" if o.mode == "max" else "minimize" for o in exp.objectives],
    )
    tracker = Tracker(store, exp.experiment_name)
    spec = exp.model_dump(mode="json")
    parent = _parent_run(study.study_name, exp, tracker)
    for key, value in (
        (keys.ATTR_SPEC, json.dumps(spec)),
        (keys.ATTR_PARENT, parent),
        (keys.ATTR_EXPERIMENT, tracker.experiment_id),
        (keys.ATTR_BACKEND, exp.sweep.backend),
        (keys.ATTR_BACKEND_OPTIONS, backend.kept()),
        (keys.ATTR_OWNERS_LOCKED, backend.owners_locked),
        (keys.ATTR_TRIALS, exp.sweep.trials),
        (keys.ATTR_STATE, SweepState.RUNNING.value),
    ):
        study.set_user_attr(key, value)
    warm.add(study, prior)
    for index, config in enumerate(exp.sweep.enqueue):
        params: dict[str, Any] = {}
        for key, value in config.items():
            params |= encode(exp.space, key, value)
        study.enqueue_trial(params, user_attrs={keys.ATTR_ENQUEUED: index}, skip_if_exists=False)
    return Sweep(study=study, storage=storage, exp=exp, store=store, runner=Lifecycle())


def _parent_run(name: str, exp: Experiment, tracker: Tracker) -> str:
    """The sweep's MLflow parent run: the spec as params and artifacts."""
    spec = exp.model_dump(mode="json")
    params = flatten({k: v for k, v in spec.items() if k != "search_space"})
    tags = {keys.TAG_SWEEP: name, keys.TAG_KIND: "sweep", keys.TAG_STATE: SweepState.RUNNING}
    parent = tracker.start_run(name, tags=tags, params=params)
    tracker.log_text(parent, yaml.safe_dump(spec, sort_keys=False), "spec.yaml")
    tracker.log_text(parent, yaml.safe_dump(exp.search_space, sort_keys=False), "search_space.yaml")
    return parent


def load_sweep(name: str, *, store: StoreLike = None, address: str | None = None) -> Sweep:
    """Sweep ``name`` of ``store``, to read, run more trials of, register or compare;
    LookupError naming the sweeps there. Its sampler draws on a stream of this process's
    own. ``address``: the Ray cluster a Ray sweep runs on (default: a local Ray, or the
    options it was created with)."""
    where = as_store(store)
    return Sweep.open(where, name, stream=owner(), runner=Lifecycle(address=address))


def run_sweep(
    exp: Experiment,
    store: Store,
    *,
    name: str | None = None,
    on_trial: OnTrial | None = None,
    options: BackendOptions | None = None,
) -> SweepResult:
    """``sweeplab sweep``: create sweep ``name``, run its trials, finish it. Without a
    ``name`` the spec's is taken, numbered (``name-2``…) if a sweep has it; a ``name``
    the user gave that is taken is refused (DuplicateSweep): it may be one to resume."""
    try:
        sweep = new_sweep(exp, store, name=name, rename_if_exists=name is None, options=options)
    except DuplicateSweep:
        raise DuplicateSweep(
            f"a sweep named {name!r} exists in this store: continue it with "
            f"'sweeplab resume {name}', or give another --name"
        ) from None
    return sweep.optimize(options=options, on_trial=on_trial)


def continue_sweep(
    store: Store,
    name: str,
    on_trial: OnTrial | None = None,
    address: str | None = None,
    options: BackendOptions | None = None,
    trials: int | None = None,
) -> SweepResult:
    """``sweeplab resume`` (after a crash, kill -9, Ctrl-C or a stop; ``trials``: that
    many more) and ``sweeplab agent`` (one more worker): dead workers' trials are failed
    and queued again, then trials are taken until there are enough. A Ray sweep goes on
    on Ray (the cluster at ``address``, or a local one)."""
    sweep = load_sweep(name, store=store, address=address)
    return sweep.optimize(trials, options=options, on_trial=on_trial)


def stop_sweep(store: Store, name: str, *, now: bool = False, wait: bool = False) -> SweepResult:
    """``sweeplab stop``: the sweep's workers, on every host, take no new trial and exit
    (``now``: they interrupt their running trials, queued again for ``resume``); the
    last one finishes the sweep. With no trial running (its workers gone, or between
    two trials) it is finished here and now; ``wait``: until the running trials end.
    InputError if it had finished."""
    sweep = load_sweep(name, store=store)
    if not sweep.stop(now=now, reason=f"sweeplab stop{' --now' if now else ''} ({owner()})"):
        raise InputError(f"sweep {name!r} has finished ({sweep.state.value}): nothing to stop")
    recovery = Recovery(sweep)
    while True:
        with sweep.lock.held():
            recovery.run()  # a worker that is gone leaves no running trial behind
            running = sweep.counts.running
        if not running or not wait:
            break
        time.sleep(STOP_POLL_SECONDS)
    return finish(sweep) if not running else sweep.result()


STOP_POLL_SECONDS = 0.5
