"""The package's shape, read from its imports (ast, nothing is imported): no cycle between
packages, every import points down the layer order, and no function-level import of
mt_factored that is not a declared lazy import of a heavy third-party library."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mt_factored"

LAYERS: dict[str, int] = {
    # core: names, errors and the version, imported by everything, importing nothing
    "__init__": -1,
    "constants": -1,
    "errors": -1,
    # 0: foundations
    "tasks": 0,
    "nn": 0,
    "artifacts": 0,
    # 1: the two models and the data
    "expert": 1,
    "student": 1,
    "data": 1,
    # 2: planning and distillation
    "planning": 2,
    "distill": 2,
    # 3: training (offline and online) and publishing
    "online": 3,
    "training": 3,
    "hub": 3,
    # 4: what is measured on trained models
    "analysis": 4,
    # 5: the entry points, the shared runner, the schema registry, and the recipes (data)
    "recipes": 5,
}
"""Layer of each top-level unit of the package. A unit imports only units of lower layers
(or itself); everything not listed (the entry points, the recipes' schema) is layer 5."""
ENTRY_LAYER = 5
LAZY_MARK = "# lazy:"
"""A function-level import of mt_factored must carry this comment, naming the heavy
third-party library it keeps off the import path."""


def unit_of(module: str) -> str:
    """``mt_factored.expert.model`` -> ``expert``; a top-level module (an entry point) is a
    unit of its own. A package's ``__main__`` belongs to the package (``python -m
    mt_factored.data`` forwards to an entry point by name, importing nothing above)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(unit: str) -> int:
    return LAYERS.get(unit, ENTRY_LAYER)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(name: str) -> bool:
    """Whether ``mt_factored.<name>`` is a module or package (not a name in ``__init__``)."""
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def imports(path: Path, typing_too: bool = False) -> list[tuple[str, int, bool, str]]:
    """(imported module, line, inside a function, source line) of every runtime import of
    mt_factored in ``path``; ``if TYPE_CHECKING:`` blocks are skipped unless ``typing_too``."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    found: list[tuple[str, int, bool, str]] = []
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if (
                isinstance(child, ast.If)
                and "TYPE_CHECKING" in ast.unparse(child.test)
                and not typing_too
            ):
                continue
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1])
                    base = f"{base}.{child.module}" if child.module else base
                # ``from mt_factored import tasks`` imports the unit ``tasks``;
                # ``from mt_factored import __version__`` the package's ``__init__``
                names = [
                    f"{base}.{a.name}" if base == "mt_factored" and is_module(a.name) else base
                    for a in child.names
                ]
            for name in names:
                if name == "mt_factored" or name.startswith("mt_factored."):
                    found.append((name, child.lineno, in_function, lines[child.lineno - 1]))
            visit(child, inner)

    visit(tree, False)
    return found


def package_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> ["file:line", ...]."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of(module_name(path))
        for name, line, _, _ in imports(path):
            target = unit_of(name)
            if target != source:
                graph[source][target].append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of units (a list that starts and ends with the same unit), if there is one."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in list(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def assert_no_cycle(graph: dict[str, dict[str, list[str]]], between: str) -> None:
    cycle = find_cycle(graph)
    pairs = zip(cycle, cycle[1:], strict=False) if cycle else []
    where = [f"{a} -> {b}: {graph[a][b][:3]}" for a, b in pairs]
    assert cycle is None, f"import cycle between {between}:\n" + "\n".join(where)


def test_no_cycle_between_packages() -> None:
    assert_no_cycle(package_graph(), "packages")


def module_graph() -> dict[str, dict[str, list[str]]]:
    """module -> imported module -> ["file:line", ...], annotations-only imports included.

    A package's ``__init__`` re-exports its modules, so an import of the package counts as an
    import of its ``__init__`` only (not of every module it re-exports)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for name, line, _, _ in imports(path, typing_too=True):
            while name not in MODULES and "." in name:
                name = name.rpartition(".")[0]  # ``from pkg.mod import name`` -> pkg.mod
            if name != source and not source.startswith(f"{name}."):
                graph[source][name].append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return graph


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}


def test_no_cycle_between_modules() -> None:
    """No two modules need each other, not even for annotations (``TYPE_CHECKING``)."""
    assert_no_cycle(module_graph(), "modules")


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{source} (layer {layer(source)}) -> {target} (layer {layer(target)}): {sites[:3]}"
        for source, targets in package_graph().items()
        for target, sites in targets.items()
        if layer(target) >= layer(source) and not (layer(source) == ENTRY_LAYER)
    ]
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_entry_points_are_not_imported_by_the_library() -> None:
    entries = {u for u in package_graph() if layer(u) == ENTRY_LAYER}
    users = [
        f"{source} -> {target}"
        for source, targets in package_graph().items()
        if layer(source) < ENTRY_LAYER
        for target in targets
        if target in entries
    ]
    assert not users, users


def test_function_level_imports_are_declared_lazy() -> None:
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for _, line, in_function, text in imports(path)
        if in_function and LAZY_MARK not in text
    ]
    assert not bad, (
        "function-level imports of mt_factored (move them to the top, or mark a lazy import "
        f"of a heavy library with '{LAZY_MARK} <why>'):\n" + "\n".join(bad)
    )


@pytest.mark.parametrize(
    "graph, cycle",
    [
        ({"a": {"b": []}, "b": {"c": []}, "c": {}}, None),
        ({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}, ["a", "b", "c", "a"]),
        ({"x": {"y": []}, "y": {"y2": []}, "y2": {"y": []}}, ["y", "y2", "y"]),
    ],
)
def test_cycle_finder_finds_cycles(graph, cycle) -> None:
    assert find_cycle(graph) == cycle


def test_every_unit_has_a_layer_or_is_an_entry_point() -> None:
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"
    assert set(LAYERS) - {"errors"} <= units | {"__init__"}
