"""Notifications: real commands and a real HTTP server hear a tree's events as masked JSON."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self

import pytest
from clockkit import ManualClock
from faultkit import Running, run_jobvisor, start_daemon, stop_daemon, wait_until
from httpkit import HttpKit, Reply, Stall, self_signed

from actors._messages import Outcome
from supervision import ManifestError, load_manifest
from supervision._app import compose
from supervision._events import (
    AttemptFinished,
    BreakerChanged,
    ChildExited,
    Escalated,
    FailedFinally,
    GaveUp,
    Reloaded,
    RestartScheduled,
    StateChanged,
)
from supervision._history import journal_path, read_history
from supervision._notifier import DROPS_SAID_EVERY, QUEUE_SIZE, Notifier, notify_changes
from supervision._notify import HttpTarget, NotifyEvent, NotifySpec
from supervision._spec import SupervisorSpec
from supervision._state import State

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRET = "hunter2-s3cret"
APPEND_STDIN = (
    "import sys; f = open(sys.argv[1], 'ab'); f.write(sys.stdin.buffer.read() + bytes([10]))"
)


# The same, by sh: a run's exit delivers what is queued for 5 s only, and 30 notifications
# each starting a Python took longer than that on a loaded machine; a shell starts in 1 ms.
SH_APPEND = 'cat >> "$0"; echo >> "$0"'


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture
def hook() -> Iterator[tuple[str, queue.Queue[tuple[str, dict[str, Any]]]]]:
    """A real HTTP server on 127.0.0.1: every POST's path and JSON body lands in the queue."""
    received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((self.path, json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_command_hears_give_up_on_stdin_with_last_exit_and_journal_row(tmp_path: Path) -> None:
    out, own = tmp_path / "all.jsonl", tmp_path / "own.jsonl"
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(f"""\
        version: 1
        supervisor: {{intensity: {{max_restarts: 1}}, backoff: {{initial: 1ms, max: 1ms}}}}
        notify:
          - name: pager
            on: [gave_up, failed]
            command: [{sys.executable}, -c, "{APPEND_STDIN}", {out}]
        jobs:
          - name: flaky
            command: [sh, -c, "exit 3"]
            notify:
              - {{on: [restarted], command: [{sys.executable}, -c, "{APPEND_STDIN}", {own}]}}
          - name: fine
            command: [sh, -c, "exit 4"]
            restart: temporary
        """)
    )
    done = run_jobvisor(tmp_path, "run", "jobs.yaml")
    assert done.proc.returncode == 1, done.stderr
    # The run waited for its notifications before it ended.
    events = {(e["path"], e["event"]): e for e in lines_of(out)}
    assert set(events) == {("flaky", "gave_up"), ("fine", "failed")}
    gave_up = events["flaky", "gave_up"]
    assert gave_up["notifier"] == "pager"
    assert gave_up["last_exit"]["code"] == 3
    assert gave_up["last_exit"]["outcome"] == "failed"
    assert "max_restarts (1) allows" in gave_up["causes"][0]
    assert gave_up["time"].endswith("+00:00")
    assert abs(gave_up["at"] - time.time()) < 60
    # The job's own notification adds to the top level's, for that job only.
    assert [(e["path"], e["event"], e["number"]) for e in lines_of(own)] == [
        ("flaky", "restarted", 1)
    ]
    rows = [
        r for r in read_history(journal_path(tmp_path / ".jobvisor")) if r.get("kind") == "notify"
    ]
    details = sorted((r["path"], r["detail"]["event"]) for r in rows)
    assert details == [("fine", "failed"), ("flaky", "gave_up"), ("flaky", "restarted")]
    assert all(r["detail"]["delivered"] for r in rows)
    assert all(r["detail"]["attempts"] == 1 for r in rows)


def test_each_failure_is_a_restarted_and_the_end_one_gave_up_or_failed(tmp_path: Path) -> None:
    """As the README says: ``failed`` is a job down for good without a restart, never each
    failure (a trial expected it per failure); one that gives up sends ``gave_up`` alone."""
    out = tmp_path / "all.jsonl"
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(f"""\
        version: 1
        supervisor: {{intensity: {{max_restarts: 3}}, backoff: {{initial: 1ms, max: 1ms}}}}
        notify:
          - on: [gave_up, failed, restarted]
            damp: 0s
            command: [{sys.executable}, -c, "{APPEND_STDIN}", {out}]
        jobs:
          - {{name: flaky, command: [sh, -c, "exit 1"]}}
          - {{name: after, command: ["true"], depends_on: [flaky]}}
          - {{name: once, command: [sh, -c, "exit 2"], restart: temporary}}
        """)
    )
    done = run_jobvisor(tmp_path, "run", "jobs.yaml")
    assert done.proc.returncode == 1, done.stderr
    heard = [(e["path"], e["event"], e.get("number")) for e in lines_of(out)]
    assert [h for h in heard if h[0] == "flaky"] == [
        ("flaky", "restarted", 1),
        ("flaky", "restarted", 2),
        ("flaky", "restarted", 3),
        ("flaky", "gave_up", None),
    ]
    assert sorted(h for h in heard if h[0] != "flaky") == [
        ("after", "failed", None),
        ("once", "failed", None),
    ]


def test_a_groups_notify_hears_the_group_and_its_jobs_only(tmp_path: Path) -> None:
    group, top = tmp_path / "group.jsonl", tmp_path / "top.jsonl"
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(f"""\
        version: 1
        notify:
          - {{on: [failed], command: [{sys.executable}, -c, "{APPEND_STDIN}", {top}]}}
        jobs:
          - group: etl
            notify:
              - name: etl-team
                on: [failed, succeeded]
                command: [{sys.executable}, -c, "{APPEND_STDIN}", {group}]
            jobs:
              - {{name: load, command: [sh, -c, "exit 4"], restart: temporary}}
              - group: inner
                jobs:
                  - {{name: deep, command: ["true"]}}
          - {{name: outside, command: [sh, -c, "exit 5"], restart: temporary}}
        """)
    )
    done = run_jobvisor(tmp_path, "run", "jobs.yaml")
    assert done.proc.returncode == 1, done.stderr
    # The group's notify covers its jobs, those of groups inside it too, and nothing else;
    # the top level's still hears everything.
    heard = sorted((e["path"], e["event"], e["notifier"]) for e in lines_of(group))
    assert heard == [
        ("etl/inner/deep", "succeeded", "etl-team"),
        ("etl/load", "failed", "etl-team"),
    ]
    assert sorted((e["path"], e["event"]) for e in lines_of(top)) == [
        ("etl/load", "failed"),
        ("outside", "failed"),
    ]


def test_a_groups_bad_notify_is_placed_at_the_group_and_explained() -> None:
    text = (
        "version: 1\njobs:\n  - group: g\n    notify: [{on: [nope], command: [x]}]\n"
        "    jobs: [{name: j, command: [x]}]\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    (issue,) = caught.value.issues
    assert (issue.path, issue.line) == ("jobs[0].notify[0].on[0]", 4)
    good = load_manifest(text.replace("nope", "gave_up"), env={})
    assert (
        "    notify: x on gave_up: command x (timeout=10s retry=2) (the group and every job in it)"
        in (good.explain())
    )


def giving_up(tmp_path: Path, notify: str, job: str) -> Any:
    """A manifest whose one job gives up at its first failure, with one notification."""
    text = (
        f"version: 1\nstate_dir: {tmp_path}\nsupervisor: {{intensity: {{max_restarts: 0}}}}\n"
        f"notify:\n  - {notify}\njobs:\n  - {job}\n"
    )
    return load_manifest(text, env={"TOKEN": SECRET})


def test_http_post_carries_the_event_and_masks_secrets(
    tmp_path: Path, hook: Any, runtime: str
) -> None:
    url, received = hook
    manifest = giving_up(
        tmp_path,
        f'{{on: [gave_up], http: {{url: "{url}/hook?token=${{secret:TOKEN}}"}}}}',
        '{name: leaky, python: "jobfuncs:fail", args: ["${secret:TOKEN}"]}',
    )
    with compose(manifest, runtime=runtime, stream=sys.stderr) as composition:
        tree = composition.start()
        try:
            path, body = received.get(timeout=20)
        finally:
            tree.stop(20)
    assert path == f"/hook?token={SECRET}", "the request itself goes where the manifest says"
    assert (body["event"], body["path"]) == ("gave_up", "leaky")
    text = json.dumps(body)
    assert SECRET not in text
    assert body["notifier"] == f"{url}/hook?token=***"
    assert body["last_exit"]["error"] == "RuntimeError: *** failed on call 1"


def test_a_failing_notifier_is_retried_logged_by_name_and_journaled(
    tmp_path: Path, runtime: str
) -> None:
    manifest = giving_up(
        tmp_path,
        '{name: broken, on: [gave_up], retry: 1, command: [sh, -c, "echo nope >&2; exit 7"]}',
        '{name: j, python: "jobfuncs:fail"}',
    )
    log = tmp_path / "log.txt"
    with log.open("w") as stream, compose(manifest, runtime=runtime, stream=stream) as composition:
        tree = composition.start()
        tree.wait(20)
        tree.stop(20)
        composition.notifier.close(20)  # type: ignore[union-attr]
    assert "notify broken: gave_up of j not delivered after 2 tries: exited with 7: nope" in (
        log.read_text()
    )
    (row,) = [r for r in read_history(journal_path(tmp_path)) if r.get("kind") == "notify"]
    detail = row["detail"]
    assert detail == {
        "notifier": "broken",
        "event": "gave_up",
        "delivered": False,
        "attempts": 2,
        "error": "exited with 7: nope",
    }


def test_a_hanging_notifier_never_delays_a_restart(tmp_path: Path, runtime: str) -> None:
    manifest = load_manifest(
        textwrap.dedent(f"""\
        version: 1
        state_dir: {tmp_path}
        supervisor: {{intensity: {{max_restarts: 6}}, backoff: {{initial: 0s, max: 0s}}}}
        notify:
          - {{name: stuck, on: [restarted, gave_up], timeout: 1h, command: [sleep, "3600"]}}
        jobs:
          - {{name: j, python: "jobfuncs:fail"}}
        """),
        env={},
    )
    seen: list[Any] = []
    done = threading.Event()

    def watch(event: Any) -> None:
        seen.append((time.monotonic(), event))
        if isinstance(event, StateChanged) and event.new is State.GAVE_UP:
            done.set()

    with compose(manifest, runtime=runtime, stream=sys.stderr) as composition:
        notifier = composition.notifier
        assert notifier is not None
        # Both hear every event from the first: the notifier, and the test's watch.
        tree = composition.start(on_event=lambda e: (notifier.handle(e), watch(e)))
        assert done.wait(20), "the job went through its restarts and gave up"
        tree.stop(20)
        started = time.monotonic()
        notifier.close(0.2)
        assert time.monotonic() - started < 5, "closing kills the hanging command"
    exits = [at for at, e in seen if isinstance(e, ChildExited)]
    starts = [at for at, e in seen if isinstance(e, StateChanged) and e.new is State.STARTING]
    assert len(exits) == 7
    # Each restart follows its failure at once, while the first notification still hangs.
    gaps = [start - exit_ for exit_, start in zip(exits, starts[1:], strict=False)]
    assert len(gaps) == 6
    assert max(gaps) < 1.0, gaps
    rows = [r for r in read_history(journal_path(tmp_path)) if r.get("kind") == "notify"]
    assert rows, "what was not sent is journaled as such"
    assert all(not r["detail"]["delivered"] for r in rows)


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def notify_rows(state_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_history(journal_path(state_dir)) if r.get("kind") == "notify"]


def test_a_healthy_notifier_hears_at_once_while_others_hang_or_fail(
    tmp_path: Path, runtime: str
) -> None:
    """The trial's finding: every delivery shared one worker, so a hanging command held a
    healthy notifier's events for its whole timeout, and the stop dropped them. Each
    notifier delivers on its own now, and the stop's deadline is one for them all."""
    out = tmp_path / "cmd.jsonl"
    on = "on: [restarted, gave_up], damp: 0s"  # each restart a delivery of its own
    with (
        HttpKit(default=Stall()) as stuck,
        HttpKit(default=Reply(500)) as bad,
        HttpKit(default=Reply(204)) as good,
    ):
        # The broken ones first: a shared queue would hold everything behind them.
        manifest = load_manifest(
            textwrap.dedent(f"""\
            version: 1
            state_dir: {tmp_path}
            supervisor: {{intensity: {{max_restarts: 3}}, backoff: {{initial: 0s, max: 0s}}}}
            notify:
              - {{name: hangcmd, {on}, timeout: 1h, command: [sleep, "3600"]}}
              - {{name: hangcmd2, {on}, timeout: 1h, command: [sleep, "3601"]}}
              - {{name: stuckhttp, {on}, timeout: 1h, http: {{url: "{stuck.url}/"}}}}
              - {{name: badhttp, {on}, retry: 2, http: {{url: "{bad.url}/"}}}}
              - {{name: deadhttp, {on}, http: {{url: "http://127.0.0.1:{closed_port()}/"}}}}
              - {{name: badcmd, {on}, command: [sh, -c, "exit 1"]}}
              - {{name: cmd, {on}, command: [{sys.executable}, -c, "{APPEND_STDIN}", {out}]}}
              - {{name: good, {on}, http: {{url: "{good.url}/"}}}}
            jobs:
              - {{name: j, python: "jobfuncs:fail"}}
            """),
            env={},
        )
        gave_up = threading.Event()

        def watch(event: Any) -> None:
            if isinstance(event, StateChanged) and event.new is State.GAVE_UP:
                gave_up.set()

        with compose(manifest, runtime=runtime, stream=sys.stderr) as composition:
            notifier = composition.notifier
            assert notifier is not None
            tree = composition.start(on_event=lambda e: (notifier.handle(e), watch(e)))
            try:
                assert gave_up.wait(20), "the job went through its restarts and gave up"
                # Three restarts and the give-up, each at once, while the others still hang.
                requests = good.wait_requests(4, timeout=5)
                events = [json.loads(r.body)["event"] for r in requests]
                assert events == ["restarted"] * 3 + ["gave_up"]
                heard = wait_until(
                    lambda: out.exists() and len(lines_of(out)) == 4 and lines_of(out),
                    "the command heard all",
                    timeout=5,
                )
                assert [e["event"] for e in heard] == ["restarted"] * 3 + ["gave_up"]
                assert stuck.count == 1, "still stuck in its first delivery"
            finally:
                tree.stop(20)
            started = time.monotonic()
            notifier.close(1.0)
            # One deadline for every notifier still busy, not one each.
            assert time.monotonic() - started < 3.0
    rows = notify_rows(tmp_path)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["detail"]["notifier"], []).append(row["detail"])
    # Every delivery is journaled once, the one still in flight at the deadline too.
    assert {name: len(details) for name, details in by_name.items()} == dict.fromkeys(
        ("hangcmd", "hangcmd2", "stuckhttp", "badhttp", "deadhttp", "badcmd", "cmd", "good"), 4
    )
    for name in ("cmd", "good"):
        assert all(d["delivered"] and d["attempts"] == 1 for d in by_name[name]), by_name[name]
    for name in ("hangcmd", "hangcmd2", "stuckhttp", "badhttp", "deadhttp", "badcmd"):
        assert not any(d["delivered"] for d in by_name[name]), by_name[name]
    assert "not sent: jobvisor was stopping" in [d["error"] for d in by_name["hangcmd"]]
    stuck_errors = {d["error"] for d in by_name["stuckhttp"]}
    assert stuck_errors == {
        "no answer yet when jobvisor stopped",
        "not sent: jobvisor was stopping",
    }, stuck_errors


def test_run_delivers_to_a_healthy_notifier_whatever_the_broken_ones_do(tmp_path: Path) -> None:
    """The trial's repro: a working command beside a 500, a dead port, a command exiting 1
    and one that hangs past its timeout. The working one heard every event as it happened,
    none was left \"not sent\" at the exit, and the exit waited at most the stop's 5 s."""
    out = tmp_path / "cmd.jsonl"
    on = "on: [restarted, cooldown, gave_up]"
    with HttpKit(default=Reply(500)) as bad:
        (tmp_path / "jobs.yaml").write_text(
            textwrap.dedent(f"""\
            version: 1
            supervisor: {{intensity: {{max_restarts: 1}}, backoff: {{initial: 1ms, max: 1ms}}}}
            notify:
              - {{name: badhttp, {on}, retry: 2, http: {{url: "{bad.url}/"}}}}
              - {{name: deadhttp, {on}, http: {{url: "http://127.0.0.1:{closed_port()}/"}}}}
              - {{name: badcmd, {on}, command: [sh, -c, "exit 1"]}}
              - {{name: hangcmd, {on}, timeout: 1s, command: [sleep, "3600"]}}
              - {{name: cmd, {on}, command: [{sys.executable}, -c, "{APPEND_STDIN}", {out}]}}
            jobs:
              - group: g
                on_exhausted: cooldown
                cooldown: {{duration: 300ms, max_cycles: 1}}
                intensity: {{max_restarts: 0}}
                strategy: one_for_all
                jobs:
                  - {{name: j, command: [sh, -c, "exit 3"], restart: transient}}
            """)
        )
        started = time.monotonic()
        done = run_jobvisor(tmp_path, "run", "jobs.yaml")
        took = time.monotonic() - started
    assert done.proc.returncode == 1, done.stderr
    heard = [(e["path"], e["event"]) for e in lines_of(out)]
    rows = notify_rows(tmp_path / ".jobvisor")
    mine = [r for r in rows if r["detail"]["notifier"] == "cmd"]
    assert len(mine) == len(heard) >= 2, (heard, mine)
    assert ("g", "cooldown") in heard
    assert heard[-1][1] == "gave_up"
    assert all(r["detail"]["delivered"] for r in mine), mine
    assert took < 15, "the exit waits at most 5s for the notifications"


def test_a_notification_a_reload_drops_delivers_its_queue_then_its_worker_ends(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    release = tmp_path / "go"
    # Each delivery waits for the file ``go``, so the second is still queued at the reload.
    wait_then_append = (
        "import os, sys, time\nwhile not os.path.exists(sys.argv[2]): time.sleep(0.01)\n"
        + APPEND_STDIN
    )
    spec = NotifySpec(
        on=(NotifyEvent.GAVE_UP,),
        command=(sys.executable, "-c", wait_then_append, str(out), str(release)),
        name="old",
    )
    rows: list[dict[str, Any]] = []
    root = SupervisorSpec(children=())
    notifier = Notifier((spec,), root, record=lambda _at, _path, detail: rows.append(detail))
    try:
        for path in ("a", "b"):
            notifier.handle(GaveUp(path=path, at=time.time(), reason="r"))
        notifier.update((), root)  # the reload dropped it: what it had is still delivered
        release.touch()
        wait_until(lambda: out.exists() and len(lines_of(out)) == 2, "both delivered")
        wait_until(
            lambda: not [t for t in threading.enumerate() if t.name == "jv-notify"],
            "its worker ended",
        )
    finally:
        notifier.close(5)
    assert [e["path"] for e in lines_of(out)] == ["a", "b"]
    assert [(d["notifier"], d["delivered"]) for d in rows] == [("old", True), ("old", True)]


# fmt: off
BAD = [
    ("notify: 3", "notify", 2, "expected a list of notifications"),
    ("notify: [{command: [x]}]", "notify[0].on", 2, "expected a list of gave_up, escalated"),
    ("notify: [{on: [exploded], command: [x]}]", "notify[0].on[0]", 2,
     "expected one of gave_up, escalated, failed, cooldown, breaker_opened"),
    ("notify: [{on: [failed]}]", "notify[0].command", 2, "expected exactly one of command or http"),
    ("notify: [{on: [failed], command: [x], http: {url: 'http://x/'}}]", "notify[0].command", 2,
     "expected exactly one of command or http"),
    ("notify: [{on: [failed], command: [x], timeout: 0s}]", "notify[0].timeout", 2,
     "expected a duration > 0"),
    ("notify: [{on: [failed], command: [x], retry: -1}]", "notify[0].retry", 2,
     "expected a count >= 0"),
    ("notify: [{on: [failed], http: {url: 'ftp://x/'}}]", "notify[0].http.url", 2,
     "expected an http:// or https:// URL"),
    ("notify: [{on: [failed], http: {}}]", "notify[0].http.url", 2, "an http:// or https:// URL, got nothing"),
    ("notify: [{on: [failed], http: 3}]", "notify[0].http", 2, "expected a mapping with url"),
    # A header name HTTP cannot send failed every delivery at run time (http jobs refused it).
    ("notify: [{on: [failed], http: {url: 'http://x/', headers: {'X:Key': v}}}]",
     "notify[0].http.headers['X:Key']", 2, "expected a name like FOO_BAR"),
    ("notify: [{on: [failed], command: [x], when: now}]", "notify[0].when", 2, "unknown key"),
]
# fmt: on


@pytest.mark.parametrize(("text", "path", "line", "message"), BAD, ids=[b[1] for b in BAD])
def test_bad_values_name_path_and_line(text: str, path: str, line: int, message: str) -> None:
    manifest = f"version: 1\n{text}\njobs:\n  - {{name: j, command: [x]}}\n"
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest, env={})
    found = [i for i in caught.value.issues if i.path == path]
    assert found, [str(i) for i in caught.value.issues]
    assert found[0].line == line
    assert message in found[0].message, str(found[0])


def test_a_jobs_bad_notify_is_placed_at_the_job() -> None:
    text = "version: 1\njobs:\n  - name: j\n    command: [x]\n    notify: [{on: [nope], command: [x]}]\n"
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    (issue,) = caught.value.issues
    assert (issue.path, issue.line) == ("jobs[0].notify[0].on[0]", 5)


def test_explain_shows_every_notification() -> None:
    manifest = load_manifest(
        textwrap.dedent("""\
        version: 1
        notify:
          - {name: pager, on: [gave_up, escalated], command: [page, ops]}
        jobs:
          - name: j
            command: [x]
            notify:
              - {on: [failed], http: {url: "http://127.0.0.1:9/h"}, timeout: 2s, retry: 0}
        """),
        env={},
    )
    text = manifest.explain()
    assert "notify: pager on gave_up, escalated: command page ops (timeout=10s retry=2)" in text
    assert (
        "    notify: http://127.0.0.1:9/h on failed: POST http://127.0.0.1:9/h (timeout=2s retry=0)"
        in text
    )
    assert NotifyEvent.FAILED in manifest.root.children[0].notify[0].on  # type: ignore[union-attr]


def test_without_notifications_there_is_no_notifier(tmp_path: Path, runtime: str) -> None:
    manifest = load_manifest(
        f"version: 1\nstate_dir: {tmp_path}\njobs: [{{name: j, command: [x]}}]\n", env={}
    )
    with compose(manifest, runtime=runtime, stream=sys.stderr) as composition:
        assert composition.notifier is None


def test_a_reload_brings_new_notifications(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    manifest = """
    version: 1
    supervisor: {intensity: {max_restarts: 1000}, backoff: {initial: 1ms, max: 1ms}}
    jobs:
      - name: svc
        service: true
        command: [sh, -c, "sleep 0.2; exit 1"]
    """
    running = start_daemon(tmp_path, manifest)
    try:
        notify = (
            "\n        notify:\n"
            f'          - {{on: [restarted], command: [{sys.executable}, -c, "{APPEND_STDIN}", {out}]}}\n'
        )
        (tmp_path / "jobs.yaml").write_text(
            textwrap.dedent(manifest).rstrip("\n") + textwrap.dedent(notify)
        )
        preview = running.cli("reload", "--dry-run")
        assert preview.returncode == 0, preview.stderr
        assert f"notify: add {sys.executable} -c" in preview.stdout
        reload = running.cli("reload")
        assert reload.returncode == 0, reload.stderr
        # Said, as every other change a reload makes: it said "no change" (h246).
        assert f"notify: add {sys.executable} -c" in reload.stdout
        assert "no change" not in reload.stdout
        first = wait_until(
            lambda: out.exists() and lines_of(out), "a notification after the reload"
        )
        assert first[0]["path"] == "svc"
        assert first[0]["event"] == "restarted"
    finally:
        assert stop_daemon(running) == 0


def test_a_dry_run_masks_a_secret_a_notification_it_would_add_brings(tmp_path: Path) -> None:
    # The dry run takes no secret of the new manifest, and said the new command in clear
    # (review r51); the reload itself masked it.
    key = "hunter2zzSECRET"
    manifest = """
    version: 1
    logging: {level: information, file: jv.log}
    jobs:
      - {name: svc, service: true, command: [sleep, "600"]}
    """
    running = start_daemon(tmp_path, manifest, env_extra={"PAGER_KEY": key})
    try:
        notify = '\nnotify: [{on: [failed], command: [sh, -c, "echo ${secret:PAGER_KEY}"]}]\n'
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(manifest) + notify)
        for args in (("reload", "--dry-run"), ("reload",)):
            out = running.cli(*args)
            assert out.returncode == 0, out.stderr
            assert "notify: add sh -c 'echo ***'" in out.stdout, (args, out.stdout)
            assert key not in out.stdout + out.stderr
        log = (tmp_path / "jv.log").read_text()
        assert "dry run of a reload" in log
        assert key not in log
    finally:
        assert stop_daemon(running) == 0


def test_a_reload_says_each_notification_it_adds_changes_or_removes() -> None:
    def manifest(text: str) -> Any:
        return load_manifest(textwrap.dedent(text), env={})

    old = manifest("""
        version: 1
        notify:
          - {on: [failed], command: [sh, -c, "cat > a"]}
          - {on: [failed], http: {url: "http://user:pw@127.0.0.1:9/hook?k=v"}, name: pager}
        jobs:
          - {name: web, command: [sleep, "9"], notify: [{on: [failed], command: [wall]}]}
          - {name: gone, command: [sleep, "9"], notify: [{on: [failed], command: [wall]}]}
    """)
    new = manifest("""
        version: 1
        notify:
          - {on: [failed, gave_up], http: {url: "http://127.0.0.1:9/other"}, name: pager}
          - {on: [failed], command: [sh, -c, "cat > b"]}
        jobs:
          - {name: web, command: [sleep, "9"], notify: [{on: [failed], command: [wall], retry: 5}]}
          - {name: fresh, command: [sleep, "9"], notify: [{on: [failed], command: [wall]}]}
    """)
    lines = notify_changes(old.notify, old.root, new.notify, new.root, mask=lambda t: t)
    assert lines == [
        "notify: update pager",
        "notify: add sh -c 'cat > b'",
        "notify: remove sh -c 'cat > a'",
        "notify of web: update wall",  # gone and fresh: their removal and addition say it
    ]
    assert notify_changes(new.notify, new.root, new.notify, new.root) == []
    # Two of one target, the first removed: one removal, not an update and a removal (r51).
    two = manifest("""
        version: 1
        notify: [{on: [failed], command: [wall]}, {on: [gave_up], command: [wall]}]
        jobs: [{name: web, command: [sleep, "9"]}]
    """)
    one = manifest("""
        version: 1
        notify: [{on: [gave_up], command: [wall]}]
        jobs: [{name: web, command: [sleep, "9"]}]
    """)
    assert notify_changes(two.notify, two.root, one.notify, one.root) == ["notify: remove wall"]
    # What logs and the journal call it: no credentials of a URL, and the masker's say.
    masked = notify_changes((), old.root, old.notify, old.root, mask=lambda t: t.replace("a", "*"))
    assert masked == ["notify: *dd sh -c 'c*t > *'", "notify: *dd p*ger"]


# -- what a delivery follows, how long a try lasts, what is tried again ---------------------------

HOOK_KEY = "s3cr3tKEY"


def one_notifier(**fields: Any) -> tuple[Notifier, queue.Queue[dict[str, Any]]]:
    """A notifier with one notification for gave_up; each delivery's journal detail lands in
    the queue as it ends."""
    spec = NotifySpec(on=(NotifyEvent.GAVE_UP,), **fields)
    rows: queue.Queue[dict[str, Any]] = queue.Queue()
    notifier = Notifier((spec,), SupervisorSpec(children=()), record=lambda _a, _p, d: rows.put(d))
    return notifier, rows


def give_up(notifier: Notifier, path: str = "j") -> None:
    notifier.handle(GaveUp(path=path, at=time.time(), reason="r"))


class Trickler:
    """A raw HTTP server on 127.0.0.1 that reads a request, then writes ``head`` and one byte
    of ``drip`` every 0.1s, forever: what urllib's per-read timeout never ends."""

    def __init__(self, head: bytes, drip: bytes) -> None:
        self._head, self._drip = head, drip
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"
        self._threads = [threading.Thread(target=self._accept, name="trickler")]

    def __enter__(self) -> Self:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with socket.create_connection(self._listener.getsockname()):
            pass  # wakes accept()
        for thread in self._threads:
            thread.join(10)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            conn, _ = self._listener.accept()
            thread = threading.Thread(target=self._serve, args=(conn,), name="trickler")
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data and not self._stop.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            try:
                conn.sendall(self._head)
                while not self._stop.wait(0.1):
                    conn.sendall(self._drip)
            except OSError:
                pass  # the client hung up: its timeout did its work


@pytest.mark.parametrize(
    ("head", "drip", "delivered"),
    [
        # The status line, then headers that never end.
        (b"HTTP/1.1 200 OK\r\n", b"X", False),
        # The trial's: a whole answer's head, then a chunked body of a byte at a time.
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n", True),
        # Answers that end with the connection, which http.client reads through the answer
        # rather than the connection (an http job's deadline missed them): their heads...
        (b"HTTP/1.0 200 OK\r\nConnection: close\r\n", b"X", False),
        # ...and their bodies, which a 2xx does not wait for.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n", b"x", True),
        (b"HTTP/1.0 200 OK\r\n\r\n", b"x", True),
    ],
    ids=["headers", "body", "headers-close", "body-close", "body-http1.0"],
)
def test_timeout_bounds_the_whole_try_however_slowly_the_answer_trickles(
    head: bytes, drip: bytes, delivered: bool, runtime: str
) -> None:
    """The trial's finding: urllib's timeout bounds each read, so a receiver that kept
    sending a byte a second held the delivery, and every later one, until jobvisor stopped.
    A 2xx is the receiver's yes: its body is not waited for."""
    del runtime
    with Trickler(head, drip) as slow:
        notifier, rows = one_notifier(http=_target(slow.url), timeout=1.0, retry=0)
        try:
            started = time.monotonic()
            give_up(notifier)
            detail = rows.get(timeout=10)
            took = time.monotonic() - started
        finally:
            notifier.close(1)
    assert took < 3, took
    assert detail["delivered"] is delivered, detail
    if not delivered:
        assert detail["error"] == "timed out after 1s"


def _target(url: str, **headers: str) -> Any:
    return HttpTarget(url=url, headers=headers)


def test_a_redirect_is_a_failed_delivery_never_followed_nor_retried(runtime: str) -> None:
    """The trial's finding: urllib followed a 302 to another host, as a GET carrying the
    secret headers and no body, and journaled it delivered."""
    del runtime
    with HttpKit(default=Reply(204)) as other, HttpKit(default=Reply(200)) as hook:
        hook.default = Reply(302, headers={"Location": f"{other.url}/ok?from=cross"})
        notifier, rows = one_notifier(
            http=_target(f"{hook.url}/hook", Authorization=f"Bearer {HOOK_KEY}"), retry=2
        )
        try:
            give_up(notifier)
            detail = rows.get(timeout=10)
        finally:
            notifier.close(1)
        assert other.count == 0, "the redirect was followed"
        assert hook.count == 1, "a redirect is not tried again"
    assert detail["delivered"] is False
    assert detail["attempts"] == 1
    assert detail["error"] == (
        f"HTTP 302 Found: redirected to {other.url}/ok?from=cross; "
        "notifications do not follow redirects"
    )


@pytest.mark.parametrize(
    ("replies", "tries", "delivered"),
    [
        ([Reply(404)], 1, False),  # the receiver said no: asking again changes nothing
        ([Reply(400)], 1, False),
        ([Reply(500), Reply(204)], 2, True),
        ([Reply(408), Reply(204)], 2, True),
        ([Reply(503), Reply(502), Reply(503)], 3, False),
    ],
    ids=["404", "400", "500", "408", "5xx-thrice"],
)
def test_only_a_5xx_429_408_or_a_failed_connection_is_tried_again(
    replies: list[Reply], tries: int, delivered: bool, logs: Any, runtime: str
) -> None:
    del runtime
    with HttpKit(*replies, default=Reply(204)) as hook:
        notifier, rows = one_notifier(http=_target(f"{hook.url}/h"), retry=2, name="n")
        try:
            give_up(notifier)
            detail = rows.get(timeout=20)
        finally:
            notifier.close(1)
        assert hook.count == tries
    assert (detail["delivered"], detail["attempts"]) == (delivered, tries), detail
    if tries == 1:
        assert any(
            r.message.startswith("notify n: gave_up of j not delivered after 1 try: HTTP 4")
            for r in logs.records
        ), [r.message for r in logs.records]


def test_a_retried_post_carries_the_same_id_the_host_and_our_user_agent(runtime: str) -> None:
    """Two daemons' alerts could not be told apart, nor a retried POST de-duplicated: the body
    had no host and no id. Each event has its own id, the same on every try of it."""
    from importlib.metadata import version

    del runtime
    with HttpKit(Reply(503), default=Reply(204)) as hook:
        notifier, rows = one_notifier(http=_target(f"{hook.url}/h"), retry=2)
        try:
            give_up(notifier)
            first = rows.get(timeout=10)
            give_up(notifier)
            second = rows.get(timeout=10)
        finally:
            notifier.close(1)
        requests = hook.wait_requests(3)
    assert (first["attempts"], first["delivered"], second["attempts"]) == (2, True, 1)
    bodies = [json.loads(r.body) for r in requests]
    assert bodies[0]["id"] == bodies[1]["id"] != bodies[2]["id"]
    assert len(bodies[0]["id"]) >= 32, bodies[0]
    assert {b["host"] for b in bodies} == {socket.gethostname()}
    agents = {r.headers["user-agent"] for r in requests}
    assert agents == {f"jobvisor/{version('jobvisor')}"}


def test_the_notifications_own_headers_replace_ours_whatever_their_case(runtime: str) -> None:
    """``headers: {user-agent: ...}`` sent both ours and theirs: names were matched by case."""
    del runtime
    with HttpKit(default=Reply(204)) as hook:
        target = _target(f"{hook.url}/h", **{"user-agent": "mine/1", "content-type": "a/b"})
        notifier, rows = one_notifier(http=target)
        try:
            give_up(notifier)
            assert rows.get(timeout=10)["delivered"] is True
        finally:
            notifier.close(1)
        [request] = hook.wait_requests(1)
    names = [name.lower() for name in request.names]
    assert (names.count("user-agent"), names.count("content-type")) == (1, 1), request.names
    assert (request.headers["user-agent"], request.headers["content-type"]) == ("mine/1", "a/b")


def test_a_commands_stdin_json_has_the_host_and_an_id_too(tmp_path: Path) -> None:
    out = tmp_path / "heard.jsonl"
    command = (sys.executable, "-c", APPEND_STDIN, str(out))
    notifier, rows = one_notifier(command=command)
    try:
        give_up(notifier)
        give_up(notifier)
        assert [rows.get(timeout=10)["delivered"] for _ in range(2)] == [True, True]
    finally:
        notifier.close(1)
    heard = lines_of(out)
    assert [e["host"] for e in heard] == [socket.gethostname()] * 2
    assert len({e["id"] for e in heard}) == 2


def test_a_429s_retry_after_is_honoured_within_the_notifiers_bounds(runtime: str) -> None:
    del runtime
    with HttpKit(
        Reply(429, headers={"Retry-After": "1"}),
        Reply(204),
        Reply(503, headers={"Retry-After": "3600"}),
        default=Reply(204),
    ) as hook:
        notifier, rows = one_notifier(http=_target(f"{hook.url}/h"), retry=2)
        try:
            give_up(notifier)
            first = rows.get(timeout=10)
            give_up(notifier, "k")
            second = rows.get(timeout=10)
        finally:
            notifier.close(1)
        requests = hook.wait_requests(3)
        assert hook.count == 3, "an hour's Retry-After is not waited for, nor tried early"
    assert (first["delivered"], first["attempts"]) == (True, 2)
    assert [r.path for r in requests] == ["/h"] * 3
    assert second["delivered"] is False
    assert second["attempts"] == 1
    assert second["error"] == (
        "HTTP 503 Service Unavailable: Retry-After 3600s is past the 60s a notification waits"
    )


def test_a_429s_retry_after_sets_the_wait_before_the_next_try(runtime: str) -> None:
    del runtime
    seen: list[float] = []

    with HttpKit(Reply(429, headers={"Retry-After": "1"}), default=Reply(204)) as hook:
        notifier, rows = one_notifier(http=_target(f"{hook.url}/h"), retry=1)
        try:
            give_up(notifier)
            hook.wait_requests(1)
            seen.append(time.monotonic())
            hook.wait_requests(2)
            seen.append(time.monotonic())
            detail = rows.get(timeout=10)
        finally:
            notifier.close(1)
    assert detail["delivered"] is True
    assert seen[1] - seen[0] >= 0.8, "waited the Retry-After, not the 0.5s backoff"


def test_breaker_opened_is_told_when_it_opens_not_at_each_failed_trial(runtime: str) -> None:
    """The trial's finding: every failed half-open trial paged again, one page per
    reset_timeout for as long as the service was down."""
    del runtime
    with HttpKit(default=Reply(204)) as hook:
        spec = NotifySpec(
            on=(NotifyEvent.BREAKER_OPENED, NotifyEvent.BREAKER_CLOSED),
            http=_target(f"{hook.url}/h"),
        )
        rows: queue.Queue[dict[str, Any]] = queue.Queue()
        notifier = Notifier((spec,), SupervisorSpec(children=()), record=lambda *a: rows.put(a[2]))
        try:
            for old, new in [
                ("closed", "open"),
                ("open", "half_open"),
                ("half_open", "open"),  # the trial failed: still the same outage
                ("open", "half_open"),
                ("half_open", "open"),
                ("open", "half_open"),
                ("half_open", "closed"),
            ]:
                notifier.handle(BreakerChanged(path="", at=time.time(), name="b", old=old, new=new))
            for _ in range(2):
                rows.get(timeout=10)
        finally:
            notifier.close(5)
        heard = [(json.loads(r.body)["event"], json.loads(r.body)["old"]) for r in hook.requests]
    assert heard == [("breaker_opened", "closed"), ("breaker_closed", "half_open")]


# A notifier's url given as a secret, that is no URL: the trial's had a space in it.
BAD_SECRET_URLS = [
    f"http://127.0.0.1:1/hook?key={HOOK_KEY} more",
    f"http://127.0.0.1:1/hook?key={HOOK_KEY}\x01",
    f"http:///hook?key={HOOK_KEY}",
    f"http://127.0.0.1:1/hook?key={HOOK_KEY}\tmore",
]


@pytest.mark.parametrize("value", BAD_SECRET_URLS, ids=["space", "control", "no-host", "tab"])
def test_a_secret_notifier_url_that_is_no_url_is_refused_without_showing_it(value: str) -> None:
    text = (
        "version: 1\nnotify:\n  - on: [gave_up]\n    http: {url: {secret: {env: HOOKURL}}}\n"
        "jobs:\n  - {name: j, command: [x]}\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={"HOOKURL": value})
    (issue,) = caught.value.issues
    assert (issue.path, issue.line) == ("notify[0].http.url", 4)
    assert "expected an http:// or https:// URL" in issue.message
    assert HOOK_KEY not in str(caught.value)
    assert "hook" not in str(caught.value)


def test_a_notifier_url_with_a_space_is_refused_and_a_secret_in_it_never_shown() -> None:
    # Long enough that a message cutting the value short would cut the secret in two.
    url = "http://127.0.0.1:1/x y?key=${secret:HOOK}"
    text = f'version: 1\nnotify:\n  - {{on: [gave_up], http: {{url: "{url}"}}}}\n'
    text += "jobs:\n  - {name: j, command: [x]}\n"
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={"HOOK": "0123456789abcdefghij0123456789ABCDEFGHIJ"})
    (issue,) = caught.value.issues
    assert issue.path == "notify[0].http.url"
    assert "no spaces" in issue.message
    for piece in ("0123", "6789", "ghij", "GHIJ"):
        assert piece not in str(caught.value)


@pytest.mark.parametrize("value", ["abc\u20acsecretEURO", " padded", "two\tparts\x01"])
def test_a_notifier_header_that_http_cannot_send_is_refused_and_never_shown(value: str) -> None:
    """HTTP sends header values as Latin-1: a euro sign in a secret failed every delivery with
    a raw UnicodeEncodeError (as it did an http job's try)."""
    text = "version: 1\nnotify:\n"
    text += "  - {on: [gave_up], http: {url: 'http://127.0.0.1:1/h', headers: {X-Key: {secret: {env: K}}}}}\n"
    text += "jobs:\n  - {name: j, command: [x]}\n"
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={"K": value})
    (issue,) = caught.value.issues
    assert issue.path.startswith("notify[0].http.headers"), issue.path
    assert "Latin-1" in issue.message
    assert value.strip() not in str(caught.value)
    assert "secretEURO" not in str(caught.value)


def test_a_failed_delivery_to_a_secret_url_never_shows_a_part_of_it(
    tmp_path: Path, runtime: str
) -> None:
    """The trial's finding: masking goes by the whole value, and the error held a part of
    it, the request's path and query."""
    with HttpKit(default=Reply(204)) as hook:
        hook.default = Reply(302, headers={"Location": f"https://else.invalid/hook?key={HOOK_KEY}"})
        manifest = load_manifest(
            textwrap.dedent(f"""\
            version: 1
            state_dir: {tmp_path}
            supervisor: {{intensity: {{max_restarts: 0}}}}
            notify:
              - {{on: [gave_up], http: {{url: {{secret: {{env: HOOKURL}}}}}}, retry: 0}}
            jobs:
              - {{name: j, python: "jobfuncs:fail"}}
            """),
            env={"HOOKURL": f"{hook.url}/hook?key={HOOK_KEY}"},
        )
        log = tmp_path / "log.txt"
        with (
            log.open("w") as stream,
            compose(manifest, runtime=runtime, stream=stream) as composition,
        ):
            tree = composition.start()
            hook.wait_requests(1)
            tree.stop(20)
            composition.notifier.close(20)  # type: ignore[union-attr]
    (row,) = notify_rows(tmp_path)
    assert row["detail"]["error"] == (
        "HTTP 302 Found: redirected to https://else.invalid***; "
        "notifications do not follow redirects"
    )
    assert row["detail"]["notifier"] == "***"
    assert "redirected to https://else.invalid***" in log.read_text()
    everything = json.dumps(list(read_history(journal_path(tmp_path))))
    for text in (log.read_text(), everything):
        assert HOOK_KEY not in text
        assert "/hook?" not in text


def test_a_deadline_that_comes_while_the_connect_has_no_socket_yet_still_ends_the_try(
    monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    """A name with two addresses (dual stack, round-robin DNS): the first drops the connect
    until its timeout, the second takes it and trickles its answer. The deadline found no
    socket to shut down, and the try ran on for ever (review). Real sockets; only the name's
    resolution is fixed, to give it the two addresses."""
    if runtime == "gevent":
        pytest.skip("gevent resolves names with its own resolver; the deadline's code is the same")
    from supervision._notifier import _post

    served = socket.socket()
    served.bind(("127.0.0.1", 0))
    served.listen(5)
    port = served.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        with contextlib.suppress(OSError):
            conn, _ = served.accept()
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX: " + b"a" * 1000:
                    if stop.wait(0.2):
                        return
                    conn.send(bytes([byte]))

    full = socket.socket()  # the first address: a full accept queue, its SYNs dropped
    full.bind(("127.0.0.2", port))
    full.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.settimeout(0)  # non-blocking
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.2", port))
        fillers.append(filler)
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "two.test":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    spec = NotifySpec(
        on=(NotifyEvent.FAILED,),
        http=HttpTarget(url=f"http://two.test:{port}/hook"),
        timeout=1.0,
        retry=0,
    )
    try:
        began = time.monotonic()
        result = _post(spec, b"{}")
        took = time.monotonic() - began
    finally:
        stop.set()
        for sock in (served, full, *fillers):
            sock.close()
        thread.join(5)
    assert result.error == "timed out after 1s"
    assert took < 5, took


# -- recovered: a receiver hears that what it was paged for is over ------------------------------


def _next_post(received: queue.Queue[tuple[str, dict[str, Any]]], event: str) -> dict[str, Any]:
    """The next POST of ``event`` (others before it are skipped), within 20 s."""
    deadline = time.monotonic() + 20
    while True:
        _, body = received.get(timeout=max(0.1, deadline - time.monotonic()))
        if body["event"] == event:
            return body


def _broken_until_fixed(tmp_path: Path, supervisor: str, notify: str) -> tuple[Running, Path]:
    """A daemon whose service ``svc`` exits 1 until the returned flag file exists, then stays
    up; ``supervisor`` is its manifest's supervisor block, ``notify`` its notify entries."""
    flag = tmp_path / "fixed"
    running = start_daemon(
        tmp_path,
        f"""
        version: 1
        {supervisor}
        notify:{notify}
        jobs:
          - name: svc
            service: true
            command: [sh, -c, "test -e {flag} && exec sleep 600; exit 1"]
        """,
    )
    return running, flag


def test_a_service_started_again_after_it_gave_up_sends_recovered_naming_the_page(
    tmp_path: Path, hook: tuple[str, queue.Queue[tuple[str, dict[str, Any]]]]
) -> None:
    url, received = hook
    running, flag = _broken_until_fixed(
        tmp_path,
        "supervisor: {intensity: {max_restarts: 1}, backoff: {initial: 1ms, max: 1ms}}",
        f"""
          - {{name: pager, on: [gave_up, recovered], http: {{url: "{url}/p"}}}}
          - {{name: quiet, on: [restarted, recovered], http: {{url: "{url}/q"}}}}""",
    )
    try:
        gave_up = _next_post(received, "gave_up")
        flag.touch()
        started = running.cli("start", "svc")
        assert started.returncode == 0, started.stderr
        recovered = _next_post(received, "recovered")
        assert recovered["path"] == "svc"
        assert recovered["notifier"] == "pager"  # quiet sent no failure: it has nothing to end
        assert recovered["by"] == "running"
        assert recovered["recovered_from"] == [
            {"event": "gave_up", "id": gave_up["id"], "at": gave_up["at"], "time": gave_up["time"]}
        ]
        assert recovered["id"] != gave_up["id"]
        assert recovered["causes"] == []
    finally:
        assert stop_daemon(running) == 0
    # Once: a restart of the healthy service, or the stop, ends nothing more.
    rest = []
    while not received.empty():
        rest.append(received.get_nowait()[1]["event"])
    assert "recovered" not in rest


def test_a_cooldown_whose_probe_passes_its_probation_sends_recovered(
    tmp_path: Path, hook: tuple[str, queue.Queue[tuple[str, dict[str, Any]]]]
) -> None:
    url, received = hook
    running, flag = _broken_until_fixed(
        tmp_path,
        """supervisor:
          intensity: {max_restarts: 1}
          backoff: {initial: 1ms, max: 1ms}
          on_exhausted: cooldown
          cooldown: {duration: 300ms, probation: 300ms, max: 300ms}""",
        f"""
          - {{name: pager, on: [cooldown, recovered], http: {{url: "{url}/p"}}}}""",
    )
    try:
        cooldown = _next_post(received, "cooldown")
        flag.touch()  # the probe, or a later cycle's, stays up
        recovered = _next_post(received, "recovered")
        assert recovered["path"] == "svc"
        assert recovered["by"] == "probation_passed"
        assert recovered["recovered_from"][0]["id"] == cooldown["id"]
        assert {e["event"] for e in recovered["recovered_from"]} == {"cooldown"}
        assert recovered["failures"] == len(recovered["recovered_from"])
    finally:
        assert stop_daemon(running) == 0


def test_recovered_pairs_a_breaker_with_its_closing_and_a_failed_job_with_its_success() -> None:
    """A breaker's page ends when it closes, not when its job runs again (a half-open trial
    runs it); a once-job's ``failed`` when a later run succeeds; nothing else ends a page."""
    with HttpKit(default=Reply(204)) as kit:
        spec = NotifySpec(
            on=(NotifyEvent.BREAKER_OPENED, NotifyEvent.FAILED, NotifyEvent.RECOVERED),
            http=_target(f"{kit.url}/h"),
        )
        rows: queue.Queue[dict[str, Any]] = queue.Queue()
        root = load_manifest(
            "version: 1\njobs: [{name: once, command: [x]}, {name: other, command: [x]}]\n", env={}
        ).root
        notifier = Notifier((spec,), root, record=lambda *a: rows.put(a[2]))
        at = time.time()

        def tell(event: Any) -> None:
            notifier.handle(event)

        try:
            tell(BreakerChanged(path="", at=at, name="b", old="closed", new="open"))
            tell(StateChanged(path="", at=at, old=State.WAITING, new=State.RUNNING))
            tell(BreakerChanged(path="", at=at, name="b", old="open", new="half_open"))
            tell(BreakerChanged(path="", at=at, name="b", old="half_open", new="closed"))
            tell(BreakerChanged(path="", at=at, name="b", old="open", new="closed"))  # once
            tell(StateChanged(path="once", at=at, old=State.RUNNING, new=State.FAILED))
            tell(FailedFinally(path="once", at=at, reason="temporary"))  # what says it
            tell(StateChanged(path="once", at=at, old=State.STARTING, new=State.RUNNING))
            tell(
                AttemptFinished(
                    path="other",
                    at=at,
                    attempt=1,
                    outcome=Outcome.SUCCEEDED,
                    error=None,
                    started_at=at,
                    code=0,
                )
            )
            tell(
                AttemptFinished(
                    path="once",
                    at=at,
                    attempt=2,
                    outcome=Outcome.FAILED,
                    error="x",
                    started_at=at,
                    code=1,
                )
            )
            tell(
                AttemptFinished(
                    path="once",
                    at=at,
                    attempt=3,
                    outcome=Outcome.SUCCEEDED,
                    error=None,
                    started_at=at,
                    code=0,
                )
            )
            for _ in range(4):
                rows.get(timeout=10)
        finally:
            notifier.close(5)
        bodies = [json.loads(r.body) for r in kit.requests]
    heard = [(b["event"], b["path"], b.get("by")) for b in bodies]
    assert heard == [
        ("breaker_opened", "", None),
        ("recovered", "", "breaker_closed"),
        ("failed", "once", None),
        ("recovered", "once", "succeeded"),
    ]
    assert bodies[1]["breaker"] == "b"
    assert bodies[1]["recovered_from"][0]["id"] == bodies[0]["id"]
    assert bodies[3]["recovered_from"][0]["id"] == bodies[2]["id"]


# -- damping: a crash loop's restarts are folded, one notification per job per interval ----------


def test_a_crash_loops_restarts_are_damped_per_job_and_the_next_one_says_how_many_were_folded(
    runtime: str,
) -> None:
    """The trial's finding: 50 restarts a second posted 50 a second and filled the queue."""
    del runtime
    clock = ManualClock()
    with HttpKit(default=Reply(204)) as kit:
        spec = NotifySpec(
            on=(NotifyEvent.RESTARTED, NotifyEvent.GAVE_UP, NotifyEvent.ESCALATED),
            http=_target(f"{kit.url}/h"),
        )
        rows: queue.Queue[dict[str, Any]] = queue.Queue()
        notifier = Notifier(
            (spec,), SupervisorSpec(children=()), record=lambda *a: rows.put(a[2]), clock=clock
        )
        try:
            for number in range(1, 51):
                for path in ("a", "b"):
                    notifier.handle(
                        RestartScheduled(path=path, at=time.time(), delay=0.001, number=number)
                    )
                clock.advance(0.02)
            clock.advance(58.9)  # 59.9 s after a's first: still folded
            notifier.handle(RestartScheduled(path="a", at=time.time(), delay=0.001, number=51))
            clock.advance(0.2)  # past 60 s: the next one is sent, with the count
            notifier.handle(RestartScheduled(path="a", at=time.time(), delay=0.001, number=52))
            for _ in range(2):  # never damped, however close together
                notifier.handle(GaveUp(path="a", at=time.time(), reason="r"))
                notifier.handle(Escalated(path="", at=time.time(), reason="r", error="e"))
            for _ in range(7):
                rows.get(timeout=10)
            assert rows.empty()
        finally:
            notifier.close(5)
        bodies = [json.loads(r.body) for r in kit.requests]
    heard = [(b["event"], b["path"], b.get("number"), b.get("suppressed")) for b in bodies]
    assert heard == [
        ("restarted", "a", 1, 0),
        ("restarted", "b", 1, 0),
        ("restarted", "a", 52, 50),  # 2..51 folded into it
        ("gave_up", "a", None, None),
        ("escalated", "", None, None),
        ("gave_up", "a", None, None),
        ("escalated", "", None, None),
    ]


def test_damp_0s_sends_every_restart_and_a_real_crash_loop_sends_one_by_default(
    tmp_path: Path,
) -> None:
    out, each = tmp_path / "damped.jsonl", tmp_path / "each.jsonl"
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(f"""\
        version: 1
        supervisor: {{intensity: {{max_restarts: 30}}, backoff: {{initial: 1ms, max: 1ms}}}}
        notify:
          - {{on: [restarted, gave_up], command: [sh, -c, '{SH_APPEND}', {out}]}}
          - on: [restarted]
            damp: 0s
            command: [sh, -c, '{SH_APPEND}', {each}]
        jobs:
          - {{name: loop, command: [sh, -c, "exit 1"]}}
        """)
    )
    done = run_jobvisor(tmp_path, "run", "jobs.yaml")
    assert done.proc.returncode == 1, done.stderr
    assert [(e["event"], e.get("suppressed")) for e in lines_of(out)] == [
        ("restarted", 0),
        ("gave_up", None),
    ]
    assert [e["number"] for e in lines_of(each)] == list(range(1, 31))


def _posts(kit: HttpKit, n: int) -> list[dict[str, Any]]:
    """The bodies of the first ``n`` POSTs to ``kit``, once they all arrived."""
    return [json.loads(r.body) for r in kit.wait_requests(n)[:n]]


def test_a_damp_0s_notification_never_says_suppressed_whatever_a_damped_one_beside_it_folded(
    runtime: str,
) -> None:
    """Review r41a: the folded count of a damped notification leaked into the facts every later
    notification of the same event was sent with (``damp: 0s`` said ``suppressed: 2``)."""
    del runtime
    clock = ManualClock()
    with HttpKit(default=Reply(204)) as kit:
        damped = NotifySpec(
            on=(NotifyEvent.RESTARTED,), http=_target(f"{kit.url}/d"), name="damped"
        )
        each = NotifySpec(
            on=(NotifyEvent.RESTARTED,), http=_target(f"{kit.url}/e"), name="each", damp=0.0
        )
        notifier = Notifier((damped, each), SupervisorSpec(children=()), clock=clock)
        try:
            for number in range(1, 6):  # every 20 s: 2 and 3 folded by the 60 s damp
                notifier.handle(RestartScheduled(path="a", at=time.time(), delay=0, number=number))
                clock.advance(20)
            bodies = _posts(kit, 7)
        finally:
            notifier.close(5)
    heard = sorted((b["notifier"], b["number"], b.get("suppressed", "-")) for b in bodies)
    assert heard == [
        ("damped", 1, 0),
        ("damped", 4, 2),
        *[("each", number, "-") for number in range(1, 6)],
    ]


def test_a_restart_after_a_quiet_damp_interval_says_none_were_suppressed(runtime: str) -> None:
    """Review r41a: restarts folded long ago were told by the next restart, however much later
    (a day on, ``suppressed: 2``); a count goes only with a restart within ``damp`` of the last
    one folded."""
    del runtime
    clock = ManualClock()
    with HttpKit(default=Reply(204)) as kit:
        spec = NotifySpec(on=(NotifyEvent.RESTARTED,), http=_target(f"{kit.url}/h"))
        notifier = Notifier((spec,), SupervisorSpec(children=()), clock=clock)
        start = clock.now
        try:
            for at, number in ((0, 1), (10, 2), (20, 3), (86400, 1), (86410, 2), (86465, 3)):
                clock.advance(start + at - clock.now)
                notifier.handle(RestartScheduled(path="a", at=time.time(), delay=0, number=number))
            bodies = _posts(kit, 3)
        finally:
            notifier.close(5)
    assert [(b["number"], b["suppressed"]) for b in bodies] == [(1, 0), (1, 0), (3, 1)]


def test_a_reload_that_removes_a_group_or_a_breaker_ends_their_pages_with_nothing_sent(
    runtime: str,
) -> None:
    """Review r41a: removing group ``etl`` kept ``etl/load``'s page, and adding it back later
    sent a ``recovered`` for the old incident; a removed breaker's page is ended the same way."""
    del runtime
    top = "version: 1\nbreakers: {api: {failure_threshold: 3, reset_timeout: 1m}}\njobs:\n"
    whole = load_manifest(
        top + "  - {name: a, command: [x], service: true, breaker: api}\n"
        "  - {group: etl, jobs: [{name: load, command: [x], service: true}]}\n",
        env={},
    )
    less = load_manifest(top + "  - {name: a, command: [x], service: true}\n", env={})
    with HttpKit(default=Reply(204)) as kit:
        spec = NotifySpec(
            on=(NotifyEvent.GAVE_UP, NotifyEvent.BREAKER_OPENED, NotifyEvent.RECOVERED),
            http=_target(f"{kit.url}/h"),
        )
        notifier = Notifier((spec,), whole.root)
        at = time.time()
        try:
            notifier.handle(GaveUp(path="etl/load", at=at, reason="old incident"))
            notifier.handle(BreakerChanged(path="", at=at, name="api", old="closed", new="open"))
            notifier.update((spec,), less.root)
            notifier.handle(Reloaded(path="", at=at, removed=("etl",), updated=("a",)))
            notifier.update((spec,), whole.root)
            notifier.handle(Reloaded(path="", at=at, added=("etl",), updated=("a",)))
            notifier.handle(StateChanged(path="etl/load", at=at, old=State.STARTING,
                                         new=State.RUNNING))  # fmt: skip
            notifier.handle(BreakerChanged(path="", at=at, name="api", old="open", new="closed"))
            notifier.handle(GaveUp(path="a", at=at, reason="after"))  # the last: all came
            bodies = _posts(kit, 3)
        finally:
            notifier.close(5)
        assert len(kit.requests) == 3
    assert [(b["event"], b["path"]) for b in bodies] == [
        ("gave_up", "etl/load"),
        ("breaker_opened", ""),
        ("gave_up", "a"),
    ]


@pytest.mark.parametrize(
    ("name", "edit"), [("pager", {"damp": 300.0}), ("", {"timeout": 5.0, "retry": 1})]
)
def test_a_reload_that_edits_a_notifications_options_keeps_its_pages(
    name: str, edit: dict[str, Any]
) -> None:
    """Review r41a: pages were kept by every option of their notification, so adding
    ``damp: 5m`` (or a timeout) lost them and the job's recovery sent nothing."""
    root = load_manifest(
        "version: 1\njobs: [{name: svc, command: [x], service: true}]\n", env={}
    ).root
    with HttpKit(default=Reply(204)) as kit:
        on = (NotifyEvent.GAVE_UP, NotifyEvent.RECOVERED)
        old = NotifySpec(on=on, http=_target(f"{kit.url}/h"), name=name)
        new = NotifySpec(on=on, http=_target(f"{kit.url}/h"), name=name, **edit)
        notifier = Notifier((old,), root)
        at = time.time()
        try:
            notifier.handle(GaveUp(path="svc", at=at, reason="r"))
            # Delivered first: an edited timeout is another lane, which does not wait for the
            # old one's queue.
            kit.wait_requests(1)
            notifier.update((new,), root)
            notifier.handle(Reloaded(path="", at=at))
            notifier.handle(StateChanged(path="svc", at=at, old=State.STARTING, new=State.RUNNING))
            bodies = _posts(kit, 2)
        finally:
            notifier.close(5)
    assert [(b["event"], b["path"]) for b in bodies] == [("gave_up", "svc"), ("recovered", "svc")]
    assert bodies[1]["recovered_from"][0]["id"] == bodies[0]["id"]


# -- what a body says of a job never started; what the log says of a flood; labels -----------------


def _drain(received: queue.Queue[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    while not received.empty():
        out.append(received.get_nowait()[1])
    return out


def test_a_job_never_started_for_its_dependency_says_why_and_the_failure_behind_it(
    tmp_path: Path, hook: Any
) -> None:
    """The trial's finding: ``b``'s ``failed`` had ``last_exit`` null and no ``causes``,
    while status and the journal said ``dependency a failed``."""
    url, received = hook
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(f"""\
        version: 1
        notify: [{{name: ok, on: [failed], http: {{url: "{url}/echo"}}}}]
        jobs:
          - {{name: a, command: [sh, -c, "exit 5"], restart: temporary}}
          - {{name: b, command: ["true"], depends_on: [a]}}
        """)
    )
    done = run_jobvisor(tmp_path, "run", "jobs.yaml")
    assert done.proc.returncode == 1, done.stderr
    bodies = {body["path"]: body for body in _drain(received)}  # the run waited for them
    assert set(bodies) == {"a", "b"}
    a, b = bodies["a"], bodies["b"]
    failure = "command sh -c 'exit 5' exited with 5"
    assert (a["reason"], a["causes"]) == ("temporary", ["temporary", failure])
    assert b["reason"] == "dependency a failed"
    assert b["causes"] == ["dependency a failed", failure]
    assert b["last_exit"]["outcome"] == "failed"
    assert b["last_exit"]["code"] is None
    assert b["last_exit"]["error"] == "dependency a failed"


def test_a_full_queue_and_a_stop_say_how_many_they_dropped_not_a_line_each(
    logs: Any, runtime: str
) -> None:
    """The trial's finding: a crash loop with a slow receiver wrote a warning per dropped
    notification (3,857 in 20 s), then an error per one the stop left unsent (2,988). The
    first drop is said, then how many more every DROPS_SAID_EVERY, and the stop's in one
    line; the metrics and the journal still count each."""
    del runtime
    clock = ManualClock()
    rows: list[dict[str, Any]] = []
    with HttpKit(Stall()) as kit:
        spec = NotifySpec(
            on=(NotifyEvent.GAVE_UP,), http=_target(kit.url + "/"), timeout=30, retry=0, name="pg"
        )
        notifier = Notifier(
            (spec,),
            SupervisorSpec(children=()),
            record=lambda _a, _p, d: rows.append(d),
            clock=clock,
        )
        try:
            give_up(notifier)
            kit.wait_requests(1)
            for _ in range(QUEUE_SIZE + 500):
                give_up(notifier)
            clock.advance(DROPS_SAID_EVERY)
            give_up(notifier)
            for _ in range(10):
                give_up(notifier)
        finally:
            notifier.close(0.1)
    said = [r.message for r in logs.records if r.channel == "supervision.notify"]
    assert [m for m in said if "dropped" in m] == [
        "notify pg: gave_up of j dropped: 1000 notifications are waiting already",
        "notify pg: 500 more dropped (the queue of 1000 is full)",
        "notify pg: 10 more dropped (the queue of 1000 is full)",
    ]
    assert [m for m in said if "not sent" in m or "no answer" in m] == [
        "notify pg: gave_up of j not delivered after 1 try: no answer yet when jobvisor stopped",
        "notify pg: 1,000 not sent: jobvisor was stopping",
    ]
    assert notifier.deliveries()["pg", "dropped"] == 511
    assert notifier.deliveries()["pg", "failed"] == QUEUE_SIZE + 1
    assert len(rows) == QUEUE_SIZE + 1


def test_a_second_notification_of_one_name_is_refused_naming_the_first() -> None:
    """The trial's finding: two named ``pager`` shared one series and their log lines,
    and a notification is known by its name."""
    text = textwrap.dedent("""\
        version: 1
        notify:
          - {name: pager, on: [failed], command: [x]}
          - {name: pager, on: [gave_up], command: [y]}
        jobs:
          - name: j
            command: [x]
            notify: [{name: p, on: [failed], command: [x]}, {name: p, on: [failed], command: [y]}]
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    assert [(i.path, i.line, i.message) for i in caught.value.issues] == [
        (
            "notify[1].name",
            4,
            (
                "expected a name no other notification here has, got 'pager' "
                "(already used by notify[0].name at line 3)"
            ),
        ),
        (
            "jobs[0].notify[1].name",
            8,
            (
                "expected a name no other notification here has, got 'p' "
                "(already used by jobs[0].notify[0].name at line 8)"
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("{secret: {env: HOOKURL}}", "***"),
        ('"${secret:HOOKURL}"', "***"),
        ('"${secret:HOOKURL}/more"', "***/more"),  # as its log lines say it
    ],
)
def test_an_unnamed_notifiers_secret_url_shows_no_part_of_it_in_its_metric_label(
    tmp_path: Path, url: str, label: str, runtime: str
) -> None:
    """The trial's finding: logs and the journal said ``notify ***``, ``/metrics``
    ``notification="http://127.0.0.1:41969"``, a part of the secret; a reload said it too."""
    manifest = load_manifest(
        textwrap.dedent(f"""\
        version: 1
        state_dir: {tmp_path}
        notify: [{{on: [gave_up], http: {{url: {url}}}}}]
        jobs: [{{name: j, command: [x]}}]
        """),
        env={"HOOKURL": "http://127.0.0.1:41969/hook"},
    )
    with compose(manifest, runtime=runtime, stream=sys.stderr) as composition:
        notifier = composition.notifier
        assert notifier is not None
        labels = {name for name, _ in notifier.deliveries()}
        mask = composition.masker.mask
    assert labels == {label}
    bare = load_manifest("version: 1\njobs: [{name: j, command: [x]}]\n", env={})
    lines = notify_changes((), bare.root, manifest.notify, manifest.root, mask=mask)
    assert lines == [f"notify: add {label}"]


def test_every_problem_of_one_notification_is_said_not_its_first_alone() -> None:
    """The trial's finding: a bad ``on`` hid the entry's other problems until it was fixed."""
    text = textwrap.dedent("""\
        version: 1
        notify:
          - {on: [nope], command: [x], timeout: 0s, retry: -1}
          - {command: [x], http: {url: "ftp://x/"}, damp: 5m}
        jobs: [{name: j, command: [x]}]
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    assert [i.path for i in caught.value.issues] == [
        "notify[0].on[0]",
        "notify[0].timeout",
        "notify[0].retry",
        "notify[1].on",
        "notify[1].http.url",
        "notify[1].command",  # both: exactly one of them
    ]


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_notifier_trusts_the_ca_bundle_an_http_job_trusts(
    tmp_path: Path, variable: str, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    """The trial's finding: REQUESTS_CA_BUNDLE made http jobs trust a private CA, and not
    the notifiers beside them; a bundle that cannot be read is the delivery's error."""
    del runtime
    made = self_signed(tmp_path)
    if made is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, context = made
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with HttpKit(Reply(204), ssl_context=context) as kit:
        errors = []
        for bundle in (None, str(cert), str(tmp_path / "nowhere.pem")):
            if bundle is not None:
                monkeypatch.setenv(variable, bundle)
            notifier, rows = one_notifier(http=_target(kit.url + "/"), retry=0)
            try:
                give_up(notifier)
                errors.append(rows.get(timeout=20).get("error", ""))
            finally:
                notifier.close(5)
    untrusted, trusted, unread = errors
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted
    assert trusted == ""
    assert unread.startswith(f"cannot read the CA bundle {tmp_path}/nowhere.pem ({variable})")
    assert len(kit.requests) == 1
