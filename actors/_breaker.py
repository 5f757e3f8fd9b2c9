"""Named circuit breakers shared by the jobs that name them.

The transition rules are a pure function (``step``) over an explicit state,
tested without threads; ``Breaker`` wraps them in a lock with an injected
monotonic clock and tells ``on_change`` about every transition (the
composition root logs, publishes and journals them). It also queues the
callers it keeps waiting, so that a half-open breaker's trial calls go to
those that have waited longest rather than to whichever asks first.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from actors._checks import need_count, need_duration

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = [
    "Breaker",
    "BreakerState",
    "BreakerStatus",
    "Permit",
    "step_allow",
    "step_record",
    "step_release",
]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Permit:
    """What ``Breaker.allow`` let through: a call of a closed breaker, or a half-open one's trial.

    Both told with the permit, as it is taken under the breaker's lock. ``trial``: read from
    the breaker after, another job's trial may have reopened (or closed) it meanwhile, and a
    trial that failed was taken for a call that found the breaker open (its job waited,
    burning nothing, where the job whose trial reopened it first was restarted).
    ``generation``: the breaker's period the permit belongs to; handed back to ``record`` or
    ``release``, one from an earlier period neither frees a trial of this one nor decides it.
    """

    trial: bool
    generation: int


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """Everything a breaker remembers. Invariant: ``in_flight`` is 0 unless HALF_OPEN."""

    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive failures while closed
    opened_at: float = 0.0
    in_flight: int = 0  # trial permits of this half-open period given and not handed back
    generation: int = 0  # moves on every transition: which period a permit was taken in


def step_allow(
    status: BreakerStatus, now: float, reset_timeout: float, half_open_max_calls: int
) -> tuple[bool, BreakerStatus]:
    """May a call go through now? Returns the answer and the state after asking."""
    if status.state is BreakerState.OPEN:
        if now < status.opened_at + reset_timeout:
            return False, status
        generation = status.generation + 1
        status = BreakerStatus(BreakerState.HALF_OPEN, 0, status.opened_at, 0, generation)
    if status.state is BreakerState.HALF_OPEN:
        if status.in_flight >= half_open_max_calls:
            return False, status
        return True, replace(status, in_flight=status.in_flight + 1)
    return True, status


def step_record(
    status: BreakerStatus, *, ok: bool, now: float, failure_threshold: int, generation: int
) -> BreakerStatus:
    """The state after a call that was let through ended (``ok`` or not).

    ``generation``: its permit's. A call of an earlier period decides nothing while the
    breaker is open or half-open (the trials of this period do), and takes up no trial's
    room; a closed breaker counts it as any call, one more outcome of the service now.
    """
    if status.state is BreakerState.CLOSED:
        if ok:
            return BreakerStatus(generation=status.generation) if status.failures else status
        failures = status.failures + 1
        if failures >= failure_threshold:
            return BreakerStatus(BreakerState.OPEN, 0, now, 0, status.generation + 1)
        return replace(status, failures=failures)
    if status.state is BreakerState.OPEN or generation != status.generation:
        return status  # nothing of this period (an open breaker's has no permits)
    if ok:
        return BreakerStatus(generation=status.generation + 1)
    return BreakerStatus(BreakerState.OPEN, 0, now, 0, status.generation + 1)


def step_release(status: BreakerStatus, *, generation: int) -> BreakerStatus:
    """The state after a call that was let through was cancelled: no outcome to count.

    A half-open breaker's trial that a stop cancelled is no longer in flight, so another
    call may be the trial (kept, the breaker stayed half-open and full for ever). A permit
    of an earlier period was never one of this period's trials: it frees none.
    """
    if (
        status.state is BreakerState.HALF_OPEN
        and status.in_flight
        and generation == status.generation
    ):
        return replace(status, in_flight=status.in_flight - 1)
    return status


class Breaker:
    """One named breaker; thread-safe.

    ``on_change(name, old, new)`` (and every ``listen``-er) runs in the
    thread that caused the transition, outside the lock; it must be quick and
    must not raise.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
        status: BreakerStatus | None = None,
    ) -> None:
        need_count(failure_threshold, "failure_threshold", 1)
        need_duration(reset_timeout, "reset_timeout", positive=True)
        need_count(half_open_max_calls, "half_open_max_calls", 1)
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_max_calls = half_open_max_calls
        self._clock = clock
        self._listeners: tuple[Callable[[str, BreakerState, BreakerState], None], ...] = (
            (on_change,) if on_change is not None else ()
        )
        self._lock = threading.Lock()
        self._status = status or BreakerStatus()
        # The callers waiting for a permit, the longest waiting first (a dict as an ordered
        # set). Only a hint for who goes first: a caller that no longer asks costs the others
        # one turn at most, and the breaker closing empties it.
        self._waiting: dict[Hashable, None] = {}

    @property
    def status(self) -> BreakerStatus:
        return self._status

    @property
    def state(self) -> BreakerState:
        """The state as of now (an open breaker past its timeout reads half-open)."""
        status = self._status
        if (
            status.state is BreakerState.OPEN
            and self._clock() >= status.opened_at + self.reset_timeout
        ):
            return BreakerState.HALF_OPEN
        return status.state

    def allow(self, caller: Hashable | None = None) -> Permit | None:
        """Take a permit for one call (a half-open breaker's is a ``TRIAL``), or None: open.

        ``caller`` (a job) may have waited in the queue (``queue``): for one turn after the
        breaker half-opens, its trial permits are kept for the callers that have waited
        longest, and a caller given a permit leaves the queue. Without one, any free permit.
        """
        with self._lock:
            old = self._status
            now = self._clock()
            if caller is not None and self._not_its_turn(caller, now):
                return None
            ok, self._status = step_allow(old, now, self.reset_timeout, self.half_open_max_calls)
            if ok and caller is not None:
                self._waiting.pop(caller, None)
            new = self._status
        self._changed(old.state, new.state)
        if not ok:
            return None
        return Permit(trial=new.state is BreakerState.HALF_OPEN, generation=new.generation)

    def queue(self, caller: Hashable) -> float:
        """``caller`` was refused and waits: queue it (if it is not already) for its turn.

        Returns the seconds until it should ask again (see ``retry_in``).
        """
        with self._lock:
            self._waiting.setdefault(caller, None)
        return self.retry_in()

    def dequeue(self, caller: Hashable) -> None:
        """``caller`` waits no longer (stopped): it holds up nobody's turn."""
        with self._lock:
            self._waiting.pop(caller, None)

    def _not_its_turn(self, caller: Hashable, now: float) -> bool:
        """Are the trial permits still free kept for callers that have waited longer?

        Only during the turn, the first ``_soon`` seconds after the breaker half-opens (every
        waiting job asks right then); after it, whoever asks first may have a permit.
        """
        status = self._status
        if status.state is BreakerState.CLOSED or not self._waiting:
            return False
        half_open_at = status.opened_at + self.reset_timeout
        if not half_open_at <= now < half_open_at + self._soon():
            return False  # still open (refused anyway), or the turn is over
        free = self.half_open_max_calls - status.in_flight
        return caller not in itertools.islice(self._waiting, max(0, free))

    def record(self, permit: Permit, ok: bool) -> None:
        """Report how the call ``permit`` let through ended.

        A trial that fails once another has reopened the breaker changes nothing here (it
        is open already); that it was a trial is its permit's to tell (``allow``). Nor does
        the outcome of any call from an earlier period while open or half-open (``step_record``).
        """
        with self._lock:
            old = self._status
            self._status = step_record(
                old,
                ok=ok,
                now=self._clock(),
                failure_threshold=self.failure_threshold,
                generation=permit.generation,
            )
            new = self._status
            if new.state is BreakerState.CLOSED:
                self._waiting.clear()  # nobody waits for a closed breaker
        self._changed(old.state, new.state)

    def release(self, permit: Permit) -> None:
        """Give back the permit of a call that was cancelled (stopped): nothing is counted."""
        with self._lock:
            self._status = step_release(self._status, generation=permit.generation)

    def retry_in(self) -> float:
        """Seconds until a waiting job should ask again: when the breaker half-opens, or soon.

        Soon: the breaker is half-open, or due to be, and refused a call (its trial permits
        are taken, or kept for this turn for those that waited longer).
        """
        status = self._status
        if status.state is BreakerState.OPEN:
            wait = status.opened_at + self.reset_timeout - self._clock()
            if wait > 0:
                return wait
        return self._soon()

    def _soon(self) -> float:
        # Check again soon, without a storm; also how long a half-open breaker's turn lasts.
        return min(1.0, self.reset_timeout / 10)

    def retune(
        self, *, failure_threshold: int, reset_timeout: float, half_open_max_calls: int
    ) -> None:
        """Take new thresholds (a reload), keeping the state and the counts made so far."""
        need_count(failure_threshold, "failure_threshold", 1)
        need_duration(reset_timeout, "reset_timeout", positive=True)
        need_count(half_open_max_calls, "half_open_max_calls", 1)
        with self._lock:
            self.failure_threshold = failure_threshold
            self.reset_timeout = reset_timeout
            self.half_open_max_calls = half_open_max_calls

    def restore(self, status: BreakerStatus) -> None:
        """Take over a state saved earlier (a daemon restarting); no transition is reported.

        A new period: the permits given before it count as an earlier period's.
        """
        with self._lock:
            self._status = replace(status, generation=self._status.generation + 1)

    def listen(self, callback: Callable[[str, BreakerState, BreakerState], None]) -> None:
        """Also call ``callback(name, old, new)`` on every later transition."""
        with self._lock:
            self._listeners = (*self._listeners, callback)

    def unlisten(self, callback: Callable[[str, BreakerState, BreakerState], None]) -> None:
        with self._lock:
            self._listeners = tuple(c for c in self._listeners if c is not callback)

    def _changed(self, old: BreakerState, new: BreakerState) -> None:
        if old is not new:
            for listener in self._listeners:
                listener(self.name, old, new)
