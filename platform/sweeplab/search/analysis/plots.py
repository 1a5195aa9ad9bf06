"""The plots of compared sweeps, and their report.

PNGs for the README and terminals (Optuna's visualization module, matplotlib backend,
and the top trials' learning curves) and the interactive HTML report
(``analysis.report``), written to a folder and logged to each sweep's parent run: the
PNGs under ``compare/``, the report as ``report.html``.

Whoever finishes a sweep draws them once (``draw_for_sweep``). They are a function of
the trials, so the parent run keeps a fingerprint of what they were drawn from
(``sweeplab.plots``): ``compare`` on a sweep that has not changed since finds them
current and draws nothing (``--redraw`` draws them again).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeplab.search.analysis.compare import ranked
from sweeplab.search.analysis.report_page import REPORT
from sweeplab.search.curves import draw_missing
from sweeplab.search.results import Comparison, Row
from sweeplab.search.sweep import Sweep
from sweeplab.store import Store

if TYPE_CHECKING:
    from sweeplab.search.analysis.report import Curve, OnceImportance

TAG_PLOTS = "sweeplab.plots"  # on a parent run: the fingerprint of the plots last drawn
TOP_CURVES = "top_learning_curves.png"
MANIFEST = "plots.json"  # in the folder: the fingerprint, the files drawn, those skipped


def write_plots(
    comparison: Comparison,
    sweeps: list[Sweep],
    folder: Path,
    top_k: int = 5,
    ui_url: str | None = None,
    redraw: bool = False,
) -> Comparison:
    """Draw the plots and the report into ``folder`` and log them to each sweep's parent
    run; nothing is drawn when the ones there are current (unless ``redraw``)."""
    where = ui_url or ui_address(sweeps[0].tracker.store)
    mark = fingerprint(sweeps, top_k, where)
    if not redraw and _current(comparison, sweeps, folder, mark):
        return comparison
    # Optuna's importances load scikit-learn (a second): only when drawing
    from sweeplab.search.analysis.report import OnceImportance, write_report

    folder.mkdir(parents=True, exist_ok=True)
    importances = OnceImportance()
    _write_pngs(comparison, sweeps, folder, importances)
    top = [r for r in comparison.rows if r.rank is not None and r.run_id][:top_k]
    for s in sweeps:  # the trials' own figures that their sweep's end did not draw
        draw_missing(s.tracker, s.exp, [str(r.run_id) for r in top if r.sweep == s.name])
    curves = _top_histories(comparison, sweeps, top)
    if curves:
        _save_top_curves(comparison, curves, folder / TOP_CURVES)
    report = write_report(comparison, sweeps, curves, importances, folder / REPORT, where)
    comparison.report = report
    _log(comparison, sweeps, report, mark)
    manifest = {"mark": mark, "plots": [p.name for p in comparison.plots]}
    (folder / MANIFEST).write_text(json.dumps({**manifest, "skipped": comparison.skipped}))
    return comparison


def _log(comparison: Comparison, sweeps: list[Sweep], report: Path, mark: str) -> None:
    """Into each sweep's parent run: one sweep's plots under ``compare/`` and its report
    as ``report.html``; a comparison of several under ``compare/A+B/``, so that it does
    not replace a sweep's own."""
    several = len(sweeps) > 1
    folder = "compare/" + "+".join(comparison.sweeps) if several else "compare"
    for s in sweeps:
        if not s.parent:
            continue
        for path in comparison.plots:
            s.tracker.log_file(s.parent, path, folder)
        s.tracker.log_file(s.parent, report, folder if several else None)
        if not several:
            s.tracker.set_tags(s.parent, {TAG_PLOTS: mark})


def draw_for_sweep(sweep: Sweep, top_k: int = 5) -> Comparison:
    """The sweep's plots and report, at its end, into ``STORE/compare/NAME``."""
    folder = sweep.store.root / "compare" / sweep.name
    return write_plots(ranked([sweep]), [sweep], folder, top_k)


def ui_address(store: Store) -> str:
    """Where the MLflow UI of ``store`` is, for a report opened as a file (inside the UI
    its links follow the page): ``SWEEPLAB_UI_URL``, the tracking server, or
    ``sweeplab ui``'s default address for an embedded store."""
    import os

    uri = store.tracking_uri
    default = uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return os.environ.get("SWEEPLAB_UI_URL") or default


def fingerprint(sweeps: list[Sweep], top_k: int, ui_url: str) -> str:
    """What the plots are drawn from: each sweep's trials (number, state, values, end),
    the sweeps compared, ``top_k`` and the UI address of the report's links."""
    digest = hashlib.sha256(json.dumps([top_k, ui_url, [s.name for s in sweeps]]).encode())
    for s in sweeps:
        for t in s.study.get_trials(deepcopy=False):
            end = t.datetime_complete.isoformat() if t.datetime_complete else None
            digest.update(json.dumps([t.number, t.state.name, t.values, end]).encode())
    return digest.hexdigest()[:32]


def _current(comparison: Comparison, sweeps: list[Sweep], folder: Path, mark: str) -> bool:
    """The plots in ``folder`` were drawn from these trials and logged to every parent."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = [folder / name for name in manifest.get("plots", [])]
    if manifest.get("mark") != mark or not all(f.is_file() for f in [*files, folder / REPORT]):
        return False
    for s in sweeps if len(sweeps) == 1 else []:  # a sweep's own plots: also in its run
        tags = s.tracker.client.get_run(s.parent).data.tags if s.parent else {}
        if tags.get(TAG_PLOTS) != mark:
            return False
    comparison.plots, comparison.report = files, folder / REPORT
    comparison.skipped = list(manifest.get("skipped", []))
    comparison.reused = True
    return True


def _write_pngs(
    comparison: Comparison, sweeps: list[Sweep], folder: Path, importances: OnceImportance
) -> None:
    """Optuna's plots (matplotlib) into ``folder``."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    from sweeplab.search.analysis.report import optuna_drawings

    kinds = ("parallel_coordinate", "param_importances", "slice")
    drawings = [
        (f"{name}_{kind}.png" if name else f"{kind}.png", draw)
        for kind, name, draw in optuna_drawings(sweeps, comparison.metric, importances, ov, kinds)
    ]
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


def _figure(axes: Any) -> Any:
    import numpy as np

    first = axes.flat[0] if isinstance(axes, np.ndarray) else axes
    return getattr(first, "figure", None)


def _top_histories(comparison: Comparison, sweeps: list[Sweep], top: list[Row]) -> list[Curve]:
    """The objective metric per epoch of each of the ``top`` trials that logged one."""
    from sweeplab.search.analysis.report import Curve

    client = sweeps[0].tracker.client
    curves = []
    for row in top:
        history = sorted(
            client.get_metric_history(str(row.run_id), comparison.metric), key=lambda m: m.step
        )
        if history:
            label = f"{row.sweep} #{row.trial}" if len(sweeps) > 1 else f"trial {row.trial}"
            # a trial with restarts logs their mean per epoch, and its spread
            spread = {
                m.step: m.value
                for m in client.get_metric_history(str(row.run_id), f"{comparison.metric}_std")
            }
            curves.append(
                Curve(
                    f"{label} ({row.value:.4g})",
                    [m.step + 1 for m in history],
                    [m.value for m in history],
                    [spread.get(m.step, 0.0) for m in history] if spread else None,
                )
            )
    if not top:
        comparison.skipped.append(f"{TOP_CURVES}: no complete trial")
    elif not curves:
        comparison.skipped.append(f"{TOP_CURVES}: the top trials logged no curve")
    return curves


def _save_top_curves(comparison: Comparison, curves: list[Curve], path: Path) -> None:
    """The top trials' curves overlaid (matplotlib)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from sweeplab.tracking.plots import band  # ±1 std of a trial's restarts

    fig, ax = plt.subplots(figsize=(8, 5))
    for curve in curves:
        (line,) = ax.plot(curve.epochs, curve.values, marker=".", label=curve.label)
        if curve.std:
            band(ax, curve.epochs, curve.values, curve.std, line.get_color())
    ax.set(
        xlabel="epoch",
        ylabel=comparison.metric,
        title=f"learning curves of the top {len(curves)} trials",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    comparison.plots.append(path)
