"""A dependency on a group: what every child below it is, and whom to tell when one changes.

``depends_on: [g]`` naming a group means what it means for a job: met once every
job below ``g`` is (a service running and ready, a once job succeeded), failed once
one of them gave up or failed finally. The jobs below ``g`` belong to other
supervisors (other threads), so each supervisor writes its children's states here
and the supervisor of ``g``'s dependants reads them, and is told (``Nudge``) when
one below ``g`` changes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import pykka

from supervision._state import State

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

__all__ = ["Below", "Blocker", "GroupDeps", "Nudge", "Seen"]

# A group in one of these has started its children (and they theirs); in any other it is
# itself what a dependant waits for.
UP = frozenset({State.RUNNING, State.PROBATION})
# A job that runs until it is stopped is met in one of these (WAITING: its breaker is open).
RUNNING = frozenset({State.RUNNING, State.PROBATION, State.WAITING})
DOWN = frozenset({State.FAILED, State.GAVE_UP})


class Blocker(NamedTuple):
    """A child below a group that a dependant of the group waits for, or fails on."""

    path: str
    state: State


class Seen(NamedTuple):
    """A child as its supervisor last wrote it."""

    state: State
    once: bool  # met only when it succeeded (a finite job), not when it runs
    group: bool


@dataclass(frozen=True, slots=True)
class Nudge:
    """A child below a group that a sibling depends on changed: look at the waiting again."""


Below = dict[str, Seen]  # one group's children, by path


@dataclass(slots=True)
class GroupDeps:
    """Every supervisor's children, by the supervisor's path, and the supervisors to nudge.

    Each inner mapping has one writer, the supervisor of that path (its current
    incarnation), and is read by others: a dict's item write and its copy are atomic
    under the GIL (and between two greenlet switches), so no lock is taken on a
    transition.
    """

    tables: dict[str, Below] = field(default_factory=dict)
    # The path of a group a job depends on -> the supervisor of that job (the group's parent).
    watchers: dict[str, pykka.ActorRef[Any]] = field(default_factory=dict)

    def table(self, path: str) -> Below:
        """A fresh table for the supervisor at ``path`` (a new incarnation writes all anew)."""
        below: Below = {}
        self.tables[path] = below
        return below

    def forget(self, path: str) -> None:
        """The group at ``path`` was removed, with everything below it."""
        prefix = f"{path}/"
        for key in [k for k in list(self.tables) if k == path or k.startswith(prefix)]:
            self.tables.pop(key, None)

    def watch(self, group: str, supervisor: pykka.ActorRef[Any]) -> None:
        """``supervisor`` has a child that depends on its child ``group``."""
        self.watchers[group] = supervisor

    def changed(self, path: str) -> None:
        """The child at ``path`` changed state: nudge the supervisor of each group above it
        that a job depends on."""
        watchers = self.watchers
        if not watchers:
            return
        for group in _above(path):
            ref = watchers.get(group)
            if ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):  # it ended, or restarts
                    ref.tell(Nudge())

    def blocker(self, path: str) -> Blocker | None:
        """What keeps a dependency on the (running) group at ``path`` unmet: a child below
        it that is down for good, else the first that is not ready or succeeded; None: met."""
        waiting: Blocker | None = None
        for child, seen in self._below(path):
            if seen.state in DOWN:
                return Blocker(child, seen.state)
            if waiting is None and not _met(seen):
                waiting = Blocker(child, seen.state)
        return waiting

    def down(self, path: str, states: Collection[State] = DOWN) -> Blocker | None:
        """A child below the group at ``path`` in one of ``states`` (by default: that gave up
        or failed finally), if any."""
        for child, seen in self._below(path):
            if seen.state in states:
                return Blocker(child, seen.state)
        return None

    def _below(self, path: str) -> Iterator[tuple[str, Seen]]:
        """Every child below ``path``, a running group's children after it, in list order."""
        for child, seen in list(self.tables.get(path, {}).items()):
            yield child, seen
            if seen.group and seen.state in UP:
                yield from self._below(child)


def _met(seen: Seen) -> bool:
    if seen.group:
        return seen.state in UP
    return seen.state is State.SUCCEEDED or (not seen.once and seen.state in RUNNING)


def _above(path: str) -> Iterator[str]:
    """The paths of the groups above ``path``, innermost first."""
    while "/" in path:
        path = path.rpartition("/")[0]
        yield path
