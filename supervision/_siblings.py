"""Siblings in a manifest: unique names, ``depends_on`` that name siblings, and no cycles.

Entries are read first and built last, because a child's dependencies are
its siblings' names (a replicated name means all of its replicas).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from supervision._reader import Reader, V
    from supervision._spec import ChildSpec

__all__ = ["Entry", "check_dependencies", "check_names", "replica_names"]


@dataclass(slots=True)
class Entry:
    """A child of a supervisor, read but not yet built: it needs its siblings' names first."""

    name: str | None
    v: V  # the list item
    name_v: V  # where its name is written
    names: tuple[str, ...]  # the children it becomes (replicas expanded)
    deps: list[V]  # depends_on items, each a str value
    deps_at: V | None  # where depends_on is written
    build: Callable[[tuple[str, ...]], list[ChildSpec]]


def check_names(reader: Reader, entries: list[Entry]) -> dict[str, Entry]:
    """Each name with its entry; a name given twice among siblings is an issue."""
    owners: dict[str, Entry] = {}
    for entry in entries:
        for name in entry.names:
            if name in owners:
                first = owners[name].name_v
                at = f" at line {first.line}" if first.line is not None else ""
                reader.add(
                    entry.name_v,
                    f"expected a name unique among its siblings, got {name!r} "
                    f"(already used by {first.path}{at})",
                )
            else:
                owners[name] = entry
    return owners


def check_dependencies(
    reader: Reader, entries: list[Entry], owners: dict[str, Entry]
) -> dict[int, tuple[str, ...]]:
    """Each entry's dependencies as child names; unknown names, itself and cycles are issues."""
    by_name = {entry.name: entry for entry in entries if entry.name is not None}
    resolved: dict[int, tuple[str, ...]] = {}
    edges: dict[int, list[Entry]] = {}
    for entry in entries:
        names: list[str] = []
        targets: list[Entry] = []
        for dep in entry.deps:
            name = dep.value
            target = by_name.get(name) or owners.get(name)
            if target is None:
                choices = sorted(set(by_name) | set(owners))
                close = difflib.get_close_matches(name, choices, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                listed = ", ".join(choices) if len(choices) <= 12 else f"{len(choices)} names"
                reader.expected(dep, f"the name of a sibling ({listed})", hint=hint)
                continue
            if target is entry:
                reader.expected(dep, "the name of another sibling, not the job's own")
                continue
            wanted = target.names if name == target.name else (name,)
            names.extend(n for n in wanted if n not in names)
            targets.append(target)
        resolved[id(entry)] = tuple(names)
        edges[id(entry)] = targets
    for cycle in _cycles(entries, edges) if any(edges.values()) else ():
        first = cycle[0]
        text = " -> ".join(str(e.name) for e in (*cycle, first))
        reader.add(first.deps_at or first.v, f"expected no dependency cycle, got {text}")
    return resolved


def _cycles(entries: list[Entry], edges: dict[int, list[Entry]]) -> list[list[Entry]]:
    """One dependency cycle per strongly connected group of entries, in list order."""
    reach = {id(entry): _reachable(entry, edges) for entry in entries}
    done: set[int] = set()
    cycles: list[list[Entry]] = []
    for entry in entries:
        key = id(entry)
        if key in done or key not in reach[key]:
            continue
        members = {other for other in reach[key] if key in reach.get(other, set())}
        done |= members
        cycles.append(_path_back(entry, members, edges))
    return cycles


def _reachable(start: Entry, edges: dict[int, list[Entry]]) -> set[int]:
    seen: set[int] = set()
    todo = list(edges.get(id(start), []))
    while todo:
        node = todo.pop()
        if id(node) not in seen:
            seen.add(id(node))
            todo.extend(edges.get(id(node), []))
    return seen


def _path_back(start: Entry, members: set[int], edges: dict[int, list[Entry]]) -> list[Entry]:
    """A shortest cycle from ``start`` back to itself inside one strongly connected group."""
    previous: dict[int, Entry] = {}
    frontier = [start]
    seen = {id(start)}
    while frontier:
        following: list[Entry] = []
        for node in frontier:
            for target in edges.get(id(node), []):
                if target is start:
                    path = [node]
                    while path[-1] is not start:
                        path.append(previous[id(path[-1])])
                    return list(reversed(path))
                if id(target) in members and id(target) not in seen:
                    seen.add(id(target))
                    previous[id(target)] = node
                    following.append(target)
        frontier = following
    return [start]


def replica_names(name: str, replicas: int | None) -> tuple[str, ...]:
    """``replicas: N`` makes ``name.0`` .. ``name.N-1`` (even for N = 1); no replicas: ``name``."""
    return (name,) if replicas is None else tuple(f"{name}.{i}" for i in range(replicas))
