"""Population-based training on Ray Tune (``sweep.scheduler: pbt``).

Ray's PopulationBasedTraining takes no searcher, so Ray's OptunaSearch does not tell the
sweep's study here; the workers and the driver's TrialEnd do:

    driver                                    Ray worker (a Tune trial; PBT restarts it)
    ------                                    ------------------------------------------
    Tune samples the population from the      first start: a RUNNING Optuna trial with the
      search space (seeded by sweep.seed)       sampled params, and its MLflow child run
    PBT, every perturbation_interval epochs:  each epoch: a Lightning checkpoint (weights,
      a trial of the bottom quantile takes      optimizer, epoch) reported to Tune
      a top trial's checkpoint and config,    a restart: the checkpoint it is given (its own
      lr, dropout... perturbed (exploit         or a donor's) with its config, logging on
      and explore)                              into the same run: ``pbt.*`` metrics show
                                                the values from that epoch, and the donor
    TrialEnd: an error → FAIL                 the end: test, checkpoint, study told COMPLETE

The weights move between trials, so every searched value must keep the model's shapes:
the search space may only hold ``MUTABLE`` paths (checked with the spec). A trial's params
in MLflow and Optuna are those it started with; its value is the best epoch of the
weights' whole lineage (KeepBestWeights travels in the checkpoint).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from optuna.trial import TrialState as OptunaState
from ray import tune

from sweeplab import compat
from sweeplab.logs import quiet_libraries
from sweeplab.search.keys import (
    ATTR_FINAL_PARAMS,
    ATTR_OWNER,
    ATTR_REASON,
    ATTR_RUN,
    ATTR_TUNE,
    TAG_STATE,
)
from sweeplab.search.ray_backend.searcher import FINAL, WORKER_DIED
from sweeplab.search.ray_backend.worker import RayHooks, RaySweep, report
from sweeplab.search.sampling import distributions
from sweeplab.search.states import TrialState
from sweeplab.search.sweep import Sweep
from sweeplab.search.trial import sweep_trial
from sweeplab.spec import CategoricalDist, FloatDist, IntDist, SearchSpace
from sweeplab.spec._space import choice_key, choice_keys, decode_choice
from sweeplab.tracking.logger import BatchedMlflowLogger
from sweeplab.tracking.tracker import Tracker
from sweeplab.training.callbacks import val_loss_diverged

# A PBT trial is created and told through the storage, with the storage's own ids
# (sweeplab.compat)
TIME = "sweeplab_pbt_epoch"  # PBT's time_attr: in the reports after which it may exploit
CKPT = "fit.ckpt"
ORIGIN = "origin.json"  # in a checkpoint: {"trial": number, "epoch": epochs trained}


def population(space: SearchSpace) -> dict[str, Any]:
    """Tune's domains for each searched path: the initial population is drawn from these.

    Stepped and integer ranges are lists, which PBT's explore moves along one step.
    """
    out: dict[str, Any] = {}
    for path, dist in space.items():
        if isinstance(dist, CategoricalDist):
            out[path] = tune.choice(choice_keys(dist.choices))
        elif isinstance(dist, IntDist) and not dist.log:
            out[path] = tune.choice(list(range(dist.low, dist.high + 1, dist.step)))
        elif isinstance(dist, IntDist):
            out[path] = tune.lograndint(dist.low, dist.high + 1)
        elif dist.step is not None:
            out[path] = tune.choice([dist.low + k * dist.step for k in range(_steps(dist) + 1)])
        else:
            out[path] = (tune.loguniform if dist.log else tune.uniform)(dist.low, dist.high)
    return out


def _steps(dist: FloatDist | IntDist) -> int:
    """How many steps fit between low and high."""
    return int((dist.high - dist.low) / (dist.step or 1) + 1e-9)


def mutations(space: SearchSpace) -> dict[str, Any]:
    """PBT's hyperparam_mutations: lists as lists, ranges as their domains."""
    return {
        path: domain.categories if isinstance(domain, tune.search.sample.Categorical) else domain
        for path, domain in population(space).items()
    }


def params_of(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any]:
    """The spec values of a Tune config; PBT's perturbations are brought back into range."""
    params: dict[str, Any] = {}
    for path, dist in space.items():
        value = config[path]
        if isinstance(dist, CategoricalDist):
            params[path] = decode_choice(dist, value)
            continue
        value = min(max(value, dist.low), dist.high)
        if dist.step is not None:  # back onto the grid, within the range
            steps = min(round((value - dist.low) / dist.step), _steps(dist))
            value = dist.low + steps * dist.step
        params[path] = int(value) if isinstance(dist, IntDist) else value
    return params


def tune_trial(
    study: optuna.Study, tune_id: str, states: tuple[OptunaState, ...] | None = None
) -> optuna.trial.FrozenTrial | None:
    """The Optuna trial of PBT's Tune trial ``tune_id`` (tagged ``ATTR_TUNE``), if any."""
    for t in study.get_trials(deepcopy=False, states=states):
        if t.user_attrs.get(ATTR_TUNE) == tune_id:
            return t
    return None


def pbt_trial_ended(sweep: Sweep, tune_id: str, error: bool) -> optuna.trial.FrozenTrial | None:
    """The Optuna trial of PBT's Tune trial ``tune_id``, told FAIL (error) or PRUNED
    (stopped) if its worker did not tell it COMPLETE. No searcher tells the study about a
    PBT trial: the driver's TrialEnd calls this."""
    study, storage = sweep.study, sweep.storage
    t = tune_trial(study, tune_id)
    if t is None or t.state.is_finished():
        return t
    if error and ATTR_REASON not in t.user_attrs:
        storage.set_trial_user_attr(compat.trial_id(t), ATTR_REASON, WORKER_DIED)
    study.tell(t.number, state=OptunaState.FAIL if error else OptunaState.PRUNED)
    return storage.get_trial(compat.trial_id(t))


def optuna_trial(sweep: Sweep, params: dict[str, Any], tune_id: str, driver: str) -> optuna.Trial:
    """The Optuna trial of Tune trial ``tune_id``: created RUNNING with ``params`` on its
    first start, found again when PBT restarts it."""
    study, space = sweep.study, sweep.exp.space
    found = tune_trial(study, tune_id, (OptunaState.RUNNING,))
    if found is not None:
        return optuna.Trial(study, compat.trial_id(found))
    template = optuna.trial.create_trial(
        state=OptunaState.RUNNING,
        params={path: choice_key(value) for path, value in params.items()},
        distributions=distributions(space),
        # the driver owns it: if the driver dies, `resume` fails the trial
        user_attrs={ATTR_TUNE: tune_id, ATTR_OWNER: driver},
    )
    # the storage's create_new_trial: Optuna's own add_trial would create the trial
    # finished, and ask() would sample it
    return optuna.Trial(study, sweep.storage.create_new_trial(compat.study_id(study), template))


class PbtReport(Callback):
    """Each epoch: a checkpoint of the whole fit and the objective, to Tune.

    The checkpoint is saved at the end of the training epoch (after validation and early
    stopping: a fit resumed from it starts at the next epoch), and reported once
    Lightning has logged the epoch and the logger has written it: at the next epoch's
    start, or at the end of the fit. When PBT pauses the trial, Ray ends its process
    right after the report, so nothing may be left unwritten then. The last epoch's
    report has no ``TIME`` and no checkpoint: PBT never takes over a trial that is about
    to test and save its model (Ray's PBT is told ``require_attrs=False``).
    """

    def __init__(self, metric: str, max_epochs: int, number: int) -> None:
        self.metric = metric
        self.max_epochs = max_epochs
        self.number = number
        self._pending: tuple[dict[str, Any], tempfile.TemporaryDirectory[str] | None] | None
        self._pending = None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.metric not in trainer.callback_metrics or val_loss_diverged(trainer):
            return
        epoch = trainer.current_epoch + 1
        metrics = {self.metric: float(trainer.callback_metrics[self.metric]), "epoch": epoch}
        folder = None
        if epoch < self.max_epochs:
            folder = tempfile.TemporaryDirectory()
            trainer.save_checkpoint(Path(folder.name, CKPT))
            Path(folder.name, ORIGIN).write_text(json.dumps({"trial": self.number, "epoch": epoch}))
            metrics[TIME] = epoch
        self._pending = (metrics, folder)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer)

    def _report(self, trainer: Trainer) -> None:
        """Report the last epoch; a pause is SystemExit, out of the fit and the trial."""
        if self._pending is None:
            return
        (metrics, folder), self._pending = self._pending, None
        for logger in trainer.loggers:
            if isinstance(logger, BatchedMlflowLogger):
                logger.flush()
        if folder is None:
            tune.report(metrics)
            return
        with folder:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder.name))


class PbtHooks(RayHooks):
    """A PBT trial: a stop at a report pauses it (its run stays open), it is never pruned.

    ``start``: the epoch it goes on from and the trial that checkpoint came from.
    """

    pruned: tuple[type[BaseException], ...] = ()
    paused: tuple[type[BaseException], ...] = (SystemExit,)

    def __init__(
        self,
        trial: optuna.Trial,
        metric: str,
        tracker: Tracker,
        params: dict[str, Any],
        max_epochs: int,
        start: dict[str, int] | None,
    ) -> None:
        super().__init__(trial, metric, tracker)
        self.params = params
        self.max_epochs = max_epochs
        self.start = start

    def callbacks(self, restart: int) -> list[Callback]:
        return [PbtReport(self.metric, self.max_epochs, self.trial.number)]

    def on_run(self, run_id: str) -> None:
        super().on_run(run_id)
        values = {
            f"pbt.{path}": float(value)
            for path, value in self.params.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        epoch = 0
        if self.start is not None:
            epoch = self.start["epoch"]
            values["pbt.from_trial"] = float(self.start["trial"])
        self.tracker.log_metrics(run_id, values, step=epoch)


def run_pbt_trial(config: dict[str, Any], *, sweep: RaySweep, driver: str) -> None:
    """One start of a PBT trial in a Ray worker (the first, or after PBT paused it)."""
    quiet_libraries(training=True)  # a Ray worker's start is an entry point
    opened = sweep.open()
    params = params_of(sweep.exp.space, config)
    trial = optuna_trial(opened, params, tune.get_context().get_trial_id(), driver)
    checkpoint = tune.get_checkpoint()
    run_id = trial.user_attrs.get(ATTR_RUN)
    with tempfile.TemporaryDirectory() as tmp:
        resume, start = None, None
        if checkpoint is not None and run_id is not None:
            checkpoint.to_directory(tmp)
            resume = (run_id, str(Path(tmp, CKPT)))
            start = json.loads(Path(tmp, ORIGIN).read_text())
        metric = sweep.exp.objective.metric
        # PBT never searches max_epochs (PBT_MUTABLE): the spec's own holds for every trial
        max_epochs = sweep.exp.train.max_epochs
        hooks = PbtHooks(trial, metric, opened.tracker, params, max_epochs, start)
        # a PBT pause (SystemExit) goes through sweep_trial: not a failure
        outcome = sweep_trial(opened, trial, params, hooks, resume=resume)
    trial.set_user_attr(ATTR_FINAL_PARAMS, params)
    opened.study.tell(trial, outcome.value)
    report({metric: outcome.value, "epoch": outcome.epochs, FINAL: 1}, False)


def settle(study: optuna.Study, tracker: Tracker, driver: str) -> None:
    """After Tune: a trial of this driver still running (paused when the time budget ran
    out) ends as pruned, with its run."""
    for t in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        if ATTR_TUNE not in t.user_attrs or t.user_attrs.get(ATTR_OWNER) != driver:
            continue
        run_id = t.user_attrs.get(ATTR_RUN)
        if run_id and tracker.client.get_run(run_id).info.status == "RUNNING":
            tracker.set_tags(run_id, {TAG_STATE: TrialState.PRUNED.value})
            tracker.end_run(run_id)
        study.tell(t.number, state=OptunaState.PRUNED)
