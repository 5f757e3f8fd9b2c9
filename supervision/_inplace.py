"""A command's incarnation restarting itself, in its own thread, as its supervisor would.

A command restarted at once (no backoff, intensity left) used to cost a trip
through the supervisor's thread and a new actor: the exit report woke the
supervisor, which decided, built the next incarnation and handed it to a
thread, which then spawned. ``InPlace`` lets the ending incarnation make that
same decision itself, with the supervisor's own policy and window, and go on
as the next incarnation at once. Its exit report, with the decision in it
(``ChildExit.again``), waits until the next command has started (``tell_due``), so
the supervisor's bookkeeping runs beside the command instead of before it.

In a tight loop the reports are told together, at most once per ``HOLD``. A
loop's first ``LOOSE`` restarts are told one by one, as they happen (more than
the crash-loop damper keeps, so the log shows a loop's first failures with
their output in order, and its burst has begun before any report waits);
after that a report waits until ``HOLD`` has passed since the last were told
(or ``MOST`` are kept). A restart ``HOLD`` or more after the one before it
begins a loop again. Waking the
supervisor's thread cost more than its whole bookkeeping of a restart, and a
crash loop woke it on every one. Status, metrics, the journal and events
learn of a tight loop's restarts up to ``HOLD`` late (an exit's time is its
attempt's own, not the moment it was told); its decisions are not late: the
permit makes them.
A command that runs on past the hold tells what is kept (``tell_due`` says when
to call it again; ``Attempt.started``). Under gevent the supervisor's turn runs
in the command's own thread, and a batch holds the command up while it is
handled: there, reports are kept only while restarts come ``FIT`` or more apart
(``fit``), so that the batch fits beside the command.

The supervisor grants a permit only where nothing but its policy could decide
otherwise (``Supervisor._permit_for``), and revokes it before it acts on the
child (a stop, a shutdown, a group restart). The lock orders the two: a report
kept back is told as the permit is revoked, and no restart is decided after.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, ClassVar

import pykka

from actors import ChildExits, Link, os_lock_type
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

    # Seconds a tight loop's reports wait to be told together, and how many at most; how many
    # of a loop's first restarts are told one by one (the crash-loop damper keeps 3).
    HOLD: ClassVar[float] = 0.05
    MOST: ClassVar[int] = 8
    LOOSE: ClassVar[int] = 4
    # Under gevent: the shortest restart-to-restart time for which reports are kept (``fit``).
    FIT: ClassVar[float] = 0.005

    __slots__ = (
        "_clock",
        "_fit",
        "_hold",
        "_last",
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
        "_streak",
        "_told_at",
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
        hold: float | None = None,
        fit: float = 0.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``monotonic``: the policy's clock; ``hold``: ``HOLD`` unless given (0: tell each
        report at once); ``fit``: reports are kept only while a restart came at least this
        long after the one before (the loop's commands leave room for the supervisor's turn
        beside them); ``clock``: the hold's, real time by default (reports wait in real
        time: a test's frozen policy clock must not keep them for ever).
        """
        # Held around the policy's decision and a tell, neither of which yields to gevent's
        # hub: the OS's lock also under gevent (gevent's is pure Python).
        self._lock = os_lock_type()()
        self._revoked = False
        # Exit reports of restarts in place not told yet, oldest first.
        self._pending: list[ChildExit] = []
        self._clock = time.monotonic if clock is None else clock
        self._told_at = -math.inf  # when reports were last told (``_clock``)
        self._last = -math.inf  # when ``tell_due`` last found reports kept (a start, a call again)
        self._streak = 0  # restarts told one by one since the loop began
        self._hold = self.HOLD if hold is None else hold
        self._fit = fit
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
        (``again``) and is kept for the supervisor (told by ``tell_due`` or ``flush``,
        behind those kept before it), and ``actor`` is the next incarnation (its link
        says so). False:
        nothing changed; the incarnation ends as usual, and its end tells what is kept
        before its own report (``JobActor._jv_report``); the supervisor decides.
        """
        link = actor._jv_link
        with self._lock:
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
            # Set on the report made for this call, which nobody else has seen yet: a copy
            # with it would build every field again, on every restart.
            report.again = decision
            self._pending.append(report)
            self._parent = parent = link.parent
            # Under the lock: a kill the supervisor sends after revoking reports the new number.
            actor._jv_link = Link(parent, link.key, link.incarnation + 1, link.ref)
            return True

    def tell_due(self) -> float | None:
        """The next command has started (or runs on): tell what is kept, unless the hold says wait.

        Called in the incarnation's thread (through ``Attempt.started``). Returns
        None when nothing is kept any more, or the seconds after which to call
        again (the command, if it still runs then, does).
        """
        # Read without the lock: only this thread adds to ``_pending``, or changes ``_last`` and
        # ``_streak``; ``_told_at``, which a revocation may write meanwhile, only moves the hold.
        pending = self._pending
        if not pending:
            return None
        now = self._clock()
        hold = self._hold
        since = now - self._last
        if since >= hold:
            self._streak = 0  # a quiet spell: a new loop, if one begins
        self._last = now
        wait = self._told_at + hold - now
        if self._streak < self.LOOSE:
            self._streak += 1
        elif wait > 0 and len(pending) < self.MOST and since >= self._fit:
            return wait
        self.flush()
        return None

    def flush(self) -> None:
        """Tell the supervisor every report kept, now: the incarnation ends, and they go first.

        Called in the incarnation's thread, or in the supervisor's when it kills the
        incarnation (``JobActor._jv_report`` either way).
        """
        if self._pending:  # read without the lock: only the incarnation's thread adds to it
            with self._lock:
                self._flush_locked()

    def _flush_locked(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._told_at = self._clock()
        # Told, then forgotten: a Kill landing between the two can make them told twice (the
        # supervisor ignores the second: their incarnations are past), never lost.
        # (A slice and a del, not len() and clear(): no call more for the report told alone.)
        try:  # noqa: SIM105 - not contextlib.suppress: three calls more, as often as a restart
            self._parent.tell(ChildExits(tuple(pending)) if pending[1:] else pending[0])
        except pykka.ActorDeadError:
            pass  # its supervisor is gone: nobody is left to count them
        del pending[:]
