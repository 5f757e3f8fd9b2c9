"""``jobvisor top`` through a real pseudo-terminal against a real daemon, read with a terminal emulator."""

from __future__ import annotations

import contextlib
import curses
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyte
import pytest
from conftest import RUNTIME
from faultkit import CLI, ENV, Running, start_daemon, stop_daemon, wait_until

from supervision._cells import cells, cut, cut_start
from supervision._client import request
from supervision._table import summary_table
from supervision._top import HEADER, _Screen, layout, rows

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


class Emulator(pyte.Screen):  # type: ignore[misc]
    """A terminal that keeps dim (SGR 2, which pyte drops) as italics, which top never draws."""

    def select_graphic_rendition(self, *attrs: int) -> None:
        kept = [a for attr in attrs for a in ({2: (3,), 22: (22, 23)}.get(attr, (attr,)))]
        super().select_graphic_rendition(*kept)


class Terminal:
    """``jobvisor top`` on a pseudo-terminal of ours; ``screen`` is what a person would see."""

    def __init__(
        self,
        cwd: Path,
        columns: int = COLUMNS,
        lines: int = ROWS,
        extra: dict[str, str | None] | None = None,
    ) -> None:
        """``extra``: set besides ours; None unsets."""
        env = {**ENV, "TERM": "xterm-256color", "LINES": str(lines), "COLUMNS": str(columns)}
        env.pop("NO_COLOR", None)
        for name, value in (extra or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (the test process has threads)
            try:
                os.chdir(cwd)
                os.execve(CLI[0], [*CLI, "top"], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.screen = Emulator(columns, lines)
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

    def colour(self, name: str, word: str) -> str:
        """The foreground colour ``word`` is drawn in on job ``name``'s line."""
        y = next(i for i, line in enumerate(self.lines()) if line.lstrip().startswith(name))
        return str(self.screen.buffer[y][self.lines()[y].index(word)].fg)

    def dim(self, name: str) -> bool:
        """Whether job ``name``'s line is drawn dim, every character of it."""
        y = next(i for i, line in enumerate(self.lines()) if line.lstrip().startswith(name))
        drawn = [c for c in self.screen.buffer[y].values() if c.data.strip()]
        return bool(drawn) and all(c.italics for c in drawn)

    def cells(self, y: int) -> str:
        """Line ``y`` one character a cell: a wide character's second cell is ``\\0``."""
        line = self.screen.buffer[y]
        return "".join(line[x].data or "\0" for x in range(self.screen.columns))

    def footer(self) -> tuple[int, int, int] | None:
        """The first row shown, the last one and how many there are, as the footer says."""
        for line in self.lines():
            if found := re.fullmatch(r"rows (\d+)-(\d+) of (\d+)\b.*", line):
                first, last, total = found.groups()
                return int(first), int(last), int(total)
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
        assert term.colour("steady", "running") == "green"
        os.write(term.fd, b"q")
        assert term.finish() == 0
    finally:
        term.close()


def test_top_draws_no_colour_under_no_color(daemon: Running) -> None:
    """NO_COLOR (no-color.org) set to anything: top keeps the terminal's own colours."""
    term = Terminal(daemon.dir, extra={"NO_COLOR": "1"})
    try:
        term.wait_for(
            "the running job", lambda: (row := term.row("steady")) and row[1] == "running"
        )
        assert term.colour("steady", "running") == "default"
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


def test_top_on_a_terminal_it_cannot_draw_on_says_so_and_exits_2(daemon: Running) -> None:
    """TERM with no terminfo entry (xterm-kitty over ssh), empty, unset, or dumb (no cursor
    moves: only the title and a cut header were drawn): one line, as for no terminal."""
    for term, why in (
        ("bogus", "TERM=bogus: no terminfo entry"),
        ("", "TERM is not set"),
        (None, "TERM is not set"),
        ("dumb", "TERM=dumb: it cannot move the cursor"),
    ):
        terminal = Terminal(daemon.dir, extra={"TERM": term})
        try:
            assert terminal.finish() == 2, (term, terminal.lines())
            said = [line for line in terminal.lines() if line]
            assert said[0].startswith(f"jobvisor: top cannot draw on this terminal ({why})"), said
            assert "Traceback" not in "\n".join(said)
        finally:
            terminal.close()


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
    assert header.startswith("PATH    STATE    RST  LAST")
    assert chatty.startswith("chatty  waiting  12")
    # Nothing wider than the screen: what does not fit is cut at its edge.
    assert all(len(line) <= 30 for line in drawn([HEADER, *rows(A_DOC, now=1000.0)], 30))


NARROW_DOC = {
    "children": [
        {
            "name": "mailer",
            "kind": "command",
            "state": "backoff",
            "restarts": 12,
            "last_exit": {
                "outcome": "failed",
                "code": 3,
                "error": "command /usr/bin/mail exited with 3",
            },
            "next_start_at": 1004.25,
        },
        {"name": "web", "kind": "command", "state": "running", "restarts": 0},
    ]
}


def test_a_narrow_terminal_gives_last_exit_what_narrow_columns_leave() -> None:
    """At 50 columns RESTARTS kept its header's 8 cells for "12" and NEXT START its 10 for
    "in 4.2s", and LAST EXIT read ``failed (3)…``: their headers are shortened instead."""
    assert drawn([HEADER, *rows(NARROW_DOC, now=1000.0)], 50) == [
        "PATH    STATE    RST  LAST EXIT            NEXT",
        "mailer  backoff  12   failed (3): comman…  in 4.2s",
        "web     running  0    -                    -",
    ]
    # With room enough, the headers are whole.
    assert drawn([HEADER, *rows(NARROW_DOC, now=1000.0)], 80)[0].split("  ")[-1] == "NEXT START"
    assert "RESTARTS" in drawn([HEADER, *rows(NARROW_DOC, now=1000.0)], 80)[0]


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


# -- a long path, and wide characters ------------------------------------------------------------

NAME = "nightly-warehouse-export-to-the-reporting-cluster-with-every-retry-on"  # 69, valid
A_LONG_DOC = {
    "children": [
        {
            "name": "etl",
            "kind": "group",
            "state": "running",
            "restarts": 0,
            "children": [
                {
                    "name": NAME,
                    "kind": "command",
                    "state": "backoff",
                    "restarts": 3,
                    "last_exit": {"outcome": "failed", "code": 1, "error": None},
                    "next_start_at": 1080.0,
                },
            ],
        },
        {
            "name": "chatty",
            "kind": "python",
            "state": "waiting",
            "restarts": 12,
            "last_exit": {"outcome": "failed", "code": None, "error": "AttributeError: " + LONG},
            "next_start_at": 4600.0,
        },
    ]
}


@pytest.mark.parametrize("width", [200, 100, 80, 60])
def test_a_long_path_is_cut_too_so_every_column_fits(width: int) -> None:
    table = drawn([HEADER, *rows(A_LONG_DOC, now=1000.0)], width)
    header, etl, job, chatty = table
    assert header.split("  ")[0] == "PATH"
    # At 60, LAST EXIT would have 13 cells: RESTARTS and NEXT START give up their headers' width.
    named = ["STATE", "RST", "LAST EXIT", "NEXT"] if width <= 60 else list(HEADER[1:])
    assert [c.strip() for c in header.split("  ") if c][-4:] == named
    assert all(len(line) <= width for line in table)
    if width <= 100:
        assert job.startswith("  …")  # the indent stays, the start of the name goes
        assert NAME.endswith(job[2:].split()[0][1:])  # the end of the name is kept
    else:
        assert job.split()[0] == NAME
    assert job.split()[-3:] == ["(1)", "in", "1m20s"]
    assert job.index("in 1m20s") == header.index(named[-1])
    assert chatty.index("in 1h0m") == header.index(named[-1])
    assert etl.startswith("etl/")


def test_top_and_status_say_when_in_the_same_words() -> None:
    doc = {"children": [{**A_LONG_DOC["children"][1], "path": "chatty", "starts": 13, "failures": 13}]}  # fmt: skip
    for left, said in ((4.25, "in 4.2s"), (80, "in 1m20s"), (3600, "in 1h0m")):
        doc["children"][0]["next_start_at"] = 1000.0 + left
        assert rows(doc, now=1000.0)[0][-1] == said
        assert f"  {said}  " in summary_table(doc, width=None, now=1000.0)


def test_widths_are_counted_in_a_terminals_cells() -> None:
    assert cells("svc000") == 6
    assert cells("💥 boom") == 7  # an emoji takes two cells
    assert cells("漢字") == 4
    assert cells("e\u0301t\u00e9") == 3  # a combining accent takes none
    assert cells("👍\ufe0f") == 2  # nor does a variation selector
    assert cut("💥💥 boom", 4) == "💥…"  # not "💥💥…": that would take five
    assert cut("💥💥 boom", 5) == "💥💥…"
    assert cut_start("etl/漢字漢字", 6) == "…漢字"
    assert cut_start("abcde\u0301f", 3) == "…e\u0301f"
    assert cut_start("ab\u0301c", 2) == "…c"  # not an accent of b on the ellipsis


# -- real terminals of two sizes ------------------------------------------------------------------

SIZES = [(80, 24), (200, 50)]


def many_jobs() -> str:
    """Five groups of 60 jobs that succeed at once, then a job that fails: 306 rows."""
    groups = "".join(
        f"\n  - group: g{g}\n    jobs:"
        + "".join(
            f'\n      - {{name: svc{n:03d}, command: "true"}}' for n in range(g * 60, g * 60 + 60)
        )
        for g in range(5)
    )
    return (
        f'version: 1\njobs:{groups}\n  - {{name: crash, restart: temporary, command: "exit 3"}}\n'
    )


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_daemon(tmp_path_factory.mktemp("crowded"), many_jobs(), "--runtime", RUNTIME)
    yield running
    assert stop_daemon(running) == 0


@pytest.mark.parametrize(("columns", "lines"), SIZES)
def test_top_scrolls_through_more_rows_than_fit(crowded: Running, columns: int, lines: int) -> None:
    term = Terminal(crowded.dir, columns, lines)
    page = lines - 4  # the title, a line for problems, the header and the footer
    keys = {
        "down": b"\x1bOB",
        "up": b"\x1bOA",
        "pgdn": b"\x1b[6~",
        "pgup": b"\x1b[5~",
        "home": b"\x1bOH",
        "end": b"\x1bOF",
    }

    def shows(first: int, last: int) -> object:
        return term.wait_for(f"rows {first}-{last}", lambda: term.footer() == (first, last, 306))

    try:
        shows(1, page)
        assert term.row("g0/")
        assert term.row("crash") is None
        os.write(term.fd, keys["end"])
        shows(307 - page, 306)
        term.wait_for("the failed job", lambda: (r := term.row("crash")) and r[1:2] == ["failed"])
        assert term.row("g0/") is None
        assert term.lines()[2].split()[0] == "PATH"  # the header stays put
        for key, first in (
            ("home", 1),
            ("pgdn", 1 + page),
            ("down", 2 + page),
            ("j", 3 + page),
            ("k", 2 + page),
            ("up", 1 + page),
            ("pgup", 1),
            ("up", 1),  # the top is the top
        ):
            os.write(term.fd, keys.get(key, key.encode()))
            shows(first, first + page - 1)
        os.write(term.fd, b"q")
        assert term.finish(timeout=5) == 0
    finally:
        term.close()


BOOM = "def run():\n    raise OSError('💥💥 the export broke: ' + 'x' * 200)\n"


@pytest.fixture(scope="module")
def long_named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    where = tmp_path_factory.mktemp("long")
    (where / "boom.py").write_text(BOOM)
    manifest = f"""
    version: 1
    supervisor: {{backoff: {{initial: 10m, max: 10m, jitter: 0}}}}
    jobs:
      - group: etl
        backoff: {{initial: 10m, max: 10m, jitter: 0}}
        jobs:
          - {{name: {NAME}, restart: permanent, command: "exit 1"}}
      - {{name: boom, restart: permanent, python: "boom:run"}}
    """
    running = start_daemon(where, manifest, "--runtime", RUNTIME)
    yield running
    assert stop_daemon(running) == 0


@pytest.mark.parametrize(("columns", "lines"), SIZES)
def test_top_fits_a_long_name_and_wide_characters(
    long_named: Running, columns: int, lines: int
) -> None:
    term = Terminal(long_named.dir, columns, lines)
    try:
        term.wait_for("boom's failure", lambda: (r := term.row("boom")) and r[1:2] == ["backoff"])
        term.wait_for("the long one's backoff", lambda: any(line.startswith("  ") and "backoff" in line for line in term.lines()))  # fmt: skip
        screen = term.lines()
        assert screen[2].split() == ["PATH", "STATE", "RESTARTS", "LAST", "EXIT", "NEXT", "START"]
        at = screen[2].index("NEXT START")
        job = next(
            y for y, line in enumerate(screen) if line.startswith("  ") and "backoff" in line
        )
        boom = next(y for y, line in enumerate(screen) if line.startswith("boom"))
        if columns < 100:
            assert screen[job].startswith("  …")
            assert NAME.endswith(screen[job].split()[0][1:])
        else:
            assert screen[job].split()[0] == NAME

        # A redraw in progress may be caught half drawn: the rows are read once both are whole.
        def drawn() -> dict[int, str] | None:
            got = {y: term.cells(y) for y in (job, boom)}
            return got if all(re.match(r"in \d+m\d+s", c[at:]) for c in got.values()) else None

        row = term.wait_for("both NEXT START cells drawn", drawn)
        assert isinstance(row, dict)
        for y in (job, boom):
            cells = row[y]
            assert re.match(r"in \d+m\d+s", cells[at:]), cells
            assert cells[at - 2 : at] == "  ", cells  # the gap before it is whole
        assert "💥\0💥\0" in row[boom]
        assert "…" in row[boom][:at]
        os.write(term.fd, b"q")
        assert term.finish(timeout=5) == 0
    finally:
        term.close()


def test_a_page_of_rows_is_laid_out_as_the_whole_table_would_be() -> None:
    """Only the rows shown are cut to fit (a scroll key redrew 20,000 rows cut whole), with
    the widths of every row: a page looks the same as that part of the whole."""
    many = {
        "children": [
            {"name": f"w{i}" + "x" * (i % 37), "path": f"w{i}", "kind": "command",
             "state": "running", "restarts": i, "next_start_at": None,
             "last_exit": {"outcome": "failed", "code": 1, "error": "boom " * (i % 20), "at": 0}}
            for i in range(300)
        ]
    }  # fmt: skip
    table = [HEADER, *rows(many, 0.0)]
    whole = layout(table, 80)
    assert layout(table, 80, slice(120, 140)) == [whole[0], *whole[121:141]]
    assert layout(table, 80, slice(290, 400)) == [whole[0], *whole[291:]]


# -- a daemon that goes away ----------------------------------------------------------------------

GOING = """
version: 1
supervisor: {backoff: {initial: 10m, max: 10m, jitter: 0}}
jobs:
  - {name: mailer, restart: permanent, command: "exit 3"}
  - {name: web, service: true, command: "sleep 1000"}
"""


def at_local(hms: str) -> float:
    """Today's ``HH:MM:SS`` on this machine's clock, in epoch seconds: what top shows as it."""
    hour, minute, second = map(int, hms.split(":"))
    return time.mktime((*time.localtime()[:3], hour, minute, second, 0, 0, -1))


def pieces(frame: list[tuple[int, int, str, int]], y: int) -> list[tuple[str, int]]:
    return [(text, attr) for line, _, text, attr in frame if line == y]


def test_a_stale_table_is_dimmed_its_countdowns_stopped_until_the_daemon_answers(
    tmp_path: Path,
) -> None:
    """The last status top had went on being drawn as live: states in colour, countdowns
    ticking to ``in 0.0s``, the raw errno text as the only sign (operator trial)."""
    running = start_daemon(tmp_path, GOING, "--runtime", RUNTIME)
    sock: socket.socket | None = None
    try:
        wait_until(lambda: running.nodes()["mailer"].get("next_start_at"), "mailer's backoff")
        reply = request(running.state, {"op": "status"})
        due = next(n for n in reply["result"]["children"] if n["name"] == "mailer")["next_start_at"]
        clock = [due - 20]
        screen = _Screen(str(running.state), reply, clock=lambda: clock[0])
        screen.colours = {"backoff": 1 << 8, "running": 2 << 8, "failed": 3 << 8}
        width = 200
        live = screen.frame(30, width)
        assert pieces(live, 1) == []  # no problem to tell
        assert pieces(live, 3)[1:2] == [("backoff", 1 << 8)]
        assert pieces(live, 3)[-1] == ("in 20.0s", 0)
        assert pieces(live, 4)[:2] == [("web", 0), ("running", 2 << 8)]

        assert stop_daemon(running) == 0
        clock[0] = at_local("22:23:20")
        screen.fetch()
        clock[0] += 10
        stale = screen.frame(30, width)
        assert pieces(stale, 0) == [
            (f"jobvisor top  {running.state}  22:23:30  (q quits)", curses.A_BOLD)
        ]
        assert pieces(stale, 1) == [
            (
                (
                    "Cannot reach the daemon since 22:23:20 (10s): it is not running (its "
                    "control socket is gone); the rows are its last status, dimmed, until it "
                    "answers"
                ),
                3 << 8,
            )
        ]
        mailer = pieces(stale, 3)
        assert [text for text, _ in mailer] == [text for text, _ in pieces(live, 3)]
        assert {attr for _, attr in mailer} == {curses.A_DIM}  # no state colour
        assert pieces(stale, 4) == [(text, curses.A_DIM) for text, _ in pieces(live, 4)]
        assert pieces(stale, 2) == pieces(live, 2)  # the header
        clock[0] += 3600  # the countdown stays where the last status left it
        assert pieces(screen.frame(30, width), 3)[-1] == ("in 20.0s", curses.A_DIM)
        assert "(60 min)" in pieces(screen.frame(30, width), 1)[0][0]

        # A socket left behind (a daemon killed) that nothing listens on.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(running.state / "control.sock"))
        screen.fetch()
        problem = pieces(screen.frame(30, width), 1)[0][0]
        assert problem.startswith("Cannot reach the daemon since 22:23:20 (60 min): it is not running (nothing listens on its control socket: was it killed?);")  # fmt: skip
        assert "refused" not in problem
        sock.close()
        (running.state / "control.sock").unlink()

        running = start_daemon(tmp_path, GOING, "--runtime", RUNTIME)
        wait_until(lambda: running.nodes()["mailer"].get("next_start_at"), "mailer's backoff")
        screen.fetch()
        due = next(n for n in screen.reply["result"]["children"] if n["name"] == "mailer")["next_start_at"]  # fmt: skip
        clock[0] = due - 30
        again = screen.frame(30, width)
        assert pieces(again, 1) == []
        assert pieces(again, 3)[1:2] == [("backoff", 1 << 8)]
        assert pieces(again, 3)[-1] == ("in 30.0s", 0)
        clock[0] += 1  # live: it counts down again
        assert pieces(screen.frame(30, width), 3)[-1] == ("in 29.0s", 0)
    finally:
        if sock is not None:
            sock.close()
        stop_daemon(running)


def test_top_says_a_stopping_daemon_is_stopping_and_dims_what_it_last_said(
    tmp_path: Path,
) -> None:
    running = start_daemon(
        tmp_path,
        """
        version: 1
        supervisor: {backoff: {initial: 10m, max: 10m, jitter: 0}}
        jobs:
          - {name: mailer, restart: permanent, command: "exit 3"}
          - name: deaf
            service: true
            command: "trap '' TERM; touch up; exec sleep 60"
            stop: {grace: 60s}
        """,
        "--runtime",
        RUNTIME,
    )
    term = Terminal(running.dir, columns=110)
    try:
        wait_until((tmp_path / "up").exists, "deaf ignores SIGTERM", proc=running.proc)
        term.wait_for("mailer's countdown", lambda: (r := term.row("mailer")) and r[-2] == "in")
        term.wait_for("deaf running", lambda: (r := term.row("deaf")) and r[1] == "running")
        running.proc.send_signal(signal.SIGTERM)  # its jobs get 60 s: it stops for that long
        said = "Cannot reach the daemon since "
        term.wait_for("the problem", lambda: term.lines()[1].startswith(said))
        problem = term.lines()[1]
        assert f": it is stopping (pid {running.proc.pid})" in problem, problem
        assert "No such file" not in problem
        frozen = term.row("mailer")
        assert frozen is not None

        def ago() -> int:
            found = re.search(r"\((\d+)s\)", term.lines()[1])
            return int(found.group(1)) if found else 0

        # Two seconds of redraws on: the countdown (``in 9m58s``) has not moved.
        term.wait_for("2s gone", lambda: ago() >= 2)
        assert term.row("mailer") == frozen
        for name, state in (("mailer", "backoff"), ("deaf", "running")):
            assert term.colour(name, state) == "default"
            assert term.dim(name)
        assert not term.dim("PATH")  # the header is not the daemon's
        os.write(term.fd, b"q")
        assert term.finish() == 0
    finally:
        term.close()
        stop_daemon(running)  # a second SIGTERM: kills at once


def test_every_cell_a_daemon_sent_is_escaped() -> None:
    """A status document is a daemon's word, and one served by another user is theirs: only
    LAST EXIT was escaped (trial h252)."""
    evil = "\x1b]0;PWNED\x07\u202e"
    doc = {
        "children": [
            {
                "name": f"job{evil}",
                "path": "job",
                "kind": "command",
                "state": f"running{evil}",
                "starts": 1,
                "restarts": f"0{evil}",
                "failures": 0,
                "last_exit": None,
            }
        ]
    }
    (row,) = rows(doc, 1000.0)
    text = "".join(row)
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in text
    assert row[0] == "job\\x1b]0;PWNED\\x07\\u202e"
