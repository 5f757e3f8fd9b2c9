"""Cost of an http-job attempt vs a plain ``requests.Session().get`` loop.

Both sides send ``--requests`` GETs per round to the same local keep-alive
server in this process, each over its own reused session: ours calls
``HttpWork.run`` with a fresh ``Attempt`` per request (what the job actor
does per attempt: session reuse, in-flight tracking for ``cancel``, status
check, body drained); the baseline calls ``session.get(url)`` and reads
``.content``. Rounds are interleaved; the figure is the median wall-clock
µs/request (process CPU µs/request beside it: both sides share the server's
cost, and CPU time is steadier on a busy machine).
A third, informational row wraps each attempt in ``run_with_retry``
(attempts=3, never needed), which the job actor adds around ``run``.

    python bench/http_job.py [--runtime threads|gevent] [--requests 2000] [--rounds 7]
"""

from __future__ import annotations

import sys

from _common import install, runtime_from_argv

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import contextlib  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import requests  # noqa: E402
from _common import add_runtime_arg, machine, median, silence_logs, verdict  # noqa: E402

from actors import Attempt, RetrySpec, run_with_retry  # noqa: E402
from actors._http import HttpWork  # noqa: E402

TARGET = 1.15  # an http-job attempt costs at most 1.15x a bare session.get
BASE, MINE, RETRY = "requests.Session.get", "http job (HttpWork.run)", "  + run_with_retry"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Server:
    """A minimal keep-alive HTTP/1.1 server: answers every GET with 200 "ok".

    Far cheaper per request than ``http.server``, so the client side's cost
    is what the figures show. One thread (greenlet under gevent) per connection.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/bench"
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, name="bench-http-accept")
        self.acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="bench-http-conn")
            self.threads.append(thread)
            thread.start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:  # GETs carry no body
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(RESPONSE)

    def close(self) -> None:
        for sock in (self.sock, *self.conns):
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.acceptor.join(10)
        for thread in self.threads:
            thread.join(10)


def timed(body, n: int) -> tuple[float, float]:
    """Run ``body(n)``; return wall-clock and process CPU µs per request."""
    wall, cpu = time.perf_counter(), time.process_time()
    body(n)
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def bare(session: requests.Session, url: str, n: int) -> None:
    get = session.get
    for _ in range(n):
        response = get(url)
        response.content  # noqa: B018 - read the body, as the job does
        if response.status_code != 200:
            raise AssertionError(response.status_code)


def job(work: HttpWork, n: int) -> None:
    run = work.run
    for i in range(n):
        if run(Attempt("bench", i + 1, 0.0)) != 200:
            raise AssertionError("status")


def job_with_retry(work: HttpWork, n: int) -> None:
    spec = RetrySpec(attempts=3)
    for i in range(n):
        attempt = Attempt("bench", i + 1, 0.0)
        code = run_with_retry(
            spec, work, lambda a=attempt: work.run(a), attempt.cancelled, on_retry=lambda *_: None
        )
        if code != 200:
            raise AssertionError("status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round and side")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per side (default 7)")
    args = parser.parse_args()
    silence_logs()

    server = Server()
    session = requests.Session()
    work = HttpWork(url=server.url)
    sides = {
        BASE: lambda n: bare(session, server.url, n),
        MINE: lambda n: job(work, n),
        RETRY: lambda n: job_with_retry(work, n),
    }
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for body in sides.values():
            body(max(50, args.requests // 10))  # warm-up: connections, caches
        for _ in range(args.rounds):
            # Interleaved so that drift (CPU frequency, other load) hits every side alike.
            for name, body in sides.items():
                w, c = timed(body, args.requests)
                wall[name].append(w)
                cpu[name].append(c)
    finally:
        session.close()
        work.close()
        server.close()

    ratio = median(wall[MINE]) / median(wall[BASE])
    print(f"http_job, runtime={RUNTIME}, {args.requests} GETs x {args.rounds} rounds per side")
    print(f"  ({machine()})")
    for name in sides:
        rounds = " ".join(f"{v:.0f}" for v in wall[name])
        print(
            f"  {name:<24} median {median(wall[name]):7.1f} µs/request "
            f"(cpu {median(cpu[name]):6.1f})   rounds: {rounds}"
        )
    print(f"  ratio http job/requests = {ratio:.3f}x ({verdict(ratio, TARGET)})")
    cpu_ratio = median(cpu[MINE]) / median(cpu[BASE])
    retry_ratio = median(wall[RETRY]) / median(wall[BASE])
    print(
        f"  (cpu-time ratio {cpu_ratio:.3f}x; "
        f"with run_with_retry {retry_ratio:.3f}x, informational)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
