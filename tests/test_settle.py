"""Trees with nothing left to run settle at once; counters and errors say what happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import jobfuncs
import pytest
from actorkit import Journal, Recorder
from faultkit import Jobvisor, wait_until

from supervision import (
    ActorSpec,
    Backoff,
    Intensity,
    JobSpec,
    NoSuchChildError,
    OnExhausted,
    PythonWork,
    RestartPolicy,
    RestartType,
    Schedule,
    Strategy,
    SupervisorSpec,
    Tree,
    python_job,
    start_tree,
)
from supervision._journal import Journal as JobJournal
from supervision._table import flatten_status

ROOT = Path(__file__).resolve().parent.parent
SLOW_BACKOFF = RestartPolicy(backoff=Backoff(initial=60.0, max=60.0, jitter=0))
FAST_ONCE = RestartPolicy(backoff=Backoff(initial=0.001, max=0.001, jitter=0))


def actor(name: str, journal: Journal) -> ActorSpec:
    return ActorSpec(
        name=name, actor_class=Recorder, args=(name, journal), restart=RestartType.PERMANENT
    )


def returning_service(name: str, key: str) -> JobSpec:
    """A service that returns at once: each run a failure, restarted until it gives up."""
    return JobSpec(
        name=name,
        work=PythonWork(target="jobfuncs:service_returns", args=(key,)),
        schedule=Schedule(service=True),
        restart=RestartType.PERMANENT,
    )


def blocked_job(name: str) -> JobSpec:
    """A once-job that runs until the test sets its event (or it is stopped)."""
    return JobSpec(name=name, work=PythonWork(target="jobfuncs:block", args=(name,)))


class TestEmptyTrees:
    def test_a_tree_with_no_children_settles_and_stops_at_once(self, runtime) -> None:
        begun = time.monotonic()
        with start_tree(SupervisorSpec(children=()), runtime) as tree:
            assert tree.wait(5)
            assert tree.result().ok
        assert tree.ended
        assert time.monotonic() - begun < 3

    def test_an_empty_group_is_no_leaf_to_wait_for(self, make_tree) -> None:
        tree = make_tree(SupervisorSpec(children=(SupervisorSpec(name="g", children=()),)))
        assert tree.wait(5)
        assert tree.stop(5)

    def test_removing_every_child_of_a_group_settles_the_tree(
        self, make_tree, logs, journal: Journal
    ) -> None:
        group = SupervisorSpec(name="g", children=(actor("a", journal),))
        tree = make_tree(SupervisorSpec(children=(group,)))
        assert tree.started(10)
        assert not tree.wait(0.05), "an endless actor keeps the tree up"
        tree.remove_child("g/a")
        assert tree.wait(5)
        assert not tree.ended, "settled, not stopped: children may still be added"
        assert any("g: no children left; idle" in r.message for r in logs.records)

    def test_a_tree_whose_every_service_gave_up_knows_nothing_runs_again(
        self, make_tree, events
    ) -> None:
        dead = returning_service("dead", "dead")
        inner = SupervisorSpec(name="g", policy=FAST_ONCE, children=(replace(dead, name="deep"),))
        tree = make_tree(SupervisorSpec(policy=FAST_ONCE, children=(dead, inner)), on_event=events)
        events.reached("dead", "gave_up")
        events.reached("g/deep", "gave_up")
        assert tree.all_dead()
        assert not tree.wait(0.05), "endless leaves: it waits for a signal (SPEC)"
        tree.start_child("dead")
        assert not tree.all_dead(), "started again by a person"

    def test_a_service_that_still_runs_or_was_stopped_is_not_dead(
        self, make_tree, journal, events
    ) -> None:
        dead = returning_service("dead", "dead2")
        children = (dead, actor("up", journal))
        tree = make_tree(SupervisorSpec(policy=FAST_ONCE, children=children), on_event=events)
        events.reached("dead", "gave_up")
        assert not tree.all_dead(), "up still runs"
        tree.stop_child("up")
        assert not tree.all_dead(), "a person's stop is no end"

    def test_run_says_why_it_waits_when_every_service_gave_up(self, tmp_path: Path) -> None:
        (tmp_path / "jobs.yaml").write_text(
            "version: 1\n"
            "supervisor: {intensity: {max_restarts: 0}}\n"
            "jobs:\n  - {name: web, service: true, command: 'exit 3'}\n"
        )
        said = (
            "nothing is left running: every job gave up or failed, and none restarts by "
            "itself; run waits for Ctrl-C (SIGINT or SIGTERM), as for a manifest with no "
            "finite job (a job started again through the HTTP API would run)"
        )
        jv = Jobvisor(tmp_path, "run")  # its stderr in a file: a deadline, not a blocked read
        try:
            lines = wait_until(
                lambda: [x for x in jv.stderr.splitlines() if "nothing is left running" in x],
                "run says nothing is left running",
                proc=jv.proc,
            )
            assert lines[-1].rstrip().endswith(said), lines
            jv.proc.send_signal(signal.SIGINT)
            assert jv.wait(30) == 1
        finally:
            jv.close()

    def test_removing_a_group_forgets_the_jobs_under_it(self, make_tree) -> None:
        group = SupervisorSpec(name="g", children=(blocked_job("held"),))
        tree = make_tree(SupervisorSpec(children=(group, python_job("quick", "jobfuncs:ok"))))
        assert tree.started(10)
        assert not tree.wait(0.05), "g/held still runs"
        tree.remove_child("g")
        assert tree.wait(5)
        assert tree.result().ok

    def test_a_job_that_succeeded_before_settles_as_succeeded_without_a_start(
        self, make_tree, runtime: str
    ) -> None:
        """``run --resume``'s ``succeeded``: the job stays in the tree, settled with the exit
        the journal kept; one depending on it starts; a group of only such jobs is up."""
        key = f"resumed-{runtime}"
        group = SupervisorSpec(name="g", children=(python_job("x", "jobfuncs:fail", key),))
        spec = SupervisorSpec(
            children=(
                python_job("a", "jobfuncs:fail", key),
                JobSpec(
                    name="b",
                    work=PythonWork(target="jobfuncs:ok", args=("b",)),
                    depends_on=("a",),
                ),
                group,
            )
        )
        tree = make_tree(spec, succeeded={"a": (0, 1700000000.5), "g/x": (None, 1.0)})
        assert tree.wait(10)
        assert tree.result().ok
        nodes = {n["path"]: n for n in flatten_status(tree.status())}
        for path, code, at in (("a", 0, 1700000000.5), ("g/x", None, 1.0)):
            node = nodes[path]
            assert (node["state"], node["starts"], node["failures"]) == ("succeeded", 0, 0)
            assert node["last_exit"] == {
                "outcome": "succeeded",
                "code": code,
                "error": None,
                "at": at,
            }
        assert (nodes["b"]["state"], nodes["b"]["starts"]) == ("succeeded", 1)
        assert nodes["g"]["state"] == "running"
        assert jobfuncs.CALLS[key] == 0, "neither ran"

    def test_run_resume_with_every_once_job_done_exits_at_once(self, tmp_path: Path) -> None:
        (tmp_path / "jobs.yaml").write_text(
            "version: 1\njobs:\n  - name: once\n    command: [sh, -c, 'echo ran >> runs.txt']\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, str(ROOT / "cli.py"), "run", *args],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=30,
                env=env,
                check=False,
            )

        assert run().returncode == 0
        out = run("--resume")
        assert out.returncode == 0, out.stderr
        assert "skipped: once" in out.stderr
        assert (tmp_path / "runs.txt").read_text() == "ran\n"


@pytest.fixture
def journal() -> Journal:
    Recorder.incarnations.clear()
    return Journal()


@pytest.fixture
def book(tmp_path: Path) -> Iterator[JobJournal]:
    """A real journal the tree writes to; closed after the test."""
    journal = JobJournal(tmp_path)
    yield journal
    journal.close()


def decisions(book: JobJournal, path: str) -> list[str]:
    assert book.flush()
    return [row["kind"] for row in book.history(path) if row["type"] == "decision"]


class TestCounters:
    @pytest.fixture
    def in_backoff(self, make_tree, events, journal: Journal, book: JobJournal) -> Tree:
        """A tree whose only child crashed and waits a minute for its restart."""
        tree = make_tree(
            SupervisorSpec(policy=SLOW_BACKOFF, children=(actor("w", journal),)),
            on_event=events,
            sink=book.record,
        )
        tree.ref("w").tell("crash")
        events.reached("w", "backoff")
        return tree

    def test_a_restart_cancelled_by_stop_during_backoff_is_no_restart(
        self, in_backoff: Tree, book: JobJournal
    ) -> None:
        in_backoff.stop_child("w")
        node = in_backoff.status()["children"][0]
        assert (node["state"], node["failures"], node["restarts"]) == ("stopped", 1, 0)
        # The journal says so, and who: the person's stop cancelled it.
        assert decisions(book, "w") == ["restart", "person_stop", "restart_cancelled"]
        in_backoff.start_child("w")
        assert in_backoff.ref("w").ask("ping", timeout=5) == ("pong", "w", 2)
        assert in_backoff.status()["children"][0]["restarts"] == 0, "a person's start is none"

    def test_a_restart_overtaken_by_a_persons_restart_is_no_restart(
        self, in_backoff: Tree, book: JobJournal
    ) -> None:
        in_backoff.restart("w")
        assert in_backoff.ref("w").ask("ping", timeout=5) == ("pong", "w", 2)
        assert in_backoff.status()["children"][0]["restarts"] == 0
        assert decisions(book, "w") == ["restart", "restart_cancelled", "person_restart"]

    def test_a_group_restart_cancelled_by_stop_is_no_restart(
        self, make_tree, events, journal: Journal
    ) -> None:
        spec = SupervisorSpec(
            strategy=Strategy.ONE_FOR_ALL,
            policy=SLOW_BACKOFF,
            children=(actor("a", journal), actor("b", journal)),
        )
        tree = make_tree(spec, on_event=events)
        assert tree.started(10)
        tree.ref("a").tell("crash")
        events.reached("a", "backoff")
        events.reached("b", "backoff")
        tree.stop_child("a")
        tree.stop_child("b")
        assert [n["restarts"] for n in tree.status()["children"]] == [0, 0]

    def test_restarts_count_the_restarts_that_happened(self, make_tree, events) -> None:
        policy = RestartPolicy(backoff=Backoff(initial=0.001, max=0.001, jitter=0))
        job = JobSpec(
            name="f",
            work=PythonWork(target="jobfuncs:fail_times", args=("f", 2)),
            schedule=Schedule(),
        )
        tree = make_tree(SupervisorSpec(policy=policy, children=(job,)), on_event=events)
        assert tree.wait(10)
        node = tree.status()["children"][0]
        assert (node["state"], node["starts"], node["restarts"]) == ("succeeded", 3, 2)
        assert jobfuncs.CALLS["f"] == 3


class TestStoppingWhatIsNotRunning:
    def test_a_settled_job_keeps_its_outcome_and_the_stop_says_there_was_nothing_to_stop(
        self, make_tree, events
    ) -> None:
        give_up = RestartPolicy(intensity=Intensity(max_restarts=0))
        spec = SupervisorSpec(
            policy=give_up,
            children=(
                python_job("ok", "jobfuncs:ok", "ok"),
                replace(python_job("bad", "jobfuncs:fail", "bad"), restart=RestartType.TEMPORARY),
                python_job("gone", "jobfuncs:fail", "gone"),
            ),
        )
        tree = make_tree(spec, on_event=events)
        assert tree.wait(10)
        before = {n["path"]: n for n in tree.status()["children"]}
        assert [before[p]["state"] for p in ("ok", "bad", "gone")] == [
            "succeeded",
            "failed",
            "gave_up",
        ]
        for path in ("ok", "bad", "gone"):
            said = tree.stop_child(path)
            assert said == f"{path}: not running ({before[path]['state']}); nothing to stop"
        assert {n["path"]: n for n in tree.status()["children"]} == before, "nothing changed"
        assert tree.result().failed == ("bad", "gone"), "their outcomes still count"
        assert tree.start_child("gone") is None

    def test_a_stop_of_a_stopped_job_says_so_and_a_real_stop_says_nothing(
        self, make_tree, journal: Journal
    ) -> None:
        tree = make_tree(SupervisorSpec(children=(actor("w", journal),)))
        assert tree.started(10)
        assert tree.stop_child("w") is None
        assert tree.stop_child("w") == "w: not running (stopped); nothing to stop"
        assert tree.status()["children"][0]["state"] == "stopped"

    def test_a_job_settled_after_a_group_restart_is_not_stopped_again(
        self, make_tree, events
    ) -> None:
        """A group restart that is over (its members ran again and settled) leaves nothing
        pending for them: a stop of one still finds nothing to stop, its outcome kept."""
        spec = SupervisorSpec(
            strategy=Strategy.ONE_FOR_ALL,
            policy=FAST_ONCE,
            children=(
                python_job("first", "jobfuncs:ok", "settled.first"),
                python_job("second", "jobfuncs:fail_times", "settled.second", 1),
            ),
        )
        tree = make_tree(spec, on_event=events)
        assert tree.wait(10)
        before = {n["path"]: n for n in tree.status()["children"]}
        assert [(before[p]["state"], before[p]["starts"]) for p in ("first", "second")] == [
            ("succeeded", 2),
            ("succeeded", 2),
        ]
        assert tree.stop_child("first") == "first: not running (succeeded); nothing to stop"
        assert {n["path"]: n for n in tree.status()["children"]} == before, "nothing changed"

    def test_a_rest_for_one_restart_takes_down_only_the_rest_of_its_own_failure(
        self, make_tree, events, journal: Journal
    ) -> None:
        """A group restart that is over leaves no members behind for the next one."""
        children = tuple(actor(name, journal) for name in ("a", "b", "c"))
        tree = make_tree(
            SupervisorSpec(strategy=Strategy.REST_FOR_ONE, policy=FAST_ONCE, children=children),
            on_event=events,
        )
        events.reached("c", "running")
        tree.ref("b").tell("crash")
        events.reached("c", "running", times=2)
        tree.ref("c").tell("crash")
        events.reached("c", "running", times=3)
        nodes = {n["path"]: n for n in tree.status()["children"]}
        assert [nodes[p]["starts"] for p in ("a", "b", "c")] == [1, 2, 3]


class TestGroupIncarnations:
    """A group's new incarnation counts on from the one before: numbers never repeat."""

    def test_a_persons_restart_of_a_group_keeps_its_childrens_counters_and_attempts(
        self, make_tree, events, journal: Journal, book: JobJournal
    ) -> None:
        policy = RestartPolicy(
            backoff=Backoff(initial=0.001, max=0.001, jitter=0), intensity=Intensity(max_restarts=2)
        )
        children = (python_job("f", "jobfuncs:fail", "f"), actor("w", journal))
        group = SupervisorSpec(name="g", policy=policy, children=children)
        tree = make_tree(SupervisorSpec(children=(group,)), on_event=events, sink=book.record)
        events.reached("g/f", "gave_up")
        events.reached("g/w", "running")
        tree.restart("g")
        events.reached("g/f", "gave_up", times=2)
        events.reached("g/w", "running", times=2)
        nodes = {n["path"]: n for n in flatten_status(tree.status())}
        f, w = nodes["g/f"], nodes["g/w"]
        assert (f["starts"], f["restarts"], f["failures"]) == (6, 4, 6)
        assert f["last_exit"]["error"] == "RuntimeError: f failed on call 6"
        assert (w["starts"], w["restarts"], w["failures"]) == (2, 0, 0)
        assert book.flush()
        attempts = [r["attempt"] for r in book.history("g/f") if r["type"] == "attempt"]
        assert attempts == [1, 2, 3, 4, 5, 6], "the attempts count on: none repeats"

    def test_a_group_strategys_restart_of_a_nested_group_keeps_the_counters_below_it(
        self, make_tree, events, journal: Journal
    ) -> None:
        inner = SupervisorSpec(name="h", policy=FAST_ONCE, children=(actor("a", journal),))
        outer = SupervisorSpec(name="g", policy=FAST_ONCE, children=(inner,))
        spec = SupervisorSpec(
            strategy=Strategy.ONE_FOR_ALL, policy=FAST_ONCE, children=(outer, actor("b", journal))
        )
        tree = make_tree(spec, on_event=events)
        events.reached("b", "running")
        tree.ref("b").tell("crash")
        events.reached("b", "running", times=2)
        events.reached("g/h/a", "running", times=2)
        nodes = {n["path"]: n for n in flatten_status(tree.status())}
        assert [nodes[p]["starts"] for p in ("g", "g/h", "g/h/a", "b")] == [2, 2, 2, 2]
        assert nodes["b"]["failures"] == 1

    def test_a_group_restarted_after_it_escalated_keeps_the_counters_below_it(
        self, make_tree, events, journal: Journal
    ) -> None:
        escalate = RestartPolicy(
            on_exhausted=OnExhausted.ESCALATE, intensity=Intensity(max_restarts=0)
        )
        group = SupervisorSpec(name="g", policy=escalate, children=(actor("a", journal),))
        tree = make_tree(SupervisorSpec(policy=FAST_ONCE, children=(group,)), on_event=events)
        events.reached("g/a", "running")
        tree.ref("g/a").tell("crash")
        events.reached("g/a", "running", times=2)
        nodes = {n["path"]: n for n in flatten_status(tree.status())}
        assert (nodes["g"]["starts"], nodes["g"]["failures"]) == (2, 1)
        a = nodes["g/a"]
        assert (a["starts"], a["failures"], a["last_exit"]["error"]) == (
            2,
            1,
            "RuntimeError: a crashed",
        )

    def test_a_child_a_reload_changed_while_its_group_was_down_starts_from_zero(
        self, make_tree, events, journal: Journal
    ) -> None:
        group = SupervisorSpec(
            name="g", policy=FAST_ONCE, children=(actor("a", journal), actor("b", journal))
        )
        tree = make_tree(SupervisorSpec(children=(group,)), on_event=events)
        events.reached("g/b", "running")
        tree.stop_child("g")
        changed = replace(actor("a", journal), restart=RestartType.TRANSIENT)
        tree.update_group(replace(group, children=(changed, actor("b", journal))), "g")
        tree.start_child("g")
        events.reached("g/b", "running", times=2)
        nodes = {n["path"]: n for n in flatten_status(tree.status())}
        assert (nodes["g/a"]["starts"], nodes["g/b"]["starts"]) == (1, 2)


class TestErrors:
    def test_add_child_under_a_leaf_says_it_is_not_a_group(self, make_tree, journal) -> None:
        tree = make_tree(SupervisorSpec(children=(actor("echo", journal),)))
        assert tree.started(10)
        with pytest.raises(NoSuchChildError, match=r"'echo' is not a group \(actor\)"):
            tree.add_child(actor("x", journal), under="echo")
        with pytest.raises(NoSuchChildError, match="no child at path 'nope'"):
            tree.add_child(actor("x", journal), under="nope")
