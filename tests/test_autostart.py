"""supervisord's ``autostart: false``: a job declared in the manifest that does not start with
its tree. A person starts it (``jobvisor start PATH``, ``POST /api/jobs/PATH/start``,
``Tree.start_child``); its dependants wait for it, ``pending``; a reload, a daemon's restart and
``run`` leave it down as the manifest says."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import jobfuncs
import pytest
import requests
from conftest import RUNTIME
from faultkit import http_daemon, start_daemon, stop_daemon, wait_until
from treekit import FAST, tree_of

from actors import Schedule, SpecError
from supervision import Strategy, SupervisorSpec, python_job
from supervision._daemon import diff_specs
from supervision._table import flatten_status

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TOKEN = secrets.token_urlsafe(24)  # a fresh one each run
SERVICE = Schedule(service=True)
LOOP = '[sh, -c, "while true; do sleep 0.05; done"]'


def nodes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["path"]: node for node in flatten_status(doc)}


def said(logs: Any, text: str) -> list[str]:
    return [r.message for r in logs.records if text in r.message]


# -- the embedded API ----------------------------------------------------------------------------


def test_it_waits_for_a_person_and_its_dependant_waits_with_it(make_tree, events, logs) -> None:
    db = python_job("db", "jobfuncs:block", "db", schedule=SERVICE, autostart=False)
    app = replace(python_job("app", "jobfuncs:ok", "app"), depends_on=("db",))
    tree = make_tree(tree_of(db, app), on_event=events)
    assert tree.started(10)
    # Nothing finite can move by itself (app waits for a job only a person starts): settled.
    assert tree.wait(10)
    status = nodes(tree.status())
    assert {k: status["db"][k] for k in ("state", "starts", "last_exit", "autostart")} == {
        "state": "stopped",
        "starts": 0,
        "last_exit": None,
        "autostart": False,
    }
    assert (status["app"]["state"], status["app"]["starts"]) == ("pending", 0)
    assert "autostart" not in status["app"]  # only where it is false
    line = "db: not started (autostart: false); start it with: jobvisor start db"
    assert said(logs, "not started (autostart") == [line]
    assert [r.level_name for r in logs.records if r.message == line] == ["INFO"]
    assert jobfuncs.CALLS["db"] == 0

    assert tree.start_child("db") is None
    events.reached("db", "running")
    events.reached("app", "succeeded")  # once its dependency runs
    assert jobfuncs.CALLS["app"] == 1
    assert tree.stop_child("db") is None
    stopped = nodes(tree.status())["db"]
    assert (stopped["state"], stopped["starts"], stopped["last_exit"]["outcome"]) == (
        "stopped",
        1,
        "stopped",
    )
    assert tree.start_child("db") is None  # as any stopped job
    events.reached("db", "running", times=2)


def test_the_journals_cooldown_does_not_start_it(make_tree, events, logs) -> None:
    """A daemon's restore picks up a journaled cooldown: not for a job that starts by a person."""
    db = python_job("db", "jobfuncs:block", "db", schedule=SERVICE, autostart=False)
    tree = make_tree(tree_of(db), on_event=events, cooldowns={"db": (30.0, 2)})
    assert tree.started(10)
    node = nodes(tree.status())["db"]
    assert (node["state"], node["next_start_at"]) == ("stopped", None)
    assert not said(logs, "still cooling down")
    tree.start_child("db")  # a person's start starts it now, no cooldown waited
    events.reached("db", "running")
    assert "cooldown" not in events.states("db")


def test_a_group_restart_leaves_it_down_until_a_person_started_it(make_tree, events) -> None:
    held = python_job("x", "jobfuncs:block", "x", schedule=SERVICE, autostart=False)
    other = python_job("y", "jobfuncs:block", "y", schedule=SERVICE)
    group = SupervisorSpec(
        name="g", strategy=Strategy.ONE_FOR_ALL, policy=FAST, children=(held, other)
    )
    tree = make_tree(tree_of(group), on_event=events)
    events.reached("g/y", "running")
    tree.restart("g")
    events.reached("g/y", "running", times=2)
    assert nodes(tree.status())["g/x"]["starts"] == 0
    assert nodes(tree.status())["g/x"]["state"] == "stopped"
    tree.start_child("g/x")
    events.reached("g/x", "running")
    tree.restart("g")  # started by a person, it is one of the group's like any other now
    events.reached("g/x", "running", times=2)
    assert nodes(tree.status())["g/x"]["starts"] == 2


def test_a_chain_of_jobs_waiting_for_it_is_not_waited_for(make_tree, events) -> None:
    a = python_job("a", "jobfuncs:block", "a", schedule=SERVICE, autostart=False)
    b = replace(python_job("b", "jobfuncs:block", "b", schedule=SERVICE), depends_on=("a",))
    c = replace(python_job("c", "jobfuncs:ok", "c"), depends_on=("b",))
    tree = make_tree(tree_of(a, b, c), on_event=events)
    assert tree.wait(10)  # c waits for b, which waits for a: only a person moves them
    tree.start_child("a")
    events.reached("c", "succeeded")
    assert tree.wait(10)


def test_set_autostart_changes_only_the_next_start(make_tree, events) -> None:
    held = python_job("x", "jobfuncs:block", "x", schedule=SERVICE, autostart=False)
    other = python_job("y", "jobfuncs:block", "y", schedule=SERVICE)
    tree = make_tree(tree_of(SupervisorSpec(name="g", children=(held, other))), on_event=events)
    events.reached("g/y", "running")
    tree.set_autostart("g/x", autostart=True)
    assert nodes(tree.status())["g/x"]["state"] == "stopped"  # nothing started now
    assert "autostart" not in nodes(tree.status())["g/x"]
    tree.restart("g")  # its group's next start starts it
    events.reached("g/x", "running")
    with pytest.raises(SpecError, match="g is no job"):
        tree.set_autostart("g", autostart=False)


def test_a_reload_step_says_what_it_does_with_autostart() -> None:
    job = python_job("x", "m:f")
    held = replace(job, autostart=False)
    group = SupervisorSpec(name="g", children=(job,))
    flipped = [c.summary for c in diff_specs(tree_of(job), tree_of(held))]
    assert flipped == [
        (
            (
                "update x: autostart: false (applies when its tree or group next starts it; nothing is "
                "started or stopped now)"
            ),
        ),
        (),  # the root's own update: only its child changed
    ]
    added = diff_specs(tree_of(job), tree_of(job, replace(held, name="z")))
    assert added[0].summary == ("add z (not started: autostart: false)",)
    changed = replace(held, grace=1.0)
    assert diff_specs(tree_of(job), tree_of(changed))[0].summary == (
        "replace x: autostart, stop.grace (not started: autostart: false)",
    )
    down = diff_specs(
        tree_of(group),
        tree_of(replace(group, children=(held,))),
        down=frozenset({"g"}),
    )
    assert [c.summary for c in down] == [
        (
            (
                "update g/x: autostart: false (applies when its tree or group next starts it; nothing "
                "is started or stopped now) (at g's next start)"
            ),
        ),
        (),
    ]


# -- jobvisor run --------------------------------------------------------------------------------


def jobvisor(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--runtime", RUNTIME],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


RUN = """
version: 1
jobs:
  - name: build
    command: [sh, -c, "echo built"]
  - name: deploy
    autostart: false
    command: [sh, -c, "touch deployed"]
  - name: announce
    depends_on: [deploy]
    command: [sh, -c, "touch announced"]
  - name: web
    service: true
    command: LOOP
"""


def test_run_leaves_it_down_and_ends_when_the_rest_is_done(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(RUN).replace("LOOP", LOOP))
    out = jobvisor(tmp_path, "run")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "deployed").exists()
    assert not (tmp_path / "announced").exists()  # it waited for deploy, which never ran
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert rows["deploy"].split()[2] == "stopped"
    assert rows["deploy"].endswith("not started (autostart: false)")
    assert rows["build"].split()[2] == "succeeded"
    assert "deploy: not started (autostart: false); start it with: jobvisor start deploy" in (
        out.stderr
    )
    assert "announce: waiting for deploy before starting" in out.stderr
    as_json = jobvisor(tmp_path, "run", "--json")
    assert as_json.returncode == 0, as_json.stderr
    deploy = nodes(json.loads(as_json.stdout))["deploy"]
    assert {k: deploy[k] for k in ("state", "starts", "last_exit", "autostart")} == {
        "state": "stopped",
        "starts": 0,
        "last_exit": None,
        "autostart": False,
    }


def test_run_with_every_job_held_says_there_is_nothing_to_start(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(f"""
        version: 1
        defaults: {{autostart: false}}
        jobs:
          - {{name: web, service: true, command: {LOOP}}}
          - {{name: worker, service: true, command: {LOOP}}}
        """)
    )
    out = jobvisor(tmp_path, "run", timeout=30)
    assert out.returncode == 0, out.stderr
    assert (
        "run: nothing to start: every job has autostart: false or waits for one that has (a "
        "person starts one: run the tree with jobvisor daemon, then jobvisor start PATH)"
    ) in out.stderr
    assert [line.split()[:3] for line in out.stdout.splitlines()[1:]] == [
        ["web", "command", "stopped"],
        ["worker", "command", "stopped"],
    ]


def test_run_whose_jobs_all_wait_for_a_held_one_says_there_is_nothing_to_start(
    tmp_path: Path,
) -> None:
    # A held db and services that wait for it (through a group of held jobs too): nothing
    # could start, and run sat waiting for a signal, saying nothing.
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(f"""
        version: 1
        jobs:
          - {{name: db, service: true, command: {LOOP}, autostart: false}}
          - {{name: app, service: true, command: {LOOP}, depends_on: [db]}}
          - group: tools
            jobs:
              - {{name: shell, service: true, command: {LOOP}, autostart: false}}
          - {{name: web, service: true, command: {LOOP}, depends_on: [app, tools]}}
        """)
    )
    out = jobvisor(tmp_path, "run", timeout=30)
    assert out.returncode == 0, out.stderr
    assert "run: nothing to start: every job has autostart: false or waits for one" in out.stderr


# -- jobvisor daemon -----------------------------------------------------------------------------


DAEMON = """
version: 1
supervisor: {backoff: {initial: 1ms, max: 5ms}}
http: {token: {secret: {env: JV_HTTP_TOKEN}}}
jobs:
  - name: db
    service: true
    autostart: false
    command: LOOP
  - name: app
    service: true
    depends_on: [db]
    command: LOOP
  - name: web
    service: true
    command: LOOP
""".replace("LOOP", LOOP)
LATE = f"  - name: late\n    service: true\n    autostart: false\n    command: {LOOP}\n"


def test_the_daemon_leaves_it_stopped_until_started_by_the_cli_or_http(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    with http_daemon(tmp_path, DAEMON, "--log-file", str(log), "--runtime", RUNTIME) as running:
        found = running.nodes()
        assert (found["db"]["state"], found["db"]["starts"], found["db"]["last_exit"]) == (
            "stopped",
            0,
            None,
        )
        assert found["db"]["autostart"] is False
        assert (found["app"]["state"], found["web"]["state"]) == ("pending", "running")
        table = running.cli("status")
        row = next(line for line in table.stdout.splitlines() if line.startswith("db "))
        assert row.endswith("not started (autostart: false)"), table.stdout
        line = "db: not started (autostart: false); start it with: jobvisor start db"
        assert log.read_text().count(line) == 1

        out = running.cli("start", "db")
        assert (out.returncode, out.stdout) == (0, "db: started\n"), out.stderr
        wait_until(lambda: running.nodes()["app"]["state"] == "running", "app runs after db")
        out = running.cli("stop", "db")
        assert out.returncode == 0, out.stderr
        assert out.stdout == (
            "db: stopped; app depends on it and runs on (its start or restart is refused until "
            "db runs again: stop it too, or first)\n"
        )
        assert running.nodes()["db"]["state"] == "stopped"

        answer = requests.post(
            f"{running.http.url}/api/jobs/db/start", headers=running.http.auth, timeout=30
        )
        assert answer.status_code == 200, answer.text
        wait_until(lambda: running.nodes()["db"]["state"] == "running", "db started over HTTP")
        assert running.nodes()["db"]["starts"] == 2
        assert log.read_text().count(line) == 1  # said once, at the start


def test_reload_adds_it_stopped_and_flips_it_in_place_and_a_restart_leaves_it_down(
    tmp_path: Path,
) -> None:
    token = {"JV_HTTP_TOKEN": TOKEN}
    running = start_daemon(tmp_path, DAEMON, "--runtime", RUNTIME, env_extra=token)
    try:
        assert running.cli("start", "db").returncode == 0
        wait_until(lambda: running.nodes()["app"]["state"] == "running", "app runs after db")
        before = running.nodes()
        manifest = (
            DAEMON.replace("    autostart: false\n", "")  # db: true now
            .replace("    depends_on: [db]\n", "    depends_on: [db]\n    autostart: false\n")
            .replace("  - name: web\n", LATE + "  - name: web\n")
        )
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(manifest))
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            (
                "update db: autostart: true (applies when its tree or group next starts it; nothing is "
                "started or stopped now)"
            ),
            (
                "update app: autostart: false (applies when its tree or group next starts it; nothing is "
                "started or stopped now)"
            ),
            "add late (not started: autostart: false)",
        ]
        after = running.nodes()
        for path in ("db", "app", "web"):  # neither replaced nor restarted
            assert (after[path]["state"], after[path]["starts"]) == ("running", 1), path
            assert after[path]["since"] == before[path]["since"], path
        assert "autostart" not in after["db"]
        assert after["app"]["autostart"] is False
        assert (after["late"]["state"], after["late"]["starts"]) == ("stopped", 0)
        assert running.cli("reload").stdout == "no change\n"
    finally:
        assert stop_daemon(running) == 0
    # A daemon's restart starts without them again, as supervisord's does.
    again = start_daemon(tmp_path, manifest, "--runtime", RUNTIME, env_extra=token)
    try:
        found = again.nodes()
        assert {path: found[path]["state"] for path in found} == {
            "db": "running",
            "app": "stopped",
            "late": "stopped",
            "web": "running",
        }
    finally:
        assert stop_daemon(again) == 0


def test_nothing_to_start_is_answered_at_the_first_child_that_starts_by_itself() -> None:
    # Groups nested deeper than Python recurses, after a job that starts by itself: the answer
    # is known at that job, so no group is walked into (a walk would raise RecursionError).
    from supervision._app import _nothing_to_start

    deep = SupervisorSpec(name="g0", children=(python_job("held", "jobfuncs:ok", autostart=False),))
    for depth in range(1, 2 * sys.getrecursionlimit()):
        deep = SupervisorSpec(name=f"g{depth}", children=(deep,))
    for children in (
        (python_job("free", "jobfuncs:ok"), deep),
        (deep, python_job("free", "jobfuncs:ok")),
    ):
        assert not _nothing_to_start(SupervisorSpec(children=children))
    app = replace(python_job("app", "jobfuncs:ok"), depends_on=("db",))
    held = python_job("db", "jobfuncs:ok", autostart=False)
    assert _nothing_to_start(SupervisorSpec(children=(app, held)))
    assert not _nothing_to_start(SupervisorSpec(children=(app, replace(held, autostart=True))))
    assert not _nothing_to_start(SupervisorSpec())


def test_the_all_hint_lists_the_top_level_paths_in_the_trees_order(make_tree, events) -> None:
    """Trial 30: after a reload that replaced a job, ``restart all``'s hint listed the paths
    in the order they were added (the replaced one last), not the tree's."""
    from supervision import NoSuchChildError, Schedule, SupervisorSpec, python_job

    def job(name: str) -> Any:
        return python_job(name, "jobfuncs:block", f"order-{name}", schedule=Schedule(service=True))

    tree = make_tree(SupervisorSpec(children=(job("a"), job("b"), job("c"))), on_event=events)
    events.reached("c", "running")
    tree.remove_child("a")
    tree.add_child(job("a"), before="b")  # as a reload's replace puts it back in its place
    assert [n["path"] for n in tree.status()["children"]] == ["a", "b", "c"]
    with pytest.raises(NoSuchChildError) as info:
        tree.restart("all")
    assert "name the paths, one or more: a, b, c (" in str(info.value), info.value
    for name in "abc":
        jobfuncs.EVENTS[f"order-{name}.release"].set()
