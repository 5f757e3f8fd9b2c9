"""What an operator coming from supervisorctl expects of the control commands, on a real daemon:
several paths in one start/stop/restart, status of some paths only, pid and uptime."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RUNTIME
from faultkit import Running, start_daemon, stop_daemon, wait_until

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
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Running]:
    running = start_daemon(tmp_path, MANIFEST, "--runtime", RUNTIME)
    try:
        wait_until(lambda: running.nodes()["db"]["state"] == "succeeded", "db done")
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
    # `all` is a job's name like any other, not every job.
    assert (
        out.stdout == "web: stopped\ndb: not running (succeeded); nothing to stop\nall: stopped\n"
    )
    states = _states(daemon)
    assert (states["web"], states["all"], states["etl/load"]) == ("stopped", "stopped", "running")
    out = daemon.cli("start", "web", "/all/")
    assert (out.returncode, out.stdout, out.stderr) == (0, "web: started\nall: started\n", "")
    wait_until(lambda: _states(daemon)["all"] == "running", "all running")
    out = daemon.cli("restart", "etl/load")
    assert (out.returncode, out.stdout) == (0, "etl/load: restarted\n"), out.stderr
    assert daemon.nodes()["etl"]["children"][0]["starts"] == 2


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
