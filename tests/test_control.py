"""The daemon's control socket (``ControlServer``) against clients that misbehave.

A real server on a real Unix socket in ``tmp_path``, real client sockets; the handler
is a plain function, so no tree runs. Each connection has one deadline for its whole
request (not one per read: a client trickling a byte at a time held its thread for
ever), and past ``most`` connections at once a new one is told the daemon is busy
at once, instead of a thread each without bound.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import logbook
import pytest
from faultkit import wait_until

from supervision._client import SOCKET_NAME, request
from supervision._daemon import ControlServer


def _answer(req: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "result": {"op": req["op"]}}


@contextlib.contextmanager
def _server(tmp_path: Path, **limits: Any) -> Iterator[ControlServer]:
    server = ControlServer(tmp_path / SOCKET_NAME, _answer, **limits)
    try:
        yield server
    finally:
        server.close()


def _connected(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def _reply_of(sock: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def test_a_request_is_answered(tmp_path: Path) -> None:
    with _server(tmp_path):
        assert request(tmp_path, {"op": "status"}, timeout=10) == {
            "ok": True,
            "result": {"op": "status"},
        }


def test_an_op_the_daemon_does_not_know_says_the_daemon_may_be_older(tmp_path: Path) -> None:
    """A new client's ``signal`` against a daemon started by an older jobvisor was 'unknown op
    'signal'', exit 1, with no word of why (trial 24)."""
    with _server(tmp_path):
        reply = request(tmp_path, {"op": "frobnicate"}, timeout=10)
    assert (reply["ok"], reply["code"]) == (False, "bad_request")
    assert reply["error"] == (
        "unknown op 'frobnicate': expected status, start, stop, restart, signal, reload or "
        "shutdown "
        "(the daemon may be from an older jobvisor than this command: restart it with this "
        "jobvisor to use the command)"
    )
    with _server(tmp_path):
        reply = request(tmp_path, {"op": "start"}, timeout=10)
    assert reply["error"] == "start needs a job path such as etl/load"  # no such hint


@pytest.mark.parametrize("line", [b"[" * 50_000, b'{"a":' * 12_000])
def test_a_deeply_nested_request_is_a_bad_request_not_a_traceback(
    tmp_path: Path, logs: logbook.TestHandler, line: bytes
) -> None:
    """50,000 ``[`` then a newline: the decoder's recursion ran out, and the catch-all answered
    'internal' with a traceback at ERROR each time (trial 33)."""
    with _server(tmp_path) as server:
        sock = _connected(server.path)
        with sock:
            sock.sendall(line + b"\n")
            reply = _reply_of(sock)
        assert request(tmp_path, {"op": "status"}, timeout=10)["ok"] is True
    assert reply["code"] == "bad_request", reply
    assert reply["error"].startswith("not JSON: too deeply nested"), reply
    assert not [r for r in logs.records if r.level >= logbook.WARNING], logs.formatted_records


def test_a_client_trickling_its_request_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    """One byte every 0.2 s: each read came within the old per-read timeout, so the request
    never ended; the deadline is the whole request's."""
    stop = threading.Event()
    with _server(tmp_path, deadline=1.0) as server:
        sock = _connected(server.path)

        def trickle() -> None:
            with contextlib.suppress(OSError):
                for byte in b'{"v": 1, "op": "status"' + b" " * 1000:
                    if stop.wait(0.2):
                        return
                    sock.send(bytes([byte]))

        writer = threading.Thread(target=trickle, name="test-trickle")
        writer.start()
        try:
            began = time.monotonic()
            reply = _reply_of(sock)
            took = time.monotonic() - began
        finally:
            stop.set()
            writer.join(5)
            sock.close()
    assert reply == {
        "ok": False,
        "code": "bad_request",
        "error": "no complete request within 1s",
    }
    assert took < 4


def test_past_its_connections_a_new_one_takes_the_place_of_the_oldest_still_silent(
    tmp_path: Path,
) -> None:
    """Clients that connect and say nothing: a request sent whole is answered however many."""
    with _server(tmp_path, deadline=30.0, most=2) as server:
        silent = [_connected(server.path)]
        try:
            wait_until(lambda: server.connections == 1, "one connection open")
            silent.append(_connected(server.path))
            wait_until(lambda: server.connections == 2, "two connections open")
            began = time.monotonic()
            assert request(tmp_path, {"op": "status"}, timeout=10)["ok"] is True
            assert time.monotonic() - began < 5
            assert silent[0].recv(100) == b"", "the oldest silent one was cut off"
            silent[1].settimeout(0.2)
            with pytest.raises(TimeoutError):
                silent[1].recv(100)  # the newer one still waits for its request
            assert server.connections == 1
        finally:
            for sock in silent:
                sock.close()
        wait_until(lambda: server.connections == 0, "the silent connections ended")


def test_when_every_place_is_being_answered_a_new_connection_is_told_busy(
    tmp_path: Path,
) -> None:
    release = threading.Event()
    held = threading.Semaphore(0)

    def slow(req: dict[str, Any]) -> dict[str, Any]:
        held.release()
        release.wait(30)
        return _answer(req)

    server = ControlServer(tmp_path / SOCKET_NAME, slow, most=2)
    answers: list[dict[str, Any]] = []
    askers = [
        threading.Thread(
            target=lambda: answers.append(request(tmp_path, {"op": "stop", "job": "j"})),
            name=f"test-asker-{n}",
        )
        for n in range(2)
    ]
    try:
        for asker in askers:
            asker.start()
        for _ in askers:
            assert held.acquire(timeout=10), "both requests are being answered"
        began = time.monotonic()
        reply = request(tmp_path, {"op": "status"}, timeout=10)
        assert time.monotonic() - began < 5
        assert reply == {
            "ok": False,
            "code": "busy",
            "error": "the daemon has 2 control connections open, its most: try again",
        }
    finally:
        release.set()
        for asker in askers:
            asker.join(10)
        server.close()
    assert answers == [{"ok": True, "result": {"op": "stop"}}] * 2


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_a_deadline_must_be_positive(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="deadline"):
        ControlServer(tmp_path / SOCKET_NAME, _answer, deadline=bad)


def test_a_request_sent_whole_is_answered_when_a_newer_connection_takes_its_place(
    tmp_path: Path,
) -> None:
    """A whole request, then at once a silent connection: the new one must not cut the
    request already sent (it was, 172 times in 300, before its thread had read it)."""
    with _server(tmp_path, deadline=30.0, most=1) as server:
        for _ in range(150):
            with _connected(server.path) as asker:
                asker.sendall(json.dumps({"v": 1, "op": "status"}).encode() + b"\n")
                with _connected(server.path) as silent:
                    assert _reply_of(asker) == {"ok": True, "result": {"op": "status"}}
                    # Ended, and seen to end: it was told busy, or read to its end.
                    silent.shutdown(socket.SHUT_WR)
                    while silent.recv(65536):
                        pass
            wait_until(lambda: server.connections == 0, "both ended")


def test_a_burst_of_clients_is_answered_or_told_busy_never_no_daemon(tmp_path: Path) -> None:
    """200 clients at once (a monitor's threads, a parallel fan-out): past the listen backlog
    (16) a connect failed with EAGAIN, which the client took for no daemon (exit 3)."""

    def slow(req: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.05)  # a status of a large tree
        return _answer(req)

    count = 200
    start = threading.Barrier(count)
    replies: list[Any] = []
    lock = threading.Lock()

    def client() -> None:
        start.wait()
        try:
            got: Any = request(tmp_path, {"op": "status"}, timeout=30)
        except Exception as exc:
            got = exc
        with lock:
            replies.append(got)

    with contextlib.closing(ControlServer(tmp_path / SOCKET_NAME, slow)):
        threads = [threading.Thread(target=client) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    errors = [r for r in replies if isinstance(r, Exception)]
    assert not errors, f"{len(errors)} of {count}: {errors[0]!r}"
    codes = {r.get("code", "ok") for r in replies}
    assert codes <= {"ok", "busy"}, codes
    assert len(replies) == count
