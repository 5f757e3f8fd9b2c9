"""jobvisor as a container's first process (PID 1), in a real PID namespace (``unshare``)."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import RUNTIME
from faultkit import CLI, ENV, Jobvisor, run_jobvisor, wait_until

from supervision._pid1 import exit_code_of

# --kill-child: whatever happens to the test, unshare's end takes the namespace with it.
CONTAINER = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--")


def _why_no_namespace() -> str | None:
    try:
        done = subprocess.run([*CONTAINER, "true"], capture_output=True, timeout=30, check=False)
    except FileNotFoundError:
        return "no unshare(1) here"
    return None if done.returncode == 0 else f"cannot make a PID namespace: {done.stderr!r}"


needs_namespace = pytest.mark.skipif((why := _why_no_namespace()) is not None, reason=why or "")


def _init_of(jv: Jobvisor) -> int:
    """The host pid of the namespace's PID 1: unshare's one child."""
    children = Path(f"/proc/{jv.pid}/task/{jv.pid}/children")
    return int(wait_until(lambda: children.read_text().split(), "PID 1", proc=jv.proc)[0])


def _zombies_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state == "Z" and int(ppid) == parent:
                found.append(int(entry.name))
    return found


def _ticks(directory: Path) -> int:
    journal = directory / ".jobvisor" / "journal.sqlite3"
    if not journal.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        try:
            return int(
                db.execute("SELECT count(*) FROM attempts WHERE path = 'tick'").fetchone()[0]
            )
        except sqlite3.OperationalError:  # no table yet
            return 0


@needs_namespace
def test_as_pid_1_it_reaps_orphans_passes_signals_on_and_stops_gracefully(
    tmp_path: Path,
) -> None:
    # Each tick leaves an orphan (`sleep &`) that ends 50 ms later, handed to PID 1: without an
    # init's wait, one zombie per tick (28 after 3 s), until the container had no pid left.
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent("""
        version: 1
        jobs:
          - {name: tick, every: 50ms, command: "sleep 0.05 & exit 0"}
          - {name: svc, service: true, command: [sleep, "1000"]}
        """)
    )
    log = tmp_path / "jv.log"
    jv = Jobvisor(
        tmp_path, "--runtime", RUNTIME, "daemon", "--log-file", str(log), prefix=CONTAINER
    )
    try:
        init = _init_of(jv)
        wait_until(lambda: _ticks(tmp_path) >= 10, "ten ticks", proc=jv.proc)
        # A zombie may be seen between its end and the init's wait; none stays.
        wait_until(lambda: not _zombies_of(init), "no zombie left", proc=jv.proc, timeout=5)
        # Signals to PID 1 reach jobvisor: SIGHUP reloads, SIGTERM stops gracefully.
        os.kill(init, signal.SIGHUP)
        wait_until(lambda: "reloaded" in log.read_text(), "the reload", proc=jv.proc)
        os.kill(init, signal.SIGTERM)
        assert jv.wait(30) == 0, jv.stderr
    finally:
        jv.close()
    assert "daemon stopped (exit 0)" in log.read_text().splitlines()[-1]


@needs_namespace
def test_as_pid_1_run_ends_with_jobvisors_own_exit_code(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\njobs:\n  - {name: bad, command: [sh, -c, 'exit 3'], restart: temporary}\n"
    )
    jv = run_jobvisor(tmp_path, "--runtime", RUNTIME, "run", prefix=CONTAINER)
    assert jv.proc.returncode == 1, jv.stderr  # run's exit for a failed job (SPEC §4)
    assert "failed (3)" in jv.stdout


@needs_namespace
def test_daemon_detach_as_pid_1_is_refused_since_the_container_would_end_with_it(
    tmp_path: Path,
) -> None:
    # It said "daemon ready" and exit 0, and the kernel killed the daemon with the launcher.
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\njobs:\n  - {name: svc, service: true, command: [sleep, '1000']}\n"
    )
    jv = run_jobvisor(tmp_path, "--runtime", RUNTIME, "daemon", "--detach", prefix=CONTAINER)
    assert jv.proc.returncode == 2
    assert "daemon --detach cannot run as a container's first process (PID 1)" in jv.stderr
    assert "Traceback" not in jv.stderr
    assert not (tmp_path / ".jobvisor" / "control.sock").exists()


def test_the_inits_exit_code_is_a_shells_reading_of_jobvisors_end() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(7)
    assert exit_code_of(os.waitpid(pid, 0)[1]) == 7
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)
    assert exit_code_of(os.waitpid(pid, 0)[1]) == 128 + signal.SIGTERM


class _Terminal:
    """``jobvisor run`` as PID 1 of a PID namespace whose session a pty leads (``setsid -c``)."""

    def __init__(self, cwd: Path, runtime: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [*CONTAINER, "setsid", "-c", *CLI, "--runtime", runtime, "run"],
            cwd=cwd,
            env=ENV,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""

    def read_until(self, text: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not seen in:\n{self.seen.decode(errors='replace')}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the other side is gone
                    return

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@needs_namespace
@pytest.mark.skipif(
    RUNTIME == "gevent",
    reason="from a gevent-patched test process the pty's hangup stays pending, undelivered, at "
    "the namespace's init (seen, not understood); both of jobvisor's runtimes run from threads",
)
@pytest.mark.parametrize("runtime", ["threads", "gevent"])
def test_as_pid_1_a_terminals_ctrl_c_is_one_signal_and_its_hangup_a_graceful_stop(
    tmp_path: Path, runtime: str
) -> None:
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\njobs:\n  - {name: svc, service: true, command: [sleep, '1000']}\n"
    )
    terminal = _Terminal(tmp_path, runtime)
    try:
        terminal.read_until(b"svc: started")
        os.write(terminal.master, b"\x03")  # Ctrl-C: the foreground group has it already
        terminal.read_until(b"stopped by SIGINT")
        assert terminal.proc.wait(20) == 0
    finally:
        terminal.close()
    assert terminal.seen.count(b"run: SIGINT: stopping every job") == 1
    assert b"second signal: killing" not in terminal.seen
    # Closing the terminal: its hangup goes to the session's leader, the init, alone.
    log = tmp_path / "jv.log"
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\n"
        f"logging: {{file: {log}}}\n"
        "jobs:\n  - {name: svc, service: true, command: [sleep, '1000']}\n"
    )
    terminal = _Terminal(tmp_path, runtime)
    try:
        wait_until(lambda: log.exists() and "svc: started" in log.read_text(), "started")
        os.close(terminal.master)
        terminal.master = -1
        assert terminal.proc.wait(20) == 0, log.read_text()
    finally:
        terminal.close()
    assert "run: SIGHUP: stopping every job" in log.read_text()
