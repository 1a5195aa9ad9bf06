"""Compare sweeps: one ranked table of their trials, and the plots a user looks at next.

Rows come from the Optuna storage (state, value, params, epochs, duration) joined with
each trial's MLflow run (parameter count). Plots are Optuna's visualization module
(matplotlib backend) plus an overlay of the top trials' learning curves from MLflow;
they are written to a folder and logged to each sweep's parent run under ``compare/``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from sweeplab.search.analysis.status import trial_rows
from sweeplab.search.keys import ATTR_PARENT, TAG_SWEEP
from sweeplab.search.study import front, load_study
from sweeplab.spec import Experiment, InputError
from sweeplab.store import Store
from sweeplab.tracking.tracker import Tracker

STATE_ORDER = ("complete", "pruned", "running", "waiting", "failed")


class CompareError(InputError):
    """The sweeps cannot be compared (another objective)."""


@dataclass
class Row:
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
    trade_offs: dict[str, float] = field(default_factory=dict)  # the other objectives
    front: bool | None = None  # on a multi-objective sweep's Pareto front (None: one)


@dataclass
class Comparison:
    metric: str
    mode: str
    sweeps: list[str]
    rows: list[Row]
    plots: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # plots that could not be drawn, and why

    @property
    def param_keys(self) -> list[str]:
        return list(dict.fromkeys(k for row in self.rows for k in row.params))

    def records(self) -> list[dict[str, Any]]:
        return [asdict(row) for row in self.rows]


@dataclass
class _Sweep:
    name: str
    study: optuna.Study
    parent: str
    tracker: Tracker
    exp: Experiment


def compare(store: Store, names: list[str]) -> tuple[Comparison, list[_Sweep]]:
    """The ranked rows of sweeps ``names`` (complete trials by value, then the others)."""
    sweeps: list[_Sweep] = []
    rows: list[Row] = []
    metric = mode = ""
    for name in dict.fromkeys(names):
        study, exp, _ = load_study(store, name)
        objective = (exp.objective.metric, exp.objective.mode)
        if metric and objective != (metric, mode):
            raise CompareError(
                f"sweep {name!r} optimizes {objective[0]} ({objective[1]}), but "
                f"{sweeps[0].name!r} optimizes {metric} ({mode}): only sweeps of the same "
                "objective can be compared"
            )
        metric, mode = objective
        tracker = Tracker(store, exp.experiment_name)
        parent = str(study.user_attrs.get(ATTR_PARENT, ""))
        sweeps.append(_Sweep(name, study, parent, tracker, exp))
        rows += _rows(name, study, exp, tracker)
    sign = -1.0 if mode == "max" else 1.0

    def key(row: Row) -> tuple[int, float, str, int]:
        value = sign * row.value if row.value is not None else math.inf
        return (STATE_ORDER.index(row.state), value, row.sweep, row.trial)

    rows.sort(key=key)
    for rank, row in enumerate((r for r in rows if r.state == "complete"), start=1):
        row.rank = rank
    return Comparison(metric, mode, [s.name for s in sweeps], rows), sweeps


def _rows(name: str, study: optuna.Study, exp: Experiment, tracker: Tracker) -> list[Row]:
    """The sweep's trial rows (as ``sweeplab status`` reads them) with each run's
    parameter count from MLflow."""
    runs = tracker.search(f"tags.`{TAG_SWEEP}` = '{name}'")  # restart runs too: all pages
    counts = {r.info.run_id: r.data.metrics.get("param_count") for r in runs}
    names = [o.metric for o in exp.trade_offs]
    on_front = {t.number for t in front(study)} if names else set()
    rows = []
    for t in trial_rows(study, exp):
        param_count = counts.get(t.run_id)
        rows.append(
            Row(
                name,
                t.number,
                t.state,
                t.value,
                t.params,
                t.epochs,
                t.seconds,
                int(param_count) if param_count is not None else None,
                t.run_id,
                trade_offs=dict(zip(names, t.trade_offs, strict=False)),
                front=(t.number in on_front) if names else None,
            )
        )
    return rows


def _first_objective(trial: Any) -> float:
    return float(trial.values[0])


def _drawings(sweeps: list[_Sweep], target: str) -> list[tuple[str, Any]]:
    """(file name, function that draws it) of each of Optuna's plots for ``sweeps``, on
    the first objective's value (of several objectives too), and a multi-objective
    sweep's Pareto front on its first two."""
    from optuna.visualization import matplotlib as ov

    studies = [s.study for s in sweeps]
    first = _first_objective
    drawings: list[tuple[str, Any]] = [
        (
            "optimization_history.png",
            lambda: ov.plot_optimization_history(
                studies if len(studies) > 1 else studies[0], target=first, target_name=target
            ),
        )
    ]
    for s in sweeps:
        prefix = f"{s.name}_" if len(sweeps) > 1 else ""
        for name, plot in (
            ("parallel_coordinate", ov.plot_parallel_coordinate),
            ("param_importances", ov.plot_param_importances),
            ("slice", ov.plot_slice),
        ):
            drawings.append(
                (
                    f"{prefix}{name}.png",
                    lambda st=s.study, plot=plot: plot(st, target=first, target_name=target),
                )
            )
        if s.exp.trade_offs:
            names = [o.metric for o in s.exp.objectives][:2]
            drawings.append(
                (
                    f"{prefix}pareto_front.png",
                    lambda st=s.study, names=names: ov.plot_pareto_front(
                        st, target_names=names, targets=lambda t: t.values[:2]
                    ),
                )
            )
    return drawings


def write_plots(
    comparison: Comparison, sweeps: list[_Sweep], folder: Path, top_k: int = 5
) -> Comparison:
    """Draw the plots into ``folder`` and log them to each sweep's parent run."""
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    drawings = _drawings(sweeps, comparison.metric)
    # Optuna marks its matplotlib plots experimental, and switches the style to ggplot:
    # both are kept inside this block
    with warnings.catch_warnings(), plt.rc_context():
        warnings.simplefilter("ignore")
        for filename, draw in drawings:
            try:
                axes = draw()
            except (ValueError, RuntimeError) as exc:  # e.g. importances of one trial
                comparison.skipped.append(f"{filename}: {exc}")
                continue
            figure = _figure(axes)
            if figure is None or not figure.axes or not any(ax.has_data() for ax in figure.axes):
                comparison.skipped.append(f"{filename}: not enough finished trials")
                plt.close("all")
                continue
            figure.set_size_inches(max(figure.get_size_inches()[0], 8), 5)
            figure.tight_layout()
            figure.savefig(folder / filename, dpi=100)
            plt.close(figure)
            comparison.plots.append(folder / filename)
    curves = _top_curves(comparison, sweeps, top_k)
    if curves is not None:
        curves.savefig(folder / "top_learning_curves.png", dpi=100)
        plt.close(curves)
        comparison.plots.append(folder / "top_learning_curves.png")
    for s in sweeps:
        if s.parent:
            for path in comparison.plots:
                s.tracker.log_file(s.parent, path, "compare")
    return comparison


def _figure(axes: Any) -> Any:
    import numpy as np

    first = axes.flat[0] if isinstance(axes, np.ndarray) else axes
    return getattr(first, "figure", None)


def _top_curves(comparison: Comparison, sweeps: list[_Sweep], top_k: int) -> Any:
    """The objective metric per epoch of the ``top_k`` best complete trials, overlaid."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    client = sweeps[0].tracker.client
    top = [r for r in comparison.rows if r.rank is not None and r.run_id][:top_k]
    if not top:
        comparison.skipped.append("top_learning_curves.png: no complete trial")
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in top:
        history = sorted(
            client.get_metric_history(str(row.run_id), comparison.metric), key=lambda m: m.step
        )
        if not history:
            continue
        label = f"{row.sweep} #{row.trial}" if len(sweeps) > 1 else f"trial {row.trial}"
        ax.plot(
            [m.step + 1 for m in history],
            [m.value for m in history],
            marker=".",
            label=f"{label} ({row.value:.4g})",
        )
    if not ax.lines:
        plt.close(fig)
        comparison.skipped.append("top_learning_curves.png: the top trials logged no curve")
        return None
    ax.set(
        xlabel="epoch",
        ylabel=comparison.metric,
        title=f"learning curves of the top {len(ax.lines)} trials",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
