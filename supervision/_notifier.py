"""Delivering notifications: a tree's events, as JSON, to commands and HTTP endpoints.

The notifier hears the tree's events on the event bus's thread and only
queues what is to be sent; one worker thread (a greenlet under gevent)
delivers, each try bounded by the notification's ``timeout``, with
``retry`` more tries. A hanging or failing notifier therefore never delays a
restart: at worst its queue fills (``QUEUE_SIZE``) and later notifications
are dropped, with a warning. Every delivery is logged when it fails, with
the notification's name, and journaled (a ``notify`` decision row).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import logbook

from supervision import _events as ev
from supervision._notify import NotifyEvent, NotifySpec
from supervision._spec import JobSpec, SupervisorSpec, walk
from supervision._state import State

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["QUEUE_SIZE", "Notifier"]

log = logbook.Logger("supervision.notify")

QUEUE_SIZE: Final = 1000
RETRY_WAIT: Final = 0.5  # doubles per try, at most MAX_RETRY_WAIT
MAX_RETRY_WAIT: Final = 5.0


@dataclass(frozen=True, slots=True)
class _Delivery:
    spec: NotifySpec
    path: str
    event: NotifyEvent
    body: bytes  # the JSON, secrets masked


class Notifier:
    """Turns a tree's events into deliveries for the notifications that want them.

    ``top`` are the manifest's notifications; each job's and group's own come
    from ``root`` (a group's cover every job in it). ``mask`` is the tree's
    secret masker; ``record`` (the journal's ``notified``) hears of every
    delivery's end. ``handle`` is the event callback (``start_tree(on_event=...)``);
    ``close`` delivers what is queued (at most ``timeout`` seconds) and ends the worker.
    """

    def __init__(
        self,
        top: tuple[NotifySpec, ...],
        root: SupervisorSpec,
        *,
        mask: Callable[[str], str] = str,
        record: Callable[[float, str, dict[str, Any]], None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._top = top
        self._mask = mask
        self._record = record
        self._wall = wall
        self._own: dict[str, tuple[NotifySpec, ...]] = {}
        self._by_breaker: dict[str, list[str]] = {}
        self.update(top, root)
        self._last_exit: dict[str, dict[str, Any]] = {}
        self._queue: queue.Queue[_Delivery | None] = queue.Queue(QUEUE_SIZE)
        self._closed = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None  # the command being run, if any
        self._thread = threading.Thread(target=self._work, name="jv-notify", daemon=True)
        self._thread.start()

    @staticmethod
    def wanted(top: tuple[NotifySpec, ...], root: SupervisorSpec) -> bool:
        """Whether a manifest has any notification at all (else no notifier is needed)."""
        return bool(top) or any(spec.notify for _, spec in _owners(root))

    def update(self, top: tuple[NotifySpec, ...], root: SupervisorSpec) -> None:
        """Take the manifest's, jobs' and groups' notifications (at start, and after a reload)."""
        own: dict[str, tuple[NotifySpec, ...]] = {}
        by_breaker: dict[str, list[str]] = {}
        for path, spec in _owners(root):
            if spec.notify:
                own[path] = spec.notify
            if isinstance(spec, JobSpec) and spec.breaker:
                by_breaker.setdefault(spec.breaker, []).append(path)
        # Swapped whole: the event thread reads them without a lock.
        self._top, self._own, self._by_breaker = top, own, by_breaker

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
        found = _meaning(event)
        if found is None:
            return
        kind, facts = found
        for spec, path in self._targets(event, kind):
            self._enqueue(spec, path, kind, event.at, facts)

    def _targets(self, event: ev.Event, kind: NotifyEvent) -> list[tuple[NotifySpec, str]]:
        out = [(spec, event.path) for spec in self._top if kind in spec.on]
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
                out.extend((spec, path) for spec in own.get(owner, ()) if kind in spec.on)
                if "/" not in owner:
                    break
                owner = owner.rsplit("/", 1)[0]
        return out

    def _enqueue(
        self, spec: NotifySpec, path: str, kind: NotifyEvent, at: float, facts: dict[str, Any]
    ) -> None:
        last = self._last_exit.get(path)
        causes = [c for c in (facts.get("reason"), facts.get("error")) if c]
        if last is not None and last.get("error") and last["error"] not in causes:
            causes.append(last["error"])
        payload = {
            "event": kind.value,
            "path": path,
            "at": at,
            "time": dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds"),
            "notifier": spec.label,
            **facts,
            "last_exit": last,
            "causes": causes,
        }
        body = self._mask(json.dumps(payload)).encode()
        try:
            self._queue.put_nowait(_Delivery(spec, path, kind, body))
        except queue.Full:
            log.warning(
                "notify {}: {} of {} dropped: {} notifications are waiting already",
                spec.label,
                kind.value,
                path or "the tree",
                QUEUE_SIZE,
            )

    # -- delivering (the worker) -------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._closed.is_set():
                    self._finish(item, "not sent: jobvisor was stopping", 0)
                    continue
                self._deliver(item)
            except Exception:
                log.exception("notify {}: delivery failed unexpectedly", item.spec.label)

    def _deliver(self, item: _Delivery) -> None:
        spec = item.spec
        error = ""
        attempts = 0
        for attempt in range(1, spec.retry + 2):
            attempts = attempt
            error = self._send(spec, item.body)
            if not error:
                break
            if attempt > spec.retry or self._closed.is_set():
                break
            # Waiting here delays only later notifications, never the tree.
            self._closed.wait(min(MAX_RETRY_WAIT, RETRY_WAIT * 2 ** (attempt - 1)))
        self._finish(item, error, attempts)

    def _finish(self, item: _Delivery, error: str, attempts: int) -> None:
        """Log a failed delivery, and journal how every delivery ended."""
        spec = item.spec
        error = self._mask(error)
        if error:
            log.error(
                "notify {}: {} of {} not delivered after {} tries: {}",
                spec.label,
                item.event.value,
                item.path or "the tree",
                attempts,
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

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for at most ``timeout`` seconds, then end the worker.

        What is left then is not sent (each is journaled as such), and a command
        still running is killed: a hanging notifier never holds jobvisor's exit.
        """
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._closed.set()  # retries still waiting give up, queued deliveries are dropped
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self._thread.join(timeout)

    def _send(self, spec: NotifySpec, body: bytes) -> str:
        """One try; "" when delivered, else why not."""
        if spec.command is not None:
            return self._run(spec.command, body, spec.timeout)
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
        case ev.BreakerChanged(name=name, old=old, new=new) if new in ("open", "closed"):
            kind = NotifyEvent.BREAKER_OPENED if new == "open" else NotifyEvent.BREAKER_CLOSED
            return kind, {"breaker": name, "old": old, "new": new}
        case ev.StateChanged(new=State.FAILED):
            return NotifyEvent.FAILED, {}
        case ev.StateChanged(new=State.SUCCEEDED):
            return NotifyEvent.SUCCEEDED, {}
    return None


def _post(spec: NotifySpec, body: bytes) -> str:
    assert spec.http is not None
    headers = {"Content-Type": "application/json", "User-Agent": "jobvisor", **spec.http.headers}
    request = urllib.request.Request(spec.http.url, data=body, headers=headers, method="POST")  # noqa: S310 - the manifest's URL, http(s) only
    try:
        with urllib.request.urlopen(request, timeout=spec.timeout) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def _owners(root: SupervisorSpec) -> Iterator[tuple[str, JobSpec | SupervisorSpec]]:
    """Every job and group under ``root`` with its path: what may have a ``notify`` of its own."""
    for path, spec in walk(root):
        if isinstance(spec, JobSpec | SupervisorSpec):
            yield path, spec
