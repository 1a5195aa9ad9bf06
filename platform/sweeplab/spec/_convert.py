"""pydantic's validation errors → SpecIssues: the dotted path a user wrote, the value,
and what is allowed there (the keys of that section, an architecture's fields, the
options of a name)."""

from __future__ import annotations

import math
import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from sweeplab.spec._errors import SpecIssue, did_you_mean, one_of
from sweeplab.spec._models import MODEL_CONFIGS
from sweeplab.spec._space import CategoricalDist, FloatDist, IntDist


def issues_of(
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
