"""sweeplab models list | show | promote: the MLflow model registry, with guarded promotion."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from sweeplab.cli._common import (
    STORAGE,
    STORE,
    TRACKING_URI,
    err,
    fail,
    handle_errors,
    out,
    quiet_libraries,
    tracking_store,
)

app = typer.Typer(
    help="Registered models: list, show versions and lineage, promote with a guard.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _tracking(store: Path | None, tracking_uri: str | None) -> str:
    uri: str = tracking_store(store, tracking_uri).tracking_uri
    quiet_libraries()
    return uri


@app.command("list")
@handle_errors
def list_(store: Path | None = STORE, tracking_uri: str | None = TRACKING_URI) -> None:
    """Every registered model: latest version and aliases."""
    from rich.table import Table

    from sweeplab.registry.models import client_for, list_models

    models = list_models(client_for(_tracking(store, tracking_uri)))
    if not models:
        out.print("no registered models yet")
        return
    table = Table("model", "latest", "aliases")
    for m in models:
        aliases = ", ".join(f"@{a} → {v}" for a, v in sorted(m.aliases.items()))
        table.add_row(m.name, str(m.latest or "—"), aliases)
    out.print(table)


@app.command("show")
@handle_errors
def show(
    name: str = typer.Argument(..., help="Registered model name."),
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
) -> None:
    """A model's versions (test score, aliases, lineage) and its promotion history."""
    from rich.table import Table

    from sweeplab.registry.models import client_for, show_model

    info = show_model(client_for(_tracking(store, tracking_uri)), name)
    table = Table("version", "aliases", "test", "sweep", "trial", "run", "git", "registered")
    for v in info.versions:
        t = v.tags
        table.add_row(
            str(v.version),
            ", ".join(f"@{a}" for a in v.aliases),
            v.test,
            t.get("sweeplab.sweep", ""),
            t.get("sweeplab.trial_number", ""),
            v.run_id[:12],
            t.get("sweeplab.git_commit", "")[:12],
            dt.datetime.fromtimestamp(v.created / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M"),
        )
    out.print(f"model {info.name}")
    out.print(table)
    if info.history:
        out.print("promotion history (oldest first):")
        for event in info.history:
            out.print("  " + _event(event))


def _event(e: dict[str, object]) -> str:
    def score(s: object) -> str:
        return f"{s['metric']} = {s['value']:.4f}" if isinstance(s, dict) else "—"

    line = f"{e['at']}  {e['by']}  v{e['version']} → @{e['alias']}: {e['outcome']}"
    line += f" (was v{e['previous']})" if e.get("previous") is not None else " (alias was free)"
    if e.get("candidate") or e.get("holder"):
        line += f"; v{e['version']} {score(e.get('candidate'))}"
        if e.get("previous") is not None:
            line += f", v{e['previous']} {score(e.get('holder'))}"
    if e.get("note"):
        line += f"; {e['note']}"
    return line


@app.command("promote")
@handle_errors
def promote(
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str = typer.Option(
        "champion", "--alias", help="Alias to move (champion, challenger, …)."
    ),
    version: int | None = typer.Option(None, "--version", min=1, help="Version to promote."),
    best_of: str | None = typer.Option(
        None,
        "--best-of",
        metavar="SWEEP",
        help="Register (if needed) and promote this sweep's best trial.",
    ),
    within: float | None = typer.Option(
        None,
        "--within",
        min=0,
        metavar="TOL",
        help="With --best-of on a multi-objective sweep: of the Pareto front's trials "
        "within TOL of the best first objective, the one best on the second.",
    ),
    trial: int | None = typer.Option(
        None, "--trial", min=0, help="With --best-of: promote this trial of the sweep."
    ),
    force: bool = typer.Option(
        False, "--force", help="Promote even if worse than the alias's holder (recorded)."
    ),
    store: Path | None = STORE,
    tracking_uri: str | None = TRACKING_URI,
    storage: str | None = STORAGE,
) -> None:
    """Point NAME@ALIAS at a version, if it scores no worse than the current holder on the
    same held-out test split."""
    from sweeplab.registry.promote import GuardError, PromotionRefused
    from sweeplab.registry.promote import promote as promote_version
    from sweeplab.store import Store

    if (version is None) == (best_of is None):
        raise fail("give exactly one of --version N and --best-of SWEEP", 2)
    if best_of is None and (within is not None or trial is not None):
        raise fail("--within and --trial pick a trial of a sweep: use them with --best-of", 2)
    if within is not None and trial is not None:
        raise fail("give one of --within TOL and --trial N", 2)
    uri = _tracking(store, tracking_uri)
    if best_of is not None:
        from sweeplab.search import load_sweep

        which = f"trial #{trial}" if trial is not None else "the best trial"
        err.print(f"registering {which} of sweep {best_of} …")
        sweep = load_sweep(best_of, store=Store.resolve(store, tracking_uri, storage))
        chosen = sweep.choose(number=trial, within=within)
        if chosen is None:
            raise fail(f"sweep {best_of!r} has no completed trial to register")
        version = sweep.register_best(name, trial=chosen).version
    if version is None:  # only --best-of could leave it unset, and it returns a number
        raise fail("no version to promote")
    err.print(f"scoring {name} version {version} against @{alias} on its test split …")
    try:
        decision = promote_version(uri, name, version, alias, force=force)
    except PromotionRefused as exc:
        raise fail(str(exc)) from None
    except GuardError as exc:
        raise fail(f"{exc}; --force promotes without comparing (and is recorded)") from None
    if decision.outcome == "unchanged":
        out.print(f"{name}@{alias} already points at version {version}")
        return
    scores = f"version {version}: {decision.candidate or 'not scored'}"
    if decision.previous is not None:
        scores += f"; version {decision.previous}: {decision.holder or 'not scored'}"
    out.print(f"{name}@{alias} → version {version} ({decision.outcome}; {scores})")
    if decision.note:
        out.print(f"note: {decision.note}")
