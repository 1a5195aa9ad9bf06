"""The sweep section: how trials are drawn, judged, run, repeated and ended."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from sweeplab.search.catalog import (
    PBT_MUTABLE,
    pruner_parameters,
    sampler_parameters,
    scheduler_parameters,
)
from sweeplab.spec._data import PositiveInt, Section, Seed
from sweeplab.spec._errors import did_you_mean
from sweeplab.spec._names import BackendName, PrunerName, SamplerName, SchedulerName
from sweeplab.spec._objectives import ObjectiveConfig

NonNegativeInt = Annotated[int, Field(ge=0)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a spec's, and so a sweep's, name

# the keyword arguments of a library class a spec's options may set (imports the library)
OPTION_PARAMETERS: dict[str, Callable[[str], list[str]]] = {
    "pruner": pruner_parameters,
    "sampler": sampler_parameters,
    "scheduler": scheduler_parameters,
}


class StopWhen(Section):
    """End the sweep once a trial reaches ``value`` on the objective (>= for a maximized
    metric, <= for a minimized one): running trials finish, none starts."""

    value: Annotated[float, Field(allow_inf_nan=False)]


def _fuse_trials(value: object) -> object:
    """A number of trials (1: one at a time), or auto."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(
        f"must be a number of trials (1 for one at a time, 8, ...) or auto, but got {value!r}"
    )


FuseTrials = Annotated[int | Literal["auto"], BeforeValidator(_fuse_trials)]


class SweepConfig(Section):
    trials: PositiveInt = 20
    sampler: SamplerName = "tpe"
    # keyword arguments of the sampler's class (TPE's multivariate, n_startup_trials...),
    # checked against its signature
    sampler_options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    pruner: PrunerName = "none"
    pruner_options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    backend: BackendName = "optuna"
    scheduler: SchedulerName = "none"  # Ray Tune's trial scheduler (backend: ray)
    scheduler_options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    max_concurrent: PositiveInt | None = None  # trials at once [default: what fits]
    max_retries: NonNegativeInt = 0  # a trial that raised is run again this many times
    # a trial whose worker died (killed, Ctrl-C, lost) is run again this many times: the
    # configuration is not to blame, and the sweep keeps its trial count
    death_retries: NonNegativeInt = 2
    restarts: PositiveInt = 1
    # a trial's value from its restarts: the best, the mean, or the mean less (lcb, for a
    # maximized metric) or plus (ucb, minimized) restart_z standard errors
    restart_aggregate: Literal["best", "mean", "lcb", "ucb"] = "best"
    restart_z: Annotated[float, Field(ge=0)] = 1.0
    # train a trial's restarts in lockstep as one batched model where the architecture
    # allows (training.fused); false: one after another
    fused_restarts: bool = True
    # a worker takes up to this many trials at a time that share a shape (everything
    # but the fusible fields, training.fusing.FUSIBLE) and trains them as one batched
    # model, each still its own trial (search.optuna_backend.batches); 1: one at a time;
    # auto: the bench's best on a CPU (training.fusing.fused_count), 1 where fusing
    # cannot apply
    fuse_trials: FuseTrials = 1
    # what the sweep registers: the best trial's weights (best), the mean prediction of
    # its restarts (ensemble; sweep.restarts >= 2) exported as one model, the fits of the
    # top trials weighed by greedy selection on the validation split (top_ensemble), or
    # its configuration trained again on train + validation for its best epoch count
    # (refit); auto: ensemble where a trial has several fits to average, else best
    # (bench/final_model.py: never below best on digits, 3 seeds, at the same wall time)
    final: Literal["auto", "best", "ensemble", "top_ensemble", "refit"] = "auto"
    seed: Seed = 0
    timeout: Annotated[float, Field(gt=0)] | None = None
    stop_when: StopWhen | None = None
    # earlier sweeps of the same storage whose finished trials the sampler learns from
    # (prior trials: they fit the search space, and do not count towards trials)
    warm_start: list[Annotated[str, Field(min_length=1, pattern=NAME_PATTERN)]] = Field(
        default_factory=list
    )
    # configurations run first, in this order: {search-space path: value}; a path not
    # given is sampled
    enqueue: list[dict[str, Any]] = Field(default_factory=list)


def sweep_problems(
    sweep: SweepConfig, objective: ObjectiveConfig, search_space: Mapping[str, Any], folds: int
) -> list[tuple[str, str]]:
    """What the sweep section gets wrong with the rest of the spec. Schedulers belong to
    Ray Tune; an Optuna pruner judges the trials of both backends (a Ray trial is a
    trial of the same study), but not with a scheduler. Options of a library class are
    checked against its signature."""
    problems = []
    if sweep.backend == "optuna" and sweep.scheduler != "none":
        problems.append(
            (
                "sweep.scheduler",
                f"'{sweep.scheduler}' is a Ray Tune scheduler: run with --backend ray "
                "(or use sweep.pruner with the Optuna backend)",
            )
        )
    if sweep.backend == "ray" and sweep.pruner != "none" and sweep.scheduler != "none":
        problems.append(
            (
                "sweep.pruner",
                f"'{sweep.pruner}' (Optuna's pruner) and sweep.scheduler "
                f"'{sweep.scheduler}' (Ray Tune's) would both stop trials: keep one, and "
                "set the other to none",
            )
        )
    bound = {"lcb": "max", "ucb": "min"}.get(sweep.restart_aggregate)
    if bound is not None and objective.mode != bound:
        side, other = ("lower", "ucb") if bound == "max" else ("upper", "lcb")
        message = (
            f"'{sweep.restart_aggregate}' ranks a {bound}imized metric by a {side} bound, "
            f"but {objective.metric} is {objective.mode}imized: use '{other}' "
            "(or mean, best)"
        )
        problems.append(("sweep.restart_aggregate", message))
    if sweep.final == "ensemble" and sweep.restarts * folds < 2:
        problems.append(
            (
                "sweep.final",
                "'ensemble' averages the best trial's restarts, but it trains one fit: "
                "set sweep.restarts to 2 or more (or use best)",
            )
        )
    problems += _fuse_problems(sweep, folds)
    problems += _pbt_problems(sweep, search_space, folds)
    for kind, name, options in (
        ("pruner", sweep.pruner, sweep.pruner_options),
        ("sampler", sweep.sampler, sweep.sampler_options),
        ("scheduler", sweep.scheduler, sweep.scheduler_options),
    ):
        if options:
            problems += _unknown_options(kind, name, options, OPTION_PARAMETERS[kind](name))
    if len(sweep.enqueue) > sweep.trials:
        problems.append(
            (
                "sweep.enqueue",
                f"{len(sweep.enqueue)} configurations are more than the sweep's "
                f"{sweep.trials} trials: raise sweep.trials or enqueue fewer",
            )
        )
    return problems


def _fuse_problems(sweep: SweepConfig, folds: int) -> list[tuple[str, str]]:
    """Trials fused into one batched model: one fold; on Ray, pruned by sweep.pruner."""
    if sweep.fuse_trials in (1, "auto"):  # auto trains one at a time where these say no
        return []
    if sweep.backend == "ray" and sweep.scheduler != "none":
        why = (
            f"a Tune trial carries a batch of trials, and Ray's scheduler '{sweep.scheduler}' "
            "would stop the whole batch: prune each trial with sweep.pruner and "
            "sweep.scheduler: none, or set 1"
        )
        return [("sweep.fuse_trials", f"{sweep.fuse_trials}: {why}")]
    if folds > 1:
        why = f"trials train fused on one fold; with data.folds {folds} set 1"
        return [("sweep.fuse_trials", f"{sweep.fuse_trials}: {why}")]
    return []


def _pbt_problems(
    sweep: SweepConfig, search_space: Mapping[str, Any], folds: int
) -> list[tuple[str, str]]:
    """PBT copies weights between trials: one fit per trial, only shape-keeping values."""
    problems: list[tuple[str, str]] = []
    if sweep.scheduler == "pbt" and sweep.final == "refit":
        problems.append(
            (
                "sweep.final",
                "'refit' trains one configuration again, but a PBT trial's values change "
                "as it trains: use best",
            )
        )
    if sweep.scheduler == "pbt" and (sweep.restarts > 1 or folds > 1):
        problems.append(
            (
                "sweep.scheduler",
                "'pbt' trains each trial once and copies weights between trials; "
                "it needs sweep.restarts: 1 and data.folds: 1",
            )
        )
    if sweep.scheduler == "pbt":
        for path in search_space:
            if path not in PBT_MUTABLE:
                problems.append(
                    (
                        f"search_space.{path}",
                        "'pbt' copies weights between trials, so it can only search "
                        f"values that keep their shapes: {', '.join(PBT_MUTABLE)}",
                    )
                )
    return problems


def _unknown_options(
    kind: str, name: str, options: Mapping[str, Any], allowed: list[str]
) -> list[tuple[str, str]]:
    """``sweep.<kind>_options`` keys the library's class does not take, with the list."""
    return [
        (f"sweep.{kind}_options.{key}", _not_an_option(kind, name, key, allowed))
        for key in options
        if key not in allowed
    ]


def _not_an_option(kind: str, name: str, key: str, allowed: list[str]) -> str:
    if kind == "sampler" and key == "seed":  # the library takes it, from sweep.seed
        return f"sampler '{name}' takes its seed from sweep.seed, not from its options"
    return (
        f"unknown option of {kind} '{name}'{did_you_mean(key, allowed)}; "
        f"allowed: {', '.join(allowed)}"
    )
