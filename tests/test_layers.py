"""The shape of the code: layers that only import downwards, no import circle, small
modules and functions (docs/ARCHITECTURE.md). Read from the source with ``ast``; imports
inside functions and under ``TYPE_CHECKING`` count like any other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sweeplab.search.states import SweepState, TrialState

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "sweeplab"

# Bottom to top. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "store, locks, logging set-up, name tables",
        (
            "sweeplab.compat",
            "sweeplab.store",
            "sweeplab.schemas",
            "sweeplab.locks",
            "sweeplab.services",
            "sweeplab.outages",
            "sweeplab.logs",
            "sweeplab.interrupts",
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
            "sweeplab.search.states",
            "sweeplab.search.options",
            "sweeplab.search.storage",
            "sweeplab.search.sampling",
            "sweeplab.search.ranking",
            "sweeplab.search.results",
            "sweeplab.search.sweep",
            "sweeplab.search.warm",
            "sweeplab.search.curves",
            "sweeplab.search.restarts",
            "sweeplab.search.resumes",
            "sweeplab.search.fits",
            "sweeplab.search.trial",
            "sweeplab.search.claims",
            "sweeplab.search.baselines",
        ),
    ),
    ("backends", ("sweeplab.search.optuna_backend", "sweeplab.search.ray_backend")),
    (
        "lifecycle, publish, analysis, serving",
        (
            "sweeplab",  # the package's face: the Python API, loaded on first use
            "sweeplab.search",
            "sweeplab.search.lifecycle",
            "sweeplab.search.api",
            "sweeplab.search.ensembles",
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


# ----------------------------------------------------------------- one owner per name

STATE_WORDS = {state.value for state in TrialState} | {state.value for state in SweepState}
STATES_MODULE = "sweeplab.search.states"


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def state_literals(source: str) -> list[str]:
    """The string constants of ``source`` that spell a trial or sweep state."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in STATE_WORDS
        and id(node) not in docs
    ]


def test_no_state_is_spelled_outside_the_states_module() -> None:
    """Trial and sweep states are ``search.states``' enums everywhere else: a module
    compares and writes ``TrialState.COMPLETE``, never the string "complete"."""
    found = {
        module: words
        for module, path in sorted(MODULES.items())
        if module != STATES_MODULE and (words := state_literals(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_state_literal_finder_finds_one() -> None:
    assert state_literals('x = "complete"\ny = f"{x} complete"') == ["complete"]
    assert state_literals('"""running"""\nz = "running"') == ["running"]


COMPAT_MODULE = "sweeplab.compat"
LIBRARIES = ("optuna", "ray", "lightning", "torch", "mlflow", "sqlalchemy", "pydantic")


def private_accesses(source: str) -> list[str]:
    """A library's private names read in ``source``: ``x._name`` where ``x`` is not
    ``self`` or ``cls`` (sweeplab's own objects keep no private state that others read),
    and imports of a library's private module or name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(LIBRARIES):
            parts = (node.module or "").split(".")
            names = [a.name for a in node.names]
            if any(_private(p) for p in parts) or any(_private(n) for n in names):
                found.append((node.lineno, f"from {node.module} import {', '.join(names)}"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_library_access_outside_the_compatibility_module() -> None:
    found = {
        module: hits
        for module, path in sorted(MODULES.items())
        if module != COMPAT_MODULE and (hits := private_accesses(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_private_access_finder_finds_them() -> None:
    source = "t._trial_id\nself._ok\nfrom optuna.storages._heartbeat import BaseHeartbeat\n"
    assert private_accesses(source) == [
        "line 1: ._trial_id",
        "line 3: from optuna.storages._heartbeat import BaseHeartbeat",
    ]
