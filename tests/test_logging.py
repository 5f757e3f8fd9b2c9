"""Logging: levels, text and JSON lines, rotation, stdlib routing, secret masking, failures.

Every test writes real files under ``tmp_path``; time rotation runs on an
injected clock, so nothing sleeps.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import actorkit
import jobfuncs
import logbook
import pytest
from clockkit import ManualClock

import supervision._supervisor
from supervision import (
    ActorSpec,
    Backoff,
    Intensity,
    RestartPolicy,
    SpecError,
    SupervisorSpec,
    load_manifest,
    python_job,
)
from supervision._logging import (
    LOGGERS,
    LoggingSetupError,
    SecretMasker,
    configure_logging,
)
from supervision._spec import LEVELS, LoggingSpec, RotateSpec

ALL = ("TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
EXPECTED = {
    "none": set(),
    "error": {"ERROR", "CRITICAL"},
    "warning": {"WARNING", "ERROR", "CRITICAL"},
    "information": {"INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"},
    "debug": {"DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"},
    "verbose": set(ALL),
}
SECRET = "hunter2-s3cret"


class CountingLogger(logbook.Logger):
    """A jobvisor-style Logger that counts the records it creates."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.created = 0

    def make_record_and_handle(self, *args: Any) -> None:
        self.created += 1
        super().make_record_and_handle(*args)


@pytest.fixture
def jv_log() -> Iterator[CountingLogger]:
    """A Logger that belongs to jobvisor's group, like the module loggers do."""
    logger = CountingLogger("supervision.test")
    LOGGERS.add_logger(logger)
    yield logger
    LOGGERS.remove_logger(logger)


def emit_every_level(logger: logbook.Logger) -> None:
    for name in ALL:
        logger.log(name, "at {}", name)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(path)]


def handler_stack() -> list[logbook.Handler]:
    return list(logbook.Handler.stack_manager.iter_context_objects())


# -- levels --------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_writes_from_its_threshold(tmp_path, jv_log, level) -> None:
    log_file = tmp_path / "jv.log"
    outsider = logbook.Logger("thirdparty")  # not in jobvisor's group: filtered by the handler
    with configure_logging(LoggingSpec(level=level, file=str(log_file), format="json")):
        emit_every_level(jv_log)
        emit_every_level(outsider)
    records = json_lines(log_file)
    for channel, logger in (("supervision.test", jv_log), ("thirdparty", outsider)):
        written = {r["level"] for r in records if r["channel"] == channel}
        assert written == EXPECTED[level], (channel, logger)
    if level == "none":
        assert not log_file.exists(), "level none must not even create the file"


def test_none_and_filtered_calls_create_no_record(tmp_path, jv_log) -> None:
    processed: list[str] = []
    counter = logbook.Processor(lambda record: processed.append(record.channel))
    counter.push_application()
    try:
        with configure_logging(LoggingSpec(level="none", file=str(tmp_path / "x.log"))):
            for _ in range(100):
                jv_log.info("not even built {}", object())
                jv_log.error("nor this")
                supervision._supervisor.log.error("nor a real module's record")
            assert jv_log.created == 0
            assert supervision._supervisor.log.disabled
        assert processed == []

        with configure_logging(LoggingSpec(level="warning"), stream=io.StringIO()):
            for _ in range(100):
                jv_log.info("below the level")
                jv_log.debug("below the level")
            assert jv_log.created == 0
            assert supervision._supervisor.log.level == logbook.WARNING
            jv_log.warning("this one is built")
            assert jv_log.created == 1
            assert not logging.getLogger("urllib3").isEnabledFor(logging.INFO)
        assert processed == ["supervision.test"]
    finally:
        counter.pop_application()


def test_level_and_file_overrides_and_path_resolution(tmp_path, monkeypatch) -> None:
    manifest_dir = tmp_path / "project"
    cwd = tmp_path / "cwd"
    manifest_dir.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    log = logbook.Logger("supervision.test")
    spec = LoggingSpec(level="error", file="logs/jv.log")

    with configure_logging(spec, base_dir=manifest_dir) as setup:
        log.error("from the manifest's directory")
    assert setup.path == manifest_dir / "logs" / "jv.log"
    assert "from the manifest's directory" in (manifest_dir / "logs" / "jv.log").read_text()

    with configure_logging(spec, level="debug", file="cli.log", base_dir=manifest_dir) as setup:
        log.debug("from the command line")
    assert (setup.level, setup.path) == ("debug", cwd / "cli.log")
    assert "from the command line" in (cwd / "cli.log").read_text()

    stream = io.StringIO()
    with configure_logging(spec, file="-", stream=stream, base_dir=manifest_dir) as setup:
        log.error("to the stream")
    assert setup.path is None
    assert "to the stream" in stream.getvalue()

    with pytest.raises(SpecError, match=r"logging\.level"):
        configure_logging(spec, level="loud")


def test_without_a_file_records_go_to_stderr(capsys) -> None:
    with configure_logging(LoggingSpec(level="information")):
        logbook.Logger("supervision.test").info("on stderr")
    err = capsys.readouterr().err
    assert re.search(r"INFO +supervision\.test: on stderr$", err, re.MULTILINE)


# -- formats -------------------------------------------------------------------------------------


def test_text_lines_carry_time_level_channel_message_path_and_attempt(tmp_path) -> None:
    log_file = tmp_path / "jv.log"
    log = logbook.Logger("supervision")
    with configure_logging(LoggingSpec(level="debug", file=str(log_file))):
        log.info("etl/load: started", extra={"path": "etl/load", "attempt": 3})
        log.debug("no child here")
        log.warning("two\nlines", extra={"path": "w.0", "note": "has spaces"})
        try:
            raise ValueError("bad input")
        except ValueError:
            log.exception("etl/load: failed", extra={"path": "etl/load", "attempt": 4})
    text = log_file.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
    assert re.fullmatch(
        stamp + r" INFO     supervision: etl/load: started \[path=etl/load attempt=3\]", text[0]
    )
    assert re.fullmatch(stamp + r" DEBUG    supervision: no child here", text[1])
    assert re.fullmatch(stamp + r" WARNING  supervision: two", text[2])
    assert text[3] == '    lines [path=w.0 note="has spaces"]'
    assert re.fullmatch(
        stamp + r" ERROR    supervision: etl/load: failed \[path=etl/load attempt=4\]", text[4]
    )
    assert text[5] == "    Traceback (most recent call last):"
    assert text[-1] == "    ValueError: bad input"
    # every record starts at column 0; continuation lines are indented
    assert all(re.match(stamp, line) or line.startswith("    ") for line in text)


def test_json_lines_parse_and_carry_every_field(tmp_path) -> None:
    log_file = tmp_path / "jv.json"
    log = logbook.Logger("actors.job")
    with configure_logging(LoggingSpec(level="information", file=str(log_file), format="json")):
        log.info("w.0: tick skipped", extra={"path": "w.0", "attempt": 7, "count": 2})
        log.notice("plain")
        try:
            raise KeyError("missing")
        except KeyError:
            log.exception("w.0: crashed", extra={"path": "w.0", "attempt": 8})
    first, second, third = json_lines(log_file)
    assert first["channel"] == "actors.job"
    assert (first["level"], first["message"]) == ("INFO", "w.0: tick skipped")
    assert (first["path"], first["attempt"], first["count"], first["exception"]) == (
        "w.0",
        7,
        2,
        None,
    )
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
    assert abs(datetime.fromisoformat(first["time"]) - datetime.now(UTC)) < timedelta(minutes=5)
    assert (second["level"], second["path"], second["attempt"]) == ("NOTICE", None, None)
    assert third["level"] == "ERROR"
    assert third["exception"].startswith("Traceback (most recent call last):")
    assert third["exception"].endswith("KeyError: 'missing'")


def test_a_log_call_that_cannot_be_formatted_is_still_written(tmp_path, capsys) -> None:
    log_file = tmp_path / "jv.log"
    with configure_logging(LoggingSpec(level="information", file=str(log_file))):
        logbook.Logger("supervision").info("{} and {}", "only one")
    assert "{} and {} (this log call could not be formatted: TypeError)" in log_file.read_text()
    assert capsys.readouterr().err == ""


def test_a_real_tree_logs_its_decisions_with_path_and_attempt(tmp_path, make_tree, events) -> None:
    log_file = tmp_path / "tree.json"
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.002, jitter=0), intensity=Intensity(max_restarts=1)
    )
    spec = SupervisorSpec(policy=policy, children=(python_job("f", "jobfuncs:fail", "f"),))
    with configure_logging(LoggingSpec(level="debug", file=str(log_file), format="json")):
        tree = make_tree(spec, on_event=events)
        events.reached("f", "gave_up")
        assert tree.stop(timeout=20)
    assert jobfuncs.CALLS["f"] == 2
    about_f = [r for r in json_lines(log_file) if r["path"] == "f"]
    failures = [r for r in about_f if r["level"] == "ERROR" and "failed on call" in r["message"]]
    assert [r["attempt"] for r in failures] == [1, 2]
    assert any("gave up" in r["message"] for r in about_f)
    assert {r["channel"] for r in about_f} <= {"supervision", "actors.job"}


def test_a_thread_jobs_own_logging_names_its_path_and_attempt(tmp_path, make_tree) -> None:
    # Its records came without them, where a child process's lines had them (h249, SPEC §5).
    log_file = tmp_path / "tree.json"
    spec = SupervisorSpec(children=(python_job("j", "jobfuncs:log_stdlib", "j"),))
    with configure_logging(LoggingSpec(level="information", file=str(log_file), format="json")):
        tree = make_tree(spec)
        assert tree.wait(20)
        logging.getLogger("myjob").warning("not a job's")
        assert tree.stop(timeout=20)
    records = {r["message"]: r for r in json_lines(log_file) if r["channel"] == "myjob"}
    said = records["the job says j"]
    assert (said["path"], said["attempt"]) == ("j", 1)
    assert records["not a job's"].get("path") is None


def test_a_restart_at_information_writes_its_failure_and_its_decision_once_each(
    make_tree,
) -> None:
    stream = io.StringIO()
    policy = RestartPolicy(
        backoff=Backoff(initial=0, max=0, jitter=0), intensity=Intensity(max_restarts=100)
    )
    child = ActorSpec(name="c", actor_class=actorkit.Recorder, args=("c", actorkit.Journal()))
    # two crashes: the crash-loop damper writes every line around a burst's first ones
    with configure_logging(LoggingSpec(level="information"), stream=stream):
        tree = make_tree(SupervisorSpec(policy=policy, children=(child,)))
        assert tree.started(timeout=20)
        ref = tree.ref("c")
        for n in (2, 3):
            ref.tell("crash")
            assert ref.ask("ping", timeout=20)[2] == n
        assert tree.stop(timeout=20)
    about_c = [line for line in stream.getvalue().splitlines() if "[path=c" in line]
    lines = stream.getvalue().splitlines()
    crashes = [line for line in lines if "c: failed (start" in line]
    assert len(crashes) == 2, about_c  # one record per crash, at one level
    assert all(" ERROR " in line and "c crashed" in line for line in crashes)
    # its traceback below each, the actor's own frames (the record's last line ends it)
    assert len([line for line in about_c if line.startswith("    RuntimeError: c crashed")]) == 2
    restarts = [line for line in about_c if re.search(r"c: restart \d in 0\.000s", line)]
    assert len(restarts) == 2
    # "started" once: a restart's decision already says it comes back, and when
    assert [line for line in about_c if ": started" in line] == [
        next(line for line in about_c if "c: started (start 1)" in line)
    ]


def test_a_failed_attempt_that_ends_the_child_is_said_once_by_the_exit(
    make_tree, events, logs
) -> None:
    # A once job's failure is the child's, and so is a periodic job's failed tick (it ends
    # the incarnation, which its policy restarts): the exit's ERROR record says it, and the
    # same crash is not logged twice at two levels (a tick's was a WARNING, then the ERROR).
    from supervision import Schedule, StateChanged

    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    ticking = python_job("p", "jobfuncs:fail", "p", schedule=Schedule(every=0.01, times=1))
    once = python_job("o", "jobfuncs:fail", "o")
    tree = make_tree(SupervisorSpec(policy=policy, children=(ticking, once)), on_event=events)
    events.wait_for(
        lambda items: (
            {
                e.path
                for e in items
                if isinstance(e, StateChanged) and e.new.value in ("failed", "gave_up")
            }
            >= {"p", "o"}
        )
    )
    assert tree.stop(timeout=20)

    def attempt_records(path: str) -> list[str]:
        return [
            r.level_name for r in logs.records if r.message.startswith(f"{path}: attempt 1 failed")
        ]

    assert attempt_records("p") == ["DEBUG"]
    assert attempt_records("o") == ["DEBUG"]
    for path in ("p", "o"):
        errors = [r for r in logs.records if r.message.startswith(f"{path}: failed (attempt 1)")]
        assert [r.level_name for r in errors] == ["ERROR"], path


def test_a_disabled_level_costs_no_check_and_comes_back_when_logging_stops() -> None:
    log = supervision._supervisor.log
    with configure_logging(LoggingSpec(level="warning"), stream=io.StringIO()):
        assert vars(log)["info"] is vars(log)["trace"]  # the one no-op
        assert "warning" not in vars(log)
    assert "info" not in vars(log)
    with configure_logging(LoggingSpec(level="none"), stream=io.StringIO()):
        assert "critical" in vars(log)
    assert "critical" not in vars(log)


def test_state_transitions_at_verbose_name_the_childs_path(tmp_path, make_tree, events) -> None:
    log_file = tmp_path / "tree.json"
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    spec = SupervisorSpec(policy=policy, children=(python_job("f", "jobfuncs:fail", "t"),))
    with configure_logging(LoggingSpec(level="verbose", file=str(log_file), format="json")):
        tree = make_tree(spec, on_event=events)
        events.reached("f", "gave_up")
        assert tree.stop(timeout=20)
    transitions = [r for r in json_lines(log_file) if " -> " in r["message"]]
    assert [r["message"] for r in transitions] == [
        "f: pending -> starting",
        "f: starting -> running",
        "f: running -> gave_up",
    ]
    assert {r["path"] for r in transitions} == {"f"}
    failure = next(r for r in json_lines(log_file) if r.get("failure"))
    assert failure["path"] == "f"
    assert failure["failure"] in failure["message"]


# -- rotation ------------------------------------------------------------------------------------


def test_size_rotation_keeps_at_most_backups_files_and_loses_no_recent_record(tmp_path) -> None:
    log_file = tmp_path / "jv.log"
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(max_bytes=400, backups=2)
    )
    log = logbook.Logger("supervision")
    with configure_logging(spec):
        for n in range(60):
            log.info("record {:03d}", n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jv.log", "jv.log.1", "jv.log.2"]
    for path in tmp_path.iterdir():
        assert 0 < path.stat().st_size <= 400
    kept = [
        int(line.rsplit(" ", 1)[1])
        for name in ("jv.log.2", "jv.log.1", "jv.log")
        for line in lines(tmp_path / name)
    ]
    assert kept == list(range(60 - len(kept), 60)), "the kept records are the latest, in order"


def test_size_rotation_with_no_backups_truncates_and_stale_backups_go(tmp_path) -> None:
    log_file = tmp_path / "jv.log"
    (tmp_path / "jv.log.1").write_text("from a run that kept backups\n")
    (tmp_path / "jv.log.9").write_text("older still\n")
    (tmp_path / "jv.log.keep").write_text("not ours\n")
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(max_bytes=200, backups=0)
    )
    with configure_logging(spec):
        for n in range(20):
            logbook.Logger("supervision").info("record {:03d}", n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jv.log", "jv.log.keep"]
    assert lines(log_file)[-1].endswith("record 019")
    assert log_file.stat().st_size <= 200


NOBODY = 65534


def records_in(path: Path) -> list[int]:
    return [int(line.rsplit(" ", 1)[1]) for line in lines(path) if " record " in line]


@pytest.mark.skipif(os.geteuid() != 0, reason="plays a second user with chown")
def test_a_backup_of_another_user_stops_the_rotation_and_no_record_is_dropped(
    tmp_path, capsys
) -> None:
    # /tmp as a shared sticky directory: nobody planted x.log.1 (a non-root jobvisor's rename
    # of it fails, root's would destroy it) and left an x.log.9 behind (root unlinked it).
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    log_file = shared / "x.log"
    planted = shared / "x.log.1"
    stale = shared / "x.log.9"
    for theirs in (planted, stale):
        theirs.write_text("theirs\n")
        os.chown(theirs, NOBODY, NOBODY)
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(max_bytes=400, backups=2)
    )
    log = logbook.Logger("supervision")
    clock = ManualClock()
    with configure_logging(spec, monotonic=clock):
        for n in range(30):
            log.info("record {:03d}", n)
        err = capsys.readouterr().err
        assert records_in(log_file) == list(range(30)), "every record is in the file written on"
        said = (
            f"cannot rotate the log file {log_file}: its backup {planted} is owned by nobody "
            "(uid 65534), not by root (uid 0) who runs jobvisor, and jobvisor never removes "
            "nor replaces another user's file; remove it (its owner or root can), or give the "
            f"log file a directory of its own; until then {log_file} is written on, unrotated "
            f"(tried again once {planted} changes)"
        )
        assert err.count("cannot rotate") == 1, err
        assert said in err
        in_file = [line for line in lines(log_file) if "cannot rotate" in line]
        assert len(in_file) == 1, in_file  # a detached daemon's stderr is /dev/null
        assert "WARNING" in in_file[0]
        assert said in in_file[0]
        assert "cannot write" not in err

        planted.unlink()  # its owner takes it away: the next write a second on rotates
        clock.advance(1)
        log.info("record {:03d}", 30)
    assert sorted(p.name for p in shared.iterdir()) == ["x.log", "x.log.1", "x.log.9"]
    assert records_in(shared / "x.log.1") == list(range(30))
    assert records_in(log_file) == [30]
    assert f"the log file {log_file} rotates again: {planted} no longer stops it" in (
        log_file.read_text()
    )
    assert stale.read_text() == "theirs\n"
    assert stale.stat().st_uid == NOBODY


def test_a_rotation_step_that_fails_names_its_file_and_the_log_goes_on(tmp_path, capsys) -> None:
    log_file = tmp_path / "x.log"
    blocker = tmp_path / "x.log.1"  # a directory where the first backup goes: the rename fails
    blocker.mkdir()
    (blocker / "inside").write_text("")
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(max_bytes=300, backups=1)
    )
    with configure_logging(spec):
        for n in range(20):
            logbook.Logger("supervision").info("record {:03d}", n)
    err = capsys.readouterr().err
    assert err.count("cannot rotate") == 1, err
    assert (
        f"cannot rotate the log file {log_file}: cannot move {log_file} to {blocker}: "
        f"Is a directory; move {blocker} out of the way, or give the log file a directory of "
        f"its own; until then {log_file} is written on, unrotated (tried again once {blocker} "
        "changes)"
    ) in err
    assert records_in(log_file) == list(range(20))
    assert (blocker / "inside").exists()


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """``directory`` takes no new name, nor loses one: 0555 for a user; for root, whom no
    mode stops, made immutable (``chattr +i``), which the kernel refuses root too."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        undo = functools.partial(directory.chmod, 0o755)
    else:
        made = subprocess.run(
            ["chattr", "+i", str(directory)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            pytest.skip(f"root writes any directory, and chattr +i failed: {made.stderr.strip()}")
        undo = functools.partial(subprocess.run, ["chattr", "-i", str(directory)], check=True)
    try:
        yield
    finally:
        undo()


def test_a_directory_that_cannot_be_written_is_named_as_what_stops_the_rotation(
    tmp_path, capsys
) -> None:
    """The rename's failure blamed its destination (``x.log.1``, absent) and said to move it
    out of the way, for a directory jobvisor cannot write (review)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log_file = logs / "x.log"
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(max_bytes=300, backups=2)
    )
    with configure_logging(spec):
        logbook.Logger("supervision").info("record {:03d}", 0)
        with unwritable(logs):
            for n in range(1, 20):
                logbook.Logger("supervision").info("record {:03d}", n)
    err = capsys.readouterr().err
    assert err.count("cannot rotate") == 1, err
    denied = "Operation not permitted" if os.geteuid() == 0 else "Permission denied"
    assert (
        f"cannot rotate the log file {log_file}: its directory {logs} cannot be written "
        f"({denied}); let the user jobvisor runs as write {logs} (its mode, owner, a read-only mount or "
        f"an immutable flag may stop it), or give the log file a directory it can write; until "
        f"then {log_file} is written on, unrotated (tried again once {logs} can be written)"
    ) in err, err
    assert f"{log_file}.1" not in err
    assert records_in(log_file) == list(range(20))
    assert sorted(p.name for p in logs.iterdir()) == ["x.log"]


def test_a_held_rotation_is_looked_at_again_once_a_second_and_done_once_it_can_be(
    tmp_path, capsys
) -> None:
    """Each write of a held rotation cost three stat calls (14-23 us) to ask whether its
    blocker went: now once a second, on the setup's monotonic clock."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log_file = logs / "x.log"
    clock = ManualClock()
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(max_bytes=300, backups=2)
    )
    log = logbook.Logger("supervision")
    with configure_logging(spec, monotonic=clock):
        log.info("record {:03d}", 0)
        with unwritable(logs):
            for n in range(1, 20):
                log.info("record {:03d}", n)
        # The directory can be written again: not looked at before a second is out.
        log.info("record {:03d}", 20)
        clock.advance(0.5)
        log.info("record {:03d}", 21)
        assert sorted(p.name for p in logs.iterdir()) == ["x.log"]
        clock.advance(0.5)
        log.info("record {:03d}", 22)
        assert sorted(p.name for p in logs.iterdir()) == ["x.log", "x.log.1"]
    assert records_in(logs / "x.log.1") == list(range(22))
    assert records_in(log_file) == [22]
    said = f"the log file {log_file} rotates again: {logs} no longer stops it"
    assert said in capsys.readouterr().err
    assert said in log_file.read_text()


def test_hourly_rotation_follows_the_injected_clock(tmp_path) -> None:
    log_file = tmp_path / "jv.log"
    clock = ManualClock(epoch=datetime(2024, 5, 1, 10, 15, tzinfo=UTC))
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(when="hourly", backups=3)
    )
    log = logbook.Logger("supervision")
    with configure_logging(spec, now=clock.datetime):
        log.info("a")
        clock.advance(minutes=44, seconds=59.999)  # 10:59:59.999
        log.info("b")
        clock.advance(seconds=0.001)  # 11:00
        log.info("c")
        clock.advance(hours=5)  # several hours on: one rotation, not five
        log.info("d")
        for _ in range(4):
            clock.advance(hours=1)
            log.info("e")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "jv.log",
        "jv.log.1",
        "jv.log.2",
        "jv.log.3",
    ]

    def messages(name: str) -> list[str]:
        return [line.rsplit(": ", 1)[1] for line in lines(tmp_path / name)]

    assert messages("jv.log") == ["e"]
    assert messages("jv.log.1") == ["e"]
    assert messages("jv.log.2") == ["e"]
    assert messages("jv.log.3") == ["e"]  # a, b, c and d rotated away: 3 backups at most


def test_daily_rotation_at_midnight(tmp_path) -> None:
    log_file = tmp_path / "jv.log"
    clock = ManualClock(epoch=datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC))
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(when="daily", backups=5)
    )
    log = logbook.Logger("supervision")
    with configure_logging(spec, now=clock.datetime):
        log.info("may first")
        clock.advance(hours=12)
        log.info("may second, noon")
        clock.advance(hours=11, minutes=59)
        log.info("may second, late")
        clock.advance(minutes=2)
        log.info("may third")
    assert [line.rsplit(": ", 1)[1] for line in lines(tmp_path / "jv.log.2")] == ["may first"]
    assert [line.rsplit(": ", 1)[1] for line in lines(tmp_path / "jv.log.1")] == [
        "may second, noon",
        "may second, late",
    ]
    assert [line.rsplit(": ", 1)[1] for line in lines(log_file)] == ["may third"]


def test_size_and_time_together_rotate_on_whichever_comes_first(tmp_path) -> None:
    log_file = tmp_path / "jv.log"
    clock = ManualClock(epoch=datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    spec = LoggingSpec(
        level="information",
        file=str(log_file),
        rotate=RotateSpec(max_bytes=300, when="hourly", backups=20),
    )
    log = logbook.Logger("supervision")
    with configure_logging(spec, now=clock.datetime):
        log.info("small")
        clock.advance(hours=1)
        log.info("after an hour")  # time first
        for n in range(10):
            log.info("filler {:02d} {}", n, "x" * 40)  # then size, within the same hour
    files = sorted(tmp_path.iterdir(), key=lambda p: p.name)
    assert lines(tmp_path / "jv.log.1") != []
    oldest = max(int(p.name.rsplit(".", 1)[1]) for p in files if p.name != "jv.log")
    assert oldest >= 3, "size rotated too"
    assert [line.rsplit(": ", 1)[1] for line in lines(tmp_path / f"jv.log.{oldest}")] == ["small"]
    assert all(p.stat().st_size <= 300 for p in files)


def test_a_file_left_from_an_earlier_period_rotates_at_the_first_write(tmp_path) -> None:
    log_file = tmp_path / "jv.log"
    log_file.write_text("yesterday's line\n")
    yesterday = datetime(2024, 5, 1, 18, 0, tzinfo=UTC).timestamp()
    os.utime(log_file, (yesterday, yesterday))
    clock = ManualClock(epoch=datetime(2024, 5, 2, 9, 0, tzinfo=UTC))
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(when="daily", backups=1)
    )
    with configure_logging(spec, now=clock.datetime):
        logbook.Logger("supervision").info("today")
    assert lines(tmp_path / "jv.log.1") == ["yesterday's line"]
    assert lines(log_file)[0].endswith("supervision: today")


def test_the_default_clock_is_local_wall_time(tmp_path) -> None:
    log_file = tmp_path / "jv.log"
    log_file.write_text("written a moment ago\n")
    spec = LoggingSpec(
        level="information", file=str(log_file), rotate=RotateSpec(when="hourly", backups=1)
    )
    with configure_logging(spec):
        logbook.Logger("supervision").info("now")
    # unless this runs across the top of an hour, the fresh file is not rotated
    if not (tmp_path / "jv.log.1").exists():
        assert lines(log_file)[0] == "written a moment ago"
    assert lines(log_file)[-1].endswith("supervision: now")


def test_threads_logging_at_once_never_interleave_or_lose_lines(tmp_path) -> None:
    log_file = tmp_path / "jv.json"
    spec = LoggingSpec(
        level="information",
        file=str(log_file),
        format="json",
        rotate=RotateSpec(max_bytes=4000, backups=1000),
    )
    log = logbook.Logger("supervision")

    def work(worker: int) -> None:
        for n in range(100):
            log.info("line {}", n, extra={"path": f"w.{worker}", "attempt": n})

    with configure_logging(spec):
        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    records = [r for path in tmp_path.iterdir() for r in json_lines(path)]
    assert len(records) == 800
    for w in range(8):
        assert sorted(r["attempt"] for r in records if r["path"] == f"w.{w}") == list(range(100))


# -- standard-library logging --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_stdlib_logging_lands_in_the_same_file(tmp_path, fmt) -> None:
    log_file = tmp_path / "jv.log"
    with configure_logging(LoggingSpec(level="warning", file=str(log_file), format=fmt)):
        logging.getLogger("urllib3").warning("Connection pool is full, discarding %s", "conn")
        logging.getLogger("urllib3").info("below the level")
        logging.getLogger("pykka").error("actor %(name)s crashed", {"name": "A"})
        logging.getLogger("requests").warning("with extra", extra={"path": "api/get"})
        logbook.Logger("supervision").warning("ours")
    text = log_file.read_text()
    assert "below the level" not in text
    if fmt == "json":
        records = json_lines(log_file)
        assert [(r["channel"], r["level"], r["message"]) for r in records] == [
            ("urllib3", "WARNING", "Connection pool is full, discarding conn"),
            ("pykka", "ERROR", "actor A crashed"),
            ("requests", "WARNING", "with extra"),
            ("supervision", "WARNING", "ours"),
        ]
        assert records[2]["path"] == "api/get"
        assert "taskName" not in records[0]  # stdlib's own attributes are not extras
    else:
        assert "WARNING  urllib3: Connection pool is full, discarding conn" in text
        assert "ERROR    pykka: actor A crashed" in text
        assert "WARNING  requests: with extra [path=api/get]" in text


def test_stdlib_below_debug_is_trace_at_verbose(tmp_path) -> None:
    log_file = tmp_path / "jv.json"
    with configure_logging(LoggingSpec(level="verbose", file=str(log_file), format="json")):
        logging.getLogger("pykka").log(5, "very low")
        logging.getLogger("pykka").debug("debug")
    assert [(r["level"], r["message"]) for r in json_lines(log_file)] == [
        ("TRACE", "very low"),
        ("DEBUG", "debug"),
    ]


# -- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_never_reach_the_file(tmp_path, fmt) -> None:
    log_file = tmp_path / "jv.log"
    quoted = 'pa"ss\\word'  # JSON and repr escape it
    masker = SecretMasker([SECRET, quoted])
    log = logbook.Logger("supervision")
    with configure_logging(
        LoggingSpec(level="verbose", file=str(log_file), format=fmt), masker=masker
    ) as setup:
        log.info("token is {}", SECRET)
        log.info("repr {!r} and raw {}", quoted, quoted)
        log.info("in extras", extra={"path": "api", "header": f"Bearer {SECRET}", "obj": [SECRET]})
        try:
            raise RuntimeError(f"login failed for {SECRET}")
        except RuntimeError:
            log.exception("with {}", "an exception")
        logging.getLogger("urllib3").warning("GET /?token=%s", SECRET)
        setup.masker.add("added-after-start")
        log.info("late: added-after-start")
    raw = log_file.read_bytes().decode()
    for leaked in (SECRET, quoted, json.dumps(quoted)[1:-1], repr(quoted)[1:-1]):
        assert leaked not in raw
    assert "added-after-start" not in raw
    assert raw.count("***") >= 8
    if fmt == "json":
        records = json_lines(log_file)
        assert records[0]["message"] == "token is ***"
        assert records[2]["header"] == "Bearer ***"
        assert records[3]["exception"].endswith("RuntimeError: login failed for ***")
    else:
        assert "token is ***" in raw
        assert 'header="Bearer ***"' in raw


def test_secrets_are_masked_on_the_stream_too() -> None:
    stream = io.StringIO()
    with configure_logging(
        LoggingSpec(level="information"), stream=stream, masker=SecretMasker([SECRET])
    ):
        logbook.Logger("supervision").info(SECRET)
    assert stream.getvalue().rstrip().endswith("supervision: ***")


def test_a_tree_started_under_a_setup_has_its_manifests_secrets_masked_there(
    make_tree, monkeypatch
) -> None:
    # The setup was given a LoggingSpec alone: the secrets come with the tree.
    monkeypatch.setenv("JV_TREE_TOKEN", SECRET)
    manifest = load_manifest(
        "version: 1\njobs:\n  - name: echo\n    command: 'echo token is $T'\n"
        "    env: {T: {secret: {env: JV_TREE_TOKEN}}}\n"
    )
    stream = io.StringIO()
    with configure_logging(LoggingSpec(level="information"), stream=stream):
        tree = make_tree(manifest)
        assert tree.wait(10)
        assert tree.stop(10)
    written = stream.getvalue()
    assert "echo[1] token is *** [path=echo attempt=1 stream=stdout]" in written, written
    assert SECRET not in written


@pytest.mark.parametrize(
    ("given", "got"),
    [
        (None, "None"),
        ("jobs.yaml", "a string"),
        (LoggingSpec, "the class LoggingSpec"),
        (3, "an integer"),
        (object(), "an object"),
    ],
)
def test_configure_logging_refuses_what_is_neither_a_logging_spec_nor_a_manifest(
    given: object, got: str
) -> None:
    with pytest.raises(SpecError) as caught:
        configure_logging(given)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"configure_logging takes a LoggingSpec or a Manifest (load_manifest); got {got}"
    )


class TestSecretMasker:
    def test_masks_every_occurrence_longest_first(self) -> None:
        masker = SecretMasker(["abcd", "abcdefgh"])
        assert masker.mask("x abcdefgh y abcd z") == "x *** y *** z"
        assert masker.mask("") == ""

    def test_too_short_values_are_ignored_and_reported(self) -> None:
        masker = SecretMasker()
        assert masker.add("") is False
        assert masker.add("ab ") is False
        assert masker.mask("a b ab abc") == "a b ab abc"
        assert masker.add("abcd") is True
        assert masker.mask("abcde") == "***e"

    def test_registers_the_forms_a_secret_leaks_in(self) -> None:
        pem = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END KEY-----\n"
        masker = SecretMasker([pem, "a b/c?d&e"])
        assert masker.mask("MIIBOgIBAAJBAKj34GkxFhD9") == "***"  # one line of a multi-line value
        assert masker.mask(repr(pem)) == "'***'"
        assert masker.mask("GET /?q=a%20b%2Fc%3Fd%26e") == "GET /?q=***"
        assert masker.mask("q=a+b%2Fc%3Fd%26e") == "q=***"

    def test_repr_never_shows_a_secret(self) -> None:
        masker = SecretMasker([SECRET])
        assert SECRET not in repr(masker)
        assert len(masker) > 0

    def test_add_from_many_threads(self) -> None:
        masker = SecretMasker()
        threads = [
            threading.Thread(target=masker.add, args=(f"secret-{n:03d}",)) for n in range(50)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert masker.mask(" ".join(f"secret-{n:03d}" for n in range(50))) == " ".join(["***"] * 50)


# -- failures ------------------------------------------------------------------------------------


def test_an_unopenable_file_at_start_is_a_clear_error_and_changes_nothing(tmp_path) -> None:
    before = handler_stack()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be\n")
    bad = blocker / "logs" / "jv.log"
    with pytest.raises(LoggingSetupError, match=re.escape(str(bad))) as caught:
        configure_logging(LoggingSpec(file=str(bad)))
    assert caught.value.path == bad
    assert "--log-file" in str(caught.value)

    with pytest.raises(LoggingSetupError, match=re.escape(str(tmp_path))):
        configure_logging(LoggingSpec(file=str(tmp_path)))  # a directory
    assert handler_stack() == before
    assert LOGGERS.level == logbook.NOTSET


def test_a_log_directory_replaced_by_a_file_mid_run_warns_once_and_recovers(
    tmp_path, capsys
) -> None:
    log_dir = tmp_path / "logs"
    log_file = log_dir / "jv.log"
    log = logbook.Logger("supervision")
    with configure_logging(LoggingSpec(level="information", file=str(log_file))):
        log.info("before")
        shutil.rmtree(log_dir)
        log_dir.write_text("now a file\n")
        for n in range(50):
            log.info("lost {}", n)
            log.error("lost too")
        err = capsys.readouterr().err
        assert err.count("jobvisor: cannot write the log file") == 1
        assert str(log_file) in err
        assert "dropped until it is writable again" in err

        log_dir.unlink()
        log.info("after")
        err = capsys.readouterr().err
        assert err.count("writable again; 100 log records were dropped") == 1
    written = lines(log_file)
    assert written[0].endswith("after")
    # The gap is said in the log itself too: a detached daemon's stderr is /dev/null.
    assert len(written) == 2, written
    assert " WARNING " in written[1]
    assert f"could not write the log file {log_file} from " in written[1]
    assert written[1].endswith("; 100 log records were dropped")
    assert capsys.readouterr().err == ""


def test_a_removed_log_directory_is_created_again(tmp_path, capsys) -> None:
    log_dir = tmp_path / "logs"
    log_file = log_dir / "jv.log"
    with configure_logging(LoggingSpec(level="information", file=str(log_file))):
        logbook.Logger("supervision").info("one")
        shutil.rmtree(log_dir)
        logbook.Logger("supervision").info("two")
    assert [line.rsplit(": ", 1)[1] for line in lines(log_file)] == ["two"]
    assert capsys.readouterr().err == ""


def test_a_file_moved_away_is_reopened_like_after_logrotate(tmp_path) -> None:
    log_file = tmp_path / "jv.log"
    with configure_logging(LoggingSpec(level="information", file=str(log_file))):
        logbook.Logger("supervision").info("one")
        log_file.rename(tmp_path / "jv.log.old")
        logbook.Logger("supervision").info("two")
    assert lines(tmp_path / "jv.log.old")[0].endswith("one")
    assert lines(log_file)[0].endswith("two")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_warns_once_and_the_program_goes_on(tmp_path, capsys) -> None:
    log_file = Path("/dev/full")  # itself: jobvisor never writes through a symlink
    log = logbook.Logger("supervision")
    with configure_logging(LoggingSpec(level="information", file=str(log_file))):
        for n in range(20):
            log.info("record {}", n)
            logging.getLogger("urllib3").warning("stdlib record")
    err = capsys.readouterr().err
    assert err.count("jobvisor: cannot write the log file") == 1
    assert "No space left on device" in err


def test_a_closed_stream_warns_once_and_the_program_goes_on(capsys) -> None:
    stream = io.StringIO()
    with configure_logging(LoggingSpec(level="information"), stream=stream):
        stream.close()
        for n in range(10):
            logbook.Logger("supervision").info("record {}", n)
    err = capsys.readouterr().err
    assert err.count("jobvisor: cannot write the log stream") == 1


class ExplodingStream(io.StringIO):
    def write(self, text: str) -> int:
        raise RuntimeError("not an OSError")


def test_an_unexpected_error_in_the_handler_is_reported_once(capsys) -> None:
    with configure_logging(LoggingSpec(level="information"), stream=ExplodingStream()):
        for n in range(10):
            logbook.Logger("supervision").info("record {}", n)
    err = capsys.readouterr().err
    assert err.count("jobvisor: a log record could not be written: RuntimeError") == 1


def test_close_restores_everything(tmp_path, logs) -> None:
    stack = handler_stack()
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    log = supervision._supervisor.log
    setup = configure_logging(LoggingSpec(level="error", file=str(tmp_path / "jv.log")))
    assert len(handler_stack()) == len(stack) + 2
    assert log.group is LOGGERS
    log.error("to the file")
    setup.close()
    setup.close()  # idempotent

    assert handler_stack() == stack
    assert (root.handlers, root.level) == (root_handlers, root_level)
    assert (LOGGERS.level, LOGGERS.disabled) == (logbook.NOTSET, False)
    assert log.group is None
    assert (log.level, log.disabled) == (logbook.NOTSET, False)
    log.debug("back to the test handler")
    assert logs.has_debug("back to the test handler")
    assert not logs.has_error("to the file"), "records went to the file only"


def test_every_record_about_a_child_or_group_carries_its_path(make_tree, events) -> None:
    """`jq 'select(.path == "g")'` finds a group's restarts and escalations, and a job's waits."""
    from supervision import OnExhausted, Strategy

    escalate = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001, jitter=0),
        intensity=Intensity(max_restarts=0, within=60),
        on_exhausted=OnExhausted.ESCALATE,
    )
    quick = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001, jitter=0),
        intensity=Intensity(max_restarts=1, within=60),
    )
    spec = SupervisorSpec(
        policy=quick,
        children=(
            SupervisorSpec(
                name="g",
                strategy=Strategy.ONE_FOR_ALL,
                policy=quick,
                children=(
                    python_job("a", "jobfuncs:fail_times", "paths.a", 1),
                    python_job("b", "jobfuncs:ok", "paths.b"),
                ),
            ),
            SupervisorSpec(
                name="h", policy=escalate, children=(python_job("c", "jobfuncs:fail", "paths.c"),)
            ),
        ),
    )
    stream = io.StringIO()
    with configure_logging(LoggingSpec(level="verbose", format="json"), stream=stream):
        tree = make_tree(spec, on_event=events)
        assert tree.wait(20)
        tree.stop()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    about = [
        (r["message"].split(":", 1)[0], r.get("path"), r["message"])
        for r in records
        if r["channel"].startswith("supervision") and re.match(r"[\w./-]+: ", r["message"])
    ]
    assert any(m.startswith("g: one_for_all restart of g/a, g/b") for _, _, m in about), about
    assert any(m.startswith("h: escalating") for _, _, m in about), about
    wrong = [(prefix, path, m) for prefix, path, m in about if prefix not in ("root", path)]
    assert not wrong, wrong
