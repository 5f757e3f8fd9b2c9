"""Siblings in a manifest: unique names, ``depends_on`` that name siblings, and no cycles.

Entries are read first and built last, because a child's dependencies are
its siblings' names (a replicated name means all of its replicas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervision._depgraph import cycles, sibling_expected

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
    at = {id(entry): i for i, entry in enumerate(entries)}
    resolved: dict[int, tuple[str, ...]] = {}
    edges: list[list[int]] = []  # by position: the entries each one depends on
    for entry in entries:
        names: list[str] = []
        targets: list[int] = []
        for dep in entry.deps:
            name = dep.value
            target = by_name.get(name) or owners.get(name)
            if target is None:
                expected, hint = sibling_expected(name, set(by_name) | set(owners))
                reader.expected(dep, expected, hint=hint)
                continue
            if target is entry:
                reader.expected(dep, "the name of another sibling, not the job's own")
                continue
            wanted = target.names if name == target.name else (name,)
            names.extend(n for n in wanted if n not in names)
            targets.append(at[id(target)])
        resolved[id(entry)] = tuple(names)
        edges.append(targets)
    for cycle in cycles(edges) if any(edges) else ():
        first = entries[cycle[0]]
        text = " -> ".join(str(entries[i].name) for i in (*cycle, cycle[0]))
        reader.add(first.deps_at or first.v, f"expected no dependency cycle, got {text}")
    return resolved


def replica_names(name: str, replicas: int | None) -> tuple[str, ...]:
    """``replicas: N`` makes ``name.0`` .. ``name.N-1`` (even for N = 1); no replicas: ``name``."""
    return (name,) if replicas is None else tuple(f"{name}.{i}" for i in range(replicas))
