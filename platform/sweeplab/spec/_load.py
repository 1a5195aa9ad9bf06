"""Load a spec from YAML, apply ``--set`` overrides, resolve and check the search space.

Everything here is pure: reading files and validating values. A spec that fails
raises SpecError listing every issue; nothing is created.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sweeplab.spec._convert import issues_of
from sweeplab.spec._errors import SpecError, SpecIssue, did_you_mean
from sweeplab.spec._paths import get_path, has_path, leaf_paths, set_path
from sweeplab.spec._schema import Experiment
from sweeplab.spec._space import (
    CategoricalDist,
    FloatDist,
    IntDist,
    LayersDist,
    SearchSpace,
    apply_params,
)
from sweeplab.spec._structure import structure_issues

# Only these sections hold hyperparameters; searching `sweep.trials` makes no sense.
SEARCHABLE_SECTIONS = ("model", "data", "train")


# --------------------------------------------------------------------------- reading


def _read_yaml(path: Path, what: str) -> Any:
    if not path.is_file():
        raise SpecError.single(str(path), "", f"{what} file not found")
    try:
        text = path.read_text(encoding="utf-8")
        twice = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader), "")
        if twice is not None:
            where, first, again = twice
            raise SpecError.single(
                str(path),
                where,
                f"is given twice, at lines {first} and {again}: YAML keeps only the last, "
                "so merge them into one",
            )
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError.single(str(path), "", f"invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise SpecError.single(str(path), "", "is not a UTF-8 text file") from None


def _duplicate_key(node: yaml.Node | None, path: str) -> tuple[str, int, int] | None:
    """The first key a mapping holds twice, as (dotted path, first line, second line).

    PyYAML's loaders keep the last of two equal keys without a word; the composed node
    tree still holds both, with their lines."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            where = f"{path}.{name}" if path else str(name)
            if name is not None and name != "<<":
                if name in seen:
                    return where, seen[name], key.start_mark.line + 1
                seen[name] = key.start_mark.line + 1
            found = _duplicate_key(value, where)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _duplicate_key(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def parse_overrides(items: Iterable[str]) -> list[tuple[str, Any]]:
    """``["train.lr=3e-3"]`` → ``[("train.lr", 0.003)]``; values are parsed as YAML."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", key):
            raise SpecError.single(
                "--set", item, "expected dotted.path=value, for example --set train.lr=3e-3"
            )
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        out.append((key, value))
    return out


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read, override and validate the spec at ``path`` (with its search-space file)."""
    path = Path(path)
    file = str(path)
    raw = _read_yaml(path, "spec")
    if not isinstance(raw, dict):
        raise SpecError.single(file, "", f"a spec must be a mapping, but got {type(raw).__name__}")
    into_space = []
    for key, value in parse_overrides(overrides):
        if key.startswith(SPACE_PREFIX):
            into_space.append((key, value))
            continue
        try:
            set_path(raw, key, value)
        except KeyError as exc:
            raise SpecError.single(
                file, key, f"--set cannot go through {exc.args[0]!r}, which is not a mapping"
            ) from None
    space_file = file
    space = raw.get("search_space")
    if isinstance(space, str):
        space_path = (path.parent / space).resolve()
        space_file = str(Path(path.parent, space))
        loaded = _read_yaml(space_path, "search space")
        raw["search_space"] = {} if loaded is None else loaded
    elif space is None:
        raw["search_space"] = {}
    if not isinstance(raw["search_space"], dict):
        raise SpecError.single(space_file, "search_space", "a search space must be a mapping")
    for key, value in into_space:
        set_in_space(raw["search_space"], key, value)
    return spec_from_dict(raw, file=file, space_file=space_file)


SPACE_PREFIX = "search_space."


def set_in_space(space: dict[str, Any], key: str, value: Any) -> None:
    """``--set search_space.ENTRY.FIELD=value`` (``search_space.train.lr.high=0.1``), or a
    whole entry (``search_space.ENTRY={type: …}``; null removes it). An entry's name
    holds dots itself: the longest entry that the key starts with is the one meant."""
    rest = key[len(SPACE_PREFIX) :]
    entry = max((k for k in space if rest == k or rest.startswith(f"{k}.")), key=len, default=None)
    if entry is None or entry == rest:
        if value is None:
            space.pop(rest, None)
        elif isinstance(value, dict):
            space[rest] = value
        else:
            meant = rest.rpartition(".")[0] or rest  # ENTRY.FIELD: the entry it names
            raise SpecError.single(
                "--set",
                key,
                f"{meant!r} is not an entry of the search space{did_you_mean(meant, space)} "
                f"(entries: {', '.join(space) or 'none'}); set a field of an entry "
                "(search_space.train.lr.high=0.1) or a whole entry "
                "(search_space.train.lr={type: float, low: 0.0001, high: 0.1, log: true})",
            )
        return
    if not isinstance(space[entry], dict):
        raise SpecError.single("--set", key, f"the entry {entry!r} is not a mapping")
    try:
        set_path(space[entry], rest[len(entry) + 1 :], value)
    except KeyError as exc:
        raise SpecError.single(
            "--set", key, f"--set cannot go through {exc.args[0]!r}, which is not a mapping"
        ) from None


def spec_from_dict(
    raw: dict[str, Any], file: str | None = None, space_file: str | None = None
) -> Experiment:
    """Validate a spec mapping (search space inline). Raises SpecError."""
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as err:
        raise SpecError(issues_of(err, file, Experiment)) from None
    issues = [SpecIssue(file, path, message) for path, message in exp.problems()]
    # the corners of the space are tried only on a spec that is valid as written: a
    # mistake elsewhere is reported once, at its own path, not blamed on every entry
    issues += check_space(exp, space_file or file, corners=not issues)
    if issues:
        raise SpecError(issues)
    return exp


# -------------------------------------------------------------------- search space


def check_space(exp: Experiment, file: str | None, corners: bool = True) -> list[SpecIssue]:
    """Every issue of ``exp.search_space``: its distributions and how they fit the spec
    (``corners``: also whether each distribution's ends make a valid spec)."""
    try:
        space = SearchSpace.model_validate(exp.search_space)
    except ValidationError as err:
        return issues_of(err, file, None)
    tree = exp.model_dump(mode="json")
    searchable = [
        p for p in leaf_paths(tree) if p.split(".")[0] in SEARCHABLE_SECTIONS and "." in p
    ]
    structure = structure_issues(space, exp, file)
    corners = corners and not structure  # a space whose conditions are wrong: no corners
    issues = []
    for key, dist in space.items():
        if key.split(".")[0] not in SEARCHABLE_SECTIONS or not has_path(tree, key):
            hint = did_you_mean(key, searchable)
            issues.append(
                SpecIssue(
                    file,
                    key,
                    f"is not a field of the spec{hint}; a search "
                    f"key is a dotted path under {', '.join(SEARCHABLE_SECTIONS)}",
                )
            )
            continue
        issues += _check_fit(space, tree, key, dist, file, corners)
    if structure:
        return issues + structure
    if not issues:
        issues += check_enqueue(exp, space, tree, file)
    if exp.sweep.sampler == "grid":
        for key, dist in space.items():
            if isinstance(dist, FloatDist) and dist.step is None:
                issues.append(
                    SpecIssue(
                        file,
                        key,
                        "the grid sampler needs a step on float "
                        "distributions (or use categorical choices)",
                    )
                )
    return issues


def _bare(tree: dict[str, Any]) -> dict[str, Any]:
    """The spec without its search space (nor the configurations enqueued in it)."""
    return {**tree, "search_space": {}, "sweep": {**tree.get("sweep", {}), "enqueue": []}}


def check_enqueue(
    exp: Experiment, space: SearchSpace, tree: dict[str, Any], file: str | None
) -> list[SpecIssue]:
    """``sweep.enqueue``: each configuration names entries of the space, with values they
    could give (their conditions holding), and makes a valid spec, as a corner must."""
    issues = []
    bare = _bare(tree)
    for i, config in enumerate(exp.sweep.enqueue):
        where = f"sweep.enqueue.{i}"
        found = []
        for key, value in config.items():
            if key not in space.root:
                entries = ", ".join(space.root) or "none"
                message = (
                    f"is not an entry of the search space{did_you_mean(key, space.root)}; "
                    f"entries: {entries}"
                )
            else:
                why = space.root[key].refuses(value)
                message = "" if why is None else f"{why}: not a value of the search space"
                if not message and not _conditions_hold(space, key, config):
                    message = f"is sampled only when {space.root[key].when}, which {where} breaks"
            if message:
                found.append(SpecIssue(file, f"{where}.{key}", message))
        if not found:
            try:
                spec_from_dict(apply_params(bare, config))
            except SpecError as err:
                reasons = "; ".join(issue.message for issue in err.issues)
                found.append(SpecIssue(file, where, f"makes the spec invalid: {reasons}"))
        issues += found
    return issues


def _conditions_hold(space: SearchSpace, key: str, config: dict[str, Any]) -> bool:
    """Whether the entries ``key`` depends on allow it, where ``config`` sets them (the
    others are sampled, and may)."""
    when = space.root[key].when or {}
    given = {path: value for path, value in config.items() if path in when}
    return space.holds(key, {**{p: v[0] for p, v in when.items()}, **given})


def _check_fit(
    space: SearchSpace,
    tree: dict[str, Any],
    key: str,
    dist: Any,
    file: str | None,
    corners: bool,
) -> list[SpecIssue]:
    """Does every value the distribution can give make a valid spec (with the values
    that its conditions need)?"""
    current = get_path(tree, key)
    if isinstance(dist, LayersDist) and not isinstance(current, list):
        return [
            SpecIssue(
                file,
                key,
                f"a layers distribution gives a list of layer widths, but the field's "
                f"value is {current!r}",
            )
        ]
    if isinstance(dist, FloatDist | IntDist):
        if isinstance(current, bool) or not isinstance(current, int | float):
            return [
                SpecIssue(
                    file,
                    key,
                    f"a {dist.type} distribution cannot set a field whose "
                    f"value is {current!r}; use type: categorical",
                )
            ]
        if isinstance(dist, FloatDist) and isinstance(current, int):
            return [
                SpecIssue(
                    file,
                    key,
                    f"a float distribution cannot set the integer field "
                    f"(value {current!r}); use type: int",
                )
            ]
    if not corners:
        return []
    bare = _bare(tree)
    needs = space.branch(key) if dist.when else {}
    for value in dist.corners():
        try:
            spec_from_dict(apply_params(bare, {**needs, key: value}))
        except SpecError as err:
            reasons = "; ".join(i.message for i in err.issues)
            what = "choice" if isinstance(dist, CategoricalDist | LayersDist) else "bound"
            return [SpecIssue(file, key, f"{what} {value!r} makes the spec invalid: {reasons}")]
    return []
