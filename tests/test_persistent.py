"""Periodic jobs as systemd timers: ``persistent`` (``Persistent=``) and ``jitter``
(``RandomizedDelaySec=``); the pure decisions, a real tree, a real daemon and ``run``."""

from __future__ import annotations

import json
import re
import sqlite3
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from clockkit import ManualClock
from conftest import RUNTIME
from faultkit import Jobvisor, wait_until
from test_cli import jobvisor

from actors._job import first_tick, missed_tick, tick_delay
from supervision import (
    AttemptFinished,
    JobSpec,
    PythonWork,
    Schedule,
    SpecError,
    SupervisorSpec,
)
from supervision._history import read_history

if TYPE_CHECKING:
    from collections.abc import Callable

HOUR = 3600.0


def local(y: int, mo: int, d: int, h: int, mi: int, *, s: float = 0) -> float:
    """A local wall time, as cron reads it (``mktime``, the process's zone)."""
    return time.mktime((y, mo, d, h, mi, 0, 0, 0, -1)) + s


# -- the catch-up decision, pure ------------------------------------------------------------------


def test_an_every_job_catches_up_once_its_interval_has_passed_since_its_last_tick() -> None:
    hourly = Schedule(every=HOUR, persistent=True)
    last = 1_800_000_000.0
    assert missed_tick(hourly, last, last + HOUR - 1) is None  # not due yet when it came back
    assert missed_tick(hourly, last, last + HOUR) == last + HOUR  # due as it came back
    assert missed_tick(hourly, last, last + HOUR + 5) == last + HOUR
    # Three days down: one catch-up (never one per tick missed), for the last tick it missed.
    assert missed_tick(hourly, last, last + 72 * HOUR + 1800) == last + 72 * HOUR
    # No tick in the journal (a first start, or one pruned away): nothing to catch up, as
    # systemd runs a missed timer only if it has a stamp.
    assert missed_tick(hourly, None, last) is None
    # Not persistent: ticks missed while jobvisor was down are not run later.
    assert missed_tick(Schedule(every=HOUR), last, last + 72 * HOUR) is None
    # A last tick ahead of the clock (it was set back): nothing missed.
    assert missed_tick(hourly, last, last - 10) is None


def test_a_cron_job_catches_up_its_previous_time_if_it_did_not_tick_since() -> None:
    nightly = Schedule(cron="0 3 * * *", persistent=True)
    last = local(2026, 1, 10, 3, 0, s=0.2)  # the 10th's 03:00 tick
    assert missed_tick(nightly, last, local(2026, 1, 10, 23, 0)) is None  # back the same day
    assert missed_tick(nightly, last, local(2026, 1, 11, 2, 59)) is None  # before the 11th's
    # Back at 03:00 on the dot: the schedule's next time is after now, so this one is missed.
    assert missed_tick(nightly, last, local(2026, 1, 11, 3, 0)) == local(2026, 1, 11, 3, 0)
    assert missed_tick(nightly, last, local(2026, 1, 11, 9, 30)) == local(2026, 1, 11, 3, 0)
    # Across days: down from the 10th to the 14th's noon, one catch-up, for the 14th's 03:00.
    assert missed_tick(nightly, last, local(2026, 1, 14, 12, 0)) == local(2026, 1, 14, 3, 0)
    # A tick woken a little before its time (up to 50 ms) counts for that time: not run again
    # at the next start as missed (review).
    early = local(2026, 1, 10, 3, 0, s=-0.03)
    assert missed_tick(nightly, early, local(2026, 1, 10, 9, 0)) is None
    # A tick its jitter delayed still counts for its time.
    late = local(2026, 1, 10, 3, 20)
    assert missed_tick(Schedule(cron="0 3 * * *", persistent=True, jitter=HOUR), late, late) is None
    # Across a month's end and a weekday rule: Monday 09:00, back on Thursday.
    weekly = Schedule(cron="0 9 * * 1", persistent=True)
    monday = local(2026, 1, 26, 9, 0, s=1)
    assert missed_tick(weekly, monday, local(2026, 2, 1, 23, 0)) is None  # Sunday: not yet
    assert missed_tick(weekly, monday, local(2026, 2, 5, 8, 0)) == local(2026, 2, 2, 9, 0)
    assert missed_tick(weekly, None, local(2026, 2, 5, 8, 0)) is None


def test_an_every_jobs_first_tick_goes_on_from_its_last_one() -> None:
    """Persistent: anacron's rule, one interval after the last tick (not after the start: a
    daemon restarted more often than its interval never ticked it); no interval ahead of now."""
    hourly = Schedule(every=HOUR, persistent=True)
    last = 1_800_000_000.0
    assert first_tick(hourly, last + 600, last) == last + HOUR
    assert first_tick(hourly, last + HOUR + 5, last) == last + 2 * HOUR + 5  # after a catch-up
    assert first_tick(hourly, last - 600, last) == last - 600 + HOUR  # clock set back
    assert first_tick(hourly, last, None) == last + HOUR
    assert first_tick(Schedule(every=HOUR), last + 600, last) == last + 600 + HOUR


def test_a_ticks_delay_is_drawn_from_the_source_in_zero_to_jitter() -> None:
    def never() -> float:
        raise AssertionError("drawn without a jitter")

    assert tick_delay(Schedule(every=10, jitter=4), lambda: 0.5) == 2.0
    assert tick_delay(Schedule(every=10, jitter=4), lambda: 0.0) == 0.0
    assert tick_delay(Schedule(cron="@daily", jitter=HOUR), lambda: 0.25) == 900.0
    assert tick_delay(Schedule(every=10), never) == 0.0  # a backoff's draws stay as they were
    assert tick_delay(Schedule(every=10, jitter=0), never) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"persistent": True}, "persistent", "persistent only on a periodic job (every or cron)"),
        ({"service": True, "jitter": 1.0}, "jitter", "jitter only on a periodic job"),
        ({"every": 10, "jitter": 10}, "jitter", "a jitter shorter than every (10s)"),
        ({"every": 10, "jitter": -1}, "jitter", "a duration >= 0"),
        ({"every": 10, "persistent": 1}, "persistent", "true or false"),
    ],
)
def test_the_spec_refuses_them_where_they_cannot_apply(
    kwargs: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as caught:
        Schedule(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


# -- a real tree -----------------------------------------------------------------------------------


def _job(name: str, schedule: Schedule, target: str = "jobfuncs:ok") -> JobSpec:
    return JobSpec(name=name, work=PythonWork(target=target, args=(name,)), schedule=schedule)


def _draws(*values: float) -> Callable[[], float]:
    left = list(values)
    return lambda: left.pop(0)


def test_each_tick_waits_its_own_draw_and_the_grid_stays(make_tree, events) -> None:
    clock = ManualClock()
    epoch = 1_700_000_000.0

    def wall() -> float:
        return epoch + clock()

    spec = SupervisorSpec(children=(_job("p", Schedule(every=10, jitter=4)),))
    tree = make_tree(
        spec, on_event=events, monotonic=clock, wall=wall, rand=_draws(0.5, 0.25, 0.75)
    )

    def next_start() -> float | None:
        at: float | None = tree.status()["children"][0]["next_start_at"]
        return at

    # The start at 100: the grid's first tick at 110, delayed by 0.5 * 4: shown once drawn.
    wait_until(lambda: next_start() == epoch + 112, "the first tick drawn")
    clock.advance(11.9)
    assert not events.of(AttemptFinished, "p")
    clock.advance(0.1)
    events.wait_for(lambda _: len(events.of(AttemptFinished, "p")) == 1)
    # The grid did not move: the second is due at 120, then its own draw (0.25 * 4).
    wait_until(lambda: next_start() == epoch + 121, "the second tick drawn")
    clock.advance(9)
    events.wait_for(lambda _: len(events.of(AttemptFinished, "p")) == 2)
    wait_until(lambda: next_start() == epoch + 133, "the third tick drawn")
    starts = [e.started_at for e in events.of(AttemptFinished, "p")]
    assert starts == [epoch + 112, epoch + 121]


def test_a_cron_ticks_draw_delays_it_from_its_wall_time(make_tree, events) -> None:
    clock = ManualClock()
    minute = 1_700_000_040.0  # a whole minute
    epoch = minute - 30 - clock()  # the wall clock reads 30 s before it at the start

    def wall() -> float:
        return epoch + clock()

    spec = SupervisorSpec(children=(_job("c", Schedule(cron="* * * * *", jitter=40)),))
    tree = make_tree(spec, on_event=events, monotonic=clock, wall=wall, rand=_draws(0.5, 0.25))
    wait_until(lambda: tree.status()["children"][0]["next_start_at"] == minute + 20, "drawn")
    for _ in range(5):  # its wait comes in pieces of 10 s, the wall clock read after each
        clock.advance(10)
    events.wait_for(lambda _: len(events.of(AttemptFinished, "c")) == 1)
    assert events.of(AttemptFinished, "c")[0].started_at == minute + 20
    # The next minute's tick, then its own draw: not a minute after the delayed one.
    wait_until(lambda: tree.status()["children"][0]["next_start_at"] == minute + 70, "next")


def test_a_cron_jitter_longer_than_its_gap_delays_the_next_time_never_drops_it(
    make_tree, events
) -> None:
    """Cron takes any jitter: a tick delayed past the expression's next time leaves that time
    due (then delayed by its own draw), not skipped as a wait counted from now would."""
    clock = ManualClock()
    minute = 1_700_000_040.0
    epoch = minute - 30 - clock()

    def wall() -> float:
        return epoch + clock()

    spec = SupervisorSpec(children=(_job("c", Schedule(cron="* * * * *", jitter=100)),))
    tree = make_tree(spec, on_event=events, monotonic=clock, wall=wall, rand=_draws(0.9, 0.5))

    def next_start() -> float | None:
        at: float | None = tree.status()["children"][0]["next_start_at"]
        return at

    wait_until(lambda: next_start() == minute + 90, "drawn")
    for _ in range(12):  # its wait in pieces of 10 s, from 30 s before the minute
        clock.advance(10)
    events.wait_for(lambda _: len(events.of(AttemptFinished, "c")) == 1)
    # The next minute's time (+60) came while it waited: due still, then its own 50 s.
    wait_until(lambda: next_start() == minute + 110, "the next minute's tick drawn")
    clock.advance(19)
    assert len(events.of(AttemptFinished, "c")) == 1
    clock.advance(1)
    events.wait_for(lambda _: len(events.of(AttemptFinished, "c")) == 2)
    assert [e.started_at for e in events.of(AttemptFinished, "c")] == [minute + 90, minute + 110]


def test_a_persistent_job_that_missed_its_tick_runs_it_at_once_and_says_so(
    make_tree, events, logs
) -> None:
    """Embedded, ``last_ticks`` is what a journal would say: each job's last tick's start."""
    clock = ManualClock()
    epoch = local(2026, 1, 10, 12, 0) - clock()

    def wall() -> float:
        return epoch + clock()

    hourly = Schedule(every=HOUR, persistent=True)
    spec = SupervisorSpec(children=(_job("missed", hourly), _job("recent", hourly)))
    last_ticks = {"missed": wall() - 2 * HOUR - 60, "recent": wall() - 600}
    tree = make_tree(spec, on_event=events, monotonic=clock, wall=wall, last_ticks=last_ticks)
    events.wait_for(lambda _: bool(events.of(AttemptFinished, "missed")))  # the clock stood still
    said = [r.message for r in logs.records if "missed its tick" in r.message]
    assert said == [
        (
            "missed: missed its tick at 2026-01-10 11:59:00 while jobvisor was not running "
            "(persistent): running it now"
        )
    ]
    assert [r.level_name for r in logs.records if "missed its tick" in r.message] == ["INFO"]
    events.reached("recent", "running")
    nodes = {n["path"]: n for n in tree.status()["children"]}
    # The catch-up was a tick: the next one is an interval after it, as after a start.
    assert nodes["missed"]["next_start_at"] == pytest.approx(wall() + HOUR, abs=0.01)
    # The other ticked 10 minutes ago: its next tick goes on from it, in 50 minutes.
    assert nodes["recent"]["next_start_at"] == last_ticks["recent"] + HOUR
    clock.advance(50 * 60 - 1)
    assert not events.of(AttemptFinished, "recent")
    clock.advance(1)
    events.wait_for(lambda _: bool(events.of(AttemptFinished, "recent")))
    # At its time, not before it (a tick early would pass the look above, the scheduler's
    # thread racing it).
    assert events.of(AttemptFinished, "recent")[0].started_at == last_ticks["recent"] + HOUR
    assert len(events.of(AttemptFinished, "missed")) == 1


# -- a real daemon, and run ------------------------------------------------------------------------

FIRST = """
version: 1
jobs:
  - name: nightly
    command: [sh, -c, "echo ticked >> ticks.txt"]
    every: 100ms
    times: 1
"""
PERSISTENT = """
version: 1
jobs:
  - name: nightly
    command: [sh, -c, "echo ticked >> ticks.txt"]
    every: 1h
    persistent: true
"""


def _ticks(directory: Path) -> int:
    try:
        return len((directory / "ticks.txt").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _daemon(directory: Path, manifest: str) -> Jobvisor:
    (directory / "jobs.yaml").write_text(textwrap.dedent(manifest))
    jv = Jobvisor(directory, "daemon", "--runtime", RUNTIME)
    try:
        wait_until(lambda: "daemon ready" in jv.stderr, "the daemon is ready", proc=jv.proc)
    except BaseException:
        jv.close()
        raise
    return jv


def _status(directory: Path) -> dict[str, Any]:
    out = jobvisor("status", "--json", cwd=directory)
    assert out.returncode == 0, out.stderr
    node: dict[str, Any] = json.loads(out.stdout)["children"][0]
    return node


@pytest.fixture
def ticked_once(tmp_path: Path) -> Path:
    """The journal of a state dir where a daemon, since stopped, ran one tick of ``nightly``."""
    first = _daemon(tmp_path, FIRST)
    try:
        wait_until(lambda: _ticks(tmp_path) == 1, "the tick ran", proc=first.proc)
        assert first.terminate() == 0, first.stderr
    finally:
        first.close()
    journal = tmp_path / ".jobvisor" / "journal.sqlite3"
    assert [r["attempt"] for r in read_history(journal, "nightly") if r["type"] == "attempt"] == [1]
    return journal


def _set_last_tick(journal: Path, ago: float) -> float:
    """Move the journal's newest attempt of ``nightly`` ``ago`` seconds into the past."""
    at = time.time() - ago
    conn = sqlite3.connect(journal)
    try:
        with conn:
            conn.execute(
                "UPDATE attempts SET started_at = ?, ended_at = ? WHERE id ="
                " (SELECT MAX(id) FROM attempts WHERE path = 'nightly')",
                (at, at + 0.01),
            )
    finally:
        conn.close()
    return at


def test_a_daemon_runs_a_tick_a_persistent_job_missed_while_it_was_down(
    tmp_path: Path, ticked_once: Path
) -> None:
    last = _set_last_tick(ticked_once, 2.5 * HOUR)
    second = _daemon(tmp_path, PERSISTENT)
    try:
        wait_until(lambda: _ticks(tmp_path) == 2, "the catch-up ran", proc=second.proc)
        node = _status(tmp_path)
        assert node["state"] == "running"
        assert node["next_start_at"] == pytest.approx(time.time() + HOUR, abs=30)
        assert second.terminate() == 0, second.stderr
    finally:
        second.close()
    missed = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last + 2 * HOUR))  # the last
    said = [line for line in second.stderr.splitlines() if "missed its tick" in line]
    assert len(said) == 1, second.stderr
    assert (
        f" nightly: missed its tick at {missed} while jobvisor was not running (persistent): "
        "running it now" in said[0]
    ), said
    assert " INFO " in said[0], said
    assert _ticks(tmp_path) == 2


def test_a_daemon_does_not_catch_up_a_tick_that_is_not_due(
    tmp_path: Path, ticked_once: Path
) -> None:
    last = _set_last_tick(ticked_once, 600)
    second = _daemon(tmp_path, PERSISTENT)
    try:
        node = _status(tmp_path)
        assert second.terminate() == 0, second.stderr
    finally:
        second.close()
    assert "missed its tick" not in second.stderr
    assert _ticks(tmp_path) == 1
    # Its next tick goes on from the last one: in 50 minutes, not an hour after the start.
    assert node["next_start_at"] == pytest.approx(last + HOUR, abs=0.01)


def test_run_catches_up_a_missed_tick_too(tmp_path: Path, ticked_once: Path) -> None:
    _set_last_tick(ticked_once, 2 * HOUR)
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(PERSISTENT) + "    times: 1\n")
    out = jobvisor("run", "--runtime", RUNTIME, cwd=tmp_path)
    assert out.returncode == 0, out.stderr  # its one tick, the catch-up, ran: it ended
    assert "nightly: missed its tick at" in out.stderr
    assert _ticks(tmp_path) == 2


def test_a_cron_tick_woken_a_little_before_its_time_is_not_run_twice(make_tree, events) -> None:
    """A wake up to 50 ms before a cron time is that tick (the wall clock and the timers'
    clock drift apart); its next time was then reckoned from that early wall time: the same
    time again, and the tick ran twice."""
    clock = ManualClock()
    minute = 1_700_000_040.0
    epoch = minute - 30 - clock()
    lag = [0.0]  # how far the wall clock has fallen behind the timers' clock

    def wall() -> float:
        return epoch + clock() - lag[0]

    spec = SupervisorSpec(children=(_job("c", Schedule(cron="* * * * *")),))
    tree = make_tree(spec, on_event=events, monotonic=clock, wall=wall)
    wait_until(lambda: tree.status()["children"][0]["next_start_at"] == minute, "armed")
    for _ in range(2):  # its wait in pieces of 10 s
        clock.advance(10)
    lag[0] = 0.03
    clock.advance(10)  # the timer fires; the wall clock reads 30 ms before the minute
    events.wait_for(lambda _: len(events.of(AttemptFinished, "c")) == 1)
    wait_until(lambda: tree.status()["children"][0]["next_start_at"] == minute + 60, "next")
    clock.advance(1)
    assert len(events.of(AttemptFinished, "c")) == 1
