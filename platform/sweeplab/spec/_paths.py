"""Dotted paths into nested dicts and lists: ``train.lr``, ``model.hidden.0``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_MISSING = object()


def _step(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key, _MISSING)
    if isinstance(node, list) and key.lstrip("-").isdigit():
        index = int(key)
        return node[index] if -len(node) <= index < len(node) else _MISSING
    return _MISSING


def has_path(tree: Any, path: str) -> bool:
    try:
        get_path(tree, path)
    except KeyError:
        return False
    return True


def get_path(tree: Any, path: str) -> Any:
    """The value at ``path``; KeyError naming the first missing part."""
    node = tree
    for key in path.split("."):
        node = _step(node, key)
        if node is _MISSING:
            raise KeyError(path)
    return node


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` to ``value``, creating missing mappings on the way.

    Raises KeyError when a part of the path goes through a value that is
    neither a mapping nor a list (``train.lr.x`` where ``train.lr`` is 0.1).
    """
    keys = path.split(".")
    node: Any = tree
    for depth, key in enumerate(keys[:-1]):
        child = _step(node, key)
        if child is _MISSING:
            if not isinstance(node, dict):
                raise KeyError(".".join(keys[: depth + 1]))
            child = node[key] = {}
        if not isinstance(child, dict | list):
            raise KeyError(".".join(keys[: depth + 1]))
        node = child
    last = keys[-1]
    if isinstance(node, list):
        if not last.lstrip("-").isdigit() or not -len(node) <= int(last) < len(node):
            raise KeyError(path)
        node[int(last)] = value
    else:
        node[last] = value


def leaf_paths(tree: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted path in ``tree`` (mappings and the lists themselves, and list items)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}{key}"
            yield path
            yield from leaf_paths(value, path + ".")
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            path = f"{prefix}{index}"
            yield path
            yield from leaf_paths(value, path + ".")
