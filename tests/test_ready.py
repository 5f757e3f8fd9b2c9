"""Readiness probes (tcp, http, command) against real listeners, servers and processes."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from faultkit import CLI, ENV, Jobvisor, wait_until
from httpkit import HttpKit, Reply, Reset, Trickle, free_port

from actors import JobFailure, SpecError
from actors._ready import NotReady, ReadyProbe


def wait_in_thread(probe: ReadyProbe, cancelled: threading.Event) -> tuple[threading.Thread, dict]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            probe.wait_ready(cancelled)
            out["ready"] = True
        except NotReady as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, name="ready-test-wait")
    thread.start()
    return thread, out


# -- tcp -----------------------------------------------------------------------------------------


def test_tcp_is_ready_when_something_listens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        ReadyProbe(tcp=f"127.0.0.1:{port}", timeout=5).wait_ready(threading.Event())


def test_tcp_and_http_checks_of_localhost_look_its_name_up_and_pass() -> None:
    # The name is looked up in a thread of its own, bounded by the check's time (a hung
    # resolver held a check for its own timeouts): a name that resolves still passes.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        ReadyProbe(tcp=f"localhost:{port}", timeout=5).wait_ready(threading.Event())
    with HttpKit(Reply(200)) as kit:
        ReadyProbe(http=f"http://localhost:{kit.port}/", timeout=5).wait_ready(threading.Event())
        assert kit.count == 1


def test_tcp_is_not_ready_after_the_timeout_when_nothing_listens() -> None:
    port = free_port()
    probe = ReadyProbe(tcp=f"127.0.0.1:{port}", timeout=0.2, interval=0.02)
    started = time.monotonic()
    with pytest.raises(NotReady) as info:
        probe.wait_ready(threading.Event())
    assert 0.2 <= time.monotonic() - started < 5
    assert str(info.value) == (
        f"tcp 127.0.0.1:{port} not ready after 0.2s: last check connection refused"
    )
    assert isinstance(info.value, JobFailure)


# -- http ----------------------------------------------------------------------------------------


def test_http_polls_until_2xx() -> None:
    with HttpKit(Reply(503), Reply(500), Reply(200)) as kit:
        ReadyProbe(http=f"{kit.url}/health", timeout=10, interval=0.001).wait_ready(
            threading.Event()
        )
        assert [r.path for r in kit.requests] == ["/health"] * 3


def test_http_3xx_counts_as_ready_and_is_not_followed() -> None:
    with HttpKit(Reply(302, {"Location": "/elsewhere"})) as kit:
        ReadyProbe(http=kit.url, timeout=10).wait_ready(threading.Event())
        assert kit.count == 1


def test_http_is_not_ready_while_it_answers_errors() -> None:
    with HttpKit(default=Reply(500)) as kit:
        probe = ReadyProbe(http=kit.url, timeout=0.2, interval=0.02)
        with pytest.raises(NotReady, match=r"not ready after 0\.2s: last check answered 500"):
            probe.wait_ready(threading.Event())
        assert kit.count >= 2


def test_http_is_not_ready_when_nothing_listens() -> None:
    # It said `last check ConnectionError`, as for a reset, a DNS failure or a TLS one.
    port = free_port()
    probe = ReadyProbe(http=f"http://u:hunter2@127.0.0.1:{port}/", timeout=0.1, interval=0.02)
    with pytest.raises(NotReady) as info:
        probe.wait_ready(threading.Event())
    assert str(info.value) == (
        f"http http://u:***@127.0.0.1:{port}/ not ready after 0.1s: last check connection refused"
    )


@pytest.mark.parametrize(
    ("action", "said"),
    [
        (Reply(503), "answered 503"),
        (Reset(hard=True), "connection reset"),
        (Reset(), "connection closed without an answer"),
    ],
)
def test_an_http_checks_failure_says_what_happened(action: Any, said: str) -> None:
    # 1 s: a loaded host's first answer could take longer than 0.1 s, and then the last check
    # was a time-out, not the answer (seen in a full run).
    with HttpKit(default=action) as kit:
        probe = ReadyProbe(http=f"{kit.url}/health", timeout=1, interval=0.02)
        with pytest.raises(NotReady) as info:
            probe.wait_ready(threading.Event())
    assert str(info.value) == f"http {kit.url}/health not ready after 1s: last check {said}"


# -- command -------------------------------------------------------------------------------------


def test_command_is_ready_when_it_exits_0() -> None:
    ReadyProbe(command=("true",), timeout=10).wait_ready(threading.Event())


def test_command_polls_until_it_exits_0(tmp_path) -> None:
    counter = tmp_path / "count"
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
        "sys.exit(0 if n >= 3 else 1)"
    )
    probe = ReadyProbe(
        command=[sys.executable, "-c", script, str(counter)], timeout=20, interval=0.001
    )
    assert probe.command == (sys.executable, "-c", script, str(counter))
    probe.wait_ready(threading.Event())
    assert counter.read_text() == "3"


def test_command_is_not_ready_while_it_fails() -> None:
    probe = ReadyProbe(command=("false",), timeout=0.2, interval=0.02)
    with pytest.raises(
        NotReady, match=r"command false not ready after 0\.2s: last check exited with 1"
    ):
        probe.wait_ready(threading.Event())


def test_a_missing_command_is_not_ready() -> None:
    probe = ReadyProbe(command=("/no/such/probe",), timeout=0.05, interval=0.01)
    with pytest.raises(NotReady, match="FileNotFoundError"):
        probe.wait_ready(threading.Event())


def test_a_hanging_command_is_killed_at_the_timeout() -> None:
    probe = ReadyProbe(command=("sleep", "30"), timeout=0.3)
    started = time.monotonic()
    with pytest.raises(NotReady, match=r"did not exit within 0\.3s"):
        probe.wait_ready(threading.Event())
    assert time.monotonic() - started < 5


# -- cancellation --------------------------------------------------------------------------------


def test_cancel_ends_the_wait_between_checks() -> None:
    with HttpKit(default=Reply(503)) as kit:
        cancelled = threading.Event()
        thread, out = wait_in_thread(ReadyProbe(http=kit.url, timeout=60, interval=30), cancelled)
        kit.wait_requests(1)
        started = time.monotonic()
        cancelled.set()
        thread.join(10)
        assert not thread.is_alive()
        assert time.monotonic() - started < 5
        assert str(out["error"]) == f"http {kit.url}: readiness wait cancelled"


def test_cancel_ends_the_wait_during_a_hanging_command() -> None:
    with HttpKit() as kit:
        script = (
            "import sys, time, urllib.request; urllib.request.urlopen(sys.argv[1]).read(); "
            "time.sleep(60)"
        )
        probe = ReadyProbe(
            command=(sys.executable, "-c", script, kit.url), timeout=120, interval=60
        )
        cancelled = threading.Event()
        thread, out = wait_in_thread(probe, cancelled)
        kit.wait_requests(1)  # the command runs
        started = time.monotonic()
        cancelled.set()
        thread.join(10)
        assert not thread.is_alive()
        assert time.monotonic() - started < 5
        assert "cancelled" in str(out["error"])


def test_a_cancelled_wait_checks_nothing() -> None:
    with HttpKit() as kit:
        cancelled = threading.Event()
        cancelled.set()
        with pytest.raises(NotReady, match="cancelled"):
            ReadyProbe(http=kit.url).wait_ready(cancelled)
        assert kit.count == 0


# -- each check is bounded as a whole, and a cancel reaches it -----------------------------------
#
# The trial's: a server that answered "HTTP/1.1 200 OK" and then sent a header byte every 0.2 s
# held one check for ever (requests bounds each socket read, not the request), so the service
# stayed `starting`: its probe never reached ready.timeout and a stop never reached the check.

HEAD_NEVER_ENDS = Trickle(every=0.2, framing="headers")


def joined(thread: threading.Thread, within: float) -> float:
    """Join ``thread`` for up to ``within`` seconds; how long it took."""
    started = time.monotonic()
    thread.join(within)
    return time.monotonic() - started


def test_an_http_check_whose_head_never_ends_fails_at_its_budget() -> None:
    with HttpKit(default=HEAD_NEVER_ENDS) as kit:
        thread, out = wait_in_thread(
            ReadyProbe(http=kit.url, timeout=1, interval=0.1), threading.Event()
        )
        try:
            took = joined(thread, 3)
            assert not thread.is_alive(), "the check outlived its budget and ready.timeout"
        finally:
            kit.close()
            thread.join(10)
    assert 0.9 < took < 2, took
    assert str(out["error"]) == f"http {kit.url} not ready after 1s: last check timed out after 1s"


def test_a_cancel_ends_an_http_check_whose_head_never_ends() -> None:
    with HttpKit(default=HEAD_NEVER_ENDS) as kit:
        cancelled = threading.Event()
        thread, out = wait_in_thread(ReadyProbe(http=kit.url, timeout=60, interval=30), cancelled)
        try:
            kit.wait_trickled(2)  # the check is reading the head
            cancelled.set()
            took = joined(thread, 3)
            assert not thread.is_alive(), "the cancel did not reach the check"
        finally:
            kit.close()
            thread.join(10)
    assert took < 0.5, took
    assert str(out["error"]) == f"http {kit.url}: readiness wait cancelled"


@contextmanager
def connect_hangs() -> Iterator[str]:
    """A listener whose accept queue is full: a connect to it hangs in SYN_SENT (the SYN is
    dropped), as one to a host behind a firewall does. Yields its host:port."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as server:
        where = f"127.0.0.1:{server.getsockname()[1]}"
        with socket.create_connection(server.getsockname(), timeout=5):  # fills the queue
            probe = socket.socket()
            probe.settimeout(0.05)
            with probe, pytest.raises(TimeoutError):  # the next one hangs: checked, not assumed
                probe.connect(server.getsockname())
            yield where


def connecting_to(where: str) -> bool:
    """Whether a socket of this machine is connecting (SYN_SENT) to 127.0.0.1:PORT ``where``."""
    port = int(where.rsplit(":", 1)[1])
    rows = [line.split() for line in Path("/proc/net/tcp").read_text("ascii").splitlines()[1:]]
    return any(row[2] == f"0100007F:{port:04X}" and row[3] == "02" for row in rows)


def test_a_tcp_check_whose_connect_hangs_fails_at_its_budget() -> None:
    with connect_hangs() as where:
        probe = ReadyProbe(tcp=where, timeout=0.5, interval=0.1)
        started = time.monotonic()
        with pytest.raises(NotReady) as info:
            probe.wait_ready(threading.Event())
        assert 0.45 < time.monotonic() - started < 2
    assert str(info.value) == f"tcp {where} not ready after 0.5s: last check timed out after 0.5s"


def test_a_cancel_ends_a_tcp_check_whose_connect_hangs() -> None:
    with connect_hangs() as where:
        cancelled = threading.Event()
        thread, out = wait_in_thread(ReadyProbe(tcp=where, timeout=60, interval=30), cancelled)
        try:
            wait_until(lambda: connecting_to(where), "the check's connect hangs")
            cancelled.set()
            took = joined(thread, 3)
            assert not thread.is_alive(), "the cancel did not reach the connect"
        finally:
            thread.join(40)
    assert took < 0.5, took
    assert str(out["error"]) == f"tcp {where}: readiness wait cancelled"


def test_a_service_whose_probes_head_never_ends_fails_its_start_at_ready_timeout(
    make_tree, events, tmp_path
) -> None:
    from actors import CommandWork, Schedule
    from supervision import Intensity, JobSpec, RestartPolicy, SupervisorSpec

    with HttpKit(default=HEAD_NEVER_ENDS) as kit:
        svc = JobSpec(
            name="api",
            work=CommandWork(argv=("sleep", "30"), cwd=str(tmp_path)),
            schedule=Schedule(service=True),
            ready=ReadyProbe(http=f"{kit.url}/health", timeout=1, interval=0.1),
        )
        report = JobSpec(
            name="report", work=CommandWork(argv=("true",), cwd=str(tmp_path)), depends_on=("api",)
        )
        policy = RestartPolicy(intensity=Intensity(max_restarts=0))
        tree = make_tree(SupervisorSpec(policy=policy, children=(svc, report)), on_event=events)
        started = time.monotonic()
        events.reached("api", "gave_up", timeout=3)
        events.reached("report", "failed", timeout=3)
        took = time.monotonic() - started
    api, dependant = tree.status()["children"]
    assert 0.9 < took < 2.5, took
    assert api["last_exit"]["error"].endswith(
        f"http {kit.url}/health not ready after 1s: last check timed out after 1s"
    ), api["last_exit"]
    assert dependant["last_exit"]["error"] == "dependency api gave_up", dependant["last_exit"]


def test_a_stop_ends_a_start_whose_probe_is_reading_a_head_that_never_ends(
    make_tree, events, tmp_path
) -> None:
    from actors import CommandWork, Schedule
    from supervision import JobSpec, SupervisorSpec

    with HttpKit(default=HEAD_NEVER_ENDS) as kit:
        svc = JobSpec(
            name="api",
            work=CommandWork(argv=("sleep", "30"), cwd=str(tmp_path)),
            schedule=Schedule(service=True),
            ready=ReadyProbe(http=kit.url, timeout=60, interval=30),
            grace=2,
        )
        tree = make_tree(SupervisorSpec(children=(svc,)), on_event=events)
        kit.wait_trickled(2)  # its probe is reading the head
        started = time.monotonic()
        tree.stop_child("api")
        kit.wait_connections(0, timeout=1)  # the check in progress ended, its connection too
        took = time.monotonic() - started
        node = tree.status()["children"][0]
    assert node["state"] == "stopped", node
    assert took < 1, took  # well within its grace


def test_a_start_that_never_gets_ready_has_no_exit_code_of_its_own(
    make_tree, events, tmp_path
) -> None:
    """Its process is SIGTERMed by us once the probe gives up: status said `failed (-15)` (as
    if someone had killed the service) where its attempt, journaled, had no code. As a
    `timeout`'s, which we also kill: no code in the status, the events or the journal."""
    from actors import CommandWork, Schedule
    from supervision import (
        AttemptFinished,
        ChildExited,
        Intensity,
        JobSpec,
        RestartPolicy,
        SupervisorSpec,
    )
    from supervision._table import exit_text

    port = free_port()
    never = JobSpec(
        name="api",
        work=CommandWork(argv=("sleep", "1000"), cwd=str(tmp_path)),
        schedule=Schedule(service=True),
        ready=ReadyProbe(http=f"http://127.0.0.1:{port}/", timeout=0.3, interval=0.05),
    )
    slow = JobSpec(
        name="slow",
        work=CommandWork(argv=("sleep", "1000"), cwd=str(tmp_path)),
        schedule=Schedule(timeout=0.3),
    )
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    tree = make_tree(SupervisorSpec(policy=policy, children=(never, slow)), on_event=events)
    events.reached("api", "gave_up")
    events.reached("slow", "gave_up")
    nodes = {n["path"]: n for n in tree.status()["children"]}
    for path, outcome in (("api", "failed"), ("slow", "timeout")):
        [attempt] = events.of(AttemptFinished, path)  # what the journal writes
        [exited] = events.of(ChildExited, path)
        last = nodes[path]["last_exit"]
        assert (attempt.code, exited.code, last["code"]) == (None, None, None), path
        assert exit_text(last, str).startswith(f"{outcome}: "), last
    assert "not ready after 0.3s" in nodes["api"]["last_exit"]["error"]


# A run whose service never gets ready: it gives up at ready.timeout and its dependant fails.
NEVER_READY = """
version: 1
supervisor: {{intensity: {{max_restarts: 0, within: 60s}}}}
jobs:
  - name: api
    service: true
    command: [sleep, "30"]
    ready: {{http: "{url}/health", timeout: 1s, interval: 100ms}}
  - name: report
    command: [echo, report]
    depends_on: [api]
"""


def test_run_gives_up_on_a_service_whose_probes_head_never_ends(tmp_path, runtime) -> None:
    with HttpKit(default=HEAD_NEVER_ENDS) as kit:
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(NEVER_READY.format(url=kit.url)))
        jv = Jobvisor(tmp_path, "--runtime", runtime, "run")
        try:
            # Well inside the service's own 30 s, which a run that waited on it would outlast:
            # 8 s was eaten by a loaded machine's start-up.
            code = jv.wait(25)
        finally:
            if jv.proc.poll() is None:
                jv.terminate(10)
            jv.close()
    err = jv.stderr
    assert code == 1, err
    assert f"http {kit.url}/health not ready after 1s: last check timed out after 1s" in err
    rows = {line.split()[0]: line.split() for line in jv.stdout.splitlines()[1:]}
    assert rows["api"][2] == "gave_up", jv.stdout
    assert rows["report"][2] == "failed", jv.stdout


def test_a_daemon_stops_at_once_while_its_probe_reads_a_head_that_never_ends(
    tmp_path, runtime
) -> None:
    """A SIGTERM during the start waited on the check in progress, which never ended."""
    with HttpKit(default=HEAD_NEVER_ENDS) as kit:
        (tmp_path / "jobs.yaml").write_text(
            "version: 1\njobs:\n"
            "  - {name: api, service: true, command: [sleep, '30'], stop: {grace: 2s},\n"
            f"     ready: {{http: '{kit.url}/health', timeout: 60s, interval: 30s}}}}\n"
        )
        proc = subprocess.Popen(
            [*CLI, "--runtime", runtime, "daemon"],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            kit.wait_trickled(2)  # its probe is reading the head
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=8)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert took < 2, took
    assert "daemon ready" not in err


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of tcp, http, command; got none"),
        ({"tcp": "h:1", "http": "http://h"}, "got tcp and http"),
        ({"tcp": "h"}, "ready.tcp"),
        ({"tcp": "h:0"}, "ready.tcp"),
        ({"tcp": "h:99999"}, "ready.tcp"),
        ({"tcp": ":80"}, "ready.tcp"),
        ({"http": "h:80/health"}, "ready.http"),
        ({"command": ()}, "ready.command"),
        ({"command": ("ok", 1)}, "ready.command"),
        ({"command": "pg_isready"}, "ready.command"),
        ({"tcp": "h:1", "timeout": 0}, "ready.timeout"),
        ({"tcp": "h:1", "interval": -1}, "ready.interval"),
    ],
)
def test_invalid_probes_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        ReadyProbe(**kwargs)


def test_ipv6_tcp_addresses_are_accepted() -> None:
    assert ReadyProbe(tcp="[::1]:5432").describe() == "tcp [::1]:5432"


def test_a_command_probe_is_described_as_a_command_is() -> None:
    probe = ReadyProbe(command=("/bin/sh", "-c", "echo ok; test -e ready"))
    assert probe.describe() == "command /bin/sh -c 'echo ok; test -e ready'"


def test_a_command_jobs_probe_runs_in_its_cwd_with_its_env(make_tree, events, tmp_path) -> None:
    # Through a tree: the supervisor gives each incarnation's probe its job's command setup.
    from actors import CommandWork, Schedule
    from supervision import JobSpec, SupervisorSpec

    (tmp_path / "ready-here").touch()
    svc = JobSpec(
        name="svc",
        work=CommandWork(shell="sleep 30", cwd=str(tmp_path), env={"MARK": "set"}),
        schedule=Schedule(service=True),
        ready=ReadyProbe(
            command=("/bin/sh", "-c", '[ -f ready-here ] && [ "$MARK" = set ]'),
            timeout=10,
            interval=0.01,
        ),
    )
    tree = make_tree(SupervisorSpec(children=(svc,)), on_event=events)
    events.reached("svc", "running")
    assert tree.status()["children"][0]["state"] == "running"


def test_explain_says_a_command_probe_runs_as_its_job() -> None:
    from supervision import load_manifest

    text = (
        "version: 1\njobs:\n"
        "  - {name: c, command: [x], service: true, ready: {command: [./check]}}\n"
        "  - {name: t, command: [x], service: true, ready: {tcp: 'localhost:1'}}\n"
        "  - {name: p, python: 'math:sqrt', args: [4], service: true, ready: {command: [y]}}\n"
    )
    ready = [
        line for line in load_manifest(text, env={}).explain().splitlines() if "ready:" in line
    ]
    beside = "(run as the job's command: its cwd, env, user, umask and limits)"
    assert [beside in line for line in ready] == [True, False, False]


def test_a_start_that_waits_for_readiness_says_so_at_once(
    make_tree, events, tmp_path, logs
) -> None:
    """A long `ready` timeout was minutes of silence in a CI log: the first line was the failure."""
    from actors import CommandWork, Schedule
    from supervision import JobSpec, SupervisorSpec

    svc = JobSpec(
        name="svc",
        work=CommandWork(shell="sleep 30", cwd=str(tmp_path)),
        schedule=Schedule(service=True),
        ready=ReadyProbe(command=("test", "-e", "go"), timeout=90, interval=0.01),
    )
    tree = make_tree(SupervisorSpec(children=(svc,)), on_event=events)
    said = "svc: started; waiting until it is ready (command test -e go, up to 90s)"
    wait_until(lambda: any(r.message == said for r in logs.records), "the line")
    assert [r.message for r in logs.records if r.message == said] == [said], [
        r.message for r in logs.records
    ]
    assert tree.status()["children"][0]["state"] == "starting"
    (tmp_path / "go").touch()
    events.reached("svc", "running")


# -- an address already taken --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "http"])
def test_a_probe_whose_address_answers_before_the_start_is_warned_of(
    make_tree, events, tmp_path, logs, kind
) -> None:
    """Another process held the service's port: the probe passed against it, the dependants
    started, and the service then failed to bind (`Address already in use`), unexplained."""
    from actors import CommandWork, Schedule
    from supervision import JobSpec, SupervisorSpec

    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        where = f"127.0.0.1:{port}"
        probe = (
            ReadyProbe(tcp=where, timeout=10) if kind == "tcp"
            else ReadyProbe(http=f"http://{where}/health", timeout=10)
        )  # fmt: skip
        svc = JobSpec(
            name="web",
            work=CommandWork(shell="sleep 30", cwd=str(tmp_path)),
            schedule=Schedule(service=True),
            ready=probe,
        )
        make_tree(SupervisorSpec(children=(svc,)), on_event=events)
        said = (
            f"web: something already answers at {where}, where its readiness probe looks, "
            "before it started: another process (a copy of it left running?) may hold that "
            "address, and the probe pass without it"
        )
        wait_until(lambda: any(r.message == said for r in logs.records), "the warning")
        (record,) = [r for r in logs.records if r.message == said]
        assert record.level_name == "WARNING"
        assert record.extra["path"] == "web"


def test_a_probe_whose_address_is_free_before_the_start_says_nothing(
    make_tree, events, tmp_path, logs
) -> None:
    from actors import CommandWork, Schedule
    from supervision import JobSpec, SupervisorSpec

    port = free_port()
    svc = JobSpec(
        name="web",
        work=CommandWork(
            argv=(
                sys.executable,
                "-c",
                f"import socket,time; s=socket.create_server(('127.0.0.1', {port})); time.sleep(30)",
            ),
            cwd=str(tmp_path),
        ),
        schedule=Schedule(service=True),
        ready=ReadyProbe(tcp=f"127.0.0.1:{port}", timeout=20, interval=0.01),
    )
    make_tree(SupervisorSpec(children=(svc,)), on_event=events)
    events.reached("web", "running")
    assert not [r for r in logs.records if "already answers" in r.message]


@pytest.mark.parametrize(
    ("probe", "where"),
    [
        (ReadyProbe(tcp="localhost:5432"), ("localhost", 5432)),
        (ReadyProbe(tcp="[::1]:80"), ("::1", 80)),
        (ReadyProbe(http="http://127.0.0.2:8080/x"), ("127.0.0.2", 8080)),
        (ReadyProbe(http="https://localhost/"), ("localhost", 443)),
        (ReadyProbe(http="http://[::1]/"), ("::1", 80)),
        (ReadyProbe(tcp="db.example:5432"), None),  # not this machine: never looked at
        (ReadyProbe(http="http://10.0.0.1/"), None),
        (ReadyProbe(command=("true",)), None),
    ],
)
def test_only_a_loopback_address_is_looked_at_before_a_start(probe, where) -> None:
    from actors._taken import loopback_address

    assert loopback_address(probe) == where
