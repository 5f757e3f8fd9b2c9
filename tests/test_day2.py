"""Day-2 operations on a running daemon and ``run``: a state dir moved away, logrotate's signals.

Real ``jobvisor`` processes, a real ``mv`` (``os.rename``) of the state dir and real
signals. What an operator does by habit must neither lose the journal's rows nor kill
jobvisor without a word.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RUNTIME
from faultkit import Jobvisor, gone, wait_until

# A service that writes its output (a file in the state dir) and whose stop is the journal's
# first row: the journal's writer had connected to nothing before the move.
CHATTY = """\
version: 1
jobs:
  - name: svc
    service: true
    command: [sh, -c, "while true; do echo tick; sleep 0.05; done"]
"""


def _rows(journal: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        return list(db.execute("SELECT path, outcome FROM attempts ORDER BY id"))


def _said(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


@pytest.mark.parametrize("command", ["daemon", "run"])
def test_a_state_dir_moved_away_keeps_its_journal_and_log_and_nothing_is_made_again(
    tmp_path: Path, command: str
) -> None:
    """``mv .jobvisor .jv-moved``: the stop's rows land in the moved journal, the log goes on
    in the moved ``daemon.log``, nothing is made at the old path, and the stop waits for no
    journal that cannot be written (it waited 10 s on an empty 0644 one it had made)."""
    (tmp_path / "jobs.yaml").write_text(CHATTY)
    state, moved = tmp_path / ".jobvisor", tmp_path / ".jv-moved"
    log = state / "daemon.log"
    jv = Jobvisor(tmp_path, "--runtime", RUNTIME, command, "--log-file", str(log))
    try:
        wait_until((state / "output" / "svc.log").exists, "svc's output", proc=jv.proc)
        wait_until(lambda: _said(log, "svc: started"), "svc started", proc=jv.proc)
        state.rename(moved)
        began = time.monotonic()
        code = jv.wait(30)
        took = time.monotonic() - began
    finally:
        jv.close()
    text = (moved / "daemon.log").read_text()
    assert code == 1, jv.stderr + text
    assert not state.exists(), sorted(p.name for p in state.iterdir())
    said = f"the state dir {state} was moved to {moved} while {command} ran"
    if command == "daemon":
        said = said.replace("daemon ran", "the daemon ran")
    assert said in text, text
    assert "svc: stopped" in text, text
    assert ("svc", "stopped") in _rows(moved / "journal.sqlite3"), "the stop's row is kept"
    assert "cannot write" not in text, text
    assert "Traceback" not in text + jv.stderr
    assert took < 5, f"the stop took {took:.1f}s"
    if command == "daemon":
        assert f"daemon stopped (exit 1: the state dir {state} was moved to {moved})" in text
    else:
        last = jv.stderr.splitlines()[-1]
        assert last.startswith(f"jobvisor: the state dir {state} was moved to {moved}"), last


def test_a_state_dir_deleted_under_a_daemon_is_said_deleted_and_its_stop_waits_for_nothing(
    tmp_path: Path,
) -> None:
    """The journal's file was unlinked: its writer writes on into it (no 10 s of retries on a
    new empty one), and the message says deleted, not moved."""
    import shutil

    (tmp_path / "jobs.yaml").write_text(CHATTY)
    state = tmp_path / ".jobvisor"
    log = tmp_path / "d.log"
    jv = Jobvisor(tmp_path, "--runtime", RUNTIME, "daemon", "--log-file", str(log))
    try:
        wait_until((state / "output" / "svc.log").exists, "svc's output", proc=jv.proc)
        shutil.rmtree(state)
        began = time.monotonic()
        code = jv.wait(30)
        took = time.monotonic() - began
    finally:
        jv.close()
    text = log.read_text()
    assert code == 1, jv.stderr + text
    assert f"the state dir {state} was deleted while the daemon ran" in text, text
    assert not state.exists()
    assert "cannot write" not in text, text
    assert took < 5, f"the stop took {took:.1f}s"


# -- logrotate's signals and the other ones a person sends by habit -----------------------------

SERVICE = """\
version: 1
jobs:
  - name: svc
    service: true
    command: [sleep, "3600"]
"""


def _svc_pid(out: Path) -> int:
    return int(out.read_text().split()[0])


@pytest.mark.parametrize("command", ["daemon", "run"])
def test_sigusr1_and_sigusr2_leave_jobvisor_and_its_jobs_running(
    tmp_path: Path, command: str
) -> None:
    """logrotate's ``postrotate`` sends SIGUSR1 (nginx's reopen): it killed jobvisor without a
    word, its jobs SIGKILLed by the warden and its socket left behind."""
    (tmp_path / "jobs.yaml").write_text(
        SERVICE.replace('[sleep, "3600"]', '[sh, -c, "echo $$ > pid.txt; exec sleep 3600"]')
    )
    log = tmp_path / "d.log"
    jv = Jobvisor(tmp_path, "--runtime", RUNTIME, command, "--log-file", str(log))
    try:
        wait_until(lambda: _said(log, "svc: started"), "svc started", proc=jv.proc)
        # The shell creates pid.txt before it writes to it: its text, not its being there.
        written = tmp_path / "pid.txt"
        wait_until(
            lambda: written.exists() and written.read_text().strip(), "svc's pid", proc=jv.proc
        )
        job = _svc_pid(written)
        for signum in (signal.SIGUSR1, signal.SIGUSR2):
            name = signal.Signals(signum).name
            jv.proc.send_signal(signum)
            wait_until(
                lambda name=name: _said(log, f"{name}: jobvisor reopens"), name, proc=jv.proc
            )
        assert jv.proc.poll() is None, jv.stderr
        assert not gone(job), "the job runs on"
        assert log.read_text().count("svc: started") == 1
        assert jv.terminate() == 0, jv.stderr + log.read_text()
    finally:
        jv.close()
    text = log.read_text()
    line = next(li for li in text.splitlines() if "SIGUSR1: " in li)
    assert " INFO " in line, line
    assert "reopens its log and output files by itself at their next write; nothing to do" in line
    assert "Traceback" not in text + jv.stderr
    assert not (tmp_path / ".jobvisor" / "control.sock").exists()


@pytest.mark.parametrize("command", ["daemon", "run"])
@pytest.mark.parametrize("signum", [signal.SIGALRM, signal.SIGQUIT])
def test_the_other_fatal_signals_stop_jobvisor_gracefully(
    tmp_path: Path, command: str, signum: int
) -> None:
    """SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGQUIT, ... ended jobvisor at once by default (its
    jobs left to the warden's SIGKILL, no journal row, the socket left): a graceful stop."""
    (tmp_path / "jobs.yaml").write_text(SERVICE)
    log = tmp_path / "d.log"
    jv = Jobvisor(tmp_path, "--runtime", RUNTIME, command, "--log-file", str(log))
    try:
        wait_until(lambda: _said(log, "svc: started"), "svc started", proc=jv.proc)
        jv.proc.send_signal(signum)
        code = jv.wait(30)
    finally:
        jv.close()
    text = log.read_text()
    name = signal.Signals(signum).name
    assert code == 0, jv.stderr + text
    assert f"{name}: " in text, text
    assert "svc: stopped" in text, text
    assert ("svc", "stopped") in _rows(tmp_path / ".jobvisor" / "journal.sqlite3")
    assert not (tmp_path / ".jobvisor" / "control.sock").exists()
    assert "Traceback" not in text + jv.stderr


CONTAINER = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--")


def _why_no_namespace() -> str | None:
    try:
        done = subprocess.run([*CONTAINER, "true"], capture_output=True, timeout=30, check=False)
    except FileNotFoundError:
        return "no unshare(1) here"
    return None if done.returncode == 0 else f"cannot make a PID namespace: {done.stderr!r}"


@pytest.mark.skipif((why := _why_no_namespace()) is not None, reason=why or "")
def test_as_pid_1_sigusr1_is_passed_on_and_noted_and_sigalrm_stops_gracefully(
    tmp_path: Path,
) -> None:
    """The init passes every signal on (supervision._pid1): jobvisor, its child, notes SIGUSR1
    and stops gracefully at SIGALRM, as outside a container."""
    (tmp_path / "jobs.yaml").write_text(SERVICE)
    log = tmp_path / "d.log"
    jv = Jobvisor(
        tmp_path, "--runtime", RUNTIME, "daemon", "--log-file", str(log), prefix=CONTAINER
    )
    try:
        children = Path(f"/proc/{jv.pid}/task/{jv.pid}/children")
        init = int(wait_until(lambda: children.read_text().split(), "PID 1", proc=jv.proc)[0])
        wait_until(lambda: _said(log, "svc: started"), "svc started", proc=jv.proc)
        os.kill(init, signal.SIGUSR1)
        wait_until(lambda: _said(log, "SIGUSR1: jobvisor reopens"), "SIGUSR1", proc=jv.proc)
        assert jv.proc.poll() is None, jv.stderr
        os.kill(init, signal.SIGALRM)
        assert jv.wait(30) == 0, jv.stderr + log.read_text()
    finally:
        jv.close()
    text = log.read_text()
    assert "SIGALRM: taken as SIGTERM: stopping every job gracefully" in text, text
    assert "svc: stopped" in text
    assert "daemon stopped (exit 0)" in text.splitlines()[-1]
