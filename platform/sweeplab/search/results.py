"""What reading a sweep gives back: typed values, built with keywords, never patched.

``Trial`` is one trial as a user sees it (spec values, not Optuna's parameter names);
``TrialEvent`` what a progress display or a callback gets after each trial;
``SweepResult`` a sweep's counts and best trial; ``Row`` and ``Comparison`` what
``compare`` ranks. Like MLflow's entities, they hold data only: the modules that read
the study fill them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from optuna.trial import FrozenTrial

from sweeplab.search import keys
from sweeplab.search.states import Counts, SweepState, TrialState
from sweeplab.spec import CategoricalDist, LayersDist, SearchSpace
from sweeplab.spec._space import decode_choice
from sweeplab.store import Store
from sweeplab.training.baselines import Baseline


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One trial of a sweep."""

    number: int
    state: TrialState
    params: dict[str, Any]  # spec values by dotted path; an entry not sampled is absent
    values: tuple[float, ...] = ()  # every objective's value (complete trials only)
    spread: float | None = None  # the standard deviation of its fits' values, if several
    run_id: str | None = None  # its MLflow run
    reason: str | None = None  # why it failed, or that its params were drawn before
    epochs: int | None = None
    seconds: float | None = None
    prior: str | None = None  # a warm start's prior trial: "SWEEP#NUMBER" it came from
    test: dict[str, float] = field(default_factory=dict)  # its model's test metrics
    resolution: float | None = None  # its accuracy's step on the validation split
    tie_loss: float | None = None  # what breaks a tie (ranking.py): mean validation loss
    peak_rss_mb: float | None = None  # the highest resident memory while its fits ran
    peak_gpu_mb: float | None = None  # the most GPU memory torch allocated meanwhile
    batch: str | None = None  # sweep.fuse_trials: the trials it trained with, "3,4,5"

    @property
    def value(self) -> float | None:
        """The value on the (first) objective; None unless it completed."""
        return self.values[0] if self.values else None

    @property
    def trade_offs(self) -> tuple[float, ...]:
        """The other objectives' values (a multi-objective sweep)."""
        return self.values[1:]


def decoded_params(space: SearchSpace, trial: FrozenTrial) -> dict[str, Any]:
    """A trial's params as spec values (categorical keys mapped back to their YAML values,
    a layers entry's depth and widths as one list); an entry not sampled is absent."""
    out: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, LayersDist):
            depth = trial.params.get(dist.part(key, "depth"))
            if depth is not None:
                out[key] = [trial.params[dist.part(key, i)] for i in range(int(depth))]
        elif key in trial.params:
            value = trial.params[key]
            out[key] = decode_choice(dist, value) if isinstance(dist, CategoricalDist) else value
    return out


def trial_of(frozen: FrozenTrial, space: SearchSpace) -> Trial:
    """The user's view of an Optuna trial of a sweep over ``space``. Epochs: as recorded,
    or the last reported epoch of a trial that did not complete."""
    attrs = frozen.user_attrs
    epochs = attrs.get(keys.ATTR_EPOCHS)
    if epochs is None and frozen.last_step is not None:
        epochs = frozen.last_step + 1
    # a PBT trial ends with other values than it started with: its model was trained by those
    params = attrs.get(keys.ATTR_FINAL_PARAMS) or decoded_params(space, frozen)
    return Trial(
        number=frozen.number,
        state=TrialState.of(frozen),
        params=params,
        values=tuple(float(v) for v in frozen.values) if frozen.values else (),
        spread=attrs.get(keys.ATTR_STD),
        run_id=attrs.get(keys.ATTR_RUN),
        reason=_reason(frozen),
        epochs=epochs,
        seconds=frozen.duration.total_seconds() if frozen.duration else None,
        prior=attrs.get(keys.ATTR_PRIOR),
        test={k: float(v) for k, v in attrs.items() if k.startswith("test_")},
        resolution=attrs.get(keys.ATTR_RESOLUTION),
        tie_loss=attrs.get(keys.ATTR_TIE_LOSS),
        peak_rss_mb=attrs.get(keys.ATTR_PEAK_RSS),
        peak_gpu_mb=attrs.get(keys.ATTR_PEAK_GPU),
        batch=attrs.get(keys.ATTR_BATCH),
    )


def _reason(t: FrozenTrial) -> str | None:
    """Why it failed (and its retry), or that the sampler drew its params before."""
    reason = t.user_attrs.get(keys.ATTR_REASON)
    notes = [] if reason is None else [str(reason)]
    if keys.ATTR_RETRIED in t.user_attrs:
        notes = [f"{reason} (retried as #{t.user_attrs[keys.ATTR_RETRIED]})"]
    if keys.ATTR_RESUMED_AT in t.user_attrs:
        notes.append(
            f"went on from #{t.user_attrs.get(keys.ATTR_RETRY_OF)}'s checkpoint at epoch "
            f"{t.user_attrs[keys.ATTR_RESUMED_AT]}"
        )
    if keys.ATTR_SAME_AS in t.user_attrs:
        notes.append(
            f"same params as #{t.user_attrs[keys.ATTR_SAME_AS]}, drawn again by the sampler"
        )
    if keys.ATTR_PRIOR in t.user_attrs:
        notes.append(f"prior trial: {t.user_attrs[keys.ATTR_PRIOR]} (warm start)")
    return "; ".join(notes) or None


@dataclass(frozen=True, kw_only=True)
class TrialEvent:
    """Sent after each trial that ends, for progress displays and callbacks."""

    trial: Trial
    counts: Counts
    best_value: float | None
    total: int  # the trials the sweep runs to

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def state(self) -> TrialState:
        return self.trial.state

    @property
    def value(self) -> float | None:
        return self.trial.value

    @property
    def reason(self) -> str | None:
        return self.trial.reason


class Registered(NamedTuple):
    """A registered model version: ``name/version`` (a pair: ``name, version = ...``)."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """A sweep's state, counts and best trial (or the trial chosen), read at one moment."""

    name: str
    store: Store
    experiment: str
    experiment_id: str
    parent_run_id: str
    state: SweepState
    counts: Counts
    target: int  # the trials it runs to
    best: Trial | None = None
    registered: Registered | None = None
    stop_reason: str | None = None
    warm_start: str | None = None  # what a warm start took and skipped, in one line
    baselines: tuple[Baseline, ...] = ()  # scikit-learn's on the same test rows
    final: str = "best"  # what it registers (sweep.final, auto resolved)
    registered_score: dict[str, Any] | None = None  # {metric, value} of what it registered

    @property
    def best_trial(self) -> int | None:
        return None if self.best is None else self.best.number

    @property
    def best_value(self) -> float | None:
        return None if self.best is None else self.best.value

    @property
    def best_params(self) -> dict[str, Any]:
        return {} if self.best is None else self.best.params

    @property
    def best_run_id(self) -> str | None:
        return None if self.best is None else self.best.run_id

    @property
    def test(self) -> dict[str, float]:
        return {} if self.best is None else self.best.test

    @property
    def yardstick(self) -> Yardstick:
        return Yardstick.of(self.name, self.test, self.baselines, self.registered_score)


@dataclass(frozen=True, kw_only=True)
class Yardstick:
    """A sweep's registered model and best trial on the test rows beside its baselines
    (none: not fit)."""

    sweep: str
    test: dict[str, float]  # the best trial's test metrics (empty before one completed)
    baselines: tuple[Baseline, ...]
    registered: dict[str, float] | None = None  # the registered version's, where it has one

    @classmethod
    def of(
        cls,
        sweep: str,
        test: dict[str, float],
        baselines: tuple[Baseline, ...],
        registered_score: dict[str, Any] | None,
    ) -> Yardstick:
        """From what the study stores: ``registered_score`` is its {metric, value}."""
        held = registered_score
        registered = None if held is None else {str(held["metric"]): float(held["value"])}
        return cls(sweep=sweep, test=test, baselines=baselines, registered=registered)

    @property
    def held(self) -> dict[str, float]:
        """What the baselines are held against: the registered version, else the best trial."""
        return self.registered or self.test

    @property
    def ranked(self) -> list[Baseline]:
        """The baselines, best first."""
        return sorted(self.baselines, key=lambda b: -b.value if b.higher_is_better else b.value)

    @property
    def beaten_by(self) -> list[Baseline]:
        """The baselines that scored better than the registered model (or the best
        trial), best first."""
        test = self.held
        return [b for b in self.ranked if b.metric in test and b.beats(test[b.metric])]

    def lines(self) -> list[str]:
        """The registered model's (or the best trial's) test score beside the baselines'
        (best first), and which beat it; none where the sweep fit none."""
        if not self.baselines:
            return []
        metric = self.baselines[0].metric
        own = self.held.get(metric)
        trial = self.test.get(metric)
        if self.registered is not None and own is not None:
            cells = [f"registered {own:.4f}"]
            if trial is not None and abs(trial - own) > 1e-6:
                cells.append(f"best trial {trial:.4f}")
        else:
            cells = [f"sweep {own:.4f}"] if own is not None else []
        cells += [f"{b.name} {b.value:.4f}" for b in self.ranked]
        lines = [
            f"Baselines ({metric} on the same test rows; scikit-learn defaults fit on train + "
            f"validation): {' · '.join(cells)}"
        ]
        beaten = self.beaten_by
        if beaten:
            names = ", ".join(b.name for b in beaten)
            lines.append(f"The sweep loses to {names} ({beaten[0].value:.4f} against {own:.4f}).")
        elif own is not None:
            lines.append(f"No baseline beats the sweep on {metric}.")
        return lines


# ------------------------------------------------------------------------- compare


@dataclass(kw_only=True)
class Row:
    """One trial in ``compare``'s ranking."""

    sweep: str
    trial: int
    state: str
    value: float | None
    params: dict[str, Any]
    epochs: int | None
    seconds: float | None
    param_count: int | None
    run_id: str | None
    rank: int | None = None
    std: float | None = None  # the spread of its fits' values (restarts, folds)
    trade_offs: dict[str, float] = field(default_factory=dict)  # the other objectives
    front: bool | None = None  # on a multi-objective sweep's Pareto front (None: one)
    prior: str | None = None  # a warm start's prior trial: where it came from
    resolution: float | None = None  # its accuracy's step on the validation split
    tie_loss: float | None = None  # what breaks a tie (ranking.py)
    peak_rss_mb: float | None = None  # the peak memory of its fits (machine.PeakMemory)
    peak_gpu_mb: float | None = None


@dataclass(kw_only=True)
class Comparison:
    """The ranked trials of one or more sweeps of one objective, and what was drawn."""

    metric: str
    mode: str
    sweeps: list[str]
    rows: list[Row]
    plots: list[Path] = field(default_factory=list)
    report: Path | None = None  # the HTML report, also in each sweep's parent run
    reused: bool = False  # the plots and report were current: not drawn again
    skipped: list[str] = field(default_factory=list)  # plots that could not be drawn, and why
    yardsticks: list[Yardstick] = field(default_factory=list)  # per sweep, where it has one

    @property
    def param_keys(self) -> list[str]:
        return list(dict.fromkeys(k for row in self.rows for k in row.params))

    def records(self) -> list[dict[str, Any]]:
        return [asdict(row) for row in self.rows]
