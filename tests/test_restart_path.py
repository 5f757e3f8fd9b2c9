"""The immediate restart path: a plain actor restarted in the supervisor's turn keeps every guarantee.

An actor without ``on_start`` restarted with no backoff is counted started
as it is launched (no ChildStarted message). These tests hold that path to
what the slower one promised: one exit report per incarnation, no message to
the stable reference lost, states in order, and no per-thread state carried
from a crashed incarnation into the next.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
from typing import Any

import logbook
import pykka
from faultkit import wait_until
from prockit import running

from actors import CommandWork
from actors._job import JobActor
from supervision import (
    ActorSpec,
    Backoff,
    ChildExited,
    Intensity,
    JobSpec,
    RestartPolicy,
    RestartType,
    SupervisorSpec,
)

CYCLES = 30

NOW = RestartPolicy(
    backoff=Backoff(initial=0, max=0, jitter=0), intensity=Intensity(max_restarts=1000)
)

_LOCAL = threading.local()


class Plain(pykka.ThreadingActor):
    """No ``on_start``: nothing to report before its first message. Counts what it handles."""

    def __init__(self) -> None:
        super().__init__()
        self.handled = 0

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("asked to crash")
        if message == "count":
            self.handled += 1
            return None
        if message == "handled?":
            return self.handled
        if message == "local?":
            seen = getattr(_LOCAL, "mark", None)
            _LOCAL.mark = "set by an earlier incarnation"
            return seen
        return "pong"


def tree_of(make_tree: Any, events: Any) -> Any:
    spec = SupervisorSpec(policy=NOW, children=(ActorSpec(name="p", actor_class=Plain),))
    tree = make_tree(spec, on_event=events)
    assert tree.started(timeout=20)
    return tree


def test_each_incarnation_reports_one_exit_and_comes_back_running(make_tree, events) -> None:
    tree = tree_of(make_tree, events)
    ref = tree.ref("p")
    for _ in range(CYCLES):
        ref.tell("crash")
        assert ref.ask("ping", timeout=20) == "pong"
    child = tree.status()["children"][0]
    assert (child["restarts"], child["state"]) == (CYCLES, "running")
    events.reached("p", "running", times=CYCLES + 1)  # events arrive on their own thread
    exits = events.of(ChildExited, "p")
    assert len(exits) == CYCLES  # one per crashed incarnation, none twice
    states = events.states("p")
    assert states[:2] == ["starting", "running"]
    assert states[2:] == ["backoff", "starting", "running"] * CYCLES


def test_messages_told_across_a_restart_all_reach_the_next_incarnation(make_tree, events) -> None:
    tree = tree_of(make_tree, events)
    ref = tree.ref("p")
    for _ in range(CYCLES):
        ref.tell("crash")
        for _ in range(10):
            ref.tell("count")  # stashed while the next incarnation starts
        assert ref.ask("handled?", timeout=20) == 10


def test_thread_local_state_never_survives_a_restart(make_tree, events) -> None:
    tree = tree_of(make_tree, events)
    ref = tree.ref("p")
    assert ref.ask("local?", timeout=20) is None
    assert ref.ask("local?", timeout=20) is not None  # same incarnation, same thread
    for _ in range(3):
        ref.tell("crash")
        assert ref.ask("local?", timeout=20) is None  # a new incarnation, a new thread


def test_a_crashed_incarnation_is_not_kept_alive_by_its_idle_supervisor(make_tree, events) -> None:
    # The exit report is often a supervisor's last message, and its error's traceback holds
    # the crashed incarnation's frames. Kept by the supervisor's loop until its next message,
    # it kept the whole dead actor alive (and made the leak check's object count flaky).
    with logbook.NullHandler().applicationbound():  # the `logs` fixture's records hold frames
        tree = tree_of(make_tree, events)
        ref = tree.ref("p")
        assert ref.ask("ping", timeout=20) == "pong"
        (actor_ref,) = [
            r for r in pykka.ActorRegistry.get_all() if r.actor_class.__name__ == "SupervisedPlain"
        ]
        old = actor_ref._actor_weakref
        task = old()._jv_task
        del actor_ref
        ref.tell("crash")
        assert ref.ask("ping", timeout=20) == "pong"  # answered by the next incarnation
        task.join(10)
        del task

        # The supervisor ends its turn on its own thread after the next incarnation answers:
        # poll for the actor's end, which never comes while the loop holds the exit report.
        def collected() -> bool:
            gc.collect()
            return old() is None

        wait_until(collected, "the crashed incarnation collected", timeout=10)
        assert old() is None


def _sleeping_children() -> set[int]:
    """Pids of this process's children running ``sleep 30`` (the warden is a child too)."""
    return running(("sleep", "30"))


def _newest_job_task() -> Any:
    """The task (thread or greenlet) of the newest running job incarnation, once it has one."""
    actors = [
        r._actor_weakref() for r in pykka.ActorRegistry.get_all() if r.actor_class is JobActor
    ]
    actors = [a for a in actors if a is not None and a._jv_running]
    if not actors:
        return None
    return max(actors, key=lambda a: a._jv_link.incarnation)._jv_task


def test_a_commands_incarnations_run_on_pooled_threads(make_tree, events, runtime) -> None:
    # A command incarnation runs no Python of the user's: its thread runs the next one too
    # (actors._runtime.start_task's reuse). Each restart here is a real SIGKILL to the command.
    # With a backoff, each goes through the supervisor (one at once restarts in place:
    # tests/test_inplace.py).
    backoff = Backoff(initial=0.001, max=0.001, jitter=0)
    spec = SupervisorSpec(
        policy=RestartPolicy(backoff=backoff, intensity=Intensity(max_restarts=1000)),
        children=(
            JobSpec(
                name="c",
                work=CommandWork(argv=("sleep", "30")),
                restart=RestartType.PERMANENT,
            ),
        ),
    )
    tree = make_tree(spec, on_event=events)
    assert tree.started(timeout=20)
    tasks, killed = [], set()
    for i in range(6):
        pid = wait_until(lambda: _sleeping_children() - killed, "the command to run").pop()
        tasks.append(wait_until(_newest_job_task, "its incarnation to run"))
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
        events.reached("c", "running", times=i + 2)
    distinct = {id(t) for t in tasks}
    if runtime == "threads":
        # The old thread parks as the next incarnation starts: two threads take turns at most.
        assert len(distinct) <= 2
        assert all(t.is_alive() for t in tasks)
    else:
        assert len(distinct) == len(tasks)  # greenlets: each incarnation its own
    assert tree.stop(timeout=20)
    assert not [t for t in threading.enumerate() if t.name.startswith(f"jv-{tree_id(tree)}-")]


def tree_id(tree: Any) -> str:
    return tree._ctx.tree_id


def test_a_stop_is_no_error_but_what_failed_as_it_stopped_is_one_in_every_report(
    make_tree: Any, events: Any, tmp_path: Any, logs: logbook.TestHandler
) -> None:
    """``tree.restart(path)`` (``jobvisor restart``) of running services: an attempt and the
    exit it ends are ``stopped`` alike. The stop's own SIGTERM or cancellation is no error
    (SPEC §2); what the work raised as it stopped (a flush that failed) or an exit status of
    its own (a trap's ``exit 3``) is one, in ``attempt_finished``, ``child_exited``, the
    status, the history and a warning (it was dropped from all of them)."""
    import textwrap

    from supervision import AttemptFinished, Outcome, load_manifest
    from supervision._history import FILENAME, read_history
    from supervision._journal import Journal, job_hashes

    trapped = tmp_path / "trapped"
    spec = load_manifest(
        textwrap.dedent(f"""
        version: 1
        jobs:
          - {{name: sleeper, service: true, command: [sleep, "60"]}}
          - name: trapper
            service: true
            command: [sh, -c, "trap 'exit 3' TERM; touch {trapped}; while true; do sleep 0.05; done"]
          - {{name: py, service: true, python: "jobfuncs:block", args: [restarted]}}
          - {{name: flush, service: true, python: "jobfuncs:fail_on_stop", args: [flush]}}
        """)
    ).tree_spec()
    journal = Journal(tmp_path, hashes=job_hashes(spec))
    names = ("sleeper", "trapper", "py", "flush")
    try:
        tree = make_tree(spec, on_event=lambda e: (journal.record(e), events(e)))
        assert tree.started(timeout=20)
        wait_until(trapped.exists, "the trap set")  # its stop's SIGTERM comes after the trap
        for name in names:
            tree.restart(name)
            events.reached(name, "running", times=2)
        assert journal.flush()
    finally:
        journal.close()
    lost = "RuntimeError: flush on shutdown failed: flush lost 312 rows"
    reports = {}
    for name in names:
        (attempt,) = [e for e in events.of(AttemptFinished, name) if e.attempt == 1]
        (exited,) = events.of(ChildExited, name)
        reports[name] = (
            (attempt.outcome, attempt.error, attempt.code),
            (exited.outcome, exited.error, exited.code),
        )
    assert {k: v for k, v in reports.items() if k != "trapper"} == {
        "sleeper": ((Outcome.STOPPED, None, -15), (Outcome.STOPPED, None, -15)),
        "py": ((Outcome.STOPPED, None, None), (Outcome.STOPPED, None, None)),
        "flush": ((Outcome.STOPPED, lost, None), (Outcome.STOPPED, lost, None)),
    }
    (trap_attempt, trap_exit) = reports["trapper"]
    assert trap_attempt == trap_exit
    assert trap_attempt[0] is Outcome.STOPPED
    assert trap_attempt[2] == 3
    assert "exited with 3" in (trap_attempt[1] or ""), trap_attempt
    last = {c["name"]: c["last_exit"] for c in tree.status()["children"]}
    shown = {name: (last[name]["outcome"], last[name]["error"]) for name in names}
    assert shown == {
        "sleeper": ("stopped", None),
        "trapper": ("stopped", trap_attempt[1]),
        "py": ("stopped", None),
        "flush": ("stopped", lost),
    }
    rows = {
        name: [
            (r.get("outcome"), r.get("error"))
            for r in read_history(tmp_path / FILENAME, name)
            if r.get("kind", "attempt") == "attempt" and r.get("attempt") == 1
        ]
        for name in names
    }
    assert rows == {
        "sleeper": [("stopped", None)],
        "trapper": [("stopped", trap_attempt[1])],
        "py": [("stopped", None)],
        "flush": [("stopped", lost)],
    }, rows
    # A raised error is said at WARNING; a trap's exit status is how it stopped, said as the
    # status says it (its WARNING read as a failure, which the status did not count).
    warned = [
        r.message for r in logs.records if r.level_name == "WARNING" and "stream" not in r.extra
    ]
    assert warned == [f"flush: failed while stopping: {lost}"], warned
    trapper = [
        (r.level_name, r.message)
        for r in logs.records
        if r.extra.get("path") == "trapper" and "stream" not in r.extra
    ]
    assert ("INFO", "trapper: stopped (exited with 3 on its stop signal)") in trapper, trapper
