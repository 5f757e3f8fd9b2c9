"""A real HTTP server on 127.0.0.1 whose answers each test scripts in advance.

    with HttpKit(Reply(503), Reset(), Reply(200)) as kit:
        ...  # requests to kit.url get 503, then a dropped connection, then 200
        kit.wait_requests(3)

Each request takes the next action from the script (``Reply`` by default when
the script runs out) and is recorded, so tests assert on what arrived and how
often. It is a ``ThreadingHTTPServer`` in a thread; under the gevent runtime
the same code runs on greenlets. Leaving the ``with`` block ends every stall,
wakes every kept-alive connection and joins every thread the server started.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Reply:
    """Answer with ``status``, ``headers`` and ``body``, after ``delay`` seconds if set."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # waits on the kit's closing event, so closing ends it early


@dataclass(frozen=True)
class Reset:
    """Close the connection without answering: a FIN, or with ``hard`` a TCP RST."""

    hard: bool = False


@dataclass(frozen=True)
class Stall:
    """Hold the request until ``release`` is set (or the kit closes), then answer ``then``.

    Without ``then`` the connection is closed unanswered; without ``release``
    the request is held until the kit closes, so clients see their timeout.
    """

    release: threading.Event | None = None
    then: Reply | None = None


# How a trickled body is framed: ``chunked``; ``length``, a Content-Length far beyond what
# is ever sent; ``length+close``, the same with ``Connection: close``; ``close``, an HTTP/1.0
# answer without a length, whose body ends with the connection. The last two are read by
# clients through the answer, not the connection, which lets the connection's socket go.
# ``headers`` never gets as far as a body: the status line, then one header line sent a byte
# at a time that never ends (the head itself trickles).
Framing = Literal["chunked", "length", "length+close", "close", "headers"]


@dataclass(frozen=True)
class Trickle:
    """Answer ``status``, then send the body one byte every ``every`` seconds until the kit
    closes (or the client goes): a body that never ends, framed as ``framing`` says (with
    ``headers``, a head that never ends: the bytes trickled are a header's). With ``upto``,
    it sends that many bytes and then nothing more, until the kit closes."""

    status: int = 200
    every: float = 0.05
    framing: Framing = "chunked"
    upto: int | None = None  # bytes sent before it goes quiet, the connection held open


@dataclass(frozen=True)
class Cut:
    """Answer ``status`` with ``Content-Length: length``, send ``sent`` bytes of the body,
    then close the connection: a body cut short."""

    length: int
    sent: int
    status: int = 200


Action = Reply | Reset | Stall | Trickle | Cut


@dataclass(frozen=True)
class Received:
    """One request as the server saw it; header names are lower-cased."""

    method: str
    client: tuple[str, int]  # the client's address: the same for requests on one connection
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    names: tuple[str, ...] = ()  # every header's name as sent, in order, repeats too


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True
    kit: HttpKit

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Connections we shut down at close raise in their handlers; nothing to report.
        del request, client_address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse their connections
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40ms stall
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.kit._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.kit._closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        del format, args

    def _serve(self) -> None:
        kit = self.server.kit
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        action = kit._record(
            Received(
                method=self.command,
                client=self.client_address,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                names=tuple(self.headers.keys()),
            )
        )
        if isinstance(action, Reset):
            self.close_connection = True
            if action.hard:
                # Linger 0: close() sends RST instead of FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            return
        if isinstance(action, Stall):
            kit._stall(action.release)
            if action.then is None or kit.closing.is_set():
                self.close_connection = True
                return
            action = action.then
        if isinstance(action, Trickle | Cut):
            self._send_partly(action)
            return
        if action.delay:
            kit.closing.wait(action.delay)
        self.send_response(action.status)
        for name, value in action.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(action.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(action.body)

    def _send_partly(self, action: Trickle | Cut) -> None:
        self.close_connection = True
        if isinstance(action, Trickle) and action.framing == "close":
            self.protocol_version = "HTTP/1.0"  # the status line's version, for this answer
        if isinstance(action, Trickle) and action.framing == "headers":
            self.send_response_only(action.status)
            self.flush_headers()  # the status line alone: the head's end never comes
            self.wfile.write(b"X-Trickle: ")
            self._trickle(b"x", action)
            return
        self.send_response(action.status)
        if isinstance(action, Cut):
            self.send_header("Content-Length", str(action.length))
            self.end_headers()
            self.wfile.write(b"x" * action.sent)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        framing = action.framing
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif framing == "close":
            pass  # the status line said HTTP/1.0: no length, the close ends the body
        else:
            self.send_header("Content-Length", str(1 << 30))
            if framing == "length+close":
                self.send_header("Connection", "close")
        self.end_headers()
        self._trickle(b"1\r\nx\r\n" if framing == "chunked" else b"x", action)

    def _trickle(self, byte: bytes, action: Trickle) -> None:
        """Send ``byte`` every ``action.every`` seconds (``action.upto`` times at most) until
        the kit closes or the client goes."""
        kit = self.server.kit
        sent = 0
        try:
            while not kit.closing.is_set() and sent != action.upto:
                self.wfile.write(byte)
                self.wfile.flush()
                sent += 1
                kit._trickled()
                kit.closing.wait(action.every)
        except OSError:
            return  # the client went (it timed out, or was cancelled)
        kit.closing.wait()  # quiet after ``upto`` bytes, the connection held

    # http.server dispatches on do_<METHOD>.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815


class HttpKit:
    """The scripted server; use it as a context manager."""

    def __init__(
        self,
        *actions: Action,
        default: Action | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.default: Action = default or Reply()
        self.closing = threading.Event()
        self.requests: list[Received] = []
        self._script: collections.deque[Action] = collections.deque(actions)
        self._cond = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._bytes_trickled = 0
        self._releases: set[threading.Event] = {self.closing}
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.kit = self
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="httpkit"
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End stalls and delays, stop serving, drop open connections, join every thread."""
        with self._cond:
            releases = list(self._releases)
        for release in releases:
            release.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by its handler
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    # -- scripting and inspection ----------------------------------------------------------------

    def script(self, *actions: Action) -> None:
        """Append actions for the next requests."""
        with self._cond:
            self._script.extend(actions)

    @property
    def count(self) -> int:
        with self._cond:
            return len(self.requests)

    def wait_requests(self, n: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least ``n`` requests arrived; return them all."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.requests) >= n, timeout)
            assert ok, f"{len(self.requests)} requests arrived, expected {n}"
            return list(self.requests)

    def wait_trickled(self, n: int, timeout: float = 10.0) -> None:
        """Block until ``Trickle`` answers have sent at least ``n`` bytes (of body, or of a head)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._bytes_trickled >= n, timeout)
            assert ok, f"{self._bytes_trickled} bytes trickled, expected {n}"

    def wait_connections(self, n: int, timeout: float = 10.0) -> None:
        """Block until exactly ``n`` client connections are open (a closed one counts once
        its handler has seen the end of it)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._conns) == n, timeout)
            assert ok, f"{len(self._conns)} connections open, expected {n}"

    # -- handler side ----------------------------------------------------------------------------

    def _record(self, received: Received) -> Action:
        with self._cond:
            self.requests.append(received)
            action = self._script.popleft() if self._script else self.default
            self._cond.notify_all()
        return action

    def _stall(self, release: threading.Event | None) -> None:
        event = self.closing if release is None else release
        with self._cond:
            self._releases.add(event)
            if self.closing.is_set():
                event.set()
        event.wait()

    def _trickled(self) -> None:
        with self._cond:
            self._bytes_trickled += 1
            self._cond.notify_all()

    def _opened(self, conn: socket.socket) -> None:
        with self._cond:
            self._conns.add(conn)
            self._cond.notify_all()

    def _closed(self, conn: socket.socket) -> None:
        with self._cond:
            self._conns.discard(conn)
            self._cond.notify_all()


def self_signed(directory: Path) -> tuple[Path, ssl.SSLContext] | None:
    """A certificate for 127.0.0.1 made by the openssl CLI, and a server context; None without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
