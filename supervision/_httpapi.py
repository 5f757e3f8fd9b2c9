"""The HTTP endpoint of ``daemon`` and ``run`` (SPEC §9): metrics, the API, live events, the page.

Routes (every answer but ``/``, ``/metrics`` and the event stream is JSON):

- ``GET /``: the live page (``supervision/_page.html``), 404 while there is none;
- ``GET /metrics``: Prometheus text (``_metrics``);
- ``GET /api/config``: what the page needs to know (are actions on, do reads need the token;
  the heartbeat and the tree's name only to one who may read the tree);
- ``GET /api/status``: the status document, with ``process`` (which jobvisor answers:
  ``_status.Process``), and a ``Jobvisor-Last-Event-Id`` header: the newest event id of the
  stream that the document reflects (later ones may be in it too), before any stream too;
  ``GET /api/history?job=&limit=&since=``: the journal (``?per_job=N``: each job's newest N
  attempts, by path, in one answer);
- ``GET /api/events``: Server-Sent Events, one JSON object (with ``type``) per tree event,
  each with an ``id:``; a client back with ``Last-Event-ID`` (or ``?last_event_id=``) gets
  what it missed first, or one ``gap`` event when that is no longer kept;
- ``POST /api/jobs/PATH/start|stop|restart``: an action (bearer token);
  ``POST /api/jobs/PATH/signal?signal=HUP``: a signal to the job's process group (the same).

It never holds up supervision: requests run on their own threads (greenlets
under gevent); metrics are bumped inline (``TreeMetrics.sink``), and so is a counter
that numbers every event (``Tree.subscribe_numbered``); once a
stream has been opened the tree's event thread only keeps each event's text in a
bounded backlog and drops it into every open stream's bounded queue: a stream
whose client falls behind by a whole queue is cut.

Nor can a client hold it up for others: a request must arrive whole within
one deadline and an answer leave within another (not per read or write: a byte
every few seconds would keep either going for ever); the connections are
capped, and when every slot is taken a new one takes the slot of the oldest
still sending its request; event streams, which stay open, have a cap of their
own, so they never take the slots other requests need.
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import io
import json
import queue
import re
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import logbook
from prometheus_client import Gauge

from actors import JobvisorError
from actors._errors import replicas_of
from supervision._client import signal_number
from supervision._fdlimit import AcceptShortage
from supervision._files import ensure_private_dir, remove_if_same, write_atomic
from supervision._history import (
    MAX_RECENT_ROWS,
    JournalError,
    journal_path,
    read_history,
    read_recent_attempts,
    since_time,
)
from supervision._listen import is_loopback
from supervision._logs import replicas_in_status
from supervision._metrics import CONTENT_TYPE, TreeMetrics
from supervision._spec import NAME
from supervision._status import Process

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed import ReadableBuffer

    from supervision._app import Composition
    from supervision._events import Event, Subscription
    from supervision._files import Ident
    from supervision._listen import HttpSpec
    from supervision._tree import Tree

__all__ = ["ADDRESS_FILE", "PAGE", "Endpoint", "HttpError", "event_json", "open_endpoint"]

log = logbook.Logger("supervision.http")

PAGE: Final = Path(__file__).with_name("_page.html")
ADDRESS_FILE: Final = "http.json"  # in the state dir: where the endpoint listens (port 0)
MAX_CONNECTIONS: Final = 64  # at once: see _Slots for who gives way to a new one
MAX_STREAMS: Final = MAX_CONNECTIONS // 4  # open event streams; the other slots stay for requests
STREAM_RETRY: Final = 5  # seconds: the Retry-After of a stream refused for the cap
# The whole request (line, headers, body) must arrive within it, and the whole answer leave
# within it again (each of a stream's writes too): a stalled or trickling peer is cut.
REQUEST_DEADLINE: Final = 10.0
MAX_BODY: Final = 64 * 1024  # actions take no body; this much of one is read and dropped
_CONTENT_LENGTH: Final = re.compile(r"[0-9]{1,18}")
_DIGITS: Final = re.compile(r"[0-9]+")  # a Content-Length too long to be read as a number
_COUNT: Final = re.compile(r"[0-9]{1,9}")  # a ?limit= or ?per_job=, read as a number
_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]{1,8}")
STREAM_SNDBUF: Final = 32 * 1024
STREAM_QUEUE: Final = 1000  # events a stream may fall behind by before it is cut
# The newest events kept for a client that comes back (Last-Event-ID): this many at most,
# and at most this much of their text (a reload's event carries its every line).
BACKLOG: Final = 1000
BACKLOG_BYTES: Final = 1024 * 1024
_SHOWN_ID: Final = 80  # characters of a client's unknown Last-Event-ID said back in a gap
_EVENT_NUMBER: Final = re.compile(
    r"[0-9]{1,18}"
)  # an event id's number, as this endpoint makes them
HANGUP_CHECK: Final = 1.0  # seconds: how often an idle stream looks whether its client closed
STATUS_DEADLINE: Final = 10.0
MAX_HISTORY: Final = 10_000
MAX_PER_JOB: Final = 1000  # attempts of each job in one ?per_job answer
# An answer past BIG_ANSWER bytes is held whole until its client has read it (a stalled one:
# up to the deadline): at most MAX_BIG_ANSWERS are sent at once, the next is told to retry.
# 70 clients asking ?limit=10000 and never reading took a daemon from 45 to 307 MB (trial 33).
BIG_ANSWER: Final = 256 * 1024
MAX_BIG_ANSWERS: Final = 4
BIG_RETRY: Final = 1  # seconds: the Retry-After of a large answer refused for the cap
ACTIONS: Final = ("start", "stop", "restart", "signal")
# The page is one file with inline script and style; it talks only to this server.
PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_LOOPBACK_NAMES: Final = ("localhost", "127.0.0.1", "::1")
_SHUTDOWN_FLAG: Final = "_BaseServer__shutdown_request"  # socketserver's, read once per poll


class HttpError(JobvisorError):
    """The endpoint cannot listen where it was asked to."""


def event_json(event: Event) -> dict[str, Any]:
    """An event as the stream sends it: its fields and ``type`` (``state_changed``...)."""
    out: dict[str, Any] = {"type": _snake(type(event).__name__)}
    for f in fields(event):
        value = getattr(event, f.name)
        out[f.name] = getattr(value, "value", value)  # enums as their words
    return out


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class _Stream:
    """One ``/api/events`` client: a bounded queue the event thread fills without waiting.

    ``first``: what it is sent before the queue, all of it taken as it joined: the events it
    missed (or a ``gap``), or, when there are none, the newest id (an ``id:`` alone), which
    a client that saw no event yet gives back when it reconnects.
    """

    __slots__ = ("cut", "first", "queue")

    def __init__(self) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(STREAM_QUEUE)
        self.cut = False
        self.first: list[bytes] = []

    def offer(self, data: bytes | None) -> None:
        try:
            self.queue.put_nowait(data)
        except queue.Full:
            self.cut = True  # fell a whole queue behind: it is dropped, never waited for


class _Hub:
    """Numbers each event, keeps the newest in a backlog and fans each out to every open stream.

    Subscribed to the tree from the first stream on, and not only while one is open: what
    happens while a client reconnects is what its ``Last-Event-ID`` asks for. (A tree no
    stream was ever opened on pays only its counter: ``Endpoint.sink``.) An id is ``LIFE-N``:
    ``N`` is the tree's count of its events from 1 (those before the first stream too, never
    kept: a client back from one of them is told how many it missed), ``LIFE`` (the
    endpoint's start, in ms) tells an id of an earlier daemon's.
    """

    def __init__(self, mask: Callable[[str], str], life: str) -> None:
        self._mask = mask
        self.life = life
        self._lock = threading.Lock()
        self.streams: tuple[_Stream, ...] = ()
        self._subscription: Subscription | None = None
        self._count = 0  # the newest event's number, once subscribed (before: the tree's)
        self._backlog: collections.deque[tuple[int, bytes]] = collections.deque()
        self._backlog_bytes = 0

    def join(self, tree: Tree, most: int, after: str | None = None) -> _Stream | None:
        """A new stream (None if ``most`` are open), sent first what came after the event
        ``after`` (a ``Last-Event-ID``); the first stream subscribes to ``tree``'s events."""
        stream = _Stream()
        with self._lock:
            if len(self.streams) >= most:
                return None
            if self._subscription is None:
                self._subscription, self._count = tree.subscribe_numbered(self.publish)
            stream.first = self._missed(after) if after is not None else []
            if not stream.first:
                stream.first = [f"id: {self._id(self._count)}\n\n".encode()]
            self.streams = (*self.streams, stream)
        return stream

    def leave(self, stream: _Stream) -> None:
        """Forget ``stream`` (the subscription stays: the backlog keeps filling)."""
        with self._lock:
            self.streams = tuple(s for s in self.streams if s is not stream)

    def publish(self, event: Event, number: int) -> None:
        text = self._mask(json.dumps(event_json(event), separators=(",", ":")))
        with self._lock:
            self._count = number
            data = f"id: {self._id(number)}\ndata: {text}\n\n".encode()
            self._backlog.append((number, data))
            self._backlog_bytes += len(data)
            while len(self._backlog) > BACKLOG or self._backlog_bytes > BACKLOG_BYTES:
                self._backlog_bytes -= len(self._backlog.popleft()[1])
            streams = self.streams
        for stream in streams:
            stream.offer(data)

    def close(self) -> None:
        for stream in self.streams:
            stream.offer(None)
        with self._lock:
            if self._subscription is not None:
                self._subscription.cancel()
                self._subscription = None

    def _id(self, number: int) -> str:
        return f"{self.life}-{number}"

    def newest(self, tree: Tree) -> str:
        """The newest event's id: read before a status is taken, every event up to it is in
        that status (each is published, or counted, after the change it tells of)."""
        with self._lock:
            if self._subscription is None:  # no stream yet: the tree counts them, unkept
                return self._id(tree.event_count)
            return self._id(self._count)

    def _missed(self, after: str) -> list[bytes]:
        """The kept events after the one ``after`` names; one ``gap`` event when some of them
        are not kept, or the id is not one of this endpoint's (with the lock held)."""
        life, _, number = after.strip().rpartition("-")
        # ASCII digits only, and few of them: str.isdigit() takes '²', which int() refuses,
        # and int() refuses more than 4,300 digits (a header may hold 64 KiB).
        if life != self.life or not _EVENT_NUMBER.fullmatch(number) or int(number) > self._count:
            shown = after if len(after) <= _SHOWN_ID else after[:_SHOWN_ID] + "…"
            return [self._gap(after, None, f"{shown!r} is not an event id of this jobvisor")]
        seen = int(number)
        kept = [data for n, data in self._backlog if n > seen]
        # Every number after it that is not kept: older than the backlog, before the first
        # stream, or (as it subscribed) one a supervisor counted as nobody's.
        lost = self._count - seen - len(kept)
        if lost:
            return [self._gap(after, lost, f"{lost} events after it are not kept")]
        return kept

    def _gap(self, after: str, lost: int | None, reason: str) -> bytes:
        """What says that events were missed: read the status again, then follow on."""
        gap = {
            "type": "gap",
            "path": "",
            "at": time.time(),
            "after": after[:_SHOWN_ID],
            "missed": lost,
            "reason": reason + "; read /api/status again",
        }
        text = self._mask(json.dumps(gap, separators=(",", ":")))
        return f"id: {self._id(self._count)}\ndata: {text}\n\n".encode()


class Endpoint:
    """The listening server of one tree; ``close()`` ends it and every stream."""

    def __init__(
        self,
        spec: HttpSpec,
        metrics: TreeMetrics,
        *,
        mask: Callable[[str], str] = str,
        state_dir: Path | None = None,
        journal: Path | None = None,
        page: Path = PAGE,
        deadline: float = REQUEST_DEADLINE,
        process: Process | None = None,
    ) -> None:
        """``deadline``: seconds for a request to arrive, and for its answer to leave;
        ``process``: what the status document says of the jobvisor serving it (a daemon
        sets its own)."""
        self.spec = spec
        self.deadline = deadline
        self.metrics = metrics
        self.mask = mask
        self.state_dir = state_dir
        self.journal = journal
        self.page = page
        self.tree: Tree | None = None
        self.process = process
        # (action, job path, the signal's number for a signal): the control protocol's reply.
        self.act: Callable[[str, str, int | None, bool], dict[str, Any]] = self._act_on_tree
        self.hub = _Hub(mask, life=str(int(time.time() * 1000)))
        # One history answer built at a time: its rows as objects are many times its text, and
        # 70 built at once were most of trial 33's peak (and stayed, fragments of the heap).
        self.building = threading.Lock()
        self.big_answers = threading.BoundedSemaphore(MAX_BIG_ANSWERS)
        self._closed = threading.Event()
        Gauge(
            "jobvisor_http_event_clients",
            "Open /api/events streams",
            registry=metrics.registry,
        ).set_function(lambda: len(self.hub.streams))
        Gauge(
            "jobvisor_http_connections",
            f"Open connections to the endpoint (at most {MAX_CONNECTIONS}), streams included",
            registry=metrics.registry,
        ).set_function(lambda: self.connections)
        try:
            self._server = _Server(spec, self)
        except OSError as exc:
            raise HttpError(
                f"http: cannot listen on {spec.listen}: {exc.strerror or exc}; "
                "choose another address with --http or http.listen"
            ) from None
        address = self._server.server_address
        host, self.port = str(address[0]), int(address[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self._server.shortage.what = f"http: {self.url}"
        self._written: Ident | None = None
        if state_dir is not None:
            ensure_private_dir(state_dir)
            document = {"url": self.url, "host": host, "port": self.port}
            self._written = write_atomic(state_dir / ADDRESS_FILE, json.dumps(document).encode())
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.5,), name="jv-http", daemon=True
        )
        self._thread.start()
        log.info("http: listening on {}", self.url)

    def attach(self, tree: Tree) -> None:
        """Serve ``tree`` from now on (requests before this get 503)."""
        self.tree = tree

    def sink(self, then: Callable[[Event], None] | None = None) -> Callable[[Event], None]:
        """The tree's inline sink: the metrics, then ``then`` (the journal's record). Its tree
        numbers every event (``numbers_events``), streamed or not: the ids count them all."""
        sink = self.metrics.sink(then)
        marked: Any = sink
        marked.numbers_events = True
        return sink

    def _act_on_tree(self, op: str, job: str, signum: int | None, up: bool) -> dict[str, Any]:
        # The daemon imports this module.
        from supervision._daemon import act, send_signal  # noqa: PLC0415

        tree = self.tree
        if tree is None:
            return {"ok": False, "code": "starting", "error": "the tree is still starting"}
        if op == "signal":
            assert signum is not None
            return send_signal(tree, job, signum)
        return act(tree, op, job, daemon=False, up=up)  # no daemon: said as GET /api/status

    @property
    def connections(self) -> int:
        """How many connections are open: reading a request, answering it, or streaming."""
        return len(self._server.slots)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.hub.close()
        self._server.stop_now()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        if self._written is not None and self.state_dir is not None:
            remove_if_same(self.state_dir / ADDRESS_FILE, self._written)


class _Slots:
    """The open connections: at most ``most``, and none of them kept by a slow request.

    A connection is *reading* until its whole request is in, then *answering*
    (or streaming). When every slot is taken, a new connection takes the slot
    of the oldest one still reading: that client has had the longest to send a
    few hundred bytes, and one that sends its request at once is answered
    however many others trickle theirs. Only answers (each bounded by the
    deadline) and event streams (capped apart) keep a new connection out.
    """

    def __init__(self, most: int) -> None:
        self._most = most
        self.lock = threading.Lock()
        self._held: set[socket.socket] = set()
        self._reading: dict[socket.socket, None] = {}  # the oldest first

    def __len__(self) -> int:
        return len(self._held)

    def take(self, conn: socket.socket) -> bool:
        """A slot for ``conn`` (a reading one's, if need be); False when every one answers."""
        with self.lock:
            if len(self._held) >= self._most:
                if not self._reading:
                    return False
                oldest = next(iter(self._reading))
                self.drop(oldest)
                # Its thread, blocked in a read, sees the end of its request and returns.
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)
            self._held.add(conn)
            self._reading[conn] = None
            return True

    def answering(self, conn: socket.socket) -> bool:
        """``conn``'s request is in; False if its slot was taken meanwhile (do not answer)."""
        with self.lock:
            if conn not in self._reading:
                return False
            del self._reading[conn]
            return True

    def drop(self, conn: socket.socket) -> None:
        """Free ``conn``'s slot (with ``lock`` held)."""
        self._held.discard(conn)
        self._reading.pop(conn, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, spec: HttpSpec, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.slots = _Slots(MAX_CONNECTIONS)
        self.stopped = threading.Event()
        self.shortage = AcceptShortage("http", self.stopped)
        if ":" in spec.host:
            self.address_family = socket.AF_INET6
        super().__init__((spec.host, spec.port), _Handler)

    def stop_now(self) -> None:
        """Make ``serve_forever`` end now, not at its next poll (0.5 s): the flag
        ``shutdown()`` sets before it waits, then a connection that wakes the loop's select."""
        setattr(self, _SHUTDOWN_FLAG, True)
        self.stopped.set()  # a wait out of fds ends too
        host, port = self.server_address[:2]
        with contextlib.suppress(OSError), socket.create_connection((str(host), int(port)), 1):
            pass  # never accepted: the loop sees the flag first (were it renamed: one request)

    def get_request(self) -> tuple[socket.socket, Any]:
        # The base's loop drops an accept's error and selects again, which finds the same
        # connection waiting: out of fds, a silent busy loop. Said once, and waited out.
        try:
            got = super().get_request()
        except OSError as exc:
            self.shortage.failed(exc)
            raise
        self.shortage.accepted()
        return got

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.take(request):
            self.shutdown_request(request)  # full: refused now rather than queued behind others
            return
        super().process_request(request, client_address)  # its thread ends in shutdown_request

    def shutdown_request(self, request: Any) -> None:
        # Under the lock: a connection whose slot is taken is never one being closed, whose
        # descriptor may already be a new connection's.
        with self.slots.lock:
            self.slots.drop(request)
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Called in the ``except`` of a request that raised (the base prints to stderr)."""
        del request
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # a client that reset or vanished mid-request
            log.debug("http: {}: {}", client_address[0], error)
        else:
            log.error("http: a request from {} failed", client_address[0], exc_info=error)


def _arm(sock: socket.socket, deadline: float) -> None:
    """Give ``sock``'s next call what is left until ``deadline`` (its own timeout is per call)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("past the deadline")
    sock.settimeout(left)


class _RequestReader(io.RawIOBase):
    """A request's bytes, all of which must arrive by one deadline, not one per read."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        _arm(self._sock, self._deadline)
        return self._sock.recv_into(buffer)


class _AnswerWriter(io.BufferedIOBase):
    """Writes that must all be sent by a deadline ``start`` sets, however slowly the client reads.

    Until the first ``start``, the request's own (a ``100 Continue`` is written then).
    """

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        super().__init__()
        self._sock = sock
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds

    def start(self) -> None:
        self._deadline = time.monotonic() + self._seconds

    def writable(self) -> bool:
        return True

    def write(self, buffer: ReadableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        size = len(view)
        while view:
            _arm(self._sock, self._deadline)
            view = view[self._sock.send(view) :]
        return size


def _answer(job: str, action: str, reply: dict[str, Any]) -> tuple[HTTPStatus, dict[str, Any]]:
    """The HTTP status and answer of an action's reply (the control protocol's)."""
    if reply.get("ok"):
        answer: dict[str, Any] = {"ok": True, "job": job, "action": action}
        if action == "signal":
            answer["signal"] = reply["result"]  # its name: SIGHUP
        elif isinstance(reply.get("result"), str):  # nothing to stop: said, not an error
            answer["note"] = reply["result"]
        for key in ("killed", "threads_killed", "dependants_running", "dependants_on"):
            if reply.get(key):
                answer[key] = reply[key]
        return HTTPStatus.OK, answer
    status = {
        "no_such_job": HTTPStatus.NOT_FOUND,
        "starting": HTTPStatus.SERVICE_UNAVAILABLE,
    }.get(str(reply.get("code")), HTTPStatus.CONFLICT)
    return status, {"error": str(reply.get("error")), "code": reply.get("code")}


def _action(path: str) -> tuple[str, str] | None:
    """``/api/jobs/PATH/ACTION`` as (action, job path; empty when none); None when not one."""
    parts = path.split("/")
    if len(parts) < 5 or parts[:3] != ["", "api", "jobs"] or parts[-1] not in ACTIONS:
        return None
    return parts[-1], "/".join(urllib.parse.unquote(p) for p in parts[3:-1]).strip("/")


def _each_recent(db: Path, paths: list[str], count: int) -> dict[str, Any]:
    """``read_recent_attempts`` of each of ``paths`` (a replicated job's replicas), in one."""
    found: dict[str, Any] = {}
    share = max(1, MAX_RECENT_ROWS // len(paths))  # the one answer's bound, shared
    for path in paths:
        found.update(read_recent_attempts(db, path, count, total=share))
    return found


def _no_block(query: str, action: str) -> bool:
    """Whether ``?no_block=1`` asks a start or restart answered once taken (not once its
    child is up); 400 for another value, or on another action."""
    given = urllib.parse.parse_qs(query, keep_blank_values=True).get("no_block")
    if given is None:
        return False
    if action not in ("start", "restart"):
        raise _Refused(
            HTTPStatus.BAD_REQUEST, f"no_block is a start's or restart's, not {action}'s"
        )
    if given not in (["1"], ["true"], ["0"], ["false"]):
        raise _Refused(HTTPStatus.BAD_REQUEST, f"no_block: expected 1 or 0, got {given!r}")
    return given[0] in ("1", "true")


def _signal_asked(query: str) -> int:
    """The number of the one signal ``?signal=`` names (HUP, SIGHUP, 1); 400 for anything else."""
    given = urllib.parse.parse_qs(query, keep_blank_values=True).get("signal", [])
    if len(given) != 1:
        raise _Refused(
            HTTPStatus.BAD_REQUEST,
            f"signal takes one ?signal= (a name such as HUP, USR1 or TERM, or a number), "
            f"got {len(given)}",
        )
    try:
        return signal_number(given[0])
    except ValueError as exc:
        raise _Refused(HTTPStatus.BAD_REQUEST, str(exc)) from None


# A time, then the offset its "+" became in a query string: `...T19:00:00 01:00`.
_SPACED_OFFSET = re.compile(
    r"^(\d{4}-?\d{2}-?\d{2}[Tt ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?) (\d{2}(?::?\d{2})?)$"
)


def _since(query_text: str, per_job: str | None) -> float | None:
    """The wall time ``?since=`` names (a duration ago, or an ISO-8601 time), None without
    one; 400 for anything else (an empty one too, as the CLI's ``--since=''``), and beside
    ``per_job`` (each job's newest, whenever). ``query_text``: the URL's query, raw."""
    query = urllib.parse.parse_qs(query_text, keep_blank_values=True)
    if "since" not in query:
        return None
    if per_job is not None:
        raise _Refused(
            HTTPStatus.BAD_REQUEST,
            "since and per_job: give one (per_job reads each job's newest attempts)",
        )
    # `+01:00` written as is (not `%2B01:00`) arrives as ` 01:00`: the README's example works.
    text = _SPACED_OFFSET.sub(r"\1+\2", query["since"][-1].strip())
    try:
        return since_time(text, time.time())
    except ValueError as exc:
        raise _Refused(HTTPStatus.BAD_REQUEST, f"since: {exc}") from None


class _Refused(Exception):
    def __init__(
        self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    _GETS: ClassVar[dict[str, str]] = {
        "/": "_page",
        "/metrics": "_metrics",
        "/api/config": "_config",
        "/api/status": "_status",
        "/api/history": "_history",
        "/api/events": "_events",
    }
    _FREE: ClassVar[frozenset[str]] = frozenset({"/", "/api/config"})  # hold no data
    _answer: _AnswerWriter

    @property
    def endpoint(self) -> Endpoint:
        return self.server.endpoint

    def setup(self) -> None:
        self.connection = self.request
        deadline = self.endpoint.deadline
        self.rfile = io.BufferedReader(_RequestReader(self.connection, deadline))
        self.wfile = self._answer = _AnswerWriter(self.connection, deadline)

    def version_string(self) -> str:
        return "jobvisor"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("http: {} {}", self.address_string(), self.endpoint.mask(format % args))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the base server refuses itself (a bad request line, too many headers) as JSON."""
        del explain
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # an answer with a status line, which clients read
        status = HTTPStatus(code)
        self._json(status, {"error": message or status.phrase})

    def parse_request(self) -> bool:
        """The request line and headers, then its body (read and dropped): True to answer it.

        A method other than GET, HEAD and POST is answered here (405), as is a refused body.
        """
        parsed = super().parse_request()
        # One request per connection, whatever its Connection header: nothing idles on a thread.
        self.close_connection = True
        if not parsed:
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(HTTPStatus.BAD_REQUEST, "expected HTTP/1.0 or HTTP/1.1")
            return False
        try:
            self._read_body()
        except _Refused as exc:
            self._refuse(exc)
            return False
        if not self.server.slots.answering(self.connection):
            return False  # its slot went to a newer connection: nobody waits for the answer
        if self.command in ("GET", "HEAD", "POST"):
            return True
        try:
            self._check_host()
            path = urllib.parse.urlsplit(self.path).path
            # HEAD too where GET is: it is answered there (RFC 9110's Allow lists every one).
            allow = "GET, HEAD" if path in self._GETS else "POST" if _action(path) else None
            if allow is None:
                raise _Refused(HTTPStatus.NOT_FOUND, f"no such resource {path!r}")
            raise _Refused(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{self.command} is not answered here: {path!r} takes {allow}",
                {"Allow": allow},
            )
        except _Refused as exc:
            self._refuse(exc)
        return False

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        try:
            self._check_host()
            name = self._GETS.get(url.path)
            if name is None and _action(url.path) is not None:
                raise _Refused(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{url.path!r} is an action: send it as a POST",
                    {"Allow": "POST"},
                )
            if name is None:
                raise _Refused(HTTPStatus.NOT_FOUND, f"no such resource {url.path!r}")
            if url.path not in self._FREE and self.endpoint.spec.reads_need_token:
                self._check_token()
            getattr(self, name)(urllib.parse.parse_qs(url.query))
        except _Refused as exc:
            self._refuse(exc)

    def do_HEAD(self) -> None:
        """GET without the body (RFC 9110): ``_send`` writes none; an event stream its head."""
        self.do_GET()

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        try:
            self._check_host()
            if url.path in self._GETS:
                raise _Refused(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{url.path!r} is read with GET",
                    {"Allow": "GET, HEAD"},
                )
            found = _action(url.path)
            if found is None:
                raise _Refused(HTTPStatus.NOT_FOUND, f"no such action {url.path!r}")
            action, job = found
            if not job:
                raise _Refused(HTTPStatus.NOT_FOUND, "no job path before the action")
            if not all(NAME.fullmatch(name) for name in job.split("/")):
                # As ``/api/history?job=`` refuses it: ``etl//load`` had been done, as etl/load
                raise _Refused(
                    HTTPStatus.BAD_REQUEST, f"expected a job path like etl/load, got {job!r}"
                )
            self._check_token(action=True)
            signum = _signal_asked(url.query) if action == "signal" else None
            up = not _no_block(url.query, action)
            reply = self.endpoint.act(action, job, signum, up)
        except _Refused as exc:
            self._refuse(exc)
            return
        replicas = reply.get("replicas") if action != "signal" else None
        if not replicas:
            self._json(*_answer(job, action, reply))
            return
        # A replicated job's name is each of its replicas in turn, as the CLI and depends_on
        # mean it (it was 404, naming them). The first that fails ends it, as a CLI line does
        # not: an HTTP answer has one status; what was done before it is in the answer.
        results: list[dict[str, Any]] = []
        for path in replicas:
            status, answer = _answer(path, action, self.endpoint.act(action, path, None, up))
            results.append(answer if status == HTTPStatus.OK else {**answer, "job": path})
            if status != HTTPStatus.OK:
                self._json(status, {**answer, "job": job, "results": results})
                return
        self._json(HTTPStatus.OK, {"ok": True, "job": job, "action": action, "results": results})

    # -- checks ----------------------------------------------------------------------------------

    def _check_host(self) -> None:
        """On loopback, only loopback names: a page elsewhere cannot rebind its name to us."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:  # RFC 9112 3.2: a request with two is refused, whoever answers it
            raise _Refused(HTTPStatus.BAD_REQUEST, "more than one Host header")
        if not self.endpoint.spec.loopback:
            return
        host = hosts[0] if hosts else ""
        if "://" in self.path.split("?", 1)[0]:
            # An absolute URL as the target: its host is the request's, not the header's
            # (RFC 9112 3.2.2), and it must be loopback too.
            host = urllib.parse.urlsplit(self.path).netloc.rpartition("@")[2]
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()  # host names are case-insensitive (RFC 4343)
        if name not in _LOOPBACK_NAMES and not is_loopback(name):
            raise _Refused(HTTPStatus.FORBIDDEN, f"Host {host!r} is not this machine's loopback")

    def _check_token(self, *, action: bool = False) -> None:
        token = self.endpoint.spec.token
        if token is None:
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                "actions are off: the endpoint has no token (set http.token in the manifest)",
            )
        given = self.headers.get_all("Authorization") or []
        if len(given) > 1:  # which one counts is for no server to guess: refused, as Host's
            raise _Refused(HTTPStatus.BAD_REQUEST, "more than one Authorization header")
        scheme, _, value = (given[0] if given else "").strip().partition(" ")
        if action:
            what = "an action"
        else:
            what = (
                "a read off loopback"
                if not self.endpoint.spec.loopback
                else "a read (reads: token)"
            )
        # No bearer token at all (no header, another scheme, a scheme alone) is 401, which says
        # how to give one; a bearer token that does not match is 403 (RFC 6750).
        if scheme.lower() != "bearer" or not value.strip():
            raise _Refused(
                HTTPStatus.UNAUTHORIZED,
                f"{what} needs Authorization: Bearer TOKEN",
                {"WWW-Authenticate": 'Bearer realm="jobvisor"'},
            )
        # Constant time: how much of a guess matched must not show in how long the answer took.
        if not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise _Refused(HTTPStatus.FORBIDDEN, "wrong token")

    def _read_body(self) -> None:
        """Read and drop a request's body, sized or chunked alike: no request here takes one.

        Up to ``MAX_BODY`` is read (a client may send ``{}``; closing on unread bytes would
        reset the connection before it reads the answer); more is 413.
        """
        codings = ",".join(self.headers.get_all("Transfer-Encoding") or ())
        lengths = self.headers.get_all("Content-Length") or []
        if codings and lengths:
            raise _Refused(
                HTTPStatus.BAD_REQUEST, "Transfer-Encoding and Content-Length: give one of them"
            )
        if codings:
            if codings.rsplit(",", 1)[-1].strip().lower() != "chunked":
                raise _Refused(
                    HTTPStatus.BAD_REQUEST, f"Transfer-Encoding {codings!r}: expected chunked last"
                )
            self._read_chunks()
            return
        if not lengths:
            return
        if len({length.strip() for length in lengths}) > 1:
            raise _Refused(HTTPStatus.BAD_REQUEST, "Content-Length headers that differ")
        if not _CONTENT_LENGTH.fullmatch(lengths[0].strip()):
            if _DIGITS.fullmatch(lengths[0].strip()):
                raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "actions take no body")
            raise _Refused(HTTPStatus.BAD_REQUEST, "Content-Length is not a number")
        size = int(lengths[0])
        if size > MAX_BODY:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "actions take no body")
        if len(self.rfile.read(size)) < size:
            raise _Refused(HTTPStatus.BAD_REQUEST, "the body ended before its Content-Length")

    def _read_chunks(self) -> None:
        taken = 0
        while True:
            line = self.rfile.readline(1024)
            size_text = line.split(b";", 1)[0].strip()  # a chunk extension is dropped
            if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size_text):
                raise _Refused(HTTPStatus.BAD_REQUEST, "the chunked body is malformed")
            size = int(size_text, 16)
            taken += size + len(line)
            if taken > MAX_BODY:
                raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "actions take no body")
            if not size:
                break
            if self.rfile.read(size + 2)[size:] != b"\r\n":
                raise _Refused(HTTPStatus.BAD_REQUEST, "the chunked body is malformed")
        while (line := self.rfile.readline(1024)) not in (b"\r\n", b"\n"):  # trailer fields
            taken += len(line)
            if not line.endswith(b"\n"):
                raise _Refused(HTTPStatus.BAD_REQUEST, "the chunked body is malformed")
            if taken > MAX_BODY:
                raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "actions take no body")

    def _replicas(self, job: str) -> list[str]:
        """The replicas of the job at ``job``, as the tree's status marks them; none if it
        has none, or the tree is not there yet."""
        tree = self.endpoint.tree
        if tree is None:
            return []
        try:
            replicated = replicas_in_status(tree.status(timeout=STATUS_DEADLINE)) or {}
        except JobvisorError:  # an ended or busy tree: its rows are what there is
            return []
        return replicas_of(job, replicated, replicated)

    def _tree(self) -> Tree:
        tree = self.endpoint.tree
        if tree is None:
            raise _Refused(HTTPStatus.SERVICE_UNAVAILABLE, "the tree is still starting")
        return tree

    # -- answers ---------------------------------------------------------------------------------

    def _page(self, query: dict[str, list[str]]) -> None:
        del query
        try:
            body = self.endpoint.page.read_bytes()
        except FileNotFoundError:
            raise _Refused(HTTPStatus.NOT_FOUND, "this jobvisor has no page") from None
        self._send(
            HTTPStatus.OK,
            body,
            "text/html; charset=utf-8",
            {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"},
        )

    def _metrics(self, query: dict[str, list[str]]) -> None:
        del query
        self._send(HTTPStatus.OK, self.endpoint.metrics.text(), CONTENT_TYPE)

    def _config(self, query: dict[str, list[str]]) -> None:
        """Free, for the page before any token: whether actions are on and reads need the
        token. The rest (the tree's name is the manifest's ``name:``) only to one who may
        read the tree: when reads are free, or with the token."""
        del query
        spec = self.endpoint.spec
        config: dict[str, Any] = {
            "actions": spec.token is not None,
            "actions_need_token": True,
            "reads_need_token": spec.reads_need_token,
        }
        if not spec.reads_need_token or self._holds_token():
            config["heartbeat"] = spec.heartbeat
            config["name"] = self._tree().spec.name if self.endpoint.tree is not None else None
        self._json(HTTPStatus.OK, config)

    def _holds_token(self) -> bool:
        """Whether the request carries the token (``_check_token``'s test, refusing nothing)."""
        try:
            self._check_token()
        except _Refused:
            return False
        return True

    def _status(self, query: dict[str, list[str]]) -> None:
        del query
        tree = self._tree()
        # Taken first: a page that applied a later event keeps what that event said.
        seen = self.endpoint.hub.newest(tree)
        try:
            document = tree.status(timeout=STATUS_DEADLINE)
        except (JobvisorError, TimeoutError) as exc:
            raise _Refused(HTTPStatus.SERVICE_UNAVAILABLE, f"no status: {exc}") from None
        process = self.endpoint.process
        if process is not None:
            document = {**document, "process": process.as_dict()}
        self._json(HTTPStatus.OK, document, {"Jobvisor-Last-Event-Id": seen})

    def _history(self, query: dict[str, list[str]]) -> None:
        job = (query.get("job") or [""])[-1].strip("/") or None
        if job is not None and not all(NAME.fullmatch(name) for name in job.split("/")):
            raise _Refused(
                HTTPStatus.BAD_REQUEST, f"job: expected a job path like etl/load, got {job!r}"
            )
        per_job = query["per_job"][-1] if "per_job" in query else None
        if per_job is not None and "limit" in query:
            raise _Refused(
                HTTPStatus.BAD_REQUEST, "limit and per_job: give one (per_job counts each job's)"
            )
        text = per_job if per_job is not None else (query.get("limit") or ["50"])[-1]
        name, most = ("per_job", MAX_PER_JOB) if per_job is not None else ("limit", MAX_HISTORY)
        # ASCII digits, and few: isdigit() takes '²', and int() refuses 4,300 digits and more.
        if not _COUNT.fullmatch(text) or not 1 <= int(text) <= most:
            shown = text if len(text) <= 40 else f"{text[:37]}..."
            raise _Refused(HTTPStatus.BAD_REQUEST, f"{name}: expected 1 to {most}, got {shown!r}")
        since = _since(urllib.parse.urlsplit(self.path).query, per_job)
        if self.endpoint.journal is None:
            raise _Refused(HTTPStatus.NOT_FOUND, "this tree keeps no journal")
        db = self.endpoint.journal
        body = self._built(
            # per_job: {path: [attempt, ...]}, a page's every timeline in one read.
            lambda: (
                read_recent_attempts(db, job, int(text))
                if per_job is not None
                else read_history(db, job, int(text), since=since)
            )
        )
        if job is not None and body in (b"[]", b"{}"):
            # A replicated job's name is its replicas' rows, as `history w` gives them; the
            # tree asked outside the lock, so that a busy one keeps no other answer waiting.
            replicas = self._replicas(job)
            if replicas and per_job is None:
                body = self._built(lambda: read_history(db, replicas, int(text), since=since))
            elif replicas:
                body = self._built(lambda: _each_recent(db, replicas, int(text)))
        if len(body) <= BIG_ANSWER:
            self._send(HTTPStatus.OK, body, "application/json")
            return
        if not self.endpoint.big_answers.acquire(blocking=False):
            del body
            raise _Refused(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"{MAX_BIG_ANSWERS} large answers are being sent, as many as are sent at once: "
                "retry later",
                {"Retry-After": str(BIG_RETRY)},
            )
        try:
            self._send(HTTPStatus.OK, body, "application/json")
        finally:
            self.endpoint.big_answers.release()

    def _events(self, query: dict[str, list[str]]) -> None:
        endpoint = self.endpoint
        if self.command == "HEAD":  # the stream's head alone: no place among the streams
            self._stream_head()
            return
        stream = endpoint.hub.join(self._tree(), MAX_STREAMS, self._last_event_id(query))
        if stream is None:
            raise _Refused(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"{MAX_STREAMS} event streams are open, as many as are served: retry later",
                {"Retry-After": str(STREAM_RETRY)},
            )
        try:
            # A small kernel buffer: a client that stops reading blocks a write (and is cut at
            # the deadline) after tens of KiB, not after megabytes of autotuned buffer.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
            self._stream_head()
            self.wfile.write(b"retry: 1000\n: connected\n\n")
            self.wfile.flush()
            # Taken from the stream as written: held for the stream's life, each one's replay
            # was a backlog of its own (up to 1 MiB a stream) the backlog's bound never saw.
            first, stream.first = stream.first, []
            for frame in first:
                self._answer.start()  # each its own deadline, as the live events below
                self.wfile.write(frame)
                self.wfile.flush()
            del first
            heartbeat = endpoint.spec.heartbeat
            beat_at = time.monotonic() + heartbeat
            while not endpoint.closed and not stream.cut:
                left = beat_at - time.monotonic()
                try:
                    data = stream.queue.get(timeout=max(0.0, min(left, HANGUP_CHECK)))
                except queue.Empty:
                    # A client that closed is seen here; one that vanished without a word
                    # (a pulled cable), only when a heartbeat's write fails.
                    if _hung_up(self.connection):
                        break
                    if time.monotonic() < beat_at:
                        continue
                    data = b": heartbeat\n\n"
                if data is None:
                    break
                self._answer.start()  # each write has the whole deadline: a stream never ends
                self.wfile.write(data)
                self.wfile.flush()
                beat_at = time.monotonic() + heartbeat
        except OSError:
            pass  # the client went away, or stalled past the deadline: forget it
        finally:
            endpoint.hub.leave(stream)

    def _last_event_id(self, query: dict[str, list[str]]) -> str | None:
        """The id a client gives back: EventSource sends the header by itself when it
        reconnects; the query is for curl."""
        given = self.headers.get("Last-Event-ID") or (query.get("last_event_id") or [""])[-1]
        return given or None

    def _stream_head(self) -> None:
        self._answer.start()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")  # nginx: pass each event on at once
        self.send_header("Connection", "close")
        self.end_headers()

    def _refuse(self, refused: _Refused) -> None:
        self._json(refused.status, {"error": str(refused)}, refused.headers)

    def _json(self, status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, self._encode(body), "application/json", headers)

    def _built(self, read: Callable[[], Any]) -> bytes:
        """The encoded answer of ``read``'s journal rows, one answer built at a time (their
        objects are many times their text); 503 when the journal cannot be read."""
        with self.endpoint.building:
            try:
                answer = read()
            except JournalError as exc:
                raise _Refused(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None
            # Only the bytes outlive the build: the objects and the text go before the write.
            return self._encode(answer)

    def _encode(self, body: Any) -> bytes:
        return self.endpoint.mask(json.dumps(body, separators=(",", ":"))).encode()

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        with contextlib.suppress(OSError):
            self._answer.start()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)


def _hung_up(connection: socket.socket) -> bool:
    """True when the client closed (or reset) the connection; never waits.

    A stream's client sends nothing after its request, so anything it does
    send is read and dropped: only the end of its side counts.
    """
    timeout = connection.gettimeout()
    connection.settimeout(0.0)
    try:
        return not connection.recv(4096)
    except BlockingIOError:
        return False  # nothing to read: still there
    except OSError:
        return True  # reset
    finally:
        connection.settimeout(timeout)


def open_endpoint(composition: Composition) -> Endpoint:
    """The endpoint the composition's manifest asks for (``manifest.http`` must be set)."""
    manifest = composition.manifest
    spec = manifest.http
    assert spec is not None
    metrics = TreeMetrics(manifest.root, composition.breakers, composition.masker.mask)
    journal = journal_path(manifest.state_dir) if composition.journal is not None else None
    return Endpoint(
        spec,
        metrics,
        mask=composition.masker.mask,
        state_dir=manifest.state_dir,
        journal=journal,
        # A daemon's endpoint is told its own (``Daemon``): the one composing it is a run.
        process=Process("run", manifest.path, manifest.state_dir),
    )
