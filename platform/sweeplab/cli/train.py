"""sweeplab train: one tracked run of a spec as written, no search."""

from __future__ import annotations

from pathlib import Path

import typer

from sweeplab.cli._common import SET, STORE, TRACKING_URI, handle_errors, out, quiet_libraries


@handle_errors
def train(
    spec: Path = typer.Argument(..., help="Experiment spec (YAML)."),
    set_: list[str] = SET,
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    register: str | None = typer.Option(
        None, "--register", help="Register the trained model under this name."
    ),
) -> None:
    """Train once with the spec's values (search space ignored), tracked in MLflow."""
    from sweeplab.cli._common import open_store
    from sweeplab.spec import load_spec

    exp = load_spec(spec, set_)
    quiet_libraries(training=True)
    from sweeplab.search import train_once

    where = open_store(store, tracking_uri, creating=True)
    out.print(
        f"training {exp.name}: {exp.model.arch} on {exp.data.dataset}, "
        f"{exp.train.max_epochs} epochs max ..."
    )
    result = train_once(exp, where, register_as=register)
    o = result.outcome
    out.print(f"{exp.objective.metric} = {o.value:.4f} (best epoch of {o.epochs})")
    if o.test:
        out.print("test: " + ", ".join(f"{k} = {v:.4f}" for k, v in sorted(o.test.items())))
    out.print(
        f"run {o.run_id} in MLflow experiment '{result.experiment}'; model at {result.model_uri}"
    )
    if result.registered:
        out.print(f"registered: {result.registered[0]} version {result.registered[1]}")
