"""A real `jobvisor daemon` process: control verbs, reload by difference, signals, sd_notify."""

from __future__ import annotations

import _socket
import contextlib
import functools
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from actorkit import Recorder
from conftest import RUNTIME
from faultkit import DAEMON as BASE
from faultkit import Jobvisor, Running, gone, http_daemon, start_daemon, stop_daemon, wait_until

from actors._env import JobEnv, SharedEnv
from supervision import (
    ActorSpec,
    CommandWork,
    HttpWork,
    JobSpec,
    RestartType,
    Schedule,
    Strategy,
    SupervisorSpec,
    python_job,
)
from supervision._daemon import applied, diff_specs
from supervision._history import read_history
from supervision._table import flatten_status

if TYPE_CHECKING:
    from supervision._spec import ChildSpec

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Running]:
    running = start_daemon(tmp_path, BASE)
    yield running
    assert stop_daemon(running) == 0


def test_status_and_every_verb_with_exit_codes(daemon: Running) -> None:
    nodes = daemon.nodes()
    assert nodes["svc"]["state"] == "running"
    text = daemon.cli("status")
    assert text.returncode == 0
    assert "svc" in text.stdout
    assert daemon.cli("restart", "svc").returncode == 0
    assert daemon.nodes()["svc"]["starts"] == 2
    assert daemon.cli("stop", "svc").returncode == 0
    assert daemon.nodes()["svc"]["state"] == "stopped"
    assert daemon.cli("start", "svc").returncode == 0
    assert daemon.nodes()["svc"]["state"] in ("starting", "running")
    missing = daemon.cli("restart", "nope")
    assert missing.returncode == 4
    assert "nope" in missing.stderr
    assert daemon.nodes()["svc"]["failures"] == 0, "commanded stops are not failures"


GROUPED = """
version: 1
jobs:
  - group: g
    jobs:
      - {name: a, service: true, command: "echo up; exec sleep 60", output: {}}
"""


def test_a_path_with_a_doubled_or_trailing_slash_is_the_same_path_in_every_command(
    tmp_path: Path,
) -> None:
    # restart and signal took g//a as g/a (and echoed g//a back); status, logs and history
    # found no such path, and history said g/ had no rows (operator trial h232).
    running = start_daemon(tmp_path, GROUPED)
    try:
        nodes = lambda: {n["path"]: n for n in flatten_status(running.status())}  # noqa: E731
        wait_until(lambda: nodes()["g/a"]["state"] == "running", "g/a running")
        wait_until(lambda: running.cli("logs", "g/a").stdout.endswith("up\n"), "its line")
        for path in ("g//a", "g/a/", "/g/a", "g//a//"):
            status = running.cli("status", path)
            assert status.returncode == 0, (path, status.stderr)
            assert "g/a " in status.stdout, (path, status.stdout)
            logs = running.cli("logs", path)
            assert (logs.returncode, logs.stdout.endswith("up\n")) == (0, True), (path, logs)
            restart = running.cli("restart", path)
            assert (restart.returncode, restart.stdout) == (0, "g/a: restarted\n"), (path, restart)
            # The journal writes the restart's rows on its own thread: waited for, not raced.
            wait_until(
                lambda: running.cli("history", "g/a", "--json").stdout.strip() != "[]", "rows"
            )
            history = running.cli("history", path, "--json")
            assert history.returncode == 0, (path, history.stderr)
            assert {row["path"] for row in json.loads(history.stdout)} == {"g/a"}, path
        for path in ("g/", "g//"):
            history = running.cli("history", path, "--json")
            assert history.returncode == 0, (path, history.stderr)
            assert "g/a" in {row["path"] for row in json.loads(history.stdout)}, path
    finally:
        assert stop_daemon(running) == 0


def test_status_while_the_daemon_stops_says_it_is_stopping_not_that_none_runs(
    tmp_path: Path,
) -> None:
    # For its jobs' whole stop grace, status said "no daemon is running" while a second daemon
    # was refused because "another jobvisor (daemon, pid N) holds" the dir (operator trial h232)
    running = start_daemon(
        tmp_path,
        """
        version: 1
        jobs:
          - name: deaf
            service: true
            command: "trap '' TERM; touch up; exec sleep 60"
            stop: {grace: 60s}
        """,
    )
    try:
        # Its trap set first: a SIGTERM before it ended the job, and the daemon, at once (CI).
        wait_until((tmp_path / "up").exists, "deaf ignores SIGTERM", proc=running.proc)
        running.proc.send_signal(signal.SIGTERM)  # its jobs get 60 s: it stops for that long
        wait_until(lambda: running.cli("status").returncode == 3, "the socket gone")
        out = running.cli("status")
        said = f"jobvisor: the daemon (pid {running.proc.pid}) that holds {running.state} takes"
        assert out.stderr.startswith(said), out.stderr
        assert "no command: it is stopping" in out.stderr, out.stderr
        assert "no daemon is running" not in out.stderr, out.stderr
        assert running.proc.poll() is None
    finally:
        stop_daemon(running)  # a second SIGTERM: kills at once


def test_no_daemon_is_exit_3(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE))
    for verb in (["status"], ["stop", "svc"], ["reload"]):
        out = subprocess.run(
            [*CLI, *verb],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 3, out.stderr
        assert "no daemon" in out.stderr


def test_socket_is_private(daemon: Running) -> None:
    mode = (daemon.state / "control.sock").stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_reload_applies_only_the_difference(daemon: Running) -> None:
    before = daemon.nodes()
    manifest = (
        BASE.replace("args: [4]", "args: [9]")
        + """
  - name: extra
    command: [sh, -c, "echo hi"]
"""
    )
    manifest = manifest.replace(
        """  - name: svc
    service: true
    command: [sh, -c, "while true; do sleep 0.05; done"]
""",
        "",
    )
    manifest += """  - name: svc
    service: true
    command: [sh, -c, "while true; do sleep 0.05; done"]
"""
    (daemon.dir / "jobs.yaml").write_text(textwrap.dedent(manifest))
    out = daemon.cli("reload")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["replace tick: args", "add extra"]
    after = daemon.nodes()
    assert after["svc"]["starts"] == before["svc"]["starts"], "unchanged: untouched"
    assert "extra" in after
    assert after["tick"]["starts"] == 1  # replaced: a new child
    # Removing a job stops it.
    (daemon.dir / "jobs.yaml").write_text(
        textwrap.dedent(BASE).replace(
            """  - name: tick
    python: "math:sqrt"
    args: [4]
    every: 10s
""",
            "",
        )
    )
    out = daemon.cli("reload")
    assert out.returncode == 0, out.stderr
    assert "remove tick" in out.stdout
    assert "tick" not in daemon.nodes()


def test_a_reload_that_replaces_a_stopped_job_says_it_starts_again(daemon: Running) -> None:
    # As supervisord's update: a changed job is a new one, started; a person who stopped it
    # is told, not surprised to see it run (the line said only "replace svc").
    assert daemon.cli("stop", "svc").returncode == 0
    changed = BASE.replace("sleep 0.05", "sleep 0.06")
    assert changed != BASE
    (daemon.dir / "jobs.yaml").write_text(textwrap.dedent(changed))
    out = daemon.cli("reload")
    assert out.returncode == 0, out.stderr
    said = "replace svc: command (it was stopped: it starts again, with its new spec)"
    assert said in out.stdout.splitlines(), out.stdout
    assert daemon.nodes()["svc"]["state"] == "running"


def test_a_reload_that_replaces_a_job_that_never_ran_does_not_say_again(tmp_path: Path) -> None:
    """A job never started (``autostart: false``) was said "it was stopped: it starts again"
    when a reload replaced it with ``autostart: true``: it starts for the first time."""
    web = '  - name: web\n    service: true\n    autostart: false\n    command: [sh, -c, "{}"]\n'
    daemon = start_daemon(tmp_path, textwrap.dedent(BASE) + web.format("exec sleep 601"))
    try:
        edits = (
            ("exec sleep 602", "replace web: command (not started: autostart: false)"),
            ("exec sleep 602", "update web: autostart: true "),  # nothing started: web waits
            (
                "exec sleep 603",
                "replace web: command (it never ran: it starts now, with its new spec)",
            ),
        )
        for command, said in edits:
            edited = web.format(command)
            if said.startswith("update") or "(it never ran" in said:
                edited = edited.replace("    autostart: false\n", "")
            (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE) + edited)
            out = daemon.cli("reload")
            assert out.returncode == 0, out.stderr
            assert out.stdout.startswith(said), out.stdout
            if not said.endswith("new spec)"):
                node = daemon.nodes()["web"]
                assert (node["state"], node["starts"]) == ("stopped", 0), node
        wait_until(lambda: daemon.nodes()["web"]["starts"] == 1, "web started", proc=daemon.proc)
    finally:
        assert stop_daemon(daemon) == 0


def test_a_reload_that_replaces_a_job_failed_by_its_dependency_says_it_had_failed(
    tmp_path: Path,
) -> None:
    """A job whose dependency failed finally is failed with no start of its own: replacing it
    was said "it never ran: it starts now", though it had failed (and waits for its
    dependency)."""
    jobs = """
        version: 1
        jobs:
          - {{name: dep, command: "exit 3", restart: temporary}}
          - {{name: after, command: "{}", depends_on: [dep]}}
    """
    daemon = start_daemon(tmp_path, textwrap.dedent(jobs.format("true")))
    try:
        wait_until(
            lambda: daemon.nodes()["after"]["state"] == "failed", "after failed", proc=daemon.proc
        )
        assert daemon.nodes()["after"]["starts"] == 0
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(jobs.format("exit 0")))
        out = daemon.cli("reload")
        assert out.returncode == 0, out.stderr
        said = "replace after: command (it had failed: it starts again, with its new spec)"
        assert said in out.stdout.splitlines(), out.stdout
    finally:
        assert stop_daemon(daemon) == 0


def test_a_bad_manifest_changes_nothing(daemon: Running) -> None:
    before = daemon.nodes()
    (daemon.dir / "jobs.yaml").write_text("version: 1\njobs: [{name: x}]\n")
    out = daemon.cli("reload")
    assert out.returncode == 2
    assert "jobs[0]" in out.stderr
    after = daemon.nodes()
    assert after.keys() == before.keys()
    assert after["svc"]["starts"] == before["svc"]["starts"]


def test_a_reload_naming_another_manifest_says_which_one_the_daemon_read(
    daemon: Running,
) -> None:
    """The daemon reloads its own manifest; the one named only finds it ("no change" alone)."""
    other = daemon.dir / "other.yaml"
    other.write_text(textwrap.dedent(BASE) + "  - name: extra\n    command: [sh, -c, 'true']\n")
    state = str(daemon.state)
    out = daemon.cli("reload", "--manifest", str(other), "--state-dir", state)
    assert (out.returncode, out.stdout) == (0, "no change\n"), out.stderr
    assert out.stderr == (
        f"jobvisor: the daemon reads its own manifest, {daemon.dir / 'jobs.yaml'}, not {other}\n"
    )
    assert daemon.cli("reload").stderr == ""


def test_sighup_reloads(daemon: Running) -> None:
    (daemon.dir / "jobs.yaml").write_text(
        textwrap.dedent(BASE)
        + """
  - name: late
    command: [sh, -c, "true"]
"""
    )
    daemon.proc.send_signal(signal.SIGHUP)
    journal = daemon.state / "journal.sqlite3"
    # The reload starts `late`; its attempt reaches the journal: wait on that, not on time.
    wait_until(lambda: read_history(journal, "late"), "late journaled", proc=daemon.proc)
    assert "late" in daemon.nodes()


def test_a_sigterm_while_a_readiness_probe_holds_the_start_stops_the_daemon_now(
    tmp_path: Path,
) -> None:
    """It waited up to 60 s for the tree's start, said "daemon ready", and only then stopped."""
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent("""
        version: 1
        jobs:
          - name: slow
            service: true
            command: [sleep, '100']
            ready: {command: [sh, -c, "test -e go"], timeout: 60s, interval: 20ms}
        """)
    )
    proc = subprocess.Popen(
        [*CLI, "daemon"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until((tmp_path / ".jobvisor" / "control.sock").exists, "it serves", proc=proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "daemon ready" not in err
    assert "daemon stopping" in err


def test_two_daemons_on_one_state_dir(daemon: Running) -> None:
    second = subprocess.run(
        [*CLI, "daemon"],
        cwd=daemon.dir,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 2
    assert "another jobvisor (daemon, pid" in second.stderr
    assert daemon.status()["state"] == "running"


def test_malformed_requests_get_errors_and_never_hurt_the_daemon(daemon: Running) -> None:
    path = str(daemon.state / "control.sock")
    rng = random.Random(7)
    payloads = [
        b"not json\n",
        b"[1, 2]\n",
        b'{"v": 99, "op": "status"}\n',
        b'{"v": 1, "op": "explode"}\n',
        b'{"v": 1, "op": "stop"}\n',
        b'{"v": 1, "op": "stop", "job": 5}\n',
        b"\xff\xfe\n",
        b'{"v": 1, "op": "sta',
        b"x" * (70 * 1024) + b"\n",
        b"",
    ] + [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b"\n" for _ in range(30)]
    for payload in payloads:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(path)
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                reply = sock.makefile().readline()
            except (BrokenPipeError, ConnectionResetError):
                continue  # the daemon refused an oversized request early: also fine
            if reply:
                assert json.loads(reply)["ok"] is False
    assert daemon.status()["state"] == "running"


def test_a_number_past_pythons_digits_limit_is_a_bad_request_not_an_internal_error(
    daemon: Running,
) -> None:
    """json.loads raised ValueError (not JSONDecodeError) for it: `internal`, and a traceback
    at ERROR in the daemon's log for any client's line (trial h252)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(daemon.state / "control.sock"))
        sock.sendall(b'{"v": 1, "op": "status", "x": ' + b"9" * 5000 + b"}\n")
        reply = json.loads(sock.makefile().readline())
    assert (reply["ok"], reply["code"]) == (False, "bad_request")
    assert reply["error"].startswith("not JSON: a number of more than 4300 digits")
    assert daemon.status()["state"] == "running"


def _ask(daemon: Running, req: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(daemon.state / "control.sock"))
        sock.sendall(json.dumps(req).encode() + b"\n")
        reply: dict[str, Any] = json.loads(sock.makefile().readline())
    return reply


def test_a_signal_request_names_a_real_signal_by_its_number(daemon: Running) -> None:
    ask = {"v": 1, "op": "signal", "job": "svc"}
    # Running from its start, its process a moment later (under load, after the daemon's ready).
    wait_until(lambda: daemon.nodes()["svc"]["pid"], "svc's process")
    bad: list[dict[str, Any]] = [{}, {"signal": "HUP"}, {"signal": 0}, {"signal": True}]
    for extra in [*bad, {"signal": 1.0}, {"signal": 999}]:
        reply = _ask(daemon, {**ask, **extra})
        assert (reply["ok"], reply["code"]) == (False, "bad_request"), (extra, reply)
        assert reply["error"] == f"signal needs a signal's number, got {extra.get('signal')!r}"
    assert _ask(daemon, {**ask, "signal": int(signal.SIGCONT)}) == {"ok": True, "result": "SIGCONT"}
    assert _ask(daemon, {**ask, "job": "/"})["code"] == "bad_request"
    svc = daemon.nodes()["svc"]
    assert (svc["state"], svc["starts"], svc["failures"]) == ("running", 1, 0)


def test_kill_9_keeps_the_journal_and_a_new_daemon_starts(tmp_path: Path) -> None:
    # tick's first run comes one interval after the start: 10 s of BASE's would be waited out.
    running = start_daemon(tmp_path, BASE.replace("every: 10s", "every: 100ms"))
    try:
        assert running.cli("restart", "svc").returncode == 0
        journal = running.state / "journal.sqlite3"
        wait_until(lambda: read_history(journal, "tick"), "tick journaled", proc=running.proc)
        os.kill(running.proc.pid, signal.SIGKILL)
        running.proc.wait(10)
    finally:
        stop_daemon(running)
    assert read_history(journal, "tick")
    again = start_daemon(tmp_path, BASE)
    try:
        assert again.nodes()["svc"]["state"] == "running"
    finally:
        assert stop_daemon(again) == 0


def test_diff_specs() -> None:
    a, b, c = (python_job(n, "jobfuncs:ok", n) for n in "abc")
    b2 = python_job("b", "jobfuncs:ok", "changed")
    group = SupervisorSpec(name="g", children=(a,))
    old = SupervisorSpec(children=(a, b, group))
    new = SupervisorSpec(children=(b2, c, SupervisorSpec(name="g", children=(a, c))))
    changes = diff_specs(old, new)
    assert [(x.op, x.path) for x in changes] == [
        ("remove", "a"),
        ("replace", "b"),
        ("add", "c"),
        ("add", "g/c"),
        ("update", "g"),
        ("update", ""),
    ]
    # Each added or replaced child goes back before the sibling that follows it in the manifest;
    # each changed group (the root too) is updated last, to the manifest's order and policy.
    assert [x.before for x in changes[:4]] == [None, "g", "g", None]
    assert [(x.parent, x.spec) for x in changes[4:]] == [("", new.children[2]), ("", new)]
    assert [line for x in changes for line in x.summary] == [
        "remove a",
        "replace b: args",
        "add c",
        "add g/c",
    ]
    assert diff_specs(old, old) == []
    # A group down now only takes its new spec, to start from when it starts again; what
    # changes in it is said all the same.
    down = diff_specs(old, new, down=frozenset({"g"}))
    assert [(x.op, x.path) for x in down] == [
        ("remove", "a"),
        ("update", "g"),  # before the slow steps: the group may start meanwhile
        ("replace", "b"),
        ("add", "c"),
        ("update", ""),
    ]
    assert down[1].summary == ("add g/c (at g's next start)",)
    # Its own policy changed: updated in place, never replaced (its children keep running).
    slower = SupervisorSpec(name="g", children=(a,), strategy=Strategy.ONE_FOR_ALL)
    assert [x.summary for x in diff_specs(old, replace(old, children=(a, b, slower)))] == [
        ("update g: strategy: one_for_all",),
        (),
    ]


def test_a_replace_names_the_fields_it_changes_as_the_manifest_spells_them() -> None:
    """Each changed field by its key (a work's by the job's key, stop.grace once for the job's
    and its work's grace); an env by its variables' names, those only its env files set apart,
    a long list cut short; what no key of a manifest says leaves the line as it was."""
    work = CommandWork(argv=("sleep", "1"), env={"MODE": "a"}, grace=2.0)
    job = JobSpec(name="web", work=work, grace=2.0)
    shared = SharedEnv({f"V{i}": "x" for i in range(9)})
    files = JobSpec(name="web", work=CommandWork(argv=("sleep", "1"), env=JobEnv(shared)))

    def said(was: ChildSpec, new: ChildSpec) -> list[str]:
        old_root, new_root = SupervisorSpec(children=(was,)), SupervisorSpec(children=(new,))
        return [line for x in diff_specs(old_root, new_root) for line in x.summary]

    other = replace(work, argv=("sleep", "2"), grace=3.0, stop_signal=signal.SIGINT)
    assert said(job, replace(job, work=other, grace=3.0, restart=RestartType.PERMANENT)) == [
        "replace web: command, restart, stop.grace, stop.signal"
    ]
    assert said(job, replace(job, schedule=Schedule(every=5.0))) == ["replace web: every"]
    secret = replace(work, env={"MODE": "a", "API_KEY": "s3cr3t-value"})
    assert said(job, replace(job, work=secret)) == ["replace web: env (API_KEY)"]
    fewer = JobEnv(SharedEnv({"V0": "y", "V1": "x"}), {"V1": "own", "MODE": "b"})
    assert said(files, replace(files, work=replace(files.work, env=fewer))) == [
        "replace web: env (V1, MODE), env_file (V0, V2, V3, V4, V5 and 3 more)"
    ]
    http = JobSpec(name="web", work=HttpWork(url="http://127.0.0.1:9/", headers={"A": "1"}))
    again = replace(http.work, headers={"A": "2"}, timeout=3.0)
    assert said(http, replace(http, work=again)) == ["replace web: http.headers, http.timeout"]
    assert said(job, replace(job, work=HttpWork(url="http://127.0.0.1:9/"))) == [
        "replace web: http (was command)"
    ]
    # A group become a job, an embedding's actor: no manifest's field says what changed.
    assert said(SupervisorSpec(name="web"), job) == ["replace web"]
    actor = ActorSpec(name="web", actor_class=Recorder)
    assert said(actor, replace(actor, args=(1,))) == ["replace web"]


def test_a_reload_stops_every_job_it_removes_before_it_starts_any() -> None:
    """A job moved from one group to another never runs at both paths, whichever comes first
    in the manifest: its old path is removed before anything is added, replaced or changed
    (it was added beside the group before the group's steps removed it), and a group down
    takes its new spec next, before the slow steps (it started meanwhile from its old one)."""
    x, a, b = (python_job(n, "jobfuncs:ok", n) for n in "xab")
    b2 = python_job("b", "jobfuncs:ok", "changed")
    old = SupervisorSpec(
        children=(b, SupervisorSpec(name="g", children=(a, x)), SupervisorSpec(name="h"))
    )
    new = SupervisorSpec(
        children=(x, b2, SupervisorSpec(name="g", children=(a,)), SupervisorSpec(name="h"))
    )
    steps = [(c.op, c.path) for c in diff_specs(old, new)]
    assert steps == [
        ("remove", "g/x"),
        ("add", "x"),
        ("replace", "b"),
        ("update", "g"),
        ("update", ""),
    ]
    into_h = replace(
        new, children=(b2, SupervisorSpec(name="g"), SupervisorSpec(name="h", children=(a, x)))
    )
    steps = [(c.op, c.path) for c in diff_specs(old, into_h, down=frozenset({"h"}))]
    assert steps == [
        ("remove", "g/x"),
        ("remove", "g/a"),
        ("update", "h"),
        ("replace", "b"),
        ("update", "g"),
        ("update", ""),
    ]
    # Any prefix of them is a base the next diff goes on from.
    changes = diff_specs(old, new)
    for k in range(len(changes) + 1):
        partial = functools.reduce(applied, changes[:k], old)
        assert functools.reduce(applied, diff_specs(partial, new), partial) == new


def test_a_reload_cut_short_leaves_a_base_the_next_one_goes_on_from() -> None:
    """After any prefix of a reload's steps, the next reload's diff only does what is left:
    it never adds a child the first one added (a half-applied reload failed for ever, "b: a
    child of that name exists already")."""
    a, b, c, d = (python_job(n, "jobfuncs:ok", n) for n in "abcd")
    b2 = python_job("b", "jobfuncs:ok", "changed")
    old = SupervisorSpec(children=(a, b, SupervisorSpec(name="g", children=(a, c))))
    new = SupervisorSpec(
        strategy=Strategy.REST_FOR_ONE,
        children=(d, SupervisorSpec(name="g", children=(c, d)), b2),
    )
    changes = diff_specs(old, new)
    for k in range(len(changes) + 1):
        partial = functools.reduce(applied, changes[:k], old)
        rest = diff_specs(partial, new)
        assert functools.reduce(applied, rest, partial) == new
        done = {(x.op, x.path) for x in changes[:k] if x.op != "update"}
        assert not done & {(x.op, x.path) for x in rest}, k


def test_a_reload_keeps_each_job_in_its_place(daemon: Running) -> None:
    """Start order, stop order and rest_for_one go by the manifest's order, after a reload too."""
    manifest = textwrap.dedent(BASE) + "  - name: last\n    command: [sleep, '100']\n"
    (daemon.dir / "jobs.yaml").write_text(manifest)
    assert daemon.cli("reload").returncode == 0
    (daemon.dir / "jobs.yaml").write_text(manifest.replace("args: [4]", "args: [9]"))
    out = daemon.cli("reload")
    assert (out.returncode, out.stdout) == (0, "replace tick: args\n"), out.stderr
    assert list(daemon.nodes()) == ["svc", "tick", "last"]


def test_jobs_do_not_inherit_systemds_notify_socket_or_watchdog(tmp_path: Path) -> None:
    """They are the daemon's: a job could say READY=1 or STOPPING=1 for the whole service, and
    under NotifyAccess=main systemd warned of each (sd_notify's unset_environment, h271). The
    daemon still talks to the socket: READY=1 came (start_daemon), STOPPING=1 comes."""
    manifest = f"""\
        version: 1
        jobs:
          - {{name: dump, command: [sh, -c, "env > {tmp_path}/env.tmp; mv {tmp_path}/env.tmp {tmp_path}/env"]}}
          - {{name: svc, service: true, command: [sleep, "100"]}}
        """
    running = start_daemon(tmp_path, manifest, env_extra={"WATCHDOG_USEC": "60000000"})
    try:
        wait_until((tmp_path / "env").exists, "the job wrote its environment")
        names = {line.partition("=")[0] for line in (tmp_path / "env").read_text().splitlines()}
        assert names & {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} == set()
        assert "PATH" in names
        running.proc.send_signal(signal.SIGTERM)
        running.wait_notify("STOPPING=1")
        assert running.proc.wait(30) == 0
    finally:
        assert stop_daemon(running) == 0  # a second SIGTERM only if the first did not end it


def test_detach_returns_once_the_daemon_answers(tmp_path: Path) -> None:
    """`daemon --detach && jobvisor status` works: the launcher waits for the daemon's readiness."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    pidfile = tmp_path / "jobvisor.pid"
    env = {**ENV, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    try:
        launcher = subprocess.run(
            [*CLI, "daemon", "--detach", "--pidfile", str(pidfile), "--log-level", "debug"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert launcher.returncode == 0, launcher.stderr
        # Its log goes to a private file in the state dir (its stderr is /dev/null once it
        # is ready), and the launcher says so.
        pid = int(pidfile.read_text())
        log = tmp_path / ".jobvisor" / "daemon.log"
        assert f"jobvisor: daemon ready (pid {pid}); its log: {log}" in launcher.stderr
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert "daemon ready" in log.read_text()
        # No wait for READY=1 first: the daemon already answers.
        status = subprocess.run(
            [*CLI, "status", "--json"],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["state"] == "running"
        while b"READY=1" not in notify.recv(4096):
            pass
        os.kill(pid, signal.SIGTERM)
        while b"STOPPING=1" not in notify.recv(4096):
            pass
        # The pidfile is removed as the very last step of a clean stop.
        wait_until(lambda: not pidfile.exists(), "the daemon finished stopping")
        assert "daemon stopping" in log.read_text(), "logged after its readiness too"
    finally:
        notify.close()
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.mark.parametrize(
    ("manifest", "says"),
    [
        (None, "no manifest at"),
        ("version: 1\njobs:\n  - name: a\n    command: [true\n", "jobs.yaml"),
        (
            "version: 1\njobs:\n  - name: a\n    command: [true]\n    restart: sometimes\n",
            "restart",
        ),
    ],
    ids=["missing", "yaml-error", "bad-field"],
)
def test_detach_with_a_bad_manifest_says_why_and_exits_2(
    tmp_path: Path, manifest: str | None, says: str
) -> None:
    if manifest is not None:
        (tmp_path / "jobs.yaml").write_text(manifest)
    launcher = subprocess.run(
        [*CLI, "daemon", "--detach"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert launcher.returncode == 2, launcher.stderr
    assert says in launcher.stderr
    assert "Traceback" not in launcher.stderr
    assert not (tmp_path / ".jobvisor" / "control.sock").exists()


def test_detach_beside_a_running_daemon_says_so_and_exits_2(daemon: Running) -> None:
    launcher = subprocess.run(
        [*CLI, "daemon", "--detach"],
        cwd=daemon.dir,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert launcher.returncode == 2, launcher.stderr
    assert "another jobvisor (daemon, pid" in launcher.stderr, launcher.stderr
    assert daemon.nodes()["svc"]["state"] == "running", "the running daemon is untouched"


def test_watchdog_pings_when_systemd_asks(tmp_path: Path) -> None:
    running = start_daemon(tmp_path, BASE, env_extra={"WATCHDOG_USEC": "200000"})
    try:
        running.wait_notify("WATCHDOG=1")
        running.wait_notify("WATCHDOG=1")
    finally:
        assert stop_daemon(running) == 0


def test_a_signal_that_lands_in_another_thread_still_wakes_the_daemon(daemon: Running) -> None:
    """The kernel gives a process signal to any thread; the main loop must wake all the same."""
    import ctypes

    pid = daemon.proc.pid
    # A thread parked on a lock (an actor waiting for mail), not one in a syscall that the
    # signal would interrupt: that is the case where nothing else wakes the main thread.
    parked = [
        int(t.name)
        for t in Path(f"/proc/{pid}/task").iterdir()
        if int(t.name) != pid and "futex" in (t / "wchan").read_text()
    ]
    assert parked, "the daemon's actors wait on locks in threads of their own"
    (daemon.dir / "jobs.yaml").write_text(
        textwrap.dedent(BASE)
        + """
  - name: late
    command: [sh, -c, "true"]
"""
    )
    libc = ctypes.CDLL(None, use_errno=True)
    sys_tgkill = 234  # x86_64
    assert libc.syscall(sys_tgkill, pid, parked[-1], signal.SIGHUP) == 0
    journal = daemon.state / "journal.sqlite3"
    wait_until(
        lambda: read_history(journal, "late"),
        "SIGHUP to a worker thread reloads the daemon",
        proc=daemon.proc,
        timeout=10,
    )


CHATTY = """
version: 1
jobs:
  - name: chatty
    python: "chatty:main"
  - name: slow
    service: true
    command: [sleep, "100"]
    ready: {command: [sh, -c, "test -e go"], timeout: 60s, interval: 20ms}
"""


def chatty(directory: Path, *then: str) -> Path:
    """A daemon's manifest whose python job writes a NUL and a fake verdict to its stderr
    first, then runs ``then`` (lines of its body); ``slow`` is ready once ``go`` exists.
    Returns the pidfile's path."""
    (directory / "jobs.yaml").write_text(textwrap.dedent(CHATTY))
    body = "".join(f"    {line}\n" for line in then)
    (directory / "chatty.py").write_text(
        "import sys\n"
        "from actors import current_attempt\n"
        "def main():\n"
        "    sys.stderr.write('hello\\0exit 7\\n')\n"
        "    sys.stderr.flush()\n" + body
    )
    return directory / "jobvisor.pid"


@contextlib.contextmanager
def stopped_at_the_end(pidfile: Path) -> Iterator[None]:
    """SIGTERM to the daemon of ``pidfile`` at the end, and wait for its clean stop."""
    try:
        yield
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
            wait_until(lambda: not pidfile.exists(), "the daemon stopped")


def test_a_detached_daemon_outlives_its_launcher_and_any_bytes_a_job_writes(
    tmp_path: Path,
) -> None:
    """Its stderr is the launcher's until it is ready: a launcher killed meanwhile breaks
    nothing that writes to it."""
    pidfile = chatty(
        tmp_path,
        "while not current_attempt().cancelled.wait(0.02):",  # stops when asked: no grace
        "    print('chatty', file=sys.stderr)",
    )
    launcher = subprocess.Popen(
        [*CLI, "daemon", "--detach", "--pidfile", str(pidfile)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with stopped_at_the_end(pidfile):
        try:
            wait_until(pidfile.exists, "the daemon wrote its pidfile")
            launcher.kill()  # gone before the daemon is ready, and before it could say anything
        finally:
            launcher.wait(30)
        (tmp_path / "go").touch()

        def nodes() -> dict[str, Any]:
            out = subprocess.run(
                [*CLI, "status", "--json"],
                cwd=tmp_path,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if out.returncode != 0:
                return {}
            return {n["path"]: n for n in json.loads(out.stdout)["children"]}

        wait_until(lambda: nodes().get("slow", {}).get("state") == "running", "slow running")
        chatty_node = nodes()["chatty"]
        assert (chatty_node["state"], chatty_node["failures"]) == ("running", 0), chatty_node


def test_a_nul_a_job_writes_before_readiness_is_not_the_verdict(tmp_path: Path) -> None:
    pidfile = chatty(tmp_path, "open('go', 'w').close()", "current_attempt().cancelled.wait()")
    with stopped_at_the_end(pidfile):
        launcher = subprocess.run(
            [*CLI, "daemon", "--detach", "--pidfile", str(pidfile)],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert launcher.returncode == 0, launcher.stderr
        assert "hello\\0exit 7" in launcher.stderr


ORDERED = """
version: 1
supervisor: {backoff: {initial: 1ms, max: 5ms}}
jobs:
  - name: a
    service: true
    command: [sleep, '100']
  - name: b
    service: true
    command: [sh, -c, "while [ ! -e crash ]; do sleep 0.02; done; rm crash; exit 1"]
  - name: c
    service: true
    command: [sleep, '100']
"""


def _crash_b(running: Running) -> dict[str, dict[str, Any]]:
    """Make ``b`` fail once; return the nodes once its restart has started it again."""
    starts = running.nodes()["b"]["starts"]
    (running.dir / "crash").touch()
    return wait_until(
        lambda: (
            (n := running.nodes())["b"]["starts"] > starts and n["b"]["state"] == "running" and n
        ),
        "b restarted",
        proc=running.proc,
    )


def test_a_reload_applies_a_change_of_the_supervisors_own_policy(tmp_path: Path) -> None:
    """The root's `supervisor:` block is applied in place: running jobs keep running."""
    running = start_daemon(tmp_path, ORDERED)
    try:
        manifest = textwrap.dedent(ORDERED).replace(
            "supervisor: {", "supervisor: {strategy: rest_for_one, intensity: {max_restarts: 7}, "
        )
        (tmp_path / "jobs.yaml").write_text(manifest)
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert out.stdout == (
            "update supervisor: strategy: rest_for_one; intensity: max_restarts=7 within=1m\n"
        )
        assert {n["starts"] for n in running.nodes().values()} == {1}, "nothing restarted"
        # rest_for_one now: b's failure restarts c, the one after it, and not a.
        nodes = _crash_b(running)
        assert wait_until(lambda: running.nodes()["c"]["starts"] == 2, "c restarted with b")
        assert running.nodes()["a"]["starts"] == 1
        # Applied: a second reload of the same manifest has nothing to do.
        assert running.cli("reload").stdout == "no change\n"
        assert nodes["b"]["failures"] == 1
    finally:
        assert stop_daemon(running) == 0


BREAKERS = """
version: 1
breakers:
  api: {failure_threshold: 5, reset_timeout: 30s}
  old: {failure_threshold: 2}
jobs:
  - name: svc
    service: true
    command: [sleep, '100']
"""


def test_a_reload_applies_a_change_of_the_breakers(tmp_path: Path) -> None:
    """A changed breaker takes its new thresholds in its state now; one no job names goes."""
    running = start_daemon(tmp_path, BREAKERS)
    try:
        new = textwrap.dedent(BREAKERS).replace(
            "  api: {failure_threshold: 5, reset_timeout: 30s}\n  old: {failure_threshold: 2}\n",
            "  api: {failure_threshold: 3, reset_timeout: 30s}\n  fresh: {}\n",
        )
        (tmp_path / "jobs.yaml").write_text(new)
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert out.stdout == (
            "add breaker fresh\nupdate breaker api: failure_threshold=3\nremove breaker old\n"
        )
        status = json.loads(running.cli("status", "--json").stdout)
        assert status["breakers"] == {"api": "closed", "fresh": "closed"}
        assert running.nodes()["svc"]["starts"] == 1
        assert running.cli("reload").stdout == "no change\n"
    finally:
        assert stop_daemon(running) == 0


def test_a_reload_puts_jobs_in_the_manifests_order(tmp_path: Path) -> None:
    """Moved jobs move, added ones land where the manifest puts them; rest_for_one follows."""
    old = ORDERED.replace("supervisor: {", "supervisor: {strategy: rest_for_one, ")
    running = start_daemon(tmp_path, old)
    try:
        head, a, b, c = textwrap.dedent(old).split("  - name: ")
        added = "new\n    service: true\n    command: [sleep, '100']\n"
        new = f"{head}  - name: {added}  - name: {c}  - name: {a}  - name: {b}"
        (tmp_path / "jobs.yaml").write_text(new)
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert out.stdout == "add new\nreorder supervisor: new, c, a, b\n"
        assert list(running.nodes()) == ["new", "c", "a", "b"]
        assert [n["starts"] for n in running.nodes().values()] == [1, 1, 1, 1]
        # b is last now: its failure restarts nothing after it.
        _crash_b(running)
        assert [n["starts"] for n in running.nodes().values()] == [1, 1, 1, 2]
    finally:
        assert stop_daemon(running) == 0


def test_a_group_restarted_after_a_reload_comes_back_as_the_manifest_says(tmp_path: Path) -> None:
    """A group's spec is the reloaded one: its restart brings its new jobs, not its old ones."""
    old = """
    version: 1
    jobs:
      - group: g
        jobs:
          - name: a
            service: true
            command: [sleep, '100']
    """
    running = start_daemon(tmp_path, old)
    try:
        new = (
            textwrap.dedent(old)
            + "      - name: b\n        service: true\n        command: [sleep, '100']\n"
        )
        (tmp_path / "jobs.yaml").write_text(
            new.replace("  - group: g\n", "  - group: g\n    restart: transient\n")
        )
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert out.stdout == "add g/b\nupdate g: restart: transient\n"
        assert running.cli("restart", "g").returncode == 0
        group = running.nodes()["g"]
        # Each counts on from the group's last incarnation (a's second start, b's too).
        assert [(n["path"], n["starts"]) for n in group["children"]] == [("g/a", 2), ("g/b", 2)]
        assert group["starts"] == 2
    finally:
        assert stop_daemon(running) == 0


def _history_lines(running: Running, job: str) -> list[str]:
    out = running.cli("history", job, "--limit", "100")
    assert out.returncode == 0, out.stderr
    return [line.split("  ", 2)[2] for line in out.stdout.splitlines()]


def test_a_restarted_group_counts_on_and_its_attempt_numbers_never_repeat(tmp_path: Path) -> None:
    manifest = """
    version: 1
    jobs:
      - group: mail
        backoff: {initial: 1ms, max: 1ms}
        intensity: {max_restarts: 1, within: 60s}
        jobs:
          - {name: giveup, command: "exit 3", restart: permanent}
          - {name: worker, service: true, command: [sleep, "100"]}
    """
    running = start_daemon(tmp_path, manifest)
    try:

        def giveup() -> dict[str, Any]:
            return {n["name"]: n for n in running.nodes()["mail"]["children"]}["giveup"]

        wait_until(lambda: giveup()["state"] == "gave_up", "mail/giveup gave up")
        out = running.cli("restart", "mail")
        assert (out.returncode, out.stdout, out.stderr) == (0, "mail: restarted\n", "")
        wait_until(lambda: giveup()["starts"] == 4, "mail/giveup started again twice")
        wait_until(lambda: giveup()["state"] == "gave_up", "mail/giveup gave up again")
        nodes = {n["name"]: n for n in running.nodes()["mail"]["children"]}
        assert [nodes["giveup"][k] for k in ("starts", "restarts", "failures")] == [4, 2, 4]
        assert nodes["worker"]["starts"] == 2
        attempts = [line for line in _history_lines(running, "mail/giveup") if "attempt" in line]
        assert [a.split()[1] for a in attempts] == ["1", "2", "3", "4"], attempts
    finally:
        assert stop_daemon(running) == 0


def test_a_job_whose_dependency_is_down_for_good_is_not_started_and_says_why(
    tmp_path: Path,
) -> None:
    manifest = """
    version: 1
    supervisor: {backoff: {initial: 1ms, max: 1ms}, intensity: {max_restarts: 0, within: 60s}}
    jobs:
      - {name: db, command: "exit 3"}
      - {name: app, service: true, command: [sleep, "100"], depends_on: [db]}
      - {name: cache, service: true, command: [sleep, "100"]}
      - {name: web, service: true, command: [sleep, "100"], depends_on: [cache]}
    """
    running = start_daemon(tmp_path, manifest)
    try:
        wait_until(lambda: running.nodes()["app"]["state"] == "failed", "app not started")
        for verb in ("start", "restart"):
            out = running.cli(verb, "app")
            assert (out.returncode, out.stdout) == (1, ""), out.stderr
            assert out.stderr == (
                f"jobvisor: cannot {verb} app: it depends on db, which gave up; start db first\n"
            )
        app = running.nodes()["app"]
        assert (app["state"], app["starts"]) == ("failed", 0)
        assert app["last_exit"]["error"] == "dependency db gave_up"
        # The supervisor's decision is in the journal, in the words of the status.
        assert _history_lines(running, "app") == ["not_started (reason=dependency db gave_up)"]

        assert running.cli("stop", "cache").returncode == 0
        out = running.cli("restart", "web")
        assert out.returncode == 1
        assert "cannot restart web: it depends on cache, which is stopped; start cache first" in (
            out.stderr
        )
        web = running.nodes()["web"]
        assert (web["state"], web["starts"]) == ("running", 1), "refused: it runs on untouched"
        assert running.cli("start", "cache").returncode == 0
        assert running.cli("restart", "web").returncode == 0
        assert running.nodes()["web"]["starts"] == 2
    finally:
        assert stop_daemon(running) == 0


def test_stopping_a_job_that_is_not_running_changes_nothing_and_says_so(tmp_path: Path) -> None:
    manifest = """
    version: 1
    jobs:
      - {name: once-ok, command: "true"}
      - {name: svc, service: true, command: [sleep, "100"]}
    """
    running = start_daemon(tmp_path, manifest)
    try:
        wait_until(lambda: running.nodes()["once-ok"]["state"] == "succeeded", "once-ok done")
        out = running.cli("stop", "once-ok")
        assert (out.returncode, out.stderr) == (0, "")
        assert out.stdout == "once-ok: not running (succeeded); nothing to stop\n"
        once = running.nodes()["once-ok"]
        assert (once["state"], once["last_exit"]["outcome"]) == ("succeeded", "succeeded")
        first = running.cli("stop", "svc")
        assert (first.returncode, first.stdout) == (0, "svc: stopped\n")
        again = running.cli("stop", "svc")
        assert (again.returncode, again.stdout) == (
            0,
            "svc: not running (stopped); nothing to stop\n",
        )
    finally:
        assert stop_daemon(running) == 0


def _deaf(name: str, pidfile: Path) -> str:
    """A manifest entry: a service deaf to SIGTERM whose stop waits out a 300 s grace."""
    return f"""
      - name: {name}
        service: true
        command: [sh, -c, "trap '' TERM; echo $$ > {pidfile}; while :; do sleep 0.05; done"]
        stop: {{grace: 300s}}
    """


def _cli(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _ended(proc: subprocess.Popen[str]) -> tuple[int, str, float]:
    """Its exit code, its stderr and when it ended (time.monotonic())."""
    _, err = proc.communicate(timeout=150)
    return proc.returncode, err, time.monotonic()


@pytest.mark.timeout(180)
def test_a_stop_behind_another_stop_answers_within_the_daemons_wait_and_goes_on(
    tmp_path: Path,
) -> None:
    """`stop a` (TERM-deaf, grace 300 s), then `stop b`: b waited 60 s for a's turn, then up to
    60 s for its own stop, and the CLI said "gave no answer in 75s". The wait for the turn
    counts now: b's answer comes 60 s after it was asked, its stop going on.

    And a's own answer: it said "pass a longer timeout (None: as long as it takes)", the
    embedded API's advice, which means nothing at a shell (or the client gave up first, at
    the same 60 s, with "no answer"). It says the stop goes on and how to see it end."""
    pids = {name: tmp_path / f"{name}.pid" for name in ("a", "b")}
    manifest = "version: 1\njobs:" + "".join(_deaf(n, p) for n, p in pids.items())
    running = start_daemon(tmp_path, manifest)
    try:
        for pid in pids.values():
            wait_until(lambda pid=pid: pid.exists() and pid.read_text().strip(), "a and b run")
        first = _cli(tmp_path, "stop", "a", "--json")
        wait_until(lambda: running.nodes()["a"]["state"] == "stopping", "a stopping")
        asked = time.monotonic()
        second = _cli(tmp_path, "stop", "b")
        code, err, at = _ended(second)
        assert code == 1, err
        # 61 s when its turn came with less than ACT_FLOOR (1 s) of its wait left.
        assert re.match(r"jobvisor: b: still stopping after 6[01]s \(a stop waits", err), err
        assert "the stop goes on in the daemon: `jobvisor status b`" in err
        assert at - asked < 70, "answered within the daemon's 60 s, not the client's 75 s"
        assert running.nodes()["b"]["state"] == "stopping", "b's stop was made, and goes on"
        out, err = first.communicate(timeout=150)
        assert first.returncode == 1, err
        said = (
            "a: still stopping after 60s (a stop waits up to its stop.grace, then kills what "
            "still runs); the stop goes on in the daemon: `jobvisor status a` (or GET "
            "/api/status) shows when it is stopped"
        )
        assert err == f"jobvisor: {said}\n"
        answer = json.loads(out)["results"][0]
        assert (answer["code"], answer["error"]) == ("under_way", said)
        assert running.nodes()["a"]["state"] == "stopping"
        os.kill(int(pids["a"].read_text()), signal.SIGKILL)  # its grace is not waited out
        wait_until(lambda: running.nodes()["a"]["state"] == "stopped", "a stopped")
    finally:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
                os.kill(int(pid.read_text()), signal.SIGKILL)
        assert stop_daemon(running) == 0


@pytest.mark.timeout(180)
def test_an_action_behind_a_reload_that_outlasts_the_wait_is_told_the_daemon_is_busy(
    tmp_path: Path,
) -> None:
    """A reload that removes a TERM-deaf job holds the tree's turn for its whole stop. A
    `stop b` and a `reload --dry-run` behind it were answered only when it ended (or the CLI
    gave up: exit 3, "gave no answer"); now, 60 s after each was asked: busy, naming the
    reload, nothing done. The reload itself is heard past 60 s (it waits 75 s, not 60)."""
    pids = {name: tmp_path / f"{name}.pid" for name in ("a", "b")}
    head = "version: 1\njobs:"
    running = start_daemon(tmp_path, head + "".join(_deaf(n, p) for n, p in pids.items()))
    try:
        for pid in pids.values():
            wait_until(lambda pid=pid: pid.exists() and pid.read_text().strip(), "a and b run")
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(head + _deaf("b", pids["b"])))
        reload = _cli(tmp_path, "reload")
        # Its remove of a is made under the turn: the reload holds it from now on.
        wait_until(lambda: running.nodes()["a"]["state"] == "stopping", "the reload stops a")
        asked = time.monotonic()
        behind = [_cli(tmp_path, "stop", "b"), _cli(tmp_path, "reload", "--dry-run")]
        ended = [_ended(proc) for proc in behind]
        for (code, err, at), doing in zip(ended, ["stop b", "reload --dry-run"], strict=True):
            assert code == 1, err
            assert err == (
                f"jobvisor: busy: another action (reload) is under way; {doing} was not done: "
                "try again when it ends\n"
            )
            assert at - asked < 70, "answered within the daemon's 60 s"
        assert running.nodes()["b"]["state"] == "running", "b's stop was not made"
        os.kill(int(pids["a"].read_text()), signal.SIGKILL)  # the reload's stop of a ends now
        code, err, _ = _ended(reload)
        assert code == 0, err
        assert "a" not in running.nodes()
    finally:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
                os.kill(int(pid.read_text()), signal.SIGKILL)
        assert stop_daemon(running) == 0


def test_a_notify_socket_nobody_reads_never_blocks_the_daemons_stop(tmp_path: Path) -> None:
    """A blocking send to a full notify socket (a few datagrams; the watchdog's come often)
    waited for ever, STOPPING=1 at SIGTERM too: the daemon never exited. It sends without
    blocking now, and says so once per burst."""
    running = start_daemon(tmp_path, BASE, env_extra={"WATCHDOG_USEC": "100000"})
    try:
        # The C socket: gevent's waits on the hub where MSG_DONTWAIT says not to wait.
        filler = _socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.closing(filler), contextlib.suppress(BlockingIOError):
            while True:  # full: the queue of a socket nobody reads
                filler.sendto(b"FILLER=1", socket.MSG_DONTWAIT, str(tmp_path / "notify.sock"))
        running.proc.send_signal(signal.SIGTERM)
        _, err = running.proc.communicate(timeout=30)
        assert running.proc.returncode == 0, err
        assert err.count("Resource temporarily unavailable (nobody reads it; said once") == 1, err
    finally:
        assert stop_daemon(running) == 0


def test_a_stop_that_outlasts_an_endpoints_wait_without_a_daemon_names_the_api(
    tmp_path: Path,
) -> None:
    """`run --http` and an embedded tree's endpoint have no daemon: their reply said "the stop
    goes on in the daemon: `jobvisor status slow`", which exits 3 there. It names
    GET /api/status, and says the stop is under way (not a failure)."""
    from supervision import CommandWork, JobSpec, RestartType, start_tree
    from supervision._daemon import act

    pidfile = tmp_path / "slow.pid"
    shell = f"trap '' TERM; echo $$ > {pidfile}; while :; do sleep 0.05; done"
    job = JobSpec(
        name="slow", work=CommandWork(shell=shell), restart=RestartType.PERMANENT, grace=300.0
    )
    tree = start_tree(SupervisorSpec(children=(job,)))
    try:
        tree.started(10)
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "slow runs")
        reply = act(tree, "stop", "slow", wait=1.0, daemon=False)
        assert reply == {
            "ok": False,
            "code": "under_way",
            "error": "slow: still stopping after 1s (a stop waits up to its stop.grace, then "
            "kills what still runs); the stop goes on: GET /api/status shows when it is stopped",
        }
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        tree.stop(30)


def test_a_restart_or_start_that_outlasts_the_daemons_wait_names_what_to_do_at_a_shell() -> None:
    """The restart and start kinds of the reply above (the stop's is run for real there)."""
    from supervision._daemon import _still_going

    restart = _still_going("restart", "web", 60.0)
    assert restart.startswith("web: still restarting after 60s (its stop waits up to")
    assert restart.endswith("`jobvisor status web` (or GET /api/status) shows when it runs again")
    start = _still_going("start", "web", 60.0)
    assert "the start may still be done: `jobvisor status web`" in start
    for said in (restart, start):
        assert "tree.status()" not in said
        assert "timeout" not in said
    alone = _still_going("start", "web", 60.0, daemon=False)  # `run --http`, an embedded tree
    assert alone == (
        "web: the tree did not answer within 60s (busy, or stuck: see the log); the start may "
        "still be done: GET /api/status shows it"
    )


# -- the end of a daemon -------------------------------------------------------------------------

STUBBORN = """
version: 1
jobs:
  - name: svc
    service: true
    command: [sh, -c, "while true; do sleep 0.05; done"]
  - name: stubborn
    service: true
    command: [sh, -c, "trap 'echo term >> termed' TERM; echo $$ > pid; while true; do sleep 0.05; done"]
    stop: {grace: 30s}
"""


def test_a_clean_stop_ends_the_log_with_one_line_saying_so(tmp_path: Path) -> None:
    """An operator reading the log knows the daemon ended, and how: its last line says it."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE))
    jv = Jobvisor(tmp_path, "daemon", "--runtime", RUNTIME)
    try:
        wait_until(lambda: "daemon ready" in jv.stderr, "the daemon is ready", proc=jv.proc)
        assert jv.terminate() == 0, jv.stderr
    finally:
        jv.close()
    last = jv.stderr.rstrip("\n").splitlines()[-1]
    assert re.search(
        r"INFO +supervision\.daemon: daemon stopped \(exit 0\); the stop took \d", last
    ), jv.stderr


@pytest.mark.parametrize("how", ["foreground", "detached"])
def test_a_second_signal_kills_what_still_runs_at_once(tmp_path: Path, how: str) -> None:
    """As `run` does: the first SIGINT/SIGTERM stops gracefully (a job ignoring its stop signal
    has its grace), a second kills what still runs at once, says so, and exits 1; it was
    ignored, and the daemon waited out the 30 s grace saying nothing."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(STUBBORN))
    pidfile = tmp_path / "jobvisor.pid"
    jv: Jobvisor | None = None
    if how == "foreground":
        jv = Jobvisor(tmp_path, "daemon", "--runtime", RUNTIME, "--pidfile", str(pidfile))
        signum, log = signal.SIGINT, jv.err_path
    else:
        launcher = subprocess.run(
            [*CLI, "daemon", "--detach", "--pidfile", str(pidfile), "--runtime", RUNTIME],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert launcher.returncode == 0, launcher.stderr
        signum, log = signal.SIGTERM, tmp_path / ".jobvisor" / "daemon.log"
    try:
        # Whole lines: a file is there from its open on, empty until its writer writes.
        wait_until(
            lambda: (
                pidfile.exists()
                and pidfile.read_text().endswith("\n")
                and (tmp_path / "pid").exists()
                and (tmp_path / "pid").read_text().endswith("\n")
            ),
            "the jobs run",
        )
        pid = int(pidfile.read_text())
        stubborn = int((tmp_path / "pid").read_text())
        os.kill(pid, signum)
        wait_until((tmp_path / "termed").exists, "stubborn got its stop signal and ignored it")
        assert not gone(pid), "the first signal is a graceful stop: it waits for stubborn"
        sent = time.monotonic()
        os.kill(pid, signum)
        if jv is not None:
            assert jv.wait(20) == 1, jv.stderr  # not a clean stop, as run's
        else:
            wait_until(lambda: gone(pid), "the detached daemon ended")
        took = time.monotonic() - sent
    finally:
        if jv is not None:
            jv.close()
        elif pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert took < 10, f"the second signal took {took:.1f}s to end the daemon"
    wait_until(lambda: gone(stubborn), "stubborn was killed")
    text = log.read_text()
    assert text.count("second signal: killing every child now") == 1, text
    assert "stubborn: killed (forced stop)" in text
    last = text.rstrip("\n").splitlines()[-1]
    assert "daemon stopped (exit 1: a second signal killed what still ran)" in last, text
    assert not pidfile.exists(), "a forced end still removes its pidfile"


# -- what a reload cannot change ------------------------------------------------------------------


def test_a_reload_applies_the_log_level_and_says_what_needs_a_restart(tmp_path: Path) -> None:
    """The log's level and format are applied by a reload; the state dir, the runtime, the
    log's file and the http endpoint are fixed at the start, and a reload says so, each in one
    line (a reload and SIGHUP said "no change", and DEBUG lines never came)."""
    other = "threads" if RUNTIME == "gevent" else "gevent"
    manifest = textwrap.dedent(BASE).replace("version: 1\n", f"version: 1\nruntime: {RUNTIME}\n")
    (tmp_path / "jobs.yaml").write_text(manifest)
    jv = Jobvisor(tmp_path, "daemon")
    try:
        wait_until(lambda: "daemon ready" in jv.stderr, "the daemon is ready", proc=jv.proc)
        edited = manifest.replace(
            f"runtime: {RUNTIME}\n",
            f"state_dir: other\nruntime: {other}\nlogging: {{level: debug, file: x.log}}\n"
            "http: {listen: '127.0.0.1:0'}\n",
        )
        (tmp_path / "jobs.yaml").write_text(edited)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*CLI, *args],
                cwd=tmp_path,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        # The control commands look where the manifest says now: not where the daemon is.
        lost = cli("reload")
        assert lost.returncode == 3, lost.stderr
        assert lost.stderr == (
            f"jobvisor: no daemon is running for {tmp_path / 'other'} (No such file or directory)"
            f" (the manifest names state_dir {tmp_path / 'other'}; a daemon started before that "
            "edit uses the state dir it started with: pass --state-dir, such as "
            f"{tmp_path / '.jobvisor'}, where a daemon's socket is)\n"
        )
        state = str(tmp_path / ".jobvisor")
        out = cli("reload", "--state-dir", state)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            "update logging: level=debug",
            (
                f"not applied: state_dir {tmp_path / 'other'}: the state dir is fixed at the "
                f"start (this daemon's is {tmp_path / '.jobvisor'}): restart the daemon"
            ),
            (
                f"not applied: runtime {other}: the runtime is fixed at the start (this daemon "
                f"runs {RUNTIME}): restart the daemon"
            ),
            (
                f"not applied: logging.file {tmp_path / 'x.log'}: the log's file is fixed at the "
                "start (this daemon's log goes to stderr): restart the daemon"
            ),
            (
                "not applied: http: the endpoint is fixed at the start (this daemon has none): "
                "restart the daemon"
            ),
        ], out.stdout
        assert "update logging: level=debug" in jv.stderr
        # Applied: a restart of svc writes DEBUG lines now.
        assert cli("restart", "svc", "--state-dir", state).returncode == 0
        wait_until(lambda: " DEBUG " in jv.stderr, "a DEBUG line", proc=jv.proc)
        # Applied once: the next reload only repeats what still needs a restart.
        again = cli("reload", "--state-dir", state)
        assert again.stdout.splitlines() == out.stdout.splitlines()[1:], again.stdout
        (tmp_path / "jobs.yaml").write_text(
            edited.replace("level: debug, file: x.log", "level: debug, format: json")
        )
        json_out = cli("reload", "--state-dir", state)
        assert json_out.stdout.splitlines()[0] == "update logging: format=json", json_out.stdout
        assert cli("restart", "svc", "--state-dir", state).returncode == 0
        wait_until(
            lambda: '"message": "svc: stopping (restart)"' in jv.stderr, "a JSON line", proc=jv.proc
        )
        assert jv.terminate() == 0, jv.stderr
    finally:
        jv.close()


def test_a_reload_of_the_endpoints_settings_names_those_it_did_not_apply(tmp_path: Path) -> None:
    """A change of ``http: {reads: ...}`` alone was said as "the endpoint's address and token
    are fixed": it names the keys that changed now (no value: the token is a secret)."""
    http = "http: {listen: '127.0.0.1:0', token: a-token-of-some-length, heartbeat: 15s}\n"
    daemon = start_daemon(tmp_path, textwrap.dedent(BASE) + http)
    try:
        url = json.loads((daemon.state / "http.json").read_text())["url"]
        for edited, keys in (
            (http.replace("heartbeat: 15s", "heartbeat: 15s, reads: token"), "reads"),
            (
                http.replace("127.0.0.1:0", "127.0.0.1:1").replace("15s", "5s, reads: token"),
                "listen, heartbeat, reads",
            ),
            (http.replace("a-token", "b-token"), "token"),
        ):
            (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE) + edited)
            out = daemon.cli("reload")
            assert out.returncode == 0, out.stderr
            said = (
                f"not applied: http ({keys}): the endpoint is fixed at the start (this daemon "
                f"listens on {url}): restart the daemon"
            )
            assert out.stdout.splitlines() == [said]
    finally:
        assert stop_daemon(daemon) == 0


def test_a_secret_a_reload_brings_is_masked_in_the_log(tmp_path: Path) -> None:
    """The log masked only the secrets of the manifest the daemon started with: a job a
    reload added printed its secret in clear (in the log; and, until the tree took the
    daemon's masker, in the job's output file and the status)."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE))
    secret = "hunter2-not-for-logs"
    with (tmp_path / "jobvisor.err").open("w") as err:
        proc = subprocess.Popen(
            [*CLI, "daemon", "--runtime", RUNTIME],
            cwd=tmp_path,
            env={**ENV, "JV_TOKEN": secret},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        log = tmp_path / "jobvisor.err"
        wait_until(lambda: "daemon ready" in log.read_text(), "the daemon is ready", proc=proc)
        (tmp_path / "jobs.yaml").write_text(
            textwrap.dedent(BASE)
            + "  - name: leak\n"
            + """    command: [sh, -c, 'echo "token is $0"; exec /nonexistent/$0', "${secret:JV_TOKEN}"]\n"""
        )
        out = subprocess.run(
            [*CLI, "reload"],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        wait_until(lambda: "token is ***" in log.read_text(), "leak's line, masked", proc=proc)
        output = tmp_path / ".jobvisor" / "output" / "leak.log"
        wait_until(
            lambda: "token is ***" in output.read_text(), "its output file, masked", proc=proc
        )
        status = subprocess.run(
            [*CLI, "status", "--json"],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert secret not in log.read_text()
    assert secret not in output.read_text()
    assert secret not in status.stdout
    assert "***" in status.stdout, "the failed job's error, masked"


def _jv(cwd: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_on_a_state_dir_a_daemon_holds_is_refused(daemon: Running) -> None:
    http = daemon.state / "http.json"
    out = _jv(daemon.dir, "run", "--http", "127.0.0.1:0")
    assert out.returncode == 2, out.stderr
    said = f"another jobvisor (daemon, pid {daemon.proc.pid}) holds {daemon.state}: stop it, or give run its own --state-dir"
    assert said in out.stderr
    assert "Traceback" not in out.stderr
    assert not http.exists(), "nothing of run's was written there"
    assert daemon.nodes()["svc"]["starts"] == 1


def test_a_run_holds_its_state_dir_against_a_second_run_and_a_daemon(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE))
    first = Jobvisor(tmp_path, "run")
    try:
        lock = tmp_path / ".jobvisor" / "daemon.lock"
        wait_until(
            lambda: lock.exists() and lock.read_text() == f"{first.pid} run\n",
            "run holds the lock",
            proc=first.proc,
        )
        second = _jv(tmp_path, "run")
        assert second.returncode == 2, second.stderr
        assert f"another jobvisor (run, pid {first.pid}) holds" in second.stderr
        launched = _jv(tmp_path, "daemon")
        assert launched.returncode == 2, launched.stderr
        assert f"another jobvisor (run, pid {first.pid}) holds" in launched.stderr
        assert "give this daemon its own --state-dir" in launched.stderr
        assert first.terminate() == 0, first.stderr
    finally:
        first.close()
    # Released at the end: the next one starts.
    running = start_daemon(tmp_path, BASE)
    assert stop_daemon(running) == 0


def test_a_daemon_whose_state_dir_is_deleted_stops_and_says_why(tmp_path: Path) -> None:
    import shutil

    # Only jobs that write no journal row at their stop (tick has not run): the journal of a
    # deleted state dir cannot take one, and the daemon would retry it for 10 s at its exit.
    idle = BASE.replace(BASE[BASE.index("  - name: svc") : BASE.index("  - name: tick")], "")
    running = start_daemon(tmp_path, idle)
    try:
        shutil.rmtree(running.state)
        _, err = running.proc.communicate(timeout=30)
    finally:
        code = stop_daemon(running)
    assert code == 1, err
    assert f"the state dir {running.state} was deleted while the daemon ran" in err
    assert "stopping (exit 1)" in err
    assert "tick: stopped" in err
    assert "daemon stopped (exit 1" in err
    again = start_daemon(tmp_path, BASE)
    try:
        assert again.nodes()["svc"]["state"] == "running"
    finally:
        assert stop_daemon(again) == 0


def test_a_start_waits_out_an_instants_look_at_who_holds_the_lock(tmp_path: Path) -> None:
    """A status command's look at who holds the state dir takes its lock shared for an
    instant (review r44b: 1,298 of 20,000 starts racing such looks were refused, naming a
    holder that had ended). A start waits that out; one that is really held is refused."""
    import fcntl
    import threading

    from supervision._statedir import LOCK_NAME, LOCK_PATIENCE, StateDirHeldError, StateDirLock

    state = tmp_path / ".jobvisor"
    StateDirLock(state, "run").close()  # the dir and its lock file, as a start leaves them
    with open(state / LOCK_NAME, encoding="utf-8") as look:  # noqa: PTH123
        fcntl.flock(look, fcntl.LOCK_SH | fcntl.LOCK_NB)
        # The look ends well within the start's patience.
        threading.Timer(LOCK_PATIENCE / 5, fcntl.flock, (look, fcntl.LOCK_UN)).start()
        StateDirLock(state, "daemon").close()
    held = StateDirLock(state, "run")
    try:
        with pytest.raises(StateDirHeldError, match=r"another jobvisor \(run, pid \d+\)"):
            StateDirLock(state, "daemon")
    finally:
        held.close()


def test_a_lost_lock_file_is_said_deleted_or_moved_as_it_was(tmp_path: Path) -> None:
    from supervision._statedir import LOCK_NAME, StateDirLock

    # The lock file alone deleted: its dir is where it was, so "moved to <the state dir>"
    # would send the reader looking for a move that did not happen.
    state = tmp_path / ".jobvisor"
    lock = StateDirLock(state, "run")
    try:
        assert lock.lost() is None
        (state / LOCK_NAME).unlink()
        assert lock.lost() == f"its lock file {state / LOCK_NAME} was deleted"
    finally:
        lock.close()
    # The lock file moved (within its dir, or out of it): where it went is said.
    for moved in (state / "old.lock", tmp_path / "elsewhere.lock"):
        lock = StateDirLock(state, "run")
        try:
            (state / LOCK_NAME).rename(moved)
            assert lock.lost() == f"its lock file {state / LOCK_NAME} was moved to {moved}"
        finally:
            lock.close()
            moved.unlink()
    # Its dir moved: the dir's move is said, as before.
    lock = StateDirLock(state, "run")
    try:
        away = tmp_path / "away"
        state.rename(away)
        assert lock.lost() == f"the state dir {state} was moved to {away}"
    finally:
        lock.close()


def test_the_lost_state_dirs_error_line_is_one_text_for_run_and_the_daemon() -> None:
    from supervision._held import lost_line

    why = "the state dir /srv/{app}/.jobvisor was deleted"  # braces in a path stay as they are
    assert lost_line(why, None, "run", 1) == (
        f"{why} while run ran: its journal, lock and output files went with it, so this run's "
        "record is lost and another jobvisor could start there and run every job twice; "
        "stopping every job (exit 1)"
    )
    assert lost_line(why, "run, pid 12", "daemon", 1) == (
        f"{why} while the daemon ran; another jobvisor (run, pid 12) holds it now: its lock, "
        "control socket and journal went with it, so no command reaches this daemon and "
        "another could start there and run every job twice; stopping (exit 1)"
    )


def test_a_run_whose_state_dir_is_deleted_stops_every_job_and_exits_1(tmp_path: Path) -> None:
    # As the daemon's: without its state dir a run's journal rows, lock and output files are
    # gone, and a second run there (started meanwhile, not refused) would run every job twice.
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE))
    state = tmp_path / ".jobvisor"
    first = Jobvisor(tmp_path, "run")
    later = tmp_path / "later"
    later.mkdir()
    second: Jobvisor | None = None
    try:
        wait_until(lambda: "svc: started" in first.stderr, "svc started", proc=first.proc)
        shutil.rmtree(state)
        manifest, where = str(tmp_path / "jobs.yaml"), str(state)
        second = Jobvisor(later, "run", manifest, "--state-dir", where)
        code = first.wait(30)
        assert second.proc.poll() is None, second.stderr  # the first gave way; it runs on
        # Its signal handlers are set before its jobs start: a SIGTERM earlier killed it (-15).
        wait_until(lambda: "svc: started" in second.stderr, "the second's svc", proc=second.proc)
        assert second.terminate() == 0, second.stderr
    finally:
        first.close()
        if second is not None:
            second.close()
    err = first.stderr
    assert code == 1, err
    # "deleted", or "deleted and made again" once the second run made it first.
    assert f"ERROR    supervision.app: the state dir {state} was deleted" in err
    assert "its journal, lock and output files went with it" in err
    assert "svc: stopped" in err, "its jobs are stopped gracefully"
    last = err.splitlines()[-1]
    assert last.startswith(f"jobvisor: the state dir {state} was deleted"), last
    assert "every job was stopped, and this run's journal rows" in last
    assert "(exit 1)" in last


# Room for the daemon's own files (about 16 open after its start) and a few connections.
FD_LIMIT = 40
SERVICE = """
version: 1
jobs:
  - name: svc
    service: true
    command: [sh, -c, "while true; do sleep 0.05; done"]
"""


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
@pytest.mark.parametrize("where", ["control", "http"])
def test_a_daemon_out_of_file_descriptors_answers_again_once_some_are_freed(
    tmp_path: Path, where: str
) -> None:
    from urllib.request import urlopen

    from supervision._client import request

    log_file = tmp_path / "daemon.log"
    limit = ("prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}")
    with http_daemon(tmp_path, SERVICE, "--log-file", str(log_file), prefix=limit) as running:
        url = running.http.url + "/"  # as the daemon writes it, and says it
        said = _run_out_of_fds(running, log_file, running.http.port if where == "http" else None)
        assert len(said) == 1, said  # once, however often it tried meanwhile
        assert "WARNING" in said[0]
        assert "Too many open files" in said[0]
        assert f"as many files open as its limit allows ({FD_LIMIT}" in said[0]
        assert "ulimit -n" in said[0]
        assert "LimitNOFILE=" in said[0]
        if where == "control":
            assert str(running.state / "control.sock") in said[0]
            reply = request(running.state, {"op": "status"}, timeout=10)
            assert reply["ok"], reply
        else:
            assert f"http: {url}" in said[0]
            with urlopen(url + "api/status", timeout=10) as answer:
                assert answer.status == 200
        wait_until(
            lambda: "accepting connections again" in log_file.read_text(),
            "the end of the shortage said",
            proc=running.proc,
        )


def _run_out_of_fds(running: Running, log_file: Path, port: int | None) -> list[str]:
    """Hold more connections than the daemon has fds for (to its HTTP ``port``, else its
    control socket) until it says it cannot accept; its lines that say so."""
    held: list[socket.socket] = []
    try:
        for _ in range(FD_LIMIT + 8):
            if port is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                held.append(sock)
                sock.connect(str(running.state / "control.sock"))
            else:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        said: list[str] = wait_until(
            lambda: [line for line in log_file.read_text().splitlines() if "cannot accept" in line],
            "the shortage said",
            proc=running.proc,
        )
    finally:
        for sock in held:
            sock.close()
    return said


def _ignores_sighup(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


def test_a_sighup_early_in_the_start_does_not_kill_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE))
    err_file = tmp_path / "stderr"
    with err_file.open("w") as err_out:  # a file: a pipe nobody reads meanwhile could fill
        proc = subprocess.Popen(
            [*CLI, "daemon"], cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=err_out
        )
    try:
        # Ignored from the arguments' parsing on, before the manifest is even read.
        wait_until(lambda: _ignores_sighup(proc.pid), "SIGHUP ignored", proc=proc)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: _jv(tmp_path, "status").returncode == 0, "the daemon answers", proc=proc)
        assert not _ignores_sighup(proc.pid), "taken by the reload handler once it runs"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err_file.read_text()


def test_a_command_a_stopped_daemon_does_not_answer_says_it_may_still_be_carried_out(
    daemon: Running,
) -> None:
    from supervision._client import NoDaemonError, request

    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(NoDaemonError) as caught:
            request(daemon.state, {"op": "stop", "job": "svc"}, timeout=0.5)
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    assert str(caught.value) == (
        f"the daemon (pid {daemon.proc.pid}) at {daemon.state / 'control.sock'} gave no answer in 0.5s; "
        "the command was sent and may still be carried out when it answers"
    )
    wait_until(
        lambda: daemon.nodes()["svc"]["state"] == "stopped",
        "svc stopped once it answered",
        proc=daemon.proc,
    )


# -- a reload while the tree still starts ----------------------------------------------------------


def _moving(
    go: Path,
    how: str,
    *,
    x_in_g: bool,
    x_first: bool,
    version: int,
    with_x: bool = True,
    a: str = "1001",
) -> str:
    """A tree whose group ``g`` starts only once ``go`` exists (``gate``'s probe holds the start),
    with a job ``x`` in ``g`` or beside it. ``opener``'s stop makes ``go``; ``slowstop`` ignores
    SIGTERM, so its stop takes its whole grace (0.6 s), in which ``g`` starts. Version 2 changes
    both (``how``: "replaced", opener first) or has neither ("removed": the last one first).
    ``with_x``: the tree has ``x`` at all; ``a``: the argument of ``g/a``'s sleep."""
    x = {"name": "x", "service": True, "command": ["sleep", "1003"], "stop": {"grace": "1s"}}
    slowstop = {
        "name": "slowstop",
        "service": True,
        "command": ["sh", "-c", f"trap '' TERM; while :; do sleep 0.02; done # v{version}"],
        "stop": {"grace": "600ms"},
    }
    touch = f"trap 'touch {go}; exit 0' TERM; while :; do sleep 0.02; done # v{version}"
    opener = {"name": "opener", "service": True, "command": ["sh", "-c", touch]}
    gate = {
        "name": "gate",
        "service": True,
        "command": ["sleep", "1004"],
        "ready": {"command": ["test", "-e", str(go)], "interval": "20ms", "timeout": "30s"},
    }
    members = [
        {"name": "a", "service": True, "command": ["sleep", a]},
        {"name": "b", "service": True, "command": ["sleep", "1002"]},
    ]
    group = {"group": "g", "jobs": members + ([x] if with_x and x_in_g else [])}
    jobs: list[dict[str, Any]] = [opener, slowstop] if how == "replaced" else [slowstop, opener]
    if how == "removed" and version == 2:
        jobs = []
    jobs += [gate, group]
    if with_x and not x_in_g:
        jobs.insert(0, x) if x_first else jobs.append(x)
    return json.dumps({"version": 1, "runtime": RUNTIME, "jobs": jobs})


def _children_running(pid: int) -> dict[tuple[str, ...], list[int]]:
    """The processes whose parent is ``pid``, by their argv."""
    out: dict[tuple[str, ...], list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if int(stat_line[stat_line.rindex(")") + 2 :].split()[1]) == pid:
            key = tuple(os.fsdecode(a) for a in argv.split(b"\0")[:-1])
            out.setdefault(key, []).append(int(entry.name))
    return out


def _tree_nodes(state: Path) -> dict[str, dict[str, Any]] | None:
    """The status nodes by path (a group's children too), asked on the control socket; None
    while the daemon does not answer yet."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(state / "control.sock"))
            sock.sendall(b'{"v": 1, "op": "status"}\n')
            reply = json.loads(sock.makefile().readline())
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    if not reply["ok"]:
        return None  # still starting: no tree yet
    return {node["path"]: node for node in flatten_status(reply["result"])}


@pytest.mark.parametrize("x_first", [False, True], ids=["x_last", "x_first"])
@pytest.mark.parametrize("how", ["replaced", "removed"])
def test_a_reload_moving_a_job_out_of_a_group_that_starts_meanwhile(
    tmp_path: Path, how: str, x_first: bool
) -> None:
    """While the tree starts, a reload moves ``x`` into ``g`` (not started yet: for its next
    start), then another moves it out again, and ``g`` starts during that second reload (one of
    its steps lets it). The second reload was refused half done ("g: an update keeps the same
    children (a, b, x), got a, b"): ``g/x`` ran on, and with ``x`` first, ``x`` beside it too."""
    go, manifest, state = tmp_path / "go", tmp_path / "jobs.yaml", tmp_path / ".jobvisor"
    manifest.write_text(_moving(go, how, x_in_g=False, x_first=x_first, version=1))
    jv = Jobvisor(tmp_path, "daemon", "--runtime", RUNTIME)
    try:
        nodes = wait_until(lambda: _tree_nodes(state), "the daemon answers", proc=jv.proc)
        assert nodes["g"]["state"] == "pending", "gate holds the start"
        manifest.write_text(_moving(go, how, x_in_g=True, x_first=x_first, version=1))
        first = _jv(tmp_path, "reload")
        assert (first.returncode, first.stdout) == (
            0,
            "remove x\nadd g/x (at g's next start)\n",
        ), first.stderr
        manifest.write_text(_moving(go, how, x_in_g=False, x_first=x_first, version=2))
        second = _jv(tmp_path, "reload")
        assert second.returncode == 0, second.stderr
        if how == "replaced":  # g's new spec first: it takes it before it starts
            steps = ["replace opener: command", "replace slowstop: command"]
            steps = ["add x", *steps] if x_first else [*steps, "add x"]
            said = ["remove g/x (at g's next start)", *steps]
        else:  # g started during the removes, from its old spec: it is changed as it runs
            said = ["remove opener", "remove slowstop", "remove g/x", "add x"]
        assert second.stdout.splitlines() == said, second.stderr
        paths = [*([] if how == "removed" else ["opener", "slowstop"]), "gate", "g", "g/a", "g/b"]
        paths = ["x", *paths] if x_first else [*paths, "x"]
        nodes = wait_until(
            lambda: (
                (now := _tree_nodes(state))
                and [p for p, n in now.items() if n["state"] == "running"] == paths
                # A command counts as running from its incarnation's start, a moment before
                # its process exists: its pid comes with the spawn.
                and all(now[p]["pid"] for p in paths if p != "g")
                and now
            ),
            "every job runs, its process started",
            proc=jv.proc,
        )
        assert list(nodes) == paths
        # Exactly one process per job: the one the status names.
        found = _children_running(jv.pid)
        for path, argv in {
            "x": ("sleep", "1003"),
            "g/a": ("sleep", "1001"),
            "g/b": ("sleep", "1002"),
            "gate": ("sleep", "1004"),
        }.items():
            assert found.get(argv) == [nodes[path]["pid"]], (path, found)
    finally:
        stopped = jv.terminate()
        jv.close()
    assert stopped == 0, jv.stderr
    log = jv.stderr
    assert "refused" not in log, log
    assert f"reloaded {manifest}: {', '.join(said)}" in log, log
    later = log[log.index("add g/x (at g's next start)") :]  # from the first reload on
    assert later.count("supervision: x: started") == 1, log
    if how == "replaced":
        assert "g/x: started" not in log, "g started from its new spec"
    else:  # stopped at its old path before it started at its new one
        assert later.index("g/x: removed") < later.index("supervision: x: started"), log


# -- a reload that races a group's start or escalation (review 37c) ---------------------------------


def _in_g_changed(go: Path, version: int) -> str:
    """``_moving``'s tree without ``x``: version 2 removes the slow jobs and changes ``g/a``."""
    a = "1001" if version == 1 else "2001"
    return _moving(go, "removed", x_in_g=False, x_first=False, version=version, with_x=False, a=a)


def test_changed_job_in_group_that_starts_during_reload(tmp_path: Path) -> None:
    go, manifest, state = tmp_path / "go", tmp_path / "jobs.yaml", tmp_path / ".jobvisor"
    manifest.write_text(_in_g_changed(go, 1))
    jv = Jobvisor(tmp_path, "daemon", "--runtime", RUNTIME)
    try:
        nodes = wait_until(lambda: _tree_nodes(state), "the daemon answers", proc=jv.proc)
        assert nodes["g"]["state"] == "pending"
        manifest.write_text(_in_g_changed(go, 2))
        r = _jv(tmp_path, "reload")
        assert r.returncode == 0, r.stderr
        wait_until(
            lambda: (n := _tree_nodes(state)) and n.get("g/a", {}).get("state") == "running",
            "g/a runs",
            proc=jv.proc,
        )
        # The changed command runs (it was lost for good: the group took the old one).
        wait_until(
            lambda: ("sleep", "2001") in _children_running(jv.pid),
            "g/a's new command",
            proc=jv.proc,
        )
        assert _jv(tmp_path, "reload").stdout == "no change\n"
        assert _jv(tmp_path, "restart", "g").returncode == 0
        wait_until(
            lambda: (n := _tree_nodes(state)) and n.get("g/a", {}).get("state") == "running",
            "g/a runs",
            proc=jv.proc,
        )
        found = sorted(k for k in _children_running(jv.pid) if k[0] == "sleep")
        assert ("sleep", "2001") in found, found
    finally:
        jv.terminate()
        jv.close()


def _esc_manifest(trig: Path, a_cmd: str = "3002") -> str:
    crasher = {
        "name": "crasher",
        "service": True,
        "command": ["sh", "-c", f"while [ ! -e {trig} ]; do sleep 0.02; done; rm {trig}; exit 1"],
    }
    slowstop = {
        "name": "slowstop",
        "service": True,
        "command": ["sh", "-c", "trap '' TERM; while :; do sleep 0.02; done"],
        "stop": {"grace": "3s"},
    }
    members = [crasher, slowstop, {"name": "a", "service": True, "command": ["sleep", a_cmd]}]
    group = {
        "group": "g",
        "on_exhausted": "escalate",
        "intensity": {"max_restarts": 0, "within": "60s"},
        "jobs": members,
    }
    return json.dumps({"version": 1, "runtime": RUNTIME, "jobs": [group]})


def test_replace_while_group_escalates(tmp_path: Path) -> None:
    trig, manifest, state = tmp_path / "trig", tmp_path / "jobs.yaml", tmp_path / ".jobvisor"
    manifest.write_text(_esc_manifest(trig))
    jv = Jobvisor(tmp_path, "daemon", "--runtime", RUNTIME)
    try:
        wait_until(
            lambda: (n := _tree_nodes(state)) and n.get("g/slowstop", {}).get("state") == "running",
            "running",
            proc=jv.proc,
        )
        trig.touch()
        wait_until(
            lambda: (n := _tree_nodes(state)) and n["g/slowstop"]["state"] == "stopping",
            "g escalates, slowstop stopping",
            proc=jv.proc,
        )
        manifest.write_text(_esc_manifest(trig, "3003"))
        # g/a's replace: removed, then not added (g escalates): refused, as before.
        r = _jv(tmp_path, "reload")
        assert r.returncode == 1
        assert "g/a: not added, g is escalating" in r.stderr
        wait_until(
            lambda: (
                (n := _tree_nodes(state))
                and n.get("g", {}).get("state") == "running"
                and n.get("g/slowstop", {}).get("state") == "running"
            ),
            "g back",
            proc=jv.proc,
            timeout=15,
        )
        # The next reload adds it (every later one failed: the daemon still counted it in g).
        r = _jv(tmp_path, "reload")
        assert (r.returncode, r.stdout) == (0, "add g/a\n"), r.stderr
        assert _jv(tmp_path, "reload").stdout == "no change\n"
        wait_until(lambda: ("sleep", "3003") in _children_running(jv.pid), "g/a", proc=jv.proc)
    finally:
        jv.terminate()
        jv.close()


def test_a_job_a_reload_adds_to_a_stopped_group_is_listed_at_once(tmp_path: Path) -> None:
    """It got its zero metric series at the reload, but the status listed it only once its
    group started: it is listed at once, ``stopped`` as its siblings."""
    old = """
    version: 1
    jobs:
      - group: g
        jobs:
          - name: a
            service: true
            command: [sleep, '100']
    """
    running = start_daemon(tmp_path, old)
    try:
        assert running.cli("stop", "g").returncode == 0
        new = (
            textwrap.dedent(old)
            + "      - name: b\n        service: true\n        command: [sleep, '100']\n"
        )
        (tmp_path / "jobs.yaml").write_text(new)
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert out.stdout == "add g/b (at g's next start)\n"
        group = running.nodes()["g"]
        assert group["state"] == "stopped"
        listed = [(n["path"], n["state"], n["starts"]) for n in group["children"]]
        assert listed == [("g/a", "stopped", 1), ("g/b", "stopped", 0)]
        assert running.cli("start", "g").returncode == 0
        group = running.nodes()["g"]
        assert [(n["path"], n["starts"]) for n in group["children"]] == [("g/a", 2), ("g/b", 1)]
    finally:
        assert stop_daemon(running) == 0


def test_a_reload_that_changes_only_an_http_jobs_headers_replaces_it(tmp_path: Path) -> None:
    """A reload changing only a header (its value, or one added) is a change like any other
    request field's: the job is replaced and sends the new ones. The summary names the job,
    never a header's value; nor does the status."""
    from httpkit import HttpKit

    secret = "hunter2-header-secret"
    manifest = """
    version: 1
    jobs:
      - name: ping
        every: 100ms
        http:
          url: URL/ping
          headers: {Authorization: "Bearer ${secret:JV_TOKEN}", X-Plain: VALUE}
    """
    with HttpKit() as kit:
        text = manifest.replace("URL", kit.url)
        running = start_daemon(
            tmp_path, text.replace("VALUE", "first"), env_extra={"JV_TOKEN": secret}
        )
        try:
            kit.wait_requests(1)
            (tmp_path / "jobs.yaml").write_text(textwrap.dedent(text.replace("VALUE", "second")))
            out = running.cli("reload")
            assert out.returncode == 0, out.stderr
            assert out.stdout == "replace ping: http.headers\n"
            seen = kit.count
            kit.wait_requests(seen + 2)
            with kit._cond:
                after = kit.requests[seen + 1 :]  # the one in flight at the reload aside
            assert {r.headers["x-plain"] for r in after} == {"second"}
            assert {r.headers["authorization"] for r in after} == {f"Bearer {secret}"}
            # Another header's value, a name added: each a change, the value said nowhere.
            changed = text.replace("VALUE", "second").replace(
                "X-Plain: second", "X-Plain: second, X-Extra: third"
            )
            (tmp_path / "jobs.yaml").write_text(textwrap.dedent(changed))
            out = running.cli("reload")
            assert out.returncode == 0, out.stderr
            assert out.stdout == "replace ping: http.headers\n"
            seen = kit.count
            kit.wait_requests(seen + 2)
            with kit._cond:
                after = kit.requests[seen + 1 :]
            assert {r.headers.get("x-extra") for r in after} == {"third"}
            dry = running.cli("reload", "--dry-run")
            shown = out.stdout + out.stderr + dry.stdout + dry.stderr + json.dumps(running.status())
            assert not [value for value in ("second", "third", secret) if value in shown]
        finally:
            assert stop_daemon(running) == 0
