"""A trial of the Optuna backend: its params asked of Optuna, pruned by Optuna's pruner
through optuna-integration's Lightning callback."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback

from sweeplab.search.keys import ATTR_RUN
from sweeplab.search.sampling import pruning_callback, suggest
from sweeplab.search.sweep import Sweep
from sweeplab.search.trial import sweep_trial


class OptunaHooks:
    """Pruning through optuna-integration's Lightning callback, on the first restart only.

    Later restarts of the same configuration would report the same epochs again,
    which Optuna ignores; the first restart's curve decides.
    """

    pruned: tuple[type[BaseException], ...] = (optuna.TrialPruned,)
    paused: tuple[type[BaseException], ...] = ()

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def callbacks(self, restart: int) -> Sequence[Callback]:
        if restart > 0 or len(self.trial.study.directions) > 1:  # Optuna prunes one objective
            return []
        return [pruning_callback(self.trial, self.monitor)]

    def on_run(self, run_id: str) -> None:
        self.trial.set_user_attr(ATTR_RUN, run_id)

    def trainer_options(self) -> dict[str, Any]:
        return {}


def objective_for(sweep: Sweep) -> Callable[[optuna.Trial], float | list[float]]:
    """The objective of the sweep's trials: sample the params, run the trial (its value,
    or every objective's)."""
    space, metric = sweep.exp.space, sweep.exp.objective.metric

    def objective(trial: optuna.Trial) -> float | list[float]:
        params = suggest(trial, space)
        return sweep_trial(sweep, trial, params, OptunaHooks(trial, metric)).objective_values

    return objective
