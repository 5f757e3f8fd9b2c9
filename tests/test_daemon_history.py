"""The journal tells the daemon's own life (start, reload, stop), who acted on a job and
through what, and `history --since` / `/api/history?since=`: against a real daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from conftest import RUNTIME
from faultkit import (
    CLI,
    ENV,
    HttpDaemon,
    Jobvisor,
    Running,
    http_daemon,
    start_daemon,
    stop_daemon,
    wait_until,
)

from supervision._app import jobvisor_version
from supervision._history import JournalError, journal_path, read_history

MANIFEST = """
version: 1
http: {token: {secret: {env: JV_HTTP_TOKEN}}}
jobs:
  - {name: svc, service: true, command: [sleep, "100"]}
"""
RELOADED = """
version: 1
http: {token: {secret: {env: JV_HTTP_TOKEN}}}
jobs:
  - {name: svc, service: true, command: [sleep, "100"]}
  - {name: extra, service: true, command: [sleep, "100"]}
"""


def _daemon(
    tmp_path: Path, manifest: str = MANIFEST, code: int = 0
) -> AbstractContextManager[HttpDaemon]:
    return http_daemon(tmp_path, manifest, "--runtime", RUNTIME, code=code)


def _daemon_rows(running: Running) -> list[dict[str, Any]]:
    return [row for row in read_history(journal_path(running.state), None, 500) if not row["path"]]


def _json_history(running: Running, *args: str) -> list[dict[str, Any]]:
    out = running.cli("history", "--json", *args)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def test_start_reload_and_stop_are_journaled_and_read_by_the_next_daemon(tmp_path: Path) -> None:
    with _daemon(tmp_path) as first:
        pid = first.proc.pid
        (tmp_path / "jobs.yaml").write_text(RELOADED)
        assert first.cli("reload").returncode == 0
        (tmp_path / "jobs.yaml").write_text("version: 1\njobs: [{name: x, command: }]\n")
        assert first.cli("reload").returncode == 2
    with _daemon(tmp_path, RELOADED) as second:
        wait_until(lambda: len(_daemon_rows(second)) == 5, "its start journaled", proc=second.proc)
        rows = _json_history(second)
        mine = [row for row in rows if row["path"] == ""]
        kinds = [row["kind"] for row in mine]
        assert kinds == [
            "daemon_start",
            "daemon_reload",
            "daemon_reload",
            "daemon_stop",
            "daemon_start",
        ], mine
        start, reload, refused, stop, again = (row["detail"] for row in mine)
        assert start["pid"] == pid
        assert start["manifest"] == str(tmp_path / "jobs.yaml")
        assert start["version"]
        assert "previous" not in start
        assert reload == {
            "pid": pid,
            "via": "control",
            "added": 1,
            "removed": 0,
            "replaced": 0,
            "updated": 0,
        }
        assert refused == {
            "pid": pid,
            "via": "control",
            **dict.fromkeys(("added", "removed", "replaced", "updated"), 0),
            "error": f"{tmp_path / 'jobs.yaml'}:2: jobs[0].command: expected a list of argv "
            "strings or a shell command string, got null",
        }
        assert stop == {
            "pid": pid,
            "how": "SIGTERM",
            "via": "signal",
            "code": 0,
            "took": stop["took"],
        }
        assert again["pid"] == second.proc.pid
        assert "previous" not in again  # the first one said how it stopped
        # As a person reads it: the tree's own rows say "(daemon)" where a path would be.
        text = second.cli("history")
        assert text.returncode == 0, text.stderr
        lines = [line for line in text.stdout.splitlines() if "(daemon)" in line]
        assert [line.split("  ")[2].split(" ")[0] for line in lines] == kinds
        assert "via=signal" in lines[3]
        assert "SIGTERM" in lines[3]
        # A job's history has none of them.
        assert all(row["path"] == "svc" for row in _json_history(second, "svc"))
        # Nor does the endpoint's of a job; without job= it has them.
        url = second.http.url
        every = requests.get(url + "/api/history?limit=500", timeout=30).json()
        assert [row["kind"] for row in every if row["path"] == ""] == kinds


def test_a_daemon_killed_without_a_stop_is_said_by_the_next_start(tmp_path: Path) -> None:
    with _daemon(tmp_path, code=-signal.SIGKILL) as first:
        # Killed once its start row is committed (within the journal's max_delay of the start).
        wait_until(lambda: _daemon_rows(first), "the start journaled", proc=first.proc)
        first.proc.send_signal(signal.SIGKILL)
    with _daemon(tmp_path) as second:

        def starts() -> list[dict[str, Any]]:
            return [row for row in _daemon_rows(second) if row["kind"] == "daemon_start"]

        wait_until(lambda: len(starts()) == 2, "the second start journaled", proc=second.proc)
        assert [row["detail"]["pid"] for row in starts()] == [first.proc.pid, second.proc.pid]
        assert "previous" not in starts()[0]["detail"]
        assert starts()[1]["detail"]["previous"] == (
            f"the daemon before (pid {first.proc.pid}) journaled no stop: it was killed, "
            "or its machine went down"
        )


KILLED = """
version: 1
jobs:
  - {name: svc, service: true, command: [sleep, "100"]}
  - {name: once, command: [sleep, "100"]}
"""


def test_the_start_after_a_sigkill_warns_of_it_and_history_says_what_it_lacks(
    tmp_path: Path,
) -> None:
    """After `kill -9` the next daemon's log said nothing (only its journal row did), and
    `history once` while once ran said 'the journal has nothing of once; it has: no job yet'
    though the journal held the daemon's rows (trial 33)."""
    log_file = tmp_path / "second.log"
    with http_daemon(tmp_path, KILLED, "--runtime", RUNTIME, code=-signal.SIGKILL) as first:
        wait_until(lambda: _daemon_rows(first), "the start journaled", proc=first.proc)
        out = first.cli("history", "once")
        assert (out.returncode, out.stdout) == (0, ""), out.stderr
        # Not "of once": said alike of a name no job has (review r44a).
        assert out.stderr == (
            "jobvisor: the journal has no finished attempt of any job yet (an attempt is "
            "journaled as it ends)\n"
        )
        last = _daemon_rows(first)[-1]["at"]
        first.proc.send_signal(signal.SIGKILL)
    with http_daemon(tmp_path, KILLED, "--runtime", RUNTIME, "--log-file", str(log_file)) as second:
        wait_until(
            lambda: len(_daemon_rows(second)) == 2, "the second start journaled", proc=second.proc
        )
        warnings = [line for line in log_file.read_text().splitlines() if " WARNING " in line]
    shown = datetime.fromtimestamp(last).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert len(warnings) == 1, warnings
    assert warnings[0].endswith(
        f"supervision.daemon: the daemon before (pid {first.proc.pid}) journaled no stop: it "
        f"was killed, or its machine went down, after {shown} (its last journal row); what it "
        "had running then has no row (the journal has each attempt once it ends)"
    ), warnings


def test_the_warning_after_a_sigkill_names_no_time_when_a_run_wrote_since(
    tmp_path: Path,
) -> None:
    """A `run` in the state dir between the killed daemon and the next start wrote the newest
    rows: their time was named as the killed daemon's last (review r44a)."""
    log_file = tmp_path / "second.log"
    with http_daemon(tmp_path, KILLED, "--runtime", RUNTIME, code=-signal.SIGKILL) as first:
        wait_until(lambda: _daemon_rows(first), "the start journaled", proc=first.proc)
        first.proc.send_signal(signal.SIGKILL)
    (tmp_path / "once.yaml").write_text('version: 1\njobs:\n  - {name: o, command: ["true"]}\n')
    ran = subprocess.run(
        [*CLI, "run", "once.yaml"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    with http_daemon(tmp_path, KILLED, "--runtime", RUNTIME, "--log-file", str(log_file)) as second:
        wait_until(lambda: any(r["kind"] == "daemon_start" for r in _daemon_rows(second)[-1:]),
                   "the second start journaled", proc=second.proc)  # fmt: skip
        warnings = [line for line in log_file.read_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].endswith(
        f"the daemon before (pid {first.proc.pid}) journaled no stop: it was killed, or its "
        "machine went down; what it had running then has no row (the journal has each "
        "attempt once it ends)"
    ), warnings


def test_each_person_action_says_through_what_it_came(tmp_path: Path) -> None:
    with _daemon(tmp_path) as running:
        assert running.cli("restart", "svc").returncode == 0
        url = running.http.url
        headers = running.http.auth
        answer = requests.post(url + "/api/jobs/svc/restart", headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        assert running.cli("stop", "svc").returncode == 0
        assert running.cli("start", "svc").returncode == 0
        assert running.cli("signal", "HUP", "svc").returncode == 0
        os.kill(running.proc.pid, signal.SIGHUP)  # a reload by signal
        wait_until(
            lambda: any(r["kind"] == "daemon_reload" for r in _daemon_rows(running)),
            "the SIGHUP's reload journaled",
            proc=running.proc,
        )
        rows = _json_history(running, "--limit", "500")
        acted = [
            (row["kind"], row["detail"]["via"])
            for row in rows
            if row.get("kind", "").startswith("person_") or row.get("kind") == "daemon_reload"
        ]
        assert acted == [
            ("person_restart", "control"),
            ("person_restart", "http"),
            ("person_stop", "control"),
            ("person_start", "control"),
            ("person_signal", "control"),
            ("daemon_reload", "signal"),
        ]
        text = running.cli("history", "svc").stdout
        assert "person_restart (via=http)" in text
        assert "person_signal (signal=SIGHUP, via=control)" in text
        everything = json.dumps(rows) + text
        assert str(running.http.token) not in everything  # the channel, never its secret


def _seed(state: Path, now: float) -> None:
    """Attempts 1-2 of ``old`` two hours ago, 3-5 a minute ago: what ``--since`` chooses from."""
    from actors import Outcome
    from supervision._events import AttemptFinished
    from supervision._journal import Journal

    journal = Journal(state)
    for number in range(1, 6):
        at = now - (7200.0 if number <= 2 else 60.0) + number
        journal.record(AttemptFinished(path="old", at=at, attempt=number, started_at=at - 0.5,
                                       outcome=Outcome.SUCCEEDED, error=None, code=0))  # fmt: skip
    assert journal.flush()
    assert journal.close() == 0


def _history(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "history", *args, "--state-dir", str(state)],
        env=ENV, capture_output=True, text=True, timeout=60, check=False, cwd=state,
    )  # fmt: skip


def test_history_since_a_duration_or_a_time_and_the_last_n_of_those(tmp_path: Path) -> None:
    now = time.time()
    _seed(tmp_path, now)

    def attempts(*args: str) -> list[int]:
        out = _history(tmp_path, "--json", *args)
        assert (out.returncode, out.stderr) == (0, "")
        return [row["attempt"] for row in json.loads(out.stdout)]

    assert attempts() == [1, 2, 3, 4, 5]
    assert attempts("--since", "10m") == [3, 4, 5]
    assert attempts("--since", "3h") == [1, 2, 3, 4, 5]
    assert attempts("--since", "1h30m", "-n", "2") == [4, 5]  # the last N since then
    assert attempts("old", "--since", "10m", "--limit", "1") == [5]
    half_hour_ago = datetime.fromtimestamp(now - 1800, UTC)
    assert attempts("--since", half_hour_ago.isoformat()) == [3, 4, 5]
    assert attempts("--since", half_hour_ago.strftime("%Y-%m-%dT%H:%M:%SZ")) == [3, 4, 5]
    local = datetime.fromtimestamp(now - 1800, UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    assert attempts("--since", local) == [3, 4, 5]
    assert attempts("--since", datetime.fromtimestamp(now + 60, UTC).isoformat()) == []
    text = _history(tmp_path, "--since", "10m")
    assert [line.split("  ", 1)[1] for line in text.stdout.splitlines()] == [
        f"old  attempt {n} succeeded (0)" for n in (3, 4, 5)
    ]
    for bad in ("yesterday", "-5m", "10 parsecs", ""):
        out = _history(tmp_path, f"--since={bad}")  # "-5m" would be taken for an option
        assert (out.returncode, out.stdout) == (2, ""), bad
        assert out.stderr == (
            "jobvisor: --since: expected a duration (250ms, 30s, 5m, 1h, 1d or a number of "
            "seconds) or an ISO-8601 time such as 2026-12-06T19:00:00Z, got "
            f"{bad.strip()!r}\n"
        ), bad


def test_api_history_since_and_its_refusals(tmp_path: Path) -> None:
    now = time.time()
    (tmp_path / ".jobvisor").mkdir(mode=0o700)
    _seed(tmp_path / ".jobvisor", now)
    with _daemon(tmp_path) as running:
        url = running.http.url

        def got(query: str) -> requests.Response:
            return requests.get(f"{url}/api/history?{query}", timeout=30)

        wait_until(lambda: _daemon_rows(running), "its start journaled", proc=running.proc)
        rows = got("since=10m&limit=500").json()
        assert [row["attempt"] for row in rows if row["path"] == "old"] == [3, 4, 5]
        assert "daemon_start" in [row.get("kind") for row in rows]
        assert [row["attempt"] for row in got("job=old&since=3h&limit=2").json()] == [4, 5]
        iso = datetime.fromtimestamp(now - 1800, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert [row["attempt"] for row in got(f"job=old&since={iso}").json()] == [3, 4, 5]
        for bad in ("yesterday", "-1h", "10 parsecs"):
            refused = got(f"since={bad}")
            assert refused.status_code == 400, bad
            assert refused.json()["error"] == (
                "since: expected a duration (250ms, 30s, 5m, 1h, 1d or a number of seconds) or "
                f"an ISO-8601 time such as 2026-12-06T19:00:00Z, got {bad!r}"
            )
        # A "+" in a query is a space (its offset written as is, not as %2B): taken back.
        local = datetime.fromtimestamp(now - 1800, UTC).astimezone()
        for offset in ("+01:00", "-05:00", "+05:30"):
            there = local.astimezone(datetime.strptime(offset, "%z").tzinfo)
            stamp = there.isoformat(timespec="seconds")
            assert stamp.endswith(offset), stamp
            for sent in (stamp, stamp.replace("+", "%2B")):
                answer = got(f"job=old&since={sent}")
                assert answer.status_code == 200, (sent, answer.text)
                assert [row["attempt"] for row in answer.json()] == [3, 4, 5], sent
        # A date and a local time, the space sent as "+": still no offset.
        spaced = local.strftime("%Y-%m-%d+%H:%M:%S")
        assert [row["attempt"] for row in got(f"job=old&since={spaced}").json()] == [3, 4, 5]
        for empty in ("since=", "since", "job=old&since=&limit=5"):
            refused = got(empty)
            assert refused.status_code == 400, (empty, refused.text)
            assert refused.json()["error"] == (
                "since: expected a duration (250ms, 30s, 5m, 1h, 1d or a number of seconds) or "
                "an ISO-8601 time such as 2026-12-06T19:00:00Z, got ''"
            ), empty
        both = got("since=1h&per_job=5")
        assert (both.status_code, both.json()["error"]) == (
            400,
            "since and per_job: give one (per_job reads each job's newest attempts)",
        )


def test_a_late_person_row_has_no_via_rather_than_another_requests(tmp_path: Path) -> None:
    """A tree command gives up after 60 s; a restart's row comes once the stop ended, when its
    request's channel is gone (or another request's is under way, of another job)."""
    from supervision._daemon import _noting
    from supervision._events import Commanded
    from supervision._journal import Journal

    journal = Journal(tmp_path)
    via: dict[tuple[str, str], str] = {("restart", "etl/load"): "http"}
    noted = _noting(journal, lambda event: None, via)
    now = time.time()
    noted(Commanded(path="etl/load", at=now, action="restart"))
    noted(Commanded(path="svc", at=now + 1, action="restart"))  # svc's request gave up
    via.clear()  # the request is over: its row, late, says no channel
    noted(Commanded(path="etl/load", at=now + 2, action="restart"))
    assert journal.flush()
    assert journal.close() == 0
    rows = read_history(journal_path(tmp_path), None, 500)
    assert [(row["path"], row["detail"]) for row in rows] == [
        ("etl/load", {"via": "http"}),
        ("svc", {}),
        ("etl/load", {}),
    ]


def test_history_of_a_job_with_nothing_since_then_says_so(tmp_path: Path) -> None:
    now = time.time()
    _seed(tmp_path, now)
    out = _history(tmp_path, "old", "--since", "30s")
    assert (out.returncode, out.stdout) == (0, "")
    said, shown = out.stderr.rstrip("\n").rsplit(" since ", 1)
    assert said == "jobvisor: the journal has nothing of old", out.stderr
    when = datetime.fromisoformat(shown)
    assert when.tzinfo is not None, shown  # the local time, with its offset
    assert abs(when.timestamp() - (now - 30)) < 5, shown
    # A path it has no row of at all: the paths it has, as without --since.
    out = _history(tmp_path, "new", "--since", "30s")
    assert (out.returncode, out.stdout) == (0, "")
    assert out.stderr == "jobvisor: the journal has nothing of new; it has: old\n"


def test_history_says_a_signal_by_its_name_as_status_does(tmp_path: Path) -> None:
    """``stopped (SIGTERM)``, ``failed (SIGHUP)``; a number no signal has, ``signal 99``. It
    said ``stopped (-15)`` where status said ``stopped (SIGTERM)``; ``--json`` keeps -15."""
    from actors import Outcome
    from supervision._events import AttemptFinished
    from supervision._journal import Journal

    journal = Journal(tmp_path)
    now = time.time()
    for number, (outcome, code) in enumerate(
        [
            (Outcome.STOPPED, -15),
            (Outcome.FAILED, -1),
            (Outcome.FAILED, -99),
            (Outcome.FAILED, 3),
            (Outcome.FAILED, -(signal.SIGRTMIN + 1)),
        ],
        start=1,
    ):
        journal.record(AttemptFinished(path="w", at=now + number, attempt=number, started_at=now,
                                       outcome=outcome, error=None, code=code))  # fmt: skip
    assert journal.flush()
    assert journal.close() == 0
    out = _history(tmp_path, "w")
    assert out.returncode == 0, out.stderr
    shown = [line.split("  ", 2)[2] for line in out.stdout.splitlines()]
    assert shown == [
        "attempt 1 stopped (SIGTERM)",
        "attempt 2 failed (SIGHUP)",
        "attempt 3 failed (signal 99)",
        "attempt 4 failed (3)",
        "attempt 5 failed (SIGRTMIN+1)",  # as `jobvisor signal` says it
    ]
    out = _history(tmp_path, "w", "--json")
    assert [row["code"] for row in json.loads(out.stdout)] == [
        -15,
        -1,
        -99,
        3,
        -signal.SIGRTMIN - 1,
    ]


SLOW_STOP = """
version: 1
jobs:
  - {name: slow, service: true, command: [sh, -c, "trap '' TERM INT; sleep 100"], stop: {grace: 60s}}
"""
QUICK_STOP = """
version: 1
jobs:
  - {name: slow, service: true, command: [sleep, "100"]}
"""


def test_a_start_beside_a_daemon_still_stopping_says_so_and_its_stop_has_its_pid(
    tmp_path: Path,
) -> None:
    """Its lock deleted, a daemon stops (here for a job's long grace) while a second one starts
    on the same state dir: the second's start row says the first is still stopping, not that
    it was killed; the first's stop row, written later, has its pid, and a third start, once
    both stopped, says nothing of a previous one."""
    first = start_daemon(tmp_path, SLOW_STOP, "--runtime", RUNTIME)
    try:
        (first.state / "daemon.lock").unlink()
        first.wait_notify("STOPPING=1")
        second = start_daemon(tmp_path, QUICK_STOP, "--runtime", RUNTIME)
    except BaseException:
        stop_daemon(first)
        raise
    try:

        def starts() -> list[dict[str, Any]]:
            return [row["detail"] for row in _daemon_rows(second) if row["kind"] == "daemon_start"]

        wait_until(lambda: len(starts()) == 2, "the second start journaled", proc=second.proc)
        assert starts()[1]["previous"] == (
            f"the daemon before (pid {first.proc.pid}) has journaled no stop yet: it is still "
            "running (stopping, as one that lost its state dir's lock does)"
        )
        first.proc.send_signal(signal.SIGINT)  # a second stop: forced, its jobs killed
        first.proc.communicate(timeout=30)
    finally:
        stop_daemon(first)
        assert stop_daemon(second) == 0
    stops = [row["detail"] for row in _daemon_rows(second) if row["kind"] == "daemon_stop"]
    assert sorted(row["pid"] for row in stops) == sorted([first.proc.pid, second.proc.pid])
    third = start_daemon(tmp_path, QUICK_STOP, "--runtime", RUNTIME)
    try:
        wait_until(
            lambda: sum(row["kind"] == "daemon_start" for row in _daemon_rows(third)) == 3,
            "the third start journaled",
            proc=third.proc,
        )
        last = [row for row in _daemon_rows(third) if row["kind"] == "daemon_start"][-1]
        assert last["detail"]["pid"] == third.proc.pid
        assert "previous" not in last["detail"]
    finally:
        assert stop_daemon(third) == 0


def test_a_pid_that_went_to_a_newer_process_is_not_taken_for_the_daemon_before() -> None:
    # A container soon reuses a killed daemon's small pid: a process that started after the
    # start row was journaled is not that daemon (it said "still running", not "killed").
    from supervision._daemon import _started_after

    before = time.time() - 60
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert _started_after(child.pid, before)
        assert not _started_after(child.pid, time.time() + 60)
        assert not _started_after(os.getpid(), time.time())
    finally:
        child.kill()
        child.wait()
    assert not _started_after(child.pid, before)  # gone: /proc cannot tell


def test_a_command_killed_past_its_grace_says_sigkill_and_no_error_everywhere(
    tmp_path: Path,
) -> None:
    """Its history said `killed` with no code and the error "Kill: ... was killed" where its
    status said no error (h246): the SIGKILL is the stop's own, as SPEC §2 has it."""
    manifest = """
    version: 1
    jobs:
      - name: stubborn
        service: true
        command: [sh, -c, "trap '' TERM; echo up > up; while true; do sleep 0.05; done"]
        stop: {grace: 0.3s}
    """
    running = start_daemon(tmp_path, manifest)
    try:
        wait_until((tmp_path / "up").exists, "stubborn ignores TERM", proc=running.proc)
        stop = running.cli("stop", "stubborn")
        assert stop.returncode == 0, stop.stderr
        # Killed by its own thread's deadline or by the supervisor's kill, whichever came
        # first at the grace's end: `killed` either way (the first was `stopped (SIGKILL)`).
        last = running.nodes()["stubborn"]["last_exit"]
        assert (last["outcome"], last["code"], last["error"]) == ("killed", -9, None), last
        rows = wait_until(
            lambda: [r for r in _json_history(running, "stubborn") if r["type"] == "attempt"],
            "stubborn's attempt in the journal",
        )
        assert (rows[-1]["outcome"], rows[-1]["code"], rows[-1].get("error")) == (
            "killed",
            -9,
            None,
        ), rows[-1]
        shown = running.cli("history", "stubborn").stdout
        assert "attempt 1 killed (SIGKILL)" in shown, shown
    finally:
        assert stop_daemon(running) == 0


FAILS_FINALLY = """
version: 1
supervisor: {backoff: {initial: 1ms, max: 5ms}}
jobs:
  - {name: svc, service: true, command: [sleep, "100"]}
  - {name: tick2, command: "exit 1", every: 200ms, times: 2}
  - {name: temp, command: "exit 1", restart: temporary}
"""


def test_a_failure_no_restart_follows_is_a_decision_in_the_journal(tmp_path: Path) -> None:
    """`temp: failed finally (temporary)` and `tick2: failed finally (its 2 ticks, times: 2,
    are run)` were logged but not journaled: history showed the failed attempt and nothing
    saying no restart follows (SPEC §6: every decision)."""
    with _daemon(tmp_path, FAILS_FINALLY) as running:

        def finals() -> list[dict[str, Any]]:
            rows = read_history(journal_path(running.state), None, 500)
            return [row for row in rows if row.get("kind") == "failed_finally"]

        wait_until(lambda: len(finals()) == 2, "both failures journaled", proc=running.proc)
        tick2 = _json_history(running, "tick2")
        assert [(row["type"], row.get("kind", row.get("outcome"))) for row in tick2] == [
            ("attempt", "failed"),
            ("decision", "restart"),
            ("attempt", "failed"),
            ("decision", "failed_finally"),
        ], tick2
        assert tick2[-1]["detail"] == {"reason": "its 2 ticks, times: 2, are run"}
        temp = _json_history(running, "temp")
        assert [row.get("kind", row.get("outcome")) for row in temp] == [
            "failed",
            "failed_finally",
        ], temp
        assert temp[-1]["detail"] == {"reason": "temporary"}
        text = running.cli("history", "temp")
        assert text.returncode == 0, text.stderr
        assert [line.split("  ", 1)[1] for line in text.stdout.splitlines()] == [
            "temp  attempt 1 failed (1): command exit 1 exited with 1",
            "temp  failed_finally (reason=temporary)",
        ], text.stdout
        api = requests.get(running.http.url + "/api/history?job=tick2", timeout=30).json()
        assert api[-1]["kind"] == "failed_finally"
        assert api[-1]["detail"] == {"reason": "its 2 ticks, times: 2, are run"}


ROOT_RESTARTS = """
version: 1
supervisor:
  strategy: one_for_all
  backoff: {initial: 0s, max: 0s, jitter: 0}
jobs:
  - {name: ok, command: "true"}
  - {name: bad, command: "test -e once || { touch once; exit 1; }"}
"""


def test_the_roots_decisions_say_root_and_the_run_says_it_ended(tmp_path: Path) -> None:
    """A root one_for_all restart showed `(daemon)  restart ...` in a `run`'s history, where no
    daemon was; a run's start is `(run)`, and so is its end."""
    (tmp_path / "jobs.yaml").write_text(ROOT_RESTARTS)
    ran = subprocess.run(
        [*CLI, "run", "--runtime", RUNTIME],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    shown = subprocess.run(
        [*CLI, "history"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    tree = [line.split("  ", 1)[1] for line in shown.stdout.splitlines() if "  (" in line]
    version = jobvisor_version()
    assert tree == [
        (
            f"(run)  run_start (pid={ran_pid(tmp_path)}, version={version}, "
            f"manifest={tmp_path / 'jobs.yaml'}, resume=False)"
        ),
        "(root)  restart (delay=0s, number=1)",
        f"(run)  run_end (pid={ran_pid(tmp_path)}, code=0)",
    ], shown.stdout


def ran_pid(tmp_path: Path) -> int:
    """The pid of the run whose start the journal in ``tmp_path`` holds last."""
    rows = read_history(journal_path(tmp_path / ".jobvisor"), None, 500)
    (start,) = [row for row in rows if row.get("kind") == "run_start"][-1:]
    pid: int = start["detail"]["pid"]
    return pid


LONG_RUN = """
version: 1
jobs:
  - {name: long, python: "time:sleep", args: [100]}
"""
SHORT_RUN = 'version: 1\njobs:\n  - {name: o, command: ["true"]}\n'


def _killed_run(tmp_path: Path) -> tuple[int, float]:
    """A `run` SIGKILLed once its start is journaled: its pid and its last row's time."""
    (tmp_path / "long.yaml").write_text(LONG_RUN)
    jv = Jobvisor(tmp_path, "run", "--runtime", RUNTIME, "long.yaml")
    try:
        db = journal_path(tmp_path / ".jobvisor")

        def started() -> bool:
            try:
                return bool(read_history(db, None, 10))
            except JournalError:  # not made yet, or its tables not yet
                return False

        wait_until(started, "its start journaled", proc=jv.proc)
        last = read_history(db, None, 10)[-1]["at"]
        jv.proc.send_signal(signal.SIGKILL)
        assert jv.wait() == -signal.SIGKILL
    finally:
        jv.close()
    return jv.pid, last


def test_the_run_after_a_killed_run_says_so_and_journals_it(tmp_path: Path) -> None:
    """A SIGKILLed `run` left its run_start and nothing else: the next run said nothing,
    where the daemon after a killed daemon says so."""
    pid, last = _killed_run(tmp_path)
    (tmp_path / "short.yaml").write_text(SHORT_RUN)
    ran = subprocess.run(
        [*CLI, "run", "--runtime", RUNTIME, "short.yaml"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    shown = datetime.fromtimestamp(last).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    warnings = [line for line in ran.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, ran.stderr
    assert warnings[0].endswith(
        f"the run before (pid {pid}) journaled no end: it was killed, or its machine went "
        f"down, after {shown} (its last journal row); what it had running then has no row "
        "(the journal has each attempt once it ends)"
    ), warnings
    rows = read_history(journal_path(tmp_path / ".jobvisor"), None, 500)
    tree = [(row["kind"], row["detail"]) for row in rows if row["path"] == ""]
    (_, first), (_, second), (_, end) = tree
    assert [kind for kind, _ in tree] == ["run_start", "run_start", "run_end"]
    assert "previous" not in first
    assert second["previous"] == (
        f"the run before (pid {pid}) journaled no end: it was killed, or its machine went down"
    )
    assert end == {"pid": second["pid"], "code": 0}
    # The run after one that ended says nothing of it.
    again = subprocess.run(
        [*CLI, "run", "--runtime", RUNTIME, "short.yaml"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "WARNING" not in again.stderr, again.stderr
    rows = read_history(journal_path(tmp_path / ".jobvisor"), None, 500)
    assert "previous" not in [row for row in rows if row["path"] == ""][-2]["detail"]


def test_the_daemon_after_a_killed_run_says_so(tmp_path: Path) -> None:
    pid, _ = _killed_run(tmp_path)
    with _daemon(tmp_path) as running:
        wait_until(
            lambda: any(row["kind"] == "daemon_start" for row in _daemon_rows(running)),
            "its start journaled",
            proc=running.proc,
        )
        (start,) = [row for row in _daemon_rows(running) if row["kind"] == "daemon_start"]
        assert start["detail"]["previous"] == (
            f"the run before (pid {pid}) journaled no end: it was killed, or its machine went down"
        )
