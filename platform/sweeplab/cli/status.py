"""sweeplab status: the trials of a sweep (or the list of sweeps) from the Optuna storage."""

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
    fail,
    handle_errors,
    num,
    out,
    plain_table,
    quiet_libraries,
)

# Past this many trials the table is printed as plain aligned text: rich measured every
# cell of a 1,000-trial table for a second
PLAIN_ROWS = 200


class StatusFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


@handle_errors
def status(
    name: str | None = typer.Argument(None, help="Sweep name; omit to list the sweeps."),
    fmt: StatusFormat = typer.Option(
        StatusFormat.table, "--format", "-f", help="Output format (json, csv: for scripts)."
    ),
    store: Path | None = STORE,
    storage: str | None = STORAGE,
) -> None:
    """Trials of a sweep: complete / pruned / failed / running, and the best so far."""
    from sweeplab.cli._common import open_store

    where = open_store(store, storage=storage, reading=True)
    if not where.storage_exists():
        raise fail(f"no sweeps yet: {where.storage_url} does not exist")
    quiet_libraries(mlflow=False)  # status reads the Optuna storage only
    from sweeplab.search import list_sweeps, sweep_status

    if fmt is not StatusFormat.table:
        _print_records(where, name, fmt)
        return
    if name is None:
        _print_sweeps(list_sweeps(where))
        return
    report = sweep_status(where, name)
    if len(report.rows) > PLAIN_ROWS:
        out.print(f"sweep {report.name}")
        out.print(plain_table(*_trials_cells(report)), markup=False, highlight=False)
    else:
        out.print(_trials_table(report))
    c = report.counts
    out.print(
        f"{c.complete} complete, {c.pruned} pruned, {c.failed} failed, "
        f"{c.running} running of {report.trials} requested"
        + (f" ({c.retried} failed attempts retried)" if c.retried else "")
        + (f"; {c.waiting} queued" if c.waiting else "")
    )
    out.print(
        f"state: {report.state.value}" + (f" ({report.stop_reason})" if report.stop_reason else "")
    )
    if report.warm_start:
        out.print(f"{report.warm_start}; prior trials are marked 'prior' and not counted")
    if report.best_number is not None:
        out.print(f"best: trial #{report.best_number}, {report.metric} = {num(report.best_value)}")
    if report.tied:
        out.print(_tie_line(report.tied, report.metric), markup=False, highlight=False)
    if report.yardstick is not None:
        for line in report.yardstick.lines():
            out.print(line, markup=False, highlight=False)
    if report.front:
        objectives = " against ".join([report.metric, *report.trade_offs])
        numbers = ", ".join(f"#{n}" for n in report.front)
        out.print(f"Pareto front ({objectives}), marked *: {len(report.front)} trials: {numbers}")


def _print_sweeps(sweeps: list[Any]) -> None:
    """One row per sweep: its state, counts and best value."""
    from rich.table import Table

    from sweeplab.search import TrialState

    shown = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED, TrialState.RUNNING)
    table = Table("sweep", "state", "trials", *(s.value for s in shown), "best")
    for s in sweeps:
        c = s.counts
        table.add_row(
            s.name,
            s.state.value,
            str(s.trials),
            str(c.complete),
            str(c.pruned),
            str(c.failed),
            str(c.running),
            num(s.best_value),
        )
    out.print(table)


def _tie_line(tied: list[Any], metric: str) -> str:
    """How the tie rule (search/ranking.py) ranked the trials tied with the best."""
    step = tied[0].resolution
    cells = ", ".join(f"#{t.number} {num(t.tie_loss)}" for t in tied)
    return (
        f"tie: {len(tied)} trials are within one validation example (1/{round(1 / step)}) of "
        f"the best {metric}; the lower mean val_loss at their best epochs ranks first: {cells}"
    )


def _print_records(where: Any, name: str | None, fmt: StatusFormat) -> None:
    """``--format json`` or ``csv``: the sweeps, or one sweep with its trials."""
    from sweeplab.search import list_sweeps, sweep_status

    if name is None:
        records = [_sweep_record(s) for s in list_sweeps(where)]
        payload: Any = records
    else:
        report = sweep_status(where, name)
        records, payload = _trial_records(report), _sweep_record(report)
    if fmt is StatusFormat.json:
        out.print(json.dumps(payload, indent=2), markup=False, highlight=False)
        return
    buffer = io.StringIO()
    head = list(dict.fromkeys(k for r in records for k in r)) or ["sweep"]
    writer = csv.DictWriter(buffer, fieldnames=head, restval="")
    writer.writeheader()
    writer.writerows(  # a layers entry's widths: one CSV field
        {k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in records
    )
    out.print(buffer.getvalue().rstrip("\n"), markup=False, highlight=False)


def _sweep_record(report: Any) -> dict[str, Any]:
    """A sweep for ``--format json``: its state and counts, its best trial, and (when
    read with its rows) each trial."""
    record: dict[str, Any] = {
        "sweep": report.name,
        "state": report.state.value,
        "trials": report.trials,
        **dataclasses.asdict(report.counts),  # one count per trial state
        "metric": report.metric,
        "best_trial": report.best_number,
        "best_value": report.best_value,
        "stop_reason": report.stop_reason,
    }
    if report.tied:
        record["tied"] = [{"trial": t.number, "tie_loss": t.tie_loss} for t in report.tied]
    if report.yardstick is not None and report.yardstick.baselines:
        record["baselines"] = [dataclasses.asdict(b) for b in report.yardstick.baselines]
    if report.rows:
        record["rows"] = _trial_records(report)
    return record


def _trial_records(report: Any) -> list[dict[str, Any]]:
    """One record per trial (params by dotted path), for json and csv."""
    records = []
    gpu = any(row.peak_gpu_mb is not None for row in report.rows)
    for row in report.rows:
        record: dict[str, Any] = {
            "trial": row.number,
            "state": "prior" if row.prior else row.state.value,
            report.metric: row.value,
        }
        record |= dict(zip(report.trade_offs, row.trade_offs, strict=False))
        record |= {"epochs": row.epochs, "seconds": row.seconds, "peak_rss_mb": row.peak_rss_mb}
        if gpu:
            record["peak_gpu_mb"] = row.peak_gpu_mb
        if row.batch is not None:
            record["batch"] = row.batch
        record |= row.params
        record["reason"] = row.reason
        records.append(record)
    return records


def _trials_table(report: Any) -> Any:
    """One row per trial, as a rich table (a few hundred trials at most)."""
    from rich.table import Table

    head, rows = _trials_cells(report)
    table = Table(*head, title=f"sweep {report.name}")
    for row in rows:
        table.add_row(*row)
    return table


def _trials_cells(report: Any) -> tuple[list[str], list[list[str]]]:
    """One row per trial: state, each objective's value (and the front, if several),
    epochs, seconds, peak memory, the fused batch it trained in, the params (— where a
    conditional one was not sampled), why."""
    keys = list(dict.fromkeys(k for row in report.rows for k in row.params))
    gpu = any(row.peak_gpu_mb is not None for row in report.rows)
    front = set(report.front)
    several = bool(report.trade_offs)
    head = ["#", "state", report.metric, *report.trade_offs, *(["front"] if several else [])]
    fused = any(row.batch is not None for row in report.rows)
    head += ["epochs", "seconds", "peak MB", *(["peak GPU MB"] if gpu else [])]
    head += [*(["batch"] if fused else []), *keys, "reason"]
    rows = []
    for row in report.rows:
        state = "prior" if row.prior else row.state.value
        cells = [str(row.number), state, num(row.value)]
        cells += [
            num(row.trade_offs[i] if row.trade_offs else None)
            for i in range(len(report.trade_offs))
        ]
        cells += ["*" if row.number in front else ""] if several else []
        cells += [num(row.epochs), num(row.seconds), num(row.peak_rss_mb)]
        cells += [num(row.peak_gpu_mb)] if gpu else []
        cells += [row.batch or ""] if fused else []
        cells += [num(row.params.get(k)) for k in keys]
        rows.append([*cells, row.reason or ""])
    return head, rows
