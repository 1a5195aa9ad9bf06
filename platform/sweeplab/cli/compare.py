"""sweeplab compare SWEEP [SWEEP ...]: ranked trials, plots written and logged to MLflow."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from sweeplab.cli._common import (
    STORAGE,
    STORE,
    TRACKING_URI,
    UI_URL,
    err,
    fail,
    handle_errors,
    num,
    out,
    plain_table,
)
from sweeplab.cli.status import PLAIN_ROWS


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


@handle_errors
def compare(
    sweeps: list[str] = typer.Argument(..., help="One or more sweep names (same objective)."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw and log the plots."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Folder for the plots [default: STORE/compare/SWEEP]."
    ),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Trials in the learning-curve overlay."),
    redraw: bool = typer.Option(
        False, "--redraw", help="Draw the plots again even if the trials have not changed."
    ),
    ui_url: str | None = UI_URL,
    force: bool = typer.Option(
        False, "--force", help="Rank sweeps together even when their dataset or split differ."
    ),
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
) -> None:
    """Rank the trials of one or more sweeps; write optimization history, parallel
    coordinates, parameter importances, slices and the top trials' learning curves, and
    an interactive HTML report (report.html) that the MLflow UI shows in the parent run.
    A sweep's end draws them; they are drawn again only when its trials have changed."""
    from sweeplab.cli._common import open_store, quiet_libraries

    where = open_store(store, tracking_uri, storage, reading=True)
    if not where.storage_exists():
        raise fail(f"no sweeps yet: {where.storage_url} does not exist")
    if plots and where.read_only:  # they are drawn into the store and logged to its runs
        err.print("no plots: they are written into the store and logged to its runs")
        plots = False
    quiet_libraries()
    from sweeplab.search import compare as compare_sweeps
    from sweeplab.search import write_plots

    comparison, studies = compare_sweeps(where, sweeps, force=force)
    if plots:
        folder = out_dir or _inside(where.root / "compare", "+".join(comparison.sweeps))
        err.print(f"plots in {folder} …")
        write_plots(comparison, studies, folder, top_k, ui_url, redraw)
        if comparison.reused:
            err.print("the plots are current (drawn from these trials); --redraw draws them again")
        for skipped in comparison.skipped:
            err.print(f"skipped {skipped}")
    rows = _records(comparison, several=len(comparison.sweeps) > 1)
    if fmt is Format.json:
        payload = {
            "metric": comparison.metric,
            "mode": comparison.mode,
            "sweeps": comparison.sweeps,
            "trials": comparison.records(),
            "plots": [str(p) for p in comparison.plots],
            "report": str(comparison.report) if comparison.report else None,
            "baselines": {
                y.sweep: [dataclasses.asdict(b) for b in y.baselines] for y in comparison.yardsticks
            },
        }
        out.print(json.dumps(payload, indent=2))
    elif fmt is Format.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
        out.print(buffer.getvalue().rstrip("\n"))
    elif fmt is Format.markdown:
        out.print(_markdown(rows))
    else:
        _summary(comparison, rows, plots)


def _summary(comparison: Any, rows: list[dict[str, Any]], plots: bool) -> None:
    """The table, the tie rule, the baselines, and where the plots and report are."""
    _table(rows, comparison.sweeps)
    if any(r.resolution for r in comparison.rows):
        out.print(
            "Ranks: trials within one validation example of each other go to the lower "
            "mean val_loss at their best epochs (the tie rule)",
            markup=False,
            highlight=False,
        )
    for yardstick in comparison.yardsticks:
        for line in yardstick.lines():
            prefix = f"{yardstick.sweep}: " if len(comparison.sweeps) > 1 else ""
            out.print(prefix + line, markup=False, highlight=False)
    if plots and comparison.plots:
        out.print(
            f"{len(comparison.plots)} plots in {comparison.plots[0].parent}, also logged "
            "to each sweep's parent run under compare/"
        )
    if plots and comparison.report is not None:
        out.print(f"report: {comparison.report} (in the MLflow UI: the parent run's report.html)")


def _records(comparison: Any, several: bool) -> list[dict[str, Any]]:
    keys = comparison.param_keys
    spread = any(r.std is not None for r in comparison.rows)  # trials with restarts
    gpu = any(r.peak_gpu_mb is not None for r in comparison.rows)
    rows = []
    for r in comparison.rows:
        row: dict[str, Any] = {"rank": r.rank if r.rank is not None else ""}
        if several:
            row["sweep"] = r.sweep
        state = f"prior ({r.prior})" if r.prior else r.state  # a warm start's, not ranked
        row |= {"trial": r.trial, "state": state, comparison.metric: _cell(r.value)}
        if spread:  # the standard deviation of the trial's fits (restarts, folds)
            row[f"{comparison.metric}_std"] = _cell(r.std)
        row |= {k: _cell(v) for k, v in r.trade_offs.items()}  # a multi-objective sweep's
        if r.front is not None:
            row["front"] = "*" if r.front else ""
        row |= {k: _cell(r.params.get(k)) for k in keys}
        row |= {
            "epochs": _cell(r.epochs),
            "seconds": _cell(r.seconds),
            "param_count": _cell(r.param_count),
            "peak_rss_mb": _cell(r.peak_rss_mb),  # the fits' peak memory
        }
        if gpu:
            row["peak_gpu_mb"] = _cell(r.peak_gpu_mb)
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    return num(value, missing="")  # an empty CSV field, not a dash


def _table(rows: list[dict[str, Any]], sweeps: list[str]) -> None:
    from rich.table import Table

    if len(rows) > PLAIN_ROWS:  # rich measures every cell: seconds for a large sweep
        out.print(f"compare {', '.join(sweeps)}")
        cells = [[str(v) for v in row.values()] for row in rows]
        out.print(plain_table(list(rows[0]), cells), markup=False, highlight=False)
        return
    table = Table(*(rows[0] if rows else ["trial"]), title=f"compare {', '.join(sweeps)}")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    out.print(table)


def _markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row[k]) for k in head) + " |" for row in rows]
    return "\n".join(lines)


def _inside(base: Path, name: str) -> Path:
    """``base / name``, refused if ``name`` (sweep names, from the study storage) would
    lead out of ``base``: a study created outside sweeplab may have any name."""
    folder = (base / name).resolve()
    if folder.parent != base.resolve():
        raise fail(f"sweep name {name!r} is not a folder name; use --out FOLDER for the plots", 2)
    return folder
