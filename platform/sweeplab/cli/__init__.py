"""The ``sweeplab`` command line: one module per command, heavy imports inside commands.

``sweeplab --help`` imports only Typer and Rich; torch, MLflow, Optuna and Ray
load when a command needs them.
"""

from __future__ import annotations

import typer

from sweeplab import __version__
from sweeplab.cli import (
    compare,
    models,
    push,
    resume,
    serve,
    status,
    stop,
    sweep,
    train,
    ui,
    validate,
)

app = typer.Typer(
    name="sweeplab",
    help="Experiment tracking and hyperparameter sweeps for deep learning "
    "(Lightning + Optuna + MLflow).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sweeplab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Experiment tracking and hyperparameter sweeps for deep learning."""


app.command("validate")(validate.validate)
app.command("sweep")(sweep.sweep)
app.command("train")(train.train)
app.command("status")(status.status)
app.command("resume")(resume.resume)
app.command("agent")(resume.agent)
app.command("compare")(compare.compare)
app.add_typer(models.app, name="models")
app.command("serve")(serve.serve)
app.command("ui")(ui.ui)
app.command("push")(push.push)
app.command("stop")(stop.stop)


def main() -> None:
    from sweeplab.logs import quick_exit

    try:
        app()  # exits with the command's status
    finally:
        quick_exit()
