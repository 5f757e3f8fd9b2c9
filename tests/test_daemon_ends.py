"""How a real `jobvisor daemon` ends: by itself when its tree ends, when its terminal hangs up,
and what a reload says of the environment it reads."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import CLI, ENV, Jobvisor, Watched, gone, start_daemon, stop_daemon, wait_until

from supervision._history import read_history

# -- the tree ends by itself ------------------------------------------------------------------------

ESCALATES = """
version: 1
supervisor: {on_exhausted: escalate, intensity: {max_restarts: 1}, backoff: {initial: 1ms, max: 5ms}}
jobs:
  - name: t
    command: [sh, -c, "while [ ! -e go ]; do sleep 0.02; done; exit 3"]
  - name: s1
    service: true
    command: [sh, -c, "echo $$ > s1.pid; while true; do sleep 0.05; done"]
  - name: s2
    service: true
    command: [sh, -c, "while true; do sleep 0.05; done"]
"""


def _pid_in(path: Path) -> int | None:
    """The pid a job wrote to ``path``; None until it is there whole."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        text = path.read_text()
        if text.endswith("\n"):
            return int(text)
    return None


def _last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


@contextlib.contextmanager
def killed_at_the_end(*pidfiles: Path) -> Iterator[None]:
    """Whatever a failed test leaves running (by the pids it wrote) is killed. Only then: a
    test that passed saw each of them end, and its pid may be another process's since."""
    try:
        yield
    except BaseException:
        for pidfile in pidfiles:
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        raise


def test_a_tree_that_escalates_past_the_root_ends_the_daemon_with_exit_1(tmp_path: Path) -> None:
    """SPEC §2: escalation past the root ends the run. The daemon stayed up with a dead tree
    (`status` said failed, `start` was refused) and exited 0 at the next SIGTERM, so systemd's
    `Restart=on-failure` never saw a failure."""
    pidfile = tmp_path / "jobvisor.pid"
    running = start_daemon(tmp_path, ESCALATES, "--pidfile", str(pidfile))
    try:
        assert pidfile.exists()
        s1 = wait_until(lambda: _pid_in(tmp_path / "s1.pid"), "s1 runs")
        (tmp_path / "go").touch()  # t fails from now on, the daemon being ready
        _, err = running.proc.communicate(timeout=30)  # it ends by itself: no signal sent
    finally:
        code = stop_daemon(running)
    assert code == 1, err
    assert re.search(
        r"ERROR +supervision\.daemon: the tree ended by itself: escalation reached the root: "
        r".*t: restart 2 within 60s is more than max_restarts \(1\) allows .*; stopping \(exit 1\)",
        err,
    ), err
    assert re.search(
        r"ERROR +supervision\.daemon: daemon stopped \(exit 1: the tree ended by itself: "
        r"escalation reached the root\); the stop took \d",
        _last_line(err),
    ), err
    assert "daemon stopping" in err
    assert not pidfile.exists(), "its pidfile is removed"
    assert not (running.state / "control.sock").exists(), "its socket is removed"
    # The journal was flushed: every attempt of t is in it.
    rows = read_history(running.state / "journal.sqlite3", "t")
    assert sum(1 for row in rows if row.get("outcome") == "failed") == 2, rows
    wait_until(lambda: gone(s1), "s1 stopped")
    status = subprocess.run(
        [*CLI, "status"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 3, status.stderr


@pytest.mark.parametrize("how", ["foreground", "detached"])
def test_a_tree_that_escalates_during_the_start_ends_the_daemon_before_it_is_ready(
    tmp_path: Path, how: str
) -> None:
    """The escalation comes while a readiness probe holds the start: the daemon said "daemon
    ready" (READY=1; `--detach`'s launcher exited 0) of a tree going down, and ran on."""
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent("""
        version: 1
        supervisor: {on_exhausted: escalate, intensity: {max_restarts: 1}, backoff: {initial: 1ms, max: 5ms}}
        jobs:
          - name: t
            service: true
            command: [sh, -c, "exit 3"]
          - name: slow
            service: true
            command: [sleep, '100']
            ready: {command: [sh, -c, "test -e go"], timeout: 60s, interval: 20ms}
        """)
    )
    if how == "detached":
        with killed_at_the_end(tmp_path / "jobvisor.pid"):
            launcher = subprocess.run(
                [*CLI, "daemon", "--detach", "--pidfile", str(tmp_path / "jobvisor.pid")],
                cwd=tmp_path,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert launcher.returncode == 1, launcher.stderr
            assert "the tree ended by itself: escalation reached the root" in launcher.stderr
            assert not (tmp_path / "jobvisor.pid").exists()
        return
    jv = Jobvisor(tmp_path, "daemon")
    try:
        assert jv.wait(30) == 1, jv.stderr
    finally:
        jv.close()
    assert "daemon ready" not in jv.stderr
    assert "daemon stopped (exit 1: the tree ended by itself: escalation reached the root)" in (
        _last_line(jv.stderr)
    ), jv.stderr


def test_a_tree_whose_budget_runs_out_with_give_up_ends_the_daemon_with_exit_1(
    tmp_path: Path,
) -> None:
    """The root's `on_exhausted: give_up` for the tree's budget stops every job: nothing is
    left to supervise, and the daemon said nothing and exited 0 at the next SIGTERM."""
    manifest = """
        version: 1
        supervisor:
          budget: {max_restarts: 2, within: 60s}
          on_exhausted: give_up
          backoff: {initial: 1ms, max: 5ms}
        jobs:
          - name: flaky
            service: true
            command: [sh, -c, "while [ ! -e go ]; do sleep 0.02; done; exit 3"]
          - name: s1
            service: true
            command: [sh, -c, "while true; do sleep 0.05; done"]
        """
    running = start_daemon(tmp_path, manifest)
    try:
        (tmp_path / "go").touch()  # flaky fails from now on, the daemon being ready
        _, err = running.proc.communicate(timeout=30)
    finally:
        code = stop_daemon(running)
    assert code == 1, err
    assert re.search(
        r"ERROR +supervision\.daemon: the tree ended by itself: the root gave up: tree budget "
        r"exhausted: restart 3 in the tree within 60s is more than budget\.max_restarts \(2\) "
        r"allows \(raise budget\.max_restarts or budget\.within, or fix what makes jobs exit\) \(after ",
        err,
    ), err
    assert "daemon stopped (exit 1: the tree ended by itself: the root gave up)" in _last_line(err)
    assert not (running.state / "control.sock").exists()


# -- the terminal hangs up -----------------------------------------------------------------------

# A job that records its pid, so the test can see it stopped.
IN_A_TERMINAL = """
version: 1
jobs:
  - name: svc
    service: true
    command: [sh, -c, "echo $$ > svc.pid; while true; do sleep 0.05; done"]
"""

# Makes its stdin (a pty's slave) the controlling terminal of the new session it runs in, as a
# terminal emulator's shell has it, then runs the rest of its arguments. With "nohup" first,
# SIGHUP is ignored first, as nohup does. With "leave LOG" first it is the interactive shell of
# `jobvisor daemon &`: the daemon in a process group of its own, and the shell exits once the
# daemon's LOG says it is ready.
IN_TERMINAL = """
import fcntl, os, signal, subprocess, sys, termios, time
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
args = sys.argv[1:]
if args[0] == "nohup":
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = args[1:]
if args[0] == "leave":
    log, args = args[1], args[2:]
    subprocess.Popen(args, process_group=0)
    while not (os.path.exists(log) and "daemon ready" in open(log).read()):
        time.sleep(0.01)
    os._exit(0)
os.execvp(args[0], args)
"""


class Terminal:
    """A pty whose slave is the controlling terminal of ``argv``'s session; its master is read
    all along (so that nothing writing to the terminal ever blocks) until it is hung up."""

    def __init__(self, cwd: Path, argv: list[str]) -> None:
        self.master, slave = os.openpty()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", IN_TERMINAL, *argv],
                cwd=cwd,
                env=ENV,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        self.text = b""
        self._hung_up = threading.Event()
        self._reader = threading.Thread(target=self._read, name="test-pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._hung_up.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: no slave open any more
                return
            if not chunk:
                return
            self.text += chunk

    def hang_up(self) -> None:
        """Close the terminal, as closing a terminal emulator's window does."""
        if not self._hung_up.is_set():
            self._hung_up.set()
            self._reader.join(5)
            os.close(self.master)

    def close(self) -> None:
        self.hang_up()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _reloads_on_a_sighup(pid: int, log: Path) -> None:
    """A SIGHUP a person sends (`kill -HUP`) reloads: the log says so, and the daemon runs on."""
    before = log.read_text().count("reloaded ")
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: log.read_text().count("reloaded ") > before, "the SIGHUP's reload")
    assert not gone(pid)


@pytest.mark.parametrize("leader", ["daemon", "shell"])
def test_a_terminal_that_hangs_up_stops_its_foreground_daemon(tmp_path: Path, leader: str) -> None:
    """Closing the terminal of a foreground daemon stops it and its jobs, as foreman and honcho
    do; a `kill -HUP` while the terminal is there still reloads. It took the hangup's SIGHUP
    for a reload, and the whole stack ran on, unseen. The daemon leads the terminal's session,
    or a shell does (the shell passes the hangup on: here the kernel, as the shell dies)."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(IN_A_TERMINAL))
    log, pidfile = tmp_path / "daemon.log", tmp_path / "jobvisor.pid"
    daemon = [*CLI, "daemon", "--log-file", str(log), "--pidfile", str(pidfile)]
    argv = daemon if leader == "daemon" else ["sh", "-c", f"{subprocess.list2cmdline(daemon)}; :"]
    terminal = Terminal(tmp_path, argv)
    with killed_at_the_end(pidfile, tmp_path / "svc.pid"):
        try:
            wait_until(lambda: log.exists() and "daemon ready" in log.read_text(), "ready")
            svc = wait_until(lambda: _pid_in(tmp_path / "svc.pid"), "svc runs")
            pid = int(pidfile.read_text())
            _reloads_on_a_sighup(pid, log)
            terminal.hang_up()
            wait_until(lambda: gone(pid), "the daemon ended")
            if leader == "daemon":
                assert terminal.proc.wait(10) == 0, log.read_text()
        finally:
            terminal.close()
        text = log.read_text()
        assert re.search(
            r"WARNING +supervision\.daemon: the terminal hung up \(SIGHUP, and the daemon's "
            r"controlling terminal is gone\): stopping every job gracefully, as for SIGTERM",
            text,
        ), text
        assert text.count("reloaded ") == 1, "the hangup is no reload"
        assert "daemon stopped (exit 0)" in _last_line(text), text
        assert gone(svc), "its jobs were stopped"
        assert not pidfile.exists()


def test_a_daemon_started_under_nohup_survives_its_terminal_and_then_reloads(
    tmp_path: Path,
) -> None:
    """`nohup jobvisor daemon &` asked to outlive the terminal: the hangup changes nothing but
    where its stdout and stderr go (/dev/null), and a later SIGHUP still reloads."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(IN_A_TERMINAL))
    log, pidfile = tmp_path / "daemon.log", tmp_path / "jobvisor.pid"
    terminal = Terminal(
        tmp_path, ["nohup", *CLI, "daemon", "--log-file", str(log), "--pidfile", str(pidfile)]
    )
    with killed_at_the_end(pidfile, tmp_path / "svc.pid"):
        try:
            wait_until(lambda: log.exists() and "daemon ready" in log.read_text(), "ready")
            pid = int(pidfile.read_text())
            terminal.hang_up()
            wait_until(
                lambda: "the terminal hung up" in log.read_text(),
                "the hangup seen",
                proc=terminal.proc,
            )
            assert "running on" in log.read_text()
            assert "reloaded " not in log.read_text(), "the hangup is no reload"
            # A SIGHUP just after the hangup may be the hangup's own (the kernel's, as the
            # session's leader exits): one sent after a while reloads.
            sent = [0.0]

            def reloaded() -> bool:
                if time.monotonic() - sent[0] > 0.5:
                    sent[0] = time.monotonic()
                    os.kill(pid, signal.SIGHUP)
                return "reloaded " in log.read_text()

            wait_until(reloaded, "a later SIGHUP's reload", proc=terminal.proc)
            assert (Path(f"/proc/{pid}/fd/2").resolve()) == Path(os.devnull)
            os.kill(pid, signal.SIGTERM)
            assert terminal.proc.wait(30) == 0, log.read_text()
        finally:
            terminal.close()
    text = log.read_text()
    assert "daemon stopping" in text
    assert "daemon stopped (exit 0)" in _last_line(text), text


def test_a_terminal_gone_without_a_hangup_leaves_sighup_a_reload(tmp_path: Path) -> None:
    """The shell of a background `jobvisor daemon &` exits: the daemon's terminal is gone,
    and no SIGHUP came (it is in a process group of its own). It runs on, as any background
    job does, says so, and a later `kill -HUP` reloads: it is not taken for a hangup."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(IN_A_TERMINAL))
    log, pidfile = tmp_path / "daemon.log", tmp_path / "jobvisor.pid"
    daemon = [*CLI, "daemon", "--log-file", str(log), "--pidfile", str(pidfile)]
    terminal = Terminal(tmp_path, ["leave", str(log), *daemon])
    with killed_at_the_end(pidfile, tmp_path / "svc.pid"):
        try:
            assert terminal.proc.wait(30) == 0, "the shell left once the daemon was ready"
            pid = int(pidfile.read_text())
            wait_until(
                lambda: "no SIGHUP came with it" in log.read_text(), "the terminal's loss said"
            )
            _reloads_on_a_sighup(pid, log)
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: gone(pid), "the daemon stopped")
        finally:
            terminal.close()
    text = log.read_text()
    assert "the terminal hung up" not in text
    assert "daemon stopped (exit 0)" in _last_line(text), text


def test_a_daemon_without_a_terminal_reloads_on_every_sighup(tmp_path: Path) -> None:
    """Detached (a session of its own, no controlling terminal: systemd, setsid, --detach), a
    SIGHUP is always a reload."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(IN_A_TERMINAL))
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen(
        [*CLI, "daemon", "--log-file", str(log)],
        cwd=tmp_path,
        env=ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    with killed_at_the_end(tmp_path / "svc.pid"):
        try:
            wait_until(
                lambda: log.exists() and "daemon ready" in log.read_text(), "ready", proc=proc
            )
            for _ in range(2):
                _reloads_on_a_sighup(proc.pid, log)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- what a reload reads ---------------------------------------------------------------------------


def test_a_reload_missing_a_variable_says_the_daemon_keeps_the_environment_it_started_with(
    tmp_path: Path,
) -> None:
    """`export REDIS_URL=...; jobvisor validate` passed and `jobvisor reload` said the variable
    was unset: a reload reads the daemon's environment, and the error now says so."""
    running = start_daemon(tmp_path, IN_A_TERMINAL)
    try:
        (tmp_path / "jobs.yaml").write_text(
            textwrap.dedent(IN_A_TERMINAL)
            + "  - name: cache\n    command: [sh, -c, 'echo $0', '${REDIS_URL}']\n"
        )
        shell = {**ENV, "REDIS_URL": "redis://127.0.0.1:6379"}
        valid = subprocess.run(
            [*CLI, "validate"],
            cwd=tmp_path,
            env=shell,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert valid.returncode == 0, valid.stderr
        out = subprocess.run(
            [*CLI, "reload"],
            cwd=tmp_path,
            env=shell,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 2, out.stderr
        pid = running.proc.pid
        assert (
            f"a reload reads ${{NAME}} from the daemon's own environment, fixed when it started "
            f"(pid {pid}), not from the shell that asks for the reload: REDIS_URL is unset "
            "there; restart the daemon with it set, or use a secret file "
            "({secret: {file: PATH}}) or a value written in the manifest"
        ) in out.stderr, out.stderr
        assert (
            "jobvisor: REDIS_URL is set in this shell, but the daemon does not see it: a daemon "
            "keeps the environment it started with\n"
        ) in out.stderr, out.stderr
        assert "cache" not in running.nodes(), "a bad manifest changes nothing"
    finally:
        assert stop_daemon(running) == 0


# -- `run` in a terminal that hangs up -----------------------------------------------------------

RUN_IN_A_TERMINAL = """
version: 1
logging: {file: run.log}
jobs:
  - name: svc
    service: true
    command: [sh, -c, "echo $$ > svc.pid; while true; do sleep 0.05; done"]
"""


@pytest.mark.parametrize("leader", ["run", "shell"])
def test_a_terminal_that_hangs_up_stops_run_and_its_jobs_gracefully(
    tmp_path: Path, leader: str
) -> None:
    """Closing the terminal of `jobvisor run` killed it outright (SIGHUP's default action):
    no orderly stop, no summary, its jobs left to the warden. A hangup is a graceful stop, as
    SIGTERM is (once: the shell's SIGHUP after the kernel's is no second signal)."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(RUN_IN_A_TERMINAL))
    run = [*CLI, "run", "jobs.yaml"]
    argv = run if leader == "run" else ["sh", "-c", f"{subprocess.list2cmdline(run)}; :"]
    terminal = Terminal(tmp_path, argv)
    log = tmp_path / "run.log"
    with killed_at_the_end(tmp_path / "svc.pid"):
        try:
            svc = wait_until(lambda: _pid_in(tmp_path / "svc.pid"), "svc runs")
            terminal.hang_up()
            wait_until(lambda: gone(svc), "svc stopped")
            if leader == "run":
                assert terminal.proc.wait(10) == 0, log.read_text()
            else:
                terminal.proc.wait(10)
        finally:
            terminal.close()
    # Under a shell, `run` may still be ending as the shell goes: its last lines are waited for.
    wait_until(lambda: "svc: stopped (stopped)" in log.read_text(), "the stop said")
    journal = tmp_path / ".jobvisor" / "journal.sqlite3"

    def attempts() -> list[tuple[str, str]]:
        rows = read_history(journal)
        return [(r["path"], r["outcome"]) for r in rows if r.get("outcome")]

    assert wait_until(attempts, "the attempt journaled") == [("svc", "stopped")]
    text = log.read_text()
    assert "run: SIGHUP: stopping every job" in text, text
    assert "second signal: killing" not in text, text


# -- SIGKILLed --------------------------------------------------------------------------------------

UNSTARTED = """
version: 1
jobs:
  - name: s
    service: true
    autostart: false
    command: [sleep, "1000"]
    stop: {grace: 1s}
"""


def _wardens_of(pid: int) -> list[int]:
    """The command wardens that ``pid`` started (their cmdline is set once they exec'd)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid and b"groups = set()" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def test_a_daemon_has_its_command_warden_before_its_first_command(
    tmp_path: Path, procs: Watched
) -> None:
    """A daemon SIGKILLed just after it was ready left a service running (adopted by PID 1) in
    2 tries of 4: the command warden was started by the first command's registration, after
    that command's spawn, and a kill while the warden was being spawned left the commands
    spawned so far unknown to it. A tree with command jobs starts it before any command: a
    command's registration is one write to its pipe, right after the spawn."""
    running = start_daemon(tmp_path, UNSTARTED)
    try:
        pid = running.proc.pid
        wait_until(lambda: _wardens_of(pid), "the warden, with no command started", timeout=5)
        out = running.cli("start", "s")
        assert out.returncode == 0, out.stderr
        command = wait_until(lambda: running.nodes()["s"].get("pid"), "s runs")
        procs.add(command)
        running.proc.kill()
        running.proc.wait()
    finally:
        stop_daemon(running)
    assert procs.all_dead(timeout=5), "the command outlived its SIGKILLed daemon"
