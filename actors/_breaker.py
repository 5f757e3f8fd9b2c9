"""Named circuit breakers shared by the jobs that name them.

The transition rules are a pure function (``step``) over an explicit state,
tested without threads; ``Breaker`` wraps them in a lock with an injected
monotonic clock and tells ``on_change`` about every transition (the
composition root logs, publishes and journals them).
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from actors._checks import need_count, need_duration

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Breaker",
    "BreakerState",
    "BreakerStatus",
    "step_allow",
    "step_record",
    "step_release",
]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """Everything a breaker remembers. Invariant: ``in_flight`` is 0 unless HALF_OPEN."""

    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive failures while closed
    opened_at: float = 0.0
    in_flight: int = 0  # calls let through while half-open and not yet recorded


def step_allow(
    status: BreakerStatus, now: float, reset_timeout: float, half_open_max_calls: int
) -> tuple[bool, BreakerStatus]:
    """May a call go through now? Returns the answer and the state after asking."""
    if status.state is BreakerState.OPEN:
        if now < status.opened_at + reset_timeout:
            return False, status
        status = BreakerStatus(BreakerState.HALF_OPEN, 0, status.opened_at, 0)
    if status.state is BreakerState.HALF_OPEN:
        if status.in_flight >= half_open_max_calls:
            return False, status
        return True, replace(status, in_flight=status.in_flight + 1)
    return True, status


def step_record(
    status: BreakerStatus, ok: bool, now: float, failure_threshold: int
) -> BreakerStatus:
    """The state after a call that was let through ended (``ok`` or not)."""
    if status.state is BreakerState.HALF_OPEN:
        if ok:
            return BreakerStatus()
        return BreakerStatus(BreakerState.OPEN, 0, now, 0)
    if status.state is BreakerState.OPEN:
        return status  # a call that started before the breaker opened: already counted
    if ok:
        return BreakerStatus() if status.failures else status
    failures = status.failures + 1
    if failures >= failure_threshold:
        return BreakerStatus(BreakerState.OPEN, 0, now, 0)
    return replace(status, failures=failures)


def step_release(status: BreakerStatus) -> BreakerStatus:
    """The state after a call that was let through was cancelled: no outcome to count.

    A half-open breaker's trial that a stop cancelled is no longer in flight, so another
    call may be the trial (kept, the breaker stayed half-open and full for ever).
    """
    if status.state is BreakerState.HALF_OPEN and status.in_flight:
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

    def allow(self) -> bool:
        """Take a permit for one call, or learn that the breaker is open."""
        with self._lock:
            old = self._status
            ok, self._status = step_allow(
                old, self._clock(), self.reset_timeout, self.half_open_max_calls
            )
            new = self._status
        self._changed(old.state, new.state)
        return ok

    def record(self, ok: bool) -> bool:
        """Report how a permitted call ended; True if it was a half-open breaker's trial."""
        with self._lock:
            old = self._status
            self._status = step_record(
                old, ok=ok, now=self._clock(), failure_threshold=self.failure_threshold
            )
            new = self._status
        self._changed(old.state, new.state)
        return old.state is BreakerState.HALF_OPEN

    def release(self) -> None:
        """Give back the permit of a call that was cancelled (stopped): nothing is counted."""
        with self._lock:
            self._status = step_release(self._status)

    def retry_in(self) -> float:
        """Seconds until a waiting job should ask again."""
        status = self._status
        if status.state is BreakerState.OPEN:
            return max(0.0, status.opened_at + self.reset_timeout - self._clock())
        # Half-open and full: check again soon, without a storm.
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
        """Take over a state saved earlier (a daemon restarting); no transition is reported."""
        with self._lock:
            self._status = status

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
