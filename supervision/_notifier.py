"""Delivering notifications: a tree's events, as JSON, to commands and HTTP endpoints.

The notifier hears the tree's events on the event bus's thread and only
queues what is to be sent. Each notification has a lane of its own: a bounded
queue (``QUEUE_SIZE``) and one worker thread (a greenlet under gevent) that
delivers in order, each try bounded as a whole by the notification's
``timeout``, with ``retry`` more tries for what may go better later (a command's
failure; an HTTP 5xx, 429 or 408, a failed connection or a timeout). An HTTP
delivery follows no redirect. A hanging or failing notification therefore never
delays a restart, nor another notification's deliveries: at worst its own
queue fills and its later notifications are dropped, with a warning (the first,
then how many more, ``DROPS_SAID_EVERY``). Every delivery is logged when it
fails, with the notification's name (those a stop left unsent in one line), and
journaled once (a ``notify`` decision row), the ones a stop cut short too,
and counted (``deliveries``: the endpoint's ``jobvisor_notify_deliveries_total``).

Two kinds are the notifier's own reading of the events: ``recovered``, sent by a
notification that sent a failure (``FAILURES``) once the job or breaker is
healthy again, and the damping of ``DAMPED`` kinds (a crash loop's restarts):
at most one per job per notification per its ``damp``, the next one saying how
many were folded (``suppressed``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import http.client
import json
import os
import queue
import shlex
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import logbook

from actors._messages import Outcome
from supervision import _events as ev
from supervision._notify import DAMPED, NotifyEvent, NotifySpec
from supervision._printable import printable
from supervision._spec import JobSpec, SupervisorSpec, walk
from supervision._state import State

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["DROPS_SAID_EVERY", "QUEUE_SIZE", "RESULTS", "Notifier", "notify_changes"]

log = logbook.Logger("supervision.notify")

QUEUE_SIZE: Final = 1000  # per notification
# A full queue's first drop is said, then how many more at most this often (a crash loop
# behind a slow receiver wrote a line per drop: thousands a minute).
DROPS_SAID_EVERY: Final = 60.0
RETRY_WAIT: Final = 0.5  # doubles per try, at most MAX_RETRY_WAIT
MAX_RETRY_WAIT: Final = 5.0
# The longest Retry-After a notification waits for before its next try; a longer one ends
# the delivery (its later events wait behind it: an hour's wait would hold them an hour).
MAX_RETRY_AFTER: Final = 60.0
RETRIED_STATUSES: Final = frozenset({408, 429})  # and every 5xx: the receiver may do better
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
# After the stop's deadline: how long the workers get to say how their delivery ended (a
# command is killed, a retry's wait cut short) before the rest is journaled for them.
STOP_GRACE: Final = 0.5
NOT_SENT: Final = "not sent: jobvisor was stopping"
NO_ANSWER: Final = "no answer yet when jobvisor stopped"
# How a delivery ended, as counted: ``failed`` after its retries (or not sent at a stop),
# ``dropped`` when its notification's queue was full.
RESULTS: Final = ("delivered", "failed", "dropped")
# What pages: a ``recovered`` is sent when the job (or breaker) is healthy again after one.
FAILURES: Final = frozenset(
    {NotifyEvent.GAVE_UP, NotifyEvent.COOLDOWN, NotifyEvent.FAILED, NotifyEvent.BREAKER_OPENED}
)
# The failures a ``recovered`` names, at most: the first and the latest (a cooldown that
# keeps failing its probe pages each cycle, for as long as it lasts).
MAX_PAIRED: Final = 20
# A notification as its pages and damping know it across reloads: its name, else its target
# (not every option: adding ``damp: 5m`` lost its pages), and which of the manifest's
# notifications so called it is (two may share a target).
_Ident = tuple[str, int]
# The notification that sent failures, and those failures (what its ``recovered`` names).
_Page = tuple[NotifySpec, list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class _Try:
    """How one try ended: ``error`` ("" when delivered), whether another try may do better
    (``again``), and the wait the receiver asked for (a 429's or 503's ``Retry-After``)."""

    error: str = ""
    again: bool = True
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class _Delivery:
    spec: NotifySpec
    path: str
    event: NotifyEvent
    body: bytes  # the JSON, secrets masked


class _Drops:
    """What the log is yet to say of a lane's dropped deliveries: the first of a burst at
    once, then how many more at most every ``DROPS_SAID_EVERY`` (the metrics and the
    journal count each). Under the notifier's lanes lock."""

    __slots__ = ("said_at", "unsaid")

    def __init__(self) -> None:
        self.said_at: float | None = None  # None: no burst under way
        self.unsaid = 0

    def dropped(self, now: float) -> int | None:
        """A delivery was dropped: None if nothing is to be said now, 0 to say this one,
        else how many more to say were dropped."""
        if self.said_at is None:
            self.said_at = now
            return 0
        self.unsaid += 1
        return self.due(now)

    def queued(self, now: float) -> int | None:
        """A delivery was queued: how many more to say were dropped, if the burst is over."""
        if self.said_at is None or now - self.said_at < DROPS_SAID_EVERY:
            return None  # a delivery taken in a burst's midst does not end it
        more, self.unsaid, self.said_at = self.unsaid, 0, None
        return more or None

    def due(self, now: float) -> int | None:
        if self.said_at is None or now - self.said_at < DROPS_SAID_EVERY or not self.unsaid:
            return None
        more, self.unsaid, self.said_at = self.unsaid, 0, now
        return more

    def rest(self) -> int:
        """How many more to say at the end."""
        more, self.unsaid = self.unsaid, 0
        return more


class _Lane:
    """One notification's queue and worker: its deliveries, in order, one at a time.

    ``finish`` (the notifier's) journals how each delivery ended; it is called
    exactly once per delivery, by the worker, or by ``abandon`` for what the
    worker could not end before the stop's deadline.
    """

    def __init__(
        self,
        spec: NotifySpec,
        finish: Callable[[_Delivery, str, int], None],
        closed: threading.Event,
    ) -> None:
        self.spec = spec
        self._finish = finish
        self._closed = closed
        self.queue: queue.Queue[_Delivery | None] = queue.Queue(QUEUE_SIZE)
        self.drops = _Drops()
        # Invariant: ``_current`` is the delivery under way and ``_tries`` its tries so far;
        # whoever takes it out under ``_lock`` (the worker, or ``abandon``) journals it.
        self._lock = threading.Lock()
        self._current: _Delivery | None = None
        self._tries = 0
        self._proc: subprocess.Popen[bytes] | None = None  # the command being run, if any
        self.thread = threading.Thread(target=self._work, name="jv-notify", daemon=True)
        self.thread.start()

    def put(self, item: _Delivery) -> bool:
        """Queue ``item``; False when the queue is full (the caller says it was dropped)."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def retire(self) -> None:
        """End the worker once what is queued now is delivered (the manifest dropped it)."""
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)

    def kill(self) -> None:
        """The stop's deadline passed: end the command being run, if any."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def abandon(self) -> None:
        """Journal what the worker did not end in time, and let it end when it can.

        Runs in the stopping thread, after the grace: the worker may still be in
        an HTTP request (no kill reaches it); its answer, if one comes, is dropped.
        """
        with self._lock:
            current, self._current = self._current, None
            tries = self._tries
        if current is not None:
            self._finish(current, NO_ANSWER, tries)
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._finish(item, NOT_SENT, 0)
        self.retire()

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                self._take(item)
            except Exception:  # a bug of ours: said, and the worker goes on with the next
                log.exception("notify {}: delivery failed unexpectedly", item.spec.label)

    def _take(self, item: _Delivery) -> None:
        if self._closed.is_set():
            self._finish(item, NOT_SENT, 0)
            return
        with self._lock:
            self._current, self._tries = item, 0
        try:
            error = self._deliver(item)
        except Exception as exc:
            log.exception("notify {}: delivery failed unexpectedly", item.spec.label)
            error = f"failed unexpectedly: {type(exc).__name__}: {exc}"
        with self._lock:
            mine = self._current is item  # else ``abandon`` journaled it already
            self._current = None
        if mine:
            self._finish(item, error, self._tries)

    def _deliver(self, item: _Delivery) -> str:
        """Every try of one delivery; "" once delivered, else why the last try failed."""
        spec = item.spec
        error = ""
        for attempt in range(1, spec.retry + 2):
            self._tries = attempt
            tried = self._send(spec, item.body)
            error = tried.error
            if not error or not tried.again or attempt > spec.retry or self._closed.is_set():
                break
            wait = min(MAX_RETRY_WAIT, RETRY_WAIT * 2 ** (attempt - 1))
            if tried.retry_after is not None:
                if tried.retry_after > MAX_RETRY_AFTER:  # an outage: trying early is pointless
                    error += (
                        f": Retry-After {tried.retry_after:g}s is past the "
                        f"{MAX_RETRY_AFTER:g}s a notification waits"
                    )
                    break
                wait = max(wait, tried.retry_after)
            # Waiting here delays only this notification's later deliveries.
            self._closed.wait(wait)
        return error

    def _send(self, spec: NotifySpec, body: bytes) -> _Try:
        """One try."""
        if spec.command is not None:
            return _Try(self._run(spec.command, body, spec.timeout))
        return _post(spec, body)

    def _run(self, argv: tuple[str, ...], body: bytes, timeout: float) -> str:
        try:
            proc = subprocess.Popen(  # noqa: S603 - the manifest's own command
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a timeout ends what it started too
            )
        except OSError as exc:
            return f"cannot run {argv[0]}: {exc.strerror or exc}"
        self._proc = proc
        try:
            _, stderr = proc.communicate(body, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return f"timed out after {timeout:g}s"
        finally:
            self._proc = None
        if proc.returncode < 0 and self._closed.is_set():
            return "killed: jobvisor was stopping"
        if proc.returncode != 0:
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] if stderr else []
            return f"exited with {proc.returncode}" + (f": {tail[0]}" if tail else "")
        return ""


class Notifier:
    """Turns a tree's events into deliveries for the notifications that want them.

    ``top`` are the manifest's notifications; each job's and group's own come
    from ``root`` (a group's cover every job in it). ``mask`` is the tree's
    secret masker; ``record`` (the journal's ``notified``) hears of every
    delivery's end, from the notification's worker thread or from the thread
    that calls ``close``. ``handle`` is the event callback
    (``start_tree(on_event=...)``); ``close`` delivers what is queued (at most
    ``timeout`` seconds, for all notifications together) and ends the workers.
    """

    def __init__(
        self,
        top: tuple[NotifySpec, ...],
        root: SupervisorSpec,
        *,
        mask: Callable[[str], str] = str,
        record: Callable[[float, str, dict[str, Any]], None] | None = None,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._top = top
        self._clock = clock  # what ``damp`` is measured by
        self._mask = mask
        self._record = record
        self._wall = wall
        # In every body: which machine's jobvisor tells (two daemons' alerts look alike).
        self._host = socket.gethostname()
        self._top_ids: tuple[tuple[NotifySpec, _Ident], ...] = ()
        self._own: dict[str, tuple[tuple[NotifySpec, _Ident], ...]] = {}
        self._specs: dict[_Ident, NotifySpec] = {}  # the manifest's notifications now
        self._by_breaker: dict[str, list[str]] = {}
        self._last_exit: dict[str, dict[str, Any]] = {}
        # The failures each notification with ``recovered`` sent and no ``recovered`` ended
        # yet: by what ends them, (breaker, "") or ("", path), so that an event finds its own
        # at once (a crash loop's every ``running`` scanned them all); then by (notification,
        # path). The event thread's alone.
        self._open: dict[tuple[str, str], dict[tuple[_Ident, str], _Page]] = {}
        # Once and periodic jobs: their running proves nothing, a succeeded attempt does.
        self._by_success: frozenset[str] = frozenset()
        # By (notification, path, event): when it was last sent, how many were folded since,
        # and when the last of those was; the event thread's alone.
        self._damped: dict[tuple[_Ident, str, NotifyEvent], tuple[float, int, float]] = {}
        self._closed = threading.Event()  # the stop's deadline passed
        self._closing = False  # close began: later events are not sent (under _lanes_lock)
        # A lane per distinct notification, made at its first delivery; retired lanes (a
        # reload dropped their notification) finish their queue and are joined at close.
        self._lanes_lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}
        self._retired: list[_Lane] = []
        # Deliveries by (notification, result), each notification's from 0 (``deliveries``).
        self._counts_lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._names: set[str] = set()  # the notifications counted: those the manifest has now
        # By notification: how many its stop left unsent, said in one line once it is over;
        # None after that (one later is said alone). Under ``_counts_lock``.
        self._unsent: dict[str, int] | None = {}
        self.update(top, root)

    @staticmethod
    def wanted(top: tuple[NotifySpec, ...], root: SupervisorSpec) -> bool:
        """Whether a manifest has any notification at all (else no notifier is needed)."""
        return bool(top) or any(spec.notify for _, spec in _owners(root))

    def update(self, top: tuple[NotifySpec, ...], root: SupervisorSpec) -> None:
        """Take the manifest's, jobs' and groups' notifications (at start, and after a reload)."""
        seen: dict[str, int] = {}

        def ident(spec: NotifySpec) -> _Ident:
            who = _who(spec)
            seen[who] = seen.get(who, -1) + 1
            return who, seen[who]

        top_ids = tuple((spec, ident(spec)) for spec in top)
        own: dict[str, tuple[tuple[NotifySpec, _Ident], ...]] = {}
        by_breaker: dict[str, list[str]] = {}
        by_success = set()
        for path, spec in _owners(root):
            if spec.notify:
                own[path] = tuple((each, ident(each)) for each in spec.notify)
            if isinstance(spec, JobSpec) and spec.breaker:
                by_breaker.setdefault(spec.breaker, []).append(path)
            if isinstance(spec, JobSpec) and not spec.schedule.service:
                by_success.add(path)
        # Swapped whole: the event thread reads them without a lock.
        self._top, self._top_ids, self._own, self._by_breaker = top, top_ids, own, by_breaker
        self._by_success = frozenset(by_success)
        self._specs = {i: s for s, i in top_ids} | {i: s for ss in own.values() for s, i in ss}
        distinct = {_key(each): each for each in self._specs.values()}
        shown = {self._shown(each) for each in distinct.values()}
        with self._counts_lock:
            # A removed notification's counts go, as a removed job's series do; its retired
            # lane's last deliveries are not counted (``_count``).
            self._names = shown
            for counted in [c for c in self._counts if c[0] not in shown]:
                del self._counts[counted]
            for name in shown:
                for result in RESULTS:
                    self._counts.setdefault((name, result), 0)
        kept = distinct.keys()
        with self._lanes_lock:
            for key in [key for key in self._lanes if key not in kept]:
                lane = self._lanes.pop(key)
                lane.retire()
                self._retired.append(lane)

    # -- hearing events (the event bus's thread) --------------------------------------------------

    def handle(self, event: ev.Event) -> None:
        """The event callback: queue a delivery for each notification that wants ``event``."""
        if isinstance(event, ev.ChildExited):
            self._last_exit[event.path] = {
                "outcome": event.outcome.value,
                "code": event.code,
                "error": event.error,
                "at": event.at,
            }
            return
        if isinstance(event, ev.Reloaded):
            self._forget(event)
            return
        behind: tuple[str, ...] = ()
        if isinstance(event, ev.NotStarted):
            # Its last exit as status has it: it never ran, its reason is its error. The
            # failure behind it is its dependency's last one (a group's has none).
            self._last_exit[event.path] = {
                "outcome": Outcome.FAILED.value,
                "code": None,
                "error": event.reason,
                "at": event.at,
            }
            error = (self._last_exit.get(event.dependency) or {}).get("error")
            behind = (error,) if error else ()
        found = _meaning(event)
        if found is not None:
            self._tell(event, *found, behind=behind)
        if self._open:
            self._recover(event)

    def _tell(
        self,
        event: ev.Event,
        kind: NotifyEvent,
        facts: dict[str, Any],
        *,
        behind: tuple[str, ...] = (),
    ) -> None:
        # One id for the event, sent on every try of each of its deliveries: a receiver
        # tells a retry (its answer lost, say) from a new event by it. Made only when one is
        # sent: a crash loop's every restart passes here, most of them folded.
        event_id = ""
        for spec, ident, path in self._targets(event, kind):
            told = facts  # each notification's own: a damped one's count is its alone
            if kind in DAMPED and spec.damp > 0:
                folded = self._fold(spec.damp, (ident, path, kind))
                if folded is None:
                    continue
                told = {**facts, "suppressed": folded}
            event_id = event_id or str(uuid.uuid4())
            self._enqueue(spec, path, kind, event.at, told, event_id=event_id, behind=behind)
            if kind in FAILURES and NotifyEvent.RECOVERED in spec.on:
                breaker = event.name if isinstance(event, ev.BreakerChanged) else ""
                pages = self._open.setdefault((breaker, "" if breaker else path), {})
                _, sent = pages.setdefault((ident, path), (spec, []))
                if len(sent) == MAX_PAIRED:
                    del sent[1]
                sent.append(
                    {"event": kind.value, "id": event_id, "at": event.at, "time": _iso(event.at)}
                )

    def _fold(self, damp: float, key: tuple[_Ident, str, NotifyEvent]) -> int | None:
        """None when ``key``'s event was sent less than ``damp`` ago (it is folded); else how
        many were folded since the last one sent, if the last of them was less than ``damp``
        ago (a restart a day later is not the old crash loop's: it says 0)."""
        now = self._clock()
        last = self._damped.get(key)
        if last is not None and now - last[0] < damp:
            self._damped[key] = (last[0], last[1] + 1, now)
            return None
        self._damped[key] = (now, 0, now)
        return 0 if last is None or now - last[2] >= damp else last[1]

    def _recover(self, event: ev.Event) -> None:
        """Send ``recovered`` for each failure notification that ``event`` shows is over."""
        healthy = self._healthy(event)
        if healthy is None:
            return
        path, breaker, by = healthy
        ended = self._open.pop((breaker, path), None)
        if not ended:
            return
        event_id = str(uuid.uuid4())
        for (_, page_path), (spec, sent) in ended.items():
            facts: dict[str, Any] = {"by": by, "recovered_from": sent, "failures": len(sent)}
            if breaker:
                facts["breaker"] = breaker
            self._enqueue(
                spec, page_path, NotifyEvent.RECOVERED, event.at, facts, event_id=event_id
            )

    def _healthy(self, event: ev.Event) -> tuple[str, str, str] | None:
        """The path (or breaker) ``event`` shows healthy, and how; None if it shows none."""
        match event:
            case ev.ProbationPassed(path=path):
                return path, "", "probation_passed"
            case ev.StateChanged(path=path, new=State.RUNNING) if path not in self._by_success:
                return path, "", "running"
            case ev.AttemptFinished(path=path, outcome=Outcome.SUCCEEDED) if (
                path in self._by_success
            ):
                return path, "", "succeeded"
            case ev.BreakerChanged(name=name, new="closed"):
                return "", name, "breaker_closed"
        return None

    def _forget(self, event: ev.Reloaded) -> None:
        """A reload removed jobs (a group: all of its), breakers or notifications: their
        failures will never be told over. A notification whose options it edited keeps its
        pages, sent by it as it is now."""
        specs = self._specs
        gone = set(event.removed) - set(event.added)

        def removed(path: str) -> bool:
            while path:
                if path in gone:
                    return True
                path = path.rpartition("/")[0]
            return False

        for (breaker, path), pages in list(self._open.items()):
            for (ident, page_path), (old, sent) in list(pages.items()):
                spec = specs.get(ident)
                if spec is None or NotifyEvent.RECOVERED not in spec.on or removed(page_path):
                    del pages[ident, page_path]
                elif spec is not old:
                    pages[ident, page_path] = (spec, sent)
            if not pages or (breaker and breaker not in self._by_breaker):
                del self._open[breaker, path]
        for key in [k for k in self._damped if k[0] not in specs or removed(k[1])]:
            del self._damped[key]

    def _targets(self, event: ev.Event, kind: NotifyEvent) -> list[tuple[NotifySpec, _Ident, str]]:
        out = [(spec, ident, event.path) for spec, ident in self._top_ids if kind in spec.on]
        paths = (
            self._by_breaker.get(event.name, [])
            if isinstance(event, ev.BreakerChanged)
            else [event.path]
        )
        own = self._own
        for path in paths:
            # The job's own, then each enclosing group's (a group's notify covers its jobs).
            owner = path
            while True:
                out.extend((s, i, path) for s, i in own.get(owner, ()) if kind in s.on)
                if "/" not in owner:
                    break
                owner = owner.rsplit("/", 1)[0]
        return out

    def _enqueue(
        self,
        spec: NotifySpec,
        path: str,
        kind: NotifyEvent,
        at: float,
        facts: dict[str, Any],
        *,
        event_id: str,
        behind: tuple[str, ...] = (),
    ) -> None:
        last = self._last_exit.get(path)
        causes = [c for c in (facts.get("reason"), facts.get("error")) if c]
        # A recovery has no cause: the last exit's error is the failure that is over.
        if kind is not NotifyEvent.RECOVERED and last and last.get("error"):
            causes.append(last["error"])
        causes.extend(behind)
        causes = list(dict.fromkeys(causes))  # a never-started job's reason is its error too
        payload = {
            "event": kind.value,
            "id": event_id,
            "path": path,
            "at": at,
            "time": _iso(at),
            "host": self._host,
            "notifier": spec.label,
            **facts,
            "last_exit": last,
            "causes": causes,
        }
        body = self._mask(json.dumps(payload)).encode()
        item = _Delivery(spec, path, kind, body)
        with self._lanes_lock:
            if self._closing:  # its lane may have ended already
                self._finish(item, NOT_SENT, 0)
                return
            key = _key(spec)
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(spec, self._finish, self._closed)
            queued = lane.put(item)
            now = self._clock()
            more = lane.drops.queued(now) if queued else lane.drops.dropped(now)
        if not queued:
            self._count(spec, "dropped")
        if more == 0:
            log.warning(
                "notify {}: {} of {} dropped: {} notifications are waiting already",
                spec.label,
                kind.value,
                path or "the tree",
                QUEUE_SIZE,
            )
        elif more is not None:
            _said_dropped(spec, more)

    # -- how deliveries end (the lanes' workers, and close) ----------------------------------------

    def _finish(self, item: _Delivery, error: str, attempts: int) -> None:
        """Log a failed delivery, and journal how every delivery ended."""
        spec = item.spec
        error = self._mask(error)
        self._count(spec, "failed" if error else "delivered")
        summed = False
        if error == NOT_SENT:
            with self._counts_lock:
                if self._unsent is not None:  # said in one line at the stop's end
                    self._unsent[spec.label] = self._unsent.get(spec.label, 0) + 1
                    summed = True
        if error and not summed:
            log.error(
                "notify {}: {} of {} not delivered after {} {}: {}",
                spec.label,
                item.event.value,
                item.path or "the tree",
                attempts,
                "try" if attempts == 1 else "tries",
                error,
            )
        if self._record is not None:
            detail: dict[str, Any] = {
                "notifier": self._mask(spec.label),
                "event": item.event.value,
                "delivered": not error,
                "attempts": attempts,
            }
            if error:
                detail["error"] = error
            self._record(self._wall(), item.path, detail)

    def deliveries(self) -> dict[tuple[str, str], int]:
        """How many deliveries ended each way, by (notification, result); a notification
        is its ``name``, or without one its URL's scheme and host (its userinfo, path and
        query may be secrets; a URL whose scheme or host is a secret's, the URL masked:
        ``***``) or its command's program, masked."""
        with self._counts_lock:
            return dict(self._counts)

    def _count(self, spec: NotifySpec, result: str) -> None:
        key = (self._shown(spec), result)
        with self._counts_lock:  # the lanes' workers, the event thread and close count
            if key[0] in self._names:
                self._counts[key] = self._counts.get(key, 0) + 1

    def _shown(self, spec: NotifySpec) -> str:
        return _label(spec, self._mask)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for at most ``timeout`` seconds in all, then end the workers.

        Every notification delivers on meanwhile, side by side. What is left
        then is not sent (each is journaled as such, a delivery still under way
        too), and a command still running is killed: a hanging notifier never
        holds jobvisor's exit. Closing again does nothing.
        """
        with self._lanes_lock:
            if self._closing:
                return
            self._closing = True
            lanes = [*self._lanes.values(), *self._retired]
            for lane in self._lanes.values():
                lane.retire()
        deadline = time.monotonic() + timeout
        for lane in lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        self._closed.set()  # retries still waiting give up, queued deliveries are not sent
        busy = [lane for lane in lanes if lane.thread.is_alive()]
        for lane in busy:
            lane.kill()
        grace = time.monotonic() + STOP_GRACE
        for lane in busy:
            lane.thread.join(max(0.0, grace - time.monotonic()))
        for lane in busy:
            if lane.thread.is_alive():
                lane.abandon()
        self._say_lost(lanes)

    def _say_lost(self, lanes: list[_Lane]) -> None:
        """Say, a line each, how many more each notification dropped and how many the stop
        left unsent (a crash loop's were thousands of lines)."""
        with self._lanes_lock:
            dropped = [(lane.spec, lane.drops.rest()) for lane in lanes]
        for spec, more in dropped:
            if more:
                _said_dropped(spec, more)
        with self._counts_lock:
            unsent, self._unsent = self._unsent or {}, None
        for label, count in unsent.items():
            log.error("notify {}: {:,} {}", label, count, NOT_SENT)


def _said_dropped(spec: NotifySpec, more: int) -> None:
    log.warning(
        "notify {}: {:,} more dropped (the queue of {} is full)", spec.label, more, QUEUE_SIZE
    )


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds")


def _key(spec: NotifySpec) -> str:
    """What makes two notifications one lane: the same target, events, timeout, retry and name."""
    return repr(spec)


def _label(spec: NotifySpec, mask: Callable[[str], str]) -> str:
    """What metrics and a reload call a notification, masked: its name, its URL's scheme and
    host (no credentials, path nor query), or its command's program. A URL whose scheme or
    host is a secret's is its masked whole, as logs say it (``***``): its host was shown."""
    if spec.name:
        return mask(spec.name)
    if spec.http is not None:
        shown = mask(spec.http.url)
        url = urllib.parse.urlsplit(shown)
        if url.scheme not in ("http", "https") or not url.netloc:
            return shown
        return f"{url.scheme}://{url.netloc.rpartition('@')[2]}"
    return mask(spec.label)


def _described(spec: NotifySpec, mask: Callable[[str], str]) -> str:
    """A notification as a reload says it (the caller masks the line): as ``_label``, a
    command whole (``sh -c 'cat > a'``: two of ``sh`` are told apart)."""
    if spec.command and not spec.name:
        return shlex.join(spec.command)
    return _label(spec, mask)


def notify_changes(
    old_top: tuple[NotifySpec, ...],
    old_root: SupervisorSpec,
    new_top: tuple[NotifySpec, ...],
    new_root: SupervisorSpec,
    *,
    mask: Callable[[str], str] = str,
) -> list[str]:
    """What a reload changes in the notifications, a line each: ``notify: add NAME`` for the
    manifest's own, ``notify of web: update NAME`` for a job's or group's.

    Only of jobs and groups the reload keeps: one it adds or removes is said as such, with
    whatever it notifies. A notification is known by its name, else by its target (URL or
    command), as the journal knows it; one whose events, timeout, retries or damping changed
    is an ``update``.
    """
    kept = {path for path, _ in _owners(old_root)} & {path for path, _ in _owners(new_root)}
    before = {"": old_top} | {path: spec.notify for path, spec in _owners(old_root)}
    lines: list[str] = []
    owners = [("", new_top), *((path, spec.notify) for path, spec in _owners(new_root))]
    for owner, new in owners:
        old = before.get(owner, ())
        if (owner and owner not in kept) or old == new:
            continue
        where = f"notify of {owner}" if owner else "notify"
        # The same ones first, wherever they are in the list: they say nothing. Then by
        # target: one whose events or timing changed is an update (two of one target were
        # paired by place, and a removed first one read as an update and a removal).
        gone = list(old)
        fresh = []
        for spec in new:
            if spec in gone:
                gone.remove(spec)
            else:
                fresh.append(spec)
        for spec in fresh:
            was = next((each for each in gone if _who(each) == _who(spec)), None)
            if was is None:
                lines.append(mask(f"{where}: add {_described(spec, mask)}"))
            else:
                gone.remove(was)
                lines.append(mask(f"{where}: update {_described(spec, mask)}"))
        lines.extend(mask(f"{where}: remove {_described(spec, mask)}") for spec in gone)
    return lines


def _who(spec: NotifySpec) -> str:
    if spec.name:
        return f"name {spec.name}"
    if spec.http is not None:
        return f"http {spec.http.url}"
    return f"command {spec.command!r}"


def _meaning(event: ev.Event) -> tuple[NotifyEvent, dict[str, Any]] | None:  # noqa: PLR0911 - one case per event
    """What ``event`` is to a notification, with the facts its JSON carries."""
    match event:
        case ev.GaveUp(reason=reason):
            return NotifyEvent.GAVE_UP, {"reason": reason}
        case ev.Escalated(reason=reason, error=error):
            return NotifyEvent.ESCALATED, {"reason": reason, "error": error}
        case ev.CooldownStarted(duration=duration, cycle=cycle):
            return NotifyEvent.COOLDOWN, {"duration": duration, "cycle": cycle}
        case ev.RestartScheduled(delay=delay, number=number):
            return NotifyEvent.RESTARTED, {"delay": delay, "number": number}
        # Opened from closed only: a failed half-open trial is the same outage going on
        # (it would page again every reset_timeout); the journal has every transition.
        case ev.BreakerChanged(name=name, old=old, new=new) if (old, new) == ("closed", "open"):
            return NotifyEvent.BREAKER_OPENED, {"breaker": name, "old": old, "new": new}
        case ev.BreakerChanged(name=name, old=old, new="closed"):
            return NotifyEvent.BREAKER_CLOSED, {"breaker": name, "old": old, "new": "closed"}
        # Not the state's change (no reason): the decision that follows it, and says why.
        case ev.FailedFinally(reason=reason) | ev.NotStarted(reason=reason):
            return NotifyEvent.FAILED, {"reason": reason}
        case ev.StateChanged(old=State.PENDING, new=State.SUCCEEDED):
            return None  # skipped by `run --resume`: the run it succeeded in told of it
        case ev.StateChanged(new=State.SUCCEEDED):
            return NotifyEvent.SUCCEEDED, {}
    return None


def _post(spec: NotifySpec, body: bytes) -> _Try:  # noqa: PLR0911 - each way a try ends
    """One POST of ``body``, bounded as a whole by ``spec.timeout``; no redirect is followed.

    A 2xx is a delivery (its body is not read: the status is the receiver's
    answer). The errors say nothing of the URL but a redirect's target
    (which the caller masks), as the URL may be a secret.
    """
    assert spec.http is not None
    url = urllib.parse.urlsplit(spec.http.url)
    headers = _headers(url, spec.http.headers)
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    conn = _connection(url, spec.timeout)
    if isinstance(conn, _Try):
        return conn
    # urllib's timeout bounds each socket operation: an answer trickled a byte at a time
    # never ended. At the deadline the socket is shut down, which wakes whatever waits on it.
    expired = threading.Event()
    lock = threading.Lock()  # orders the deadline against the connect that makes the socket

    def expire() -> None:
        with lock:
            expired.set()
            sock = conn.sock
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(spec.timeout, expire)
    watchdog.name = "jv-notify-timeout"
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        with lock:
            # A deadline that came while the connect had no socket yet (a host's first
            # address not answering, the next one taking it) shut nothing down.
            late = expired.is_set()
        if late:
            raise TimeoutError  # said below, as the deadline's
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        status, reason, location = response.status, response.reason, response.getheader("Location")
        retry_after = response.getheader("Retry-After")
        if expired.is_set():  # the shutdown ended the answer's head: it is cut short
            return _Try(f"timed out after {spec.timeout:g}s")
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set() or isinstance(exc, TimeoutError):
            return _Try(f"timed out after {spec.timeout:g}s")
        if isinstance(exc, http.client.InvalidURL):  # its text quotes the URL
            return _Try(f"request could not be sent ({type(exc).__name__})", again=False)
        return _Try(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    except ValueError as exc:  # a header http.client refuses: its text quotes the value
        return _Try(f"request could not be sent ({type(exc).__name__})", again=False)
    finally:
        watchdog.cancel()
        conn.close()
    return _answered(status, reason, location, retry_after)


def _headers(url: urllib.parse.SplitResult, given: Mapping[str, str]) -> dict[str, str]:
    """The notification's own headers, and ours where they do not name them."""
    named = {name.lower() for name in given}
    # In any case of letters (a plain update sent both "User-Agent: jobvisor/..." and the
    # manifest's "user-agent").
    ours = {"Content-Type": "application/json", "User-Agent": _user_agent()}
    headers = {name: value for name, value in ours.items() if name.lower() not in named}
    if url.username is not None and "authorization" not in named:  # as requests does
        login = f"{urllib.parse.unquote(url.username)}:{urllib.parse.unquote(url.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
    headers.update(given)
    return headers


def _connection(url: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection | _Try:
    """A connection to ``url``'s host, not opened yet; or why there is none."""
    if url.scheme != "https":
        return http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    try:
        tls = _tls()
    except OSError as exc:  # says the variable's file, nothing of the URL
        return _Try(str(exc), again=False)
    return http.client.HTTPSConnection(url.hostname or "", url.port, timeout=timeout, context=tls)


# Where requests (an http job) reads the CA bundle it trusts, first found first.
_CA_BUNDLE_VARIABLES: Final = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def _tls() -> ssl.SSLContext | None:
    """The CAs an http job trusts when the environment names a bundle, as requests reads
    it; None (the system's, SSL_CERT_FILE's) when none is named. An ``OSError`` that says
    which bundle when it cannot be read."""
    for variable in _CA_BUNDLE_VARIABLES:
        if bundle := os.environ.get(variable):
            try:
                return _bundle(bundle)
            except OSError as exc:  # ssl.SSLError too: a file that holds no certificate
                why = exc.strerror or str(exc)
                raise OSError(f"cannot read the CA bundle {bundle} ({variable}): {why}") from exc
    return None


@functools.cache
def _bundle(bundle: str) -> ssl.SSLContext:
    """A context that trusts ``bundle``, a file or a directory (each delivery's would read
    it again)."""
    if Path(bundle).is_dir():
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


@functools.cache
def _user_agent() -> str:
    """``jobvisor/VERSION``: read at the first POST, as importlib.metadata costs tens of ms."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return f"jobvisor/{version('jobvisor')}"
    except PackageNotFoundError:
        return "jobvisor/0+checkout"  # as `jobvisor --version` says it


def _answered(status: int, reason: str, location: str | None, retry_after: str | None) -> _Try:
    """What an answer's status means to a delivery, and whether to try again."""
    if 200 <= status < 300:
        return _Try()
    said = printable(f"HTTP {status} {reason}".strip())
    if 300 <= status < 400:
        # A webhook's redirect is a misconfiguration: following it would resend the event
        # (its secret headers too) elsewhere, as urllib did, as a GET without the body.
        # Whole: a cut before the masking (the log's, the journal's) could split a secret in it.
        where = f": redirected to {printable(location)}" if location else ""
        return _Try(f"{said}{where}; notifications do not follow redirects", again=False)
    again = status >= 500 or status in RETRIED_STATUSES
    wait = None
    if status in _RETRY_AFTER_STATUSES:
        from actors._http import parse_retry_after  # noqa: PLC0415 - rare: an overloaded receiver

        wait = parse_retry_after(retry_after)
    return _Try(said, again=again, retry_after=wait)


def _owners(root: SupervisorSpec) -> Iterator[tuple[str, JobSpec | SupervisorSpec]]:
    """Every job and group under ``root`` with its path: what may have a ``notify`` of its own."""
    for path, spec in walk(root):
        if isinstance(spec, JobSpec | SupervisorSpec):
            yield path, spec
