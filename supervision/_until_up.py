"""A start or restart asked from outside (CLI, HTTP) answered once the child is up.

``systemctl start`` of a ``Type=notify`` unit returns once the unit says it is ready, and
fails if it does not come up; ``supervisorctl start`` waits ``startsecs``. A jobvisor
start that answered as soon as its supervisor took it said ``web: started`` (exit 0) while
``web`` was still ``starting``, and so for a job whose ``ready:`` check could never pass.
``UntilUp`` follows the child by the tree's events from before the start is asked: up is
the first state after the start's ``pending`` or ``starting`` that is not on the way there
(running, or its ready check passed; a quick job's success; a breaker's wait); down again
is a failure before that (backoff, failed, gave up, cooling down) or a stop meanwhile.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

from actors import JobvisorError
from supervision._events import StateChanged
from supervision._state import State

if TYPE_CHECKING:
    from supervision._events import Event
    from supervision._tree import Tree

__all__ = ["UP", "UntilUp", "down_again", "not_up_yet"]

UP: Final = frozenset({State.RUNNING, State.SUCCEEDED, State.PROBATION, State.WAITING})
_STATES: Final = {state.value: state for state in State}
_ON_THE_WAY: Final = frozenset({State.PENDING, State.STARTING})
_AFTER: Final = {
    State.BACKOFF: "it is started again after its backoff",
    State.COOLDOWN: "its restarts ran out: it is started again after its cooldown",
    State.FAILED: "it is not started again",
    State.GAVE_UP: "its supervisor gave up on it",
    State.STOPPED: "it was stopped meanwhile",
}


class UntilUp:
    """The child at ``path`` of ``tree``, followed through a start until it is up or down
    again (``done``; ``state`` is where it went). Subscribed at once: make it before the
    start is asked, so that no change of state goes by unseen. ``cancel()`` when done."""

    def __init__(self, tree: Tree, path: str) -> None:
        self.path = path
        self.done = threading.Event()
        self.state: State | None = None  # where it went: up, or down again
        self.now: State | None = None  # its latest state seen (for a wait that ran out)
        self._begun = False
        self._since = float("-inf")  # events older than a joined child's last change: ignored
        self._now_at = float("-inf")  # when ``now`` came to be
        self._sub = tree.subscribe(self._event)

    def _event(self, event: Event) -> None:
        if type(event) is not StateChanged or event.path != self.path or self.done.is_set():
            return
        if event.at < self._since:
            return
        self.now, self._now_at = event.new, event.at
        if event.new in _ON_THE_WAY:
            self._begun = True  # a restart's stop came first: its own end is not the answer
        elif self._begun and event.new is not State.STOPPING:
            self.state = event.new
            self.done.set()

    def join(self, tree: Tree) -> bool:
        """Follow a child that a start found on its way up already (``already starting;
        nothing to start``, a restart of its own under way), as ``systemctl start`` waits
        for a unit still activating; False (nothing to follow) if it is not."""
        node = _node_now(tree, self.path)
        if node is None or _STATES.get(str(node.get("state"))) not in _ON_THE_WAY:
            return False
        since = node.get("since")
        if isinstance(since, int | float):
            # What came before the snapshot's state (a start and a failure that a late event
            # tells now) is not this start's answer.
            self._since = since
        self._begun = True
        # A change the events told before _begun was set, if it came after the snapshot's.
        seen = self.now if self._now_at >= self._since else None
        if seen is not None and seen not in _ON_THE_WAY and seen is not State.STOPPING:
            self.state = seen
            self.done.set()
        return True

    def cancel(self) -> None:
        self._sub.cancel()


def not_up_yet(
    tree: Tree, op: str, path: str, waited: float, *, now: State | None, see: str
) -> str:
    """What is said of a child still on its way up when the request's wait ran out."""
    done = "started" if op == "start" else "restarted"
    node = _node_now(tree, path)
    if node is not None:  # a child pending before and after (a restart of one) says nothing
        now = _STATES.get(str(node.get("state")), now)
    if now is State.PENDING:
        why = "it waits for a dependency to be ready"
    elif node is not None and node.get("kind") == "group":
        why = "its jobs are still starting"
    else:
        why = "its ready check has not passed yet"
    return (
        f"{path}: {done}, and not up after {waited:g}s: {why}; it goes on: {see} shows when it runs"
    )


def down_again(tree: Tree, op: str, path: str, state: State | None) -> str:
    """What is said of a child that failed (or was stopped) before it was up."""
    done = "started" if op == "start" else "restarted"
    after = _AFTER.get(state, f"it is {state}") if state is not None else "it is down"
    if state is State.STOPPED:
        return f"{path}: {done}, but {after} before it was up"
    node = _node_now(tree, path)
    error = _error_of(node)
    if error is None:
        # Not its own failure: a sibling's under one_for_all took it down, or a dependency
        # failed for good before it could start.
        return f"{path}: {done}, but it was not up: {after} (see `status`, `history`)"
    return f"{path}: {done}, but it failed before it was up: {error}; {after}"


def _node_now(tree: Tree, path: str) -> dict[str, Any] | None:
    """The child's status node now (as ``status`` shows it, masked); None if unknown."""
    try:
        document = tree.status(timeout=5.0)
    except JobvisorError:
        return None
    return _node(document, path)


def _error_of(node: dict[str, Any] | None) -> str | None:
    last = node.get("last_exit") if node is not None else None
    error = last.get("error") if isinstance(last, dict) else None
    return error if isinstance(error, str) else None


def _node(document: dict[str, Any], path: str) -> dict[str, Any] | None:
    todo = list(document.get("children") or ())
    while todo:
        node = todo.pop()
        if node.get("path") == path:
            return node  # type: ignore[no-any-return]
        todo.extend(node.get("children") or ())
    return None
