"""The HTTP endpoint of a real `jobvisor daemon` and `jobvisor run` (SPEC §9).

Real processes started with ``--http 127.0.0.1:0``; the bound address comes
from ``STATE_DIR/http.json``. Requests are real HTTP, metrics are read with
prometheus_client's own parser and events from a real Server-Sent Events
stream. The processes run under the suite's runtime (``--runtime``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import secrets
import select
import socket
import sqlite3
import stat
import struct
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import requests
from conftest import RUNTIME, Events
from faultkit import (
    Http,
    Jobvisor,
    Running,
    http_daemon,
    http_of,
    run_jobvisor,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families

from supervision import (
    Backoff,
    CooldownPolicy,
    Intensity,
    JobSpec,
    OnExhausted,
    PythonWork,
    RestartPolicy,
    Schedule,
    StateChanged,
    Strategy,
)
from supervision._app import compose, run_batch
from supervision._history import journal_path
from supervision._httpapi import (
    ADDRESS_FILE,
    BACKLOG,
    MAX_BIG_ANSWERS,
    MAX_CONNECTIONS,
    MAX_STREAMS,
    PAGE_POLICY,
    Endpoint,
)
from supervision._journal import Journal
from supervision._listen import HttpSpec
from supervision._manifest import load_manifest
from supervision._metrics import TreeMetrics
from supervision._spec import BreakerSpec, SupervisorSpec, python_job
from supervision._tree import build_breakers

TOKEN = secrets.token_urlsafe(24)  # a fresh one each run: never a secret written down

# `crashy` exits 3 each time the test drops a `crash` file beside the manifest.
MANIFEST = """
version: 1
supervisor: {backoff: {initial: 1ms, max: 5ms}, intensity: {max_restarts: 1000, within: 60s}}
HTTP
jobs:
  - name: svc
    service: true
    command: [sh, -c, "while true; do sleep 0.05; done"]
  - group: etl
    jobs:
      - name: crashy
        restart: permanent
        command: [sh, -c, "while [ ! -e crash ]; do sleep 0.01; done; rm -f crash; exit 3"]
"""
WITH_TOKEN = "http: {heartbeat: 200ms, token: {secret: {env: JV_HTTP_TOKEN}}}"
NO_TOKEN = "http: {heartbeat: 200ms}"


def manifest(http: str) -> str:
    return MANIFEST.replace("HTTP", http)


# -- helpers ---------------------------------------------------------------------------------------


class Served:
    """A daemon (or run) with its endpoint's base URL."""

    def __init__(self, http: Http) -> None:
        self.address_file = http.address_file
        self.url = http.url
        parts = urlsplit(self.url)
        self.host, self.port = str(parts.hostname), int(parts.port or 0)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.post(self.url + path, headers=headers, timeout=60)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = self.get("/metrics")
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self.metrics().get(key, 0.0)


class Stream:
    """A real ``/api/events`` client on a plain socket; events are collected on a thread."""

    def __init__(
        self,
        served: Served,
        token: str | None = None,
        *,
        last_event_id: str | None = None,
        query: str = "",
    ) -> None:
        self.events: list[dict[str, Any]] = []
        self.ids: list[str | None] = []  # each event's id, as the frame before its data gave it
        self.last_id: str | None = None  # the last ``id:`` seen, with or without an event
        self.comments: list[str] = []
        self._cond = threading.Condition()
        self._sock = socket.create_connection((served.host, served.port), timeout=30)
        bearer = f"Authorization: Bearer {token}\r\n" if token is not None else ""
        if last_event_id is not None:
            bearer += f"Last-Event-ID: {last_event_id}\r\n"
        request = (
            f"GET /api/events{query} HTTP/1.1\r\nHost: {served.host}:{served.port}\r\n{bearer}\r\n"
        )
        self._sock.sendall(request.encode())
        self._file = self._sock.makefile("rb")
        self.status_line = self._file.readline().decode()
        self.headers: dict[str, str] = {}
        while (line := self._file.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            self.headers[name.lower()] = value.strip()
        self._thread = threading.Thread(target=self._read, name="test-sse", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        frame_id: str | None = None
        with contextlib.suppress(OSError, ValueError):
            for raw in self._file:
                line = raw.decode().rstrip("\n")
                with self._cond:
                    if line.startswith("id: "):
                        frame_id = self.last_id = line[4:]
                    elif line == "":
                        frame_id = None
                    elif line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
                        self.ids.append(frame_id)
                    elif line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    self._cond.notify_all()
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    ended = False

    def wait_for(self, predicate: Callable[[Stream], bool], timeout: float = 30.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self), timeout)
        assert ok, f"not seen in time; last events: {self.events[-10:]}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(10)


def exchange(host: str, port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw request (what ``requests`` would not send) and its whole answer."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers, body


def has_event(stream: Stream, kind: str, path: str, **fields: Any) -> bool:
    return any(
        e["type"] == kind and e["path"] == path and all(e.get(k) == v for k, v in fields.items())
        for e in stream.events
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Running, Served]]:
    with http_daemon(tmp_path, manifest(WITH_TOKEN), "--runtime", RUNTIME, token=TOKEN) as running:
        yield running, Served(running.http)
    assert not (running.state / ADDRESS_FILE).exists(), "the address file outlived the daemon"


# -- the daemon ------------------------------------------------------------------------------------


def test_status_history_and_a_crash_seen_as_events_and_metrics(
    daemon: tuple[Running, Served],
) -> None:
    running, served = daemon
    assert stat.S_IMODE(served.address_file.stat().st_mode) == 0o600
    status = served.get("/api/status")
    assert status.status_code == 200
    assert status.headers["Content-Type"] == "application/json"
    doc = status.json()
    assert [c["path"] for c in doc["children"]] == ["svc", "etl"]
    assert doc["children"][1]["children"][0]["path"] == "etl/crashy"
    assert TOKEN not in status.text

    wait_until(lambda: served.metric("jobvisor_job_state", path="svc", kind="command", state="running") == 1, "svc running in the metrics", timeout=30)  # fmt: skip
    before = served.metric("jobvisor_job_starts_total", path="etl/crashy", kind="command")
    stream = Stream(served)
    try:
        assert stream.status_line.split()[1] == "200"
        assert stream.headers["content-type"].startswith("text/event-stream")
        stream.wait_for(lambda s: "heartbeat" in s.comments)  # 200ms in the manifest
        (running.dir / "crash").touch()
        stream.wait_for(lambda s: has_event(s, "attempt_finished", "etl/crashy", outcome="failed", code=3))  # fmt: skip
        stream.wait_for(lambda s: has_event(s, "child_exited", "etl/crashy", outcome="failed"))
        stream.wait_for(lambda s: has_event(s, "restart_scheduled", "etl/crashy"))
        stream.wait_for(lambda s: has_event(s, "state_changed", "etl/crashy", old="backoff", new="starting"))  # fmt: skip
        stream.wait_for(lambda s: has_event(s, "state_changed", "etl/crashy", old="starting", new="running"))  # fmt: skip
        assert served.metric("jobvisor_http_event_clients") == 1
    finally:
        stream.close()
    # A client that hung up is forgotten (seen within a second, or at a heartbeat's write).
    wait_until(lambda: served.metric("jobvisor_http_event_clients") == 0, "forgotten", timeout=30)

    labels = {"path": "etl/crashy", "kind": "command"}
    assert served.metric("jobvisor_job_starts_total", **labels) == before + 1
    assert served.metric("jobvisor_job_restarts_total", **labels) == 1
    assert served.metric("jobvisor_job_failures_total", **labels, outcome="failed") == 1
    assert served.metric("jobvisor_attempt_duration_seconds_count", **labels, outcome="failed") == 1
    assert served.metric("jobvisor_job_state", **labels, state="running") == 1
    assert served.metric("jobvisor_job_state", **labels, state="backoff") == 0
    assert served.metric("jobvisor_gave_up_total", **labels) == 0
    metrics = served.metrics()
    assert any(name == "process_cpu_seconds_total" for name, _ in metrics)
    assert all(TOKEN not in str(key) for key in metrics)
    # The status document agrees with the metrics.
    crashy = served.get("/api/status").json()["children"][1]["children"][0]
    assert (crashy["restarts"], crashy["failures"]) == (1, 1)

    def crash_in_history() -> bool:
        rows = served.get("/api/history?job=etl&limit=5").json()
        return any(r["type"] == "attempt" and r.get("code") == 3 for r in rows)

    wait_until(crash_in_history, "the crash in /api/history", timeout=30)
    rows = served.get("/api/history?job=etl/crashy&limit=1").json()
    assert len(rows) == 1
    assert all(r["path"] == "etl/crashy" for r in rows)
    assert served.get("/api/history?limit=0").status_code == 400
    assert served.get("/api/history?limit=x").status_code == 400


PROCESS = jsonschema.Draft202012Validator(
    {
        "type": "object",
        "required": [
            "mode",
            "pid",
            "version",
            "started_at",
            "uptime",
            "manifest",
            "state_dir",
            "marks_replicas",
        ],
        "additionalProperties": False,
        "properties": {
            "mode": {"enum": ["daemon", "run"]},
            "pid": {"type": "integer", "minimum": 1},
            "version": {"type": "string", "minLength": 1},
            "started_at": {"type": "number"},
            "uptime": {"type": "number", "minimum": 0},
            "manifest": {"type": ["string", "null"]},
            "state_dir": {"type": "string"},
            "marks_replicas": {"const": True},
        },
    }
)


def test_the_status_says_which_daemon_answers_it(daemon: tuple[Running, Served]) -> None:
    """``status --json`` and ``/api/status`` name the process: a daemon, its pid, version,
    start (epoch seconds, as every time in the document), uptime, manifest and state dir."""
    running, served = daemon
    before = time.time()
    out = running.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    by_cli = json.loads(out.stdout)["process"]
    by_http = served.get("/api/status").json()["process"]
    for process in (by_cli, by_http):
        PROCESS.validate(process)
        assert process["mode"] == "daemon"
        assert process["pid"] == running.proc.pid
        assert process["version"] == importlib.metadata.version("jobvisor")
        assert process["manifest"] == str(running.dir / "jobs.yaml")
        assert process["state_dir"] == str(running.state)
        assert process["started_at"] < before
        assert 0 < process["uptime"] < 120
    assert by_cli["started_at"] == by_http["started_at"]
    assert by_http["uptime"] >= by_cli["uptime"]
    table = running.cli("status")  # the table is as it was: the process is --json's
    assert table.stdout.startswith("PATH "), table.stdout


def test_history_per_job_gives_every_jobs_newest_attempts_in_one_answer(
    daemon: tuple[Running, Served],
) -> None:
    """The page's timelines in one read (not one per job), in the rows ``history --json`` gives."""
    running, served = daemon

    def crashes() -> int:
        rows = served.get("/api/history?job=etl/crashy&limit=100").json()
        return sum(r["type"] == "attempt" and r.get("code") == 3 for r in rows)

    for n in (1, 2):
        (running.dir / "crash").touch()
        wait_until(lambda n=n: crashes() == n, f"crash {n} in the journal", timeout=30)
    answer = served.get("/api/history?per_job=1")
    assert answer.status_code == 200
    recent = answer.json()
    (newest,) = recent["etl/crashy"]
    rows = served.get("/api/history?job=etl/crashy&limit=10").json()
    assert newest == [r for r in rows if r["type"] == "attempt"][-1]
    assert (newest["type"], newest["attempt"], newest["code"]) == ("attempt", 2, 3)
    assert set(served.get("/api/history?per_job=5&job=etl").json()) == {"etl/crashy"}
    assert [
        r["attempt"] for r in served.get("/api/history?per_job=5&job=etl").json()["etl/crashy"]
    ] == [1, 2]
    for bad in ("per_job=0", "per_job=x", "per_job=1001", "per_job=2&limit=3"):
        refused = served.get(f"/api/history?{bad}")
        assert refused.status_code == 400, bad
        assert "per_job" in refused.json()["error"]


def test_numbers_past_pythons_digits_limit_and_two_authorizations_are_bad_requests(
    daemon: tuple[Running, Served],
) -> None:
    """A 5,000-digit limit or per_job failed the request with a traceback at ERROR in the log;
    a signal's number gave Python's own message; a second Authorization header was ignored
    (two Host headers are refused) (trial h252)."""
    running, served = daemon
    many = "9" * 5000
    for query in (f"limit={many}", f"per_job={many}", "limit=\u00b2", "per_job=\u0663"):
        refused = served.get(f"/api/history?{query}")
        assert refused.status_code == 400, query
        error = refused.json()["error"]
        assert error.startswith(("limit: expected 1 to", "per_job: expected 1 to")), error
        assert len(error) < 200, error
    refused = served.post(f"/api/jobs/svc/signal?signal={many}", token=TOKEN)
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("unknown signal '9999")
    assert "sys.set_int_max_str_digits" not in refused.text
    port = served.port
    for first, second in ((TOKEN, "wrong"), ("wrong", TOKEN), (TOKEN, TOKEN)):
        request = (
            f"POST /api/jobs/svc/restart HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {first}\r\nAuthorization: Bearer {second}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        status, _, body = exchange(served.host, port, request)
        assert status == 400, body
        assert b"more than one Authorization header" in body
    assert running.nodes()["svc"]["starts"] == 1  # none of those acted
    assert served.get("/api/status").status_code == 200


def test_the_event_stream_tells_of_a_reload(daemon: tuple[Running, Served]) -> None:
    """A reload is one typed event, what it added, removed, replaced and updated; a child it
    makes says its first state, `stopped -> pending`, as it did not (a replaced job's events
    went `stopped`, then `pending -> starting`), and the stream said nothing of the reload."""
    running, served = daemon
    stream = Stream(served)
    try:
        stream.wait_for(lambda s: "heartbeat" in s.comments)
        edited = (
            textwrap.dedent(manifest(WITH_TOKEN))
            .replace("while true; do sleep 0.05; done", "while true; do sleep 0.04; done")
            .replace("  - group: etl\n", "  - group: etl\n    strategy: one_for_all\n")
        )
        edited += "  - name: extra\n    service: true\n    command: [sleep, '100']\n"
        (running.dir / "jobs.yaml").write_text(edited)
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        stream.wait_for(lambda s: has_event(s, "reloaded", ""))
        stream.wait_for(lambda s: has_event(s, "state_changed", "extra", new="running"))
        stream.wait_for(lambda s: has_event(s, "state_changed", "svc", new="running"))
    finally:
        stream.close()
    (reloaded,) = [e for e in stream.events if e["type"] == "reloaded"]
    assert {k: v for k, v in reloaded.items() if k != "at"} == {
        "type": "reloaded",
        "path": "",
        "added": ["extra"],
        "removed": [],
        "replaced": ["svc"],
        "updated": ["etl"],
        "lines": out.stdout.splitlines(),
        "error": None,
    }
    assert out.stdout.splitlines() == [
        "replace svc: command",
        "update etl: strategy: one_for_all",
        "add extra",
    ]

    def states(path: str) -> list[tuple[str, str]]:
        return [(e["old"], e["new"]) for e in stream.events if e["type"] == "state_changed" and e["path"] == path]  # fmt: skip

    assert states("svc") == [
        ("running", "stopping"),
        ("stopping", "stopped"),
        ("stopped", "pending"),
        ("pending", "starting"),
        ("starting", "running"),
    ]
    assert states("extra") == [("stopped", "pending"), ("pending", "starting"), ("starting", "running")]  # fmt: skip


def test_actions_need_the_token_and_reads_do_not(daemon: tuple[Running, Served]) -> None:
    running, served = daemon
    assert served.get("/api/status").status_code == 200  # loopback: reads are free
    assert served.get("/metrics").status_code == 200
    config = served.get("/api/config").json()
    assert config["actions"] is True
    assert config["reads_need_token"] is False
    assert TOKEN not in json.dumps(config)

    missing = served.post("/api/jobs/svc/restart")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert served.post("/api/jobs/svc/restart", token="wrong").status_code == 403
    assert served.post("/api/jobs/svc/restart", token=TOKEN[:-1]).status_code == 403
    basic = requests.post(
        served.url + "/api/jobs/svc/restart",
        headers={"Authorization": f"Basic {TOKEN}"},
        timeout=30,
    )
    # Another scheme gives no bearer credentials: 401 too, which says how to give them.
    assert basic.status_code == 401
    assert basic.headers["WWW-Authenticate"].startswith("Bearer")
    # A scheme without a token gives no credentials: 401, which says how to give them.
    empty = requests.post(
        served.url + "/api/jobs/svc/restart", headers={"Authorization": "Bearer "}, timeout=30
    )
    assert empty.status_code == 401
    assert running.nodes()["svc"]["starts"] == 1  # none of those acted

    stopped = served.post("/api/jobs/svc/stop", token=TOKEN)
    assert stopped.status_code == 200, stopped.text
    assert running.nodes()["svc"]["state"] == "stopped"
    assert served.post("/api/jobs/svc/start", token=TOKEN).status_code == 200
    wait_until(lambda: running.nodes()["svc"]["state"] == "running", "svc running", timeout=30)
    # A path with a slash, and a restart.
    assert served.post("/api/jobs/etl/crashy/restart", token=TOKEN).status_code == 200
    assert running.nodes()["etl"]  # the daemon still answers its own socket
    crashy = served.get("/api/status").json()["children"][1]["children"][0]
    assert crashy["starts"] == 2
    # Refused as /api/history refuses it (it was done, as etl/crashy, and said etl//crashy).
    doubled = served.post("/api/jobs/etl//crashy/restart", token=TOKEN)
    assert doubled.status_code == 400, doubled.text
    assert "expected a job path like etl/load, got 'etl//crashy'" in doubled.json()["error"]
    crashy = served.get("/api/status").json()["children"][1]["children"][0]
    assert crashy["starts"] == 2, "nothing was done"

    assert served.post("/api/jobs/nope/restart", token=TOKEN).status_code == 404
    assert served.post("/api/jobs/etl/nope/stop", token=TOKEN).status_code == 404
    assert served.post("/api/jobs/svc/explode", token=TOKEN).status_code == 404
    assert served.post("/api/jobs//restart", token=TOKEN).status_code == 404
    assert served.get("/nope").status_code == 404
    wrong = served.get("/api/jobs/svc/restart")  # actions are POSTs: the method is wrong
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "POST"), wrong.text
    assert "POST" in wrong.json()["error"]
    for read in ("/api/status", "/metrics", "/api/events"):
        wrong = served.post(read, token=TOKEN)
        assert (wrong.status_code, wrong.headers["Allow"]) == (405, "GET, HEAD"), (read, wrong.text)
    assert served.get("/api/jobs/svc/explode").status_code == 404  # no such action either way
    # A name that is not this machine's loopback (DNS rebinding) is refused on loopback.
    rebound = served.get("/api/status", headers={"Host": f"evil.example:{served.port}"})
    assert rebound.status_code == 403


def test_other_methods_are_405_with_allow_and_bad_requests_are_json(
    daemon: tuple[Running, Served],
) -> None:
    running, served = daemon
    for method, path, allow in (
        ("DELETE", "/api/status", "GET, HEAD"),
        ("OPTIONS", "/api/jobs/svc/restart", "POST"),
        ("PUT", "/metrics", "GET, HEAD"),
        ("PATCH", "/api/jobs/etl/crashy/stop", "POST"),
        ("HEAD", "/api/jobs/svc/restart", "POST"),
    ):
        answer = requests.request(
            method,
            served.url + path,
            data=b"{}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert (answer.status_code, answer.headers.get("Allow")) == (405, allow), (method, path)
        if method != "HEAD":
            assert answer.headers["Content-Type"] == "application/json"
            assert method in answer.json()["error"]
    status, headers, body = exchange(
        served.host, served.port, b"FROB /api/history HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert "FROB" in json.loads(body)["error"]
    gone = requests.delete(served.url + "/nope", timeout=30)
    assert gone.status_code == 404
    assert "/nope" in gone.json()["error"]
    # What the base server refuses itself is answered in the same shape, not as HTML.
    status, headers, body = exchange(served.host, served.port, b"GARBAGE\r\n\r\n")
    assert (status, headers["content-type"]) == (400, "application/json")
    assert json.loads(body)["error"]
    assert running.nodes()["svc"]["starts"] == 1  # nothing acted


def test_head_answers_as_get_does_without_a_body(daemon: tuple[Running, Served]) -> None:
    """RFC 9110: HEAD is GET without the body; `curl -I` and health checks that use it got 405."""
    running, served = daemon
    for path, kind in (
        ("/", "text/html"),
        ("/metrics", "text/plain"),
        ("/api/status", "application/json"),
        ("/api/history?limit=5", "application/json"),
    ):
        got = requests.get(served.url + path, timeout=30)
        head = requests.head(served.url + path, timeout=30)
        assert head.status_code == 200, (path, head.text)
        assert head.headers["Content-Type"].startswith(kind), path
        assert int(head.headers["Content-Length"]) > 0, path
        assert head.content == b"", path
        assert got.headers["Content-Type"] == head.headers["Content-Type"], path
    # The event stream: its head, and the connection ends (no stream is held for it).
    status, headers, body = exchange(
        served.host, served.port, b"HEAD /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert (status, headers["content-type"]) == (200, "text/event-stream; charset=utf-8")
    assert body == b""
    assert requests.head(served.url + "/nope", timeout=30).status_code == 404
    assert running.nodes()["svc"]["starts"] == 1  # nothing acted


def test_a_chunked_body_is_read_with_the_cap_a_sized_one_has(
    daemon: tuple[Running, Served],
) -> None:
    running, served = daemon

    def post(framing: bytes, body: bytes) -> tuple[int, dict[str, Any]]:
        request = (
            b"POST /api/jobs/svc/restart HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + framing
            + b"\r\n"
            + body
        )
        status, _, answer = exchange(served.host, served.port, request)
        return status, json.loads(answer)

    # A chunk past the cap is refused before its data is read, as a Content-Length past it is.
    status, answer = post(b"Transfer-Encoding: chunked\r\n", b"10001\r\n")
    assert (status, answer["error"]) == (413, "actions take no body")
    status, answer = post(b"Content-Length: 65537\r\n", b"")
    assert (status, answer["error"]) == (413, "actions take no body")
    # Too long to read as a number is too large all the same, not "not a number" (h245).
    status, answer = post(b"Content-Length: 99999999999999999999\r\n", b"")
    assert (status, answer["error"]) == (413, "actions take no body")
    status, answer = post(b"Content-Length: 1\r\nContent-Length: 2\r\n", b"x")
    assert (status, answer["error"]) == (400, "Content-Length headers that differ")
    # Chunks that add up past it: refused at the size line that passes it.
    half = b"8000\r\n" + b"x" * 0x8000 + b"\r\n"
    status, answer = post(b"Transfer-Encoding: chunked\r\n", half + b"8000\r\n")
    assert (status, answer["error"]) == (413, "actions take no body")
    for framing, body in (
        (b"Transfer-Encoding: chunked\r\n", b"zz\r\nab\r\n0\r\n\r\n"),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
        (b"Transfer-Encoding: gzip\r\n", b"abc"),
    ):
        status, answer = post(framing, body)
        assert status == 400, (framing, body, answer)
    assert running.nodes()["svc"]["starts"] == 1  # none of those acted
    # A small body, whatever its framing, is read and dropped, and the action is done.
    status, answer = post(b"Transfer-Encoding: chunked\r\n", b"2;x=y\r\n{}\r\n0\r\nX-T: 1\r\n\r\n")
    assert status == 200, answer
    wait_until(lambda: running.nodes()["svc"]["starts"] == 2, "svc restarted", timeout=30)
    # No body is parsed: one nested 50,000 deep (the control socket's 'internal' of trial 33)
    # is dropped unread like any other, and the action done.
    status, answer = post(b"Content-Length: 50000\r\n", b"[" * 50_000)
    assert status == 200, answer
    wait_until(lambda: running.nodes()["svc"]["starts"] == 3, "svc restarted again", timeout=30)


def test_a_job_path_with_a_control_character_is_refused(daemon: tuple[Running, Served]) -> None:
    _, served = daemon
    for job in (
        "svc%00x",
        "svc%1b%5b2J",
        "et%0al",
        "svc%7f",
        "svc%c2%9b",
        "etl%20x",
        "etl//crashy",
    ):
        for query in (f"job={job}", f"job={job}&per_job=2"):
            refused = served.get(f"/api/history?{query}")
            assert refused.status_code == 400, (query, refused.text)
            assert "expected a job path like etl/load" in refused.json()["error"]
    for job in ("etl", "etl/crashy", "/etl/", "svc"):
        assert served.get(f"/api/history?job={job}").status_code == 200, job


def test_trickling_clients_leave_room_for_every_other_request(
    daemon: tuple[Running, Served],
) -> None:
    """More connections than the endpoint takes, each sending its request a line at a time
    (the per-read deadline alone never cut them): a whole request still gets its answer."""
    _, served = daemon
    trickling: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS + 6):
            sock = socket.create_connection((served.host, served.port), timeout=30)
            sock.sendall(b"GET /api/status HTTP/1.1\r\nX-Slow: 1\r\n")
            trickling.append(sock)
        for path in ("/api/status", "/metrics", "/api/config"):
            answer = requests.get(served.url + path, timeout=5)
            assert answer.status_code == 200, path
    finally:
        for sock in trickling:
            sock.close()


def test_event_streams_have_their_own_cap(daemon: tuple[Running, Served]) -> None:
    """Streams past the cap are refused (503 with Retry-After): however many a client opens,
    the slots other requests need stay free."""
    _, served = daemon
    streams: list[Stream] = []
    try:
        for _ in range(MAX_STREAMS):
            streams.append(Stream(served))
            assert streams[-1].status_line.split()[1] == "200"
        request = f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode()
        for _ in range(MAX_CONNECTIONS):
            status, headers, body = exchange(served.host, served.port, request)
            assert (status, headers["content-type"]) == (503, "application/json")
            assert int(headers["retry-after"]) > 0
            assert f"{MAX_STREAMS} event streams" in json.loads(body)["error"]
        assert served.get("/api/status").status_code == 200
        assert served.metric("jobvisor_http_event_clients") == MAX_STREAMS
        streams.pop().close()
        wait_until(
            lambda: served.metric("jobvisor_http_event_clients") == MAX_STREAMS - 1,
            "one stream gone",
            timeout=30,
        )
        streams.append(Stream(served))  # its place is taken again
        assert streams[-1].status_line.split()[1] == "200"
    finally:
        for stream in streams:
            stream.close()


def number(event_id: str | None) -> int:
    """The count in an event's id (``LIFE-N``)."""
    assert event_id is not None
    life, _, n = event_id.rpartition("-")
    assert life.isdigit(), event_id
    assert n.isdigit(), event_id
    return int(n)


def crashy_runs(times: int) -> Callable[[Stream], bool]:
    def seen(stream: Stream) -> bool:
        runs = [
            e for e in stream.events if e["type"] == "state_changed" and e["path"] == "etl/crashy"
        ]
        return sum(e["new"] == "running" for e in runs) >= times

    return seen


def test_a_stream_that_comes_back_gets_exactly_the_events_it_missed(
    daemon: tuple[Running, Served],
) -> None:
    """Every event has an id; a client back with the last one it saw (``Last-Event-ID``, as
    EventSource resends it, or ``?last_event_id=``) gets the events it missed, in order, then
    the live ones; one that saw every event gets none twice."""
    running, served = daemon
    witness = Stream(served)  # open throughout: every event, to compare with
    streams = [witness]
    try:
        witness.wait_for(lambda s: s.last_id is not None)  # the newest id, sent as it joins
        joined = number(witness.last_id)  # the events of the daemon's start, before it
        first = Stream(served)
        streams.append(first)
        (running.dir / "crash").touch()
        first.wait_for(crashy_runs(1))  # crashy running again after the crash
        first.close()
        seen = first.ids[-1]
        (running.dir / "crash").touch()  # the second crash, which it does not see
        witness.wait_for(crashy_runs(2))
        # The witness joined first (ids on from its first, none skipped); a crash is several.
        ids = [number(i) for i in witness.ids]
        assert ids == list(range(joined + 1, joined + len(ids) + 1))
        missed = [
            (i, e)
            for i, e in zip(witness.ids, witness.events, strict=True)
            if number(i) > number(seen)
        ]
        assert len(missed) >= 4, missed
        assert any(e["type"] == "attempt_finished" for _, e in missed)
        for back in (
            Stream(served, last_event_id=seen),
            Stream(served, query=f"?last_event_id={seen}"),
        ):
            streams.append(back)
            back.wait_for(lambda s: len(s.events) >= len(missed))
            assert list(zip(back.ids, back.events, strict=True))[: len(missed)] == missed
        newest = witness.ids[-1]  # nothing runs but svc and crashy: no event until a crash
        caught_up = Stream(served, last_event_id=newest)
        streams.append(caught_up)
        caught_up.wait_for(lambda s: "heartbeat" in s.comments)
        assert (caught_up.events, caught_up.last_id) == ([], newest)
        (running.dir / "crash").touch()  # then the live events, as anyone's
        caught_up.wait_for(lambda s: has_event(s, "attempt_finished", "etl/crashy", code=3))
        assert number(caught_up.ids[0]) == number(newest) + 1
    finally:
        for stream in streams:
            stream.close()


def test_a_status_says_the_newest_event_it_reflects(daemon: tuple[Running, Served]) -> None:
    """``Jobvisor-Last-Event-Id``: every event up to it is in the status document, so a page
    that applied a later one keeps what that one said (and drops an earlier one's replay)."""
    running, served = daemon
    witness = Stream(served)
    try:
        witness.wait_for(lambda s: s.last_id is not None)
        before = served.get("/api/status").headers["Jobvisor-Last-Event-Id"]
        assert before == witness.last_id  # nothing happened since it joined
        (running.dir / "crash").touch()
        witness.wait_for(crashy_runs(1))
        witness.wait_for(lambda s: has_event(s, "state_changed", "etl/crashy", new="running"))
        after = served.get("/api/status")
        seen = after.headers["Jobvisor-Last-Event-Id"]
        assert number(seen) >= number(witness.ids[-1]) > number(before)
        assert seen.rpartition("-")[0] == before.rpartition("-")[0]  # the same daemon's ids
        crashy = after.json()["children"][1]["children"][0]
        assert crashy["failures"] == 1, crashy  # what the events up to it told
    finally:
        witness.close()


def crashy_started(served: Served, starts: int) -> tuple[str, dict[str, Any]]:
    """The status (and its newest event id) once crashy has run ``starts`` times and is
    running again: read twice, the id unchanged, so no event of that restart is still to come."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def settled() -> bool:
        answer = served.get("/api/status")
        crashy = answer.json()["children"][1]["children"][0]
        seen.append((answer.headers["Jobvisor-Last-Event-Id"], crashy))
        return (
            crashy["starts"] == starts
            and crashy["state"] == "running"
            and len(seen) > 1
            and seen[-2][0] == seen[-1][0]
        )

    wait_until(settled, f"etl/crashy running after {starts} starts", timeout=30)
    return seen[-1]


def test_events_before_any_stream_are_numbered_and_told_as_a_gap(
    daemon: tuple[Running, Served],
) -> None:
    """No stream opened yet: each event is counted all the same (never kept), so the status's
    ``Jobvisor-Last-Event-Id`` grows with them, and a client back from an id before the first
    stream is told of a gap with the exact number missed, not sent the later events alone."""
    running, served = daemon
    before, _ = crashy_started(served, 1)
    (running.dir / "crash").touch()
    after, crashy = crashy_started(served, 2)
    assert crashy["failures"] == 1, crashy
    assert after.rpartition("-")[0] == before.rpartition("-")[0]
    assert number(after) > number(before)  # a crash is several events
    streams: list[Stream] = []
    try:
        back = Stream(served, last_event_id=before)
        streams.append(back)
        back.wait_for(lambda s: len(s.events) >= 1)
        (gap,) = back.events
        assert (gap["type"], gap["after"]) == ("gap", before), gap
        assert gap["missed"] == number(after) - number(before), (gap, after)
        assert back.ids[0] == after  # the newest, to come back with
        caught_up = Stream(served, last_event_id=after)
        streams.append(caught_up)
        caught_up.wait_for(lambda s: "heartbeat" in s.comments)
        assert (caught_up.events, caught_up.last_id) == ([], after)
        (running.dir / "crash").touch()  # the live events follow on from it
        caught_up.wait_for(lambda s: has_event(s, "attempt_finished", "etl/crashy", code=3))
        assert number(caught_up.ids[0]) == number(after) + 1
    finally:
        for stream in streams:
            stream.close()


FLAPPING = """
version: 1
supervisor: {backoff: {initial: 1ms, max: 1ms}, intensity: {max_restarts: 1000000, within: 60s}}
http: {heartbeat: 200ms, token: {secret: {env: JV_HTTP_TOKEN}}}
jobs:
  - {name: flap, restart: permanent, command: "exit 3"}
"""


def test_a_stream_back_from_too_long_ago_or_another_daemon_is_told_of_a_gap(
    tmp_path: Path,
) -> None:
    """The backlog keeps the newest 1,000 events: a client whose last id is older, or from a
    daemon before this one, gets one ``gap`` event (read the status again) with the newest
    id, and the live events after it, not a silent hole."""
    streams: list[Stream] = []
    with http_daemon(tmp_path, FLAPPING, "--runtime", RUNTIME, token=TOKEN) as running:
        try:
            served = Served(running.http)
            first = Stream(served)
            streams.append(first)
            first.wait_for(lambda s: len(s.events) >= 5)
            first.close()
            seen = first.ids[-1]
            witness = Stream(served)
            streams.append(witness)
            witness.wait_for(lambda s: s.ids and number(s.ids[-1]) > number(seen) + BACKLOG + 50)
            assert running.cli("stop", "flap").returncode == 0
            witness.wait_for(lambda s: has_event(s, "commanded", "flap", action="stop"))
            witness.wait_for(lambda s: has_event(s, "state_changed", "flap", new="stopped"))
            back = Stream(served, last_event_id=seen)
            streams.append(back)
            back.wait_for(lambda s: len(s.events) >= 1)
            (gap,) = back.events
            assert (gap["type"], gap["path"], gap["after"]) == ("gap", "", seen)
            assert gap["missed"] > 0, gap
            assert "/api/status" in gap["reason"], gap
            # The gap carries the newest id: coming back with it is to be caught up.
            assert back.ids[0] == witness.ids[-1]
            again = Stream(served, last_event_id=back.ids[0])
            streams.append(again)
            again.wait_for(lambda s: "heartbeat" in s.comments)
            assert again.events == []
        finally:
            for stream in streams:
                stream.close()
    # A daemon started again numbers from 1 as well: an id of the first one is not its.
    streams.clear()
    held = FLAPPING.replace("restart: permanent, ", "autostart: false, ")
    with http_daemon(tmp_path, held, "--runtime", RUNTIME, token=TOKEN) as running:
        try:
            served = Served(running.http)
            life = Stream(served)
            streams.append(life)
            life.wait_for(lambda s: s.last_id is not None)
            assert life.last_id is not None
            ours = life.last_id.rpartition("-")[0]
            # This daemon's own life with a number int() refuses ('²' is a digit to isdigit;
            # more than 4,300 digits): a gap, not a request that failed with a traceback.
            for given in (seen, "7", "x" * 500, f"{ours}-\u00b2", f"{ours}-" + "9" * 5000):
                quoted = urllib.parse.quote(given)
                other = Stream(served, query=f"?last_event_id={quoted}")
                streams.append(other)
                other.wait_for(lambda s: len(s.events) >= 1)
                (gap,) = other.events
                assert (gap["type"], gap["missed"]) == ("gap", None), gap
                assert "not an event id of this jobvisor" in gap["reason"]
                assert len(gap["reason"]) < 200
                assert other.ids[0] == life.last_id  # the newest: nothing ran since
                assert other.ids[0].split("-")[0] != seen.split("-")[0]
        finally:
            for stream in streams:
                stream.close()


def test_starting_a_job_whose_dependency_gave_up_is_a_conflict(tmp_path: Path) -> None:
    text = f"""
    version: 1
    supervisor: {{intensity: {{max_restarts: 0, within: 60s}}}}
    {WITH_TOKEN}
    jobs:
      - {{name: db, command: "exit 3"}}
      - {{name: app, command: "true", depends_on: [db]}}
    """
    with http_daemon(tmp_path, text, "--runtime", RUNTIME) as running:
        served = Served(running.http)
        wait_until(lambda: running.nodes()["app"]["state"] == "failed", "app not started")
        refused = served.post("/api/jobs/app/start", token=running.http.token)
        assert refused.status_code == 409, refused.text
        assert refused.json() == {
            "code": "dependency_down",
            "error": "cannot start app: it depends on db, which gave up; start db first",
        }
        assert running.nodes()["app"]["starts"] == 0


def test_reads_token_makes_every_read_need_the_token_on_loopback_too(tmp_path: Path) -> None:
    # Loopback is every local user's: with reads: token only the token's holders read the tree.
    http = "http: {heartbeat: 200ms, reads: token, token: {secret: {env: JV_HTTP_TOKEN}}}"
    # --http (the helper's) over the manifest's listen: its reads stay.
    with http_daemon(tmp_path, manifest(http), "--runtime", RUNTIME, token=TOKEN) as running:
        served = Served(running.http)
        bearer = running.http.auth
        for read in ("/api/status", "/api/history", "/metrics", "/api/events"):
            refused = served.get(read)
            assert refused.status_code == 401, (read, refused.text)
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert "needs Authorization: Bearer TOKEN" in refused.json()["error"]
            assert TOKEN not in refused.text
            wrong = served.get(read, headers={"Authorization": "Bearer wrong"})
            assert wrong.status_code == 403, (read, wrong.text)
        assert served.get("/api/status", headers=bearer).json()["children"][0]["path"] == "svc"
        assert served.get("/metrics", headers=bearer).status_code == 200
        assert served.get("/api/history?job=svc", headers=bearer).status_code == 200
        config = served.get("/api/config").json()  # what the page asks first: free, no data
        assert config["reads_need_token"] is True
        assert TOKEN not in json.dumps(config)
        assert served.get("/").status_code in (200, 404)  # the page: no data in it

        stream = Stream(served, token=TOKEN)
        try:
            assert stream.status_line.split()[1] == "200", stream.status_line
            (tmp_path / "crash").touch()
            stream.wait_for(lambda s: has_event(s, "child_exited", "etl/crashy"))
        finally:
            stream.close()


def test_host_names_are_told_apart_whatever_their_case(quick: Endpoint) -> None:
    host, port = quick.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    for name in ("LOCALHOST", "LocalHost", "localhost"):
        request = f"GET /api/config HTTP/1.1\r\nHost: {name}:{port}\r\n\r\n".encode()
        status, _, body = exchange(host, int(port), request)
        assert status == 200, (name, body)
    request = f"GET /api/config HTTP/1.1\r\nHost: EVIL.example:{port}\r\n\r\n".encode()
    status, _, body = exchange(host, int(port), request)
    assert status == 403, body
    # A second Host header, or an absolute URL's host, was not looked at (h245).
    for hosts, status_wanted in (
        (f"Host: 127.0.0.1:{port}\r\nHost: EVIL.example\r\n", 400),
        (f"Host: EVIL.example\r\nHost: 127.0.0.1:{port}\r\n", 400),
    ):
        request = f"GET /api/config HTTP/1.1\r\n{hosts}\r\n".encode()
        status, _, body = exchange(host, int(port), request)
        assert status == status_wanted, (hosts, body)
    for target, status_wanted in (
        ("http://EVIL.example:80/api/config", 403),
        (f"http://127.0.0.1:{port}/api/config", 200),
    ):
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        status, _, body = exchange(host, int(port), request)
        assert status == status_wanted, (target, body)


def test_without_a_token_actions_are_off(tmp_path: Path) -> None:
    with http_daemon(tmp_path, manifest(NO_TOKEN), "--runtime", RUNTIME, listen=":0") as running:
        served = Served(running.http)
        assert served.host == "127.0.0.1"  # the default host
        assert served.get("/api/config").json()["actions"] is False
        refused = served.post("/api/jobs/svc/stop", token="anything")
        assert refused.status_code == 403
        assert "token" in refused.json()["error"]
        assert running.nodes()["svc"]["state"] == "running"


def test_a_stalled_client_does_not_delay_restarts(tmp_path: Path) -> None:
    flapping = """
    version: 1
    supervisor: {backoff: {initial: 1ms, max: 1ms, jitter: 0}, intensity: {max_restarts: 100000, within: 1h}}
    http: {heartbeat: 5s}
    jobs:
      - name: flap
        restart: permanent
        command: [sh, -c, "exit 3"]
    """
    hostile: list[socket.socket] = []
    stream: Stream | None = None
    with http_daemon(tmp_path, flapping, "--runtime", RUNTIME) as running:
        try:
            served = Served(running.http)
            for _ in range(4):  # subscribe and never read: their buffers fill, then their queues
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
                sock.connect((served.host, served.port))
                sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: {served.host}\r\n\r\n".encode())
                hostile.append(sock)
            slowloris = socket.create_connection((served.host, served.port))
            slowloris.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no more
            hostile.append(slowloris)
            wait_until(
                lambda: served.metric("jobvisor_http_event_clients") == 4, "4 streams", timeout=30
            )
            stream = Stream(served)
            cycles = 300

            def enough(s: Stream) -> bool:
                return sum(e["type"] == "child_exited" for e in s.events) >= cycles

            stream.wait_for(enough, timeout=120)
            # Every restart still came within its 1ms backoff plus scheduling: a crash's exit to
            # the next start, as the daemon stamped them.
            gaps = []
            exited_at = None
            for event in stream.events:
                if event["type"] == "child_exited":
                    exited_at = event["at"]
                elif event["type"] == "state_changed" and event["new"] == "starting" and exited_at:
                    gaps.append(event["at"] - exited_at)
                    exited_at = None
            assert len(gaps) >= cycles - 1
            gaps.sort()
            assert gaps[len(gaps) // 2] < 0.05, gaps[-10:]
            assert gaps[-1] < 1.0, gaps[-10:]
            # The streams that never read were cut (a write stalled past the deadline, or a whole
            # queue behind), not waited for.
            wait_until(lambda: served.metric("jobvisor_http_event_clients") == 1, "cut", timeout=60)
            assert served.get("/api/status").status_code == 200
        finally:
            if stream is not None:
                stream.close()
            for sock in hostile:
                sock.close()


def test_a_stream_whose_client_hung_up_is_forgotten_before_the_next_heartbeat(
    tmp_path: Path,
) -> None:
    quiet = manifest("http: {heartbeat: 60s}")
    with http_daemon(tmp_path, quiet, "--runtime", RUNTIME) as running:
        served = Served(running.http)
        stream = Stream(served)
        try:
            wait_until(
                lambda: served.metric("jobvisor_http_event_clients") == 1, "open", timeout=30
            )
        finally:
            stream.close()
        # No event and no heartbeat for a minute: the hang-up itself is seen, within seconds.
        wait_until(
            lambda: served.metric("jobvisor_http_event_clients") == 0, "forgotten", timeout=5
        )


def test_the_metrics_follow_a_reload(tmp_path: Path) -> None:
    """A job a reload adds is labelled with its kind, one whose kind changed takes the new
    one, a removed one's series go (as prometheus_client's ``remove`` does), and a breaker
    it adds is shown."""
    before = """
    version: 1
    http: {heartbeat: 5s}
    breakers:
      legacy: {}
    jobs:
      - name: svc
        service: true
        command: [sh, -c, "while true; do sleep 0.05; done"]
      - name: morph
        service: true
        command: [sh, -c, "while true; do sleep 0.05; done"]
      - group: old
        jobs:
          - name: gone
            service: true
            command: [sh, -c, "while true; do sleep 0.05; done"]
    """
    after = """
    version: 1
    http: {heartbeat: 5s}
    breakers:
      api: {failure_threshold: 100, reset_timeout: 1h}
    jobs:
      - name: svc
        service: true
        command: [sh, -c, "while true; do sleep 0.05; done"]
      - name: morph
        every: 1h
        http: {url: "http://127.0.0.1:9/"}
        breaker: api
      - name: chatty
        service: true
        command: [sh, -c, "while true; do sleep 0.05; done"]
    """
    with http_daemon(tmp_path, before, "--runtime", RUNTIME) as running:
        served = Served(running.http)
        wait_until(lambda: served.metric("jobvisor_job_state", path="old/gone", kind="command", state="running") == 1, "gone running", timeout=30)  # fmt: skip
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(after))
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert "add chatty" in out.stdout
        chatty = {"path": "chatty", "kind": "command"}
        wait_until(lambda: served.metric("jobvisor_job_state", **chatty, state="running") == 1, "chatty running", timeout=30)  # fmt: skip
        assert served.metric("jobvisor_job_starts_total", **chatty) == 1
        assert served.metric("jobvisor_job_restarts_total", **chatty) == 0
        wait_until(lambda: served.metric("jobvisor_job_starts_total", path="morph", kind="http") >= 1, "morph started as http", timeout=30)  # fmt: skip
        metrics = served.metrics()
        by_path: dict[str, set[str]] = {}
        for name, labels in metrics:
            if name.startswith("jobvisor_") and "path" in dict(labels):
                by_path.setdefault(dict(labels)["path"], set()).add(dict(labels)["kind"])
        assert by_path == {"svc": {"command"}, "morph": {"http"}, "chatty": {"command"}}
        # A breaker the reload brought is shown from the start, closed, as at a daemon's start;
        # one it removed is not shown any more.
        assert metrics[("jobvisor_breaker_state", (("breaker", "api"),))] == 0
        assert ("jobvisor_breaker_state", (("breaker", "legacy"),)) not in metrics


# -- run -------------------------------------------------------------------------------------------


def test_run_serves_until_its_jobs_are_done(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\n"
        "jobs:\n"
        "  - name: once\n"
        '    command: [sh, -c, "while [ ! -e go ]; do sleep 0.01; done"]\n'
    )
    jv = Jobvisor(tmp_path, "run", "--http", "127.0.0.1:0", "--runtime", RUNTIME)
    try:
        served = Served(http_of(tmp_path / ".jobvisor", proc=jv.proc))

        def running() -> bool:
            answer = served.get("/api/status")  # 503 until the tree has started
            return answer.status_code == 200 and answer.json()["children"][0]["state"] == "running"

        wait_until(running, "once running", timeout=30)
        assert served.metric("jobvisor_job_starts_total", path="once", kind="command") == 1
        process = served.get("/api/status").json()["process"]
        PROCESS.validate(process)
        assert (process["mode"], process["pid"]) == ("run", jv.proc.pid)
        assert process["manifest"] == str(tmp_path / "jobs.yaml")
        stream = Stream(served)
        try:
            (tmp_path / "go").touch()
            stream.wait_for(lambda s: has_event(s, "state_changed", "once", new="succeeded"))
            stream.wait_for(lambda s: s.ended)  # the stream ends with the run
        finally:
            stream.close()
        assert jv.wait(30) == 0, jv.stderr
    finally:
        jv.close()
    assert "http: listening on http://127.0.0.1:" in jv.stderr
    assert not (tmp_path / ".jobvisor" / ADDRESS_FILE).exists()


@pytest.mark.parametrize(
    ("args", "http", "message"),
    [
        (("--http", "0.0.0.0:0"), "", "--http: expected a loopback address"),
        (("--http", "nope"), "", "--http: expected HOST:PORT"),
        ((), "http: {listen: '0.0.0.0:0'}\n", "jobs.yaml:2: http.listen: expected a loopback"),
        ((), "http: {listen: '127.0.0.1:70000'}\n", "jobs.yaml:2: http.listen: expected a port"),
        ((), "http: {token: ''}\n", "jobs.yaml:2: http.token: expected a non-empty string"),
        ((), "http: {heartbeat: 0s}\n", "jobs.yaml:2: http.heartbeat: expected a duration"),
        ((), "http: {listen: ':0', port: 1}\n", "jobs.yaml:2: http.port: unknown key"),
        ((), "http: {reads: token}\n", "jobs.yaml:2: http.reads: expected a token beside"),
        ((), "http: {reads: all}\n", "jobs.yaml:2: http.reads: expected one of loopback, token"),
    ],
)
def test_a_bad_http_setting_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], http: str, message: str
) -> None:
    (tmp_path / "jobs.yaml").write_text(
        f"version: 1\n{http}jobs:\n  - name: a\n    command: [sh, -c, 'sleep 30']\n"
    )
    jv = run_jobvisor(tmp_path, "run", *args)
    assert jv.proc.returncode == 2
    lines = jv.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]
    assert "Traceback" not in jv.stderr


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        (tmp_path / "jobs.yaml").write_text(
            "version: 1\njobs:\n  - name: a\n    command: ['true']\n"
        )
        jv = run_jobvisor(tmp_path, "run", "--http", f"127.0.0.1:{port}")
    assert jv.proc.returncode == 2
    assert f"http: cannot listen on 127.0.0.1:{port}" in jv.stderr
    assert "Traceback" not in jv.stderr


# -- in process: the page, the metrics' registry ---------------------------------------------------


def test_the_page_is_served_with_a_strict_policy_or_404(tmp_path: Path) -> None:
    spec = SupervisorSpec(name="root", children=(python_job("a", "math:sqrt", 4),))
    page = tmp_path / "page.html"
    endpoint = Endpoint(HttpSpec.of("127.0.0.1:0"), TreeMetrics(spec), page=page)
    try:
        assert requests.get(endpoint.url, timeout=30).status_code == 404
        page.write_bytes(b"<!doctype html><title>jobvisor</title><p>tree</p>\n")
        response = requests.get(endpoint.url, timeout=30)
        assert response.status_code == 200
        assert response.content == page.read_bytes()
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["Content-Security-Policy"] == PAGE_POLICY
        assert "connect-src 'self'" in PAGE_POLICY
        assert requests.get(endpoint.url + "api/status", timeout=30).status_code == 503
    finally:
        endpoint.close()


def test_the_config_gives_the_trees_name_only_to_who_may_read_the_tree(
    make_tree: Callable[..., Any],
) -> None:
    """``/api/config`` is free (the page asks it before any token). With ``reads: token`` it
    gave the tree's name (the manifest's ``name:``) and its heartbeat to anyone on loopback:
    data every other read needs the token for (review). Now only what the page needs first."""
    spec = SupervisorSpec(name="payments-prod", children=(python_job("a", "math:sqrt", 4),))
    tree = make_tree(spec)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    whole = {
        "actions": True,
        "actions_need_token": True,
        "reads_need_token": False,
        "heartbeat": 15.0,
        "name": "payments-prod",
    }
    for reads in ("token", "loopback"):
        endpoint = Endpoint(HttpSpec.of(token=TOKEN, reads=reads), TreeMetrics(spec))
        endpoint.attach(tree)
        try:
            url = endpoint.url + "api/config"
            anyone = requests.get(url, timeout=30)
            holder = requests.get(url, headers=bearer, timeout=30)
            wrong = requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30)
        finally:
            endpoint.close()
        assert (anyone.status_code, holder.status_code, wrong.status_code) == (200, 200, 200)
        if reads == "token":
            before = {"actions": True, "actions_need_token": True, "reads_need_token": True}
            assert anyone.json() == before
            assert wrong.json() == before  # a wrong token is no token: nothing said of it
            assert holder.json() == {**whole, "reads_need_token": True}
        else:
            assert anyone.json() == holder.json() == wrong.json() == whole


def test_each_tree_has_its_own_registry(make_tree: Callable[..., Any]) -> None:
    spec = SupervisorSpec(name="root", children=(python_job("a", "math:sqrt", 4),))
    first, second = TreeMetrics(spec), TreeMetrics(spec)
    events = Events()
    sink = first.sink()
    # State changes reach the metrics through on_state: no StateChanged is built for them.
    assert StateChanged not in sink.event_types
    make_tree(spec, sink=sink, on_event=events)
    # The sink gets a state change before the bus does: once the bus delivered it, it counted.
    events.wait_for(lambda seen: any(getattr(e, "new", None) == "succeeded" for e in seen))
    text = first.text()
    assert b'jobvisor_job_state{kind="python",path="a",state="succeeded"} 1.0' in text
    assert b'jobvisor_job_state{kind="python",path="a",state="pending"} 0.0' in text
    assert b'jobvisor_job_starts_total{kind="python",path="a"} 1.0' in text
    assert b'jobvisor_job_starts_total{kind="python",path="a"} 0.0' in second.text()


def test_run_batch_with_an_endpoint_leaves_no_thread_behind(tmp_path: Path, runtime: str) -> None:
    text = f"""
version: 1
state_dir: {tmp_path / "state"}
http: {{listen: "127.0.0.1:0", token: {{secret: {{env: JV_HTTP_TOKEN}}}}}}
jobs:
  - name: a
    python: "math:sqrt"
    args: [4]
"""
    loaded = load_manifest(text, env={"JV_HTTP_TOKEN": TOKEN})
    assert TOKEN not in loaded.explain()
    assert "http: listen=127.0.0.1:0 token=*** (actions allowed)" in loaded.explain()
    with compose(loaded, runtime=runtime, log_level="none") as composition:
        assert composition.endpoint is not None
        url = composition.endpoint.url
        report = run_batch(composition)
        assert report.exit_code == 0
        assert report.leftover == ()  # the endpoint's own thread is not an abandoned one
        assert requests.get(url + "api/status", timeout=30).json()["state"] == "stopped"
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "api/status", timeout=30)  # closed with the composition


def test_closing_the_endpoint_does_not_wait_for_its_poll() -> None:
    """Every stop of a daemon or run with an endpoint took 0.2-0.5 s longer: closing waited
    for the server's loop to look at its shutdown flag, which it did every 0.5 s."""
    spec = SupervisorSpec(name="root", children=(python_job("a", "math:sqrt", 4),))
    took = []
    for _ in range(3):
        endpoint = Endpoint(HttpSpec.of("127.0.0.1:0"), TreeMetrics(spec))
        # Its loop waits in select: a request went through it.
        assert requests.get(endpoint.url + "metrics", timeout=30).status_code == 200
        began = time.monotonic()
        endpoint.close()
        took.append(time.monotonic() - began)
    assert sum(took) < 0.3, took


def test_a_breaker_a_reload_adds_is_followed_by_the_metrics(tmp_path: Path) -> None:
    """Its transitions reach jobvisor_breaker_state as a breaker's at start do (it stayed 0,
    closed, while it was open: the tree's listener was only on the breakers it started with)."""
    before = """
    version: 1
    jobs:
      - name: svc
        service: true
        command: [sh, -c, "while true; do sleep 0.05; done"]
    """
    after = """
    version: 1
    breakers:
      api: {failure_threshold: 1, reset_timeout: 1h}
    jobs:
      - name: svc
        service: true
        command: [sh, -c, "while true; do sleep 0.05; done"]
      - name: call
        every: 0.2s
        command: [sh, -c, "exit 3"]
        breaker: api
    """
    with http_daemon(tmp_path, before, "--runtime", RUNTIME) as running:
        served = Served(running.http)
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(after))
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        wait_until(lambda: json.loads(running.cli("status", "--json").stdout)["breakers"] == {"api": "open"}, "api open", timeout=30)  # fmt: skip
        wait_until(lambda: served.metric("jobvisor_breaker_state", breaker="api") == 1, "api open in the metrics", timeout=5)  # fmt: skip


def _counted(metrics: TreeMetrics, path: str) -> tuple[float, float, float]:
    """(starts, restarts, failures of any outcome) in ``metrics`` for ``path``."""
    found = {"starts": 0.0, "restarts": 0.0, "failures": 0.0}
    for family in text_string_to_metric_families(metrics.text().decode()):
        for sample in family.samples:
            if sample.labels.get("path") != path or not sample.name.endswith("_total"):
                continue
            for what in found:
                if sample.name == f"jobvisor_job_{what}_total":
                    found[what] += sample.value
    return found["starts"], found["restarts"], found["failures"]


def _node(tree: Any, path: str) -> dict[str, Any]:
    nodes = list(tree.status()["children"])
    while nodes:
        node = nodes.pop(0)
        if node["path"] == path:
            return node
        nodes.extend(node.get("children", ()))
    raise AssertionError(f"no {path} in the status")


def _agree(tree: Any, metrics: TreeMetrics, path: str) -> tuple[int, int, int]:
    node = _node(tree, path)
    counted = (node["starts"], node["restarts"], node["failures"])
    assert _counted(metrics, path) == counted, f"{path}: metrics against status {counted}"
    return counted


def test_the_metrics_count_what_the_status_counts(make_tree: Callable[..., Any]) -> None:
    """Failures, restarts and starts agree between /metrics and the status: the failure that
    opens a breaker (the job waits; it never exits), and a cooldown's probe start, which is a
    start and no restart (README), for a child and for a group's members alike."""
    cooling = RestartPolicy(
        backoff=Backoff(initial=0, max=0, jitter=0),
        intensity=Intensity(max_restarts=1, within=60),
        on_exhausted=OnExhausted.COOLDOWN,
        cooldown=CooldownPolicy(duration=0.01, probation=60, multiplier=1000, max=600),
    )
    failing = PythonWork(target="jobfuncs:fail", args=("x",))
    spec = SupervisorSpec(
        name="root",
        policy=cooling,
        children=(
            JobSpec(
                name="behind",
                work=PythonWork(target="jobfuncs:fail", args=("b",)),
                schedule=Schedule(service=True),
                breaker="db",
            ),
            JobSpec(name="cooler", work=failing),
            SupervisorSpec(
                name="g",
                strategy=Strategy.ONE_FOR_ALL,
                policy=cooling,
                children=(JobSpec(name="m", work=failing),),
            ),
        ),
    )
    breakers = build_breakers({"db": BreakerSpec(failure_threshold=1, reset_timeout=600)})
    metrics = TreeMetrics(spec)
    events = Events()
    tree = make_tree(spec, sink=metrics.sink(), on_event=events, breakers=breakers)
    events.reached("behind", "waiting")
    # A restart, a cooldown, its probe start (a start, not a restart), a second cooldown (10 s).
    events.reached("cooler", "cooldown", times=2)
    events.reached("g/m", "cooldown", times=2)
    tree.stop()
    assert _agree(tree, metrics, "behind") == (1, 0, 1)
    assert _agree(tree, metrics, "cooler") == (3, 1, 3)
    assert _agree(tree, metrics, "g/m") == (3, 1, 3)


def test_a_group_restart_waiting_for_a_dependency_is_counted_as_a_restart(
    make_tree: Callable[..., Any],
) -> None:
    """A one_for_all restart whose member waits (pending) for a once job it depends on to
    succeed again is a restart in /metrics as in the status (the status counts it when the
    group restarts it, before it waits)."""
    once = RestartPolicy(
        backoff=Backoff(initial=0, max=0, jitter=0),
        intensity=Intensity(max_restarts=1, within=60),
        on_exhausted=OnExhausted.GIVE_UP,
    )
    spec = SupervisorSpec(
        name="root",
        strategy=Strategy.ONE_FOR_ALL,
        policy=once,
        children=(
            JobSpec(name="first", work=PythonWork(target="jobfuncs:ok", args=("first",))),
            JobSpec(
                name="after",
                work=PythonWork(target="jobfuncs:fail", args=("after",)),
                schedule=Schedule(service=True),
                depends_on=("first",),
            ),
        ),
    )
    metrics = TreeMetrics(spec)
    events = Events()
    tree = make_tree(spec, sink=metrics.sink(), on_event=events)
    events.reached("after", "gave_up")
    assert _agree(tree, metrics, "after") == (2, 1, 2)


# -- in process: deadlines -------------------------------------------------------------------------

TINY = SupervisorSpec(name="root", children=(python_job("a", "math:sqrt", 4),))


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[Endpoint]:
    """An endpoint (no tree) whose deadline is half a second: what is cut is cut in time."""
    endpoint = Endpoint(
        HttpSpec.of("127.0.0.1:0"), TreeMetrics(TINY), page=tmp_path / "page.html", deadline=0.5
    )
    try:
        yield endpoint
    finally:
        endpoint.close()


def _cut(sock: socket.socket, within: float, *, drip: bytes = b"") -> float | None:
    """Seconds until the server closed ``sock`` (sending ``drip`` every 0.1 s meanwhile)."""
    started = time.monotonic()
    while (took := time.monotonic() - started) < within:
        try:
            if drip:
                sock.sendall(drip)
            if select.select([sock], [], [], 0.1)[0]:
                data = sock.recv(4096)
                assert not data, data  # closed without a word, not answered
                return took
        except ConnectionError:
            return took
    return None


def test_a_request_must_arrive_whole_within_the_deadline(quick: Endpoint) -> None:
    """Each header line comes well within the deadline; the request as a whole does not."""
    sock = socket.create_connection(("127.0.0.1", quick.port), timeout=5)
    try:
        sock.sendall(b"GET /api/config HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        took = _cut(sock, 5.0, drip=b"X-Drip: 1\r\n")
        assert took is not None, "a request that never ended was read for 5 s"
        assert took < 2.0
    finally:
        sock.close()
    silent = socket.create_connection(("127.0.0.1", quick.port), timeout=5)
    try:
        assert _cut(silent, 5.0) is not None  # and one that sends nothing at all
    finally:
        silent.close()
    assert requests.get(quick.url + "api/config", timeout=5).status_code == 200
    wait_until(lambda: quick.connections == 0, "every connection closed", timeout=5)


def test_a_client_that_does_not_read_a_big_answer_is_cut_at_the_deadline(
    quick: Endpoint, tmp_path: Path
) -> None:
    (tmp_path / "page.html").write_bytes(b"<!doctype html>" + b"x" * (16 << 20))
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", quick.port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.1 200"
        # Its connection is given up (the kernel may still hold what was sent), not kept.
        wait_until(lambda: quick.connections == 0, "the reader cut", timeout=3)
    finally:
        sock.close()


def test_a_client_that_resets_mid_request_leaves_no_traceback(
    quick: Endpoint, capfd: pytest.CaptureFixture[str]
) -> None:
    sock = socket.create_connection(("127.0.0.1", quick.port), timeout=5)
    sock.sendall(b"GET /api/config HTTP/1.1\r\nX-a: b\r\n")
    wait_until(lambda: quick.connections == 1, "the request being read", timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, not an orderly end
    wait_until(lambda: quick.connections == 0, "the reset seen", timeout=5)
    assert "Traceback" not in capfd.readouterr().err


def test_large_answers_sent_at_once_are_capped_and_the_next_is_told_to_retry(
    tmp_path: Path,
) -> None:
    """70 clients asking ?limit=10000 that never read took the daemon from 45 to 307 MB, kept
    (trial 33): each held its answer whole while its write stalled. Past ``MAX_BIG_ANSWERS``
    being sent, a large one is 503 with Retry-After; a small one is answered as ever."""
    state = tmp_path / "state"
    Journal(state).close()
    with contextlib.closing(sqlite3.connect(journal_path(state))) as db, db:
        # 10,000 attempts of 700 bytes each: past what the kernel's buffers take of a write.
        db.executemany(
            "INSERT INTO attempts (path, attempt, started_at, ended_at, outcome, code, error,"
            " spec_hash, seq) VALUES ('etl/load', ?, ?, ?, 'failed', 3, ?, 'v2:0', ?)",
            [
                (n, 1e9 + n, 1e9 + n + 0.5, f"exited with 3: {n:06} " + "e" * 600, n)
                for n in range(1, 10_001)
            ],
        )
    endpoint = Endpoint(
        HttpSpec.of("127.0.0.1:0"), TreeMetrics(TINY), journal=journal_path(state), deadline=60
    )
    big = b"GET /api/history?limit=10000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    held: list[socket.socket] = []
    try:
        whole = requests.get(endpoint.url + "api/history?limit=10000", timeout=30)
        assert whole.status_code == 200
        assert len(whole.content) > 6_000_000
        for _ in range(MAX_BIG_ANSWERS):  # each answer begun, then stalled: nothing is read
            sock = socket.socket()
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(30)
            sock.connect(("127.0.0.1", endpoint.port))
            sock.sendall(big)
            assert sock.recv(12) == b"HTTP/1.1 200"
        status, headers, body = exchange("127.0.0.1", endpoint.port, big)
        assert status == 503, body[:200]
        assert headers["retry-after"] == "1"
        assert json.loads(body) == {
            "error": f"{MAX_BIG_ANSWERS} large answers are being sent, as many as are sent at "
            "once: retry later"
        }
        small = requests.get(endpoint.url + "api/history?limit=10", timeout=30)
        assert small.status_code == 200
        assert small.json() == whole.json()[-10:]  # the newest ten, oldest first
        for sock in held:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset: their writes fail at once, and their places are free
        held.clear()
        wait_until(lambda: endpoint.connections == 0, "the stalled answers ended", timeout=10)
        again = requests.get(endpoint.url + "api/history?limit=10000", timeout=30)
        assert (again.status_code, again.content) == (200, whole.content)
        assert again.headers["Content-Length"] == str(len(whole.content))
    finally:
        for sock in held:
            sock.close()
        endpoint.close()
