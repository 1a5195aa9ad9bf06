"""Check a /predict request body and turn it into a float32 batch, or say what was expected.

Accepted bodies: ``{"rows": [[...], ...]}``, ``{"rows": [...]}`` (one row), or the bare
list in either form. Each row is ``n_features`` finite numbers. A text model takes
``{"rows": ["a text", ...]}`` (or ``"texts"``, or a bare list, or one string) instead.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

# A batch nests 3 levels ({"rows": [[...]]}); a body nested a thousand deep would reach
# the JSON parser's recursion limit (a 500) before any check, so it is refused first.
MAX_DEPTH = 8
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def _depth(body: bytes) -> int:
    """How deep ``body``'s brackets nest (strings skipped), counted up to MAX_DEPTH + 1."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', body)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
    return deepest


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_rows(body: bytes, n_features: int, max_batch: int, max_bytes: int) -> np.ndarray:
    """The batch in ``body``; BadRequest (413, 400 or 422) naming what was expected."""
    expected = f'{{"rows": [[{n_features} numbers], ...]}}'
    payload = _rows(body, expected, max_bytes, ("rows",))
    rows = [payload] if not isinstance(payload[0], list) else payload
    if len(rows) > max_batch:
        raise BadRequest(413, f"batch of {len(rows)} rows; at most {max_batch} per request")
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise BadRequest(422, f"row {i} is a {type(row).__name__}, expected a list of numbers")
        if len(row) != n_features:
            raise BadRequest(
                422, f"row {i} has {len(row)} values, expected {n_features} numbers per row"
            )
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequest(
                    422, f"row {i}, column {j} is {json.dumps(value)}, expected a number"
                )
            if not math.isfinite(value):
                raise BadRequest(422, f"row {i}, column {j} is {value}, expected a finite number")
    return np.asarray(rows, dtype=np.float32)


def parse_texts(body: bytes, max_batch: int, max_bytes: int) -> np.ndarray:
    """The texts in ``body`` (a text model's batch), as an object array of strings."""
    expected = '{"rows": ["a text", ...]}'
    payload = _rows(body, expected, max_bytes, ("rows", "texts"))
    if len(payload) > max_batch:
        raise BadRequest(413, f"batch of {len(payload)} texts; at most {max_batch} per request")
    for i, text in enumerate(payload):
        if not isinstance(text, str):
            raise BadRequest(422, f"row {i} is {json.dumps(text)[:80]}, expected a string")
    texts = np.empty(len(payload), dtype=object)
    texts[:] = payload
    return texts


def _rows(body: bytes, expected: str, max_bytes: int, fields: tuple[str, ...]) -> list[Any]:
    """The non-empty list of rows in ``body``: the bare JSON list, or one of ``fields``
    of a JSON object (a bare string is a list of one)."""
    if len(body) > max_bytes:
        raise BadRequest(413, f"request body is {len(body)} bytes; the limit is {max_bytes}")
    if _depth(body) > MAX_DEPTH:
        raise BadRequest(400, f"body nests more than {MAX_DEPTH} levels deep; expected {expected}")
    try:
        payload: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, f"body is not valid JSON ({exc}); expected {expected}") from None
    if isinstance(payload, dict):
        field = next((name for name in fields if name in payload), None)
        if field is None:
            found = ", ".join(map(repr, list(payload)[:5])) or "none"
            raise BadRequest(
                422, f"missing field 'rows' (fields found: {found}); expected {expected}"
            )
        payload = payload[field]
    if isinstance(payload, str) and "texts" in fields:
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise BadRequest(422, f"'rows' must be a non-empty list; expected {expected}")
    return payload
