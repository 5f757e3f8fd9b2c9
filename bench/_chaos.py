"""Chaos for the soak: python job functions that fail at random, and a local HTTP fault server.

The job functions are named in ``bench/chaos.yaml`` as ``"_chaos:NAME"`` (the
manifest's directory is on ``sys.path`` while it runs). Each child draws from
its own ``random.Random`` seeded with ``"SEED:PATH"``, so a run's sequence of
lifetimes and faults per child follows from ``--seed``; the interleaving of
threads does not.

The fault server runs in its own process so that its sockets and threads do
not count in the soak's fd and thread figures::

    python bench/_chaos.py serve --seed 1      # prints "port N", serves until SIGTERM

``GET /chaos?ok=P&p500=P&reset=P&stall=P&hold=SECONDS`` answers 200 with
probability ``ok``, 500 with ``p500``, resets the connection (RST, no
answer) with ``reset``, and otherwise stalls ``hold`` seconds before
answering (the client has timed out by then). Missing probabilities share
what is left equally.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

_rngs: dict[str, random.Random] = {}
_rngs_lock = threading.Lock()


def _attempt() -> Any:
    # Imported here: the fault server runs this file without jobvisor on its path.
    from actors import current_attempt  # noqa: PLC0415

    return current_attempt()


def _rng(seed: object) -> random.Random:
    """The calling child's generator; one per path, so the dict stays as small as the tree."""
    attempt = _attempt()
    path = attempt.path if attempt is not None else "?"
    with _rngs_lock:
        rng = _rngs.get(path)
        if rng is None:
            rng = _rngs[path] = random.Random(f"{seed}:{path}")
        return rng


def _cancelled() -> bool:
    attempt = _attempt()
    return attempt is not None and attempt.cancelled.is_set()


def _live(seconds: float) -> bool:
    """Sleep ``seconds`` in short steps; False as soon as the attempt is cancelled."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if _cancelled():
            return False
        time.sleep(min(left, 0.02))
    return not _cancelled()


class ChaosError(RuntimeError):
    """A crash the chaos asked for (most crashes use built-in types instead)."""


def _crash(rng: random.Random, what: str) -> None:
    # Mostly ordinary exceptions; now and then a sys.exit with a message, which a python job
    # turns into a failed attempt with exit code 1 (as a process would), journaled as any.
    kind = rng.random()
    if kind < 0.4:
        raise ChaosError(f"chaos: {what}")
    if kind < 0.6:
        raise ValueError(f"chaos: {what}")
    if kind < 0.75:
        raise KeyError(what)
    if kind < 0.9:
        raise OSError(5, f"chaos: {what}")
    if kind < 0.97:
        _ = 1 / 0
    raise SystemExit(f"chaos: {what}")


def worker(seed: object = 0, mean: float = 0.3) -> None:
    """A service that lives an exponential random time (mean ``mean`` s), then crashes."""
    rng = _rng(seed)
    life = rng.expovariate(1 / float(mean))
    if _live(life):
        _crash(rng, f"worker crashed after {life:.3f}s")


def steady() -> None:
    """A service that never fails by itself: it runs until its attempt is cancelled."""
    while _live(3600):
        pass


def tick(seed: object = 0, fail: float = 0.1, work: float = 0.005) -> None:
    """One tick of a periodic job: a little work, failing with probability ``fail``."""
    rng = _rng(seed)
    time.sleep(float(work))
    if rng.random() < float(fail):
        _crash(rng, "tick failed")


def maybe_hang(seed: object = 0, hang: float = 0.3, hold: float = 5.0) -> None:
    """Usually quick; with probability ``hang`` it hangs ``hold`` s, ignoring cancellation.

    It is stopped only by the job's timeout, which interrupts it (``Kill``): a
    soak whose thread count climbs would show that the interruption failed.
    """
    rng = _rng(seed)
    if rng.random() >= float(hang):
        time.sleep(0.005)
        return
    deadline = time.monotonic() + float(hold)
    while time.monotonic() < deadline:
        time.sleep(0.005)


def flappy(seed: object = 0, quick: float = 0.7, mean: float = 2.0) -> None:
    """A service that mostly dies at once (probability ``quick``), else lives ``mean`` s or so.

    Its runs of quick deaths exhaust its group's intensity: cooldown, then a
    probe start in probation that either fails (a longer cooldown) or lives
    through the probation (which clears the restart window).
    """
    rng = _rng(seed)
    life = 0.01 if rng.random() < float(quick) else rng.expovariate(1 / float(mean))
    if _live(life):
        _crash(rng, f"flappy crashed after {life:.3f}s")


# -- the fault server (its own process) -------------------------------------------------------


def serve(seed: int, host: str = "127.0.0.1") -> None:
    import contextlib  # noqa: PLC0415 - the server's imports stay out of the jobs' process
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import struct  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415
    from urllib.parse import parse_qs, urlsplit  # noqa: PLC0415

    rng = random.Random(seed)
    lock = threading.Lock()
    counts: dict[str, int] = {}

    def choose(query: dict[str, list[str]]) -> str:
        given = {k: float(query[k][0]) for k in ("ok", "p500", "reset", "stall") if k in query}
        rest = [k for k in ("ok", "p500", "reset", "stall") if k not in given]
        share = max(0.0, 1.0 - sum(given.values())) / len(rest) if rest else 0.0
        weights = {**dict.fromkeys(rest, share), **given}
        with lock:
            pick = rng.choices(list(weights), list(weights.values()))[0]
            counts[pick] = counts.get(pick, 0) + 1
        return pick

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the jobs' sessions expect

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            pick = choose(query)
            if pick == "reset":
                # SO_LINGER 0 makes close() send RST: the client sees a reset, not a clean end.
                self.request.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.request.close()
                self.close_connection = True
                return
            if pick == "stall":
                time.sleep(float(query.get("hold", ["1.0"])[0]))
            self._answer(200 if pick in ("ok", "stall") else 500)

        def _answer(self, status: int) -> None:
            body = b"ok\n" if status == 200 else b"chaos\n"
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                self.close_connection = True  # the client gave up (a stall outlived its timeout)

        def finish(self) -> None:
            with contextlib.suppress(OSError):  # a reset connection has nothing left to flush
                super().finish()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            del format, args

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            # Clients that time out or reset are the point here; anything else is shown.
            if not isinstance(sys.exc_info()[1], OSError):
                super().handle_error(request, client_address)

    server = Server((host, 0), Handler)
    parent = os.getppid()

    def orphaned() -> None:
        # The soak stops us by pid; if it died without doing so, do not outlive it.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    def on_term(signum: int, frame: object) -> None:
        del signum, frame
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    threading.Thread(target=orphaned, daemon=True).start()
    sys.stdout.write(f"port {server.server_address[1]}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    sys.stdout.write(f"served {sum(counts.values())}: {summary}\n")
    sys.stdout.flush()


def _main() -> None:
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="the soak's local HTTP fault server")
    parser.add_argument("mode", choices=("serve",))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    serve(args.seed)


if __name__ == "__main__":
    _main()
