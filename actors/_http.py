"""The ``http`` job kind: one request per try, over one ``requests.Session`` kept for the job.

Failures are values of two kinds (both ``JobFailure``, see ``actors._errors``)::

    JobFailure
    ├── HttpStatusError     the server answered with a status the job does not expect
    └── HttpRequestError    no usable answer: connection failed or reset, timed out,
                            cancelled, or the request could not be sent at all

Secrets: header values, ``params``, ``json`` and ``body`` never appear in a
message, a ``repr`` or a log record of this module (it logs nothing); the
URL's password is shown as ``***``.
"""

from __future__ import annotations

import _socket
import collections
import contextlib
import contextvars
import copy
import email.utils
import ipaddress
import json as jsonlib
import os
import socket
import threading
import time
import weakref
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from actors._checks import (
    HTTP_STATUSES,
    SOCKET_MAX_DURATION,
    a_kind,
    check_map,
    fmt_duration,
    need,
    need_duration,
    need_int_in,
)
from actors._errors import JobFailure, SpecError
from actors._runtime import Scheduler, TimerHandle

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    import requests

    from actors._attempt import Attempt

__all__ = [
    "HTTP_METHODS",
    "HTTP_RETRY_ON",
    "HttpRequestError",
    "HttpStatusError",
    "HttpWork",
    "check_http_retry_on",
    "parse_retry_after",
    "redact_url",
]

HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Tokens of ``retry.on`` for http jobs; an exact status such as "503" is accepted too.
HTTP_RETRY_ON: Final = ("connection", "timeout", "5xx", "4xx", "429")
_DEFAULT_RETRY_ON: Final = frozenset({"connection", "timeout", "5xx", "429"})
# Redirects are followed for these only: requests turns a POST's 302 into a GET without
# its body (and the job then reports the GET's 200 as the POST's success).
_REDIRECTED: Final = frozenset({"GET", "HEAD"})
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
_CHUNK: Final = 64 * 1024
# A field's metadata: hidden from the repr (it may hold a secret), yet part of the job's
# identity, which ``supervision._journal``'s spec hash reads from the repr's fields otherwise.
IDENTITY: Final = MappingProxyType({"identity": True})
# The headers' metadata: in the identity as ``identity_headers`` gives them (a secret's value
# out of it).
_HEADERS_IDENTITY: Final = MappingProxyType({"identity": "identity_headers"})
_STDLIB_ERROR_MODULES: Final = frozenset({"builtins", "socket", "ssl", "http.client"})

Reason = Literal["connection", "timeout", "cancelled", "invalid"]
Aborted = Literal["cancelled", "timeout"]


class HttpStatusError(JobFailure):
    """The server answered with a status the job does not expect.

    Raised by ``HttpWork.run`` when the final status (after redirects) is not
    in ``expect_status`` (any 2xx when that is empty). ``code`` is the status,
    which becomes the attempt's exit code; ``retry_after`` is the server's
    ``Retry-After`` in seconds for a 429 or 503, else None. Whether it is
    retried is up to ``HttpWork.retryable``: 5xx and 429 are by default.
    """

    def __init__(self, message: str, code: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:  # pickled back from a Ray node with its fields
        return (type(self), (str(self), self.code, self.retry_after))


class HttpRequestError(JobFailure):
    """The request got no usable answer; unlike ``HttpStatusError`` there is no status.

    ``reason`` says why: ``connection`` (refused, reset, dropped mid-answer),
    ``timeout`` (no answer within ``timeout``), ``cancelled`` (the attempt was
    stopped and ``cancel`` aborted the request) or ``invalid`` (the request
    could not be sent, e.g. too many redirects). Connection errors and
    timeouts are retried by default; the other two never are.
    """

    def __init__(self, message: str, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason

    @property
    def timed_out(self) -> bool:
        return self.reason == "timeout"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.reason))


# -- validation helpers --------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """Return ``url`` with the password of its userinfo, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_http_retry_on(on: tuple[str, ...]) -> None:
    """Raise ``SpecError`` unless every token of ``retry.on`` means something to an http job."""
    for token in on:
        if token in HTTP_RETRY_ON:
            continue
        if token.isdigit() and HTTP_STATUSES[0] <= int(token) <= HTTP_STATUSES[1]:
            continue
        raise SpecError(
            field="retry.on",
            expected=f"one of {', '.join(HTTP_RETRY_ON)} or a status 100..599 for an http job",
            got=token,
        )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date), or None.

    A date in the past gives 0; a value that is neither form gives None.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete form may lack the zone
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


URL_EXPECTED: Final = "an http:// or https:// URL"
JSON_EXPECTED: Final = "JSON data (mappings with string keys, lists, strings, numbers)"


def check_url(url: object, name: str) -> None:
    """Raise ``SpecError`` at ``name`` unless ``url`` is an http(s) URL with a host.

    The message never shows the URL's password.
    """
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        ok = parts is not None and parts.scheme in {"http", "https"} and bool(parts.hostname)
        if parts is not None:
            parts.port  # noqa: B018 - raises ValueError for a port that is not one (h:abc, h:99999)
    except ValueError:  # "http://[::1" and other malformed netlocs
        ok = False
    shown = None
    if isinstance(url, str) and "@" in url:
        try:
            shown = repr(redact_url(url))
        except ValueError:
            shown = "'***'"
    need(ok, name, URL_EXPECTED, url, shown=shown)


def _check_payload(json: Any, body: Any) -> None:
    if json is not None and body is not None:
        raise SpecError(
            "http: give at most one of json and body, got both",
            field="http.body",
            expected="json or body, not both",
            got=body,
        )
    if json is not None:
        try:
            jsonlib.dumps(json, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            # The exception's text may quote the value: name only its kind.
            raise SpecError(
                field="http.json", expected=JSON_EXPECTED, got=json, shown=a_kind(json)
            ) from None
    need(
        body is None or isinstance(body, str | bytes),
        "http.body",
        "the request body as a string",
        body,
        shown=a_kind(body),
    )


# -- abortable connections -----------------------------------------------------------------------


class _InFlight:
    """The connections one ``run`` has checked out of the pool, so ``cancel`` can abort them
    (or, for a tcp readiness check, the sockets it connects).

    Written by the thread that runs the request, read by the one that cancels
    (or the deadline's timer); ``lock`` guards ``conns`` and ``why``.
    Invariant: once ``why`` is set (the first abort's reason), every
    connection in ``conns`` has its socket shut down (``_sock_of``: the one
    its answer may be reading), and any socket connected later is shut down
    by ``_after_connect``.
    """

    __slots__ = ("conns", "deadline", "lock", "timeout", "why")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conns: set[Any] = set()
        self.why: Aborted | None = None
        # Monotonic end of the ``bounded`` block it is in (None outside one): a host name
        # lookup, which no socket's shutdown ends, is waited for until then only.
        self.deadline: float | None = None
        # That block's own timeout, which a lookup's failure says (the same on every try).
        self.timeout: float | None = None

    @property
    def aborted(self) -> bool:
        return self.why is not None

    def add(self, conn: Any) -> None:
        with self.lock:
            self.conns.add(conn)
            aborted = self.aborted
        if aborted:
            _shutdown(_sock_of(conn))

    def discard(self, conn: Any) -> None:
        with self.lock:
            self.conns.discard(conn)

    def abort(self, why: Aborted = "cancelled") -> None:
        with self.lock:
            if self.why is None:
                self.why = why
            conns = list(self.conns)
        for conn in conns:
            _shutdown(_sock_of(conn))

    def expire(self) -> None:
        """The deadline's timer: the request ran out of its ``timeout``."""
        self.abort("timeout")


# One timer thread for every http request of the process, made on first use: it shuts a
# request's sockets down at its deadline. urllib3 only bounds each wait on the socket, so a
# server that sends a byte now and then (headers or body) held a request for ever.
_deadlines: tuple[int, Scheduler] | None = None
_deadlines_lock = threading.Lock()

# How often the timer looks at a cancel that is an Event (a readiness probe's): an Event tells
# nobody when it is set. A command check looks at its own as often.
_CANCEL_LOOK: Final = 0.05


def _scheduler() -> Scheduler:
    global _deadlines  # noqa: PLW0603 - one per process, made lazily
    with _deadlines_lock:
        if _deadlines is None or _deadlines[0] != os.getpid() or not _deadlines[1].alive:
            # A fork keeps no thread: make another. Named its own: it outlives every tree (one
            # for the process), and was taken for a tree's scheduler left running.
            _deadlines = (os.getpid(), Scheduler(name="jobvisor-http-deadlines"))
        return _deadlines[1]


class _Watch:
    """Aborts ``inflight`` at its deadline (``expire``), or once ``cancelled`` is set.

    Runs on the timer thread; ``cancel`` (any thread) ends it. ``lock`` guards
    ``handle`` and ``done``: a look that re-arms the timer cannot outlive a cancel.
    """

    __slots__ = ("cancelled", "deadline", "done", "handle", "inflight", "lock", "scheduler")

    def __init__(
        self, timeout: float, inflight: _InFlight, cancelled: threading.Event | None
    ) -> None:
        self.scheduler = _scheduler()
        self.deadline = time.monotonic() + timeout
        self.inflight = inflight
        self.cancelled = cancelled
        self.lock = threading.Lock()
        self.done = False
        self.handle: TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        delay = left if self.cancelled is None else min(left, _CANCEL_LOOK)
        with self.lock:
            if not self.done:
                self.handle = self.scheduler.call_later(delay, self._look)

    def _look(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            self.inflight.abort("cancelled")
        elif time.monotonic() >= self.deadline:
            self.inflight.expire()
        else:
            self._arm()

    def cancel(self) -> None:
        with self.lock:
            self.done = True
            handle, self.handle = self.handle, None
        if handle is not None:
            handle.cancel()


@contextlib.contextmanager
def bounded(
    timeout: float,
    cancelled: threading.Event | None = None,
    inflight: _InFlight | None = None,
) -> Iterator[_InFlight]:
    """Bound the block's requests (connect, send, head, body) by ``timeout`` as a whole.

    Every request that the current thread (greenlet) sends in the block
    through a ``_transport.tracked_session`` belongs to ``inflight`` (a new one by
    default, yielded): at the deadline, or once ``cancelled`` is set, their
    sockets are shut down, so the request fails at once; ``inflight.why``
    then says which (``timeout`` or ``cancelled``). A socket added to it
    (``_InFlight.add``) is shut down the same way. ``NoThreadError`` when the
    deadline's timer thread cannot start: raised before the block, nothing left set.
    """
    inflight = _InFlight() if inflight is None else inflight
    # The watch first: it may raise NoThreadError, and a context set before it stayed set.
    watch = _Watch(timeout, inflight, cancelled)
    inflight.deadline, inflight.timeout = watch.deadline, timeout
    token = _current.set(inflight)
    try:
        yield inflight
    finally:
        watch.cancel()
        _current.reset(token)


# -- host name lookups ---------------------------------------------------------------------------


class LookupTimedOut(TimeoutError):
    """A host name lookup took longer than what was left of its request's (or check's) time."""


class ResolverNotAnswering(LookupTimedOut):
    """Every lookup worker is stuck in a lookup nobody waits for any more: none is asked."""


def resolve(
    host: str,
    port: int,
    *,
    within: float,
    family: int = 0,
    told: float | None = None,
    aborted: Callable[[], bool] | None = None,
    lookup: Callable[..., list[Any]] | None = None,
) -> list[Any]:
    """``getaddrinfo(host, port, family, SOCK_STREAM)``, waited for ``within`` seconds at most.

    The system's resolver cannot be interrupted, and no socket exists yet for a
    deadline to shut down: a resolver that hangs held a request or a readiness
    check for its own timeouts (30 s and more), whatever the job's ``timeout``.
    The lookup runs on one of ``LOOKUP_WORKERS`` threads (``_Lookups``), which a
    hung one is left to. ``LookupTimedOut`` when ``within`` runs out,
    saying ``told`` (the request's or check's own timeout, ``within`` by default: a
    time left would differ on each try, and the crash-loop damper groups failures by their
    text); ``ResolverNotAnswering`` at once when every worker is stuck;
    ``OSError`` once ``aborted()`` (looked at every ``_CANCEL_LOOK``); the
    resolver's own error as it is. An address is looked up in place (no name
    to ask about), and so is a name the system answers from its hosts file
    before it asks any server (``_in_hosts_file``: ``localhost``, mostly); so is a name
    when no thread can be had, unbounded as before.
    ``lookup`` stands in for ``socket.getaddrinfo`` (tests).
    """
    if _is_address(host):  # first: an address needs no look at the hosts file either
        return (lookup or socket.getaddrinfo)(host, port, family, socket.SOCK_STREAM)
    if lookup is None:
        lookup = socket.getaddrinfo
        if _in_hosts_file(host):
            # Without a final dot (urllib3 keeps one): what the file lists, asked of it alone.
            return lookup(host.removesuffix("."), port, family, socket.SOCK_STREAM)
    pool = _lookups()
    asked = pool.ask(_Lookup((lookup, host, port, family)))
    if asked is None:
        return lookup(host, port, family, socket.SOCK_STREAM)
    try:
        deadline = time.monotonic() + within
        while not asked.done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                said = fmt_duration(round(within if told is None else told, 3))
                raise LookupTimedOut(f"host name lookup timed out after {said}")
            if aborted is not None and aborted():
                raise InterruptedError("host name lookup cut short")
            asked.done.wait(left if aborted is None else min(left, _CANCEL_LOOK))
    finally:
        pool.leave(asked)
    if asked.failed is not None:
        # Each waiter its own copy: one object raised in every thread gathered each one's
        # frames in its traceback (another request's stack in a job's log, kept alive).
        raise _own_copy(asked.failed) from None
    return asked.answer


def _own_copy(error: BaseException) -> BaseException:
    """A fresh copy of a shared lookup's error to raise (the error itself if it will not copy)."""
    try:
        return copy.copy(error).with_traceback(None)
    except Exception:  # an exception whose constructor takes other than its args
        return error


LOOKUP_WORKERS: Final = 4  # threads that look names up, at most, for the whole process
_LOOKUP_IDLE: Final = 30.0  # a worker without a lookup for this long ends


class _Lookup:
    """One lookup, shared by every ``resolve`` of its ``key`` while it is queued or runs."""

    __slots__ = ("answer", "done", "failed", "key", "waiters")

    def __init__(self, key: tuple[Callable[..., list[Any]], str, int, int]) -> None:
        self.key = key
        self.done = threading.Event()
        self.answer: list[Any] = []
        self.failed: BaseException | None = None
        self.waiters = 1  # the resolves waiting for it; none left: it is abandoned

    def run(self) -> None:
        lookup, host, port, family = self.key
        try:
            self.answer = lookup(host, port, family, socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the waiters, who raise it
            self.failed = exc


class _Lookups:
    """At most ``LOOKUP_WORKERS`` daemon threads, started when lookups wait, that run them.

    A thread per lookup left one per hung lookup until the resolver gave up (30 s and more:
    200 of them after 200 tries) and cost a thread's start per new connection. ``lock``
    guards everything. Invariants: ``table`` holds every lookup queued or running, by its
    key; ``queue`` those no worker took, each with a waiter (the last to leave drops it);
    ``running`` those a worker runs, which stay until they end whether waited for or not.
    Under gevent the threads are greenlets and ``socket.getaddrinfo`` gevent's
    resolver, which yields to the others while it waits.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Condition(threading.Lock())
        self.table: dict[tuple[Any, ...], _Lookup] = {}
        self.queue: collections.deque[_Lookup] = collections.deque()
        self.running: set[_Lookup] = set()
        self.threads = 0

    def ask(self, new: _Lookup) -> _Lookup | None:
        """The lookup of ``new.key`` (``new`` queued, or the one in flight), waited for by one
        more; None when no worker could be had (the caller looks it up in place)."""
        with self.lock:
            known = self.table.get(new.key)
            if known is not None:
                known.waiters += 1
                return known
            free = self.threads - len(self.running)
            # Every worker runs a lookup that all who asked have given up on: another would
            # stick too. (Workers only notified, none running yet, are not stuck: a burst of
            # five names was refused the fifth while four idle workers were waking.)
            stuck = len(self.running) >= LOOKUP_WORKERS and not any(
                asked.waiters for asked in self.running
            )
            if stuck and free <= len(self.queue):
                # One text every time, so that the crash-loop damper takes a loop of them as one.
                raise ResolverNotAnswering(
                    "host name lookup: the resolver is not answering "
                    f"(all {LOOKUP_WORKERS} lookup threads are stuck)"
                )
            self.table[new.key] = new
            self.queue.append(new)
            if free >= len(self.queue) or self.threads >= LOOKUP_WORKERS:
                self.lock.notify()
                return new
            self.threads += 1
        try:
            threading.Thread(target=self._work, name="jobvisor-lookup", daemon=True).start()
        except RuntimeError:
            with self.lock:
                self.threads -= 1
                if self.threads:
                    return new  # a worker takes it in its turn
                self.table.pop(new.key, None)
                with contextlib.suppress(ValueError):
                    self.queue.remove(new)
            return None
        return new

    def leave(self, asked: _Lookup) -> None:
        """One waiter less for ``asked``; the last drops it if no worker took it yet."""
        with self.lock:
            asked.waiters -= 1
            if asked.waiters or asked in self.running or asked.done.is_set():
                return
            with contextlib.suppress(ValueError):
                self.queue.remove(asked)
                del self.table[asked.key]

    def _work(self) -> None:
        while True:
            with self.lock:
                idle_until = time.monotonic() + _LOOKUP_IDLE
                while not self.queue:
                    left = idle_until - time.monotonic()
                    if left <= 0:
                        self.threads -= 1
                        return
                    self.lock.wait(left)
                asked = self.queue.popleft()
                self.running.add(asked)
            asked.run()
            with self.lock:
                # Off the books before the waiters wake: one of them may ask again at once.
                self.running.discard(asked)
                del self.table[asked.key]
            asked.done.set()


_lookup_pool: _Lookups | None = None
_lookup_pool_lock = threading.Lock()


def _lookups() -> _Lookups:
    global _lookup_pool  # noqa: PLW0603 - one per process, made lazily
    with _lookup_pool_lock:
        if _lookup_pool is None or _lookup_pool.pid != os.getpid():
            _lookup_pool = _Lookups()  # a fork keeps no thread: make another
        return _lookup_pool


_HOSTS_FILE: Final = Path("/etc/hosts")
_NSSWITCH: Final = Path("/etc/nsswitch.conf")
# (mtimes of both files, the names the hosts file answers first); re-read when either changes.
_hosts_names: tuple[tuple[int, int], frozenset[str]] | None = None


def _in_hosts_file(host: str) -> bool:
    """Whether the system answers ``host`` from its hosts file before it asks any server.

    Then no resolver can hang it, and a hand-off to a lookup thread would cost more than
    the lookup. Only when nsswitch.conf names ``files`` first for hosts (glibc without
    that file asks DNS first): a name the system might ask a server about goes to the pool.
    """
    global _hosts_names  # noqa: PLW0603 - a cache of two files, per process
    try:
        stamp = (_HOSTS_FILE.stat().st_mtime_ns, _NSSWITCH.stat().st_mtime_ns)
    except OSError:
        return False
    known = _hosts_names
    if known is None or known[0] != stamp:
        known = _hosts_names = (stamp, _names_answered_first())
    return host.lower().removesuffix(".") in known[1]  # urllib3 keeps a final dot


def _names_answered_first() -> frozenset[str]:
    try:
        with _NSSWITCH.open(encoding="utf-8", errors="replace") as conf:
            sources = next(
                (line.split()[1:] for line in conf if line.split()[:1] == ["hosts:"]), []
            )
        if sources[:1] != ["files"]:
            return frozenset()
        with _HOSTS_FILE.open(encoding="utf-8", errors="replace") as hosts:
            rows = [line.partition("#")[0].split() for line in hosts]
    except OSError:
        return frozenset()
    return frozenset(name.lower() for row in rows for name in row[1:])


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])  # a scoped IPv6 address has %zone
    except ValueError:
        return False
    return True


def lookup_timed_out(exc: BaseException | None) -> LookupTimedOut | None:
    """The ``LookupTimedOut`` in ``exc``'s chain (a request's failure), if any."""
    if exc is None:
        return None
    return next((e for e in error_chain(exc) if isinstance(e, LookupTimedOut)), None)


# The requests of the current thread (greenlet) belong to this run; the pools read it.
_current: contextvars.ContextVar[_InFlight | None] = contextvars.ContextVar(
    "jobvisor_http_inflight", default=None
)


def _shutdown(sock: Any) -> None:
    """Wake whoever waits on ``sock`` (thread or greenlet) by shutting it down both ways.

    The system's socket is shut down below any TLS wrapper, so another
    thread's ``SSL_read`` sees EOF instead of a half-torn SSL object; the
    reader then closes the connection itself. Below gevent's too (it holds
    the system's as ``_sock``): its own ``shutdown`` made the waiting read
    raise instead of seeing the stream end, and what that read had gathered
    was lost (``0 bytes read``). A connect in progress fails (reset).
    """
    if sock is None:
        return
    raw = getattr(sock, "_sock", sock)
    try:
        if isinstance(raw, _socket.socket):
            _socket.socket.shutdown(raw, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing left to wake


def _sock_of(conn: Any) -> Any:
    """The socket that ``conn``'s request or answer waits on, or None before a connect.

    ``conn`` is a tracked connection, or a socket.

    An answer that ends with the connection (``Connection: close``, or HTTP/1.0
    without a length) is read through the answer: http.client hands it the
    socket and sets the connection's ``sock`` to None, so an abort that shut
    ``conn.sock`` found nothing and the body was read for ever.
    """
    if isinstance(conn, socket.socket):  # added as itself (a tcp check's)
        return conn
    sock = getattr(conn, "_jv_sock", None)
    return sock if sock is not None else getattr(conn, "sock", None)


class _SessionHolder:
    """The mutable part of a frozen ``HttpWork``: its session and the runs in flight.

    Thread-safe: ``run`` (job actor thread) and ``cancel`` (supervisor or
    scheduler thread) meet here under ``_lock``. The session is created on
    first use, reused by every attempt and retry, and closed by ``close`` or
    when the work is garbage-collected.
    """

    __slots__ = ("__weakref__", "_finalizer", "_inflight", "_lock", "_session")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._inflight: dict[int, _InFlight] = {}  # id(attempt) -> its run; removed when it ends

    def __reduce__(self) -> tuple[type[_SessionHolder], tuple[()]]:
        # A copy (pickled for another process, e.g. a Ray worker) starts with its own session.
        return (_SessionHolder, ())

    def session(self, strip: tuple[str, ...]) -> requests.Session:
        """The session; ``strip``: the names of the headers that a redirect to another host
        drops (the work's, the same on every call: read, lower-cased, at the first only)."""
        session = self._session
        if session is not None:
            return session
        with self._lock:
            if self._session is None:
                from actors._transport import tracked_session  # noqa: PLC0415 - loads requests

                session = tracked_session(frozenset(name.lower() for name in strip))
                self._finalizer = weakref.finalize(self, session.close)
                self._session = session
            return self._session

    def begin(self, attempt: Attempt) -> _InFlight:
        inflight = _InFlight()
        with self._lock:
            self._inflight[id(attempt)] = inflight
        return inflight

    def end(self, attempt: Attempt) -> None:
        with self._lock:
            self._inflight.pop(id(attempt), None)

    def abort(self, attempt: Attempt) -> None:
        with self._lock:
            inflight = self._inflight.get(id(attempt))
        if inflight is not None:
            inflight.abort()

    def close(self) -> None:
        with self._lock:
            finalizer, self._finalizer, self._session = self._finalizer, None, None
        if finalizer is not None:
            finalizer()


# -- the job kind --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpWork:
    """Send one HTTP request per try; the final status is the attempt's exit code.

    Redirects are followed for GET and HEAD unless ``expect_status`` names a
    3xx status; a redirect to another host drops the headers named in
    ``secret_headers`` (and Authorization). Another method's 3xx is its
    answer, unfollowed. The answer's body is read to the end and dropped, so
    the connection goes back to the session's pool for the next try.
    ``timeout`` bounds each try as a whole, from the connect to the body's
    end (curl's ``--max-time``). Header values, ``params``, ``json`` and
    ``body`` are left out of ``repr`` since they may hold secrets.
    """

    kind: ClassVar[str] = "http"
    url: str
    method: str = "GET"
    # Out of the repr (a secret), not out of the job's identity: the journal's spec hash
    # (``run --resume``) takes them all the same (``IDENTITY``).
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, metadata=_HEADERS_IDENTITY)
    params: Mapping[str, str] = field(default_factory=dict, repr=False, metadata=IDENTITY)
    json: Any = field(default=None, repr=False, metadata=IDENTITY)  # at most one of json / body
    body: str | bytes | None = field(default=None, repr=False, metadata=IDENTITY)
    timeout: float = 30.0
    expect_status: tuple[int, ...] = ()  # empty = any 2xx
    # Names in ``headers`` whose values hold a secret (the manifest says which: those that
    # take a secret reference). No part of the identity: which headers are masked changes
    # nothing of the request.
    secret_headers: tuple[str, ...] = field(default=(), repr=False)
    _holder: _SessionHolder = field(
        default_factory=_SessionHolder, init=False, repr=False, compare=False, hash=False
    )

    def identity_headers(self) -> Mapping[str, str | None]:
        """The headers as the job's identity (the journal's spec hash) takes them: a secret
        header by its name alone. Its value's digest in the journal could be guessed offline,
        and a rotated secret would run every finished job again under ``--resume``."""
        if not self.secret_headers:
            return self.headers
        secret = {name.casefold() for name in self.secret_headers}
        return {
            name: None if name.casefold() in secret else value
            for name, value in self.headers.items()
        }

    def __post_init__(self) -> None:
        check_url(self.url, "http.url")
        method = self.method.upper() if isinstance(self.method, str) else self.method
        need(
            method in HTTP_METHODS, "http.method", "one of " + ", ".join(HTTP_METHODS), self.method
        )
        object.__setattr__(self, "method", method)
        check_map("headers", self.headers, header=True)
        check_map("params", self.params, header=False)
        _check_payload(self.json, self.body)
        need_duration(self.timeout, "http.timeout", positive=True, longest=SOCKET_MAX_DURATION)
        need(
            isinstance(self.expect_status, tuple | list),
            "http.expect_status",
            "a status 100..599 or a list of them",
            self.expect_status,
        )
        statuses = tuple(self.expect_status)
        for i, code in enumerate(statuses):
            need_int_in(code, f"http.expect_status[{i}]", "a status", *HTTP_STATUSES)
        object.__setattr__(self, "expect_status", statuses)
        need(
            isinstance(self.secret_headers, tuple | list | frozenset | set)
            and all(isinstance(name, str) for name in self.secret_headers),
            "http.secret_headers",
            "a list of header names",
            self.secret_headers,
        )
        object.__setattr__(self, "secret_headers", tuple(sorted(self.secret_headers)))

    # -- Work ------------------------------------------------------------------------------------

    def run(self, attempt: Attempt) -> int | None:
        """Job actor thread: send the request; return its status or raise a ``JobFailure``."""
        holder = self._holder
        # Builds the session on the first try, loading requests, before the try's clock starts.
        session = holder.session(self.secret_headers)
        import requests  # noqa: PLC0415 - loaded by the session: a look-up in sys.modules

        inflight = holder.begin(attempt)
        try:
            with bounded(self.timeout, inflight=inflight):
                # Checked after begin(): a cancel() from now on finds this run and aborts it.
                if attempt.cancelled.is_set():
                    raise HttpRequestError(f"{self.describe()}: cancelled", "cancelled")
                response = session.request(
                    self.method,
                    self.url,
                    headers=self.headers or None,
                    params=self.params or None,
                    json=self.json,
                    data=self.body.encode() if isinstance(self.body, str) else self.body,
                    timeout=self.timeout,
                    allow_redirects=self.method in _REDIRECTED
                    and not any(300 <= c < 400 for c in self.expect_status),
                    stream=True,
                )
                if inflight.aborted:
                    # Its head was cut short: http.client takes the end of the stream for
                    # the head's end, so what looks like an answer is none.
                    response.close()
                    raise self._failure(None, inflight)
                self._read_body(response, inflight)
        except requests.RequestException as exc:
            raise self._failure(exc, inflight) from _safe_cause(exc)
        finally:
            holder.end(attempt)
        code = response.status_code
        if not self._expected(code):
            raise self._status_error(response)
        return code

    def _read_body(self, response: requests.Response, inflight: _InFlight) -> None:
        """Read the body to its end (so the connection can be reused) and drop it."""
        import requests  # noqa: PLC0415 - loaded by then (validate loads no requests)

        got = 0
        try:
            for chunk in response.iter_content(_CHUNK):
                got += len(chunk)
        except requests.RequestException as exc:
            raise self._failure(exc, inflight, response, got) from _safe_cause(exc)
        finally:
            response.close()
        if inflight.aborted:
            # A body read to the connection's close has no end to miss: the abort looked
            # like its end.
            raise self._failure(None, inflight, response, got)

    def cancel(self, attempt: Attempt) -> None:
        """Any thread: abort ``attempt``'s request in flight by shutting its socket down.

        The blocked ``run`` then fails at once with ``HttpRequestError``
        (reason ``cancelled``) instead of waiting for its ``timeout``. Other
        attempts sharing the session (replicas) are not touched.
        """
        self._holder.abort(attempt)

    def close(self) -> None:
        """Close the session's pooled connections; a later ``run`` opens a new session."""
        self._holder.close()

    def describe(self) -> str:
        return f"{self.method} {redact_url(self.url)}"

    def retryable(self, exc: BaseException, on: tuple[str, ...]) -> bool:
        """Connection errors, timeouts, 5xx and 429 by default; ``on`` names the classes instead.

        Tokens of ``on``: ``connection``, ``timeout``, ``5xx``, ``4xx``,
        ``429`` or an exact status such as ``"503"``. The same default for
        every method (SPEC §2): a POST's timeout or 5xx may come after the
        server acted on it, which ``validate`` warns of.
        """
        if on:
            return not _classes(exc).isdisjoint(on)
        return not _classes(exc).isdisjoint(_DEFAULT_RETRY_ON)

    def retry_after(self, exc: BaseException) -> float | None:
        """The ``Retry-After`` of a 429 or 503 answer in seconds, else None."""
        if isinstance(exc, HttpStatusError) and exc.code in _RETRY_AFTER_STATUSES:
            return exc.retry_after
        return None

    # -- helpers ---------------------------------------------------------------------------------

    def _expected(self, code: int) -> bool:
        return code in self.expect_status if self.expect_status else 200 <= code < 300

    def _status_error(self, response: requests.Response) -> HttpStatusError:
        code = response.status_code
        try:
            phrase = f" {HTTPStatus(code).phrase}"
        except ValueError:
            phrase = ""
        expected = ", ".join(map(str, self.expect_status)) if self.expect_status else "2xx"
        retry_after = None
        hint = ""
        if code in _RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                hint = f", Retry-After {retry_after:g}s"
        location = response.headers.get("Location")
        if 300 <= code < 400 and location and self.method not in _REDIRECTED:
            hint += f", redirected to {_shown_location(location)} (not followed for {self.method})"
        return HttpStatusError(
            f"{self.describe()}: status {code}{phrase}, expected {expected}{hint}",
            code,
            retry_after,
        )

    def _failure(
        self,
        exc: requests.RequestException | None,
        inflight: _InFlight,
        response: requests.Response | None = None,
        got: int = 0,
    ) -> HttpRequestError:
        """The failure of a try; ``response`` and ``got`` (bytes of it) when its body failed."""
        import requests  # noqa: PLC0415 - loaded by then (validate loads no requests)

        where = self.describe()
        if inflight.why == "cancelled":
            return HttpRequestError(f"{where}: cancelled", "cancelled")
        # First: the deadline that ended its wait has expired the request too.
        lookup = lookup_timed_out(exc)
        if lookup is not None:
            return HttpRequestError(f"{where}: {lookup}", "timeout")
        read = (response.raw.tell() or got) if response is not None else 0
        timed_out = f"{where}: timed out after {self.timeout:g}s"
        if inflight.why == "timeout" or isinstance(exc, requests.Timeout):
            if response is not None:
                timed_out += (
                    f" reading the body (status {response.status_code}, {_bytes(read)} read)"
                )
            return HttpRequestError(timed_out, "timeout")
        broken = requests.ConnectionError | requests.exceptions.ChunkedEncodingError
        if response is not None and isinstance(exc, broken):
            # requests calls a body cut short a ChunkedEncodingError, whatever its framing.
            length = response.headers.get("Content-Length", "")
            ended = (
                f"{read} of {length} bytes" if length.isdigit() else f"{_bytes(read)}, unfinished"
            )
            return HttpRequestError(
                f"{where}: connection failed: the body ended after {ended}", "connection"
            )
        if isinstance(exc, broken):
            return HttpRequestError(f"{where}: connection failed ({_root(exc)})", "connection")
        # Other RequestExceptions (too many redirects, invalid URL or header...) may echo
        # what was sent in their messages: name only the kind.
        return HttpRequestError(f"{where}: request failed ({type(exc).__name__})", "invalid")


def _bytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n} bytes"


def _shown_location(location: str) -> str:
    """A redirect's target for a message: its password masked (the manifest's secrets are
    masked where every message is shown)."""
    try:
        return redact_url(location)
    except ValueError:  # a malformed netloc: nothing of it can be shown safely
        return "***"


def _classes(exc: BaseException) -> set[str]:
    """The ``retry.on`` tokens that ``exc`` belongs to."""
    if isinstance(exc, HttpStatusError):
        code = exc.code
        out = {str(code)}
        if 400 <= code < 500:
            out.add("4xx")
        elif 500 <= code < 600:
            out.add("5xx")
        return out
    if isinstance(exc, HttpRequestError):
        return {exc.reason}
    import requests  # noqa: PLC0415 - validate loads no requests

    out = set()
    if isinstance(exc, requests.Timeout):
        out.add("timeout")
    if isinstance(exc, requests.ConnectionError):
        out.add("connection")
    return out


def _safe_cause(exc: requests.RequestException) -> BaseException | None:
    """Chain connection errors and timeouts (their text holds no header values); drop others."""
    import requests  # noqa: PLC0415 - loaded by then (validate loads no requests)

    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return exc
    return None


def error_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first: urllib3 keeps them in ``reason`` and ``args``
    as well as in ``__cause__`` and ``__context__``; each is taken once (a cycle ends it)."""
    seen: list[BaseException] = []
    err: BaseException | None = exc
    while err is not None and err not in seen:
        seen.append(err)
        links = (err.__cause__, err.__context__, getattr(err, "reason", None), *err.args)
        err = next((e for e in links if isinstance(e, BaseException)), None)
    return seen


def _root(exc: BaseException) -> str:
    """``Type: message`` of the innermost standard-library cause, e.g. a refused connection.

    urllib3 keeps causes in ``reason`` or ``args`` as well as in ``__cause__``;
    the standard library's socket, ssl and http.client errors never hold what
    was sent, so their text is safe to show.
    """
    for candidate in reversed(error_chain(exc)):
        if type(candidate).__module__ in _STDLIB_ERROR_MODULES:
            text = str(candidate)
            name = type(candidate).__name__
            return f"{name}: {text}" if text else name
    return type(exc).__name__
