"""``jobvisor top`` through a real pseudo-terminal against a real daemon, read with a terminal emulator."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyte
import pytest
from conftest import RUNTIME
from faultkit import CLI, ENV, Running, start_daemon, stop_daemon

from supervision._top import HEADER, layout, rows

MANIFEST = """
version: 1
supervisor:
  backoff: {initial: 50ms, max: 50ms}
  intensity: {max_restarts: 100000, within: 1s}
jobs:
  - name: flaky
    service: true
    command: "sleep 0.2; exit 1"
  - group: grp
    jobs:
      - name: steady
        service: true
        command: "sleep 1000"
"""
ROWS, COLUMNS = 30, 120


class Terminal:
    """``jobvisor top`` on a pseudo-terminal of ours; ``screen`` is what a person would see."""

    def __init__(self, cwd: Path, columns: int = COLUMNS) -> None:
        env = {**ENV, "TERM": "xterm-256color", "LINES": str(ROWS), "COLUMNS": str(columns)}
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (the test process has threads)
            try:
                os.chdir(cwd)
                os.execve(CLI[0], [*CLI, "top"], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.screen = pyte.Screen(columns, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.code: int | None = None

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def read(self, timeout: float) -> bool:
        """Feed what the terminal got within ``timeout`` to the emulator; False at its end."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the other side is closed
            data = b""
        if not data:
            return False
        self.stream.feed(data)
        return True

    def wait_for(self, what: str, check: object, timeout: float = 20.0) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()  # type: ignore[operator]
            if found:
                return found
            assert self.read(0.1), f"top ended before {what}: {self.lines()}"
        raise AssertionError(f"{what}: not within {timeout}s; the screen: {self.lines()}")

    def row(self, name: str) -> list[str] | None:
        for line in self.lines():
            cells = line.split()
            if cells and cells[0] == name:
                return cells
        return None

    def finish(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.read(0.1) and time.monotonic() < deadline:
            pass
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
                return self.code
            time.sleep(0.01)  # the child closed the terminal: its exit is a moment away
        raise AssertionError("top did not exit")

    def close(self) -> None:
        if self.code is None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Running]:
    running = start_daemon(tmp_path, MANIFEST, "--runtime", RUNTIME)
    yield running
    assert stop_daemon(running) == 0


def test_top_shows_the_tree_refreshes_and_q_quits(daemon: Running) -> None:
    term = Terminal(daemon.dir)
    try:
        first = term.wait_for("the flaky row", lambda: term.row("flaky"))
        assert term.wait_for("the group", lambda: term.row("grp/"))
        steady = term.wait_for("the indented job", lambda: term.row("steady"))
        assert steady[1] == "running"  # type: ignore[index]
        assert any(line.startswith("  steady") for line in term.lines())  # indented
        header = next(line for line in term.lines() if line.startswith("PATH"))
        assert header.split() == ["PATH", "STATE", "RESTARTS", "LAST", "EXIT", "NEXT", "START"]
        restarts = int(first[2])  # type: ignore[index]
        # The screen refreshes by itself: the restart count grows while we only read.
        term.wait_for(
            "a later restart count",
            lambda: (row := term.row("flaky")) is not None and int(row[2]) > restarts,
        )
        # Colours on a colour terminal: a running job's state is green.
        y = next(i for i, line in enumerate(term.lines()) if line.lstrip().startswith("steady"))
        x = term.lines()[y].index("running")
        assert term.screen.buffer[y][x].fg == "green"
        os.write(term.fd, b"q")
        assert term.finish() == 0
    finally:
        term.close()


def test_top_quits_with_0_on_ctrl_c(daemon: Running) -> None:
    term = Terminal(daemon.dir)
    try:
        term.wait_for("the flaky row", lambda: term.row("flaky"))
        os.write(term.fd, b"\x03")  # the terminal sends SIGINT to its foreground group
        assert term.finish() == 0
        assert "Traceback" not in "\n".join(term.lines())
    finally:
        term.close()


def test_top_without_a_daemon_is_exit_3(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text("version: 1\njobs: [{name: a, command: 'true'}]\n")
    done = subprocess.run(
        [*CLI, "top"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert done.stderr.startswith("jobvisor: no daemon is running for ")


# -- a long last exit ------------------------------------------------------------------------------

LONG = "this_function_does_not_exist_and_its_long_name_makes_a_long_error_" * 2
A_DOC = {
    "children": [
        {
            "name": "chatty",
            "kind": "python",
            "state": "waiting",
            "restarts": 12,
            "last_exit": {"outcome": "failed", "code": None, "error": "AttributeError: " + LONG},
            "next_start_at": 1005.0,
        },
        {
            "name": "etl",
            "kind": "group",
            "state": "running",
            "restarts": 0,
            "children": [
                {"name": "load", "kind": "command", "state": "running", "restarts": 0},
            ],
        },
    ]
}


def drawn(table: list[tuple[str, ...]], width: int) -> list[str]:
    """The lines ``layout`` puts on a screen ``width`` columns wide, as curses would cut them."""
    lines = []
    for placed in layout(table, width):
        line = [" "] * width
        for x, text in placed:
            for i, char in enumerate(text[: max(0, width - x)]):
                line[x + i] = char
        lines.append("".join(line).rstrip())
    return lines


@pytest.mark.parametrize("width", [100, 80, 60])
def test_a_long_last_exit_is_cut_so_every_column_shows(width: int) -> None:
    header, chatty, etl, load = drawn([HEADER, *rows(A_DOC, now=1000.0)], width)
    assert header.split("  ")[-1] == "NEXT START"
    assert chatty.endswith("  in 5.0s")
    assert "  failed: Attr" in chatty
    assert "…  in 5.0s" in chatty  # cut, with an ellipsis, then the next column
    assert chatty.index("in 5.0s") == header.index("NEXT START")
    assert etl.startswith("etl/")
    assert etl.endswith("-")
    assert load.startswith("  load")
    assert load.split() == ["load", "running", "0", "-", "-"]


def test_a_narrow_terminal_keeps_the_first_columns() -> None:
    header, chatty, *_ = drawn([HEADER, *rows(A_DOC, now=1000.0)], 30)
    assert header.startswith("PATH    STATE    RESTARTS")
    assert chatty.startswith("chatty  waiting  12")
    # Nothing wider than the screen: what does not fit is cut at its edge.
    assert all(len(line) <= 30 for line in drawn([HEADER, *rows(A_DOC, now=1000.0)], 30))


def test_top_on_a_100_column_terminal_shows_next_start(tmp_path: Path) -> None:
    manifest = f"""
    version: 1
    supervisor: {{backoff: {{initial: 10m, max: 10m, jitter: 0}}}}
    jobs:
      - name: chatty
        restart: permanent
        python: "math:{LONG}"
    """
    running = start_daemon(tmp_path, manifest, "--runtime", RUNTIME)
    term = Terminal(running.dir, columns=100)
    try:
        row = term.wait_for("chatty's failure", lambda: (r := term.row("chatty")) and "failed:" in r and r)  # fmt: skip
        line = next(line for line in term.lines() if line.startswith("chatty"))
        assert len(line) <= 100
        assert row[-2] == "in"  # type: ignore[index]
        assert row[-1].endswith("s")  # type: ignore[index]
        assert "…" in line
        os.write(term.fd, b"q")
        assert term.finish() == 0
    finally:
        term.close()
        assert stop_daemon(running) == 0
