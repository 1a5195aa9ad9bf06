"""Checks of a search space's structure: the conditions of its entries (``when``) and
its ``layers`` entries, against the space itself and the sweep's sampler. Each issue
names the entry it is about."""

from __future__ import annotations

from typing import Any

from sweeplab.spec._errors import SpecIssue, did_you_mean, one_of
from sweeplab.spec._schema import Experiment
from sweeplab.spec._space import (
    CategoricalDist,
    IntDist,
    LayersDist,
    SearchSpace,
    choice_key,
    choice_keys,
)


def structure_issues(space: SearchSpace, exp: Experiment, file: str | None) -> list[SpecIssue]:
    """Every issue of the space's conditions and layers entries."""
    issues: list[SpecIssue] = []
    for key, dist in space.items():
        for path, values in (dist.when or {}).items():
            message = _condition_issue(space, key, path, values)
            if message:
                issues.append(SpecIssue(file, f"{key}.when", message))
    issues += _circles(space, file)
    structured = [k for k, d in space.items() if d.when or isinstance(d, LayersDist)]
    if exp.sweep.sampler == "grid":
        refusal = (
            "the grid sampler takes no conditional or layers entries (a grid is every "
            "combination of fixed values): use categorical choices, or another sampler"
        )
    elif exp.sweep.scheduler == "pbt":
        refusal = "PBT draws its population without conditions or layers: use another scheduler"
    else:
        return issues
    return issues + [SpecIssue(file, key, refusal) for key in structured]


def _condition_issue(space: SearchSpace, key: str, path: str, values: list[Any]) -> str:
    """What is wrong with condition ``path: values`` of entry ``key`` ('' if nothing)."""
    other = space.root.get(path)
    if other is None or path == key:
        what = "the entry itself" if path == key else f"{path!r} is not an entry of the space"
        hint = did_you_mean(path, [k for k in space.root if k != key])
        return f"{what}{hint}; a condition names another entry of the search space"
    if not isinstance(other, CategoricalDist | IntDist):
        return (
            f"{path!r} is a {other.type} entry; a condition takes a categorical or int "
            "entry (its values can be named)"
        )
    if not values:
        return f"{path!r} has no values; give one value or a list"
    for value in values:
        if not _can_take(other, value):
            return f"{path!r} never takes {value!r}: {_takes(other)}"
    return ""


def _can_take(dist: CategoricalDist | IntDist, value: Any) -> bool:
    if isinstance(dist, CategoricalDist):
        return choice_key(value) in choice_keys(dist.choices)
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return dist.low <= value <= dist.high and (value - dist.low) % dist.step == 0


def _takes(dist: CategoricalDist | IntDist) -> str:
    if isinstance(dist, CategoricalDist):
        return f"its choices are {one_of(dist.choices)}"
    return f"it takes integers from {dist.low} to {dist.high} in steps of {dist.step}"


def _circles(space: SearchSpace, file: str | None) -> list[SpecIssue]:
    """One issue per circle of conditions (a → b → a), at the first entry of the file
    that is on it."""
    issues: list[SpecIssue] = []
    reported: set[str] = set()
    for start in space.root:
        circle = _circle_from(space, start)
        if circle and not reported & set(circle):
            reported |= set(circle)
            issues.append(
                SpecIssue(
                    file,
                    f"{start}.when",
                    f"the conditions go round in a circle ({' → '.join([*circle, start])}): "
                    "an entry can only depend on entries sampled before it",
                )
            )
    return issues


def _circle_from(space: SearchSpace, start: str) -> list[str]:
    """The entries of a path of conditions from ``start`` back to it, or []."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        key, path = stack.pop()
        for other in space.root[key].when or {}:
            if other == start and len(path) > 1:
                return path
            if other in space.root and other not in seen and other != key:
                seen.add(other)
                stack.append((other, [*path, other]))
    return []
