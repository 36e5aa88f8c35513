"""The package's layering, read from the source: no import cycle anywhere in ``ivr``, the ACD never
imports the web, and only ``ivr.store`` speaks SQL.

Imports are counted wherever they are written (inside functions and ``if TYPE_CHECKING:`` too): a
cycle hidden in a function is still a cycle a reader must untangle.
"""

from __future__ import annotations

import ast
from collections.abc import Container, Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ivr"


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path, known: Container[str] = ()) -> Iterator[str]:
    """Every absolute module name ``path`` imports. ``from a import b`` where ``a.b`` is one of the
    ``known`` modules imports ``a.b`` (a submodule, not the package's ``__init__``), else ``a``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in known else node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    mods = modules(root)
    return {name: {m for m in imported(path, mods) if m in mods and m != name} for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_and_ignores_a_chain() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_among_the_modules_of_the_package() -> None:
    assert cycles(import_graph()) == []


def test_the_acd_never_imports_the_web() -> None:
    graph = import_graph()
    offenders = {m: sorted(d for d in deps if d.startswith("ivr.web")) for m, deps in graph.items()}
    assert {m: d for m, d in offenders.items() if m.startswith("ivr.acd") and d} == {}


def test_only_the_store_speaks_sql() -> None:
    sql = ("sqlalchemy", "alembic", "asyncpg", "aiosqlite")
    speaking = {
        name
        for name, path in modules().items()
        if any(m.split(".")[0] in sql for m in imported(path)) and not name.startswith("ivr.store")
    }
    assert speaking == set()
