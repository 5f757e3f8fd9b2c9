"""`jobvisor start` and `restart` answer once the child is up, as `systemctl start` of a
``Type=notify`` unit does: its ``ready:`` check passed, or it failed before (exit 1), or the
wait ran out with it still on its way (exit 1); `--no-block` answers once the daemon took it.
They said `web: started` (exit 0) while web was still `starting`, and so for a job whose
ready check could never pass."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import RUNTIME
from faultkit import CLI, ENV, Running, http_daemon, start_daemon, stop_daemon, wait_until
from httpkit import free_port

from supervision import load_manifest, start_tree
from supervision._daemon import act
from supervision._state import State
from supervision._until_up import UntilUp


@pytest.fixture
def refused() -> Iterator[int]:
    """A port bound and not listening: every connection to it is refused, for as long as
    the test runs (a port only released could be taken by anything meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _manifest(listen: int, refused: int, never_timeout: str = "2s") -> str:
    # web listens after a moment, as a service that loads first; never listens nowhere.
    web = (
        "import socket, time; time.sleep(0.5); s = socket.socket(); "
        f"s.bind(('127.0.0.1', {listen})); s.listen(); time.sleep(1000)"
    )
    return f"""
version: 1
supervisor: {{backoff: {{initial: 30s, max: 30s}}}}
jobs:
  - name: web
    command: [python3, -c, "{web}"]
    service: true
    autostart: false
    ready: {{tcp: "127.0.0.1:{listen}", timeout: 20s}}
  - name: never
    command: [sleep, "1000"]
    service: true
    autostart: false
    ready: {{tcp: "127.0.0.1:{refused}", timeout: {never_timeout}}}
  - name: plain
    command: [sleep, "1000"]
    service: true
"""


def _state(running: Running, path: str) -> str:
    state: str = running.nodes()[path]["state"]
    return state


def test_start_and_restart_answer_once_the_job_is_up(tmp_path: Path, refused: int) -> None:
    running = start_daemon(tmp_path, _manifest(free_port(), refused), "--runtime", RUNTIME)
    try:
        out = running.cli("start", "web")
        assert (out.returncode, out.stdout, out.stderr) == (0, "web: started\n", "")
        assert _state(running, "web") == "running"  # said once up, not while starting
        out = running.cli("restart", "web")
        assert (out.returncode, out.stdout, out.stderr) == (0, "web: restarted\n", "")
        node = running.nodes()["web"]
        assert (node["state"], node["starts"]) == ("running", 2)
        out = running.cli("start", "never")
        assert (out.returncode, out.stdout) == (1, ""), out.stderr
        assert out.stderr.startswith(
            f"jobvisor: never: started, but it failed before it was up: tcp 127.0.0.1:{refused} "
            "not ready after 2s"
        ), out.stderr
        assert out.stderr.endswith("; it is started again after its backoff\n"), out.stderr
        assert _state(running, "never") == "backoff"
        # --no-block: answered once taken, as before (and as systemctl --no-block).
        running.cli("stop", "never")
        out = running.cli("start", "--no-block", "never")
        assert (out.returncode, out.stdout, out.stderr) == (0, "never: started\n", "")
        assert _state(running, "never") == "starting"
        # A start of it while it is on its way follows it, as systemctl start waits for a
        # unit still activating (it said "already starting; nothing to start", exit 0).
        out = running.cli("start", "never")
        assert (out.returncode, out.stdout) == (1, ""), out.stderr
        assert "never: started, but it failed before it was up: tcp" in out.stderr
        # A job with no ready check is up once it runs; --json says the same.
        out = running.cli("restart", "--json", "plain")
        assert out.returncode == 0, out.stderr
        assert '"ok": true' in out.stdout
        assert _state(running, "plain") == "running"
    finally:
        assert stop_daemon(running) == 0


def test_a_start_waiting_for_its_job_keeps_no_other_action_waiting(
    tmp_path: Path, refused: int
) -> None:
    """The wait is outside the daemon's lock of actions: a stop of another job is done
    meanwhile. A stop of the job itself ends the start's wait: it was stopped."""
    manifest = _manifest(free_port(), refused, never_timeout="60s")
    running = start_daemon(tmp_path, manifest, "--runtime", RUNTIME)
    try:
        start = subprocess.Popen(
            [*CLI, "start", "never"],
            cwd=running.dir,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: _state(running, "never") == "starting", "never starting")
            out = running.cli("stop", "plain")
            assert (out.returncode, out.stdout) == (0, "plain: stopped\n"), out.stderr
            assert start.poll() is None, "the start answered before its job was up"
            out = running.cli("stop", "never")
            assert out.returncode == 0, out.stderr
            said, errors = start.communicate(timeout=30)
        finally:
            if start.poll() is None:
                start.kill()
                start.communicate()
        assert (start.returncode, said) == (1, "")
        assert errors == "jobvisor: never: started, but it was stopped meanwhile before it was up\n"
    finally:
        assert stop_daemon(running) == 0


def test_an_http_start_answers_once_the_job_is_up_or_says_why_not(
    tmp_path: Path, refused: int
) -> None:
    manifest = _manifest(free_port(), refused) + "http: {token: {secret: {env: JV_HTTP_TOKEN}}}\n"
    with http_daemon(tmp_path, manifest, "--runtime", RUNTIME) as running:
        url, auth = running.http.url, running.http.auth
        answer = requests.post(url + "/api/jobs/web/start", headers=auth, timeout=60)
        assert answer.status_code == 200, answer.text
        assert _state(running, "web") == "running"
        answer = requests.post(url + "/api/jobs/never/start", headers=auth, timeout=60)
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "failed"
        assert "never: started, but it failed before it was up: tcp" in answer.json()["error"]
        # ?no_block=1, as the CLI's --no-block: answered once taken.
        requests.post(url + "/api/jobs/never/stop", headers=auth, timeout=60)
        answer = requests.post(url + "/api/jobs/never/start?no_block=1", headers=auth, timeout=60)
        assert answer.status_code == 200, answer.text
        assert _state(running, "never") == "starting"
        for query in (
            "/api/jobs/never/start?no_block=2",
            "/api/jobs/web/signal?signal=HUP&no_block=1",
        ):
            refused = requests.post(url + query, headers=auth, timeout=60)
            assert refused.status_code == 400, (query, refused.text)
            assert "no_block" in refused.json()["error"]


def test_until_up_follows_a_start_past_a_restarts_stop_to_where_it_went() -> None:
    """The events of the restart's stop (running -> stopping -> stopped) are not its answer;
    the first state after its new start is."""
    spec = """
version: 1
jobs:
  - {name: svc, command: [sleep, "1000"], service: true}
"""
    tree = start_tree(load_manifest(spec))
    try:
        wait_until(lambda: tree.status()["children"][0]["state"] == "running", "svc running")
        until = UntilUp(tree, "svc")
        try:
            tree.restart("svc", timeout=30)
            assert until.done.wait(30)
            assert until.state is State.RUNNING
        finally:
            until.cancel()
        until = UntilUp(tree, "svc")
        try:
            tree.stop_child("svc", timeout=30)
            # A stop alone is no start: nothing began, so it is no answer.
            wait_until(lambda: until.now is State.STOPPED, "the stop seen")
            assert not until.done.is_set()
        finally:
            until.cancel()
    finally:
        tree.stop()


def test_a_start_waiting_for_a_dependency_says_so_when_the_wait_runs_out(refused: int) -> None:
    """``app`` waits (pending) for ``dep``, whose ready check does not pass: the answer at
    the end of the wait says it waits for a dependency (it said "its ready check has not
    passed yet", of a job with none), for a restart of the pending job too, which changes no
    state and so sends no event."""
    spec = f"""
version: 1
jobs:
  - name: dep
    command: [sleep, "1000"]
    service: true
    ready: {{tcp: "127.0.0.1:{refused}", timeout: 60s}}
  - {{name: app, command: [sleep, "1000"], service: true, depends_on: [dep], autostart: false}}
"""
    tree = start_tree(load_manifest(spec))
    try:
        for op in ("start", "restart"):
            reply = act(tree, op, "app", wait=1.0, daemon=False)
            done = "started" if op == "start" else "restarted"
            assert reply == {
                "ok": False,
                "code": "under_way",
                "error": f"app: {done}, and not up after 1s: it waits for a dependency to be "
                "ready; it goes on: GET /api/status shows when it runs",
            }, op
        # Not followed (--no-block): answered once taken.
        assert act(tree, "start", "app", up=False, daemon=False) == {"ok": True, "result": None}
    finally:
        tree.stop()
