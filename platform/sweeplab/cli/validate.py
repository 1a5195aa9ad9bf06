"""sweeplab validate: check a spec and its search space (and a smoke batch); writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from sweeplab.cli._common import SET, STORAGE, STORE, TRACKING_URI, err, handle_errors, out

if TYPE_CHECKING:
    from sweeplab.spec import Experiment


def run_smoke(exp: Experiment, quiet: bool = False, tracking_uri: str | None = None) -> None:
    """Shared by validate --smoke and sweep: exit 2 with each failing corner.

    The data and a transfer source are read first: an InputError stops here (exit 2).
    """
    from sweeplab.training.fit import check_inputs
    from sweeplab.training.smoke import corners, smoke

    check_inputs(exp, tracking_uri)
    n = len(corners(exp))
    if not quiet:
        err.print(f"smoke test: one batch at {n} corner(s) of the search space ...")
    failures = smoke(exp, tracking_uri=tracking_uri)
    if failures:
        for f in failures:
            err.print(
                f"error: smoke test failed at {f.params or 'the spec as written'}: {f.error}",
                soft_wrap=True,
            )
        raise typer.Exit(2)


@handle_errors
def validate(
    spec: Path = typer.Argument(..., help="Experiment spec (YAML)."),
    set_: list[str] = SET,
    smoke: bool = typer.Option(
        False, "--smoke", help="Also train one batch at the corners of the search space."
    ),
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
) -> None:
    """Check a spec and its search space without running anything (exit 2 on a mistake).

    Data files (mnist, cifar10, image_folder, csv) are read to check them; --smoke
    also loads a transfer source from the store's model registry; a warm start's
    sweeps are read from the store, and what it would take and skip is said.
    """
    from sweeplab.data.catalog import DATASETS
    from sweeplab.spec import load_spec

    exp = load_spec(spec, set_)
    if DATASETS[exp.data.dataset].from_path:
        from sweeplab.data.split import split

        split(exp.data)
    if smoke:
        from sweeplab.cli._common import quiet_libraries
        from sweeplab.store import Store

        quiet_libraries(training=True)
        run_smoke(exp, tracking_uri=Store.resolve(store, tracking_uri).tracking_uri)
    space = exp.space
    sweep = exp.sweep
    how = f"{sweep.sampler}/{sweep.pruner}"
    if sweep.backend == "ray":
        how = (
            "pbt on Ray"
            if sweep.scheduler == "pbt"
            else f"{sweep.sampler}/{sweep.scheduler} on Ray"
        )
    objectives = " against ".join(f"{o.metric} ({o.mode})" for o in exp.objectives)
    out.print(
        f"{spec}: valid — {exp.model.arch} on {exp.data.dataset}, objective "
        f"{objectives}, {len(space)} searched "
        f"parameter(s), {sweep.trials} trials with {how}" + (", smoke test passed" if smoke else "")
    )
    if sweep.warm_start:
        out.print(_warm_start(exp, store, tracking_uri, storage))
    if sweep.enqueue:
        out.print(f"enqueued: {len(sweep.enqueue)} configuration(s) run first")
    if sweep.restarts > 1:
        from sweeplab.training.fusing import unfused

        why = unfused(exp)
        out.print(
            f"restarts: {sweep.restarts} per trial, "
            + ("fused (one batched model)" if why is None else f"one after another ({why})")
        )
    if sweep.fuse_trials != 1:
        out.print(_fusing(exp, [key for key, _ in space.items()]))
    if exp.data.kind == "text":
        text = exp.data.text
        out.print(
            f"text: words of column {text.column!r}"
            + (", lower-cased" if text.lowercase else "")
            + f", a vocabulary of at most {text.vocab_size} fit on the training split, "
            f"{text.max_length} tokens per text (longer ones cut, shorter ones padded)"
        )
    augment = exp.data.augment.model_dump(exclude_defaults=True)
    if augment or any(key.startswith("data.augment.") for key, _ in space.items()):
        shown = ", ".join(f"{k} {v}" for k, v in augment.items()) or "none (searched)"
        out.print(f"augmentation of training batches: {shown}")
    for key, dist in space.items():
        out.print(f"  {key}: {dist.model_dump(exclude_defaults=True)}")


def _fusing(exp: Experiment, searched: list[str]) -> str:
    """How ``sweep.fuse_trials`` will batch the trials, or why it will not."""
    from sweeplab.training.fusing import FUSIBLE, fused_count, not_fused

    why = not_fused(exp, gpu=False)
    if why is not None:
        return f"trials: one at a time, not fused ({why})"
    n, how = fused_count(exp, gpu=False), ""
    if exp.sweep.fuse_trials == "auto":
        every = exp.train.checkpoint_every
        period = f"{every} epochs" if isinstance(every, int) else every
        within = (
            "" if every is None else f"after a first trial alone, as many as train in {period}; "
        )
        how = f" on a CPU (auto: {within}one at a time on a GPU)"
    if exp.sweep.backend == "ray":
        how += ", a batch in each Ray Tune trial,"
    drawn = [key for key in searched if key in FUSIBLE]
    shared = [key for key in searched if key not in FUSIBLE]
    lost = ""  # auto keeps a batch within one period; a number of trials does not
    if exp.sweep.fuse_trials != "auto" and exp.train.checkpoint_every is not None:
        lost = (
            "; a batch saves no mid-fit checkpoint (train.checkpoint_every is for trials "
            "alone): a killed batch trains again from its start"
        )
    return (
        f"trials: up to {n} at a time{how} trained as one batched model; each draws its "
        f"own {', '.join(drawn)}"
        + (f", a batch shares one {', '.join(shared)}" if shared else "")
        + (_shapes(exp, shared, n) if shared else "")
        + lost
    )


def _shapes(exp: Experiment, shared: list[str], n: int) -> str:
    """What a batch's one shape costs the search: fewer shapes tried than trials."""
    import math

    counts = [exp.space.root[key].count() for key in shared]
    batches = math.ceil(exp.sweep.trials / n)
    known = [c for c in counts if c is not None]
    total = math.prod(known) if len(known) == len(counts) else None
    held = "" if total is None else f"the space holds at most {total} shapes; "
    return (
        f"; its {exp.sweep.trials} trials make {batches} or more batches, one shape each "
        f"({held}unfused, each trial draws its own)"
    )


def _warm_start(
    exp: Experiment, store: Path | None, tracking_uri: str | None, storage: str | None
) -> str:
    """What the spec's warm start would take from the store's sweeps (read only)."""
    from sweeplab.cli._common import open_store, quiet_libraries

    quiet_libraries(mlflow=False)
    from sweeplab.search.storage import open_storage
    from sweeplab.search.warm import plan

    where = open_store(store, tracking_uri, storage)
    opened = open_storage(where.storage_url) if where.storage_exists() else None
    return plan(exp, where, opened).summary()
