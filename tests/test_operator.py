"""What an operator coming from supervisorctl expects of the control commands, on a real daemon:
several paths in one start/stop/restart, status of some paths only, pid and uptime, signal."""

from __future__ import annotations

import json
import os
import signal
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import RUNTIME
from faultkit import CLI, ENV, Running, http_daemon, start_daemon, stop_daemon, wait_until

from supervision._client import request

MANIFEST = """
version: 1
supervisor: {backoff: {initial: 1ms, max: 5ms}}
jobs:
  - {name: web, service: true, command: [sleep, "100"]}
  - {name: db, command: "true"}
  - {name: all, service: true, command: [sleep, "100"]}
  - {name: api, service: true, command: [sleep, "100"], depends_on: [web]}
  - group: etl
    jobs:
      - {name: load, service: true, command: [sleep, "100"]}
      - {name: clean, service: true, command: [sleep, "100"]}
  - {name: iso, service: true, python: "time:sleep", args: [100], isolation: process}
  - {name: thread, service: true, python: "jobfuncs:block", args: [t]}
  - name: hup
    service: true
    command: "trap 'echo got-hup' HUP; trap 'echo got-usr1' USR1; while :; do sleep 0.1; done"
  - name: pair
    service: true
    command: >-
      trap 'echo leader-usr1' USR1;
      (trap 'echo child-usr1' USR1; while :; do sleep 0.1; done) &
      while :; do sleep 0.1; done
  - {name: ping, http: {url: "http://127.0.0.1:9/"}, restart: temporary}
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Running]:
    log = str(tmp_path / "daemon.log")
    running = start_daemon(tmp_path, MANIFEST, "--runtime", RUNTIME, "--log-file", log)
    try:
        # ping's refused request too: its state's change would come after a test's start.
        wait_until(
            lambda: (
                (running.nodes()["db"]["state"], running.nodes()["ping"]["state"])
                == ("succeeded", "failed")
            ),
            "db done, ping failed",
        )
        yield running
    finally:
        assert stop_daemon(running) == 0


def _states(daemon: Running) -> dict[str, str]:
    return {n["path"]: n["state"] for n in _flat(daemon.status()["children"])}


def _flat(nodes: list[dict[str, object]]) -> Iterator[dict[str, object]]:
    for node in nodes:
        yield node
        children = node.get("children")
        if isinstance(children, list):
            yield from _flat(children)


def test_several_paths_are_acted_on_in_order_each_said_on_its_line(daemon: Running) -> None:
    out = daemon.cli("stop", "web", "db", "all")
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    # `all` is a job's name like any other, not every job. api depends on web and runs on,
    # which the stop of web says (h254).
    assert out.stdout.splitlines() == [
        (
            "web: stopped; api depends on it and runs on (its start or restart is refused "
            "until web runs again: stop it too, or first)"
        ),
        "db: not running (succeeded); nothing to stop",
        "all: stopped",
    ]

    states = _states(daemon)
    assert (states["web"], states["all"], states["etl/load"]) == ("stopped", "stopped", "running")
    out = daemon.cli("start", "web", "/all/")
    assert (out.returncode, out.stdout, out.stderr) == (0, "web: started\nall: started\n", "")
    wait_until(lambda: _states(daemon)["all"] == "running", "all running")
    out = daemon.cli("restart", "etl/load")
    assert (out.returncode, out.stdout) == (0, "etl/load: restarted\n"), out.stderr
    assert daemon.nodes()["etl"]["children"][0]["starts"] == 2


def test_a_stop_of_what_a_running_job_depends_on_names_it(daemon: Running) -> None:
    out = daemon.cli("stop", "web", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["results"] == [
        {"ok": True, "job": "web", "action": "stop", "dependants_running": ["api"]}
    ]
    assert daemon.cli("stop", "api").stdout == "api: stopped\n"  # nothing depends on it
    assert daemon.cli("start", "web").returncode == 0
    assert daemon.cli("stop", "web").stdout == "web: stopped\n"  # api is stopped


def test_a_stop_of_a_job_in_a_group_names_what_depends_on_the_group(tmp_path: Path) -> None:
    """`depends_on: [etl]` waits for every job under etl: a stop of one of them left the
    dependant running unsaid, and a restart of it was let through, to wait 60 s (h264)."""
    running = start_daemon(
        tmp_path,
        """
        version: 1
        jobs:
          - group: etl
            jobs:
              - {name: load, service: true, command: [sleep, "100"]}
              - {name: x, service: true, command: [sleep, "100"]}
          - {name: consumer, service: true, command: [sleep, "100"], depends_on: [etl]}
        """,
        "--runtime",
        RUNTIME,
    )
    try:
        wait_until(lambda: _states(running)["consumer"] == "running", "consumer running")
        out = running.cli("stop", "etl/x", "--json")
        assert json.loads(out.stdout)["results"] == [
            {
                "ok": True,
                "job": "etl/x",
                "action": "stop",
                "dependants_running": ["consumer"],
                "dependants_on": {"consumer": "etl"},
            }
        ]
        assert running.cli("start", "etl/x").returncode == 0
        out = running.cli("stop", "etl/x")
        assert out.stdout == (
            "etl/x: stopped; consumer depends on etl and runs on (its start or restart is "
            "refused until etl/x runs again: stop it too, or first)\n"
        )
        refused = running.cli("restart", "consumer")
        assert refused.returncode == 1
        assert "it depends on etl/x, which is stopped; start etl/x first" in refused.stderr
        assert _states(running)["consumer"] == "running"  # the refused restart changed nothing
    finally:
        assert stop_daemon(running) == 0


def test_the_worst_result_is_the_exit_code_and_every_path_is_tried(daemon: Running) -> None:
    # nope (4) does not stop the paths after it.
    out = daemon.cli("stop", "nope", "all")
    assert out.returncode == 4
    assert out.stdout == "all: stopped\n"
    assert out.stderr == (
        "jobvisor: no child at path 'nope': check `status` for the paths this tree has\n"
    )
    assert _states(daemon)["all"] == "stopped"
    # A job whose dependency is down cannot restart: 1; with an unknown path too: 4 beats 1.
    assert daemon.cli("stop", "web").returncode == 0
    one = daemon.cli("restart", "api")
    assert (one.returncode, one.stdout) == (1, "")
    assert "web" in one.stderr
    both = daemon.cli("restart", "api", "nope")
    assert both.returncode == 4
    assert len(both.stderr.splitlines()) == 2


def test_status_of_some_paths_shows_those_and_their_subtrees(daemon: Running) -> None:
    out = daemon.cli("status", "--json", "etl", "web")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) >= {"name", "state", "children"}
    assert [n["path"] for n in doc["children"]] == ["web", "etl"]  # the tree's order
    assert [n["path"] for n in doc["children"][1]["children"]] == ["etl/load", "etl/clean"]
    inner = json.loads(daemon.cli("status", "--json", "etl/clean").stdout)
    assert [n["path"] for n in inner["children"]] == ["etl/clean"]
    table = daemon.cli("status", "etl/load", "db")
    assert table.returncode == 0, table.stderr
    rows = [line.split()[0] for line in table.stdout.splitlines()[1:]]
    assert rows == ["db", "etl/load"]


def test_status_of_an_unknown_path_is_exit_4(daemon: Running) -> None:
    out = daemon.cli("status", "web", "nope")
    assert out.returncode == 4
    assert out.stderr == (
        "jobvisor: no child at path 'nope': check `status` for the paths this tree has\n"
    )
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == ["web"]
    # No path names a child: the error alone, no table's header with nothing under it.
    alone = daemon.cli("status", "nope")
    assert (alone.returncode, alone.stdout) == (4, "")
    assert "no child at path 'nope'" in alone.stderr
    # --json keeps its document's shape all the same.
    doc = json.loads(daemon.cli("status", "--json", "nope").stdout)
    assert doc["children"] == []


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_status_gives_a_running_jobs_pid_and_when_its_state_changed(daemon: Running) -> None:
    before = time.time()
    nodes = {n["path"]: n for n in _flat(daemon.status()["children"])}
    web = nodes["web"]
    assert _cmdline(web["pid"]) == ["sleep", "100"]
    assert os.getpgid(web["pid"]) == web["pid"]  # the leader of its group
    assert "time:sleep" not in _cmdline(nodes["iso"]["pid"])  # its child, not the daemon
    assert nodes["iso"]["pid"] != daemon.proc.pid
    assert (nodes["thread"]["pid"], nodes["db"]["pid"], nodes["etl"]["pid"]) == (None, None, None)
    assert all(isinstance(n["since"], float) and n["since"] <= before for n in nodes.values())
    assert daemon.cli("restart", "web").returncode == 0
    again = daemon.nodes()["web"]
    assert again["pid"] != web["pid"]
    assert again["since"] >= before
    assert daemon.cli("stop", "web").returncode == 0
    stopped = daemon.nodes()["web"]
    assert stopped["pid"] is None
    assert stopped["since"] >= again["since"]


def test_the_status_table_says_how_long_a_job_has_run(daemon: Running) -> None:
    table = daemon.cli("status", "web", "db")
    assert table.returncode == 0, table.stderr
    header, web, db = (line.split() for line in table.stdout.splitlines())
    assert header[:4] == ["PATH", "KIND", "STATE", "UPTIME"]
    assert web[3].endswith("s")
    assert web[3][:-1].isdigit() or "m" in web[3]
    assert db[3] == "-"


def test_starting_a_running_job_says_it_runs_already_and_changes_nothing(daemon: Running) -> None:
    """supervisorctl says "already started"; it said "started" as if it had been down."""
    before = daemon.nodes()["web"]
    out = daemon.cli("start", "web")
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    assert out.stdout == "web: already running; nothing to start\n"
    after = daemon.nodes()["web"]
    assert (after["state"], after["starts"], after["pid"]) == (
        "running",
        before["starts"],
        before["pid"],
    )


def _output(daemon: Running, job: str) -> str:
    path = daemon.state / "output" / f"{job}.log"
    return path.read_text() if path.exists() else ""


def _log(daemon: Running) -> str:
    return (daemon.dir / "daemon.log").read_text()


def test_signal_reaches_a_running_jobs_whole_group_and_counts_nothing(daemon: Running) -> None:
    wait_until(lambda: _states(daemon)["hup"] == "running", "hup running")
    out = daemon.cli("signal", "HUP", "hup")
    assert (out.returncode, out.stdout, out.stderr) == (0, "hup: sent SIGHUP\n", "")
    wait_until(lambda: "got-hup" in _output(daemon, "hup"), "the trap ran")
    wait_until(lambda: "hup: SIGHUP sent (by a person)" in _log(daemon), "the log's line")
    # A number, and a name in any case with or without SIG, as supervisorctl takes them.
    out = daemon.cli("signal", str(int(signal.SIGUSR1)), "hup")
    assert (out.returncode, out.stdout) == (0, "hup: sent SIGUSR1\n"), out.stderr
    wait_until(lambda: "got-usr1" in _output(daemon, "hup"), "the second trap ran")
    out = daemon.cli("signal", "sigHup", "hup")
    assert (out.returncode, out.stdout) == (0, "hup: sent SIGHUP\n"), out.stderr
    wait_until(lambda: _output(daemon, "hup").count("got-hup") == 2, "the trap ran again")
    node = daemon.nodes()["hup"]
    assert (node["state"], node["starts"], node["failures"]) == ("running", 1, 0)
    # Journaled as a person's, each with its signal: `history` says who did what, and when.
    wait_until(
        lambda: daemon.cli("history", "hup").stdout.count("hup  person_signal") == 3,
        "three signals journaled",
    )
    history = daemon.cli("history", "hup").stdout
    assert "hup  person_signal (signal=SIGUSR1, via=control)" in history, history


def test_signal_reaches_every_process_of_the_group(daemon: Running) -> None:
    # The shell leads the group; its background subshell is in the same group: both trap it.
    wait_until(lambda: _states(daemon)["pair"] == "running", "pair running")
    out = daemon.cli("signal", "usr1", "pair")
    assert (out.returncode, out.stdout, out.stderr) == (0, "pair: sent SIGUSR1\n", "")
    wait_until(lambda: "leader-usr1" in _output(daemon, "pair"), "the leader's trap ran")
    wait_until(lambda: "child-usr1" in _output(daemon, "pair"), "the child's trap ran")
    assert daemon.nodes()["pair"]["failures"] == 0
    # A job in a group, by its path.
    out = daemon.cli("signal", "CONT", "etl/load")
    assert (out.returncode, out.stdout, out.stderr) == (0, "etl/load: sent SIGCONT\n", "")


def test_an_exit_a_signal_causes_is_judged_by_the_policy(daemon: Running) -> None:
    web, iso = daemon.nodes()["web"], daemon.nodes()["iso"]
    out = daemon.cli("signal", "SIGTERM", "web", "iso")  # iso: an isolation: process python job
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    assert out.stdout == "web: sent SIGTERM\niso: sent SIGTERM\n"
    # A service that ends restarts, its exit a failure: what it did, not what we sent, counts.
    for job, before in (("web", web), ("iso", iso)):
        wait_until(lambda j=job: daemon.nodes()[j]["failures"] == 1, f"{job}'s exit counted")
        wait_until(
            lambda j=job, b=before: daemon.nodes()[j]["pid"] not in (None, b["pid"]),
            f"{job} running again",
        )
    assert daemon.nodes()["web"]["last_exit"]["code"] == -signal.SIGTERM


def test_signal_of_what_has_no_process_is_a_clear_error(daemon: Running) -> None:
    wait_until(lambda: _states(daemon)["ping"] in ("failed", "gave_up"), "ping ended")
    assert daemon.cli("stop", "all").returncode == 0
    cases = {
        "db": "jobvisor: db is not running (succeeded); nothing was sent\n",
        "all": "jobvisor: all is not running (stopped); nothing was sent\n",
        "ping": (
            "jobvisor: ping is an http job: it has no process of its own to signal; nothing "
            "was sent\n"
        ),
        "thread": (
            "jobvisor: thread is a python job run in a thread (isolation: thread): it has no "
            "process of its own to signal; nothing was sent\n"
        ),
        "etl": "jobvisor: etl is a group: signal its jobs (etl/load ...) one by one; nothing "
        "was sent\n",
    }
    for job, said in cases.items():
        out = daemon.cli("signal", "HUP", job)
        assert (out.returncode, out.stdout, out.stderr) == (1, "", said)
    missing = daemon.cli("signal", "HUP", "nope")
    assert (missing.returncode, missing.stdout) == (4, "")
    assert missing.stderr == (
        "jobvisor: no child at path 'nope': check `status` for the paths this tree has\n"
    )
    # Every path is tried, in order; the worst result is the exit code.
    several = daemon.cli("signal", "USR1", "db", "hup", "nope")
    assert (several.returncode, several.stdout) == (4, "hup: sent SIGUSR1\n")
    assert len(several.stderr.splitlines()) == 2
    for bad in ("NOPE", "0", "999", "SIG", ""):
        out = daemon.cli("signal", bad, "web")
        assert (out.returncode, out.stdout) == (2, ""), bad
        assert out.stderr.endswith(
            f"jobvisor: error: argument SIGNAL: unknown signal {bad!r}: give a name such as "
            "HUP, USR1 or TERM, or a number\n"
        )
        assert "Traceback" not in out.stderr
    assert daemon.nodes()["web"]["starts"] == 1


def test_signal_without_a_daemon(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)

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

    out = cli("signal", "HUP", "web")
    assert (out.returncode, out.stdout) == (3, "")
    assert len(out.stderr.splitlines()) == 1
    assert "no daemon" in out.stderr, out.stderr
    # A bad signal is a usage error before anyone is asked.
    assert cli("signal", "NOPE", "web").returncode == 2


def test_signal_over_http_needs_the_token(tmp_path: Path) -> None:
    manifest = MANIFEST + "http: {token: {secret: {env: JV_HTTP_TOKEN}}}\n"
    with http_daemon(tmp_path, manifest, "--runtime", RUNTIME) as running:
        url = running.http.url
        wait_until(lambda: _states(running)["hup"] == "running", "hup running")
        target = url + "/api/jobs/hup/signal?signal=HUP"
        assert requests.post(target, timeout=30).status_code == 401
        auth = running.http.auth
        assert (
            requests.post(target, headers={"Authorization": "Bearer no"}, timeout=30).status_code
            == 403
        )
        answer = requests.post(target, headers=auth, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"ok": True, "job": "hup", "action": "signal", "signal": "SIGHUP"}
        wait_until(lambda: "got-hup" in _output(running, "hup"), "the trap ran")
        for query in ("?signal=NOPE", "", "?signal=HUP&signal=TERM"):
            wrong = requests.post(url + "/api/jobs/hup/signal" + query, headers=auth, timeout=30)
            assert wrong.status_code == 400, (query, wrong.text)
            assert "signal" in wrong.json()["error"]
        down = requests.post(url + "/api/jobs/db/signal?signal=HUP", headers=auth, timeout=30)
        assert down.status_code == 409
        assert down.json()["error"] == "db is not running (succeeded); nothing was sent"
        nope = requests.post(url + "/api/jobs/nope/signal?signal=HUP", headers=auth, timeout=30)
        assert nope.status_code == 404
        assert requests.get(target, timeout=30).status_code == 405
        assert _output(running, "hup").count("got-hup") == 1


SUPERVISORCTL = """
version: 1
jobs:
  - {name: db, service: true, command: [sleep, "100"]}
  - group: app
    jobs:
      - {name: web, service: true, command: [sleep, "100"]}
      - {name: worker, service: true, command: [sleep, "100"], replicas: 2}
"""


def test_supervisorctls_paths_are_told_jobvisors_spelling(tmp_path: Path) -> None:
    """`app:web`, `app:*`, `all` and a replicated job's name (exit 4 all the same)."""
    running = start_daemon(tmp_path, SUPERVISORCTL, "--runtime", RUNTIME)
    try:
        cases = {
            ("restart", "app:web"): "no child at path 'app:web': jobvisor writes app/web",
            ("stop", "app:*"): (
                "no child at path 'app:*': jobvisor writes app: a group's path acts on the group"
            ),
            ("restart", "all"): (
                "no child at path 'all': jobvisor has no `all` (unless a job is named so): "
                "`status` with no path shows the whole tree; name the paths, one or more: "
                "db, app (a group's path acts on the whole group)"
            ),
            ("signal", "HUP", "app/worker"): (
                "no child at path 'app/worker': app/worker runs as replicas, each a path of "
                "its own: app/worker.0, app/worker.1"
            ),
            ("start", "nope"): (
                "no child at path 'nope': check `status` for the paths this tree has"
            ),
        }
        for args, said in cases.items():
            out = running.cli(*args)
            assert (out.returncode, out.stdout, out.stderr) == (4, "", f"jobvisor: {said}\n")
    finally:
        assert stop_daemon(running) == 0


def test_start_stop_restart_of_a_replicated_jobs_name_act_on_each_of_its_replicas(
    tmp_path: Path,
) -> None:
    """`stop app/worker` is what a person means by its replicas, as `depends_on` means them:
    each is acted on, one line each (it only named them, exit 4). A person's own jobs named
    `q.0` and `q.1` (no `replicas:`) are not one job's replicas: `q` names no child, as any
    unknown name (they were taken for q's replicas by their names alone)."""
    manifest = SUPERVISORCTL + '  - {name: q.0, command: [sleep, "100"], service: true}\n'
    manifest += '  - {name: q.1, command: [sleep, "100"], service: true}\n'
    running = start_daemon(tmp_path, manifest, "--runtime", RUNTIME)
    replicas = ("app/worker.0", "app/worker.1")
    try:
        for verb, said in [
            ("stop", "stopped"),
            ("stop", "not running (stopped); nothing to stop"),
            ("start", "started"),
            ("restart", "restarted"),
        ]:
            out = running.cli(verb, "app/worker")
            lines = "".join(f"{path}: {said}\n" for path in replicas)
            assert (out.returncode, out.stdout, out.stderr) == (0, lines, ""), verb
        out = running.cli("stop", "--json", "app/worker", "db")
        assert out.returncode == 0, out.stderr
        document = json.loads(out.stdout)
        assert document["ok"] is True
        assert [answer["job"] for answer in document["results"]] == [*replicas, "db"]
        assert [node["state"] for node in running.status()["children"][1]["children"][1:]] == [
            "stopped",
            "stopped",
        ]
        nodes = running.nodes()
        worker = running.status()["children"][1]["children"][1]
        assert (worker["path"], worker["replica_of"]) == ("app/worker.0", "worker")
        assert "replica_of" not in nodes["q.0"]
        for verb in ("start", "stop", "restart", "status"):
            out = running.cli(verb, "q")
            said = "jobvisor: no child at path 'q': check `status` for the paths this tree has\n"
            assert (out.returncode, out.stdout, out.stderr) == (4, "", said), verb
        after = running.nodes()
        assert [(after[p]["state"], after[p]["starts"]) for p in ("q.0", "q.1")] == [
            ("running", 1),
            ("running", 1),
        ]
        # logs and history tell q so too, by the daemon's tree (they said "q runs as
        # replicas" with exit 4, and "the journal has nothing of q" with exit 0).
        _logs_and_history_of_q(running)
    finally:
        assert stop_daemon(running) == 0
    # With no daemon, by the manifest's replicas: fields.
    _logs_and_history_of_q(running)


def test_a_persons_q_0_and_q_1_are_not_qs_replicas_in_a_tree_with_no_replicated_job(
    tmp_path: Path,
) -> None:
    """No job of the tree has ``replicas:``, so no node has ``replica_of``: the CLI took that
    for a daemon older than the field and told replicas by their names, and `stop q` stopped
    a person's own q.0 and q.1. The daemon's ``process`` says it marks replicas
    (``marks_replicas``): with it, no ``replica_of`` means no replicas."""
    manifest = """
    version: 1
    jobs:
      - {name: q.0, command: [sleep, "100"], service: true}
      - {name: q.1, command: [sleep, "100"], service: true}
    """
    running = start_daemon(tmp_path, manifest, "--runtime", RUNTIME)
    try:
        assert running.status()["process"]["marks_replicas"] is True
        said = "jobvisor: no child at path 'q': check `status` for the paths this tree has\n"
        for verb in ("stop", "restart", "start", "status"):
            out = running.cli(verb, "q")
            assert (out.returncode, out.stdout, out.stderr) == (4, "", said), verb
        after = running.nodes()
        assert [(after[p]["state"], after[p]["starts"]) for p in ("q.0", "q.1")] == [
            ("running", 1),
            ("running", 1),
        ]
        out = running.cli("history", "q")
        assert (out.returncode, out.stderr) == (4, said)
    finally:
        assert stop_daemon(running) == 0


def _logs_and_history_of_q(running: Running) -> None:
    out = running.cli("logs", "q")
    assert (out.returncode, out.stdout) == (4, ""), out.stderr
    assert out.stderr.startswith("jobvisor: no such job: q (and no output file "), out.stderr
    out = running.cli("history", "q")
    said = "jobvisor: no child at path 'q': check `status` for the paths this tree has\n"
    assert (out.returncode, out.stderr) == (4, said)
    out = running.cli("logs", "app/worker")
    said = (
        "jobvisor: app/worker runs as replicas, each with its own output: "
        "app/worker.0, app/worker.1\n"
    )
    assert (out.returncode, out.stdout, out.stderr) == (4, "", said)
    assert running.cli("history", "app/worker").returncode == 0


class _OlderDaemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A control socket in front of a real daemon whose status says no ``replica_of``, as a
    daemon started by a jobvisor older than the field answers."""

    daemon_threads = True

    def __init__(self, path: str, real: Path) -> None:
        self.real = real
        super().__init__(path, _Relay)


class _Relay(socketserver.StreamRequestHandler):
    server: _OlderDaemon

    def handle(self) -> None:
        req = json.loads(self.rfile.readline())
        req.pop("v")
        reply = request(str(self.server.real), req, timeout=30.0)
        if req.get("op") == "status":
            reply = json.loads(json.dumps(reply).replace('"replica_of": ', '"job_of": '))
            reply["result"]["process"].pop("marks_replicas", None)
        self.wfile.write(json.dumps(reply).encode() + b"\n")


def test_a_replicated_jobs_name_on_a_daemon_older_than_replica_of_acts_on_its_replicas(
    tmp_path: Path,
) -> None:
    """No node of its status has ``replica_of``: `stop app/worker` reads the replicas by their
    names as before (exactly worker.0 to worker.N-1), not exit 4."""
    running = start_daemon(tmp_path, SUPERVISORCTL, "--runtime", RUNTIME)
    older = tmp_path / "older"
    older.mkdir(mode=0o700)
    server = _OlderDaemon(str(older / "control.sock"), running.state)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        doc = json.loads(running.cli("status", "--json", "--state-dir", str(older)).stdout)
        assert "replica_of" not in json.dumps(doc), "the relay keeps the field"
        out = running.cli("stop", "--state-dir", str(older), "app/worker")
        said = "app/worker.0: stopped\napp/worker.1: stopped\n"
        assert (out.returncode, out.stdout, out.stderr) == (0, said, "")
        out = running.cli("logs", "--state-dir", str(older), "app/worker")
        assert out.returncode == 4
        assert "app/worker runs as replicas" in out.stderr
    finally:
        server.shutdown()
        server.server_close()
        assert stop_daemon(running) == 0


def test_status_tells_supervisorctls_paths_jobvisors_spelling_too(tmp_path: Path) -> None:
    """Before: `status app:web` said only "no child at path 'app:web': check `status` ...";
    now the hints start and stop give (exit 4 all the same, a path found still shown)."""
    running = start_daemon(tmp_path, SUPERVISORCTL, "--runtime", RUNTIME)
    try:
        cases = {
            "app:web": "jobvisor writes app/web",
            "app:*": "jobvisor writes app: a group's path acts on the group",
            "all": (
                "jobvisor has no `all` (unless a job is named so): `status` with no path shows "
                "the whole tree; name the paths, one or more: db, app (a group's path acts on "
                "the whole group)"
            ),
            "app/worker": (
                "app/worker runs as replicas, each a path of its own: app/worker.0, app/worker.1"
            ),
            "nope": "check `status` for the paths this tree has",
        }
        for path, said in cases.items():
            out = running.cli("status", path)
            expected = f"jobvisor: no child at path {path!r}: {said}\n"
            assert (out.returncode, out.stdout, out.stderr) == (4, "", expected)
        both = running.cli("status", "--json", "db", "app:web")
        assert both.returncode == 4
        assert both.stderr == "jobvisor: no child at path 'app:web': jobvisor writes app/web\n"
        assert [node["path"] for node in json.loads(both.stdout)["children"]] == ["db"]
    finally:
        assert stop_daemon(running) == 0


REPLICATED = """
version: 1
jobs:
  - {name: w, command: [sh, -c, "exit 3"], replicas: 2, restart: temporary}
  - {name: q, command: [sh, -c, "exit 4"], restart: temporary}
"""


def test_history_of_a_replicated_jobs_name_is_its_replicas_rows(tmp_path: Path) -> None:
    """`history w` shows the rows of w.0 and w.1 together, as `restart w` acts on each. It
    said "the journal has nothing of w; it has: q, w.0, w.1" with exit 0. With no daemon, the
    manifest's ``replicas:`` tells them."""
    running = start_daemon(tmp_path, REPLICATED, "--runtime", RUNTIME)
    try:
        wait_until(
            lambda: all(n["state"] == "failed" for n in running.nodes().values()),
            "every job failed once",
        )
        _history_of_w(running)
    finally:
        assert stop_daemon(running) == 0
    _history_of_w(running)


def _history_of_w(running: Running) -> None:
    # The failed_finally rows are journaled as the jobs' state turns failed, committed a moment
    # after: waited for, never read before.
    wait_until(
        lambda: running.cli("history", "w").stdout.count("failed_finally") == 2,
        "both replicas' failed_finally rows journaled",
    )
    out = running.cli("history", "w")
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    ended = [line.split("  ")[1:] for line in out.stdout.splitlines()]
    assert sorted(ended) == [
        ["w.0", "attempt 1 failed (3): command sh -c 'exit 3' exited with 3"],
        ["w.0", "failed_finally (reason=temporary)"],
        ["w.1", "attempt 1 failed (3): command sh -c 'exit 3' exited with 3"],
        ["w.1", "failed_finally (reason=temporary)"],
    ]
    rows = json.loads(running.cli("history", "--json", "w").stdout)
    assert sorted(row["path"] for row in rows) == ["w.0", "w.0", "w.1", "w.1"]
    out = running.cli("history", "--since", "1h", "--limit", "1", "w")
    assert (out.returncode, len(out.stdout.splitlines())) == (0, 1), out.stderr


def test_http_actions_and_history_of_a_replicated_jobs_name_take_each_replica(
    tmp_path: Path,
) -> None:
    """``POST /api/jobs/w/restart`` restarts w.0 and w.1, as `jobvisor restart w` does (it was
    404, naming them); ``/api/history?job=w`` is their rows, as `history w`. A person's own
    ``q`` is still 404, and a signal (which the CLI does not spread either) still names them."""
    manifest = REPLICATED.replace(
        '{name: w, command: [sh, -c, "exit 3"], replicas: 2, restart: temporary}',
        '{name: w, command: [sleep, "100"], replicas: 2, service: true}',
    )
    manifest += "http: {token: {secret: {env: JV_HTTP_TOKEN}}}\n"
    with http_daemon(tmp_path, manifest, "--runtime", RUNTIME) as running:
        url, auth = running.http.url, running.http.auth
        wait_until(lambda: running.nodes()["q"]["state"] == "failed", "q failed")
        answer = requests.post(url + "/api/jobs/w/restart", headers=auth, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "ok": True,
            "job": "w",
            "action": "restart",
            "results": [
                {"ok": True, "job": "w.0", "action": "restart"},
                {"ok": True, "job": "w.1", "action": "restart"},
            ],
        }
        assert [running.nodes()[p]["starts"] for p in ("w.0", "w.1")] == [2, 2]
        rows = requests.get(url + "/api/history?job=w", timeout=30).json()
        each = requests.get(url + "/api/history?job=w&per_job=5", timeout=30).json()
        assert {path: [row["outcome"] for row in rows] for path, rows in each.items()} == {
            "w.0": ["stopped"],
            "w.1": ["stopped"],
        }
        ended = [row for row in rows if row["type"] == "attempt"]
        assert sorted((row["path"], row["outcome"]) for row in ended) == [
            ("w.0", "stopped"),
            ("w.1", "stopped"),
        ]
        stopped = requests.post(url + "/api/jobs/w/stop", headers=auth, timeout=30).json()
        assert [r["job"] for r in stopped["results"]] == ["w.0", "w.1"]
        again = requests.post(url + "/api/jobs/w/stop", headers=auth, timeout=30).json()
        assert [r.get("note") for r in again["results"]] == [
            f"{path}: not running (stopped); nothing to stop" for path in ("w.0", "w.1")
        ]
        nope = requests.post(url + "/api/jobs/w.2/start", headers=auth, timeout=30)
        assert nope.status_code == 404
        signal = requests.post(url + "/api/jobs/w/signal?signal=HUP", headers=auth, timeout=30)
        assert signal.status_code == 404
        assert "w runs as replicas, each a path of its own: w.0, w.1" in signal.json()["error"]
