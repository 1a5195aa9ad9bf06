"""The search space: dotted spec paths mapped to distributions.

The distributions mirror Optuna's (float, int, categorical) but are plain
pydantic models, so a space is validated without importing Optuna. A
categorical choice may be any YAML value (a list of widths, say); the backend
hands Optuna a string key for it and maps it back (see ``choice_keys``).

Two kinds of structure: an entry with ``when: {other.entry: value or [values]}`` is
sampled only in trials where the other entries it names took one of those values
(``SearchSpace.ordered`` puts it after them); a ``layers`` entry samples a depth and
each layer's width as parameters of their own (``LayersDist.parts``) and gives the
spec one list.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictInt,
    field_validator,
    model_validator,
)


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # {entry: allowed values}: sampled only when every named entry took one of them
    when: dict[str, list[Any]] | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value


class FloatDist(_Dist):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _check(self) -> FloatDist:
        _check_bounds(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be used together")
        return self

    def corners(self) -> list[Any]:
        return [self.low, self.high]

    def count(self) -> int | None:
        """How many values it gives (None: a continuum)."""
        if self.step is None:
            return None
        steps = round((self.high - self.low) / self.step, 9)  # 0.5/0.1: 5 steps, not 4.99…
        return math.floor(steps) + 1

    def refuses(self, value: Any) -> str | None:
        """Why ``value`` is not one this distribution gives (None: it is)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        return _outside(value, self.low, self.high, self.step)


class IntDist(_Dist):
    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    log: bool = False
    step: Annotated[StrictInt, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _check(self) -> IntDist:
        _check_bounds(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be used together")
        return self

    def corners(self) -> list[Any]:
        return [self.low, self.high - (self.high - self.low) % self.step]

    def count(self) -> int | None:
        """How many values it gives."""
        return (self.high - self.low) // self.step + 1

    def refuses(self, value: Any) -> str | None:
        """Why ``value`` is not one this distribution gives (None: it is)."""
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{value!r} is not an integer"
        return _outside(value, self.low, self.high, self.step if self.step != 1 else None)


class CategoricalDist(_Dist):
    type: Literal["categorical"]
    choices: Annotated[list[Any], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self) -> CategoricalDist:
        keys = choice_keys(self.choices)
        if len(set(keys)) != len(keys):
            raise ValueError(f"choices must be distinct, but got {self.choices}")
        return self

    def corners(self) -> list[Any]:
        return list(self.choices)

    def count(self) -> int | None:
        """How many values it gives."""
        return len(self.choices)

    def refuses(self, value: Any) -> str | None:
        """Why ``value`` is not one this distribution gives (None: it is)."""
        if choice_key(value) in choice_keys(self.choices):
            return None
        return f"{value!r} is not one of the choices {self.choices}"


class _Range(BaseModel):
    """``low`` to ``high``, both included (equal: that one value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: StrictInt
    high: StrictInt

    @model_validator(mode="after")
    def _check(self) -> _Range:
        if self.high < self.low:
            raise ValueError(f"high must be >= low, but got low={self.low}, high={self.high}")
        return self


class DepthRange(_Range):
    low: Annotated[StrictInt, Field(ge=0)]
    high: Annotated[StrictInt, Field(ge=1, le=64)]


class WidthRange(_Range):
    low: Annotated[StrictInt, Field(ge=1)]
    log: bool = False
    step: Annotated[StrictInt, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _no_log_step(self) -> WidthRange:
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be used together")
        return self


class LayersDist(_Dist):
    """A list of layer widths: its length (``depth``) and each width sampled on their own,
    as parameters ``KEY.depth`` and ``KEY.0``, ``KEY.1``… (a width only while the depth
    reaches it)."""

    type: Literal["layers"]
    depth: DepthRange
    width: WidthRange

    @staticmethod
    def part(key: str, which: str | int) -> str:
        """The name of a parameter of entry ``key``: ``part(key, "depth")``, or the width
        of layer ``which`` (``KEY.0``, ``KEY.1``…). Sampling and decoding both use it."""
        return f"{key}.{which}"

    def corners(self) -> list[Any]:
        w = self.width
        top = w.high - (w.high - w.low) % w.step
        return [[w.low] * self.depth.low, [top] * self.depth.high]

    def count(self) -> int | None:
        """How many lists of widths it gives (each depth, each width per layer)."""
        widths = (self.width.high - self.width.low) // self.width.step + 1
        return sum(widths**depth for depth in range(self.depth.low, self.depth.high + 1))

    def refuses(self, value: Any) -> str | None:
        """Why ``value`` is not one this distribution gives (None: it is)."""
        if not isinstance(value, list):
            return f"{value!r} is not a list of layer widths"
        depth = _outside(len(value), self.depth.low, self.depth.high, None)
        if depth is not None:
            return f"its depth {len(value)} is outside [{self.depth.low}, {self.depth.high}]"
        w = self.width
        for i, width in enumerate(value):
            if isinstance(width, bool) or not isinstance(width, int):
                return f"layer {i}'s width {width!r} is not an integer"
            why = _outside(width, w.low, w.high, w.step if w.step != 1 else None)
            if why is not None:
                return f"layer {i}'s width: {why}"
        return None


Distribution = Annotated[
    FloatDist | IntDist | CategoricalDist | LayersDist, Field(discriminator="type")
]


class SearchSpace(RootModel[dict[str, Distribution]]):
    """``{dotted.path: distribution}``; order is kept (it is the sampling order, except
    that an entry with ``when`` comes after the entries it names)."""

    def items(self) -> Any:
        return self.root.items()

    def __len__(self) -> int:
        return len(self.root)

    def ordered(self) -> list[tuple[str, Any]]:
        """The entries in sampling order: each after the entries its ``when`` names, the
        file's order otherwise. (The loader refused unknown names and circles.)"""
        done: dict[str, Any] = {}

        def visit(key: str, seen: tuple[str, ...]) -> None:
            if key in done or key in seen or key not in self.root:
                return
            for other in self.root[key].when or {}:
                visit(other, (*seen, key))
            done[key] = self.root[key]

        for key in self.root:
            visit(key, ())
        return list(done.items())

    def holds(self, key: str, params: dict[str, Any]) -> bool:
        """Whether entry ``key`` is sampled, given the spec values sampled before it."""
        when = self.root[key].when or {}
        return all(
            path in params and choice_key(params[path]) in choice_keys(values)
            for path, values in when.items()
        )

    def branch(self, key: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """Values of the entries that ``key`` depends on (the first each allows), so that
        ``key`` is sampled: for checking and smoke-testing a conditional entry."""
        out: dict[str, Any] = {}
        for path, values in (self.root[key].when or {}).items():
            if path in self.root and path not in (*seen, key):
                out |= self.branch(path, (*seen, key))
                out[path] = values[0]
        return out


def _outside(value: float, low: float, high: float, step: float | None) -> str | None:
    """Why ``value`` is not in [low, high] (on the grid low + k * step), or None."""
    if not low <= value <= high:
        return f"{value!r} is outside [{low}, {high}]"
    if step is not None:
        k = (value - low) / step
        if abs(k - round(k)) > 1e-9 * max(1.0, abs(k)):
            return f"{value!r} is not on the grid {low} + k * {step}"
    return None


def _check_bounds(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"low and high must be finite numbers, but got low={low}, high={high}")
    if low >= high:
        raise ValueError(f"low must be < high, but got low={low}, high={high}")
    if log and low <= 0:
        raise ValueError(f"low must be > 0 when log is true, but got low={low}")


# ---------------------------------------------------------------- categorical keys


def choice_key(value: Any) -> str | int | float | bool | None:
    """The value Optuna sees for a choice: itself when primitive, else its JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True)


def choice_keys(choices: list[Any]) -> list[Any]:
    return [choice_key(c) for c in choices]


def decode_choice(dist: CategoricalDist, key: Any) -> Any:
    """The YAML value behind the key Optuna returned."""
    for choice in dist.choices:
        if choice_key(choice) == key:
            return choice
    raise KeyError(key)


def apply_params(tree: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of the spec mapping ``tree`` with each dotted path set to its value."""
    from copy import deepcopy

    from sweeplab.spec._paths import set_path

    out = deepcopy(tree)
    for path, value in params.items():
        set_path(out, path, value)
    return out
