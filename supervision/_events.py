"""Typed events of a tree and the bus that delivers them to subscribers."""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import logbook

from actors import SpecError

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors import Outcome
    from supervision._state import State

__all__ = [
    "AttemptFinished",
    "BreakerChanged",
    "ChildExited",
    "Commanded",
    "CooldownStarted",
    "Escalated",
    "Event",
    "EventBus",
    "FailedFinally",
    "GaveUp",
    "NotStarted",
    "ProbationPassed",
    "Reloaded",
    "RestartCancelled",
    "RestartScheduled",
    "StateChanged",
    "Subscription",
    "ThreadAbandoned",
]

log = logbook.Logger("supervision.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: ``path`` of the child ("" for the root) and wall time ``at``."""

    path: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged(Event):
    """The child at ``path`` went from ``old`` to ``new``.

    A child's record starts ``pending`` unannounced at the tree's start; one a reload (or
    ``Tree.add_child``) makes says ``stopped -> pending`` first: its path ran nothing before
    (a replaced child's old record ended ``stopped``, a removed one's too).
    """

    old: State
    new: State


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptFinished(Event):
    attempt: int
    outcome: Outcome
    error: str | None
    started_at: float
    code: int | None
    node: str | None = None  # "ID (IP)" of the Ray node a placed job's attempt ran on
    # A periodic job's next tick (wall time), as the status's next_start_at gives it: a
    # stream's reader follows a tick from its event alone. None for other jobs.
    next_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildExited(Event):
    incarnation: int
    outcome: Outcome
    error: str | None
    code: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartScheduled(Event):
    delay: float
    number: int  # restart number inside the intensity window


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartCancelled(Event):
    """The restart scheduled for the child will not happen: it was stopped during its backoff."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GaveUp(Event):
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NotStarted(Event):
    """The child is not started, and will not be (state ``failed``): ``reason`` says why
    (``dependency db gave_up``: a job it depends on is down for good), ``dependency`` is
    that job's (or group's) path."""

    reason: str
    dependency: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedFinally(Event):
    """The child failed and is not restarted, nor given up on (state ``failed``): ``reason``
    says why (``temporary``, ``its 2 ticks, times: 2, are run``)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalated(Event):
    reason: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CooldownStarted(Event):
    duration: float
    cycle: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbationPassed(Event):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerChanged(Event):
    """Breaker ``name`` went from ``old`` to ``new`` (closed, open, half_open); ``path`` is ""."""

    name: str
    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadAbandoned(Event):
    """The thread (or greenlet) ``thread`` of the child at ``path`` outlived its kill."""

    thread: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Commanded(Event):
    """Someone outside the tree acted on the child at ``path``, and it was done: ``action`` is
    ``start``, ``stop``, ``restart`` or ``signal`` (a person's, through the CLI, the HTTP API
    or the embedded API; ``signal`` names the one sent), ``add`` or ``remove`` (a reload's, or
    ``Tree.add_child`` / ``remove_child``: a changed job is removed, then added). Nothing is
    published when nothing was done (``nothing to stop``, a refused start)."""

    action: str
    signal: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reloaded(Event):
    """A daemon's reload was applied (``path`` is ""): the paths of the children it added,
    removed and replaced, the groups whose own block or order it updated in place ("" for the
    root), and ``lines``, what the reload said (``add etl/load``, ``update breaker api: ...``,
    ``not applied: ...``). ``error``: the step that failed, when a reload stopped part way
    (what it names is what it had done by then); None when it was applied whole."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()
    error: str | None = None


class Subscription:
    """Returned by ``subscribe``; ``cancel()`` stops further deliveries."""

    __slots__ = ("_bus", "callback", "cancelled", "numbered", "since")

    def __init__(
        self, bus: EventBus, callback: Callable[..., Any], *, numbered: bool = False
    ) -> None:
        self._bus = bus
        self.callback = callback
        self.cancelled = False  # looked at before each delivery: none after cancel() returns
        self.numbered = numbered  # called with each event's number too: (event, number)
        self.since = 0  # a numbering bus's count as it subscribed: it gets the events after

    def cancel(self) -> None:
        self.cancelled = True
        self._bus._unsubscribe(self)


# A subscriber that keeps raising: its first failure (of each kind) is logged in full, the
# others summed up at most once per this many seconds.
SUM_UP_EVERY = 10.0


class _Failures:
    """One subscriber's run of failures, no two more than ``SUM_UP_EVERY`` apart."""

    __slots__ = ("held", "kinds", "last", "last_error", "since")

    def __init__(self, now: float) -> None:
        self.kinds: set[tuple[str, str, int]] = set()
        self.since = now  # when the failures held since were last said
        self.last = now
        self.held = 0
        self.last_error = ""


def need_subscriber(callback: object, method: str, param: str) -> None:
    """Refuse a subscriber that cannot be called with an event, at the call (not at every
    event, in the log): no callable, or one whose parameters take no argument (``lambda:
    None``) or need more than one. One whose signature Python cannot tell is taken."""
    shown = repr(callback)[:200]
    if callable(callback):
        import inspect  # noqa: PLC0415 - only when a subscriber is given

        try:
            inspect.signature(callback).bind(None)
        except TypeError as exc:
            shown = f"{shown}, which cannot be called with one event ({exc})"
        except ValueError:  # a builtin without a signature (print): taken
            return
        else:
            return
    raise SpecError(
        f"{method}: {param}: expected a callable taking an event, got {shown}",
        field=param,
        expected="a callable taking an event",
        got=shown,
    )


class SinkFailures:
    """What a tree does when its sink (``start_tree(sink=...)``, or one of its ``on_state``,
    ``on_failure``, ``on_restart``, ``on_tick`` hooks) raises: it says so and goes on.

    The sink is called inline in a supervisor's turn: its exception, unguarded, was taken for
    a bug of the supervisor's, which killed its children and failed (h244). As a subscriber's:
    the first failure of each kind is logged in full, the repeats summed up, a line at most
    every ``SUM_UP_EVERY`` seconds, said with the next failure after that (no timer); after
    ``SUM_UP_EVERY`` with none, a failure is news again. Any thread; only a failure takes the
    lock.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._kinds: set[tuple[str, str, int]] = set()
        self._held = 0  # repeats not said yet, since ``_since``
        self._since = clock()
        self._last = -math.inf  # the last failure's time
        self._last_error = ""

    def __call__(self, sink: Callable[..., Any], what: object, exc: Exception) -> None:
        """``sink`` raised ``exc`` on ``what`` (the event, or the hook's arguments)."""
        kind = _kind(exc)
        said: list[tuple[int, float, str]] = []  # held repeats to say: (count, span, last)
        with self._lock:
            now = self._clock()
            if now - self._last >= SUM_UP_EVERY:  # a quiet spell: what was held, then news
                if self._held:
                    said.append((self._held, now - self._since, self._last_error))
                self._kinds.clear()
                self._held, self._since = 0, now
            self._last = now
            first = kind not in self._kinds
            if first:
                self._kinds.add(kind)
            else:
                self._held += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                if now - self._since >= SUM_UP_EVERY:
                    said.append((self._held, now - self._since, self._last_error))
                    self._held, self._since = 0, now
        for count, span, last in said:
            log.error(
                "the tree's sink {} raised {} more {} in the last {:.0f} s (last: {})",
                _named(sink),
                count,
                "time" if count == 1 else "times",
                span,
                last,
            )
        if first:
            log.error(
                "the tree's sink {} raised on {}: that event is not recorded there; supervision "
                "goes on (its next failures of this kind are summed up, a line every {:g} s at "
                "most)",
                _named(sink),
                what,
                SUM_UP_EVERY,
                exc_info=(type(exc), exc, exc.__traceback__),
            )


class EventBus:
    """Delivers events, in the order published, on one dispatcher thread.

    Callbacks run on that thread, never on a supervisor's, so a slow callback
    delays other callbacks but never a restart. An exception in a callback is
    logged and the callback keeps its subscription: the first of each kind in
    full, with the event and the traceback; the repeats (a callback broken for
    every event, dozens a second) summed up, a line per subscriber at most every
    ``SUM_UP_EVERY`` seconds of ``clock``. With no subscriber, publishing costs
    one attribute check.

    ``numbered``: every event is numbered from 1, those no subscriber was given too (an HTTP
    endpoint's ids, whose gaps must say how many were missed before its first stream): a
    publisher with no subscriber to give one to calls ``passed()`` instead, unbuilt.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, numbered: bool = False
    ) -> None:
        self._subs: tuple[Subscription, ...] = ()
        # Each event with the subscribers it was published to: one that subscribed while it
        # waited in the queue is not given it ("every later event": a start's follower took
        # an earlier start's running for its own).
        self._queue: queue.Queue[tuple[Event, tuple[Subscription, ...], int] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._clock = clock
        # The dispatcher's own: subscribers whose failures are being summed up.
        self._failing: dict[Subscription, _Failures] = {}
        # True while someone subscribed: read on every state change, so an attribute.
        self.active = False
        # Set by stop(): nothing published after it is delivered, nor counted as waiting to be
        # (a flush then waited its whole timeout for an event no thread would hand out).
        self._stopped = False
        # The events so far, numbered ``numbered``; None: not counted (no endpoint asked).
        # Taken under the lock as an event is queued, so the numbers come in queue order.
        self.numbered: int | None = 0 if numbered else None

    def subscribe(self, callback: Callable[..., Any], *, numbered: bool = False) -> Subscription:
        """``numbered``: ``callback(event, number)``, the bus's ``since`` its count as it
        subscribed (a bus that numbers no event gives 0)."""
        if not numbered:
            need_subscriber(callback, "Tree.subscribe", "callback")
        sub = Subscription(self, callback, numbered=numbered)
        with self._lock:
            sub.since = self.numbered or 0
            self._subs = (*self._subs, sub)
            self.active = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jv-events", daemon=True)
                self._thread.start()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
            self.active = bool(self._subs)

    def publish(self, event: Event) -> None:
        subs = self._subs
        if subs:
            with self._lock:
                if self._stopped:
                    return
                self._pending += 1
                number = 0
                if self.numbered is not None:
                    number = self.numbered = self.numbered + 1
                self._queue.put((event, subs, number))
        elif self.numbered is not None:
            self.passed()

    def passed(self) -> None:
        """Count an event no subscriber was given (nor built for one), on a numbering bus."""
        with self._lock:
            if self.numbered is not None:
                self.numbered += 1

    @property
    def dispatching_here(self) -> bool:
        """True when called from a subscriber callback (the dispatcher's own thread)."""
        return self._thread is not None and self._thread is threading.current_thread()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every published event was delivered; False on timeout.

        From a subscriber callback it returns at once: waiting there would wait for itself.
        """
        if self.dispatching_here:
            return False
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Deliver what is queued, then end the dispatcher thread (saying the failures held)."""
        with self._lock:
            thread = self._thread
            self._stopped = True
        if thread is not None:
            self._queue.put(None)
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._until_due())
            except queue.Empty:
                self._sum_up()
                continue
            if item is None:
                break
            event, given, number = item
            for sub in given:
                if sub.cancelled:  # meanwhile, or during this event's dispatch
                    continue
                try:
                    if sub.numbered:
                        sub.callback(event, number)
                    else:
                        sub.callback(event)
                except Exception as exc:
                    self._failed(sub, event, exc)
            if self._failing:
                self._sum_up()
            with self._idle:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.notify_all()
        self._sum_up(everything=True)

    def _failed(self, sub: Subscription, event: Event, exc: Exception) -> None:
        now = self._clock()
        failures = self._failing.get(sub)
        if failures is not None and now - failures.last >= SUM_UP_EVERY:
            self._say_held(sub, failures, now)  # what came before the quiet spell
            failures = None
        if failures is None:
            failures = self._failing[sub] = _Failures(now)
        failures.last = now
        kind = _kind(exc)
        if kind in failures.kinds:
            failures.held += 1
            failures.last_error = f"{type(exc).__name__}: {exc}"
            return
        failures.kinds.add(kind)
        log.error(
            "event subscriber {} raised on {} (it keeps its subscription; its next failures "
            "of this kind are summed up, a line every {:g} s at most)",
            _named(sub.callback),
            event,
            SUM_UP_EVERY,
            exc_info=(type(exc), exc, exc.__traceback__),
        )

    def _sum_up(self, *, everything: bool = False) -> None:
        """Say the failures held of each subscriber whose line is due (``everything``: all)."""
        now = self._clock()
        for sub, failures in list(self._failing.items()):
            if everything or now - failures.since >= SUM_UP_EVERY:
                self._say_held(sub, failures, now)
            if everything or now - failures.last >= SUM_UP_EVERY:
                del self._failing[sub]  # quiet for long enough: its next failure is news

    def _say_held(self, sub: Subscription, failures: _Failures, now: float) -> None:
        if failures.held:
            times = "time" if failures.held == 1 else "times"
            seconds = now - failures.since
            span = f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"
            log.error(
                "event subscriber {} raised {} more {} in the last {} s (last: {})",
                _named(sub.callback),
                failures.held,
                times,
                span,
                failures.last_error,
            )
        failures.held = 0
        failures.since = now

    def _until_due(self) -> float | None:
        """Seconds until the next summary is due; None: none is held."""
        due = [f.since + SUM_UP_EVERY for f in self._failing.values() if f.held]
        if not due:
            return None
        return max(0.0, min(due) - self._clock())


def _kind(exc: BaseException) -> tuple[str, str, int]:
    """An exception's class and the line it was raised at: the same failure, repeated."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = ("", 0) if tb is None else (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
    return (type(exc).__qualname__, *where)


def _named(callback: Callable[..., Any]) -> str:
    """``module.qualname`` of a function or method; of its class for any other callable."""
    module = getattr(callback, "__module__", None) or type(callback).__module__
    name = getattr(callback, "__qualname__", None) or type(callback).__qualname__
    return f"{module}.{name}"
