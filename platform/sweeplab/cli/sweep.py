"""sweeplab sweep: run a sweep of a spec on the embedded default (or the given stores)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from sweeplab.cli._common import (
    ADDRESS,
    GPUS,
    QUIET,
    SET,
    STORAGE,
    STORE,
    TRACKING_URI,
    UI_URL,
    WORKERS,
    err,
    gpu_ids,
    handle_errors,
    open_store,
    out,
    quiet_libraries,
    ray_address,
    use_ui_url,
)
from sweeplab.cli.validate import run_smoke
from sweeplab.store import DEFAULT_STORE, Store

if TYPE_CHECKING:
    from sweeplab.search import SweepResult, TrialEvent
    from sweeplab.spec import Experiment


@handle_errors
def sweep(
    spec: Path = typer.Argument(..., help="Experiment spec (YAML)."),
    set_: list[str] = SET,
    name: str | None = typer.Option(
        None,
        "--name",
        help="Sweep name: letters, digits, '_', '.', '-'; refused if a sweep has it "
        "[default: the spec's name, with -2, -3… if taken].",
    ),
    store: Path | None = STORE,
    ui_url: str | None = UI_URL,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
    smoke: bool = typer.Option(
        True, "--smoke/--no-smoke", help="Train one batch at the search-space corners first."
    ),
    quiet: bool = QUIET,
    backend: str | None = typer.Option(
        None,
        "--backend",
        help="optuna: trials in this process; ray: Ray Tune, local cores or a cluster "
        "[default: the spec's sweep.backend, optuna].",
    ),
    address: str | None = ADDRESS,
    cpus_per_trial: float = typer.Option(
        1.0, "--cpus-per-trial", help="Ray: CPUs per trial (per worker with --workers-per-trial)."
    ),
    gpus_per_trial: float = typer.Option(
        0.0,
        "--gpus-per-trial",
        help="Ray: GPUs per trial (per worker); 0.25 packs four trials on a GPU.",
    ),
    workers_per_trial: int = typer.Option(
        1,
        "--workers-per-trial",
        help="Ray: train each trial data-parallel on this many Ray Train workers (DDP).",
    ),
    workers: int = WORKERS,
    gpus: str | None = GPUS,
    warm_start: list[str] = typer.Option(
        [],
        "--warm-start",
        metavar="SWEEP",
        help="Learn from an earlier sweep of the same store: its finished trials that fit "
        "this search space become prior trials (repeatable; adds to sweep.warm_start).",
    ),
    enqueue: list[str] = typer.Option(
        [],
        "--enqueue",
        metavar="PARAMS",
        help="Run this configuration first, e.g. --enqueue '{train.lr: 0.01}' (a YAML "
        "mapping of search-space paths; repeatable; adds to sweep.enqueue).",
    ),
) -> None:
    """Run a hyperparameter sweep: an Optuna study, one MLflow run per trial."""
    from sweeplab.spec import InputError

    overrides = [*set_, f"sweep.backend={backend}"] if backend else list(set_)
    exp = load_with_lists(spec, overrides, warm_start=warm_start, enqueue=enqueue)
    from sweeplab.search import LocalWorkers

    options: Any = None
    if exp.sweep.backend == "ray":
        from sweeplab.search import RayOptions

        if workers != 1 or gpus is not None:
            raise InputError(
                "--workers and --gpus are for the Optuna backend; on Ray, trials run at once "
                "as resources allow (--cpus-per-trial, --gpus-per-trial)"
            )
        options = RayOptions(
            ray_address(address), cpus_per_trial, gpus_per_trial, workers_per_trial
        )
        options.check()
    elif address or cpus_per_trial != 1.0 or gpus_per_trial or workers_per_trial != 1:
        raise InputError(
            "--address, --cpus-per-trial, --gpus-per-trial and --workers-per-trial "
            "are Ray options: add --backend ray"
        )
    else:
        options = LocalWorkers(workers, gpu_ids(gpus))  # run_sweep checks them
    from sweeplab.search.optuna_backend.prestart import prestarted

    # spawned workers import torch and the rest beside this process's own imports
    with prestarted(options if isinstance(options, LocalWorkers) else None) as started:
        options = started or options
        where = open_store(store, tracking_uri, storage, creating=True)  # before heavy imports
        use_ui_url(ui_url)
        quiet_libraries(training=True)
        if smoke:
            run_smoke(exp, quiet, where.tracking_uri)
        from sweeplab.search import run_sweep

        run_and_report(
            exp.sweep.trials,
            exp.objective.metric,
            quiet,
            lambda cb: run_sweep(exp, where, name=name, on_trial=cb, options=options),
        )


def load_with_lists(
    spec: Path, overrides: list[str], *, warm_start: list[str], enqueue: list[str]
) -> Experiment:
    """The spec with ``--warm-start`` and ``--enqueue`` added to its lists."""
    import json

    import yaml

    from sweeplab.spec import SpecError, SpecIssue, load_spec

    exp = load_spec(spec, overrides)
    if not warm_start and not enqueue:
        return exp
    configs = []
    for i, text in enumerate(enqueue):
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            config = exc
        if not isinstance(config, dict):
            message = f"expected a mapping such as '{{train.lr: 0.01}}', but got {text!r}"
            raise SpecError([SpecIssue("--enqueue", str(i), message)])
        configs.append(config)
    lists = {
        "sweep.warm_start": [*exp.sweep.warm_start, *warm_start],
        "sweep.enqueue": [*exp.sweep.enqueue, *configs],
    }
    return load_spec(spec, [*overrides, *(f"{k}={json.dumps(v)}" for k, v in lists.items())])


def run_and_report(
    total: int,
    metric: str,
    quiet: bool,
    run: Callable[[Callable[[TrialEvent], None] | None], SweepResult],
) -> None:
    """Run a sweep (with a progress bar unless ``quiet``), then print its summary."""
    from sweeplab.search import SweepInterrupted

    started = time.monotonic()
    try:
        result = run(None) if quiet else _with_progress(total, run)
    except SweepInterrupted as stop:
        from sweeplab.interrupts import exit_status, reason

        _summary(stop.result, time.monotonic() - started, metric, interrupted=reason(stop.signal))
        raise typer.Exit(exit_status(stop.signal)) from None
    _summary(result, time.monotonic() - started, metric)


def _with_progress(
    total: int, run: Callable[[Callable[[TrialEvent], None] | None], SweepResult]
) -> SweepResult:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),  # from the pace of the trials finished so far
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("starting…", total=total)

        from sweeplab.search import TrialState

        def on_trial(event: TrialEvent) -> None:
            c = event.counts
            best = "—" if event.best_value is None else f"{event.best_value:.4g}"
            progress.update(
                task,
                total=event.total,
                completed=c.finished,
                description=f"pruned {c.pruned}  failed {c.failed}  best {best}",
            )
            if event.state is TrialState.FAILED:
                progress.console.print(
                    f"trial {event.number} failed: {event.reason}", style="yellow", soft_wrap=True
                )

        result: SweepResult = run(on_trial)
        return result


def _summary(
    result: SweepResult, seconds: float, metric: str, interrupted: str | None = None
) -> None:
    """The sweep's summary; ``interrupted``: what stopped it (``interrupts.reason``)."""
    from sweeplab.search import SweepState

    c = result.counts
    state = interrupted or "finished"
    if result.state is SweepState.STOPPED or result.state.asks_no_trials:
        state = f"stopped ({result.stop_reason})"
    elif result.stop_reason and result.state is SweepState.COMPLETE:
        state = f"finished: {result.stop_reason}"
    out.print(
        f"Sweep {result.name} {state}: {c.finished} trials ({c.complete} complete, "
        f"{c.pruned} pruned, {c.failed} failed) in {seconds:.0f}s"
    )
    if result.warm_start:
        out.print(result.warm_start[0].upper() + result.warm_start[1:])
    if result.best_trial is not None:
        out.print(f"Best trial #{result.best_trial}: {metric} = {result.best_value:.4f}")
        for key, value in result.best_params.items():
            out.print(f"  {key} = {value}")
        if result.test:
            tests = ", ".join(f"{k} = {v:.4f}" for k, v in sorted(result.test.items()))
            out.print(f"Test: {tests}")
        for line in result.yardstick.lines():
            out.print(line, markup=False, highlight=False)
    else:
        out.print("No trial completed.")
    if result.registered:
        what = {
            "ensemble": " (the mean of the best trial's fits)",
            "top_ensemble": " (the top trials' fits, weighed on the validation split)",
            "refit": " (the best configuration trained again on train + validation)",
        }.get(result.final, "")
        registered = result.registered
        out.print(f"Registered model: {registered.name} version {registered.version}{what}")
    store = result.store
    out.print(
        f"Results: MLflow experiment '{result.experiment}' (parent run "
        f"{result.parent_run_id}) in {store.tracking_uri}"
    )
    out.print(f"Status:  sweeplab status {result.name}" + _store_args(store))
    out.print("Open the MLflow UI:  sweeplab ui" + _store_args(store, ui=True))
    report = store.root / "compare" / result.name / "report.html"
    if not interrupted and report.is_file():
        out.print(f"Report:  {report} (also the parent run's report.html in the UI)")
    if interrupted:
        out.print("Finished trials were kept; the interrupted trial is marked failed.")
        out.print(f"Continue it:  sweeplab resume {result.name}" + _store_args(store))
    elif c.waiting:
        out.print(
            f"{c.waiting} interrupted or queued trial(s) wait: sweeplab resume {result.name}"
            + _store_args(store)
        )


def _store_args(store: Store, ui: bool = False) -> str:
    """The options that point a later command at the same store (none for the default)."""
    default = Store.resolve(DEFAULT_STORE)
    args = ""
    if store.root != default.root:
        args += f" --store {store.root}"
    here = Store.resolve(store.root)
    if ui and store.tracking_uri != here.tracking_uri:
        args += f" --tracking-uri {store.tracking_uri}"
    if not ui and store.storage_url != here.storage_url:
        args += f" --storage {store.storage_url}"
    return args
