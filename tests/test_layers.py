"""The ``actors`` package has no import cycle, counting imports made only for type checking."""

from __future__ import annotations

import ast
from pathlib import Path

ACTORS = Path(__file__).resolve().parent.parent / "actors"


def _module_level(tree: ast.Module) -> list[ast.stmt]:
    """The statements run (or type-checked) at import: the top level and its ``if`` blocks."""
    found: list[ast.stmt] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If | ast.Try):
            todo.extend([*node.body, *node.orelse])
    return found


def _imports(path: Path) -> set[str]:
    """The ``actors._x`` modules ``path`` imports at module level, ``TYPE_CHECKING`` included.

    Imports inside functions are left out: they are deferred on purpose (a kind
    loads what only some of its jobs need on first use) and cannot cycle at import.
    """
    found: set[str] = set()
    for node in _module_level(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("actors."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("actors."))
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path of module names, None if it has none."""
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> list[str] | None:
        if module in trail:
            return [*trail[trail.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            found = visit(imported, [*trail, module])
            if found is not None:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_actors_modules_import_no_cycle() -> None:
    graph = {f"actors.{path.stem}": _imports(path) for path in ACTORS.glob("_*.py")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
