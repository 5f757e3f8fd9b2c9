"""A command's incarnation restarting itself, in its own thread, as its supervisor would.

A command restarted at once (no backoff, intensity left) used to cost a trip
through the supervisor's thread and a new actor: the exit report woke the
supervisor, which decided, built the next incarnation and handed it to a
thread, which then spawned. ``InPlace`` lets the ending incarnation make that
same decision itself, with the supervisor's own policy and window, and go on
as the next incarnation at once. Its exit report, with the decision in it
(``ChildExit.again``), waits until the next command has started (``flush``), so
the supervisor's bookkeeping runs beside the command instead of before it.

The supervisor grants a permit only where nothing but its policy could decide
otherwise (``Supervisor._permit_for``), and revokes it before it acts on the
child (a stop, a shutdown, a group restart). The lock orders the two: a report
kept back is told as the permit is revoked, and no restart is decided after.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pykka

from actors import Link
from supervision._exits import classify
from supervision._policy import Restart, decide, wants_restart

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors import ChildExit
    from supervision._policy import RestartPolicy, RestartType, Window

__all__ = ["InPlace"]


class InPlace:
    """One child's permit to restart in place; shared by its incarnations until revoked.

    ``window`` is the child's own (the supervisor's record of it): while the
    permit is granted, only the permit changes it.
    """

    __slots__ = (
        "_lock",
        "_monotonic",
        "_parent",
        "_path",
        "_pending",
        "_policy",
        "_rand",
        "_restart",
        "_revoked",
        "_service",
        "_window",
    )

    def __init__(
        self,
        policy: RestartPolicy,
        window: Window,
        restart: RestartType,
        *,
        service: bool,
        path: str,
        monotonic: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        self._lock = threading.Lock()  # gevent's under gevent (the process is patched first)
        self._revoked = False
        # The exit report of a restart in place, until the next command has started.
        self._pending: ChildExit | None = None
        self._parent: Any = None  # whom to tell it: the supervisor (its incarnation's link)
        self._policy = policy
        self._window = window
        self._restart = restart
        self._service = service
        self._path = path
        self._monotonic = monotonic
        self._rand = rand

    def revoke(self) -> None:
        """No restart in place from now on; a report kept back is told now.

        Called by the supervisor before it acts on the child. The report goes to its inbox
        like any other, behind those told before it: reports are handled in order.
        """
        with self._lock:
            self._revoked = True
            self._flush_locked()

    def __call__(self, report: ChildExit, actor: Any) -> bool:
        """Restart ``actor``'s incarnation in place if its supervisor would restart it now.

        ``report`` must be new, made for this call. True: it holds the decision now
        (``again``) and is kept for the supervisor (told by ``flush``), and ``actor`` is
        the next incarnation (its link says so). False: nothing changed; the
        incarnation ends as usual and the supervisor decides.
        """
        link = actor._jv_link
        with self._lock:
            self._flush_locked()  # a start that failed before it could tell: reports in order
            if self._revoked or not link.parent.is_alive():
                return False
            outcome = classify(report, service=self._service, path=self._path).outcome
            window = self._window
            if window.probing or not wants_restart(self._restart, outcome):
                return False
            now = self._monotonic()
            decision = decide(self._policy, window, now, self._rand())
            if not isinstance(decision, Restart) or decision.delay > 0:
                return False
            window.apply(decision, now)
            # Set on the report made for this call, which nobody else has seen yet: a frozen
            # copy with it would build every field again, on every restart.
            object.__setattr__(report, "again", decision)
            self._pending = report
            self._parent = parent = link.parent
            # Under the lock: a kill the supervisor sends after revoking reports the new number.
            actor._jv_link = Link(parent, link.key, link.incarnation + 1, link.ref)
            return True

    def flush(self) -> None:
        """Tell the supervisor the exit report kept back, if any (the incarnation's thread)."""
        if self._pending is None:  # read without the lock: only this thread ever fills it
            return
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        pending = self._pending
        if pending is None:
            return
        # Told, then forgotten: a Kill landing between the two can make it told twice (the
        # supervisor ignores the second: its incarnation is past), never lost.
        try:  # noqa: SIM105 - not contextlib.suppress: this runs on every restart
            self._parent.tell(pending)
        except pykka.ActorDeadError:
            pass  # its supervisor is gone: nobody is left to count it
        self._pending = None
