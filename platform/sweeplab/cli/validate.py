"""sweeplab validate: check a spec and its search space (and a smoke batch); writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from sweeplab.cli._common import SET, err, handle_errors, out

if TYPE_CHECKING:
    from sweeplab.spec import Experiment


def run_smoke(exp: Experiment, quiet: bool = False) -> None:
    """Shared by validate --smoke and sweep: exit 2 with each failing corner."""
    from sweeplab.training.smoke import corners, smoke

    n = len(corners(exp))
    if not quiet:
        err.print(f"smoke test: one batch at {n} corner(s) of the search space ...")
    failures = smoke(exp)
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
) -> None:
    """Check a spec and its search space without running anything (exit 2 on a mistake)."""
    from sweeplab.spec import SearchSpace, load_spec

    exp = load_spec(spec, set_)
    if smoke:
        from sweeplab.cli._common import quiet_libraries

        quiet_libraries()
        run_smoke(exp)
    space = SearchSpace.model_validate(exp.search_space)
    out.print(
        f"{spec}: valid — {exp.model.arch} on {exp.data.dataset}, objective "
        f"{exp.objective.metric} ({exp.objective.mode}), {len(space)} searched "
        f"parameter(s), {exp.sweep.trials} trials with {exp.sweep.sampler}/"
        f"{exp.sweep.pruner}" + (", smoke test passed" if smoke else "")
    )
    for key, dist in space.items():
        out.print(f"  {key}: {dist.model_dump(exclude_defaults=True)}")
