"""The search space: dotted spec paths mapped to distributions.

The distributions mirror Optuna's (float, int, categorical) but are plain
pydantic models, so a space is validated without importing Optuna. A
categorical choice may be any YAML value (a list of widths, say); the backend
hands Optuna a string key for it and maps it back (see ``choice_keys``).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, model_validator


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


Distribution = Annotated[FloatDist | IntDist | CategoricalDist, Field(discriminator="type")]


class SearchSpace(RootModel[dict[str, Distribution]]):
    """``{dotted.path: distribution}``; order is kept (it is the sampling order)."""

    def items(self) -> Any:
        return self.root.items()

    def __len__(self) -> int:
        return len(self.root)


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
