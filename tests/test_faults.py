"""Faults injected into real trees and a real ``jobvisor``: hung, forking and flooding commands,
a log directory that goes away, a read-only state dir, misbehaving HTTP servers, a crash storm.

Each test shows three things besides the fault's own handling: a bystander in
the same tree keeps running and answering with its restart count unchanged;
journal rows committed before the fault are still there after it; and every
failure is in the log (the ``logs`` fixture in process, the log file or stderr
of a real ``jobvisor`` process).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import actorkit
import faultkit
import logbook
import pytest
from actorkit import Recorder
from faultkit import Jobvisor, Output, Watched, gone, read_pids, run_jobvisor, wait_until
from httpkit import HttpKit, Reply, Reset, Stall

from actors import Attempt
from actors._command import CommandWork
from supervision import (
    ActorSpec,
    AttemptFinished,
    Backoff,
    ChildExited,
    GaveUp,
    Intensity,
    JobSpec,
    Journal,
    Outcome,
    RestartPolicy,
    RestartScheduled,
    Schedule,
    StateChanged,
    SupervisorSpec,
    Tree,
    load_manifest,
    python_job,
)
from supervision._history import read_history
from supervision._table import flatten_status

MANIFESTS = Path(__file__).resolve().parent / "manifests" / "faults"
BYSTANDER = "bystander"
ONE_RESTART = RestartPolicy(
    backoff=Backoff(initial=0.01, max=0.01, jitter=0), intensity=Intensity(max_restarts=1)
)


# -- fixtures and checks shared by the scenarios ---------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A real SQLite journal; ``scene`` asks for it before ``make_tree``, so it closes last."""
    opened = Journal(tmp_path / "state")
    yield opened
    opened.close()


@pytest.fixture
def output() -> Iterator[Output]:
    handler = Output()
    with handler.applicationbound():
        yield handler


def bystander() -> ActorSpec:
    """A plain actor that answers ``ping`` with its incarnation: 1 as long as nobody restarts it."""
    Recorder.incarnations.pop(BYSTANDER, None)
    return ActorSpec(name=BYSTANDER, actor_class=Recorder, args=(BYSTANDER, actorkit.Journal()))


def node(doc: dict[str, Any], path: str) -> dict[str, Any]:
    found = [n for n in flatten_status(doc) if n["path"] == path]
    assert found, f"no {path} in the status"
    return found[0]


def assert_undisturbed(tree: Tree, path: str = BYSTANDER) -> None:
    """The bystander answers from its first incarnation and was never restarted or failed."""
    assert tree.ref(path).ask("ping", timeout=10) == ("pong", path.rsplit("/", 1)[-1], 1)
    bystanding = node(tree.status(), path)
    assert (bystanding["state"], bystanding["starts"], bystanding["restarts"]) == ("running", 1, 0)
    assert bystanding["failures"] == 0


def assert_kept(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    missing = [row for row in before if row not in after]
    assert not missing, f"journal rows lost: {missing[:5]}"


@dataclass
class Scene:
    """A tree under test with its events, its journal and the captured log records."""

    make_tree: Callable[..., Tree]
    events: Any
    journal: Journal
    logs: logbook.TestHandler

    def start(self, spec: SupervisorSpec) -> Tree:
        return self.make_tree(spec, on_event=self.events, sink=self.journal.record)

    def committed(self) -> list[dict[str, Any]]:
        """Every row the journal has committed so far, oldest first.

        The journal's sink hears of an event before any subscriber does, so
        once ``events`` has seen one, this returns its row.
        """
        assert self.journal.flush(10), "the journal did not commit in time"
        return self.journal.history(limit=1_000_000)

    def warmed_up(self) -> list[dict[str, Any]]:
        """Wait for the ``warmup`` once-job's success; return the journal committed so far."""
        self.events.reached("warmup", "succeeded")
        rows = self.committed()
        assert [r["outcome"] for r in rows if r["path"] == "warmup"] == ["succeeded"]
        return rows

    def messages(self, level: int = logbook.TRACE) -> list[str]:
        """The messages of the captured records at ``level`` and above."""
        return [r.message for r in self.logs.records if r.level >= level]

    def log_text(self) -> str:
        return "\n".join(self.messages())


@pytest.fixture
def scene(journal: Journal, make_tree: Any, events: Any, logs: logbook.TestHandler) -> Scene:
    return Scene(make_tree, events, journal, logs)


WARMUP = python_job("warmup", "jobfuncs:ok", "warmup")


# -- 1. a command that hangs (SIGSTOP) past its timeout --------------------------------------------


def test_a_stopped_command_past_its_timeout_is_killed_whole_and_restarted(
    scene: Scene, output: Output, procs: Watched
) -> None:
    # The command stops its background sleep and itself (no race with the timeout, as a
    # SIGSTOP from the test would have): only SIGKILL can end them now.
    hung = JobSpec(
        name="hung",
        work=CommandWork(shell="sleep 1000 & echo $! $$; kill -STOP $! $$; wait", grace=0.3),
        schedule=Schedule(timeout=1.5),
    )
    spec = SupervisorSpec(policy=ONE_RESTART, children=(WARMUP, bystander(), hung))
    tree = scene.start(spec)
    before = scene.warmed_up()

    grandchild, leader = map(int, output.first("hung", 1).split())
    procs.add(grandchild, leader)
    wait_until(lambda: {faultkit.proc_state(p) for p in (grandchild, leader)} == {"T"}, "stopped")

    scene.events.reached("hung", "gave_up", timeout=20)
    # A stopped process acts on no signal but SIGKILL (SIGTERM stays pending): dead means
    # the SIGKILL reached the whole group.
    assert procs.all_dead(timeout=10), "a stopped process of the group survived its timeout"
    assert gone(grandchild)
    assert gone(leader)
    exits = scene.events.of(ChildExited, "hung")
    assert [e.outcome for e in exits] == [Outcome.TIMEOUT, Outcome.TIMEOUT]
    assert len(scene.events.of(RestartScheduled, "hung")) == 1
    hung_node = node(tree.status(), "hung")
    assert (hung_node["state"], hung_node["starts"], hung_node["restarts"]) == ("gave_up", 2, 1)

    text = scene.log_text()
    assert "hung: attempt 1 timeout: hung attempt 1 timed out after 1.5s" in text
    assert "hung: timeout (attempt 1): hung attempt 1 timed out after 1.5s" in text
    assert "hung: restart 1 in 0.010s" in text
    assert "hung: gave up" in text

    after = scene.committed()
    assert_kept(before, after)
    outcomes = [r["outcome"] for r in after if r["path"] == "hung" and r["type"] == "attempt"]
    assert outcomes == ["timeout", "timeout"]
    assert_undisturbed(tree)


# -- 2. a command that leaves a grandchild holding its stdout --------------------------------------


def test_a_command_that_exits_under_a_forked_grandchild_ends_at_once_and_leaves_none(
    scene: Scene, tmp_path: Path, procs: Watched
) -> None:
    pids = tmp_path / "grandchildren"
    fifo = tmp_path / "trap-set"
    os.mkfifo(fifo)
    # The grandchild inherits stdout and sleeps; the leader exits 7 at once. A long grace
    # shows the attempt does not wait for EOF on the pipe the grandchild holds.
    forker = JobSpec(
        name="forker",
        work=CommandWork(shell=f"sleep 1000 & echo $! >> {pids}; exit 7", grace=30.0),
    )
    # This one ignores SIGTERM (it says so through the FIFO before the leader exits): the
    # SIGKILL after the command's grace ends it.
    stubborn = JobSpec(
        name="stubborn",
        work=CommandWork(
            shell=f"sh -c \"trap '' TERM; echo > {fifo}; exec sleep 1000\" & "
            f"echo $! >> {pids}; read _ < {fifo}; exit 7",
            grace=0.5,
        ),
    )
    spec = SupervisorSpec(policy=ONE_RESTART, children=(WARMUP, bystander(), forker, stubborn))
    tree = scene.start(spec)
    before = scene.warmed_up()
    scene.events.reached("forker", "gave_up", timeout=20)
    scene.events.reached("stubborn", "gave_up", timeout=20)

    grandchildren = read_pids(pids)
    assert len(grandchildren) == 4
    procs.add(*grandchildren)
    assert procs.all_dead(timeout=5)
    assert all(gone(pid) for pid in grandchildren)
    for path, shortest in (("forker", 0.0), ("stubborn", 0.5)):
        exits = scene.events.of(ChildExited, path)
        assert [(e.outcome, e.code) for e in exits] == [(Outcome.FAILED, 7)] * 2
        durations = [e.at - e.started_at for e in scene.events.of(AttemptFinished, path)]
        assert len(durations) == 2
        # Far below the 30s grace: the end of the leader, not EOF, ends the attempt.
        assert all(shortest <= d < 10 for d in durations), durations
        assert node(tree.status(), path)["last_exit"]["code"] == 7

    text = scene.log_text()
    for path, written in (("forker", "sleep 1000 & echo $!"), ("stubborn", 'sh -c "trap')):
        # A string command is shown as the user wrote it.
        assert f"{path}: attempt 1 failed: command {written}" in text
        assert f"{path}: failed (attempt 1)" in text
        assert f"{path}: gave up" in text
    after = scene.committed()
    assert_kept(before, after)
    assert [r["code"] for r in after if r["path"] == "forker" and r["type"] == "attempt"] == [7, 7]
    assert_undisturbed(tree)


# -- 3. a command that floods stdout ---------------------------------------------------------------


def test_a_flood_of_output_is_logged_whole_in_bounded_memory(tmp_path: Path, runtime: str) -> None:
    lines_mib, long_mib = 34, 16  # 50 MiB: 34 MiB of 8 KiB lines, then one 16 MiB line
    shutil.copy(MANIFESTS / "flood.yaml", tmp_path / "jobs.yaml")
    jv = Jobvisor(tmp_path, "run", "--runtime", runtime, "--json", "jobs.yaml")
    log_file = tmp_path / "jv.log"
    try:
        beats = tmp_path / "beats"
        wait_until(lambda: faultkit.count_lines(beats) >= 2, "bystander ticking", proc=jv.proc)
        # The baseline: the same process before the flood (the tree and a command running).
        baseline = jv.peak_rss_kib()
        beats_at_go = faultkit.count_lines(beats)
        (tmp_path / "go").touch()
        wait_until((tmp_path / "done").exists, "flood written", proc=jv.proc, timeout=40)
        peak = jv.peak_rss_kib()
        beats_at_done = faultkit.count_lines(beats)
        (tmp_path / "release").touch()
        assert jv.wait(30) == 0, jv.stderr
    finally:
        jv.close()
    growth_mib = (peak - baseline) / 1024
    # Holding the output (or one unbroken line) would cost at least 16 MiB more.
    assert growth_mib < 8, f"jobvisor grew by {growth_mib:.1f} MiB for 50 MiB of output"
    assert beats_at_done > beats_at_go, "the periodic bystander stalled during the flood"

    lines = 0
    parts: list[tuple[int, int]] = []  # (part, length) of the split long line
    unmarked: list[int] = []  # lengths of other records of the flood's stdout
    failures = []
    with log_file.open(encoding="utf-8") as file:
        for raw in file:
            record = json.loads(raw)
            if record.get("stream") == "stdout" and record["path"] == "flood":
                text = record["message"].split(" ", 1)[1]
                if "part" in record:
                    parts.append((record["part"], len(text)))
                elif text == "x" * 8191:
                    lines += 1
                else:
                    unmarked.append(len(text))
            elif record["level"] in ("WARNING", "ERROR", "CRITICAL"):
                failures.append(record["message"])
    log_file.unlink()  # 50 MiB: not worth keeping among pytest's temporary directories
    assert lines == lines_mib * 128, "output lines lost"
    assert unmarked == [], "parts of the long line that do not say they are parts"
    # The long line, in 64 KiB parts that say they are parts, nothing lost.
    assert [p for p, _ in parts] == list(range(1, len(parts) + 1))
    assert sum(n for _, n in parts) == long_mib << 20
    assert max(n for _, n in parts) == 65536
    assert failures == []
    status = json.loads(jv.stdout)
    assert node(status, "flood")["state"] == "succeeded"
    ticker = node(status, "ticker")
    assert (ticker["starts"], ticker["restarts"], ticker["failures"]) == (1, 0, 0)


def test_a_line_longer_than_the_cap_is_logged_in_parts_that_say_so(output: Output) -> None:
    # The line ends with a newline here (the flood's ends at EOF): the last part comes with it.
    script = "head -c 150000 /dev/zero | tr '\\0' y; echo; echo next"
    assert CommandWork(shell=script).run(Attempt("long", 1, time.time())) == 0
    texts = [(text, part) for path, _, text, part in output.items if path == "long"]
    parts = [part for _, part in texts[:-1]]
    assert parts == list(range(1, len(parts) + 1))
    assert len(parts) >= 2
    assert "".join(text for text, _ in texts[:-1]) == "y" * 150000
    assert texts[-1] == ("next", None)


@pytest.mark.parametrize("size", [65537, 70000, 131072, 131073])
def test_no_part_of_a_long_line_is_longer_than_the_cap(output: Output, size: int) -> None:
    # A line whose newline came in the read after the one that began it was logged whole, up
    # to two reads long: 70,000 bytes as one line (operator trial h232).
    write = f"import os; os.write(1, b'y' * {size} + b'\\n'); os.write(1, b'next\\n')"
    work = CommandWork(argv=(sys.executable, "-I", "-S", "-c", write))  # one write: 64 KiB reads
    assert work.run(Attempt("long", 1, time.time())) == 0
    texts = [(text, part) for path, _, text, part in output.items if path == "long"]
    assert max(len(text) for text, _ in texts) <= 65536
    assert [part for _, part in texts[:-1]] == list(range(1, len(texts)))
    assert "".join(text for text, _ in texts[:-1]) == "y" * size
    assert texts[-1] == ("next", None)


# -- 4. the log directory goes away mid-run --------------------------------------------------------


def _replace_with_file(directory: Path) -> None:
    """Put a regular file where ``directory`` is; jobvisor may recreate the directory meanwhile."""
    blocker = directory.with_name(directory.name + ".blocker")
    blocker.write_text("not a directory\n")
    aside = directory.with_name(directory.name + ".old")

    def swap() -> bool:
        if directory.is_dir() and aside.exists():
            shutil.rmtree(directory)  # recreated by jobvisor after the first move
        elif directory.is_dir():
            directory.rename(aside)
        try:
            blocker.rename(directory)  # fails while a directory (recreated) is in the way
        except OSError:
            return False
        return True

    wait_until(swap, "log directory replaced by a file")


def test_a_log_directory_that_becomes_a_file_mid_run_is_reported_once(
    tmp_path: Path, runtime: str
) -> None:
    shutil.copy(MANIFESTS / "logdir.yaml", tmp_path / "jobs.yaml")
    db = tmp_path / "state" / "journal.sqlite3"
    log_dir = tmp_path / "logs"
    log_file = log_dir / "jv.log"
    beats = tmp_path / "beats"

    def flapper_attempts() -> int:
        try:
            rows = read_history(db, "flapper", 1_000_000)
        except Exception:  # not created yet, or a read racing the first commit
            return 0
        return sum(1 for r in rows if r["type"] == "attempt")

    def log_has(text: str) -> bool:
        try:
            return text in log_file.read_text()
        except OSError:
            return False

    jv = Jobvisor(tmp_path, "run", "--runtime", runtime, "--json", "jobs.yaml")
    try:
        wait_until(lambda: flapper_attempts() >= 3, "flapper restarting", proc=jv.proc)
        wait_until(lambda: log_has("flapper: restart"), "decisions in the log", proc=jv.proc)
        before = read_history(db, None, 1_000_000)

        _replace_with_file(log_dir)
        attempts, ticks = flapper_attempts(), faultkit.count_lines(beats)
        # Supervision goes on without its log: restarts, ticks and the journal go on.
        wait_until(lambda: flapper_attempts() >= attempts + 10, "restarts go on", proc=jv.proc)
        wait_until(lambda: faultkit.count_lines(beats) >= ticks + 3, "ticks go on", proc=jv.proc)
        broken = jv.stderr
        assert broken.count("cannot write the log file") == 1, broken
        assert str(log_file) in broken

        log_dir.unlink()  # the directory can be created again: the log comes back
        wait_until(lambda: log_has("flapper: restart"), "logging again", proc=jv.proc)
        wait_until(lambda: "writable again" in jv.stderr, "recovery reported", proc=jv.proc)
        assert jv.terminate() == 0, jv.stderr
    finally:
        jv.close()
    err = jv.stderr
    assert err.count("cannot write the log file") == 1, err
    assert err.count("is writable again;") == 1, err
    assert "Traceback" not in err
    assert "log records were dropped" in err
    assert_kept(before, read_history(db, None, 1_000_000))
    status = json.loads(jv.stdout)
    ticker = node(status, "ticker")
    assert (ticker["starts"], ticker["restarts"], ticker["failures"]) == (1, 0, 0)
    assert node(status, "flapper")["restarts"] >= attempts + 9
    assert (
        "flapper: failed (attempt 1): command sh -c"
        in (log_dir.with_name("logs.old") / "jv.log").read_text()
    )


# -- 5. a state dir that cannot hold the journal ---------------------------------------------------


def _assert_one_clear_line(jv: Jobvisor, *names: str) -> None:
    err = jv.stderr
    assert jv.proc.returncode not in (0, None), err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("jobvisor: ")]
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], err


def journal_rows(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every attempt and decision in ``db``, read without leaving a -wal or -shm file behind."""
    conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return {
            table: [dict(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
            for table in ("attempts", "decisions")
        }
    finally:
        conn.close()


def unprivileged() -> tuple[str, ...]:
    prefix = faultkit.without_dac_override()
    if prefix is None:
        pytest.skip("root without setpriv cannot be denied a write")
    return prefix


def test_run_refuses_a_read_only_state_dir_and_keeps_its_journal(tmp_path: Path) -> None:
    prefix = unprivileged()
    shutil.copy(MANIFESTS / "state.yaml", tmp_path / "jobs.yaml")
    state = tmp_path / "state"
    db = state / "journal.sqlite3"
    first = run_jobvisor(tmp_path, "run", "--state-dir", str(state), "jobs.yaml", prefix=prefix)
    assert first.proc.returncode == 0, first.stderr
    before = journal_rows(db)
    assert [row["outcome"] for row in before["attempts"]] == ["succeeded"]

    with faultkit.read_only(state):
        again = run_jobvisor(tmp_path, "run", "--state-dir", str(state), "jobs.yaml", prefix=prefix)
    _assert_one_clear_line(again, str(db), "writable")
    assert (tmp_path / "ran").read_text() == "ran\n", "a job ran without its journal"
    assert journal_rows(db) == before


def test_run_refuses_a_journal_it_cannot_write(tmp_path: Path) -> None:
    prefix = unprivileged()
    shutil.copy(MANIFESTS / "state.yaml", tmp_path / "jobs.yaml")
    state = tmp_path / "state"
    db = state / "journal.sqlite3"
    assert (
        run_jobvisor(tmp_path, "run", "--state-dir", str(state), "jobs.yaml").proc.returncode == 0
    )
    # A read-only reader (another tool; jobvisor's history creates none) leaves -wal and -shm.
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as reader:
        reader.execute("SELECT count(*) FROM attempts").fetchall()
    files = sorted(
        f for f in state.iterdir() if f.name != "daemon.lock"
    )  # run's lock, as the daemon's
    assert [f.name for f in files] == [db.name, f"{db.name}-shm", f"{db.name}-wal"]
    for file in files:
        file.chmod(0o444)
    try:
        with faultkit.read_only(state):
            again = run_jobvisor(
                tmp_path, "run", "--state-dir", str(state), "jobs.yaml", prefix=prefix
            )
    finally:
        for file in files:
            file.chmod(0o644)
    _assert_one_clear_line(again, str(db))
    assert (tmp_path / "ran").read_text() == "ran\n", "a job ran without its journal"


@pytest.mark.parametrize("command", ["run", "daemon"])
@pytest.mark.parametrize("fault", ["under_a_file", "journal_is_a_directory", "read_only"])
def test_an_unusable_state_dir_stops_the_start_with_one_clear_line(
    tmp_path: Path, command: str, fault: str
) -> None:
    prefix: tuple[str, ...] = ()
    state = tmp_path / "state"
    if fault == "under_a_file":
        (tmp_path / "blocker").write_text("a file where a directory should be\n")
        state = tmp_path / "blocker" / "state"
    elif fault == "journal_is_a_directory":
        (state / "journal.sqlite3").mkdir(parents=True)
    else:
        prefix = unprivileged()
        state.mkdir()
        state.chmod(0o555)
    manifest = (MANIFESTS / "state.yaml").read_text()
    (tmp_path / "jobs.yaml").write_text(f"state_dir: {json.dumps(str(state))}\n{manifest}")
    try:
        jv = run_jobvisor(tmp_path, command, "jobs.yaml", prefix=prefix)
    finally:
        if fault == "read_only":
            state.chmod(0o755)
    _assert_one_clear_line(jv, str(state))
    assert not (tmp_path / "ran").exists(), "a job ran although the start was refused"


def test_history_reads_a_journal_in_a_read_only_state_dir(tmp_path: Path) -> None:
    prefix = unprivileged()
    shutil.copy(MANIFESTS / "state.yaml", tmp_path / "jobs.yaml")
    state = tmp_path / "state"
    assert (
        run_jobvisor(tmp_path, "run", "--state-dir", str(state), "jobs.yaml").proc.returncode == 0
    )
    with faultkit.read_only(state):
        history = run_jobvisor(tmp_path, "history", "--state-dir", str(state), prefix=prefix)
    assert history.proc.returncode == 0, history.stderr
    assert "marker  attempt 1 succeeded" in history.stdout


def test_the_daemon_honours_state_dir_flag(tmp_path: Path) -> None:
    shutil.copy(MANIFESTS / "state.yaml", tmp_path / "jobs.yaml")
    (tmp_path / "blocker").write_text("a file where a directory should be\n")
    state = tmp_path / "blocker" / "state"
    jv = Jobvisor(tmp_path, "daemon", "--state-dir", str(state), "jobs.yaml")
    default = tmp_path / ".jobvisor" / "control.sock"  # where it serves when it ignores the flag
    try:
        wait_until(lambda: jv.proc.poll() is not None or default.exists(), "daemon decided")
        code = jv.proc.poll()
    finally:
        jv.terminate()
        jv.close()
    assert code not in (0, None), jv.stderr
    assert str(state) in jv.stderr, jv.stderr  # refused for the flag's dir, not another
    assert not default.exists()


# -- 6. HTTP servers that reset, stall or answer slowly --------------------------------------------


def test_http_jobs_survive_resets_stalls_and_slow_answers(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        HttpKit(Reset(hard=True), Reset(hard=True)) as resets,
        HttpKit(Stall()) as stalls,
        HttpKit(Reply(200, delay=0.3)) as slow,
    ):
        for name, kit in (("RESET_URL", resets), ("STALL_URL", stalls), ("SLOW_URL", slow)):
            monkeypatch.setenv(name, kit.url)
        manifest = load_manifest(MANIFESTS / "http.yaml")
        spec = manifest.tree_spec()
        tree = scene.start(
            SupervisorSpec(policy=spec.policy, children=(WARMUP, bystander(), *spec.children))
        )
        before = scene.warmed_up()
        assert tree.wait(20)
        assert (resets.count, stalls.count, slow.count) == (3, 2, 1)

        def outcomes(path: str) -> list[Outcome]:
            return [e.outcome for e in scene.events.of(ChildExited, path)]

        assert outcomes("reset") == [Outcome.FAILED, Outcome.SUCCEEDED]  # 2 tries, 2 resets
        assert outcomes("stall") == [Outcome.TIMEOUT, Outcome.SUCCEEDED]
        assert outcomes("slow") == [Outcome.SUCCEEDED]
        restarts = {p: node(tree.status(), p)["restarts"] for p in ("reset", "stall", "slow")}
        assert restarts == {"reset": 1, "stall": 1, "slow": 0}

        text = scene.log_text()
        reset = f"GET {resets.url}/reset: connection failed (ConnectionResetError"
        assert f"reset: try 1 failed (HttpRequestError: {reset}" in text
        assert f"reset: attempt 1 failed: {reset}" in text
        assert "stall: attempt 1 timeout: stall attempt 1 timed out after 500ms" in text
        assert not [m for m in scene.messages(logbook.WARNING) if m.startswith("slow:")]
        assert_undisturbed(tree)
        after = scene.committed()
    assert_kept(before, after)
    rows = {(r["path"], r["attempt"]): r["outcome"] for r in after if r["type"] == "attempt"}
    assert rows[("stall", 1)] == "timeout"
    assert rows[("reset", 2)] == "succeeded"


# -- 7. a crash storm of 1,000 children in a three-level tree --------------------------------------


def test_a_crash_storm_of_1000_children_in_three_levels(scene: Scene) -> None:
    groups, per_group = 10, 100
    total = groups * per_group
    faultkit.storm_reset()
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.01), intensity=Intensity(max_restarts=5)
    )
    spec = SupervisorSpec(
        policy=policy,
        children=(
            WARMUP,
            bystander(),
            *(
                SupervisorSpec(
                    name=f"g{g}",
                    policy=policy,
                    children=tuple(
                        python_job(f"c{c}", "faultkit:storm_child", f"g{g}/c{c}")
                        for c in range(per_group)
                    ),
                )
                for g in range(groups)
            ),
        ),
    )
    threads_before = {t.ident for t in threading.enumerate()}
    tree = scene.start(spec)
    try:
        assert tree.started(60)
        assert faultkit.storm_wait_calls(total, 60), "not every child got to its first attempt"
        before = scene.warmed_up()
        faultkit.STORM.set()
        assert faultkit.storm_wait_calls(2 * total, 60), "not every child was restarted"
        paths = [f"g{g}/c{c}" for g in range(groups) for c in range(per_group)]
        scene.events.wait_for(
            lambda items: (
                sum(1 for e in items if isinstance(e, StateChanged) and e.new.value == "running")
                >= 2 * total + groups + 2  # and the groups, the bystander, the warmup
            ),
            timeout=60,
        )
        assert faultkit.storm_calls() == dict.fromkeys(paths, 2)
        storm_exits = [e for e in scene.events.of(ChildExited) if e.path != "warmup"]
        assert len(storm_exits) == total
        assert {e.outcome for e in storm_exits} == {Outcome.FAILED}
        assert len(scene.events.of(RestartScheduled)) == total
        assert not scene.events.of(GaveUp)
        expected = ["starting", "running", "backoff", "starting", "running"]
        wrong = {p: s for p in paths if (s := scene.events.states(p)) != expected}
        assert not wrong, list(wrong.items())[:3]
        status = tree.status()
        children = [n for n in flatten_status(status) if n["path"].startswith("g")]
        children = [n for n in children if n["kind"] == "python"]
        assert len(children) == total
        assert all((n["state"], n["starts"], n["restarts"]) == ("running", 2, 1) for n in children)
        assert all(node(status, f"g{g}")["restarts"] == 0 for g in range(groups))
        assert_undisturbed(tree)

        crashed = [m for m in scene.messages(logbook.ERROR) if "crashed in the storm" in m]
        assert len(crashed) == total
        rows = scene.committed()
        assert sum(1 for r in rows if r.get("kind") == "restart") == total
        assert_kept(before, rows)
        failed = {r["path"] for r in rows if r["type"] == "attempt" and r["outcome"] == "failed"}
        assert failed == set(paths)
    finally:
        faultkit.STORM.set()
        assert tree.stop(60)
    left = [t.name for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    assert left == [], f"left behind: {left[:10]}"
