"""What a person sees on a terminal: the progress line never shares a line with a log record,
and the final table fits the terminal's width.

The progress test runs a real ``python cli.py run`` with its stderr on a
pseudo-terminal and replays the captured bytes through a small terminal
model (carriage return, erase-line, newline), checking the screen a person
would read.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from conftest import RUNTIME
from faultkit import start_daemon, stop_daemon, wait_until
from test_cli import CLI, ROOT, jobvisor, write

from supervision._table import columns, exit_text, flatten_status, summary_table, until

RECORD = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.+-]+ (TRACE|DEBUG|INFO|NOTICE|WARNING|ERROR|CRITICAL) ")
PROGRESS = re.compile(r"\[\d\d:\d\d:\d\d\] \d+ \w+")


def screen(raw: str) -> tuple[list[str], str]:
    """Replay terminal output: the lines that scrolled up, and the line the cursor is on."""
    done: list[str] = []
    line: list[str] = []
    col = 0
    i = 0
    while i < len(raw):
        if raw.startswith("\x1b[K", i):
            del line[col:]
            i += 3
            continue
        char = raw[i]
        i += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            done.append("".join(line))
            line, col = [], 0
        else:
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
    return done, "".join(line)


def run_on_a_terminal(
    cwd: Path,
    columns: int = 80,
    interrupt_when: Path | None = None,
    env: dict[str, str] | None = None,
    *,
    stdout_too: bool = False,
) -> tuple[str, str, int]:
    """``jobvisor run`` with stderr on a pty of ``columns``; its stderr bytes, stdout, exit code.

    ``interrupt_when``: one SIGINT (a Ctrl-C) once that file exists. ``env``: set besides
    ours (without CI, NO_COLOR, COLUMNS; TERM xterm). ``stdout_too``: stdout on the pty as
    well (its bytes among stderr's; the stdout returned is empty).
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    unset = ("CI", "NO_COLOR", "COLUMNS")
    env = {k: v for k, v in os.environ.items() if k not in unset} | {"TERM": "xterm"} | (env or {})
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [*CLI, "run"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_too else subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        # Read until the process has exited and the terminal holds nothing more. Not until
        # EIO: under gevent the parent may keep a copy of the terminal's other end open.
        while time.monotonic() < deadline:
            if interrupt_when is not None and interrupt_when.exists():
                proc.send_signal(signal.SIGINT)
                interrupt_when = None
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        stdout, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return b"".join(chunks).decode("utf-8", "replace"), stdout or "", proc.returncode


def test_log_records_never_share_a_line_with_the_progress(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - name: chatty
            command: [sh, -c, "for i in $(seq 40); do echo line $i; sleep 0.05; done"]
          - name: slow
            command: [sh, -c, "sleep 1.5"]
        """,
    )
    raw, stdout, code = run_on_a_terminal(tmp_path)
    assert code == 0, raw
    assert len(PROGRESS.findall(raw)) >= 2, raw  # the progress was drawn while records came
    lines, last = screen(raw)
    records = [line for line in lines if line]
    assert sum("chatty[1] line" in line for line in records) == 40
    for line in records:
        assert RECORD.match(line), f"a record shares its line with the progress: {line!r}"
    assert last == ""  # the progress is cleared at the end
    assert "PATH" in stdout


@pytest.mark.parametrize("logging", ["", "logging: {file: run.log}"])
def test_a_thread_jobs_stderr_lines_never_share_a_line_with_the_progress(
    tmp_path: Path, logging: str
) -> None:
    """A python job's print to stderr landed on the end of the progress line
    ('[02:42:43] 2 runningjob line 2'): while the line is drawn, each of its lines clears
    it and draws it again below, as a log record does; with the records in a file too."""
    (tmp_path / "talk.py").write_text(
        "import sys, time\n"
        "def main():\n"
        "    for i in range(6):\n"
        "        print(f'job line {i}', file=sys.stderr)\n"
        "        sys.stderr.write('job ')\n"  # a line in two writes is still one line
        "        sys.stderr.write(f'part {i}\\n')\n"
        "        sys.stderr.writelines([f'job list {i}\\n'])\n"  # not around the wrapper
        "        time.sleep(0.2)\n"
        "    sys.stderr.write('job flushed')\n"  # a flush shows a line's start on its own
        "    sys.stderr.flush()\n"
        "    sys.stderr.write('job later\\n')\n",
        encoding="utf-8",
    )
    write(
        tmp_path,
        f"""
        version: 1
        {logging}
        jobs:
          - {{name: talk, python: "talk:main"}}
          - {{name: slow, command: [sh, -c, "sleep 1.5"]}}
        """,
    )
    raw, stdout, code = run_on_a_terminal(tmp_path)
    assert code == 0, raw
    assert len(PROGRESS.findall(raw)) >= 2, raw
    lines, last = screen(raw)
    said = [line for line in lines if "job " in line]
    assert said == [
        *(f"job {what} {i}" for i in range(6) for what in ("line", "part", "list")),
        "job flushed",
        "job later",
    ], raw
    assert last == ""
    assert "PATH" in stdout


@pytest.mark.parametrize("draws", [True, False])
def test_a_thread_jobs_control_characters_are_escaped_on_a_terminal(
    tmp_path: Path, draws: bool
) -> None:
    """A thread python job's write of an OSC title and a clear-screen reached the terminal as
    written (retitled and cleared it), on stdout and stderr alike, where a command's output is
    escaped: escaped now too, with or without the progress line (``TERM=dumb`` draws none).
    A newline, a tab and a carriage return (a progress bar's) stay; jobvisor's own escapes
    (the progress line's erase) are its own, and a secret in two writes is masked."""
    (tmp_path / "loud.py").write_text(
        "import sys\n"
        "def main(token):\n"
        "    for name, stream in (('out', sys.stdout), ('err', sys.stderr)):\n"
        "        stream.write(f'\\x1b]0;TITLE\\x07\\x1b[2J thread-{name}\\n')\n"
        "        stream.write('\\x1b[31')\n"  # an escape in two writes
        "        stream.write(f'mred-{name}\\n')\n"
        "        stream.write('\\rbar 1\\rbar 2\\tdone\\n')\n"
        "        stream.write('pre ' + token[:5])\n"
        "        stream.write(token[5:] + ' post\\n')\n",
        encoding="utf-8",
    )
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: loud, python: "loud:main", kwargs: {token: {secret: {env: LOUD_TOKEN}}}}
          - {name: slow, command: [sh, -c, "sleep 1.5"]}
        """,
    )
    secret = "hunter2-verysecret-XYZ"
    env = {"LOUD_TOKEN": secret} | ({} if draws else {"TERM": "dumb"})
    raw, _, code = run_on_a_terminal(tmp_path, 200, env=env, stdout_too=True)
    assert code == 0, raw
    for name in ("out", "err"):
        assert f"\\x1b]0;TITLE\\x07\\x1b[2J thread-{name}\r\n" in raw, raw
        assert f"\\x1b[31mred-{name}\r\n" in raw, raw
    assert raw.count("\rbar 1\rbar 2\tdone\r\n") == 2, raw
    assert raw.count("pre *** post\r\n") == 2, raw
    assert secret[:5] not in raw, raw
    assert "\x07" not in raw, raw
    ours = raw.replace("\x1b[K", "")  # the progress line's erase, jobvisor's own
    assert "\x1b" not in ours, raw
    if draws:
        assert PROGRESS.search(raw), raw
        assert screen(raw)[1] == "", raw  # the progress line was cleared at the end
    else:
        assert "\x1b[K" not in raw, raw
    assert "PATH" in raw  # the summary, on the terminal too


@pytest.mark.parametrize("env", [{"TERM": "dumb"}, {"CI": "true"}, {"NO_COLOR": "1"}, {"CI": ""}])
def test_term_dumb_and_ci_turn_the_progress_line_off_and_no_color_leaves_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """On a terminal the progress line could not be turned off but by CI. TERM=dumb (a
    terminal that takes no escape sequences: Emacs' shell, a CI's pseudo-terminal) draws
    none, nor any other escape; NO_COLOR asks for no colour, of which run draws none anyway:
    its progress line stays, as it does with CI empty (`CI= jobvisor run` clears it).

    The job runs about 1.5 s: the line is drawn every 0.5 s after the tree starts (a job of
    0.5 s, as this one was, ended before the first one once on a loaded CI)."""
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - name: chatty
            command: [sh, -c, "for i in $(seq 30); do echo line $i; sleep 0.05; done"]
        """,
    )
    raw, stdout, code = run_on_a_terminal(tmp_path, env=env)
    assert code == 0, raw
    assert sum("chatty[1] line" in line for line in raw.splitlines()) == 30, raw
    assert "PATH" in stdout
    assert not re.search(r"\x1b\[[\d;]*m", raw + stdout), "no colour, ever"
    if "NO_COLOR" in env or env.get("CI") == "":
        assert PROGRESS.search(raw), raw
    else:
        assert not PROGRESS.search(raw), raw
        assert "\x1b" not in raw, raw


def test_a_first_ctrl_c_says_a_second_kills_and_the_progress_goes_on(tmp_path: Path) -> None:
    """The first Ctrl-C was silent and the progress line froze while the stop ran."""
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - name: slow
            command: [sh, -c, "trap 'sleep 1.5; exit 0' TERM; touch started; sleep 60 & wait"]
            stop: {grace: 30s}
          - {name: later, command: "true", depends_on: [slow]}
        """,
    )
    raw, _, code = run_on_a_terminal(tmp_path, 200, interrupt_when=tmp_path / "started")
    assert code == 0, raw
    lines, last = screen(raw)
    assert any(
        line.endswith("run: SIGINT: stopping every job (a second signal kills what still runs)")
        for line in lines
    ), raw
    # Redrawn while the stop waits for slow's trap, and it says so.
    assert raw.count("(stopping: a second Ctrl-C kills what still runs)") >= 2, raw
    assert last == "", raw
    assert lines[-1] == (
        "jobvisor: stopped by SIGINT before every job finished (exit 0); "
        "not finished: running: slow; not started: later"
    ), raw


def test_the_progress_line_fits_a_narrow_terminal(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        version: 1
        logging: {level: error}
        jobs:
          - name: slow
            command: [sh, -c, "sleep 1.2"]
        """
        + "".join(
            f"""
          - name: svc-{n}
            service: true
            command: [sh, -c, "sleep 30"]
            """
            if n % 2
            else f"""
          - name: once-{n}
            command: [sh, -c, "sleep 0.{n}"]
            """
            for n in range(3, 9)
        ),
    )
    raw, _, code = run_on_a_terminal(tmp_path, columns=24)
    assert code == 0, raw
    drawn = [part for part in raw.split("\r\x1b[K") if part]
    assert drawn, raw
    assert all(len(part) < 24 for part in drawn), drawn


def node(path: str, error: str | None) -> dict[str, object]:
    return {
        "name": path,
        "path": path,
        "kind": "command",
        "state": "gave_up",
        "starts": 4,
        "restarts": 3,
        "failures": 4,
        "last_exit": None
        if error is None
        else {"outcome": "failed", "code": 3, "error": error, "at": 0.0},
    }


LONG = "command sh -c 'echo cannot reach smtp.invalid; exit 3' exited with 3 after 2 tries"


def unwrapped(whys: list[str]) -> list[str]:
    """The lines below a status table, each failure's as one (its wrapped lines are indented)."""
    joined: list[str] = []
    for line in whys:
        if line.startswith("    ") and joined:
            joined[-1] += " " + line.strip()
        else:
            joined.append(line)
    return joined


@pytest.mark.parametrize("width", [80, 100])
def test_the_summary_table_fits_the_terminal_width(width: int) -> None:
    doc = {"children": [node("mailer", LONG), node("report-daily", LONG), node("ok", None)]}
    table = summary_table(doc, width=width)
    lines = table.splitlines()
    assert all(len(line) <= width for line in lines), table
    # the last column wraps under itself, and nothing of it is lost
    start = lines[0].index("LAST EXIT")
    assert all(not line[:start].strip() for line in lines if not line[:1].strip()), table
    text = " ".join(line[start:].strip() for line in lines[1:])
    assert "smtp.invalid; exit 3' exited with 3 after 2 tries" in text


def test_on_a_narrow_terminal_the_last_column_goes_below_its_row() -> None:
    doc = {"children": [node("a-much-longer-job-name", LONG)]}
    lines = summary_table(doc, width=60).splitlines()
    assert lines[0].rstrip().endswith("FAILURES")
    assert lines[1] == "    LAST EXIT"
    # The path gives up its start so that the row fits: its end names the job.
    assert lines[2].startswith("…nger-job-name  command")
    assert all(len(line) <= 60 for line in lines)
    assert all(line.startswith("    ") for line in lines[3:])
    assert "exited with 3 after 2 tries" in " ".join(lines[3:])


A_NAME = "nightly-warehouse-export-to-the-reporting-cluster-with-every-retry-on"  # 69, valid


@pytest.mark.parametrize("width", [100, 80])
def test_the_final_table_cuts_a_long_path_and_wraps_the_last_column(width: int) -> None:
    doc = {"children": [node(f"etl/{A_NAME}", LONG), node("ok", None)]}
    lines = summary_table(doc, width=width).splitlines()
    assert all(len(line) <= width for line in lines), lines
    row = next(line for line in lines if line.startswith("…"))
    assert A_NAME.endswith(row.split()[0][1:])
    text = " ".join(" ".join(lines).split())
    assert "smtp.invalid; exit 3' exited with 3 after 2 tries" in text  # wrapped: nothing lost


@pytest.mark.parametrize("width", [100, 80])
def test_status_on_a_terminal_is_one_line_a_row(width: int) -> None:
    waiting = {**node(f"etl/{A_NAME}", LONG), "state": "backoff", "next_start_at": 1080.0}
    doc = {"children": [waiting, node("mailer", LONG), node("ok", None)]}
    lines = summary_table(doc, width=width, now=1000.0, fit="cut").splitlines()
    assert all(len(line) <= width for line in lines), lines
    (header, long, mailer, ok), whys = lines[:4], lines[4:]
    # Below the rows, each failure whose cell was cut, whole, its path too.
    assert unwrapped(whys) == [f"etl/{A_NAME}: {LONG}", f"mailer: {LONG}"]
    assert header.split("  ")[0] == "PATH"
    assert header.rstrip().endswith("LAST EXIT")
    assert long.startswith("…")
    assert A_NAME.endswith(long.split()[0][1:])
    assert long[header.index("NEXT START") :].startswith("in 1m20s  ")
    assert long.endswith("…")
    assert mailer.startswith("mailer ")
    assert mailer.endswith("…")
    assert ok.split()[-1] == "-"


def test_the_summary_table_escapes_control_characters_and_masks() -> None:
    doc = {"children": [node("x", "boom \x1b]0;pwned\x07 token-abcd")]}
    table = summary_table(doc, lambda text: text.replace("token-abcd", "***"), width=200)
    assert "\x1b" not in table
    assert "\x07" not in table
    assert "boom \\x1b]0;pwned\\x07 ***" in table


@pytest.mark.parametrize(("width", "fit"), [(None, "wrap"), (200, "wrap"), (70, "cut")])
def test_every_cell_a_daemon_sent_is_escaped_not_only_the_last_exit(
    width: int | None, fit: str
) -> None:
    """A status document is a daemon's word: one served by another user (a state dir of
    theirs) retitled and cleared the terminal through PATH and STATE (trial h252)."""
    evil = "\x1b]0;PWNED\x07\x1b[2J\u202e"
    doc = {
        "children": [
            {
                **node(f"job{evil}", f"long enough to be cut at seventy columns {evil}"),
                "kind": f"command{evil}",
                "state": f"running{evil}",
                "starts": f"4{evil}",
            }
        ]
    }
    table = summary_table(doc, width=width, now=1000.0, fit=fit)  # type: ignore[arg-type]
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in table
    assert "\\x1b]0;PWNED" in table


def test_the_table_shows_when_each_child_starts_next_while_one_waits() -> None:
    waiting = {**node("mailer", LONG), "state": "backoff", "next_start_at": 1000.0 + 4.25}
    ticking = {**node("report", None), "state": "running", "next_start_at": 1000.0 + 3725}
    doc = {"children": [waiting, ticking, node("ok", None)]}
    lines = summary_table(doc, width=None, now=1000.0).splitlines()
    assert lines[0].split("  ")[-2:] == ["NEXT START", "LAST EXIT"]
    start = lines[0].index("NEXT START")
    assert [line[start:].split("  ")[0] for line in lines[1:]] == ["in 4.2s", "in 1h2m", "-"]
    # at the end of a run nothing waits: no column for it
    done = {"children": [node("mailer", LONG), node("ok", None)]}
    assert "NEXT START" not in summary_table(done, width=None)


def test_on_80_columns_the_last_exit_keeps_room_to_say_why_before_the_path() -> None:
    """Trial 30: the demo's rows on 80 columns read ``failed (3): co…`` beside a whole path:
    PATH gives way (to MIN_PATH) before LAST EXIT goes under 20 cells."""
    running = {**node("pipeline/transform", None), "state": "running", "since": 900.0}
    doc = {"children": [running, node("pipeline/mailer", LONG)]}
    lines = summary_table(doc, width=80, now=1000.0, fit="cut").splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    start = lines[0].index("LAST EXIT")
    assert len(lines[2][start:]) >= 20, lines
    # The argv gives way to how it ended (the whole is below the table).
    assert lines[2][start:].startswith("failed (3): exited"), lines
    assert unwrapped(lines[3:]) == [f"pipeline/mailer: {LONG}"], lines


def test_a_cut_last_exit_says_the_commands_last_line_on_stderr_not_its_argv() -> None:
    """A failed command's error ends with its last line on stderr, the why a person wants;
    cut short, the cell said `failed (3): exited with…` (the code twice), and an argv's own
    "exited with" was taken for the end's."""
    error = (
        "command sh -c 'echo db exited with 5 >&2; exit 3' exited with 3; its last line on "
        "stderr: db exited with 5"
    )
    doc = {"children": [node("pipeline/mailer", error)]}
    lines = summary_table(doc, width=110, now=1000.0, fit="cut").splitlines()
    start = lines[0].index("LAST EXIT")
    assert lines[1][start:] == "failed (3): db exited with 5", lines
    assert unwrapped(lines[2:]) == [f"pipeline/mailer: {error}"], lines
    from supervision._top import rows

    assert rows(doc, 1000.0)[0][3] == "failed (3): db exited with 5"  # top's cell too


def test_a_last_exit_by_a_signal_names_the_signal_not_its_negative_number() -> None:
    """The demo's final table read ``stopped (-15)`` for the cache it stopped: Popen's
    convention, which status --json keeps (SPEC's ``code``), is not for a person. An http
    job's status and an exit code stay numbers; a number no signal has stays one too."""
    mask = str
    assert exit_text({"outcome": "stopped", "code": -15}, mask) == "stopped (SIGTERM)"
    assert exit_text({"outcome": "failed", "code": -9, "error": "x"}, mask) == "failed (SIGKILL): x"
    assert exit_text({"outcome": "failed", "code": 3}, mask) == "failed (3)"
    assert exit_text({"outcome": "succeeded", "code": 200}, mask) == "succeeded (200)"
    assert exit_text({"outcome": "failed", "code": -200}, mask) == "failed (signal 200)"
    killed = "command sleep 9 killed by SIGTERM"
    limit = "command sleep 9 killed by SIGXCPU: the cpu limit of 2s ended it"
    doc = {
        "children": [
            {**node("a-job-with-a-long-enough-name", killed), "last_exit": {
                "outcome": "failed", "code": -15, "error": killed}},
            {**node("a-job-with-a-cpu-limit-on-it", limit), "last_exit": {
                "outcome": "failed", "code": -24, "error": limit}},
        ]
    }  # fmt: skip
    lines = summary_table(doc, width=110, now=1000.0, fit="cut").splitlines()
    start = lines[0].index("LAST EXIT")
    # "killed by SIGTERM" is what (SIGTERM) says: the cut cell drops it as it drops "exited with N"
    assert lines[1][start:] == "failed (SIGTERM)", lines
    assert lines[2][start:].startswith("failed (SIGXCPU): the cpu limit"), lines


def test_an_error_with_a_newline_is_whole_and_only_a_traceback_is_left_out() -> None:
    """A command whose argv holds a newline lost its reason ("killed by SIGTERM") after it: the
    cell kept the first line, meant to leave out an isolated job's traceback."""
    argv = "command python3 -c 'import time\nwhile 1: pass' killed by SIGTERM"
    isolated = 'ValueError: no\nTraceback (most recent call last):\n  File "x.py", line 1'
    doc = {"children": [node("cache", argv), node("iso", isolated)]}
    table = summary_table(doc, width=None)
    assert "command python3 -c 'import time\\x0awhile 1: pass' killed by SIGTERM" in table
    assert table.splitlines()[2].endswith("failed (3): ValueError: no"), table


def test_without_a_width_the_table_is_not_wrapped() -> None:
    doc = {"children": [node("mailer", LONG)]}
    assert LONG in summary_table(doc, width=None)


def test_a_jobs_error_with_control_characters_is_escaped_everywhere_it_is_shown(
    tmp_path: Path,
) -> None:
    (tmp_path / "hostile.py").write_text(
        "def run():\n    raise RuntimeError('boom \\x1b]0;pwned\\x07 \\x1b[2J done')\n"
    )
    write(
        tmp_path,
        """
        version: 1
        supervisor: {intensity: {max_restarts: 0}}
        jobs:
          - name: hostile
            python: "hostile:run"
        """,
    )
    run = jobvisor("run", cwd=tmp_path)
    history = jobvisor("history", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert history.returncode == 0, history.stderr
    for where, text in (
        ("the log", run.stderr),
        ("the table", run.stdout),
        ("history", history.stdout),
    ):
        assert "boom \\x1b]0;pwned\\x07 \\x1b[2J done" in text, where
        assert "\x1b" not in text, where
        assert "\x07" not in text, where


def status_on_a_terminal(cwd: Path, columns: int) -> str:
    """``jobvisor status`` with its stdout on a pty ``columns`` wide: what it wrote there."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # the lines as written, without the terminal's \r
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(ROOT)
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(
            [*CLI, "status"], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave
        )
        os.close(slave)
        chunks: list[bytes] = []
        while select.select([master], [], [], 30)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: status closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(master)
        if proc is not None and proc.poll() is None:  # a failed wait leaves no status behind
            proc.kill()
            proc.wait()
    return b"".join(chunks).decode()


def test_status_fits_a_terminal_and_prints_whole_into_a_pipe(tmp_path: Path) -> None:
    tail = "echo the-reporting-cluster-refused-the-connection-again-and-again"
    manifest = f"""
    version: 1
    supervisor: {{backoff: {{initial: 10m, max: 10m, jitter: 0}}}}
    jobs:
      - group: etl
        backoff: {{initial: 10m, max: 10m, jitter: 0}}
        jobs:
          - {{name: {A_NAME}, restart: permanent, command: "{tail}; exit 1"}}
      - {{name: mailer, restart: permanent, command: "{tail}; exit 3"}}
    """
    running = start_daemon(tmp_path, manifest, "--runtime", RUNTIME)
    try:
        states = ["running", "backoff", "backoff"]  # etl, its job, mailer
        wait_until(
            lambda: [n["state"] for n in flatten_status(running.status())] == states,
            "both jobs wait to restart",
        )
        shown = status_on_a_terminal(tmp_path, 100).splitlines()
        piped = running.cli("status")
    finally:
        assert stop_daemon(running) == 0
    # the header, etl, its job, mailer: one line each; then each failure whose cell was cut
    rows, whys = shown[:4], shown[4:]
    assert all(len(line) <= 100 for line in shown), shown
    assert any(line.startswith("…") and "backoff" in line for line in rows), shown
    assert unwrapped(whys) == [
        f"etl/{A_NAME}: command {tail}; exit 1 exited with 1",
        f"mailer: command {tail}; exit 3 exited with 3",
    ], shown
    assert piped.returncode == 0, piped.stderr
    whole = piped.stdout.splitlines()
    assert len(whole) == 4, whole
    assert f"etl/{A_NAME}  " in piped.stdout
    assert whole[-1].endswith(f"{tail}; exit 3 exited with 3")


def test_a_terminal_that_does_not_know_its_width_gets_the_whole_table() -> None:
    master, slave = os.openpty()  # a size never set: 0 columns, as some remote shells give
    try:
        with os.fdopen(os.dup(slave), "w") as stream:
            assert columns(stream) is None
    finally:
        os.close(master)
        os.close(slave)


def test_a_narrow_terminal_drops_kind_and_uptime_before_it_cuts_the_last_exit_away() -> None:
    """At 80 columns, with UPTIME and NEXT START shown, LAST EXIT kept one cell ('…') and
    PATH ten: the table said nothing of why a job failed. KIND goes first, then UPTIME,
    then STARTS."""
    running = {**node("web", None), "state": "running", "since": 990.0}
    waiting = {**node(f"etl/{A_NAME}", LONG), "state": "backoff", "next_start_at": 1080.0}
    doc = {"children": [running, waiting]}
    lines = summary_table(doc, width=80, now=1000.0, fit="cut").splitlines()
    (header, _, long), whys = lines[:3], lines[3:]
    assert "KIND" not in header
    assert all(len(line) <= 80 for line in lines)
    shown = long[header.index("LAST EXIT") :]
    assert len(shown) >= 18, shown
    assert "failed (3): exited with 3 after 2 tries".startswith(shown.removesuffix("…")), shown
    assert unwrapped(whys) == [f"etl/{A_NAME}: {LONG}"], whys
    assert "STARTS" not in header.split()
    assert "UPTIME" not in header
    # Wide enough, nothing is dropped.
    assert "KIND" in summary_table(doc, width=200, now=1000.0, fit="cut").splitlines()[0]


def test_a_wait_of_days_is_said_in_days() -> None:
    assert until(1000.0 + 3 * 86400 + 7200, 1000.0) == "in 3d2h"  # it said "in 74h0m"


def test_on_80_columns_a_cut_failure_says_how_it_ended_and_is_whole_below_the_table() -> None:
    """Trial 30: on 80 columns the demo's mailer read ``failed (3): command…``, the argv
    filling the cell: the cell drops the argv (and ``exited with 3``, which ``(3)`` says), and
    each failure cut so has its whole error below the table, after its whole path. A pipe has
    no such line."""
    killed = (
        "command /opt/etl/bin/export --to reporting killed by SIGKILL (not sent by jobvisor: "
        "the kernel's out-of-memory killer, or another process)"
    )
    python = "RuntimeError: the reporting cluster refused the connection again and again"
    doc = {
        "children": [
            node("mailer", "command echo 'cannot reach smtp.invalid'; exit 3 exited with 3"),
            {**node(f"etl/{A_NAME}", killed), "last_exit": {"outcome": "failed", "code": -9,
                                                            "error": killed}},
            {**node("pyjob", python), "last_exit": {"outcome": "failed", "error": python}},
            {**node("pipeline/cache", None), "state": "stopped",
             "last_exit": {"outcome": "stopped", "code": -15}},
        ]
    }  # fmt: skip
    lines = summary_table(doc, width=80, now=1000.0, fit="cut").splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    header, mailer, etl, pyjob, cache = lines[:5]
    start = header.index("LAST EXIT")
    assert mailer[start:] == "failed (3)", lines
    # "killed by SIGKILL" is what (SIGKILL) says: the cell goes on with why
    assert etl[start:] == "failed (SIGKILL): n…", lines
    assert pyjob[start:].startswith("failed: RuntimeErro"), lines
    assert cache[start:] == "stopped (SIGTERM)", lines
    assert unwrapped(lines[5:]) == [
        "mailer: command echo 'cannot reach smtp.invalid'; exit 3 exited with 3",
        f"etl/{A_NAME}: {killed}",
        f"pyjob: {python}",
    ], lines
    # Wide enough, every cell is whole and nothing is said twice; into a pipe, the same.
    for width in (300, None):
        wide = summary_table(doc, width=width, now=1000.0, fit="cut").splitlines()
        assert len(wide) == 5, wide
        assert wide[1].endswith("exit 3 exited with 3"), wide


def test_a_command_that_could_not_start_says_so_whatever_words_its_argv_holds() -> None:
    """Review r41a: the last " killed by " or " exited with " was taken for how a command
    ended, so an argv holding those words showed ``failed (127): killed by oom, s…``."""
    alert = (
        "command /usr/bin/notify-ops 'backup killed by oom, see /var/log/backup.log' "
        "could not start: No such file or directory"
    )
    shell = "command sh -c 'echo could not start: retry; exit 127' exited with 127"
    doc = {
        "children": [
            {**node("alert", alert), "last_exit": {"outcome": "failed", "code": 127,
                                                   "error": alert}},
            {**node("shell", shell), "last_exit": {"outcome": "failed", "code": 127,
                                                   "error": shell}},
        ]
    }  # fmt: skip
    lines = summary_table(doc, width=80, now=1000.0, fit="cut").splitlines()
    start = lines[0].index("LAST EXIT")
    assert lines[1][start:].startswith("failed (127): could not st"), lines
    assert lines[2][start:] == "failed (127)", lines


def test_on_80_columns_a_long_path_gets_the_room_its_shortened_exit_leaves() -> None:
    """Review r41a: PATH was sized beside the whole LAST EXIT, before it was shortened to
    ``failed (3)``: ``…rt-to-warehouse`` with 10 cells of the line left empty."""
    path = "reporting/nightly/export-to-warehouse"
    error = "command sh -c 'echo cannot reach smtp.invalid; exit 3 # padding padding' exited with 3"
    lines = summary_table(
        {"children": [node(path, error)]}, width=80, now=1000.0, fit="cut"
    ).splitlines()
    assert lines[1].endswith("failed (3)"), lines
    assert len(lines[1]) == 80, lines  # PATH takes every cell the others leave it
    assert unwrapped(lines[2:]) == [f"{path}: {error}"], lines


def test_a_signal_is_said_by_one_name_everywhere() -> None:
    # A command's error, status, history and `jobvisor signal`'s answer say a signal alike.
    from actors._signals import signal_text
    from supervision._client import signal_name
    from supervision._table import outcome_text

    rt1 = signal.SIGRTMIN + 1
    assert signal_text(signal.SIGTERM) == signal_name(signal.SIGTERM) == "SIGTERM"
    assert signal_text(rt1) == signal_name(rt1) == "SIGRTMIN+1"
    assert signal_text(200) == "signal 200"  # none this system has
    assert outcome_text({"outcome": "failed", "code": -rt1}) == "failed (SIGRTMIN+1)"
    assert outcome_text({"outcome": "stopped", "code": -15}) == "stopped (SIGTERM)"
    assert outcome_text({"outcome": "failed", "code": -200}) == "failed (signal 200)"
    assert outcome_text({"outcome": "failed", "code": 3}) == "failed (3)"
