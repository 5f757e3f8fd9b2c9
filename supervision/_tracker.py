"""Whether a tree has settled: the count behind ``Tree.wait`` and the run's end."""

from __future__ import annotations

import threading
from typing import Final

from supervision._state import FINAL, State

# What a child cannot come back from by itself.
DEAD: Final = frozenset({State.GAVE_UP, State.FAILED})

__all__ = ["Tracker"]


class Tracker:
    """Counts the finite leaves of a tree that have not settled, for ``Tree.wait``.

    Supervisors call ``update`` from their own threads; it is a dict write and
    a notify when the count reaches zero, cheap enough for every transition.
    A tree settles when every finite leaf has (a once-job ``--resume`` skipped
    is one, settled as succeeded from the start); one with endless leaves only
    settles when it ends, and one with no leaf at all (an empty manifest, every
    child removed) has settled. A leaf that waits (``pending``) for a job that is
    stopped, itself or through the jobs it waits for, cannot start by itself
    either (its dependency waits for a person: ``autostart: false``, or a
    person's stop): nothing waits for it. ``all_dead`` tells when no leaf can
    run again by itself.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._unsettled: set[str] = set()
        self._leaves: set[str] = set()  # every leaf the tree has, finite or not
        self._finite: set[str] = set()  # every finite leaf: with none, only the end counts
        self._final: dict[str, State] = {}
        # Groups taken down to come back (a group restart, a tree cooldown): what their
        # shutdown marks stopped below them is not settled, so nothing waits on it.
        self._held: set[str] = set()
        # Leaves, and groups, that ended for good and cannot run again by themselves (gave up,
        # failed): when every leaf is, or is under such a group, nothing is left to wait for.
        self._dead: set[str] = set()
        self._dead_groups: set[str] = set()
        # Leaves waiting (pending) for a dependency: the path of the child each waits for.
        self._waits: dict[str, str] = {}
        self.started = threading.Event()
        self.ended = threading.Event()

    def add(self, path: str) -> None:
        """A leaf joins the tree (before its first ``update``)."""
        with self._cond:
            self._leaves.add(path)

    def update(self, path: str, state: State, finite: bool) -> None:
        """Record ``state`` of the leaf at ``path``; only finite leaves hold ``wait`` up."""
        if state not in FINAL and path not in self._final:
            if not finite:
                return  # an endless leaf between two non-final states: nothing to record
            if path in self._unsettled:
                # A finite leaf going from one unsettled state to another (a crash loop's
                # backoff, starting, probation): the writes below would change nothing, so
                # no lock is taken, three times per restart.
                return
        with self._cond:
            if state in DEAD:
                self._dead.add(path)
            else:
                self._dead.discard(path)
            if finite:
                self._finite.add(path)
            if state in FINAL:
                self._unsettled.discard(path)
                self._final[path] = state
                if not self._unsettled or self._waits:  # a leaf waiting for it may be stuck
                    self._cond.notify_all()
            else:
                if finite:
                    self._unsettled.add(path)
                self._final.pop(path, None)

    def waiting(self, path: str, dependency: str | None) -> None:
        """The leaf at ``path`` waits (pending) for the child at ``dependency``; None: no
        longer (it starts)."""
        with self._cond:
            if dependency is None:
                self._waits.pop(path, None)
            else:
                self._waits[path] = dependency
            self._cond.notify_all()

    def _all_stuck(self) -> bool:
        """Whether every unsettled leaf waits for a stopped child, itself or through the jobs
        it waits for, which only a person starts again.

        ``stuck`` keeps each job's answer for this check: a walk that reaches a job another
        walk answered for stops there, so each wait is followed once per check (a chain of N
        leaves is N steps, not N²/2). A walk stops at the first stopped job, so every job it
        passed has the same answer; at a job seen on its own path (a cycle of waits), none
        of them leads to a stopped one.
        """
        waits, final = self._waits, self._final
        stuck: dict[str, bool] = {}
        for leaf in self._unsettled:
            path: list[str] = []
            on_path: set[str] = set()
            dependency = waits.get(leaf)
            answer = False
            while dependency is not None:
                known = stuck.get(dependency)
                if known is not None:
                    answer = known
                    break
                if final.get(dependency) is State.STOPPED:
                    answer = True
                    break
                if dependency in on_path:
                    break  # a cycle with nothing stopped in it
                path.append(dependency)
                on_path.add(dependency)
                dependency = waits.get(dependency)
            for job in path:
                stuck[job] = answer
            if not answer:
                return False
        return True

    def settle_subtree(self, path: str, state: State) -> None:
        """A group ended for good (gave up, failed, stopped): nothing under it will run again."""
        prefix = f"{path}/"
        with self._cond:
            self._unsettled = {p for p in self._unsettled if not p.startswith(prefix)}
            self._final[path] = state
            if state in DEAD:
                self._dead_groups.add(path)
            if not self._unsettled or self._waits:  # a leaf waiting under it may be stuck
                self._cond.notify_all()

    def hold(self, path: str) -> None:
        """The group at ``path`` is going down only to start again: the tree is not settled."""
        with self._cond:
            self._held.add(path)

    def release(self, path: str) -> None:
        """The held group at ``path`` starts again or ends for good."""
        with self._cond:
            self._dead_groups.discard(path)  # it starts again
            if path in self._held:
                self._held.discard(path)
                self._cond.notify_all()

    def forget(self, path: str) -> None:
        """The child at ``path`` was removed, with everything under it."""
        prefix = f"{path}/"
        with self._cond:
            for paths in (
                self._unsettled,
                self._finite,
                self._leaves,
                self._dead,
                self._dead_groups,
            ):
                paths.difference_update([p for p in paths if p == path or p.startswith(prefix)])
            for p in [p for p in self._waits if p == path or p.startswith(prefix)]:
                del self._waits[p]
            for p in [p for p in self._final if p == path or p.startswith(prefix)]:
                del self._final[p]
            self._cond.notify_all()

    @property
    def empty(self) -> bool:
        """True while the tree has no leaf at all."""
        with self._cond:
            return not self._leaves

    def _settled(self) -> bool:
        if self.ended.is_set():
            return True
        if not self.started.is_set() or self._held:
            return False
        if self._unsettled and not (self._waits and self._all_stuck()):
            return False
        return bool(self._finite) or not self._leaves

    def all_dead(self) -> bool:
        """Every leaf gave up or failed, itself or with a group above it: none runs again
        unless a person starts it (a stop by a person is no such end). A tree of endless
        leaves still waits then (SPEC: until a signal); ``run`` says why it waits."""
        with self._cond:
            return bool(self._leaves) and self._all_dead()

    def _all_dead(self) -> bool:
        leaves, dead = self._leaves, self._dead
        if len(dead) >= len(leaves) and dead >= leaves:
            return True
        groups = tuple(f"{g}/" for g in self._dead_groups)
        return bool(groups) and all(leaf in dead or leaf.startswith(groups) for leaf in leaves)

    def wait_settled(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(self._settled, timeout)

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def finals(self) -> dict[str, State]:
        with self._cond:
            return dict(self._final)
