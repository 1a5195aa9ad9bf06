"""The sweep report: one self-contained, interactive HTML file in the parent run.

MLflow's artifact view shows an HTML artifact in a frame, so the report is where a
user compares a sweep's trials inside the MLflow UI: Optuna's plotly figures (the
optimization history, parallel coordinates, parameter importances, a multi-objective
sweep's Pareto front), the top trials' learning curves, and the trial table with a
link from each row to its MLflow run.

It opens offline: plotly.js travels inside the file, gzip-compressed (1.5 MB instead
of 4.8), and the page's only script of its own unpacks it with the browser's
``DecompressionStream`` and hands each figure to ``Plotly.newPlot``. The figures
themselves are plotly's JSON, as Optuna builds them.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.importance import BaseImportanceEvaluator

from sweeplab.search.analysis.report_page import REPORT, STYLE, UNPACK, page

if TYPE_CHECKING:
    from sweeplab.search.results import Comparison, Row
    from sweeplab.search.sweep import Sweep

__all__ = ["REPORT", "Curve", "OnceImportance", "optuna_drawings", "write_report"]


@dataclass
class Curve:
    """One top trial's objective metric per epoch."""

    label: str
    epochs: list[int]
    values: list[float]
    std: list[float] | None = None  # a trial with restarts: their spread per epoch


def write_report(
    comparison: Comparison,
    sweeps: Sequence[Sweep],
    curves: Sequence[Curve],
    importances: BaseImportanceEvaluator,
    path: Path,
    ui_url: str | None = None,
) -> Path:
    """Write the report of ``comparison`` to ``path``. ``importances``: the evaluator of
    the importance figure (``OnceImportance``, shared with the PNG: computed once);
    ``ui_url``: where the MLflow UI is, for the rows' links (relative links otherwise)."""
    figures = _figures(comparison, sweeps, curves, importances)
    sections = "\n".join(
        f'<h2>{html.escape(title)}</h2><div class="figure" data-figure="{i}"></div>'
        for i, (title, _) in enumerate(figures)
    )
    payload = json.dumps([json.loads(figure.to_json()) for _, figure in figures])
    body = page(
        title=html.escape(f"sweep report: {', '.join(comparison.sweeps)}"),
        style=STYLE,
        summary=_summary(comparison),
        sections=sections,
        table=_table(comparison, sweeps, ui_url),
        figures=payload.replace("</", "<\\/"),  # JSON inside a <script> element
        plotly=_plotly_gz(),
        unpack=UNPACK,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


class OnceImportance(BaseImportanceEvaluator):
    """Optuna's importance evaluators, run once per study: the PNG and the report draw
    the same importances, the costliest figure of a large sweep.

    fANOVA (Optuna's default) up to ``FANOVA_TRIALS`` complete trials; PED-ANOVA, which
    Optuna offers for large studies, beyond (fANOVA took 3 s on 300 trials of one
    parameter, PED-ANOVA 0.05 s)."""

    FANOVA_TRIALS = 200

    def __init__(self) -> None:
        self._done: dict[str, dict[str, float]] = {}
        self.used: dict[str, str] = {}  # study name → the evaluator's name

    def evaluate(
        self,
        study: Any,
        params: list[str] | None = None,
        *,
        target: Callable[[Any], float] | None = None,
    ) -> dict[str, float]:
        from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator
        from optuna.trial import TrialState

        key = f"{study.study_name}:{params}"
        if key not in self._done:
            complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            evaluator: BaseImportanceEvaluator = (
                FanovaImportanceEvaluator(seed=0)
                if complete <= self.FANOVA_TRIALS
                else PedAnovaImportanceEvaluator()
            )
            self.used[study.study_name] = type(evaluator).__name__.removesuffix(
                "ImportanceEvaluator"
            )
            self._done[key] = evaluator.evaluate(study, params, target=target)
        return self._done[key]


def _plotly_gz() -> str:
    from plotly.offline.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), 6)).decode()


def optuna_drawings(
    sweeps: Sequence[Sweep],
    metric: str,
    importances: BaseImportanceEvaluator,
    ov: Any,
    kinds: Sequence[str],
) -> list[tuple[str, str, Any]]:
    """(kind, sweep name, function that draws it) of each of Optuna's plots: the
    optimization history of all ``sweeps`` (sweep name ""), then each sweep's ``kinds``
    (of ``parallel_coordinate``, ``param_importances``, ``slice``) and a multi-objective
    sweep's Pareto front on its first two objectives. All are drawn on the first
    objective's value. ``ov``: ``optuna.visualization`` (plotly) or its ``matplotlib``
    module, which have the same functions; the PNGs and the report draw the same plots."""

    def first(trial: Any) -> float:
        return float(trial.values[0])

    studies = [s.study for s in sweeps]
    drawings: list[tuple[str, str, Any]] = [
        (
            "optimization_history",
            "",
            lambda: ov.plot_optimization_history(
                studies if len(studies) > 1 else studies[0], target=first, target_name=metric
            ),
        )
    ]
    for s in sweeps:
        name = s.name if len(sweeps) > 1 else ""
        for kind in kinds:
            plot = getattr(ov, f"plot_{kind}")
            if kind == "param_importances":
                plot = partial(plot, evaluator=importances)
            drawings.append(
                (
                    kind,
                    name,
                    lambda st=s.study, plot=plot: plot(st, target=first, target_name=metric),
                )
            )
        if s.exp.trade_offs:
            names = [o.metric for o in s.exp.objectives][:2]
            drawings.append(
                (
                    "pareto_front",
                    name,
                    lambda st=s.study, names=names: ov.plot_pareto_front(
                        st, target_names=names, targets=lambda t: t.values[:2]
                    ),
                )
            )
    return drawings


TITLES = {
    "optimization_history": "optimization history",
    "parallel_coordinate": "parallel coordinates",
    "param_importances": "parameter importances",
    "pareto_front": "Pareto front",
}


def _figures(
    comparison: Comparison,
    sweeps: Sequence[Sweep],
    curves: Sequence[Curve],
    importances: BaseImportanceEvaluator,
) -> list[tuple[str, Any]]:
    """(title, plotly figure) of each figure that can be drawn."""
    import warnings

    from optuna import visualization as ov

    kinds = ("parallel_coordinate", "param_importances")
    figures = []
    with warnings.catch_warnings():  # Optuna marks some plots experimental
        warnings.simplefilter("ignore")
        for kind, name, draw in optuna_drawings(sweeps, comparison.metric, importances, ov, kinds):
            title = TITLES[kind] + (f" ({name})" if name else "")
            try:
                figures.append((title, draw()))
            except (ValueError, RuntimeError) as exc:  # e.g. importances of one trial
                comparison.skipped.append(f"{REPORT}: {title}: {exc}")
    if curves:
        figures.append(_curves_figure(curves, comparison.metric))
    return figures


def _curves_figure(curves: Sequence[Curve], metric: str) -> tuple[str, Any]:
    """The top trials' learning curves; a trial with restarts with its spread as error bars."""
    import plotly.graph_objects as go

    figure = go.Figure(
        [
            go.Scatter(
                x=c.epochs,
                y=c.values,
                mode="lines+markers",
                name=c.label,
                error_y={"type": "data", "array": c.std, "visible": True} if c.std else None,
            )
            for c in curves
        ]
    )
    figure.update_layout(xaxis_title="epoch", yaxis_title=metric)
    return f"learning curves of the top {len(curves)} trials", figure


def _summary(comparison: Comparison) -> str:
    states: dict[str, int] = {}
    for row in comparison.rows:
        states[row.state] = states.get(row.state, 0) + 1
    counts = ", ".join(f"{n} {state}" for state, n in states.items())
    best = next((r for r in comparison.rows if r.rank == 1), None)
    line = f"{len(comparison.rows)} trials ({counts}); objective {comparison.metric} "
    line += f"({comparison.mode})"
    if best is not None and best.value is not None:
        line += f"; best: trial {best.trial} with {best.value:.6g}"
    several = len(comparison.sweeps) > 1
    yardsticks = [
        f"{y.sweep}: {text}" if several else text
        for y in comparison.yardsticks
        for text in y.lines()
    ]
    return "<br>".join(html.escape(text) for text in [line, *yardsticks])


def _table(comparison: Comparison, sweeps: Sequence[Sweep], ui_url: str | None) -> str:
    """The trial table: one row per trial, linked to its MLflow run."""
    experiments = {s.name: s.tracker.experiment_id for s in sweeps}
    keys = comparison.param_keys
    trade_offs = list(dict.fromkeys(k for r in comparison.rows for k in r.trade_offs))
    several = len(comparison.sweeps) > 1
    head = ["rank", *(["sweep"] if several else []), "trial", "state", comparison.metric]
    gpu = any(r.peak_gpu_mb is not None for r in comparison.rows)
    head += ["±std", *trade_offs, *keys, "epochs", "seconds", "param_count", "peak MB"]
    head += ["peak GPU MB"] * gpu + ["MLflow run"]
    base = (ui_url or "").rstrip("/")
    lines = []
    for r in comparison.rows:
        cells = [_num(r.rank), *([r.sweep] if several else []), str(r.trial), r.state]
        cells += [_num(r.value), _num(r.std), *(_num(r.trade_offs.get(k)) for k in trade_offs)]
        cells += [_value(r.params.get(k)) for k in keys]
        cells += [_num(r.epochs), _num(r.seconds), _num(r.param_count), _num(r.peak_rss_mb)]
        cells += [_num(r.peak_gpu_mb)] * gpu
        escaped = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        link = _link(base, experiments[r.sweep], r)
        lines.append(f'<tr data-trial="{r.trial}">{escaped}<td>{link}</td></tr>')
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _link(base: str, experiment_id: str, row: Row) -> str:
    if not row.run_id:
        return ""
    path = f"/#/experiments/{experiment_id}/runs/{row.run_id}"
    href, run = html.escape(base + path), html.escape(path)
    return f'<a href="{href}" data-run="{run}">{html.escape(row.run_id[:8])}</a>'


def _num(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)
