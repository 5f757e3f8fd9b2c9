"""`jobvisor shutdown`: a daemon stopped by a command, as supervisorctl shutdown and systemctl
stop do, waited for until it is gone (its jobs given their stop grace)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from faultkit import CLI, DAEMON, ENV, Jobvisor, Running, start_daemon, stop_daemon, wait_until

from supervision._history import journal_path, read_history


def _stubborn(tmp_path: Path, grace: str) -> str:
    """A manifest with a job that ignores SIGTERM, killed after ``grace``; and one that notes
    its SIGTERM in ``tmp_path/polite``."""
    return f"""\
        version: 1
        jobs:
          - name: polite
            command: >-
              trap 'touch {tmp_path / "polite"}; exit 0' TERM; touch {tmp_path / "polite-set"};
              while :; do sleep 0.05; done
            service: true
          - name: stubborn
            command: "trap '' TERM; touch {tmp_path / "stubborn-set"}; exec sleep 600"
            service: true
            stop: {{grace: {grace}}}
        """


def _up(running: Running, *names: str) -> None:
    """Until the jobs (both by default) have set their traps: a signal before that ends them."""
    for name in names or ("polite", "stubborn"):
        marker = running.dir / f"{name}-set"
        wait_until(marker.exists, f"{name}'s trap set", proc=running.proc, timeout=30)
        marker.unlink()


def _stopping(running: Running) -> None:
    socket = running.state / "control.sock"
    wait_until(lambda: not socket.exists(), "its stop begun", proc=running.proc)


def _stop_row(state: Path) -> dict[str, object]:
    rows = [
        r for r in read_history(journal_path(state), None, 500) if r.get("kind") == "daemon_stop"
    ]
    assert len(rows) == 1, rows
    detail = rows[0]["detail"]
    assert isinstance(detail, dict)
    return detail


def test_shutdown_stops_the_daemon_gracefully_and_returns_once_it_is_gone(tmp_path: Path) -> None:
    running = start_daemon(tmp_path, _stubborn(tmp_path, "1s"))
    try:
        _up(running)
        began = time.monotonic()
        out = running.cli("shutdown")
        took = time.monotonic() - began
        # Gone when the command returns: its process has ended (a zombie of ours till reaped).
        assert running.proc.poll() == 0, out
        assert out.returncode == 0, out.stderr
        assert took >= 1.0  # the stubborn job's grace was waited out
        pid = running.proc.pid
        lines = out.stdout.splitlines()
        assert lines[0] == f"daemon (pid {pid}): stopping"
        assert lines[1].startswith(f"daemon (pid {pid}): stopped (")
        assert (tmp_path / "polite").exists()  # its stop signal, not the process's end
        detail = _stop_row(running.state)
        assert (detail["how"], detail["via"], detail["code"]) == ("shutdown", "control", 0)
    finally:
        assert stop_daemon(running) == 0


def test_shutdown_no_block_answers_once_the_stop_began(tmp_path: Path) -> None:
    running = start_daemon(tmp_path, _stubborn(tmp_path, "20s"))
    try:
        _up(running)
        out = running.cli("shutdown", "--no-block", "--json")
        assert out.returncode == 0, out.stderr
        assert running.proc.poll() is None  # still waiting out the stubborn job's 20 s grace
        assert json.loads(out.stdout) == {
            "ok": True,
            "pid": running.proc.pid,
            "already_stopping": False,
            "stopped": False,
        }
        # Asked again while it stops: it is stopping already (its socket may be gone by now).
        again = running.cli("shutdown", "--no-block")
        assert again.returncode == 0, again.stderr
        assert again.stdout == f"daemon (pid {running.proc.pid}): stopping already\n"
    finally:
        # A second signal kills what still runs at once (exit 1, forced): the test is done.
        running.proc.send_signal(signal.SIGTERM)
        assert stop_daemon(running) in (0, 1)


def test_a_shutdown_of_a_daemon_stopping_already_waits_for_its_end(tmp_path: Path) -> None:
    running = start_daemon(tmp_path, _stubborn(tmp_path, "1s"))
    try:
        _up(running)
        running.proc.send_signal(signal.SIGTERM)
        # Its stop begun (its socket goes first): else the request may come before the signal
        # is taken, and be the one that begins the stop (review r56).
        _stopping(running)
        out = running.cli("shutdown", "--json")
        assert out.returncode == 0, out.stderr
        assert running.proc.poll() == 0
        document = json.loads(out.stdout)
        assert document["already_stopping"] is True
        assert document["stopped"] is True
        assert isinstance(document["took"], float)
        assert _stop_row(running.state)["how"] == "SIGTERM"  # the signal began it
    finally:
        assert stop_daemon(running) == 0


def test_shutdown_with_no_daemon_is_exit_3(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(DAEMON)
    out = subprocess.run(
        [*CLI, "shutdown"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 3
    assert out.stdout == ""
    assert "no daemon is running" in out.stderr
    assert "Traceback" not in out.stderr


# Each command's wait for an answer is bounded well under the 60 s it was (review w52b).
@pytest.mark.timeout(45)
def test_shutdown_of_a_daemon_that_does_not_answer_says_so_and_how_to_stop_it(
    tmp_path: Path,
) -> None:
    """A daemon that takes the connection and never answers (SIGSTOPped here, a control loop
    blocked) is there, its pid known: said so, with what ends it, not as no daemon."""
    from supervision._client import SHUTDOWN_TIMEOUT

    running = start_daemon(tmp_path, DAEMON)
    pid = running.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # Paused, a SIGTERM would wait too: SIGCONT is what it needs (r57).
        said = (
            f"jobvisor: the daemon (pid {pid}) at {running.state / 'control.sock'} gave no "
            f"answer to the shutdown request in {SHUTDOWN_TIMEOUT:g}s: it is stopped (SIGSTOP, "
            f"Ctrl-Z); kill -CONT {pid} lets it run again and take the request it holds (it "
            "then stops gracefully)\n"
        )
        out = running.cli("shutdown", "--json")
        assert out.returncode == 3, out
        assert out.stderr == said
        assert json.loads(out.stdout) == {
            "ok": False,
            "code": "no_answer",
            "pid": pid,
            "error": said.removeprefix("jobvisor: ").rstrip("\n"),
        }
        out = running.cli("shutdown", "--no-block")
        assert out.returncode == 3, out
        assert (out.stdout, out.stderr) == ("", said)
        assert running.proc.poll() is None
        os.kill(pid, signal.SIGCONT)
        # The requests were sent: once resumed, it takes them and stops, as said.
        assert running.proc.wait(timeout=30) == 0
    finally:
        if running.proc.poll() is None:
            os.kill(pid, signal.SIGCONT)
        assert stop_daemon(running) == 0


def test_shutdown_takes_no_job_path(tmp_path: Path) -> None:
    running = start_daemon(tmp_path, DAEMON)
    try:
        out = running.cli("shutdown", "svc")
        assert out.returncode == 2
        assert "unrecognized arguments: svc" in out.stderr
        assert running.proc.poll() is None
    finally:
        assert stop_daemon(running) == 0


def test_shutdown_of_a_daemon_that_does_not_know_it_says_how_to_stop_it(tmp_path: Path) -> None:
    """An older daemon refuses an op it does not know: the command says to send SIGTERM."""
    from supervision._shutdown import shutdown_refused

    said = shutdown_refused(
        {"ok": False, "code": "bad_request", "error": "unknown op 'shutdown': expected ..."},
        4242,
    )
    assert said == (
        "unknown op 'shutdown': expected ... (the daemon, pid 4242, is from an older jobvisor "
        "than this command: stop it with kill -TERM 4242, which stops it gracefully too)"
    )


def test_the_daemons_process_has_ended_when_shutdown_returns(tmp_path: Path) -> None:
    running = start_daemon(tmp_path, DAEMON)
    try:
        out = running.cli("shutdown")
        assert out.returncode == 0, out.stderr
        assert running.proc.poll() == 0  # ended (a zombie of ours until now), exit 0
    finally:
        assert stop_daemon(running) == 0


def test_shutdown_of_a_daemon_still_starting_cuts_its_start_short(tmp_path: Path) -> None:
    """Its socket answers before its tree is up (a readiness probe holds the start here)."""
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\n"
        "jobs:\n"
        "  - name: slow\n"
        "    service: true\n"
        "    command: [sleep, '100']\n"
        '    ready: {command: [sh, -c, "test -e go"], timeout: 60s, interval: 20ms}\n'
    )
    jv = Jobvisor(tmp_path, "daemon")
    try:
        wait_until((tmp_path / ".jobvisor" / "control.sock").exists, "it serves", proc=jv.proc)
        out = subprocess.run(
            [*CLI, "shutdown"],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert jv.proc.poll() == 0
        err = jv.stderr
    finally:
        if jv.proc.poll() is None:
            jv.terminate()  # a graceful stop: its job's process group goes with it
        jv.close()
    assert "daemon ready" not in err
    assert "shutdown asked (via control): stopping every job gracefully" in err


def test_a_stop_that_had_to_kill_says_so(tmp_path: Path) -> None:
    """`stop stubborn` waited out its grace, killed it, and said only `stubborn: stopped`
    (trial h254): whoever tunes stop.grace needs to see it."""
    running = start_daemon(tmp_path, _stubborn(tmp_path, "1s"))
    try:
        _up(running)
        out = running.cli("stop", "stubborn", "polite")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            (
                "stubborn: stopped (killed with SIGKILL after its stop grace: it did not end "
                "on its stop signal)"
            ),
            "polite: stopped",
        ]
        assert running.cli("start", "stubborn").returncode == 0
        _up(running, "stubborn")
        out = running.cli("restart", "stubborn", "--json")
        assert out.returncode == 0, out.stderr
        (answer,) = json.loads(out.stdout)["results"]
        assert answer == {
            "ok": True,
            "job": "stubborn",
            "action": "restart",
            "killed": ["stubborn"],
        }
    finally:
        assert stop_daemon(running) == 0


def test_a_stop_that_had_to_kill_a_thread_says_so_not_sigkill(tmp_path: Path) -> None:
    """A python job in the daemon's thread gets no signal and cannot be killed: its stop said
    `killed with SIGKILL` (r53)."""
    running = start_daemon(
        tmp_path,
        """\
        version: 1
        jobs:
          - {name: py, python: "stuckfuncs:swallow_kills", service: true, stop: {grace: 1s}}
        """,
    )
    try:
        wait_until(
            lambda: running.nodes()["py"]["state"] == "running", "py running", proc=running.proc
        )
        out = running.cli("stop", "py")
        assert out.returncode == 0, out.stderr
        assert out.stdout == (
            "py: stopped (killed after its stop grace: it did not end when asked)\n"
        )
    finally:
        # Its stop waits for the swallowing thread: a second signal, once the first is
        # taken, ends it at once (exit 1, forced).
        running.proc.send_signal(signal.SIGTERM)
        _stopping(running)
        assert stop_daemon(running) in (0, 1)
