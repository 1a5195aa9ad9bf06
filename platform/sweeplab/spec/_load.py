"""Load a spec from YAML, apply ``--set`` overrides, resolve and check the search space.

Everything here is pure: reading files and validating values. A spec that fails
raises SpecError listing every issue; nothing is created.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sweeplab.spec._errors import SpecError, SpecIssue, did_you_mean, one_of
from sweeplab.spec._models import MODEL_CONFIGS
from sweeplab.spec._paths import get_path, has_path, leaf_paths, set_path
from sweeplab.spec._schema import Experiment
from sweeplab.spec._space import CategoricalDist, FloatDist, IntDist, SearchSpace, apply_params

# Only these sections hold hyperparameters; searching `sweep.trials` makes no sense.
SEARCHABLE_SECTIONS = ("model", "data", "train")


# --------------------------------------------------------------------------- reading


def _read_yaml(path: Path, what: str) -> Any:
    if not path.is_file():
        raise SpecError.single(str(path), "", f"{what} file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError.single(str(path), "", f"invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise SpecError.single(str(path), "", "is not a UTF-8 text file") from None


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
    for key, value in parse_overrides(overrides):
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
    return spec_from_dict(raw, file=file, space_file=space_file)


def spec_from_dict(
    raw: dict[str, Any], file: str | None = None, space_file: str | None = None
) -> Experiment:
    """Validate a spec mapping (search space inline). Raises SpecError."""
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as err:
        raise SpecError(_issues(err, file, Experiment)) from None
    issues = [SpecIssue(file, path, message) for path, message in exp.problems()]
    issues += check_space(exp, space_file or file)
    if issues:
        raise SpecError(issues)
    return exp


# -------------------------------------------------------------------- search space


def check_space(exp: Experiment, file: str | None) -> list[SpecIssue]:
    """Every issue of ``exp.search_space``: its distributions and how they fit the spec."""
    try:
        space = SearchSpace.model_validate(exp.search_space)
    except ValidationError as err:
        return _issues(err, file, None)
    tree = exp.model_dump(mode="json")
    searchable = [
        p for p in leaf_paths(tree) if p.split(".")[0] in SEARCHABLE_SECTIONS and "." in p
    ]
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
        issues += _check_fit(exp, tree, key, dist, file)
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


def _check_fit(
    exp: Experiment, tree: dict[str, Any], key: str, dist: Any, file: str | None
) -> list[SpecIssue]:
    """Does every value the distribution can give make a valid spec?"""
    current = get_path(tree, key)
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
    bare = {**tree, "search_space": {}}
    for value in dist.corners():
        try:
            spec_from_dict(apply_params(bare, {key: value}))
        except SpecError as err:
            reasons = "; ".join(i.message for i in err.issues)
            what = "choice" if isinstance(dist, CategoricalDist) else "bound"
            return [SpecIssue(file, key, f"{what} {value!r} makes the spec invalid: {reasons}")]
    return []


# ------------------------------------------------------------- pydantic → SpecIssue


def _issues(
    err: ValidationError, file: str | None, root: type[BaseModel] | None
) -> list[SpecIssue]:
    issues = []
    for e in err.errors():
        loc = [str(part) for part in e["loc"]]
        kind = e["type"]
        value = e.get("input")
        if root is None and len(loc) >= 2 and loc[1] in ("float", "int", "categorical"):
            # search-space errors: (key, tag, field) → key.field
            loc = [loc[0], *loc[2:]]
        model_cls = None
        if root is not None and loc[:1] == ["model"]:
            if len(loc) >= 2 and loc[1] in MODEL_CONFIGS:
                # model errors: (model, arch, field) → model.field, checked against that arch
                model_cls, loc = MODEL_CONFIGS[loc[1]], ["model", *loc[2:]]
            elif kind in ("union_tag_invalid", "union_tag_not_found"):
                archs = list(MODEL_CONFIGS)
                tag = value.get("arch") if isinstance(value, dict) else None
                message = f"{tag!r} is not allowed{did_you_mean(str(tag), archs)}; allowed: "
                if kind == "union_tag_not_found":
                    message = "an architecture is required; allowed: "
                issues.append(SpecIssue(file, "model.arch", message + ", ".join(archs)))
                continue
        if kind == "extra_forbidden":
            allowed = _fields_at(root, loc[:-1]) if root else []
            if model_cls is not None and len(loc) == 2:
                allowed = _model_fields(model_cls)
            if root is None and len(loc) >= 2:
                allowed = _dist_fields(loc[0], err)
            message = f"unknown key '{loc[-1]}'{did_you_mean(loc[-1], allowed)}"
            if allowed:
                message += f"; allowed keys: {', '.join(allowed)}"
        elif kind == "missing":
            message = "is required but missing"
        elif kind == "literal_error":
            options = re.findall(r"'([^']*)'", e.get("ctx", {}).get("expected", ""))
            message = f"{value!r} is not allowed{did_you_mean(value, options)}; allowed: "
            message += one_of(options)
        elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
            message = f"'type' must be one of: float, int, categorical, but got {value!r}"
            if kind == "union_tag_not_found":
                message = "a distribution needs 'type': one of float, int, categorical"
        elif kind in ("int_type", "int_from_float") and root is None:
            message = f"int distribution bounds must be integers, but got {value!r}"
        else:
            text = e["msg"].removeprefix("Value error, ")
            text = text[0].lower() + text[1:] if text else text
            message = text if "but got" in text else f"{text}, but got {_show(value)}"
        issues.append(SpecIssue(file, ".".join(str(k) if k != "" else "''" for k in loc), message))
    return issues


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _fields_at(root: type[BaseModel], loc: list[str]) -> list[str]:
    """The keys allowed at ``loc`` of the model ``root`` (for 'did you mean')."""
    cls: Any = root
    for part in loc:
        fields = getattr(cls, "model_fields", None)
        if not fields or part not in fields:
            return []
        cls = _model_class(fields[part].annotation)
    return list(getattr(cls, "model_fields", {}))


def _model_fields(cls: type[BaseModel]) -> list[str]:
    """The keys a spec writes for ``cls`` (aliases such as ``class`` where set)."""
    return [f.alias or name for name, f in cls.model_fields.items()]


def _model_class(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_class(arg)
        if found is not None:
            return found
    return None


def _dist_fields(key: str, err: ValidationError) -> list[str]:
    for e in err.errors():
        loc = e["loc"]
        if len(loc) >= 2 and str(loc[0]) == key:
            cls = {"float": FloatDist, "int": IntDist, "categorical": CategoricalDist}.get(
                str(loc[1])
            )
            if cls is not None:
                return list(getattr(cls, "model_fields", {}))
    return []
