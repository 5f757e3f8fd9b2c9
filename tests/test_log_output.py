"""A log whose reader stops reading (`| less` paused, Ctrl-S, a slow `| tee`) never stops jobvisor.

Real ``jobvisor daemon`` and ``run`` processes whose stderr is a pipe nobody
reads: they go on supervising, answer ``status`` and stop on a signal; the
records they could not write are counted and said, in one line, once the
pipe takes writes again. The in-process tests write to real pipes too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import socket
import subprocess
import termios
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import logbook
import pytest
from conftest import RUNTIME
from faultkit import CLI, ENV, wait_until

import supervision._logging
from supervision._logging import configure_logging
from supervision._spec import LoggingSpec

# A service that talks every 5 ms (its lines go to the log, the default), one whose lines go to
# its output file alone, and one that crashes at once, for ever. chat says ten lines at a
# time: the log's backlog for a reader who stopped reading fills in a second or two.
CHAT = "import time\\nn = 0\\nwhile True:\\n    for _ in range(10):\\n        n += 1\\n        print('chat line', n, 'la' * 40)\\n    time.sleep(0.005)\\n"
MANIFEST = """
version: 1
supervisor:
  backoff: {initial: 1ms, max: 5ms}
  intensity: {max_restarts: 1000000, within: 1s}
jobs:
  - name: chat
    service: true
    command: ["${JV_PYTHON}", "-u", "-c", "${CHAT}"]
  - name: tick
    service: true
    output: {log: false}
    command: [sh, -c, "while true; do echo tick; sleep 0.05; done"]
  - name: crash
    service: true
    command: [sh, -c, "echo crashing; exit 1"]
"""

DROPPED = re.compile(
    r" WARNING +supervision\.logging: (\d+) log records dropped: the log's reader did not keep up$",
    re.MULTILINE,
)
SMALL_PIPE = 4096  # a pipe of one page fills in a few dozen lines


def unread_pipe() -> tuple[int, int]:
    """A pipe whose write end jobvisor gets as its stderr; nobody reads it until told."""
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, SMALL_PIPE)
    return read, write


def unread_bytes(read: int) -> int:
    """How many bytes wait in the pipe of ``read``."""
    return int.from_bytes(fcntl.ioctl(read, termios.FIONREAD, b"\0\0\0\0"), "little")


def stalled(jv: Unread) -> int:
    """Wait until nobody reading the pipe holds jobvisor's log up: what waits in the pipe
    stays as it is while chat, whose lines go to the log, talks on; return how much waits."""

    def still() -> int:
        waiting = unread_bytes(jv.read)
        chat = output_lines(jv.cwd, "chat")
        wait_until(lambda: output_lines(jv.cwd, "chat") >= chat + 50, "chat talks", proc=jv.proc)
        return waiting if waiting and unread_bytes(jv.read) == waiting else 0

    return int(wait_until(still, "the log's pipe filled", proc=jv.proc))


class Drain:
    """Reads a pipe to its end in a thread from when it is made; ``text`` is what came so far."""

    def __init__(self, read: int) -> None:
        self._read = read
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._run, name="test-drain", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # closed under it: a test that failed
            while True:
                select.select([self._read], [], [])  # under gevent the wait lets the rest run
                chunk = os.read(self._read, 65536)
                if not chunk:
                    return
                self._chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")

    def finish(self, timeout: float = 20.0) -> str:
        """The whole text, once the pipe's writers are all gone."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the pipe was not closed by its writers"
        return self.text


class Unread:
    """A ``jobvisor`` process in ``cwd`` whose stderr is a pipe nobody reads (stdout: a file)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.cwd = cwd
        self.read, write = unread_pipe()
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = cwd / "notify.sock"
        self.notify.bind(str(address))
        self.notify.settimeout(30)
        env = {**ENV, "NOTIFY_SOCKET": str(address)}
        try:
            with (cwd / "jobvisor.out").open("w") as out:
                self.proc = subprocess.Popen(
                    [*CLI, "--runtime", RUNTIME, *args],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=write,
                )
        finally:
            os.close(write)

    def wait_ready(self) -> None:
        while b"READY=1" not in self.notify.recv(4096):
            pass

    def status(self) -> dict[str, dict[str, Any]]:
        """``status --json``'s nodes by path; the daemon must answer within 10 s."""
        out = subprocess.run(
            [*CLI, "status", "--json"],
            cwd=self.cwd,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        return {node["path"]: node for node in json.loads(out.stdout)["children"]}

    def stop(self, signum: int, within: float = 10.0) -> int:
        """Send ``signum`` and wait for the exit code: it must come within ``within`` seconds."""
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{signum!r} did not stop jobvisor within {within}s while nobody read its log"
            ) from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        with contextlib.suppress(OSError):
            os.close(self.read)


@pytest.fixture
def unread(tmp_path: Path) -> Iterator[Unread]:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(MANIFEST).replace("${CHAT}", CHAT))
    jv = Unread(tmp_path, "daemon")
    try:
        yield jv
    finally:
        jv.close()


def output_lines(cwd: Path, job: str) -> int:
    path = cwd / ".jobvisor" / "output" / f"{job}.log"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def goes_on(jv: Unread, *, answers: bool = True) -> None:
    """While the pipe stays full the crash loop restarts, chat and tick write their output
    files, and (``answers``: a daemon) ``status`` answers."""
    waiting = stalled(jv)
    counts = {job: output_lines(jv.cwd, job) for job in ("crash", "chat", "tick")}
    before = jv.status()["crash"]["restarts"] if answers else 0
    wait_until(
        lambda: (
            output_lines(jv.cwd, "crash") >= counts["crash"] + 50
            and output_lines(jv.cwd, "chat") >= counts["chat"] + 3000
            and output_lines(jv.cwd, "tick") >= counts["tick"] + 5
        ),
        "the crash loop restarts on, chat's and tick's output files grow",
        proc=jv.proc,
    )
    if answers:  # a tight loop's restarts reach the status up to InPlace.HOLD after its output
        wait_until(
            lambda: jv.status()["crash"]["restarts"] >= before + 50,
            "status counts the restarts",
            proc=jv.proc,
        )
    assert unread_bytes(jv.read) == waiting, "nobody read the pipe meanwhile"


def test_a_daemon_nobody_reads_supervises_on_and_says_what_it_dropped(unread: Unread) -> None:
    """Its stderr pipe full, the daemon froze: no restarts, no status, no stop. Now it goes
    on; a reader that comes back gets one line counting what was dropped, and the end."""
    unread.wait_ready()
    goes_on(unread)
    drain = Drain(unread.read)
    wait_until(lambda: DROPPED.search(drain.text), "the dropped records are said", proc=unread.proc)
    assert unread.stop(signal.SIGTERM) == 0
    text = drain.finish()
    dropped = DROPPED.findall(text)
    assert len(dropped) == 1, text[-4000:]
    assert int(dropped[0]) > 0
    assert "Traceback" not in text
    # The last line, but for a summary of what the crash loop held back until then.
    last = [line for line in text.splitlines() if "WARNING  supervision: crash:" not in line][-1]
    assert re.search(r"INFO +supervision\.daemon: daemon stopped \(exit 0\)", last), text[-4000:]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_daemon_nobody_reads_stops_on_the_first_signal(unread: Unread, signum: int) -> None:
    """The report's case: SIGINT, a second SIGINT and SIGTERM did nothing for 15 s."""
    unread.wait_ready()
    goes_on(unread)
    sent = time.monotonic()
    assert unread.stop(signum) == 0
    assert time.monotonic() - sent < 10
    assert not (unread.cwd / ".jobvisor" / "jobvisor.pid").exists()


def test_a_run_nobody_reads_stops_on_a_signal_and_says_how_it_ended_last(tmp_path: Path) -> None:
    """``run`` too: its verdict lines on stderr come after the records, when a reader reads."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(MANIFEST).replace("${CHAT}", CHAT))
    jv = Unread(tmp_path, "run")
    try:
        goes_on(jv, answers=False)
        drain = Drain(jv.read)
        wait_until(lambda: DROPPED.search(drain.text), "the dropped records are said", proc=jv.proc)
        assert jv.stop(signal.SIGTERM) == 0  # SPEC §4: a signal's stop is exit 0
        text = drain.finish()
    finally:
        jv.close()
    assert len(DROPPED.findall(text)) == 1, text[-4000:]
    assert "Traceback" not in text
    # After the records of the stop (not the summary of what the crash loop held back, which
    # closing the log writes).
    last = [line for line in text.splitlines() if "WARNING  supervision: crash:" not in line][-1]
    assert last == "jobvisor: stopped by SIGTERM; no finite job was left to finish", text[-4000:]
    assert "chat" in (tmp_path / "jobvisor.out").read_text()  # the summary table, on stdout


def test_a_run_nobody_reads_ends_on_a_signal_with_its_usual_verdict(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(MANIFEST).replace("${CHAT}", CHAT))
    jv = Unread(tmp_path, "run")
    try:
        goes_on(jv, answers=False)
        assert jv.stop(signal.SIGINT) == 0
    finally:
        jv.close()
    assert "chat" in (tmp_path / "jobvisor.out").read_text()


# -- in this process, on real pipes ------------------------------------------------------------


def test_records_to_a_pipe_nobody_reads_never_wait_and_are_counted_once_read() -> None:
    read, write = unread_pipe()
    stream = os.fdopen(write, "w")
    log = logbook.Logger("supervision.test")
    try:
        setup = configure_logging(LoggingSpec(level="information"), stream=stream)
        try:
            started = time.monotonic()
            for n in range(5000):
                log.info("record {}", n)
            assert time.monotonic() - started < 5, "a record waited for the pipe's reader"
            drain = Drain(read)
            wait_until(lambda: DROPPED.search(drain.text), "the dropped records are said")
            log.info("after the reader came back")
            wait_until(lambda: "after the reader came back" in drain.text, "the next record")
        finally:
            setup.close()
        stream.close()
        text = drain.finish()
    finally:
        with contextlib.suppress(OSError):
            os.close(read)
    numbers = [int(n) for n in re.findall(r"record (\d+)$", text, re.MULTILINE)]
    assert numbers == sorted(numbers), "records keep their order"
    assert numbers[0] == 0
    (dropped,) = DROPPED.findall(text)
    assert int(dropped) == 5000 - len(numbers)
    # The count stands where the records are missing: after the last one kept, before the next.
    assert text.index("log records dropped") > text.index(f"record {numbers[-1]}\n")
    assert text.index("log records dropped") < text.index("after the reader came back")


def test_closing_a_log_nobody_reads_gives_up_on_it_within_seconds() -> None:
    read, write = unread_pipe()
    stream = os.fdopen(write, "w")
    log = logbook.Logger("supervision.test")
    try:
        setup = configure_logging(LoggingSpec(level="information"), stream=stream)
        for n in range(2000):
            log.info("record {}", n)
        wait_until(lambda: unread_bytes(read), "the pipe took what it could")
        started = time.monotonic()
        setup.close()
        assert time.monotonic() - started < 5
    finally:
        stream.close()
        os.close(read)


def test_a_slow_reader_gets_every_record_up_to_the_last_at_close() -> None:
    """A reader that keeps reading, however slowly, is waited for at the end: nothing lost."""
    read, write = unread_pipe()
    stream = os.fdopen(write, "w")
    log = logbook.Logger("supervision.test")
    chunks: list[bytes] = []

    def slow() -> None:
        while True:
            select.select([read], [], [])
            chunk = os.read(read, 512)
            if not chunk:
                return
            chunks.append(chunk)
            time.sleep(0.005)

    reader = threading.Thread(target=slow, name="test-slow-reader")
    reader.start()
    try:
        with configure_logging(LoggingSpec(level="information"), stream=stream):
            for n in range(300):
                log.info("record {}", n)
        stream.close()
        reader.join(30)
    finally:
        with contextlib.suppress(OSError):
            stream.close()
        reader.join(30)
        os.close(read)
    text = b"".join(chunks).decode()
    numbers = [int(n) for n in re.findall(r"record (\d+)$", text, re.MULTILINE)]
    assert numbers == list(range(300))
    assert "dropped" not in text


def test_a_writer_idle_for_long_still_writes_all_that_comes_before_the_end(monkeypatch) -> None:
    """A daemon's log quiet for a while, then its last records and the end: its writer had
    taken no byte for longer than a stall, and the end gave up on them at once."""
    monkeypatch.setattr(supervision._logging, "STALL", 0.2)
    read, write = os.pipe()
    drain = Drain(read)
    stream = os.fdopen(write, "w")
    log = logbook.Logger("supervision.test")
    try:
        with configure_logging(LoggingSpec(level="information"), stream=stream):
            log.info("first")
            wait_until(lambda: "first" in drain.text, "the first record")
            time.sleep(0.4)  # quiet for twice a stall: the point of the test, not a wait for it
            for n in range(50):
                log.info("record {}", n)
        stream.close()
        text = drain.finish()
    finally:
        with contextlib.suppress(OSError):
            stream.close()
        os.close(read)
    assert re.findall(r"record (\d+)$", text, re.MULTILINE) == [str(n) for n in range(50)]
