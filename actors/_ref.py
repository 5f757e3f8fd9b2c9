"""A stable reference to a supervised child that survives its restarts."""

from __future__ import annotations

import enum
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import pykka
from pykka._envelope import Envelope

from actors._errors import ChildUnavailableError, JobvisorError
from actors._runtime import reply_future

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ChildRef", "OwnMessage", "ReplyTimeoutError"]

STASH_LIMIT = 1000  # Akka's restart-stash-capacity: beyond it, senders get an error at once


class _Mode(enum.Enum):
    ATTACHED = "attached"  # an incarnation is alive: messages go straight to its inbox
    STASHING = "stashing"  # between incarnations: messages wait in the stash
    CLOSED = "closed"  # no incarnation will come: messages fail with ChildUnavailableError


class OwnMessage:
    """A message an actor queues for itself (a job's next run, its next tick).

    It means nothing to another incarnation: a stable reference drops it
    instead of carrying it over a restart (``ChildRef._detach``).
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<own message {self.name}>"


_NO_START: Final = {
    "stopped with its tree": "a tree that has stopped does not start again",
    "removed": "it is no longer in the tree (add it again for a new reference)",
}


class ReplyTimeoutError(JobvisorError, pykka.Timeout):
    """``ChildRef.ask`` waited its ``timeout`` out for the reply; the message stays sent.

    A ``JobvisorError`` (as every error of a tree's), and pykka's ``Timeout`` too (what an
    ask raised before, and a bare pykka reference's ask raises).
    """


class ChildRef:
    """Send messages to a supervised child, whichever incarnation is alive.

    ``tell`` and ``ask`` go to the current incarnation. While the child is
    restarting they wait in a bounded stash and reach the next incarnation in
    order; when the child stops for good, waiting ``ask``s fail with
    ``ChildUnavailableError`` and waiting ``tell``s are reported as dead
    letters. A message is never dropped silently and a sender never hangs.
    Messages still queued in a crashed incarnation's inbox are carried over
    to the next one too.

    Its lifecycle has two owners, one per side of a restart: the supervisor
    opens and closes it as the child's state changes (``_reopen`` when it
    starts, ``_close`` when it settles, is stopped or removed: in
    ``Supervisor._set_state``), and each incarnation attaches its inbox when it
    starts (``start_supervised``) and detaches it once when it ends
    (``SupervisedActor._jv_detach``). Failing what cannot be delivered is the
    reference's own business.
    """

    __slots__ = (
        "__weakref__",  # a tree keeps those it handed out weakly (Tree._refs)
        "_carried",
        "_dead_letter",
        "_inbox",
        "_lock",
        "_mode",
        "_reason",
        "_stash",
        "path",
    )

    def __init__(self, path: str, dead_letter: Callable[[str, Any], None] | None = None) -> None:
        self.path = path
        # Invariant: _inbox is not None exactly when _mode is ATTACHED; both change under _lock.
        # Senders put into the inbox they read without the lock, then check it is still the
        # current one; if a detach came in between, they salvage the dead inbox under the
        # lock. A detach drains under the lock too, so no message is stranded either way.
        self._lock = threading.Lock()
        self._inbox: Any = None
        self._mode = _Mode.STASHING
        self._reason = ""
        self._stash: deque[Envelope[Any]] = deque()
        # Of the stash, how many an ended incarnation left (taken already, kept whatever their
        # number): STASH_LIMIT bounds only those sent since.
        self._carried = 0
        self._dead_letter = dead_letter

    def __repr__(self) -> str:
        return f"<ChildRef {self.path} {self._mode.value}>"

    def tell(self, message: Any) -> None:
        """Send ``message`` without waiting; ``ChildUnavailableError`` if it cannot arrive."""
        envelope = Envelope(message)
        inbox = self._inbox
        if inbox is not None:
            inbox.put(envelope)
            if self._inbox is not inbox:
                self._salvage(inbox)  # a detach raced with us: our message may be stranded
            return
        with self._lock:
            if self._inbox is not None:
                self._inbox.put(envelope)
            else:
                self._stash_or_raise(envelope)

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """Send ``message`` and return its reply (or a future with ``block=False``)."""
        future = reply_future()
        envelope = Envelope(message, reply_to=future)
        inbox = self._inbox
        if inbox is not None:
            inbox.put(envelope)
            if self._inbox is not inbox:
                self._salvage(inbox)
        else:
            with self._lock:
                if self._inbox is not None:
                    self._inbox.put(envelope)
                else:
                    try:
                        self._stash_or_raise(envelope)
                    except ChildUnavailableError:
                        future.set_exception()
        if not block:
            return future
        try:
            return future.get(timeout=timeout)
        except pykka.Timeout as exc:
            result = getattr(future, "_result", None)
            exc_info = getattr(result, "exc_info", None)
            if exc_info is not None and exc_info[1] is exc:
                raise  # the actor's own reply was a Timeout: it stands
            raise ReplyTimeoutError(
                f"child {self.path} did not answer within {timeout:g} s; the message stays "
                "sent and may still be handled (tree.status() says whether the child runs, "
                "restarts, or waits for a sibling's start)"
            ) from None

    @property
    def available(self) -> bool:
        """True unless the child is stopped for good (messages would fail)."""
        return self._mode is not _Mode.CLOSED

    def _stash_or_raise(self, envelope: Envelope[Any]) -> None:
        if self._mode is _Mode.CLOSED:
            # A stopped tree cannot start it again, nor anything a removed child: "start it
            # first" was said after tree.stop() too.
            then = _NO_START.get(self._reason, "start it first")
            raise ChildUnavailableError(f"child {self.path} is {self._reason}: {then}")
        if len(self._stash) - self._carried >= STASH_LIMIT:
            raise ChildUnavailableError(
                f"child {self.path} is not running, and the {STASH_LIMIT} messages sent since "
                "already wait for it to start (as many as a reference keeps meanwhile): send "
                "again once it runs"
            )
        self._stash.append(envelope)

    # -- called by jobvisor only --------------------------------------------------------------

    def _attach(self, inbox: Any) -> None:
        """Route messages to a new incarnation's inbox, stashed ones first."""
        with self._lock:
            while self._stash:
                inbox.put(self._stash.popleft())
            self._carried = 0
            self._inbox = inbox
            self._mode = _Mode.ATTACHED

    def _detach(self, inbox: Any) -> None:
        """Stop routing to ``inbox``; move what it still holds into the stash.

        All of it, past ``STASH_LIMIT`` too: each message was taken already (its ``tell``
        returned), and is in memory either way. Only a closed reference fails them.
        """
        overflow: list[Envelope[Any]] = []
        with self._lock:
            if self._inbox is inbox:
                self._inbox = None
                if self._mode is _Mode.ATTACHED:
                    self._mode = _Mode.STASHING
            while not inbox.empty():
                envelope = inbox.get()
                if isinstance(envelope.message, pykka.messages._ActorStop):
                    if envelope.reply_to is not None:
                        envelope.reply_to.set(None)
                    continue
                if isinstance(envelope.message, OwnMessage):
                    continue  # the ended incarnation's own (a job's queued run): no one else's
                if self._inbox is not None:
                    self._inbox.put(envelope)  # a newer incarnation is attached already
                elif self._mode is _Mode.CLOSED:
                    overflow.append(envelope)
                else:
                    self._stash.append(envelope)
                    self._carried += 1
        self._fail(overflow)

    def _salvage(self, dead: Any) -> None:
        """Move what a sender left in a detached inbox to where messages go now."""
        failed: list[Envelope[Any]] = []
        with self._lock:
            while not dead.empty():
                envelope = dead.get()
                if self._inbox is not None:
                    self._inbox.put(envelope)
                elif self._mode is _Mode.STASHING:  # taken already: kept, as _detach does
                    self._stash.append(envelope)
                    self._carried += 1
                else:
                    failed.append(envelope)
        self._fail(failed)

    def _close(self, reason: str) -> None:
        """No incarnation will follow: fail every stashed message."""
        with self._lock:
            self._mode = _Mode.CLOSED
            self._reason = reason
            self._inbox = None
            pending = list(self._stash)
            self._stash.clear()
            self._carried = 0
        self._fail(pending)

    def _tree_ended(self) -> None:
        """Its tree has ended: closed for good, and said so (a removed child's keeps its own
        reason, which says more)."""
        if self._reason != "removed":
            self._close("stopped with its tree")

    def _reopen(self) -> None:
        """A closed child is being started again: stash until it attaches."""
        if self._mode is not _Mode.CLOSED:
            return
        with self._lock:
            if self._mode is _Mode.CLOSED:
                self._mode = _Mode.STASHING

    def _fail(self, envelopes: list[Envelope[Any]]) -> None:
        for envelope in envelopes:
            if envelope.reply_to is not None:
                err = ChildUnavailableError(
                    f"child {self.path} stopped before handling the message ({self._reason})"
                )
                envelope.reply_to.set_exception((ChildUnavailableError, err, None))
            elif self._dead_letter is not None:
                self._dead_letter(self.path, envelope.message)
