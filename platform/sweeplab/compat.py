"""The private parts of Optuna, Ray, Lightning and torch that sweeplab uses, in one place.

Each function names the one private attribute it reads and says why no public API
serves. ``tests/test_library_contracts.py`` has a test per function that fails when the
library removes or reshapes that part, so an upgrade that breaks one shows there first,
by name. Nothing else in sweeplab reads a library's private names (``tests/test_layers.py``
checks that).

The libraries are imported inside the functions: this module sits at the bottom of the
layers and is imported by modules that must stay light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from lightning.pytorch import LightningModule
    from lightning.pytorch.callbacks import EarlyStopping
    from optuna.trial import FrozenTrial
    from ray.tune.search.optuna import OptunaSearch
    from torch import Tensor
    from torch.optim import Optimizer


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (``_trial_id``).

    The storage's own calls (heartbeats, attributes, states) take this id; Optuna offers
    it publicly only through one more query per trial
    (``get_trial_id_from_study_id_trial_number``), and a Ray worker rebuilds its trial
    with ``optuna.Trial(study, id)``.
    """
    return int(trial._trial_id)


def study_id(study: optuna.Study) -> int:
    """The storage's id of a study (``_study_id``): what the stale-trial query and the
    storage's ``create_new_trial`` take."""
    return int(study._study_id)


def study_storage(study: optuna.Study) -> Any:
    """The storage a study was opened on (``_storage``): Ray's ``OptunaSearch`` holds only
    the study, and the searcher records heartbeats and attributes through its storage."""
    return study._storage


def records_heartbeats(storage: Any) -> bool:
    """Whether ``storage`` records heartbeats: an instance of Optuna's private
    ``optuna.storages._heartbeat.BaseHeartbeat`` (the class Optuna's own
    ``fail_stale_trials`` checks; it is exported under no public name) with an interval."""
    from optuna.storages._heartbeat import BaseHeartbeat

    return isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None


def stale_trial_ids(storage: Any, study: optuna.Study) -> set[int]:
    """The running trials of ``study`` that missed their heartbeats
    (``_get_stale_trial_ids``). Optuna's public ``fail_stale_trials`` fails them without a
    reason, and a finished trial cannot take one afterwards: sweeplab asks first, records
    why, then fails them."""
    if not records_heartbeats(storage):
        return set()
    return set(storage._get_stale_trial_ids(study_id(study)))


def search_trial(search: OptunaSearch, tune_id: str) -> optuna.Trial | None:
    """The Optuna trial Ray's ``OptunaSearch`` asked for Tune trial ``tune_id``
    (``_ot_trials``): it keeps them in this dict with no accessor, and a trial's owner and
    id must be recorded as Tune starts it."""
    trial: optuna.Trial | None = search._ot_trials.get(tune_id)
    return trial


def configured_optimizers(module: LightningModule) -> list[Optimizer]:
    """The optimizers a module's ``configure_optimizers`` returns, parsed as Lightning
    parses them (``lightning.pytorch.core.optimizer._init_optimizers_and_lr_schedulers``):
    the return value may be an optimizer, a list, a dict or a tuple of lists, and Lightning
    exports no public parser."""
    from lightning.pytorch.core.optimizer import _init_optimizers_and_lr_schedulers

    optimizers, _ = _init_optimizers_and_lr_schedulers(module)
    return list(optimizers)


def early_stopping_check(stopper: EarlyStopping, current: Tensor) -> tuple[bool, str | None]:
    """Whether Lightning's early stopping would stop on ``current``, with its message
    (``EarlyStopping._evaluate_stopping_criteria``; it counts the epoch as the callback
    does). A fused batch holds several trials, each with its own early stopping, but
    the callback reads one logged value from the trainer: the batch asks each trial's
    EarlyStopping with that trial's own value instead."""
    should_stop, reason = stopper._evaluate_stopping_criteria(current)
    return bool(should_stop), reason


def chained_schedulers(scheduler: Any) -> list[Any]:
    """A scheduler and the schedulers it chains (torch's ``SequentialLR`` and
    ``ChainedScheduler`` keep them in ``_schedulers``, with no public accessor): each has
    its own ``base_lrs``."""
    return [scheduler, *getattr(scheduler, "_schedulers", [])]


def system_metrics_monitor(run_id: str, tracking_uri: str, seconds: float) -> Any:
    """MLflow's sampler of this machine's CPU, memory, disk, network and (with NVIDIA's
    management library) GPU use for run ``run_id``, not started
    (``mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor``, with
    ``start()`` and ``finish()``). MLflow's public switch,
    ``mlflow.start_run(log_system_metrics=True)``, starts this very monitor, but for the
    fluent API's one active run; sweeplab writes to runs by id, several per process."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    return SystemMetricsMonitor(
        run_id, sampling_interval=seconds, samples_before_logging=1, tracking_uri=tracking_uri
    )


def mlflow_engines(client: Any) -> list[Any]:
    """The SQLAlchemy engines behind an ``MlflowClient`` on a database (its tracking and
    registry stores' ``engine``; none for a tracking server or a folder). MLflow opens
    them itself, one per database URL, and offers no public way to reach them;
    ``outages.wait_for_server`` needs them to make a restarted database server waited
    for."""
    stores = [client._tracking_client.store, client._get_registry_client().store]
    return [store.engine for store in stores if hasattr(store, "engine")]


@contextlib.contextmanager
def requirements_checked_by_name(packages: Sequence[str]) -> Iterator[None]:
    """Within the block, MLflow checks a saved model's requirements against ``packages``
    (each imported under its own name) instead of a map of every installed distribution.

    ``mlflow.*.save_model`` checks the requirements it is given against this environment
    (``requirements_utils.warn_dependency_requirement_mismatches``). For that it maps
    modules to distributions, once per process, into ``_MODULES_TO_PACKAGES``: reading
    every installed distribution's file list took 1.0-1.2 s here, in each sweep's end,
    to check pins that ``registry.register`` wrote from the installed versions itself.
    MLflow has no switch to skip the check. Where the map is built already it is used as
    it is; else it holds ``packages`` for the block only, and is unset again after it, so
    anything else that needs the whole map builds it as before."""
    from mlflow.utils import requirements_utils as ru

    if ru._MODULES_TO_PACKAGES is not None:
        yield
        return
    modules: dict[str, list[str]] = {name: [name] for name in packages}
    ru._MODULES_TO_PACKAGES = modules  # type: ignore[assignment]  # typed None by MLflow
    try:
        yield
    finally:
        ru._MODULES_TO_PACKAGES = ru._PACKAGES_TO_MODULES = None


def create_mlflow_tables(engine: Any) -> None:
    """Create MLflow's tables at their newest schema in the empty database behind
    ``engine`` (``mlflow.store.db.utils._initialize_tables``: its first tables, then
    every migration). MLflow runs this itself when a store opens a database without its
    tables, then creates the default experiment; ``schemas`` runs it once into an empty
    database that new stores are copied from, so the default experiment is still
    created by each store, under its own artifact root."""
    from mlflow.store.db.utils import _initialize_tables

    _initialize_tables(engine)
