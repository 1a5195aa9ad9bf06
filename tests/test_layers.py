"""The shape of the code: layers that only import downwards, no import circle, small
modules and functions (docs/ARCHITECTURE.md). Read from the source with ``ast``; imports
inside functions and under ``TYPE_CHECKING`` count like any other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "sweeplab"

# Bottom to top. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "store, locks, logging set-up, name tables",
        (
            "sweeplab",
            "sweeplab.store",
            "sweeplab.locks",
            "sweeplab.logs",
            "sweeplab.data.catalog",
            "sweeplab.models.catalog",
            "sweeplab.optim.catalog",
            "sweeplab.search.catalog",
        ),
    ),
    ("spec", ("sweeplab.spec",)),
    ("data", ("sweeplab.data",)),
    ("optimizers and schedules", ("sweeplab.optim",)),
    ("models", ("sweeplab.models",)),
    ("tracking", ("sweeplab.tracking",)),
    ("registry", ("sweeplab.registry",)),
    ("training", ("sweeplab.training",)),
    (
        "search core",
        (
            "sweeplab.search.keys",
            "sweeplab.search.study",
            "sweeplab.search.sampling",
            "sweeplab.search.curves",
            "sweeplab.search.restarts",
            "sweeplab.search.fits",
            "sweeplab.search.trial",
            "sweeplab.search.claims",
        ),
    ),
    ("backends", ("sweeplab.search.optuna_backend", "sweeplab.search.ray_backend")),
    (
        "lifecycle, publish, analysis, serving",
        (
            "sweeplab.search",
            "sweeplab.search.lifecycle",
            "sweeplab.search.publish",
            "sweeplab.search.single",
            "sweeplab.search.push",
            "sweeplab.search.analysis",
            "sweeplab.serving",
        ),
    ),
    ("cli", ("sweeplab.cli", "sweeplab.__main__")),
]

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # the body, after the signature and docstring
LONG_REASON = "# long:"  # a function over the limit says why with this comment


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _owner(name: str) -> str:
    """The module that ``name`` (a module or a name in one) is defined in."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {_owner(a.name) for a in node.names if a.name.startswith("sweeplab")}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            if module.startswith("sweeplab"):
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    found.add(full if full in MODULES else _owner(module))
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    best, level = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    return level


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m) < 0] == []


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_there_is_no_import_circle() -> None:
    assert _circles(GRAPH) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_an_upward_import_would_be_caught() -> None:
    assert layer_of("sweeplab.models.transfer") < layer_of("sweeplab.registry.models")
    assert layer_of("sweeplab.search.catalog") < layer_of("sweeplab.spec._schema")
    assert layer_of("sweeplab.search.ray_backend.pbt") < layer_of("sweeplab.search.lifecycle")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_functions_stay_small(module: str) -> None:
    source = MODULES[module].read_text(encoding="utf-8")
    assert source.count("\n") <= MAX_MODULE_LINES, f"{module} has {source.count(chr(10))} lines"
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if (
            len(body) > 1
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            body = body[1:]
        end = node.end_lineno or node.lineno
        length = end - body[0].lineno + 1
        text = "\n".join(lines[node.lineno - 1 : end])
        assert length <= MAX_FUNCTION_LINES or LONG_REASON in text, (
            f"{module}.{node.name} has {length} lines: split it, or say why with '{LONG_REASON}'"
        )
