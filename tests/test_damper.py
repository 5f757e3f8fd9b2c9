"""Crash-loop damping: exact decisions on an injected clock, then the log of a real crash loop.

The damper is a plain object over a clock the test moves by hand, so every
decision is checked exactly; the handler test feeds it the records a
supervisor writes; the end-to-end test runs ``python cli.py run`` on a
command that exits at once with no backoff.
"""

from __future__ import annotations

import io
import json
import re
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import logbook
import pytest
from clockkit import ManualClock
from faultkit import start_daemon, stop_daemon
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import jobvisor, write

from supervision._damper import CLEAN, CrashLoopDamper, Summary, _since
from supervision._logging import configure_logging
from supervision._secrets import SecretMasker
from supervision._spec import LoggingSpec

ERROR = "command x exited with 1"


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cycle(damper: CrashLoopDamper, path: str = "crash", error: str = ERROR) -> list[object]:
    """One restart of a crash loop, as the supervisor logs it: what the damper decides."""
    return [
        damper.admit(path, "started"),
        damper.admit(path, "attempt failed"),
        damper.admit(path, "failed", failure=error),
        damper.admit(path, "restart"),
    ]


WRITE_ALL = [([], True)] * 4
HOLD_ALL = [([], False)] * 4


def looping(cycles: int) -> tuple[Clock, CrashLoopDamper]:
    """A damper (keep 1, interval 10 s) that has seen ``cycles`` restarts of one crash loop."""
    clock = Clock()
    damper = CrashLoopDamper(keep=1, interval=10, clock=clock)
    for _ in range(cycles):
        cycle(damper)
    return clock, damper


def test_the_first_failures_are_written_in_full_then_held() -> None:
    damper = CrashLoopDamper(keep=2, interval=10, clock=Clock())
    assert cycle(damper) == WRITE_ALL
    # the second failure's own lines are kept; what follows it is the loop going on
    assert cycle(damper) == [([], True), ([], True), ([], True), ([], False)]
    assert cycle(damper) == HOLD_ALL


def test_the_failure_a_decision_follows_is_written_after_the_summary_of_those_held() -> None:
    clock, damper = looping(4)  # the first in full, three held
    clock.now += 1
    summaries, write = damper.admit("crash", "failed", failure=ERROR, acted=True)
    assert write
    assert summaries == [Summary("crash", 3, 1.0, ERROR)]  # this one is not among them
    assert not damper.holding
    assert damper.admit("crash", "gave up", acted=True) == ([], True)
    _, damper = looping(1)  # nothing held before it: written, and nothing summed up
    assert damper.admit("crash", "failed", failure=ERROR, acted=True) == ([], True)
    assert not damper.holding


def test_a_summary_at_most_once_per_interval_per_child() -> None:
    clock = Clock()
    damper = CrashLoopDamper(keep=1, interval=10, clock=clock)
    cycle(damper)
    summaries: list[Summary] = []
    for _ in range(100):  # 100 failures held over 9.9 s: no summary yet
        summaries += [s for out, _ in cycle(damper) for s in out]
        clock.now += 0.099
    assert summaries == []
    clock.now = 100.0 + 10  # an interval after the first held failure
    out, written = damper.admit("crash", "started")
    assert (out, written) == ([Summary("crash", 100, 10.0, ERROR)], False)
    assert out[0].text() == f"crash: failed 100 more times in the last 10 s, same error: {ERROR}"
    for _ in range(5):
        clock.now += 1
        assert cycle(damper) == HOLD_ALL  # within the interval since that summary
    clock.now += 5
    out, _ = damper.admit("crash", "started")
    assert out == [Summary("crash", 5, 10.0, ERROR)]  # since the summary: the last line shown


def test_each_child_is_damped_and_summarised_on_its_own() -> None:
    clock = Clock()
    damper = CrashLoopDamper(keep=1, interval=10, clock=clock)
    for _ in range(3):
        cycle(damper, "a")
        cycle(damper, "b", error="other")
    assert damper.admit("c", "started") == ([], True)  # a quiet child is untouched
    assert damper.admit(None, "root: shutting down") == ([], True)
    clock.now += 10
    out, written = damper.admit(None, "anything")  # any record lets due summaries out
    assert out == [Summary("a", 2, 10.0, ERROR), Summary("b", 2, 10.0, "other")]
    assert written


def test_a_new_kind_of_record_is_written_after_the_summary_of_what_was_held() -> None:
    clock, damper = looping(4)
    clock.now += 1
    assert damper.admit("crash", "gave up") == ([Summary("crash", 3, 1.0, ERROR)], True)
    assert damper.flush() == []


def test_what_is_done_to_a_looping_child_is_written_every_time() -> None:
    # A stop or a start of a looping child is a person's act, not the loop repeating
    # itself: written each time, after the summary of what was held before it.
    clock, damper = looping(4)
    clock.now += 1
    stop = ("supervision", "{}: stopping ({})", ("crash", "stop"))
    assert damper.admit("crash", stop, acted=True) == ([Summary("crash", 3, 1.0, ERROR)], True)
    looped = [damper.admit("crash", "failed", failure=ERROR) for _ in range(2)]
    assert looped == [([], False)] * 2
    assert damper.admit("crash", stop, acted=True) == ([Summary("crash", 2, 0.0, ERROR)], True)
    assert damper.admit("crash", stop) == ([], False)  # the same line, not marked: held


def test_a_persons_start_begins_a_new_story_for_the_child_and_the_jobs_under_it() -> None:
    clock, damper = looping(4)
    for _ in range(3):
        cycle(damper, "g/a")
        cycle(damper, "other")
    clock.now += 1
    # What was held is told first; then the loop is forgotten, here and below (a group's start).
    assert damper.forget("crash") == [Summary("crash", 3, 1.0, ERROR)]
    assert damper.forget("g") == [Summary("g/a", 2, 1.0, ERROR)]
    assert damper.forget("nothing") == []
    assert cycle(damper) == WRITE_ALL, "its first failure after the start is written in full"
    assert cycle(damper, "g/a") == WRITE_ALL
    assert cycle(damper, "other") == HOLD_ALL, "another child's loop goes on"
    assert damper.holding


def test_a_different_error_starts_a_new_burst() -> None:
    _, damper = looping(3)
    out, written = damper.admit("crash", "failed", failure="exited with 2")
    assert (out, written) == ([Summary("crash", 2, 0.0, ERROR)], True)
    assert damper.admit("crash", "restart") == ([], True)  # the new burst's first lines
    # lines the new burst has not shown yet are shown once, then it is held like the first
    again = [([], True), ([], True), ([], False), ([], False)]
    assert cycle(damper, error="exited with 2") == again
    assert cycle(damper, error="exited with 2") == HOLD_ALL


def test_a_commands_failures_whatever_their_last_lines_on_stderr_are_the_same_error() -> None:
    """A command's error ends with its last line on stderr, which often holds a time, a pid,
    a request's id: the loop is the same one; another exit code is another error."""
    _, damper = looping(0)
    said = "command x exited with 1; its last line on stderr: "
    first = f"{said}2026-12-07T22:43:01 pid 4242: connection refused"
    assert cycle(damper, error=first) == WRITE_ALL
    assert cycle(damper, error=first.replace(":01 pid 4242", ":02 pid 4250")) == [
        ([], True),
        ([], True),
        ([], False),  # held: the same error as the first
        ([], False),
    ]
    assert cycle(damper, error=first.replace(":01 pid 4242", ":03 pid 42")) == HOLD_ALL
    other = f"{said}request 9f1c-ab7e failed: no such table"
    assert cycle(damper, error=other) == HOLD_ALL
    _, damper = looping(2)
    _, written = damper.admit("crash", "failed", failure="command x exited with 2")
    assert written  # not the same exit: a new burst


def test_a_pause_of_an_interval_ends_the_burst() -> None:
    clock, damper = looping(2)
    clock.now += 9.5  # restarts slower than the interval are not a flood
    assert damper.admit("crash", "started") == ([], False)
    clock.now += 0.5
    assert damper.admit("crash", "started") == ([Summary("crash", 1, 10.0, ERROR)], True)
    assert cycle(damper) == WRITE_ALL


def test_a_summary_counts_the_restarts_it_held_too() -> None:
    """The restart lines held with the failures are told: the log says the loop went on."""
    clock = Clock()
    damper = CrashLoopDamper(keep=2, interval=10, clock=clock)
    for _ in range(4):
        damper.admit("crash", "started")
        damper.admit("crash", "failed", failure=ERROR)
        damper.admit("crash", "restart", restart=True)
        clock.now += 0.1
    damper.admit("crash", "failed", failure=ERROR)
    summaries, write = damper.admit("crash", "gave up")
    assert write
    # Failures 3, 4 and 5 held; the restarts after failures 3 and 4; since failure 2, the
    # last one shown.
    assert summaries == [Summary("crash", 3, pytest.approx(0.3), ERROR, restarts=2)]
    assert summaries[0].text() == (
        f"crash: failed 3 more times and was restarted 2 more times in the last 0.3 s, "
        f"same error: {ERROR}"
    )
    assert Summary("crash", 1, 0.0, ERROR, restarts=1).text() == (
        f"crash: failed 1 more time and was restarted 1 more time in the last 0.0 s, "
        f"same error: {ERROR}"
    )
    assert Summary("crash", 2, 12.4, ERROR).text() == (
        f"crash: failed 2 more times in the last 12 s, same error: {ERROR}"
    )


def backed_off(damper: CrashLoopDamper, clock: Clock, delays: list[float]) -> list[object]:
    """A loop whose restarts wait ``delays``: what the damper decides for each restart line."""
    said = []
    for delay in delays:
        damper.admit("crash", "failed", failure=ERROR)
        said.append(damper.admit("crash", "restart", restart=True, delay=delay))
        clock.now += delay
    return said


def test_a_restart_whose_delay_has_doubled_is_written_after_what_was_held() -> None:
    """A growing backoff shows in the log: each doubling of the delay since the last restart line
    shown is written (the failures held before it stay held: its number counts them, and so
    does their summary when due); a delay at its maximum is held as any repeated line."""
    clock = Clock()
    damper = CrashLoopDamper(keep=3, interval=10, clock=clock)
    said = backed_off(damper, clock, [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 1.6, 1.6, 3.0, 3.1])
    assert said[:4] == [([], True)] * 4  # in full; then held failures, summed up when due
    assert [write for _, write in said[4:]] == [True, True, False, False, False, False]
    # 3.0 and 3.1 s are not twice the 1.6 s shown (a jittered delay near its maximum): held
    damper.admit("crash", "failed", failure=ERROR)
    assert damper.admit("crash", "restart", restart=True, delay=3.2) == ([], True)


def test_the_restart_after_a_failure_written_in_full_is_written_too() -> None:
    """The trial's: the restart after the 3rd failure was held, and a success next (or a
    give-up, a cooldown) summed up no failure, so the restart was in no line at all."""
    clock = Clock()
    damper = CrashLoopDamper(keep=3, interval=10, clock=clock)
    said = backed_off(damper, clock, [0.05] * 3)
    assert said == [([], True)] * 3
    assert damper.admit("crash", "exited (succeeded)") == ([], True)
    assert damper.flush() == []
    # one held failure then the one a give-up follows: its restart is in the summary
    clock = Clock()
    damper = CrashLoopDamper(keep=3, interval=10, clock=clock)
    backed_off(damper, clock, [0.05] * 4)
    summaries, write = damper.admit("crash", "failed", failure=ERROR, acted=True)
    assert write
    assert summaries == [Summary("crash", 1, pytest.approx(0.1), ERROR, restarts=1)]


def test_a_restart_after_a_summary_that_fell_due_is_written() -> None:
    """A summary due at a restart line counts the failure before it: the restart, held, was in
    no summary if the next failure was the one a cooldown follows (nothing else held)."""
    clock = Clock()
    damper = CrashLoopDamper(keep=1, interval=10, clock=clock)
    backed_off(damper, clock, [0.0, 0.0])
    clock.now += 9.9
    damper.admit("crash", "failed", failure=ERROR)  # the 3rd: held with the 2nd
    clock.now += 0.1
    out, write = damper.admit("crash", "restart", restart=True)
    assert (out, write) == ([Summary("crash", 2, 10.0, ERROR, restarts=1)], True)
    assert damper.admit("crash", "failed", failure=ERROR, acted=True) == ([], True)
    assert damper.admit("crash", "cooling down", acted=True) == ([], True)
    assert damper.flush() == []


def test_every_escalation_of_a_looping_group_is_written_or_counted() -> None:
    """A group that escalates, restarted by its parent: each "escalating" line is a decision,
    written while its failures are, then counted with the failures held."""
    clock = Clock()
    damper = CrashLoopDamper(keep=3, interval=10, clock=clock)
    said = []
    for _ in range(6):
        said.append(damper.admit("g", "escalating", escalation=True)[1])
        damper.admit("g", "failed", failure=ERROR)
        damper.admit("g", "restart", restart=True)
        clock.now += 0.1
    assert said == [True] * 4 + [False] * 2  # the 4th follows the 3rd failure, in full
    damper.admit("g", "escalating", escalation=True)
    summaries, write = damper.admit("g", "failed", failure=ERROR, acted=True)
    assert write
    assert summaries == [Summary("g", 3, pytest.approx(0.4), ERROR, restarts=3, escalations=3)]
    assert summaries[0].text() == (
        f"g: failed 3 more times, escalated 3 more times and was restarted 3 more times "
        f"in the last 0.4 s, same error: {ERROR}"
    )


def test_a_loop_with_no_backoff_holds_its_restart_lines_as_before() -> None:
    clock = Clock()
    damper = CrashLoopDamper(keep=3, interval=10, clock=clock)
    said = backed_off(damper, clock, [0.0] * 8)
    # the 3rd failure's restart too: a restart is held with a failure held before it
    assert [write for _, write in said] == [True, True, True, False, False, False, False, False]


def test_one_failure_held_and_summed_up_at_once_counts_from_the_last_one_shown() -> None:
    """A backed-off loop that gives up: its summary said "in the last 0.0 s" (the trial's)."""
    clock = Clock()
    damper = CrashLoopDamper(keep=3, interval=10, clock=clock)
    for _ in range(3):
        assert damper.admit("crash", "failed", failure=ERROR) == ([], True)
        clock.now += 0.12
    assert damper.admit("crash", "failed", failure=ERROR) == ([], False)
    summaries, write = damper.admit("crash", "gave up")
    assert write
    assert (
        summaries[0].text() == f"crash: failed 1 more time in the last 0.1 s, same error: {ERROR}"
    )


def test_a_line_about_a_group_comes_after_what_its_childrens_loops_held() -> None:
    """An escalating group's "gave up" came before the summary of its child's failures."""
    clock = Clock()
    damper = CrashLoopDamper(keep=1, interval=10, clock=clock)
    for _ in range(3):
        damper.admit("g/bad", "failed", failure=ERROR)
        clock.now += 0.1
    summaries, write = damper.admit("g", "gave up")
    assert write
    assert summaries == [Summary("g/bad", 2, pytest.approx(0.3), ERROR)]
    assert damper.admit("gx", "gave up") == ([], True)  # a sibling's name is no parent


def test_flush_reports_what_is_still_held() -> None:
    clock, damper = looping(3)
    clock.now += 2
    assert damper.flush() == [Summary("crash", 2, 2.0, ERROR)]
    assert damper.flush() == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="keep must be >= 1"):
        CrashLoopDamper(keep=0)


def supervisor_cycle(log: logbook.Logger, n: int) -> None:
    """The records one restart of a crash loop makes, with the fields the supervisor gives them."""
    where = {"path": "crash", "attempt": n}
    log.info("{}: started (start {})", "crash", n, extra={"path": "crash"})
    log.warning("{}[{}] {}", "crash", n, "boom", extra={**where, "stream": "stderr"})
    log.error("{}: failed (attempt {}): {}", "crash", n, ERROR, extra={**where, "failure": ERROR})
    log.info("{}: restart {} in {:.3f}s", "crash", n, 0.0, extra=where)


@pytest.mark.parametrize("level", ["information", "verbose"])
def test_the_handler_writes_the_first_cycles_and_a_summary(level: str) -> None:
    clock = Clock()
    stream = io.StringIO()
    log = logbook.Logger("supervision")
    with configure_logging(LoggingSpec(level=level), stream=stream, monotonic=clock):
        for n in range(1, 501):
            supervisor_cycle(log, n)
            clock.now += 0.025  # 40 restarts a second
        log.error("{}: gave up", "crash", extra={"path": "crash"})
    lines = stream.getvalue().splitlines()
    if level == "verbose":
        assert len(lines) == 500 * 4 + 1  # every line
        return
    summaries = [line for line in lines if _SUMMARY in line]
    assert len(lines) == 3 * 4 - 1 + len(summaries) + 1
    assert len(summaries) == 2  # 12.5 s of looping: one summary per 10 s, then the rest
    held = [int(re.search(r"failed (\d+) more", line)[1]) for line in summaries]  # type: ignore[index]
    assert sum(held) == 500 - 3
    assert summaries[0].endswith(
        f"crash: failed {held[0]} more times in the last 10 s, same error: {ERROR} [path=crash]"
    )
    assert "WARNING" in summaries[0]
    assert lines[-1].endswith("crash: gave up [path=crash]")
    assert "failure=" not in stream.getvalue()  # the error is in the message already


# A summary's words, "more time" for one held (a summary falls due mid-loop under load:
# "failed 1 more time"), "more times" for more.
_SUMMARY = " more time"


def write_loop(directory: Path, job: str) -> None:
    """A manifest of one job restarted with no backoff, 150 times at most: a loop to damp."""
    manifest = (
        "version: 1\n"
        "supervisor:\n"
        "  backoff: {initial: 0s, max: 0s}\n"
        "  intensity: {max_restarts: 150, within: 60s}\n"
        f"jobs:\n  - {job}\n"
    )
    write(directory, manifest)


def run_damped(directory: Path) -> list[str]:
    """``jobvisor run`` of that loop at the default level: its few log lines (it gives up)."""
    quiet = jobvisor("run", cwd=directory)
    assert quiet.returncode == 1, quiet.stderr
    lines = quiet.stderr.splitlines()
    assert len(lines) < 25, quiet.stderr
    return lines


def test_a_real_crash_loop_is_summed_up_and_the_journal_keeps_every_attempt(
    tmp_path: Path,
) -> None:
    write_loop(tmp_path, '{name: crash, command: [sh, -c, "echo boom >&2; exit 1"]}')
    lines = run_damped(tmp_path)
    summaries = [line for line in lines if _SUMMARY in line]
    held = sum(int(re.search(r"failed (\d+) more", line)[1]) for line in summaries)  # type: ignore[index]
    # Each failure is written in full or summed up, never both, never lost: the first 3, and
    # the first of a new burst should the loop have been quiet for an interval (a loaded
    # machine can hold it up that long), which the journal's restart times then show.
    written = [
        int(m[1]) for line in lines if (m := re.search(r"crash: failed \(attempt (\d+)\)", line))
    ]
    assert written[:3] == [1, 2, 3], "\n".join(lines)
    assert held == 151 - len(written), "\n".join(lines)
    assert "same error: command sh -c 'echo boom >&2; exit 1' exited with 1" in summaries[-1]
    # The failure that ends in the give-up is its cause, written in full right before it.
    last = lines.index(summaries[-1])
    assert "crash: failed (attempt 151)" in lines[last + 1], "\n".join(lines)
    assert "crash: gave up" in lines[last + 2]
    history = jobvisor("history", "crash", "--json", "--limit", "1000", cwd=tmp_path)
    attempts = [row for row in json.loads(history.stdout) if row["type"] == "attempt"]
    assert len(attempts) == 151
    # When each failure was decided on: a restart, numbered after its start; the last, give_up.
    restarted = {
        row["detail"]["number"] if row["kind"] == "restart" else 151: row["at"]
        for row in json.loads(history.stdout)
        if row["type"] == "decision" and row["kind"] in {"restart", "give_up"}
    }
    assert written[-1] == 151
    for start in written[3:-1]:  # a quiet spell of 10 s (half of it, for the journal's own lag)
        assert restarted[start] - restarted[start - 1] >= 10 / 2, (start, "\n".join(lines))
    loud = jobvisor("run", "--log-level", "verbose", cwd=tmp_path)
    assert loud.returncode == 1
    assert sum("failed (attempt" in line for line in loud.stderr.splitlines()) == 151
    assert _SUMMARY not in loud.stderr


def test_a_real_loops_growing_backoff_shows_in_the_log(tmp_path: Path) -> None:
    """Each doubling of the delay is written; the failures held before it, and the delays at the
    maximum, are summed up when jobvisor gives up."""
    manifest = (
        "version: 1\n"
        "supervisor:\n"
        "  backoff: {initial: 20ms, max: 320ms, jitter: 0}\n"
        "  intensity: {max_restarts: 8, within: 60s}\n"
        'jobs:\n  - {name: crash, command: [sh, -c, "exit 1"]}\n'
    )
    write(tmp_path, manifest)
    lines = run_damped(tmp_path)
    restarts = [re.search(r"crash: (restart \d+ in [\d.]+s)", line) for line in lines]
    assert [m[1] for m in restarts if m] == [
        "restart 1 in 0.020s",
        "restart 2 in 0.040s",
        "restart 3 in 0.080s",
        "restart 4 in 0.160s",
        "restart 5 in 0.320s",
    ], "\n".join(lines)
    summaries = [line for line in lines if _SUMMARY in line]
    assert len(summaries) == 1
    # the 9th failure, the give-up's cause, is written in full (not in the summary) before it
    assert "crash: failed 5 more times and was restarted 3 more times in the last" in summaries[0]
    gave_up = next(i for i, line in enumerate(lines) if "crash: gave up" in line)
    assert "crash: failed (attempt 9)" in lines[gave_up - 1], "\n".join(lines)


def test_a_real_loops_last_restart_before_it_succeeds_is_logged(tmp_path: Path) -> None:
    """The trial's: a job that fails 3 times then succeeds; its restart 3 was in no line."""
    write(
        tmp_path,
        """
        version: 1
        supervisor: {backoff: {initial: 50ms, multiplier: 1, jitter: 0}}
        jobs:
          - name: flaky
            command: "n=$(cat cnt 2>/dev/null || echo 0); n=$((n+1)); echo $n > cnt; [ $n -gt 3 ] || exit 7"
        """,
    )
    done = jobvisor("run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    restarts = re.findall(r"flaky: (restart \d+ in [\d.]+s)", done.stderr)
    assert restarts == [f"restart {n} in 0.050s" for n in (1, 2, 3)], done.stderr
    lines = done.stderr.splitlines()
    restart3 = next(i for i, line in enumerate(lines) if "flaky: restart 3 in" in line)
    assert "flaky: exited (succeeded)" in lines[restart3 + 1], done.stderr
    assert _SUMMARY not in done.stderr


def test_a_real_escalation_loops_escalations_are_each_written_or_counted(
    tmp_path: Path,
) -> None:
    """The 4th "g: escalating" line was in no line at all (the journal had it)."""
    write(
        tmp_path,
        """
        version: 1
        supervisor:
          backoff: {initial: 20ms, multiplier: 1, jitter: 0}
          intensity: {max_restarts: 6, within: 60s}
        jobs:
          - group: g
            on_exhausted: escalate
            intensity: {max_restarts: 0, within: 60s}
            jobs: [{name: a, command: "exit 7"}]
        """,
    )
    lines = run_damped(tmp_path)
    written = sum("g: escalating: " in line for line in lines)
    counted = [int(m[1]) for line in lines if (m := re.search(r"escalated (\d+) more", line))]
    assert written == 4, "\n".join(lines)
    history = jobvisor("history", "g", "--json", "--limit", "1000", cwd=tmp_path)
    decided = [row["kind"] for row in json.loads(history.stdout) if row["type"] == "decision"]
    assert written + sum(counted) == decided.count("escalate") == 7, (decided, "\n".join(lines))


def test_a_python_crash_loop_shows_where_it_failed_only_with_the_failures_it_writes(
    tmp_path: Path,
) -> None:
    """A thread job's traceback comes with its failure's line: the loop's held ones print none."""
    (tmp_path / "loop_mod.py").write_text(
        "def main():\n    raise RuntimeError('outer') from KeyError('k')\n"
    )
    write_loop(tmp_path, "{name: crash, python: 'loop_mod:main'}")
    quiet = jobvisor("run", cwd=tmp_path)
    assert quiet.returncode == 1, quiet.stderr
    # the first 3, and the 151st, whose failure the give-up follows
    assert quiet.stderr.count("Traceback (most recent call last):") == 4, quiet.stderr
    assert quiet.stderr.count('loop_mod.py", line 2, in main') == 4
    summaries = [line for line in quiet.stderr.splitlines() if _SUMMARY in line]
    assert "same error: RuntimeError: outer (caused by KeyError: 'k')" in summaries[-1]
    assert "Traceback" not in summaries[-1]


def test_a_loop_of_clean_exits_is_damped_and_summed_up_in_its_own_words() -> None:
    clock = Clock()
    damper = CrashLoopDamper(keep=2, interval=10, clock=clock)
    restart = ("supervision", "{}: {} in {:.3f}s", ("fast", "exited (succeeded); restart #"))
    decided = [damper.admit("fast", restart, CLEAN) for _ in range(5)]
    assert decided == [([], True)] * 2 + [([], False)] * 3
    clock.now += 5
    assert damper.admit("fast", restart, CLEAN) == ([], False)
    clock.now += 5
    out, written = damper.admit("fast", restart, CLEAN)
    assert (out, written) == ([Summary("fast", 4, 10.0, CLEAN)], False)
    assert out[0].text() == (
        "fast: exited and was restarted 4 more times in the last 10 s, each exit a success"
    )
    # a failure is not the same loop: the clean one is summed up, a crash loop begins
    out, written = damper.admit("fast", "failed", failure=ERROR)
    assert (out, written) == ([Summary("fast", 1, 0.0, CLEAN)], True)


def test_a_real_loop_of_clean_exits_writes_one_line_per_restart_then_a_summary(
    tmp_path: Path,
) -> None:
    write_loop(tmp_path, '{name: fast, command: [sh, -c, "exit 0"], restart: permanent}')
    lines = run_damped(tmp_path)
    # the first restarts: the exit and the restart in one line
    assert sum("fast: exited (succeeded); restart" in line for line in lines) == 3
    summaries = [line for line in lines if _SUMMARY in line]
    held = sum(int(re.search(r"restarted (\d+) more", line)[1]) for line in summaries)  # type: ignore[index]
    assert held == 150 - 3
    assert summaries[-1].endswith("each exit a success [path=fast]"), summaries
    # the last exit is not restarted: said on its own, then the give-up
    after = lines[lines.index(summaries[-1]) + 1 :]
    assert "fast: exited (succeeded) [path=fast attempt=151]" in after[0], after
    assert "fast: gave up" in after[1], after
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text("logging: {format: json}\n" + manifest.read_text())
    loud = jobvisor("run", "--log-level", "verbose", cwd=tmp_path)
    assert loud.returncode == 1, loud.stderr
    records = [json.loads(line) for line in loud.stderr.splitlines() if line.startswith("{")]
    merged = [r for r in records if "exited (succeeded); restart" in r["message"]]
    assert len(merged) == 150
    assert all("clean_exit" not in r and r["path"] == "fast" for r in merged)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "g", "g/a", "g/h", "g/h/a"]),
            st.sampled_from(["started", "restart", "output"]),
            st.sampled_from([None, None, "boom", "other"]),
            st.sampled_from([0.0, 0.0, 0.5, 4.0, 11.0]),
        ),
        max_size=80,
    )
)
def test_hold_is_exactly_what_admit_holds(
    steps: list[tuple[str, str, str | None, float]],
) -> None:
    # The log's gate asks before making a record, and counts it if held: its answer and what
    # it leaves must be admit's, at the same time. Paths include groups ("g" holds "g/a").
    clock = Clock()
    gated = CrashLoopDamper(keep=2, interval=10, clock=clock)
    plain = CrashLoopDamper(keep=2, interval=10, clock=clock)
    for path, kind, failure, step in steps:
        clock.now += step
        now = gated.now()
        restart = kind == "restart"
        delay = step if restart else 0.0  # a restart waits as long as the step to the next
        expected = plain.admit(path, kind, failure, now=now, restart=restart, delay=delay)
        # A held failure's kind is never looked at: the gate does not build it.
        held = gated.hold(
            path, None if failure is not None else kind, failure, now, restart=restart, delay=delay
        )
        assert held == (expected == ([], False))
        if not held:
            assert (
                gated.admit(path, kind, failure, now=now, restart=restart, delay=delay) == expected
            )
        assert gated._bursts == plain._bursts
        assert gated._holding == plain._holding
        # A restart held is in a summary to come only while a failure is held with it.
        assert all(b.held or not b.restarts_held for b in gated._bursts.values())
        # the groups index is what a scan of the holding paths would say
        scanned: dict[str, int] = {}
        for held in gated._holding:
            parts = held.split("/")
            for n in range(1, len(parts)):
                group = "/".join(parts[:n])
                scanned[group] = scanned.get(group, 0) + 1
        assert gated._under == scanned
        # Every record lets the due summaries out: no holding child is left overdue.
        overdue = [p for p in gated._holding if now - _since(gated._bursts[p]) >= 10]
        assert overdue == []


def test_a_groups_held_line_lets_its_childrens_summaries_out() -> None:
    # A record about a group comes after the summaries of its children's held loops, also when
    # the group's own record would be held: the gate says no, and admit writes them.
    clock = Clock()
    damper = CrashLoopDamper(keep=1, interval=10, clock=clock)
    for _ in range(3):
        damper.admit("g", "failed", "boom", now=clock.now)
        damper.admit("g/a", "failed", "bang", now=clock.now)
        clock.now += 0.1
    assert damper._holding == {"g", "g/a"}
    assert not damper.hold("g", None, "boom", clock.now)
    summaries, write = damper.admit("g", "failed", "boom", now=clock.now)
    assert [s.path for s in summaries] == ["g/a"]
    assert not write


def test_the_supervisor_asks_the_damper_before_it_makes_a_record() -> None:
    from supervision._logging import held_back

    clock = Clock()
    stream = io.StringIO()
    log = logbook.Logger("supervision")
    failed, restart = "{}: {} (attempt {}): {}", "{}: {} in {:.3f}s"
    held = []
    with configure_logging(LoggingSpec(level="information"), stream=stream, monotonic=clock):
        for n in range(1, 8):
            args = ("crash", "failed", n, ERROR)
            first = held_back(log, logbook.ERROR, "crash", failed, args, ERROR)
            if not first:
                log.error(failed, *args, extra={"path": "crash", "failure": ERROR})
            again = ("crash", f"restart {n}", 0.0)
            second = held_back(log, logbook.INFO, "crash", restart, again)
            if not second:
                log.info(restart, *again, extra={"path": "crash"})
            held.append((first, second))
            clock.now += 0.01
        with logbook.TestHandler(level=logbook.TRACE).applicationbound():
            # A handler pushed later sees every record: the gate stands aside.
            assert not held_back(log, logbook.ERROR, "crash", failed, args, ERROR)
    # keep 3: three failures in full; the restart line is held once its kind was seen then
    assert held == [(False, False), (False, False), (False, True)] + [(True, True)] * 4
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 + 1, lines
    # Since the third failure, the last one shown (at 0.02 s); closed at 0.07 s.
    assert "crash: failed 4 more times in the last 0.1 s" in lines[-1]


def test_a_persons_stops_and_starts_of_a_looping_job_are_all_logged(tmp_path: Path) -> None:
    manifest = (
        "version: 1\n"
        "logging: {level: information, file: jobvisor.log}\n"
        "supervisor:\n"
        "  backoff: {initial: 0s, max: 0s}\n"
        "  intensity: {max_restarts: 1000000000, within: 1s}\n"
        "jobs:\n  - {name: fast, command: [/bin/true], restart: permanent}\n"
    )
    running = start_daemon(tmp_path, manifest)
    try:
        for _ in range(3):
            assert running.cli("stop", "fast").returncode == 0
            assert running.cli("start", "fast").returncode == 0
    finally:
        assert stop_daemon(running) == 0
    log = (tmp_path / "jobvisor.log").read_text()
    assert log.count("fast: stopping (stop)") == 3
    assert log.count("fast: start requested") == 3
    assert log.count("fast: stopping (shutdown)") == 1
    assert log.count("fast: stopped (") == 4  # stopped, or succeeded: a true ending as it came
    assert "more times in the last" in log  # the loop itself is still summed up


def test_every_give_up_of_a_looping_job_is_logged(make_tree: Any) -> None:
    # SPEC §5: every decision is logged. Past the first failures the damper holds a loop's
    # own lines, but a give-up is the supervisor's decision, never its noise.
    from conftest import Events

    from supervision import GaveUp, load_manifest

    manifest = load_manifest(
        textwrap.dedent("""
        version: 1
        supervisor:
          backoff: {initial: 0s}
          intensity: {max_restarts: 4, within: 60s}
        jobs:
          - {name: crash, command: "exit 1", restart: permanent}
        """)
    )
    stream = io.StringIO()
    events = Events()
    with configure_logging(LoggingSpec(level="information"), stream=stream):
        tree = make_tree(manifest.tree_spec(), on_event=events)
        events.wait_for(lambda items: any(isinstance(e, GaveUp) for e in items))
        tree.start_child("crash")
        events.wait_for(lambda items: sum(isinstance(e, GaveUp) for e in items) == 2)
        assert tree.stop(timeout=20)
    lines = stream.getvalue().splitlines()
    assert sum(": gave up: " in line for line in lines) == 2, lines
    assert len([line for line in lines if "failed (attempt" in line]) < 10  # still damped


@pytest.mark.parametrize("level", ["information", "warning"])
def test_a_persons_start_of_a_job_that_gave_up_shows_its_next_failures_in_full(
    make_tree: Any, level: str
) -> None:
    """Its first failure after the start was only in the damper's summary ("failed 1 more
    time ..."), as if the loop went on: a person's start begins a new story."""
    from conftest import Events

    from supervision import GaveUp, load_manifest

    manifest = load_manifest(
        textwrap.dedent("""
        version: 1
        supervisor:
          backoff: {initial: 0s}
          intensity: {max_restarts: 3, within: 60s}
        jobs:
          - {name: crash, command: "exit 1", restart: permanent}
        """)
    )
    stream = io.StringIO()
    events = Events()
    with configure_logging(LoggingSpec(level=level), stream=stream):
        tree = make_tree(manifest.tree_spec(), on_event=events)
        events.wait_for(lambda items: any(isinstance(e, GaveUp) for e in items))
        tree.start_child("crash")
        events.wait_for(lambda items: sum(isinstance(e, GaveUp) for e in items) == 2)
        assert tree.stop(timeout=20)
    lines = stream.getvalue().splitlines()
    starts = (re.search(r"failed \(attempt (\d+)\)", line) for line in lines)
    failed = [int(m.group(1)) for m in starts if m]
    # Each story's first three in full, and the 4th (then the 8th), which its give-up follows;
    # the 5th was only in a summary ("failed 1 more time ...") before the start was a new story.
    assert failed == [1, 2, 3, 4, 5, 6, 7, 8], lines
    assert not [line for line in lines if "more time" in line], lines


def cooldowns_until_given_up(make_tree: Any, manifest: str) -> tuple[int, list[str]]:
    """Run ``manifest`` at information until it gives up: its cooldowns and its log's lines."""
    from conftest import Events

    from supervision import CooldownStarted, GaveUp, load_manifest

    spec = load_manifest(textwrap.dedent(manifest)).tree_spec()
    stream = io.StringIO()
    events = Events()
    with configure_logging(LoggingSpec(level="information"), stream=stream):
        tree = make_tree(spec, on_event=events)
        seen = events.wait_for(lambda items: any(isinstance(e, GaveUp) for e in items))
        assert tree.stop(timeout=20)
    return sum(isinstance(e, CooldownStarted) for e in seen), stream.getvalue().splitlines()


def test_every_cooldown_of_a_looping_group_is_logged(make_tree: Any) -> None:
    # Three cooldown cycles within the damper's 10 s interval: each is a decision, each written.
    # (Its probe fails at once; a probation of 10 ms passed under load before it did.)
    cycles, lines = cooldowns_until_given_up(
        make_tree,
        """
        version: 1
        jobs:
          - group: cool
            on_exhausted: cooldown
            intensity: {max_restarts: 1, within: 60s}
            backoff: {initial: 0s}
            cooldown: {duration: 50ms, probation: 5s, max_cycles: 3}
            jobs: [{name: crashy, command: "exit 7", restart: permanent}]
        """,
    )
    assert cycles == 3, lines
    assert sum(" cooling down " in line for line in lines) == cycles, lines


def test_every_probe_start_of_a_looping_job_is_logged(make_tree: Any) -> None:
    """The second cooldown's "probe start" was held back as a repeated line."""
    cycles, lines = cooldowns_until_given_up(
        make_tree,
        """
        version: 1
        supervisor:
          on_exhausted: cooldown
          intensity: {max_restarts: 1, within: 60s}
          backoff: {initial: 0s}
          cooldown: {duration: 50ms, probation: 5s, max_cycles: 3}
        jobs: [{name: crashy, command: "exit 7", restart: permanent}]
        """,
    )
    probes = sum("cooldown over; probe start" in line for line in lines)
    assert probes == cycles >= 2, lines


class Watched(io.StringIO):
    """A stream that says when a line with ``text`` was written, from any thread."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.text in s:
            self.seen.set()
        return n


def test_a_loop_that_went_quiet_is_summed_up_when_due_without_another_record() -> None:
    """Held failures are told an interval on, though nothing logs after them (the child runs)."""
    clock = ManualClock()
    stream = Watched("more times")
    log = logbook.Logger("supervision")
    with configure_logging(LoggingSpec(level="information"), stream=stream, monotonic=clock):
        for n in range(1, 9):
            supervisor_cycle(log, n)
            clock.advance(0.01)
        # The last restart worked: the child runs and says nothing more. So does every other.
        assert not stream.seen.is_set()
        clock.advance(9.9)
        assert not stream.seen.wait(0.2), "not before its interval"
        clock.advance(0.1)
        assert stream.seen.wait(10), stream.getvalue()
        summaries = [line for line in stream.getvalue().splitlines() if _SUMMARY in line]
        assert len(summaries) == 1
        assert f"crash: failed 5 more times in the last 10 s, same error: {ERROR}" in summaries[0]
    # Told once: closing the log has nothing left to say.
    assert stream.getvalue().count("more times") == 1
    assert not [t for t in threading.enumerate() if t.name == "jv-log-summaries"]


class HeldMasker(SecretMasker):
    """Masks nothing; its masking of a line with ``text`` waits until ``go`` is set (a record
    rendered slowly, between the damper's word on it and its write)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()
        self.go = threading.Event()

    def mask(self, text: str) -> str:
        if self.text in text and not self.go.is_set():
            self.seen.set()
            assert self.go.wait(10)
        return super().mask(text)


def test_a_record_that_comes_while_a_summary_is_written_goes_after_it() -> None:
    """The teller took the summary under the damper's lock and wrote it after: a record
    admitted meanwhile ("gave up") could be written before the summary of what led to it."""
    clock = ManualClock()
    stream = io.StringIO()
    masker = HeldMasker("more times")
    log = logbook.Logger("supervision")
    spec = LoggingSpec(level="information")
    with configure_logging(spec, stream=stream, monotonic=clock, masker=masker):
        for n in range(1, 9):
            supervisor_cycle(log, n)
            clock.advance(0.01)
        clock.advance(10)  # the loop went quiet: its summary falls due, the teller writes it
        handler = next(iter(logbook.Handler.stack_manager.iter_context_objects()))
        handler.wake()
        assert masker.seen.wait(10), "the teller is writing the summary"
        done = threading.Event()

        def give_up() -> None:
            log.error("{}: gave up: {}", "crash", "too many", extra={"path": "crash"})
            done.set()

        writer = threading.Thread(target=give_up)
        writer.start()
        assert not done.wait(0.3), "the record waits for the summary being written"
        masker.go.set()
        writer.join(10)
    lines = stream.getvalue().splitlines()
    summary = next(i for i, line in enumerate(lines) if "more times" in line)
    gave_up = next(i for i, line in enumerate(lines) if "crash: gave up" in line)
    assert summary < gave_up, lines


def test_a_summary_written_before_a_record_is_stamped_no_later_than_it() -> None:
    """The summary comes first, so its time does too (it was stamped after the "gave up")."""
    clock = Clock()
    stream = io.StringIO()
    log = logbook.Logger("supervision")
    with configure_logging(LoggingSpec(level="information"), stream=stream, monotonic=clock):
        for n in range(1, 8):
            supervisor_cycle(log, n)
        # A record made a while before the handler sees it (logbook stamps it when made).
        record = logbook.LogRecord(
            "supervision", logbook.ERROR, "crash: gave up", extra={"path": "crash"}
        )
        record.time = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC).replace(tzinfo=None)  # as logbook
        handler = next(iter(logbook.Handler.stack_manager.iter_context_objects()))
        handler.emit(record)
    summary, gave_up = stream.getvalue().splitlines()[-2:]
    assert "more times" in summary
    assert "crash: gave up" in gave_up
    assert summary.split()[0] == gave_up.split()[0], (summary, gave_up)


def test_failures_held_before_their_records_are_made_are_summed_up_when_due_too() -> None:
    """In a real loop the supervisor asks the damper first (held_back), and no record is
    made: that way too, the summary comes when due, not only at the end."""
    from supervision._logging import held_back

    clock = ManualClock()
    stream = Watched("more times")
    log = logbook.Logger("supervision")
    failed = "{}: {} (attempt {}): {}"
    with configure_logging(LoggingSpec(level="information"), stream=stream, monotonic=clock):
        for n in range(1, 8):
            args = ("crash", "failed", n, ERROR)
            if not held_back(log, logbook.ERROR, "crash", failed, args, ERROR):
                log.error(failed, *args, extra={"path": "crash", "failure": ERROR})
            clock.advance(0.01)
        assert not stream.seen.is_set()
        clock.advance(10)
        assert stream.seen.wait(10), stream.getvalue()
        assert "crash: failed 4 more times in the last 10 s" in stream.getvalue()
    assert stream.getvalue().count("more times") == 1


def test_two_trees_in_one_process_each_damp_their_own_loops(make_tree: Any) -> None:
    """``start_tree`` twice, a job ``crash`` in each: tree A's crash loop neither holds back
    nor counts tree B's failures (they shared one damper, keyed by the path alone), and A's
    stop sums up what A held, then and there."""
    from conftest import Events

    from supervision import AttemptFinished, GaveUp, Outcome, load_manifest

    def manifest(restarts: int, backoff: str) -> Any:
        return load_manifest(
            textwrap.dedent(f"""
            version: 1
            supervisor:
              backoff: {{initial: {backoff}, max: {backoff}}}
              intensity: {{max_restarts: {restarts}, within: 60s}}
            jobs:
              - {{name: crash, command: "exit 1", restart: permanent}}
            """)
        ).tree_spec()

    stream = io.StringIO()
    a_events, b_events = Events(), Events()
    with configure_logging(LoggingSpec(level="information"), stream=stream):
        a = make_tree(manifest(10_000, "50ms"), on_event=a_events)
        a_events.wait_for(
            lambda items: len([e for e in items if isinstance(e, AttemptFinished)]) > 5
        )
        mark = len(stream.getvalue())
        b = make_tree(manifest(2, "0s"), on_event=b_events)
        b_events.wait_for(lambda items: any(isinstance(e, GaveUp) for e in items))
        assert b.stop(timeout=20)
        b_lines = stream.getvalue()[mark:].splitlines()
        assert a.stop(timeout=20)
        # Its failures: an attempt the stop ended is none.
        a_tried = sum(e.outcome is Outcome.FAILED for e in a_events.of(AttemptFinished))
        after_a = stream.getvalue()
    b_failed = [m[1] for m in (re.search(r"failed \(attempt (\d+)\)", s) for s in b_lines) if m]
    assert b_failed == ["1", "2", "3"], b_lines  # B's story, in full
    summaries = re.findall(r"crash: failed (\d+) more times?", after_a)
    assert sum(int(n) for n in summaries) == a_tried - 3, after_a  # A's own, said at A's stop


def test_a_stopped_trees_late_records_keep_no_damper() -> None:
    """A thread of a stopped tree may still run (abandoned at its stop): its records go to the
    damper of no tree's, and none is made again for a tree that will never release it."""
    from supervision._damper import TreeDampers

    running = {"t1"}
    dampers = TreeDampers(clock=Clock(), running=running)
    dampers.of("t1").admit("crash", "started", failure=ERROR)
    assert dampers.trees == 2  # t1's, and no tree's
    running.discard("t1")
    dampers.release("t1")
    late = dampers.of("t1")
    assert late is dampers.of(None)
    late.admit("crash", "failed", failure=ERROR)
    assert dampers.trees == 1
    assert dampers.of("t2") is late  # never started here: no damper kept for it either


def test_a_real_trees_thread_that_outlives_its_stop_makes_no_damper(make_tree: Any) -> None:
    """The log handler's side: a record from a thread named after a stopped tree."""
    from supervision import SupervisorSpec, _logging

    stream = io.StringIO()
    with configure_logging(LoggingSpec(level="information"), stream=stream):
        tree = make_tree(SupervisorSpec(children=()))
        tree_id = tree._ctx.tree_id
        handler = _logging._gate
        assert handler is not None
        assert handler._damper is not None

        def record(text: str) -> None:
            def say() -> None:
                logbook.Logger("actors.job").warning(text, extra={"path": "crash"})

            thread = threading.Thread(target=say, name=f"jv-{tree_id}-crash-ready")
            thread.start()
            thread.join()

        before = handler._damper.trees
        record("early")
        assert handler._damper.trees == before + 1  # the running tree's own
        assert tree.stop(timeout=20)
        assert handler._damper.trees == before
        record("late")
        assert handler._damper.trees == before
    assert "late" in stream.getvalue()


def test_a_records_tree_is_its_threads_under_either_runtime() -> None:
    """Under gevent a ``threading.Thread`` (a readiness probe, a ray watch) runs in a greenlet
    named ``Greenlet-N``: its tree is still read from the thread's name; a task of
    ``start_task`` (a greenlet there) from its own."""
    from actors._runtime import start_task
    from supervision._logging import _current_tree

    seen: dict[str, str | None] = {}
    done = threading.Event()

    def record(key: str) -> None:
        seen[key] = _current_tree()
        seen[key + " again"] = _current_tree()  # the second from the cache

    def task() -> None:
        record("task")
        done.set()

    threads = [
        threading.Thread(target=record, args=(key,), name=name)
        for key, name in [("probe", "jv-t7-web-ready"), ("other", "jv-journal"), ("user", "mine")]
    ]
    for thread in threads:
        thread.start()
        thread.join()
    start_task(task, "jv-t8-root/crash")
    assert done.wait(10)
    record("main")
    assert seen == {
        "probe": "t7",
        "probe again": "t7",
        "other": None,
        "other again": None,
        "user": None,
        "user again": None,
        "task": "t8",
        "task again": "t8",
        "main": None,
        "main again": None,
    }


def test_the_supervisor_names_its_tree_to_the_gate_whatever_thread_asks() -> None:
    """``held_back`` and ``new_story`` are told the tree: a loop of tree t905's (logged in its
    thread) asked about from another thread (the main one here) is t905's story, not no
    tree's."""
    from supervision._logging import held_back, new_story, tree_begins, tree_stopped

    stream = io.StringIO()
    log = logbook.Logger("supervision")
    failed = "{}: {} (attempt {}): {}"

    def fail(n: int) -> bool:
        args = ("crash", "failed", n, ERROR)
        if held_back(log, logbook.ERROR, "crash", failed, args, ERROR, tree="t905"):
            return True
        log.error(failed, *args, extra={"path": "crash", "failure": ERROR})
        return False

    def loop() -> None:
        held.extend(fail(n) for n in range(1, 5))

    held: list[bool] = []
    tree_begins("t905")
    try:
        with configure_logging(LoggingSpec(level="information"), stream=stream):
            thread = threading.Thread(target=loop, name="jv-t905-root")
            thread.start()
            thread.join()
            assert fail(5)  # from the main thread: t905's fifth failure, held as the fourth
            new_story("crash", tree="t905")  # what t905 held is summed up now
            assert "crash: failed 2 more times" in stream.getvalue()
    finally:
        tree_stopped("t905")
    assert held == [False, False, False, True]


def test_a_tree_ended_by_kill_after_a_stop_that_timed_out_writes_what_its_damper_held(
    make_tree: Any,
) -> None:
    """An embedding caller's ``stop(timeout)`` runs out (a job ignores its stop), then it
    calls ``kill()`` and never stops again: the tree's damper was released only by a
    ``stop`` that saw the end, so it was kept for ever and its "N more times" never written.
    The log's clock stands still here: no teller writes it when due, only the tree's end."""
    from conftest import Events

    from supervision import AttemptFinished, Outcome, _logging, load_manifest

    spec = load_manifest(
        textwrap.dedent("""
        version: 1
        supervisor:
          backoff: {initial: 10ms, max: 10ms}
          intensity: {max_restarts: 10000, within: 60s}
        jobs:
          - name: deaf
            service: true
            command: [sh, -c, "trap '' TERM; while true; do sleep 0.05; done"]
            stop: {grace: 60s}
          - {name: crash, command: "exit 1", restart: permanent}
        """)
    ).tree_spec()
    clock = ManualClock()
    stream = Watched("more time")
    events = Events()
    with configure_logging(LoggingSpec(level="information"), stream=stream, monotonic=clock):
        handler = _logging._gate
        assert handler is not None
        assert handler._damper is not None
        before = handler._damper.trees
        tree = make_tree(spec, on_event=events)
        events.wait_for(
            lambda items: sum(isinstance(e, AttemptFinished) for e in items) > 6, timeout=20
        )
        assert handler._damper.trees == before + 1
        assert not tree.stop(timeout=0.3)  # deaf waits out its 60 s grace
        tree.kill()
        assert tree.wait_ended(20)
        assert stream.seen.wait(10), stream.getvalue()  # written at the end, no stop() since
        assert handler._damper.trees == before
        # Its last event (its state at the end) is delivered after every attempt of its: the
        # count is whole (no stop() flushed the events).
        events.reached("crash", "stopped")
        failed = sum(
            e.outcome is Outcome.FAILED for e in events.of(AttemptFinished) if e.path == "crash"
        )
        text = stream.getvalue()
    summaries = re.findall(r"crash: failed (\d+) more times?", text)
    assert sum(int(n) for n in summaries) == failed - 3, text


def test_the_failure_that_ends_in_a_give_up_is_written_in_full_before_it(tmp_path: Path) -> None:
    """A batch job's deciding attempt was only in the summary ("failed 1 more time ...") before
    "gave up": the failure that leads to a give-up is a decision's cause, always written."""
    manifest = (
        "version: 1\n"
        "supervisor:\n"
        "  backoff: {initial: 0s, max: 0s}\n"
        "  intensity: {max_restarts: 3, within: 60s}\n"
        'jobs:\n  - {name: load, command: [sh, -c, "echo no db >&2; exit 3"]}\n'
    )
    write(tmp_path, manifest)
    lines = run_damped(tmp_path)
    gave_up = next(i for i, line in enumerate(lines) if "load: gave up" in line)
    error = "command sh -c 'echo no db >&2; exit 3' exited with 3"
    assert f"load: failed (attempt 4): {error}" in lines[gave_up - 1], "\n".join(lines)
    starts = [m[1] for line in lines if (m := re.search(r"load: failed \(attempt (\d+)\)", line))]
    assert starts == ["1", "2", "3", "4"], "\n".join(lines)
    assert not [line for line in lines if "more time" in line and "failed" in line]
