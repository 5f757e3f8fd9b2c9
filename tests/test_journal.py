"""The SQLite journal: what it records, what survives a kill -9, and how it fails."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import logbook
import pytest
from faultkit import CLI, ENV, Jobvisor, start_daemon, stop_daemon, wait_until

from actors import CommandWork
from supervision import (
    AttemptFinished,
    Backoff,
    ChildExited,
    Intensity,
    JobSpec,
    Journal,
    JournalError,
    Outcome,
    RestartPolicy,
    Schedule,
    Strategy,
    SupervisorSpec,
    python_job,
)
from supervision._history import (
    FILENAME,
    companions,
    read_history,
    read_succeeded,
    read_successes,
)
from supervision._journal import (
    MIGRATIONS,
    job_hash,
    job_hashes,
    older_successes,
    spec_hash,
    succeeded_before,
)

ROOT = Path(__file__).resolve().parent.parent


def test_a_run_records_every_attempt_and_decision(make_tree, tmp_path: Path) -> None:
    policy = RestartPolicy(intensity=Intensity(max_restarts=1))
    spec = SupervisorSpec(
        policy=policy,
        children=(python_job("ok", "jobfuncs:ok", "ok"), python_job("bad", "jobfuncs:fail", "bad")),
    )
    journal = Journal(tmp_path, hashes=job_hashes(spec))
    try:
        tree = make_tree(spec, on_event=journal.record)
        assert tree.wait(10)
        assert journal.flush()
    finally:
        journal.close()
    rows = read_history(tmp_path / FILENAME)
    attempts = [(r["path"], r["attempt"], r["outcome"]) for r in rows if r["type"] == "attempt"]
    assert sorted(attempts) == [("bad", 1, "failed"), ("bad", 2, "failed"), ("ok", 1, "succeeded")]
    decisions = [(r["path"], r["kind"]) for r in rows if r["type"] == "decision"]
    assert decisions == [("bad", "restart"), ("bad", "give_up")]
    only_bad = read_history(tmp_path / FILENAME, "bad", limit=2)
    assert [r.get("kind", r.get("outcome")) for r in only_bad] == ["failed", "give_up"]
    assert read_succeeded(tmp_path / FILENAME) == {"ok": {spec_hash(spec.children[0])}}
    ((code, at),) = read_successes(tmp_path / FILENAME)["ok"].values()
    (ok,) = [r for r in rows if r["type"] == "attempt" and r["path"] == "ok"]
    assert (code, at) == (ok.get("code"), ok["at"])
    # Read for the paths asked only (--resume asks its once-jobs'), through the path index.
    assert read_successes(tmp_path / FILENAME, ["ok"]) == read_successes(tmp_path / FILENAME)
    assert read_successes(tmp_path / FILENAME, ["bad", "nothing"]) == {}
    many = [f"j{i}" for i in range(1200)]  # more than one IN (...) holds
    assert read_successes(tmp_path / FILENAME, [*many, "ok"])["ok"] == {
        spec_hash(spec.children[0]): (code, at)
    }


def _outcomes(db: Path, path: str) -> list[tuple[str, str | None]]:
    rows = read_history(db, path)
    return [(r["outcome"], r.get("error")) for r in rows if r["type"] == "attempt"]


@pytest.mark.parametrize("delay", [0.0, 0.001], ids=["in-place", "through-the-supervisor"])
def test_a_service_that_exits_0_by_itself_is_journaled_failed_as_its_status_counts_it(
    make_tree, events, tmp_path: Path, delay: float
) -> None:
    """A service's attempt was classified without knowing it was a service: its exit 0 was
    `failed (0)` in the status (failures 2, gave_up), `attempt 1 succeeded (0)` in history
    and the attempt events, and a success --resume could count. Any exit of a service that
    was not stopped is a failure (SPEC §2), in every place that tells of it. With no delay
    the command restarts in place (``InPlace``), its reports told later, together."""
    policy = RestartPolicy(
        backoff=Backoff(initial=delay, max=delay), intensity=Intensity(max_restarts=1)
    )
    svc = JobSpec(name="svc", work=CommandWork(shell="exit 0"), schedule=Schedule(service=True))
    spec = SupervisorSpec(policy=policy, children=(svc,))
    journal = Journal(tmp_path, hashes=job_hashes(spec))

    def both(event: Any) -> None:
        events(event)
        journal.record(event)

    try:
        tree = make_tree(spec, on_event=both)
        events.reached("svc", "gave_up")
        assert journal.flush()
    finally:
        journal.close()
    [node] = tree.status()["children"]
    assert (node["failures"], node["last_exit"]["outcome"]) == (2, "failed")
    # Exit 0 is how a command that puts itself in the background (a daemon) ends: its copy
    # runs on where no stop reaches it, one more at each restart. Said with the failure.
    why = (
        "service svc exited with 0: a service runs until it is stopped, so any exit is a "
        "failure (a program that puts itself in the background, as a daemon does, must run in "
        "the foreground here: a copy that left its process group runs on out of jobvisor's "
        "reach)"
    )
    assert [(e.outcome, e.error) for e in events.of(AttemptFinished, "svc")] == [
        (Outcome.FAILED, why),
        (Outcome.FAILED, why),
    ]
    assert _outcomes(tmp_path / FILENAME, "svc") == [("failed", why), ("failed", why)]
    assert read_successes(tmp_path / FILENAME) == {}


def test_a_service_stopped_by_a_group_restart_or_the_shutdown_is_journaled_stopped(
    make_tree, events, tmp_path: Path
) -> None:
    """Every service a shutdown or a group restart stopped was `succeeded` in history (its
    attempt returned with no error once a stop was asked) where its status said `stopped`.
    A stop is no failure, and no success either (SPEC §2): `stopped`, in both."""
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=1)
    )
    # A python service returns when cancelled; a command one traps SIGTERM and exits 0. Each
    # run of bad waits for sh's trap (then a stop cannot find sh without it) and fails once.
    trapped, once = tmp_path / "trapped", tmp_path / "once"
    py = python_job("py", "jobfuncs:block", "py", schedule=Schedule(service=True))
    sh = JobSpec(
        name="sh",
        work=CommandWork(shell=f"trap 'exit 0' TERM; touch {trapped}; sleep 60 & wait"),
        schedule=Schedule(service=True),
    )
    wait = f"while [ ! -e {trapped} ]; do sleep 0.01; done; rm {trapped}"
    bad = JobSpec(
        name="bad", work=CommandWork(shell=f"{wait}; test -e {once} || {{ touch {once}; exit 1; }}")
    )
    spec = SupervisorSpec(strategy=Strategy.ONE_FOR_ALL, policy=policy, children=(py, sh, bad))
    journal = Journal(tmp_path, hashes=job_hashes(spec))

    def both(event: Any) -> None:
        events(event)
        journal.record(event)

    try:
        tree = make_tree(spec, on_event=both)
        # Its failure restarted the group once: three stops and starts, polled for by sh
        # loops, which a loaded machine can stretch past the 10 s a wait is usually given.
        events.reached("bad", "succeeded", timeout=60)
        assert tree.stop(timeout=20)
        assert journal.flush(60)  # an fsync behind other writers' is no loss
    finally:
        journal.close()
    for path in ("py", "sh"):
        attempts = events.of(AttemptFinished, path)
        assert [e.outcome for e in attempts] == [Outcome.STOPPED, Outcome.STOPPED], path
        assert _outcomes(tmp_path / FILENAME, path) == [("stopped", None), ("stopped", None)]
    assert set(read_successes(tmp_path / FILENAME)) == {"bad"}


@pytest.mark.parametrize("first", ["its own thread", "the supervisor"])
def test_a_command_killed_past_its_stop_grace_is_killed_wherever_it_is_told(
    make_tree, events, logs, tmp_path: Path, first: str
) -> None:
    """A command that ignores its stop signal is SIGKILLed at its grace's end by whichever
    deadline comes first, the command's own thread's or the supervisor's (in a manifest both
    are its stop.grace). The first was `stopped (-9)` in the status, history, the journal and
    the log line, the second `killed`, for one event: `killed` past its grace (README), both.
    Here each grace is made to come first by giving the other one 30 s."""
    trapped = tmp_path / "trapped"
    work_grace, job_grace = (0.2, 30.0) if first == "its own thread" else (30.0, 0.2)
    job = JobSpec(
        name="cmd",
        work=CommandWork(
            shell=f"trap '' TERM; touch {trapped}; while :; do sleep 0.05; done", grace=work_grace
        ),
        schedule=Schedule(service=True),
        grace=job_grace,
    )
    spec = SupervisorSpec(children=(job,))
    journal = Journal(tmp_path, hashes=job_hashes(spec))

    def both(event: Any) -> None:
        events(event)
        journal.record(event)

    try:
        tree = make_tree(spec, on_event=both)
        wait_until(trapped.exists, "the command ignores TERM")
        tree.stop_child("cmd")  # returns once it ended, killed
        events.wait_for(lambda _: events.of(ChildExited, "cmd"))
        assert journal.flush(60)
    finally:
        journal.close()
    [attempt] = events.of(AttemptFinished, "cmd")
    [exited] = events.of(ChildExited, "cmd")
    killed = (Outcome.KILLED, -signal.SIGKILL, None)
    assert (attempt.outcome, attempt.code, attempt.error) == killed
    assert (exited.outcome, exited.code, exited.error) == killed
    node = tree.status()["children"][0]
    last = node["last_exit"]
    assert (node["state"], node["failures"]) == ("stopped", 0)
    assert (last["outcome"], last["code"], last["error"]) == ("killed", -signal.SIGKILL, None)
    [row] = [r for r in read_history(tmp_path / FILENAME, "cmd") if r["type"] == "attempt"]
    assert (row["outcome"], row.get("code"), row.get("error")) == ("killed", -signal.SIGKILL, None)
    assert logs.has_info("cmd: stopped (killed)")
    # Said once it ran out, by whichever deadline came first ("killed", "killing it").
    grace = re.escape(f"{min(job_grace, work_grace)}s")
    assert logs.has_warning(re.compile(rf"^cmd: did not stop within {grace}; kill"))


def test_a_sigkill_from_outside_during_a_stop_is_no_kill_past_the_grace(
    make_tree, events, logs, tmp_path: Path
) -> None:
    """A person's `kill -9` (or the OOM killer) a second into a 30 s grace was told `did not
    stop within 30s; killed`, outcome killed: only the grace's own SIGKILL is (r57)."""
    trapped = tmp_path / "trapped"
    job = JobSpec(
        name="cmd",
        work=CommandWork(
            shell=f"trap '' TERM; touch {trapped}; while :; do sleep 0.05; done", grace=30.0
        ),
        schedule=Schedule(service=True),
        grace=30.0,
    )
    tree = make_tree(SupervisorSpec(children=(job,)), on_event=events)
    wait_until(trapped.exists, "the command ignores TERM")
    pid = tree.status()["children"][0]["pid"]
    stopper = threading.Thread(target=tree.stop_child, args=("cmd",), name="test-stop")
    stopper.start()
    try:
        wait_until(lambda: tree.status()["children"][0]["state"] == "stopping", "stopping")
        os.killpg(pid, signal.SIGKILL)
    finally:
        stopper.join(60)
    [exited] = events.of(ChildExited, "cmd")
    assert (exited.outcome, exited.code) == (Outcome.STOPPED, -signal.SIGKILL)
    assert not logs.has_warning(re.compile(r"did not stop within"))


def test_resume_skips_only_identical_once_jobs_that_succeeded() -> None:
    first = python_job("a", "jobfuncs:ok", "a")
    changed = python_job("b", "jobfuncs:ok", "b2")
    spec = SupervisorSpec(children=(first, changed, SupervisorSpec(name="g", children=(first,))))
    successes = {
        "a": {spec_hash(first): (0, 5.0)},
        "b": {spec_hash(python_job("b", "jobfuncs:ok", "b")): (0, 6.0)},
        "g/a": {"another spec": (0, 7.0)},
    }
    assert succeeded_before(spec, successes) == {"a": (0, 5.0)}
    # A python job's hash has its manifest's directory: another one's success is not its.
    assert succeeded_before(spec, successes, "/elsewhere") == {}
    here = {"a": {job_hash(first, "/here"): (0, 5.0)}}
    assert succeeded_before(spec, here, "/here") == {"a": (0, 5.0)}
    assert job_hashes(spec, "/here")["a"] == job_hash(first, "/here") != spec_hash(first)


class _Text(str):
    """A str the hash's shortcut for plain texts does not take: its generic walk does."""

    __slots__ = ()


def test_a_spec_hash_of_texts_is_what_it_was_before_its_shortcut() -> None:
    """10,000 jobs x 20 env vars spent 0.2 s in the generic walk of every text; mappings of
    str to str and sequences of str now take a shortcut, which must give the same bytes: a
    changed hash would make ``run --resume`` run every succeeded once-job again."""
    env = {"PATH": "/usr/bin:/bin", "Zé": "ünï\u00a0code", "EMPTY": "", "A": "s5:x)"}
    env["LONG"] = "x" * 300
    argv = ("/bin/sh", "-c", "echo $A", "")
    job = JobSpec(name="migrate", work=CommandWork(argv=argv, env=env, cwd="/srv"))
    python = python_job("p", "mod:f", "a", "b", kwargs={"k": "v", "n": 1})
    # Computed by the generic walk alone (before the shortcut), pinned.
    assert spec_hash(job) == "v2:a13bd95244bcaa84"
    assert spec_hash(python) == "v2:4b58152c1860c5e6"
    assert job_hash(python, "/here") == "v2:1004b79066424d3a"
    assert spec_hash({"b": "2", "a": "1"}) == "v2:bd23044943b2aa71"
    assert spec_hash(("x", "yz")) == spec_hash(["x", "yz"]) == "v2:e925dcb2657739c7"
    assert spec_hash({}) == "v2:70c1edf73a0c9731"
    assert spec_hash(()) == "v2:4b8939066e95cebe"
    assert spec_hash({"a": 1, "b": "2"}) == "v2:a02a79090d0eb5c7"  # not all texts: generic
    assert spec_hash(("x", 1)) == "v2:db4f07aee5891a79"
    # The same texts as a str subclass take the generic walk: the same hash, whatever texts.
    texts = ["", "a", "é", "\udcff", "s1:a", "m2(", ")", "x" * 1000, "A=B", "\n"]
    for i in range(len(texts)):
        mapping = {texts[j]: texts[(i + j) % len(texts)] for j in range(len(texts))}
        generic = {_Text(k): _Text(v) for k, v in mapping.items()}
        assert spec_hash(mapping) == spec_hash(generic)
        row = tuple(texts[i:] + texts[:i])
        assert spec_hash(row) == spec_hash(tuple(map(_Text, row)))
        assert spec_hash(list(row)) == spec_hash([_Text(t) for t in row])
        mixed = {**mapping, "k": _Text("v")}  # one entry not plain: the whole mapping generic
        assert spec_hash(mixed) == spec_hash({**mapping, "k": "v"})


def test_an_http_jobs_hidden_request_fields_are_in_its_hash_and_a_plain_ones_hash_is_kept() -> None:
    """Its headers, params, json and body are out of its repr (they may hold secrets), and
    were out of its identity with it: ``run --resume`` took a job whose header changed for
    the one that succeeded. Each counts now; a job without them keeps its journaled hash."""
    from actors._http import HttpWork

    def job(**request: Any) -> JobSpec:
        work = HttpWork(url="http://127.0.0.1:8/x", method="POST", timeout=5.0, **request)
        return JobSpec(name="call", work=work)

    assert spec_hash(job()) == "v2:73a221d3c355bd86"  # pinned before headers counted
    hashes = {
        spec_hash(job(**request))
        for request in [
            {},
            {"headers": {"X-Key": "a"}},
            {"headers": {"X-Key": "b"}},
            {"headers": {"X-Key": "b"}, "secret_headers": ("X-Key",)},
            {"params": {"q": "a"}},
            {"json": {"n": 1}},
            {"body": "n=1"},
        ]
    }
    assert len(hashes) == 7


def test_a_secret_headers_value_is_no_part_of_an_http_jobs_hash() -> None:
    """A secret header's value went into the hash (an unsalted digest anyone with the journal
    could test guesses against; a rotated secret ran every finished job again under
    ``--resume``), and so did which headers are masked. Its name counts, its value not; a plain
    header's value counts; ``secret_headers`` alone changes nothing."""
    from actors._http import HttpWork

    def job(headers: dict[str, str], secret: tuple[str, ...] = ()) -> str:
        work = HttpWork(
            url="http://127.0.0.1:8/x", headers=headers, secret_headers=secret, timeout=5.0
        )
        return spec_hash(JobSpec(name="call", work=work))

    both = {"Authorization": "Bearer one", "X-Plain": "a"}
    secret = ("Authorization",)
    assert job(both, secret) == job({**both, "Authorization": "Bearer two"}, secret)
    assert job(both, secret) != job({**both, "X-Plain": "b"}, secret)
    assert job(both, secret) != job({"X-Plain": "a"}, secret)  # the secret header's name counts
    assert job({"X-Plain": "a"}, ()) == job({"X-Plain": "a"}, ("X-Other",))  # the list: none
    assert job({"authorization": "Bearer one"}, secret) == job({"authorization": "x"}, secret)
    assert job(both, ()) != job({**both, "Authorization": "Bearer two"}, ())


def test_an_http_jobs_success_before_its_request_fields_counted_is_an_older_success(
    tmp_path: Path,
) -> None:
    """A success journaled before an http job's headers, params, json and body were part of
    its hash has another "v2:" hash than the job has now: ``run --resume`` sent it again
    silently. It is listed with the older jobvisors' successes (``run`` says it runs again),
    not taken as done: the old form cannot tell a changed header from the one that ran."""
    from actors._http import HttpWork

    def job(**request: Any) -> JobSpec:
        work = HttpWork(url="http://127.0.0.1:8/x", method="POST", timeout=5.0, **request)
        return JobSpec(name="call", work=work)

    old = "v2:73a221d3c355bd86"  # the pinned hash of the job without its request fields
    assert spec_hash(job()) == old
    plain = replace(job(), name="plain")  # has none of them: its hash is what it was
    journal = Journal(tmp_path, hashes={"call": old, "plain": spec_hash(plain)})
    try:
        for path in ("call", "plain"):
            journal.record(
                AttemptFinished(
                    path=path,
                    at=2.0,
                    attempt=1,
                    outcome=Outcome.SUCCEEDED,
                    error=None,
                    started_at=1.0,
                    code=200,
                )
            )
        assert journal.flush()
    finally:
        journal.close()
    successes = read_successes(tmp_path / FILENAME)
    with_headers = replace(job(headers={"X-Key": "a"}, json={"n": 1}), name="call")
    spec = SupervisorSpec(children=(with_headers, plain))
    assert succeeded_before(spec, successes) == {"plain": (200, 2.0)}
    assert older_successes(spec, successes) == ["call"]
    # Once it succeeded under its hash of now, that success is what it goes by.
    again = {**successes, "call": {**successes["call"], spec_hash(with_headers): (200, 3.0)}}
    assert older_successes(spec, again) == []
    assert succeeded_before(spec, again) == {"call": (200, 3.0), "plain": (200, 2.0)}


def test_committed_rows_survive_kill_9(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from supervision import Journal
        from supervision._events import AttemptFinished
        from actors import Outcome
        journal = Journal({str(tmp_path)!r})
        for i in range(200):
            journal.record(AttemptFinished(path="j", at=float(i), attempt=i + 1, outcome=Outcome.SUCCEEDED,
                                           error=None, started_at=float(i), code=0))
        assert journal.flush()
        print("committed", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "committed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    rows = read_history(tmp_path / FILENAME, limit=1000)
    assert len(rows) == 200
    assert rows[-1]["attempt"] == 200


def test_an_unusable_state_dir_is_a_clear_error_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state dir should be")
    with pytest.raises(JournalError, match=r"cannot open the journal .*state"):
        Journal(blocker)


def test_a_first_version_journal_is_migrated_and_its_rows_read_as_before(tmp_path: Path) -> None:
    db = tmp_path / FILENAME
    with sqlite3.connect(db) as conn:
        conn.executescript(f"{MIGRATIONS[0]} PRAGMA user_version = 1;")
        conn.execute(
            "INSERT INTO attempts (path, attempt, started_at, ended_at, outcome) "
            "VALUES ('a', 1, 1.0, 2.0, 'succeeded')"
        )
    conn.close()
    Journal(tmp_path).close()
    (row,) = read_history(db)
    assert row == {
        "at": 2.0,
        "path": "a",
        "type": "attempt",
        "attempt": 1,
        "outcome": "succeeded",
        "started_at": 1.0,
    }
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert "node" in [c[1] for c in conn.execute("PRAGMA table_info(attempts)")]
    conn.close()


def test_schema_is_versioned_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    db = tmp_path / FILENAME
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(JournalError, match="schema version 99"):
        Journal(tmp_path)


def test_history_without_a_journal_says_so(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal at"):
        read_history(tmp_path / FILENAME)


@pytest.mark.parametrize("name", ["st#1", "st?x", "st%41", "a b"])
def test_history_reads_a_journal_whose_path_has_what_a_uri_means_otherwise(
    tmp_path: Path, name: str
) -> None:
    """The path went into SQLite's URI as it was: '#' began a fragment, dropping ``mode=ro``
    with the rest, and SQLite made (read-write, through any symlink there) the file named by
    what came before it; '%41' was read as 'A' (trial h252)."""
    journal = Journal(tmp_path / name)
    journal.record(_attempt(1))
    assert journal.flush()
    journal.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    rows = read_history(tmp_path / name / FILENAME)
    assert [(row["path"], row["attempt"]) for row in rows] == [("j", 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made beside it


def test_decisions_whose_detail_is_no_json_object_are_shown_or_skipped_not_a_traceback(
    tmp_path: Path,
) -> None:
    """A journal edited by hand (or damaged): history showed a traceback, and a daemon's start
    would have died reading its breakers and cooldowns (trial h252)."""
    import time

    from supervision._events import BreakerChanged, CooldownStarted
    from supervision._journal import last_breaker_states, open_cooldowns

    journal = Journal(tmp_path)
    now = time.time()
    journal.record(CooldownStarted(path="c", at=now - 1, duration=30.0, cycle=2))
    journal.record(BreakerChanged(path="", at=now, name="db", old="closed", new="open"))
    assert journal.flush()
    journal.close()
    db = tmp_path / FILENAME
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE decisions SET detail = 'not json' WHERE kind = 'cooldown'")
        for detail in ('{"duration": 30, "cycle": Infinity}', '{"duration": 1e999, "cycle": 1}'):
            conn.execute(
                "INSERT INTO decisions (path, at, kind, detail) VALUES (?, ?, 'cooldown', ?)",
                (f"c{len(detail)}", now, detail),
            )
        conn.execute("UPDATE decisions SET detail = '[1, 2]' WHERE kind = 'breaker'")
    rows = read_history(db)
    shown = [row["detail"] for row in rows if "unreadable" in row["detail"]]
    assert shown == [{"unreadable": "not json"}, {"unreadable": "[1, 2]"}]
    assert open_cooldowns(db, now) == {}
    assert last_breaker_states(db) == {}
    out = subprocess.run(
        [*CLI, "history", "--state-dir", str(tmp_path)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "unreadable=not json" in out.stdout
    assert "Traceback" not in out.stderr


def test_a_restarted_daemon_gets_its_open_breakers_back(tmp_path: Path, runtime: str) -> None:
    import time

    from supervision import load_manifest
    from supervision._app import compose
    from supervision._events import BreakerChanged

    journal = Journal(tmp_path / "state")
    journal.record(BreakerChanged(path="", at=time.time(), name="db", old="closed", new="open"))
    journal.record(BreakerChanged(path="", at=time.time(), name="api", old="open", new="closed"))
    assert journal.flush()
    journal.close()
    manifest = load_manifest(
        textwrap.dedent(f"""
        version: 1
        state_dir: {tmp_path / "state"}
        breakers:
          db: {{failure_threshold: 1, reset_timeout: 60s}}
          api: {{failure_threshold: 1, reset_timeout: 60s}}
        jobs:
          - name: j
            python: "math:sqrt"
            args: [1]
            breaker: db
        """)
    )
    with compose(
        manifest, runtime=runtime, restore=True, journal=False, log_level="none"
    ) as restored:
        assert restored.breakers["db"].state.value == "open"
        assert restored.breakers["api"].state.value == "closed"
    with compose(manifest, runtime=runtime, journal=False, log_level="none") as fresh:
        assert fresh.breakers["db"].state.value == "closed"


def test_a_restarted_daemon_keeps_cooling_down_what_was_cooling_down(
    make_tree, events, tmp_path: Path
) -> None:
    import time

    from supervision._events import CooldownStarted, RestartScheduled
    from supervision._journal import open_cooldowns

    journal = Journal(tmp_path)
    now = time.time()
    journal.record(RestartScheduled(path="c", at=now - 5, delay=0.1, number=1))
    journal.record(CooldownStarted(path="c", at=now - 1, duration=30.0, cycle=2))
    journal.record(CooldownStarted(path="old", at=now - 100, duration=30.0, cycle=1))  # over
    journal.record(CooldownStarted(path="healed", at=now - 2, duration=30.0, cycle=1))
    journal.record(RestartScheduled(path="healed", at=now - 1, delay=0.1, number=1))
    assert journal.flush()
    journal.close()
    found = open_cooldowns(tmp_path / FILENAME, now)
    assert list(found) == ["c"]
    left, cycle = found["c"]
    assert cycle == 2
    assert 28 < left <= 29.01
    spec = SupervisorSpec(
        children=(python_job("c", "jobfuncs:ok", "c"), python_job("d", "jobfuncs:ok", "d"))
    )
    tree = make_tree(spec, on_event=events, cooldowns=found)
    events.reached("d", "succeeded")
    node = {n["name"]: n for n in tree.status()["children"]}["c"]
    assert (node["state"], node["starts"]) == ("cooldown", 0)
    assert node["next_start_at"] == pytest.approx(time.time() + left, abs=3)


def test_only_what_changes_a_childs_state_hides_its_cooldown_from_a_restarted_daemon(
    tmp_path: Path,
) -> None:
    """The restore took a path's latest decision of any kind: a notification's delivery (a
    ``notify`` on ``cooldown`` writes one just after the cooldown's row) hid the cooldown, and a
    restarted daemon started the job at once. A person's start, stop or restart, and a reload
    removing the path (and adding it again), do end it: the daemon that ran then had ended it."""
    import time

    from supervision._events import Commanded, CooldownStarted
    from supervision._journal import open_cooldowns

    journal = Journal(tmp_path)
    now = time.time()
    paths = ("notified", "signalled", "started", "stopped", "restarted", "replaced")
    for path in paths:
        journal.record(CooldownStarted(path=path, at=now - 3, duration=30.0, cycle=1))
    journal.notified(now - 2, "notified", {"event": "cooldown", "delivered": True, "tries": 1})
    journal.record(Commanded(path="signalled", at=now - 2, action="signal", signal="SIGHUP"))
    for path, action in (("started", "start"), ("stopped", "stop"), ("restarted", "restart")):
        journal.record(Commanded(path=path, at=now - 2, action=action))
    journal.record(Commanded(path="replaced", at=now - 2, action="remove"))
    journal.record(Commanded(path="replaced", at=now - 1, action="add"))
    assert journal.flush()
    journal.close()
    db = tmp_path / FILENAME
    assert sorted(open_cooldowns(db, now)) == ["notified", "signalled"]
    kinds = {
        row["path"]: (row["kind"], row.get("detail"))
        for row in read_history(db, None, limit=100)
        if row["kind"] != "cooldown"
    }
    assert kinds == {
        "notified": ("notify", {"event": "cooldown", "delivered": True, "tries": 1}),
        "signalled": ("person_signal", {"signal": "SIGHUP"}),
        "started": ("person_start", {}),
        "stopped": ("person_stop", {}),
        "restarted": ("person_restart", {}),
        "replaced": ("added", {}),
    }


def test_what_ends_a_groups_life_ends_the_cooldowns_of_the_jobs_below_it(tmp_path: Path) -> None:
    """A person's restart (or stop, or a reload's removal) of a group wrote a row for the group
    alone: its job's cooldown stayed that job's latest row, and the next daemon put the job,
    running since, back in it (review). So does the group's own restart by its parent."""
    import time

    from supervision._events import Commanded, CooldownStarted, RestartScheduled
    from supervision._journal import open_cooldowns

    journal = Journal(tmp_path)
    now = time.time()
    # A group's row from before the cooldown changes nothing.
    journal.record(Commanded(path="gx", at=now - 4, action="start"))
    for path in ("g/a", "g/b", "h/a", "h/b", "gx/a", "k/a", "m/n/a"):
        journal.record(CooldownStarted(path=path, at=now - 3, duration=30.0, cycle=1))
    journal.record(Commanded(path="g", at=now - 2, action="restart"))
    journal.record(RestartScheduled(path="h", at=now - 2, delay=0.0, number=1))
    journal.record(Commanded(path="g", at=now - 2, action="signal", signal="SIGHUP"))
    journal.record(Commanded(path="k/b", at=now - 2, action="stop"))  # a sibling: not its group
    journal.record(Commanded(path="m", at=now - 2, action="remove"))
    assert journal.flush()
    journal.close()
    assert sorted(open_cooldowns(tmp_path / FILENAME, now)) == ["gx/a", "k/a"]


def test_a_job_that_failed_finally_after_its_cooldown_is_not_put_back_in_it(
    tmp_path: Path,
) -> None:
    """A periodic job's probe after its cooldown may be its last tick: failed finally, it is
    down for good, and a restarted daemon must not cool it down (and start it) again."""
    import time

    from supervision._events import CooldownStarted, FailedFinally
    from supervision._journal import open_cooldowns

    journal = Journal(tmp_path)
    now = time.time()
    for path in ("tick", "g/a"):
        journal.record(CooldownStarted(path=path, at=now - 3, duration=30.0, cycle=1))
    journal.record(FailedFinally(path="tick", at=now - 2, reason="its 2 ticks, times: 2, are run"))
    journal.record(FailedFinally(path="g", at=now - 2, reason="temporary"))
    assert journal.flush()
    journal.close()
    assert open_cooldowns(tmp_path / FILENAME, now) == {}


def test_pruning_spares_the_cooldown_behind_later_notifications(tmp_path: Path) -> None:
    import time

    from supervision._events import CooldownStarted
    from supervision._journal import open_cooldowns

    db = tmp_path / FILENAME
    journal = Journal(tmp_path, keep=5)
    try:
        now = time.time()
        journal.record(CooldownStarted(path="loop", at=now, duration=3600.0, cycle=3))
        for i in range(30):
            journal.notified(now + i / 1000, "loop", {"event": "cooldown", "tries": i})
        assert journal.flush()
        wait_until(lambda: _rows_of(db, "decisions", "loop") == 6, "pruned to 5 (and its cooldown)")
    finally:
        journal.close()
    assert open_cooldowns(db, time.time())["loop"][1] == 3


def test_a_person_who_started_a_job_out_of_its_cooldown_finds_it_running_after_a_daemon_restart(
    tmp_path: Path,
) -> None:
    """The job a person mended and started was put back in its 10-minute cooldown by the next
    daemon's start: no row said it had been started since."""
    fixed = tmp_path / "fixed"
    manifest = f"""\
        version: 1
        supervisor:
          backoff: {{initial: 0, max: 0, jitter: 0}}
          intensity: {{max_restarts: 1, within: 10s}}
          on_exhausted: cooldown
          cooldown: {{duration: 10m, max: 10m, probation: 1s}}
        jobs:
          - name: flaky
            command: [sh, -c, "test -e {fixed} || exit 1; exec sleep 60"]
            service: true
    """
    running = start_daemon(tmp_path, manifest)
    try:
        wait_until(lambda: running.nodes()["flaky"]["state"] == "cooldown", "flaky cools down")
        fixed.touch()
        out = running.cli("start", "flaky")
        assert out.returncode == 0, out.stderr
        wait_until(lambda: running.nodes()["flaky"]["state"] == "running", "flaky runs")
    finally:
        assert stop_daemon(running) == 0
    running = start_daemon(tmp_path, manifest)
    try:
        wait_until(lambda: running.nodes()["flaky"]["state"] == "running", "flaky runs again")
        history = running.cli("history", "flaky")
        assert "flaky  person_start" in history.stdout, history.stdout
    finally:
        assert stop_daemon(running) == 0


def test_the_journal_declares_exactly_the_events_it_keeps(tmp_path: Path) -> None:
    """A tree builds for the journal only what it declares: the two must agree."""
    from actors import Outcome
    from supervision import _events as ev
    from supervision._state import State

    samples = [
        ev.StateChanged(path="a", at=1.0, old=State.STARTING, new=State.RUNNING),
        ev.AttemptFinished(
            path="a", at=1.0, attempt=1, outcome=Outcome.FAILED, error="x", started_at=0.5, code=1
        ),
        ev.ChildExited(path="a", at=1.0, incarnation=1, outcome=Outcome.FAILED, error="x", code=1),
        ev.RestartScheduled(path="a", at=1.0, delay=0.1, number=1),
        ev.RestartCancelled(path="a", at=1.0),
        ev.GaveUp(path="a", at=1.0, reason="r"),
        ev.NotStarted(path="a", at=1.0, reason="dependency b gave_up"),
        ev.FailedFinally(path="a", at=1.0, reason="temporary"),
        ev.Escalated(path="a", at=1.0, reason="r", error="e"),
        ev.CooldownStarted(path="a", at=1.0, duration=1.0, cycle=1),
        ev.ProbationPassed(path="a", at=1.0),
        ev.BreakerChanged(path="", at=1.0, name="db", old="closed", new="open"),
        ev.ThreadAbandoned(path="a", at=1.0, thread="jv-t1-a"),
        ev.Commanded(path="a", at=1.0, action="stop"),
        ev.Reloaded(path="", at=1.0, added=("a",), lines=("add a",)),  # the log tells of it
    ]
    # Every kind there is (by name: slotted dataclasses leave their first class behind).
    assert {type(e).__name__ for e in samples} == {c.__name__ for c in ev.Event.__subclasses__()}
    journal = Journal(tmp_path)
    try:
        kept = {type(e) for e in samples if journal._row(e) is not None}
    finally:
        journal.close()
    assert kept == Journal.record.event_types  # type: ignore[attr-defined]


def test_a_restart_with_an_infinite_delay_is_still_valid_json(tmp_path: Path) -> None:
    from supervision import _events as ev

    journal = Journal(tmp_path)
    try:
        journal.record(ev.RestartScheduled(path="a", at=1.0, delay=float("inf"), number=2000))
        journal.record(ev.RestartScheduled(path="a", at=2.0, delay=0.25, number=1))
        assert journal.flush()
    finally:
        journal.close()
    details = [row["detail"] for row in read_history(tmp_path / FILENAME)]
    assert details == [{"delay": float("inf"), "number": 2000}, {"delay": 0.25, "number": 1}]


def test_recent_attempts_come_per_job_each_from_its_own_rows(tmp_path: Path) -> None:
    """The page's one history read: the newest attempts of every job, a chatty one no cause
    for another's to be missing; ``etl`` means etl and below, never etl2 or etl-x."""
    from actors import Outcome
    from supervision._events import AttemptFinished, RestartScheduled
    from supervision._history import read_recent_attempts

    journal = Journal(tmp_path)

    def attempt(path: str, n: int, outcome: Outcome = Outcome.SUCCEEDED) -> None:
        journal.record(
            AttemptFinished(path=path, at=float(n), attempt=n, outcome=outcome,
                            error=None if outcome is Outcome.SUCCEEDED else "boom",
                            started_at=float(n) - 0.5, code=0)
        )  # fmt: skip

    attempt("etl/load", 1, Outcome.FAILED)
    journal.record(RestartScheduled(path="etl/load", at=1.0, delay=0.1, number=1))
    for n in range(1, 500):
        attempt("chatty", n)
    attempt("etl/load", 2)
    attempt("etl", 1)
    attempt("etl2", 1)
    attempt("etl-x", 1)
    assert journal.flush()
    journal.close()
    db = tmp_path / FILENAME

    recent = read_recent_attempts(db, None, 3)
    assert list(recent) == ["chatty", "etl", "etl-x", "etl/load", "etl2"]
    assert [r["attempt"] for r in recent["chatty"]] == [497, 498, 499]
    assert [(r["attempt"], r["outcome"]) for r in recent["etl/load"]] == [
        (1, "failed"),
        (2, "succeeded"),
    ]
    # Each row as read_history gives an attempt.
    (failed, _) = recent["etl/load"]
    (same,) = [r for r in read_history(db, "etl/load", 10) if r.get("outcome") == "failed"]
    assert failed == same
    assert list(read_recent_attempts(db, "etl", 3)) == ["etl", "etl/load"]
    assert list(read_recent_attempts(db, "etl/load", 1)) == ["etl/load"]
    assert read_recent_attempts(db, "nothing", 3) == {}


# -- a journal that cannot be written keeps its rows -----------------------------------------------


def _attempt(number: int) -> Any:
    from actors import Outcome
    from supervision._events import AttemptFinished

    at = float(number)
    return AttemptFinished(
        path="j",
        at=at,
        attempt=number,
        outcome=Outcome.SUCCEEDED,
        error=None,
        started_at=at,
        code=0,
    )


def _lock(db: Path) -> sqlite3.Connection:
    """Another writer holding the journal (as another process would): every write must wait."""
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    return locker


def _said(logs: Any, text: str, level: int = logbook.TRACE) -> list[str]:
    return [r.message for r in logs.records if text in r.message and r.level >= level]


def test_a_locked_journal_keeps_its_rows_and_writes_them_once_released(
    tmp_path: Path, logs: Any
) -> None:
    db = tmp_path / FILENAME
    journal = Journal(tmp_path, lock_wait=0.2)
    locker = None
    try:
        for number in range(1, 6):
            journal.record(_attempt(number))
        assert journal.flush()
        locker = _lock(db)
        for number in range(6, 31):
            journal.record(_attempt(number))
        wait_until(lambda: _said(logs, "journal"), "the failure is logged")
        for number in range(31, 61):
            journal.record(_attempt(number))
        locker.execute("ROLLBACK")
        assert journal.flush(10)
    finally:
        if locker is not None:
            locker.close()
        journal.close()
    assert [row["attempt"] for row in read_history(db, limit=1000)] == list(range(1, 61))
    failed = _said(logs, "cannot write")
    assert len(failed) == 1, failed
    assert "locked by another process" in failed[0]
    assert "keeping" in failed[0]
    assert "rows and retrying" in failed[0]
    again = _said(logs, "written again")
    assert again == [f"journal {db}: written again; 55 rows kept meanwhile were written"]
    assert not _said(logs, "", logbook.ERROR)


@pytest.mark.parametrize("what", ["the file", "all its files"])
def test_a_journal_deleted_under_its_writer_is_started_again_at_its_path_and_said(
    tmp_path: Path, logs: Any, what: str
) -> None:
    """Its writer wrote on into the deleted file: every later row lost, not a word (h245)."""
    db = tmp_path / FILENAME
    journal = Journal(tmp_path)
    try:
        for number in range(1, 6):
            journal.record(_attempt(number))
        assert journal.flush()
        for path in [db, *companions(db)[1:]] if what == "all its files" else [db]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for number in range(6, 11):
            journal.record(_attempt(number))
        assert journal.flush()
        assert [row["attempt"] for row in read_history(db, limit=100)] == list(range(6, 11))
        assert db.stat().st_mode & 0o777 == 0o600
    finally:
        journal.close()
    said = _said(logs, "its file was deleted", logbook.ERROR)
    assert said == [
        (
            f"journal {db}: its file was deleted while jobvisor ran; a new journal is started "
            "at that path, and the rows not written yet go to it (what the deleted one held is "
            "gone: history starts again from here)"
        )
    ]


def test_a_journal_deleted_while_the_disk_is_full_is_made_again_once_there_is_room(
    tmp_path: Path,
) -> None:
    """A new journal half made (its file, no tables) was taken for good: every batch failed
    with "no such table" for ever (review r51). RLIMIT_FSIZE fails its writes as a full disk."""
    import resource

    manifest = """
    version: 1
    logging: {level: information, file: jv.log}
    jobs:
      - {name: t, command: "true", every: 50ms}
    """
    running = start_daemon(tmp_path, manifest)
    db = running.state / FILENAME
    try:
        wait_until(lambda: _attempts(db), "the first rows")
        resource.prlimit(running.proc.pid, resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
        for path in companions(db):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        log = tmp_path / "jv.log"
        wait_until(lambda: "a new journal could not be made" in log.read_text(), "the failure")
        resource.prlimit(
            running.proc.pid,
            resource.RLIMIT_FSIZE,
            (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
        )
        wait_until(lambda: "a new journal is started" in log.read_text(), "the new journal")
        wait_until(lambda: len(_attempts(db)) >= 3, "rows in the new journal")
    finally:
        assert stop_daemon(running) == 0
    assert "written again" in log.read_text()


def test_a_journal_replaced_under_its_writer_keeps_its_rows_until_the_file_goes(
    tmp_path: Path, logs: Any
) -> None:
    db = tmp_path / FILENAME
    journal = Journal(tmp_path)
    try:
        journal.record(_attempt(1))
        assert journal.flush()
        db.unlink()
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(4096))  # garbage: a cleanup script's, nothing of ours
        os.close(fd)
        for number in range(2, 6):
            journal.record(_attempt(number))
        assert not journal.flush(0.5), "nothing is written into another's file"
        wait_until(lambda: _said(logs, "cannot write"), "the failure is logged")
        failed = _said(logs, "cannot write")
        assert len(failed) == 1, failed
        assert "its file was replaced by another while jobvisor ran" in failed[0]
        db.unlink()
        assert journal.flush(10)
        assert [row["attempt"] for row in read_history(db, limit=100)] == [2, 3, 4, 5]
    finally:
        journal.close()


def test_a_journal_still_locked_at_close_says_how_many_rows_it_lost(
    tmp_path: Path, logs: Any
) -> None:
    import time

    db = tmp_path / FILENAME
    journal = Journal(tmp_path, lock_wait=0.2)
    locker = _lock(db)
    try:
        journal.record(_attempt(1))
        journal.notified(1.0, "j", {"delivered": True})
        for number in range(2, 21):
            journal.record(_attempt(number))
        began = time.monotonic()
        lost = journal.close(timeout=1.0)
        took = time.monotonic() - began
    finally:
        locker.close()
    assert lost == 21
    assert 0.9 < took < 3.0, took
    (said,) = _said(logs, "", logbook.ERROR)
    assert said.startswith(f"journal {db}: 21 rows could not be written"), said
    assert "locked by another process" in said
    assert not read_history(db)


def test_rows_kept_past_the_bound_are_dropped_oldest_attempt_first_and_counted(
    tmp_path: Path, logs: Any
) -> None:
    from supervision._events import CooldownStarted

    db = tmp_path / FILENAME
    journal = Journal(tmp_path, lock_wait=0.2, max_kept=10)
    locker = _lock(db)
    try:
        journal.record(CooldownStarted(path="j", at=0.5, duration=30.0, cycle=1))
        for number in range(1, 31):
            journal.record(_attempt(number))
        wait_until(lambda: _said(logs, "dropping"), "the drop is logged")
        locker.execute("ROLLBACK")
        assert journal.flush(10)
    finally:
        locker.close()
        lost = journal.close()
    assert lost == 21
    rows = read_history(db, limit=1000)
    assert [row.get("kind", row.get("attempt")) for row in rows] == ["cooldown", *range(22, 31)]
    (dropping,) = _said(logs, "dropping", logbook.ERROR)
    assert "more than 10 rows wait" in dropping
    (again,) = _said(logs, "written again")
    assert again.endswith("10 rows kept meanwhile were written, 21 dropped")


@pytest.mark.parametrize("fault", ["locked", "not_a_database"])
def test_a_journal_that_cannot_be_opened_says_why(tmp_path: Path, fault: str) -> None:
    db = tmp_path / FILENAME
    locker = None
    if fault == "locked":
        Journal(tmp_path).close()
        locker = _lock(db)
        expected = r"locked by another process"
    else:
        tmp_path.chmod(0o700)
        db.write_bytes(b"not a database, " * 512)
        db.chmod(0o600)
        expected = r"is not an SQLite database"
    try:
        with pytest.raises(JournalError, match=expected) as raised:
            Journal(tmp_path, lock_wait=0.2)
    finally:
        if locker is not None:
            locker.close()
    assert "state dir is writable" not in str(raised.value)


# A real `jobvisor run` whose file-size limit (RLIMIT_FSIZE) stops the journal from growing, as a
# full disk would: Python ignores SIGXFSZ, so a write past the limit fails with EFBIG.
TICKS = """
version: 1
jobs:
  - name: t
    command: ["true"]
    every: 50ms
    times: 40
"""


def _limit_file_size(pid: int, limit: int) -> None:
    import resource

    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def _ticks_run(tmp_path: Path, runtime: str) -> tuple[Jobvisor, Path]:
    (tmp_path / "jobs.yaml").write_text(TICKS)
    state = tmp_path / "state"
    jv = Jobvisor(
        tmp_path, "run", "--runtime", runtime, "--log-level", "warning", "--state-dir",
        str(state), "jobs.yaml",
    )  # fmt: skip
    return jv, state / FILENAME


def _attempts(db: Path) -> list[int]:
    try:
        return [r["attempt"] for r in read_history(db, limit=1000) if r["type"] == "attempt"]
    except JournalError:
        return []


def _freeze_journal(jv: Jobvisor, db: Path) -> int:
    """Once some rows are in, no write past a file's first page; the rows committed so far.

    Not the journal's size now: a checkpoint that fits would start the WAL over, and
    writing would come and go. The process's stderr (a file) stays under a page.
    """
    wait_until(lambda: len(_attempts(db)) >= 3, "rows committed", proc=jv.proc)
    _limit_file_size(jv.pid, 4096)
    return len(_attempts(db))


def test_run_keeps_the_rows_a_full_disk_refused_and_writes_them_once_it_can(
    tmp_path: Path, runtime: str
) -> None:
    import resource

    jv, db = _ticks_run(tmp_path, runtime)
    try:
        _freeze_journal(jv, db)
        wait_until(lambda: "journal" in jv.stderr, "the failure is logged", proc=jv.proc)
        _limit_file_size(jv.pid, resource.RLIM_INFINITY)
        assert jv.wait(60) == 0, jv.stderr
    finally:
        jv.close()
    err = jv.stderr
    assert _attempts(db) == list(range(1, 41)), err
    assert "Traceback" not in err
    (failed,) = [line for line in err.splitlines() if "cannot write" in line]
    assert "file size limit" in failed, failed
    (again,) = [line for line in err.splitlines() if "written again" in line]
    assert "kept meanwhile were written" in again
    assert " ERROR " not in err, err


def test_run_says_at_its_end_how_many_rows_a_full_disk_cost(tmp_path: Path, runtime: str) -> None:
    jv, db = _ticks_run(tmp_path, runtime)
    try:
        committed = _freeze_journal(jv, db)
        assert jv.wait(60) == 0, jv.stderr  # the jobs' verdict: they all succeeded
    finally:
        jv.close()
    err = jv.stderr
    assert "Traceback" not in err
    kept = _attempts(db)
    assert kept == list(range(1, len(kept) + 1))
    assert len(kept) >= committed
    (lost,) = [line for line in err.splitlines() if " ERROR " in line]
    missing = 40 - len(kept) + 1  # and the run's end row, queued after them
    assert f"{missing} {'row' if missing == 1 else 'rows'} could not be written" in lost, err
    assert "file size limit" in lost
    assert ["t", "command", "succeeded", "1", "0", "0"] in [
        line.split()[:6] for line in jv.stdout.splitlines()
    ]


def test_run_names_a_file_size_limit_that_stops_the_journal_at_start(tmp_path: Path) -> None:
    import resource

    (tmp_path / "jobs.yaml").write_text(TICKS)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))

    done = subprocess.run(
        [*CLI, "run", "--state-dir", str(tmp_path / "state"), "jobs.yaml"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60, preexec_fn=limited,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("jobvisor: cannot open the journal"), line
    assert "file size limit" in line
    assert "state dir is writable" not in line


def test_a_row_sqlite_refuses_is_stored_escaped_and_holds_back_no_other(tmp_path: Path) -> None:
    from actors import Outcome
    from supervision._events import AttemptFinished

    journal = Journal(tmp_path)
    try:
        journal.record(_attempt(1))
        journal.record(
            AttemptFinished(
                path="j", at=2.0, attempt=2, outcome=Outcome.FAILED,
                error="OSError: bad name b'\\xff' read as '\udcff'", started_at=2.0, code=2**70,
            )
        )  # fmt: skip
        journal.record(_attempt(3))
        assert journal.flush()
    finally:
        assert journal.close() == 0
    rows = read_history(tmp_path / FILENAME)
    assert [row["attempt"] for row in rows] == [1, 2, 3]
    assert rows[1]["error"] == "OSError: bad name b'\\xff' read as '\\udcff'"
    assert rows[1]["code"] == float(2**70)  # SQLite's INTEGER affinity takes it as a REAL


def test_history_of_a_path_is_that_path_and_below_it_only(tmp_path: Path) -> None:
    """``a_b`` is a_b and a_b/..., never axb/... (``_`` and ``%`` are LIKE's wildcards), nor
    A_B/... (LIKE ignores ASCII case)."""
    from actors import Outcome
    from supervision._events import AttemptFinished

    journal = Journal(tmp_path)
    for n, path in enumerate(("a_b", "a_b/c", "axb/c", "A_B/c", "a%/c", "ab/c", "a_b2")):
        journal.record(
            AttemptFinished(path=path, at=float(n), attempt=1, outcome=Outcome.SUCCEEDED,
                            error=None, started_at=float(n), code=0)
        )  # fmt: skip
    assert journal.flush()
    journal.close()
    db = tmp_path / FILENAME
    assert [r["path"] for r in read_history(db, "a_b")] == ["a_b", "a_b/c"]
    assert [r["path"] for r in read_history(db, "a%")] == ["a%/c"]
    assert [r["path"] for r in read_history(db, "A_B")] == ["A_B/c"]


def test_recent_attempts_of_many_jobs_stay_within_a_total(tmp_path: Path) -> None:
    """10,000 jobs x 60 attempts was one 89 MB answer read in 1.7 s: with many jobs each
    gets fewer (never none), so that the answer holds at most ``total`` rows."""
    from actors import Outcome
    from supervision._events import AttemptFinished
    from supervision._history import read_recent_attempts

    journal = Journal(tmp_path)
    for n in range(1, 6):
        for p in range(30):
            journal.record(
                AttemptFinished(path=f"w.{p}", at=float(n), attempt=n, outcome=Outcome.FAILED,
                                error="boom", started_at=n - 0.5, code=1)
            )  # fmt: skip
    assert journal.flush()
    journal.close()
    db = tmp_path / FILENAME
    recent = read_recent_attempts(db, None, 5, total=60)
    assert len(recent) == 30
    assert {len(rows) for rows in recent.values()} == {2}
    assert [r["attempt"] for r in recent["w.7"]] == [4, 5]  # each job's newest
    assert {len(rows) for rows in read_recent_attempts(db, None, 5, total=10).values()} == {1}
    assert {len(rows) for rows in read_recent_attempts(db, None, 5).values()} == {5}


def _rows_of(db: Path, table: str, path: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(
            conn.execute(f"SELECT COUNT(*) FROM {table} WHERE path = ?", (path,)).fetchone()[0]
        )
    finally:
        conn.close()


def test_the_journal_keeps_a_bounded_number_of_rows_per_job_and_what_a_restore_needs(
    tmp_path: Path,
) -> None:
    """A tight loop grew the journal without limit (1M attempts and 1M decisions, 165 MB in
    14 minutes). It keeps ``keep`` rows of each job in each table, the newest, pruned by its
    writer; never the rows --resume and a daemon's restore read: each job's latest attempt,
    each breaker's latest state, the latest decision a cooldown is restored from."""
    import time

    from actors import Outcome
    from supervision import _events as ev
    from supervision._history import last_breaker_states, open_cooldowns

    db = tmp_path / FILENAME
    journal = Journal(tmp_path, keep=20)
    try:
        journal.record(
            ev.AttemptFinished(
                path="once",
                at=1.0,
                attempt=1,
                outcome=Outcome.SUCCEEDED,
                error=None,
                started_at=0.5,
                code=0,
            )
        )
        journal.record(ev.BreakerChanged(path="loop", at=1.0, name="api", old="closed", new="open"))
        journal.record(ev.CooldownStarted(path="loop", at=time.time(), duration=3600.0, cycle=2))
        for i in range(600):
            journal.record(
                ev.AttemptFinished(
                    path="loop",
                    at=2.0 + i,
                    attempt=i + 1,
                    outcome=Outcome.FAILED,
                    error="boom",
                    started_at=1.0 + i,
                    code=1,
                )
            )
            # No decision about the job's state: the cooldown before them is still its last.
            journal.record(ev.ThreadAbandoned(path="loop", at=2.0 + i, thread=f"t{i}"))
        assert journal.flush()
        wait_until(
            lambda: (
                _rows_of(db, "attempts", "loop") == 20 and _rows_of(db, "decisions", "loop") == 21
            ),
            "the loop's rows pruned to 20 (and its cooldown)",
        )
    finally:
        journal.close()
    attempts = [r["attempt"] for r in read_history(db, "loop", limit=100) if r["type"] == "attempt"]
    assert attempts == list(range(581, 601)), "the newest are kept"
    (once,) = read_history(db, "once", limit=10)
    assert (once["type"], once["outcome"]) == ("attempt", "succeeded"), "its success is kept"
    assert last_breaker_states(db) == {"api": ("open", 1.0)}
    assert open_cooldowns(db, time.time())["loop"][1] == 2
    # A journal grown before (or under a larger keep) is pruned once its job writes again.
    journal = Journal(tmp_path, keep=5)
    try:
        journal.record(
            ev.AttemptFinished(
                path="loop",
                at=700.0,
                attempt=601,
                outcome=Outcome.FAILED,
                error="boom",
                started_at=699.0,
                code=1,
            )
        )
        assert journal.flush()
        wait_until(lambda: _rows_of(db, "attempts", "loop") == 5, "the loop's old rows pruned")
    finally:
        journal.close()
    assert _rows_of(db, "attempts", "once") == 1
    assert _rows_of(db, "decisions", "loop") == 21, "no decision of loop's was written: untouched"


# -- a wall clock that jumps -----------------------------------------------------------------------
# A row's time is the event's wall time (time.time()): after the clock jumps back an hour, the
# newest rows carry older times than the rows before them. "Newest" is the order rows were
# written in; each row still shows its own wall time.

_JUMPS = (1000.0, 4600.0, -2600.0)  # the wall time of each third of the rows: +1h, then -2h


def _jumping(path: str, number: int) -> Any:
    """Attempt ``number`` (1..9) of ``path``, its wall time a third of the rows later jumped."""
    from actors import Outcome
    from supervision._events import AttemptFinished

    at = _JUMPS[(number - 1) // 3] + number
    return AttemptFinished(path=path, at=at, attempt=number, outcome=Outcome.SUCCEEDED,
                           error=None, started_at=at - 0.5, code=0)  # fmt: skip


def test_history_is_newest_first_by_when_rows_were_written_not_by_their_wall_time(
    tmp_path: Path,
) -> None:
    """After the clock jumped back, ``history --limit N`` showed the rows of the hour before
    the jump (their wall times the latest), not the newest ones."""
    from supervision._events import RestartScheduled

    journal = Journal(tmp_path)
    for number in range(1, 10):
        journal.record(_jumping("j", number))
        at = _JUMPS[(number - 1) // 3] + number + 0.1
        journal.record(RestartScheduled(path="j", at=at, delay=0.5, number=number))
    assert journal.flush()
    journal.close()
    db = tmp_path / FILENAME
    rows = read_history(db, "j", limit=4)
    assert [(r["type"], r.get("attempt"), r["at"]) for r in rows] == [
        ("attempt", 8, -2592.0),
        ("decision", None, -2591.9),
        ("attempt", 9, -2591.0),
        ("decision", None, -2590.9),
    ]
    everything = read_history(db, None, limit=100)
    assert [r["attempt"] for r in everything if r["type"] == "attempt"] == list(range(1, 10))
    shown = subprocess.run(
        [*CLI, "history", "j", "--limit", "2", "--state-dir", str(tmp_path)],
        env=ENV, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        "j  attempt 9 succeeded (0)",
        "j  restart (delay=0.5s, number=9)",
    ], lines
    # A journal opened again goes on after its newest rows, whatever their times.
    journal = Journal(tmp_path)
    journal.record(_jumping("k", 1))  # wall time 1001: before most of them
    assert journal.flush()
    journal.close()
    (last,) = read_history(db, None, limit=1)
    assert (last["path"], last["at"]) == ("k", 1001.0)


def test_rows_from_before_the_order_was_kept_come_first_by_their_wall_time(tmp_path: Path) -> None:
    """A journal written by an older jobvisor has no order of its own: its rows go by their
    time, before every row written since."""
    db = tmp_path / FILENAME
    with sqlite3.connect(db) as conn:
        conn.executescript(f"{MIGRATIONS[0]} {MIGRATIONS[1]} PRAGMA user_version = 2;")
        for number, at in ((1, 30.0), (2, 10.0)):
            conn.execute(
                "INSERT INTO attempts (path, attempt, started_at, ended_at, outcome) "
                "VALUES ('old', ?, ?, ?, 'succeeded')",
                (number, at, at),
            )
        conn.execute(
            "INSERT INTO decisions (at, path, kind, detail) VALUES (20.0, 'old', 'restart', '{}')"
        )
    conn.close()
    # `history` of a journal no jobvisor of this version has opened yet (a read-only dir).
    assert [r["at"] for r in read_history(db, None, limit=10)] == [10.0, 20.0, 30.0]
    journal = Journal(tmp_path)
    journal.record(_jumping("new", 1))  # 1001
    journal.record(_jumping("new", 7))  # -2593: after it, written later
    assert journal.flush()
    journal.close()
    assert [r["at"] for r in read_history(db, None, limit=10)] == [
        10.0,
        20.0,
        30.0,
        1001.0,
        -2593.0,
    ]
    assert [r["at"] for r in read_history(db, None, limit=2)] == [1001.0, -2593.0]


def test_pruning_keeps_the_rows_written_last_whatever_their_wall_time(tmp_path: Path) -> None:
    from supervision._events import ThreadAbandoned

    db = tmp_path / FILENAME
    journal = Journal(tmp_path, keep=4)
    try:
        for number in range(1, 10):
            journal.record(_jumping("loop", number))
            at = _JUMPS[(number - 1) // 3] + number
            journal.record(ThreadAbandoned(path="loop", at=at, thread=f"t{number}"))
        assert journal.flush()
        wait_until(
            lambda: (
                _rows_of(db, "attempts", "loop") == 4 and _rows_of(db, "decisions", "loop") == 4
            ),
            "the loop's rows pruned to 4",
        )
    finally:
        journal.close()
    rows = read_history(db, "loop", limit=100)
    assert [r["attempt"] for r in rows if r["type"] == "attempt"] == [6, 7, 8, 9]
    assert [r["detail"]["thread"] for r in rows if r["type"] == "decision"] == [
        "t6",
        "t7",
        "t8",
        "t9",
    ]


def test_resume_restore_and_persistent_ticks_read_the_rows_written_last(tmp_path: Path) -> None:
    """What ``run --resume``, a persistent job's first tick and a daemon's restore read is each
    path's row written last, not the one with the latest wall time; a cooldown journaled before
    the clock went back keeps no more than its own length."""
    import time

    from supervision._events import BreakerChanged, CooldownStarted
    from supervision._history import last_breaker_states, last_ticks, open_cooldowns

    db = tmp_path / FILENAME
    journal = Journal(tmp_path, hashes={"j": "h1"})
    for number in range(1, 10):
        journal.record(_jumping("j", number))
    journal.record(BreakerChanged(path="j", at=5000.0, name="api", old="closed", new="open"))
    journal.record(BreakerChanged(path="j", at=100.0, name="api", old="open", new="closed"))
    now = time.time()
    journal.record(CooldownStarted(path="c", at=now + 3600, duration=30.0, cycle=2))
    assert journal.flush()
    journal.close()
    assert read_successes(db) == {"j": {"h1": (0, -2591.0)}}
    assert last_ticks(db, ["j"]) == {"j": -2591.5}
    assert last_breaker_states(db) == {"api": ("closed", 100.0)}
    left, cycle = open_cooldowns(db, now)["c"]
    assert (left, cycle) == (30.0, 2)


def test_a_reloads_rehash_hashes_only_the_jobs_it_changed_and_forgets_the_removed(
    tmp_path: Path,
) -> None:
    """``rehash`` (a daemon's reload step): a job whose spec is the same keeps the hash it has
    (not computed again: a reload of one job in 10,000 hashes one), a changed or added one is
    journaled under its new spec's hash, made with the journal's base, a removed one under
    none; a replace of a group by a job forgets the group's jobs."""
    same, changed = (
        python_job("same", "jobfuncs:ok", "s"),
        python_job("changed", "jobfuncs:ok", "1"),
    )
    gone, added = python_job("gone", "jobfuncs:ok", "g"), python_job("added", "jobfuncs:ok", "a")
    old = SupervisorSpec(name="g", children=(same, changed, gone))
    new = SupervisorSpec(
        name="g", children=(same, python_job("changed", "jobfuncs:ok", "2"), added)
    )
    kept = {"g/same": "kept", "g/changed": "old", "g/gone": "old"}
    journal = Journal(tmp_path, hashes=dict(kept), base="/here")
    try:
        journal.rehash("g", old, new)
        job = python_job("g", "jobfuncs:ok")
        journal.rehash("h", None, new)
        journal.rehash("h", new, job)  # a group replaced by a job
        paths = ("g/same", "g/changed", "g/gone", "g/added", "h", "h/same")
        for number, path in enumerate(paths):
            journal.record(
                AttemptFinished(
                    path=path,
                    at=float(number),
                    attempt=1,
                    outcome=Outcome.SUCCEEDED,
                    error=None,
                    started_at=float(number),
                    code=0,
                )
            )
        assert journal.flush()
    finally:
        journal.close()
    with contextlib.closing(sqlite3.connect(tmp_path / FILENAME)) as db:
        rows = dict(db.execute("SELECT path, spec_hash FROM attempts").fetchall())
    assert rows == {
        "g/same": "kept",
        "g/changed": job_hash(new.children[1], "/here"),
        "g/gone": None,
        "g/added": job_hash(added, "/here"),
        "h": job_hash(job, "/here"),
        "h/same": None,
    }
