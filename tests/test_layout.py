"""The layout is the architecture: imports point down the layers and never form a cycle.

Every import counts, including the ones inside functions and under ``TYPE_CHECKING``:
a cycle that only type checkers see still ties two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lower numbers sit lower. A module may import its own package and anything below it;
# two packages on one level (api and store, service and insights) never import each other.
LAYERS: dict[str, int] = {
    "testio_sync.errors": 0,
    "testio_sync.dates": 1,
    "testio_sync.settings": 1,
    "testio_sync.api": 2,
    "testio_sync.store": 2,
    "testio_sync.repositories": 3,
    "testio_sync.sync": 4,
    "testio_sync.tasks": 5,
    "testio_sync.service": 6,
    "testio_sync.insights": 6,
    "testio_sync.mcp_server": 7,
    "testio_sync.cli": 8,
    "testio_sync.__main__": 9,
    "tasks": 9,  # the checkout's alias for `huey_consumer tasks.huey`
}
# The simulator implements the API contract on its own: it imports nothing else of ours.
INDEPENDENT = "testio_sync.simulator"
# The package root only re-exports the public API.
FACADE = "testio_sync"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    found = {}
    for top in ("testio_sync", "tasks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, resolved to modules where a name is one."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    return {t for t in targets if t in known and t != name}


def layer_of(name: str) -> tuple[str, int] | None:
    best = None
    for prefix, level in LAYERS.items():
        if (name == prefix or name.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, level)
    return best


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in sorted(graph.items()):
        if source == FACADE:
            continue
        for target in sorted(targets):
            if source.startswith(INDEPENDENT) != target.startswith(INDEPENDENT):
                if source.startswith(INDEPENDENT) or layer_of(source) is None:
                    wrong.append(f"{source} -> {target} (the simulator stands alone)")
                elif layer_of(source)[1] < LAYERS["testio_sync.cli"]:
                    wrong.append(f"{source} -> {target} (only the CLI starts the simulator)")
                continue
            if source.startswith(INDEPENDENT):
                continue
            if target == FACADE:
                wrong.append(f"{source} -> {target} (import the defining module)")
                continue
            here, there = layer_of(source), layer_of(target)
            if here is None or there is None:
                wrong.append(f"{source} -> {target} (a module outside every layer)")
            elif here[0] != there[0] and there[1] >= here[1]:
                wrong.append(f"{source} (layer {here[1]}) -> {target} (layer {there[1]})")
    return wrong


def test_no_module_import_cycle():
    """Following imports from any module never leads back to it."""
    assert find_cycle(import_graph()) is None


def test_every_import_points_down_the_layers():
    """Entry points -> service -> sync -> repositories -> api, store -> settings, dates, errors."""
    assert upward_imports(import_graph()) == []


def test_the_package_root_stays_small():
    """At most eight modules beside the packages, so the root keeps showing the layers."""
    root_modules = sorted(p.name for p in (ROOT / "testio_sync").glob("*.py"))
    assert len(root_modules) <= 8, root_modules


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": set()}, None),
    ],
)
def test_the_cycle_finder_sees_a_cycle(graph, expected):
    """The check can fail: a two-module cycle is reported with its path."""
    assert find_cycle(graph) == expected


def test_the_layer_check_sees_an_upward_import():
    """The check can fail: store importing sync, and the simulator importing the store."""
    graph = {
        "testio_sync.store.runs": {"testio_sync.sync.types"},
        "testio_sync.simulator.app": {"testio_sync.store.models"},
        "testio_sync.store.models": set(),
        "testio_sync.sync.types": set(),
    }
    assert upward_imports(graph) == [
        "testio_sync.simulator.app -> testio_sync.store.models (the simulator stands alone)",
        "testio_sync.store.runs (layer 2) -> testio_sync.sync.types (layer 4)",
    ]
