"""The rules of ``depends_on`` among siblings, for a manifest's reader and for specs alike.

A manifest reports its problems at their lines (``supervision._siblings``); a spec
built in code raises them (``supervision._spec``): both find them here, so a tree
is refused for the same reasons, in the same words, however it was written.
Nodes are the siblings' positions in their list; both checks are linear in the
siblings and their dependencies (a manifest may have 10,000 jobs).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

__all__ = ["cycles", "sibling_expected"]


def sibling_expected(name: str, choices: Collection[str]) -> tuple[str, str]:
    """What a ``depends_on`` naming no sibling expected, and a hint: ``(did you mean 'db'?)``."""
    names = sorted(choices)
    close = difflib.get_close_matches(name, names, n=1) if isinstance(name, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(names) if len(names) <= 12 else f"{len(names)} names"
    return f"the name of a sibling ({listed})", hint


def cycles(edges: Sequence[Sequence[int]]) -> list[list[int]]:
    """One dependency cycle per strongly connected group of nodes, in list order.

    ``edges[i]`` are the nodes node ``i`` depends on. Each cycle is a shortest one
    from the group's first node back to it (``[a, c]`` for ``a -> c -> a``).
    """
    cycles: list[list[int]] = []
    for members in _groups(edges):
        start = min(members)
        if len(members) > 1 or start in edges[start]:
            cycles.append(_path_back(start, members, edges))
    cycles.sort(key=lambda cycle: cycle[0])
    return cycles


def _groups(edges: Sequence[Sequence[int]]) -> list[set[int]]:
    """The strongly connected groups of nodes (Tarjan's, without recursion: a chain of
    10,000 jobs would pass Python's recursion limit)."""
    n = len(edges)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    groups: list[set[int]] = []
    counter = 0
    for root in range(n):
        if index[root] != -1:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, 0)]  # a node and the position of the next of its edges to follow
        while work:
            node, i = work[-1]
            targets = edges[node]
            if i < len(targets):
                work[-1] = (node, i + 1)
                target = targets[i]
                if index[target] == -1:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack[target] = True
                    work.append((target, 0))
                elif on_stack[target]:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                groups.append(_pop_group(node, stack, on_stack))
    return groups


def _pop_group(node: int, stack: list[int], on_stack: list[bool]) -> set[int]:
    """The group ``node`` heads: the nodes on the stack down to it."""
    group: set[int] = set()
    while True:
        member = stack.pop()
        on_stack[member] = False
        group.add(member)
        if member == node:
            return group


def _path_back(start: int, members: set[int], edges: Sequence[Sequence[int]]) -> list[int]:
    """A shortest cycle from ``start`` back to itself inside one strongly connected group."""
    previous: dict[int, int] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following: list[int] = []
        for node in frontier:
            for target in edges[node]:
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return list(reversed(path))
                if target in members and target not in seen:
                    seen.add(target)
                    previous[target] = node
                    following.append(target)
        frontier = following
    return [start]
