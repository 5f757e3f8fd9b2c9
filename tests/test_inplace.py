"""Commands restarted in place: the ending incarnation goes on as the next one, as its supervisor would.

A command whose supervisor would restart it at once (no backoff, intensity
left) restarts in its own thread, with the supervisor's own decision
(``supervision._inplace``); the supervisor counts it from the exit report. These
tests hold that path to what a restart through the supervisor promised: the
same restarts, give-ups, states and events, one exit report per incarnation,
and a stop or a shutdown that ends it whenever it comes.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pykka
import pytest
from conftest import Events
from faultkit import wait_until
from prockit import running

from actors import ChildExit, ChildExits, CommandWork, Link
from actors._job import JobActor
from supervision import (
    AttemptFinished,
    Backoff,
    ChildExited,
    Intensity,
    JobSpec,
    RestartPolicy,
    RestartType,
    Schedule,
    SupervisorSpec,
    start_tree,
)
from supervision._inplace import InPlace
from supervision._policy import Restart, Window

AT_ONCE = Backoff(initial=0, max=0, jitter=0)


def _policy(max_restarts: int, within: float = 1000.0) -> RestartPolicy:
    return RestartPolicy(
        backoff=AT_ONCE, intensity=Intensity(max_restarts=max_restarts, within=within)
    )


def _counting(path: Path, code: int) -> CommandWork:
    """A command that notes each start in ``path`` and exits with ``code``."""
    return CommandWork(shell=f"echo x >> {path}; exit {code}")


def _starts(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def _job_actors() -> list[JobActor]:
    actors = [
        r._actor_weakref() for r in pykka.ActorRegistry.get_all() if r.actor_class is JobActor
    ]
    return [a for a in actors if a is not None]


# -- the permit on its own ----------------------------------------------------------------------


class Inbox(pykka.ThreadingActor):
    """A stand-in supervisor: a real actor that keeps what it is told, each report of a
    ``ChildExits`` in its turn, as the supervisor handles them; ``messages?``: how many
    messages brought them."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[Any] = []
        self.messages: list[type] = []  # the type of each message

    def on_receive(self, message: Any) -> Any:
        if message == "told?":
            return list(self.told)
        if message == "messages?":
            return list(self.messages)
        self.messages.append(type(message))
        self.told.extend(message.reports if isinstance(message, ChildExits) else (message,))
        return None


class Incarnation:
    """What the permit reads and writes of an incarnation: its link."""

    def __init__(self, parent: pykka.ActorRef[Any]) -> None:
        self._jv_link = Link(parent, 7, 3)


@pytest.fixture
def inbox() -> Any:
    ref = Inbox.start()
    yield ref
    ref.stop()


def _permit(
    policy: RestartPolicy,
    window: Window,
    clock: list[float],
    now: list[float] | None = None,
    *,
    fit: float = 0.0,
) -> InPlace:
    """A permit whose policy reads ``clock``; ``now``: the clock its hold reads."""
    return InPlace(
        policy,
        window,
        RestartType.PERMANENT,
        service=False,
        path="c",
        monotonic=lambda: clock[0],
        rand=lambda: 0.5,
        fit=fit,
        clock=(lambda: now[0]) if now is not None else None,
    )


def test_the_permit_restarts_with_the_policys_decision_and_notes_it(inbox) -> None:
    policy, clock = _policy(2, within=10), [100.0]
    window = Window(policy.intensity)
    permit = _permit(policy, window, clock)
    actor = Incarnation(inbox)
    report = ChildExit(7, 3, RuntimeError("exit 1"), 1, attempts=3)
    assert permit(report, actor)
    assert actor._jv_link.incarnation == 4
    assert list(window.restarts) == [100.0]
    assert inbox.ask("told?") == []  # kept back until the next command has started
    assert permit.tell_due() is None  # nothing told for a while: told now
    (told,) = inbox.ask("told?")
    assert told.again == Restart(0.0, 1)
    assert (told.incarnation, told.code, told.attempts) == (3, 1, 3)
    permit.flush()
    assert len(inbox.ask("told?")) == 1  # told once


def test_reports_kept_back_are_told_in_order_also_by_a_revocation(inbox) -> None:
    policy, clock = _policy(5), [100.0]
    permit = _permit(policy, Window(policy.intensity), clock)
    actor = Incarnation(inbox)
    assert permit(ChildExit(7, 3, RuntimeError("exit 1"), 1), actor)
    assert permit(ChildExit(7, 4, RuntimeError("exit 2"), 2), actor)
    assert inbox.ask("told?") == []
    # Revoked with reports kept back: they are told then, in order, behind any told before
    # (the supervisor, handling a stop, may not have handled those yet).
    permit.revoke()
    told = inbox.ask("told?")
    assert [(m.incarnation, m.again) for m in told] == [
        (3, Restart(0.0, 1)),
        (4, Restart(0.0, 2)),
    ]
    permit.flush()
    assert not permit(ChildExit(7, 5, RuntimeError("exit 3"), 3), actor)
    assert len(inbox.ask("told?")) == 2


def test_a_tight_loops_reports_are_told_together_once_per_hold(inbox) -> None:
    policy, clock, now = _policy(1000), [100.0], [5.0]
    permit = _permit(policy, Window(policy.intensity), clock, now)
    actor = Incarnation(inbox)
    incarnations = iter(range(3, 1000))

    def restart(at: float) -> float | None:
        now[0] = at
        assert permit(ChildExit(7, next(incarnations), RuntimeError("exit 1"), 1), actor)
        return permit.tell_due()  # the next command has started

    # A loop's first restarts are told one by one, as they happen.
    for k in range(InPlace.LOOSE):
        assert restart(5.0 + k * 0.001) is None
        assert len(inbox.ask("told?")) == k + 1
    told_at = 5.0 + (InPlace.LOOSE - 1) * 0.001
    # Then they are kept: the command that started is asked to call again when the hold is over.
    for at in (told_at + 0.010, told_at + 0.030):
        assert restart(at) == pytest.approx(told_at + InPlace.HOLD - at)
    assert len(inbox.ask("told?")) == InPlace.LOOSE
    now[0] = told_at + InPlace.HOLD
    assert permit.tell_due() is None  # called again: both told, in order
    told = inbox.ask("told?")
    assert [m.incarnation for m in told] == list(range(3, 3 + InPlace.LOOSE + 2))
    assert [m.again.number for m in told] == list(range(1, InPlace.LOOSE + 3))
    assert permit.tell_due() is None  # nothing kept: nothing to call again for
    # A quiet spell: the next loop's first restarts go one by one again.
    assert restart(now[0] + InPlace.HOLD) is None
    assert len(inbox.ask("told?")) == InPlace.LOOSE + 3


def test_reports_kept_together_are_told_in_one_message_and_one_alone_as_itself(inbox) -> None:
    policy, clock, now = _policy(1000), [100.0], [5.0]
    permit = _permit(policy, Window(policy.intensity), clock, now)
    actor = Incarnation(inbox)
    incarnations = iter(range(3, 1000))
    for k in range(InPlace.LOOSE + 3):  # the loop's first ones alone, then three kept
        now[0] = 5.0 + k * 0.001
        assert permit(ChildExit(7, next(incarnations), RuntimeError("exit 1"), 1), actor)
        permit.tell_due()
    assert inbox.ask("messages?") == [ChildExit] * InPlace.LOOSE
    permit.flush()
    # One message more for the three, in order: the supervisor's turn is woken once for them.
    assert inbox.ask("messages?") == [ChildExit] * InPlace.LOOSE + [ChildExits]
    told = inbox.ask("told?")
    assert [m.incarnation for m in told] == list(range(3, 3 + InPlace.LOOSE + 3))
    assert [m.again.number for m in told] == list(range(1, InPlace.LOOSE + 4))
    # Kept again after a while: one alone is told as itself.
    now[0] += InPlace.HOLD
    assert permit(ChildExit(7, next(incarnations), RuntimeError("exit 1"), 1), actor)
    permit.tell_due()
    assert inbox.ask("messages?") == [ChildExit] * InPlace.LOOSE + [ChildExits, ChildExit]


def test_a_full_hold_is_told_at_once(inbox) -> None:
    policy, clock, now = _policy(10_000), [100.0], [5.0]
    permit = _permit(policy, Window(policy.intensity), clock, now)
    actor = Incarnation(inbox)
    waits = []
    for incarnation in range(3, 3 + InPlace.LOOSE + InPlace.MOST):
        assert permit(ChildExit(7, incarnation, RuntimeError("exit 1"), 1), actor)
        waits.append(permit.tell_due())
    # However fast the loop, the supervisor hears of it at least every MOST restarts.
    assert [w is None for w in waits] == [True] * InPlace.LOOSE + [False] * (InPlace.MOST - 1) + [
        True
    ]
    assert len(inbox.ask("told?")) == InPlace.LOOSE + InPlace.MOST


def test_with_a_fit_only_a_loop_of_long_enough_commands_keeps_its_reports(inbox) -> None:
    # gevent's: a batch is handled in the command's own thread, so only commands that
    # leave room for it beside them keep their reports.
    policy, clock, now = _policy(10_000), [100.0], [5.0]
    permit = _permit(policy, Window(policy.intensity), clock, now, fit=0.005)
    actor = Incarnation(inbox)
    incarnations = iter(range(3, 10_000))

    def restart(after: float) -> float | None:
        now[0] += after
        assert permit(ChildExit(7, next(incarnations), RuntimeError("exit 1"), 1), actor)
        return permit.tell_due()

    # A 1 ms loop: every report is told as it comes, past the first few too.
    for k in range(InPlace.LOOSE + 5):
        assert restart(0.001) is None
        assert len(inbox.ask("told?")) == k + 1
    # Its commands now take 8 ms: reports are kept for the hold, as without a fit.
    assert restart(0.008) == pytest.approx(InPlace.HOLD - 0.008)
    assert restart(0.008) == pytest.approx(InPlace.HOLD - 0.016)
    assert len(inbox.ask("told?")) == InPlace.LOOSE + 5
    # Back to 1 ms: told at once, with what was kept, in order.
    assert restart(0.001) is None
    told = inbox.ask("told?")
    assert [m.incarnation for m in told] == list(range(3, 3 + InPlace.LOOSE + 8))


def test_the_permit_says_no_where_the_policy_would_not_restart_at_once(inbox) -> None:
    policy, clock = _policy(1, within=10), [100.0]
    window = Window(policy.intensity, restarts=[95.0])  # the one restart allowed is spent
    permit = _permit(policy, window, clock)
    actor = Incarnation(inbox)
    assert not permit(ChildExit(7, 3, RuntimeError("exit 1"), 1), actor)
    assert (actor._jv_link.incarnation, list(window.restarts)) == (3, [95.0])
    clock[0] = 106.0  # the window slid past it: restart 1 again
    assert permit(ChildExit(7, 3, RuntimeError("exit 1"), 1), actor)
    assert actor._jv_link.incarnation == 4


def test_a_revoked_permit_and_a_stop_restart_nothing(inbox) -> None:
    policy, clock = _policy(5), [100.0]
    window = Window(policy.intensity)
    actor = Incarnation(inbox)
    permit = _permit(policy, window, clock)
    assert not permit(ChildExit(7, 3, stop_requested=True), actor)  # stopped: no restart
    permit.revoke()
    assert not permit(ChildExit(7, 3, RuntimeError("exit 1"), 1), actor)
    assert actor._jv_link.incarnation == 3
    assert not window.restarts
    assert inbox.ask("told?") == []


def test_a_transient_command_that_succeeds_is_not_restarted(inbox) -> None:
    policy, clock = _policy(5), [100.0]
    permit = InPlace(
        policy,
        Window(policy.intensity),
        RestartType.TRANSIENT,
        service=False,
        path="c",
        monotonic=lambda: clock[0],
        rand=lambda: 0.5,
    )
    actor = Incarnation(inbox)
    assert not permit(ChildExit(7, 3, None, 0), actor)
    assert permit(ChildExit(7, 3, RuntimeError("exit 1"), 1), actor)


# -- in a tree ----------------------------------------------------------------------------------


def test_a_crashing_command_gives_up_after_exactly_its_restarts(make_tree, events, tmp_path):
    starts = tmp_path / "starts"
    spec = SupervisorSpec(
        policy=_policy(20),
        children=(JobSpec(name="c", work=_counting(starts, 1), restart=RestartType.PERMANENT),),
    )
    tree = make_tree(spec, on_event=events)
    events.reached("c", "gave_up")
    assert _starts(starts) == 21
    child = tree.status()["children"][0]
    assert (child["state"], child["restarts"]) == ("gave_up", 20)
    exits = events.of(ChildExited, "c")
    assert [e.incarnation for e in exits] == list(range(1, 22))
    assert events.states("c") == [
        "starting",
        "running",
        *["backoff", "starting", "running"] * 20,
        "gave_up",
    ]


def test_restarts_at_once_stay_in_one_incarnations_actor_and_task(make_tree, events, runtime):
    # Each restart is a real SIGKILL to a real command; without restarts in place each
    # incarnation is a new actor (and, under gevent, a new greenlet).
    spec = SupervisorSpec(
        policy=_policy(100),
        children=(
            JobSpec(
                name="c", work=CommandWork(argv=("sleep", "30")), restart=RestartType.PERMANENT
            ),
        ),
    )
    tree = make_tree(spec, on_event=events)
    assert tree.started(timeout=20)
    seen, killed = [], set()
    for i in range(5):
        pid = wait_until(lambda: _sleeping() - killed, "the command to run").pop()
        (actor,) = _job_actors()
        seen.append((actor, actor._jv_task))
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
        events.reached("c", "running", times=i + 2)
    assert len({id(a) for a, _ in seen}) == 1
    assert len({id(t) for _, t in seen}) == 1
    assert tree.status()["children"][0]["restarts"] == 5
    assert [e.incarnation for e in events.of(ChildExited, "c")] == [1, 2, 3, 4, 5]
    del seen
    assert tree.stop(timeout=20)
    assert not _sleeping() - killed


def test_a_report_kept_back_is_told_within_the_hold_while_the_next_command_runs(
    make_tree, events, tmp_path, monkeypatch
):
    # Quick crashes, then a command that runs on: the last crash's report is kept (the
    # loop's first were told one by one, the one before just now), and the running command
    # tells it when the hold is over. Without that the supervisor would not hear of it for 30 s.
    monkeypatch.setattr(InPlace, "HOLD", 1.0)
    crashes = InPlace.LOOSE + 1
    starts = tmp_path / "starts"
    work = CommandWork(
        shell=f"n=$(cat {starts} 2>/dev/null | wc -l); echo x >> {starts}; "
        f'[ "$n" -ge {crashes} ] && exec sleep 30; exit 1'
    )
    spec = SupervisorSpec(
        policy=_policy(100),
        children=(JobSpec(name="c", work=work, restart=RestartType.PERMANENT),),
    )
    tree = make_tree(spec, on_event=events)
    events.reached("c", "running", times=crashes + 1, timeout=10)
    # (Running once spawned: its shell notes the start a moment later.)
    wait_until(lambda: _starts(starts) == crashes + 1, "the last command to note its start")
    assert tree.status()["children"][0]["restarts"] == crashes
    assert [e.incarnation for e in events.of(ChildExited, "c")] == list(range(1, crashes + 1))
    assert tree.stop(timeout=20)


def test_a_crash_loop_with_a_backoff_gives_up_after_exactly_its_restarts(
    make_tree, events, tmp_path
):
    starts = tmp_path / "starts"
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001, jitter=0), intensity=Intensity(max_restarts=3)
    )
    spec = SupervisorSpec(
        policy=policy,
        children=(JobSpec(name="c", work=_counting(starts, 1), restart=RestartType.PERMANENT),),
    )
    make_tree(spec, on_event=events)
    events.reached("c", "gave_up")
    assert _starts(starts) == 4
    assert [e.incarnation for e in events.of(ChildExited, "c")] == [1, 2, 3, 4]


def test_a_restart_with_a_backoff_goes_through_the_supervisor(make_tree, events) -> None:
    # The same SIGKILLs as the in-place test above, with a 1 ms backoff: each restart is a
    # new incarnation's actor, as every restart was before restarts in place.
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001, jitter=0), intensity=Intensity(max_restarts=100)
    )
    spec = SupervisorSpec(
        policy=policy,
        children=(
            JobSpec(
                name="c", work=CommandWork(argv=("sleep", "30")), restart=RestartType.PERMANENT
            ),
        ),
    )
    tree = make_tree(spec, on_event=events)
    assert tree.started(timeout=20)
    seen: list[JobActor] = []  # kept: an id is not reused while its object lives
    killed: set[int] = set()
    for i in range(3):
        pid = wait_until(lambda: _sleeping() - killed, "the command to run").pop()
        running = wait_until(
            lambda: [a for a in _job_actors() if a._jv_running] or None, "its incarnation"
        )
        actor = max(running, key=lambda a: a._jv_link.incarnation)  # not one still ending
        seen.append(actor)
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
        events.reached("c", "running", times=i + 2)
    assert len({id(a) for a in seen}) == 3
    del seen
    assert tree.stop(timeout=20)
    assert not _sleeping() - killed


@pytest.mark.parametrize("how", ["stop_child", "restart", "tree stop"])
def test_a_stop_ends_a_command_restarting_in_a_tight_loop(make_tree, events, tmp_path, how):
    starts = tmp_path / "starts"
    spec = SupervisorSpec(
        policy=_policy(10**6),
        children=(JobSpec(name="c", work=_counting(starts, 0), restart=RestartType.PERMANENT),),
    )
    tree = make_tree(spec, on_event=events)
    wait_until(lambda: _starts(starts) >= 30 or None, "30 starts")
    if how == "tree stop":
        assert tree.stop(timeout=20)
    elif how == "stop_child":
        tree.stop_child("c")
        assert tree.status()["children"][0]["state"] == "stopped"
    else:
        tree.restart("c")
        wait_until(lambda: _starts(starts) >= 60 or None, "30 more starts")
        tree.stop_child("c")
    after = _starts(starts)
    child = None if how == "tree stop" else tree.status()["children"][0]
    events.reached("c", "stopped")
    assert _starts(starts) == after  # nothing starts once the stop has returned
    # Each start has its one exit, in order, the stopped one last.
    exits = events.of(ChildExited, "c")
    assert [e.incarnation for e in exits] == list(range(1, len(exits) + 1))
    # The last ended by the stop, or by itself as the stop came: then it was not restarted.
    assert exits[-1].outcome.value in {"stopped", "succeeded"}
    assert after <= len(exits)  # a start the stop signalled before its echo ran wrote nothing
    if child is not None:
        assert (child["state"], child["starts"]) == ("stopped", len(exits))
        assert child["restarts"] == len(exits) - 1 - (how == "restart")


def test_stops_at_many_moments_of_a_tight_loop_each_end_it(runtime) -> None:
    # A stop may come while reports of restarts in place are queued, or one is kept back:
    # each is counted in its turn. (One counted out of turn made the queued ones look stale
    # to the supervisor, and then the stopped incarnation's own exit: the stop never ended.)
    spec = SupervisorSpec(
        policy=_policy(10**6),
        children=(
            JobSpec(name="c", work=CommandWork(argv=("true",)), restart=RestartType.PERMANENT),
        ),
    )
    for i in range(40):
        events = Events()
        tree = start_tree(spec, runtime, on_event=events)
        try:
            events.reached("c", "running", times=2 + i % 11)
            if i % 2:
                tree.stop_child("c")
                node = tree.status()["children"][0]
                assert node["state"] == "stopped"
                assert node["restarts"] == node["starts"] - 1
        finally:
            assert tree.stop(timeout=20)
        events.reached("c", "stopped")
        exits = events.of(ChildExited, "c")
        assert [e.incarnation for e in exits] == list(range(1, len(exits) + 1))
        # The last ended by the stop, or by itself as the stop came: then not restarted.
        assert exits[-1].outcome.value in {"stopped", "succeeded"}
        # Each start went through "starting" (what the metrics count starts by), also one
        # made in place just before the stop.
        assert events.states("c").count("starting") == len(exits)


def test_a_command_that_cannot_start_is_restarted_through_its_supervisor(make_tree, events):
    # Its attempt never waits for anything: restarted in place, under gevent such a loop
    # never let another greenlet run (no status, no stop, for as long as its intensity
    # lasted), and under threads it gained nothing. It goes through the supervisor.
    spec = SupervisorSpec(
        policy=_policy(10**6),
        children=(
            JobSpec(
                name="c",
                work=CommandWork(argv=("/nonexistent/jobvisor-test",)),
                restart=RestartType.PERMANENT,
            ),
        ),
    )
    tree = make_tree(spec, on_event=events)
    events.reached("c", "starting", times=20)
    node = tree.status(timeout=10)["children"][0]
    assert node["restarts"] >= 19
    seen = _job_actors()  # kept: an id is not reused while its object lives
    events.reached("c", "starting", times=node["starts"] + 5)
    # Each a new actor: those seen leave the registry (on their own threads, which a loaded
    # machine may run after the next starts); one restarted in place never would.
    wait_until(
        lambda: not [a for a in _job_actors() if any(a is b for b in seen)], "the old actors ended"
    )
    seen.clear()
    assert tree.stop(timeout=20)
    exits = events.of(ChildExited, "c")
    assert [e.incarnation for e in exits] == list(range(1, len(exits) + 1))
    assert {e.code for e in exits[:-1]} == {127}


def test_a_service_restarted_in_place_fails_on_each_return_and_gives_up(make_tree, events):
    # A service that exits is a failure; restarted in place, it still gives up on time.
    spec = SupervisorSpec(
        policy=_policy(3),
        children=(
            JobSpec(
                name="s",
                work=CommandWork(argv=("true",)),
                schedule=Schedule(service=True),
                restart=RestartType.PERMANENT,
            ),
        ),
    )
    tree = make_tree(spec, on_event=events)
    events.reached("s", "gave_up")
    exits = events.of(ChildExited, "s")
    assert [e.outcome.value for e in exits] == ["failed"] * 4
    node = tree.status()["children"][0]
    assert (node["restarts"], node["starts"]) == (3, 4)


def _sleeping() -> set[int]:
    """Pids of this process's children running ``sleep 30``."""
    return running(("sleep", "30"))


def test_a_crash_is_described_and_masked_once_for_its_attempt_and_its_exit(runtime) -> None:
    # The attempt's report and the exit it ends show the same error: the exit reuses the text
    # the attempt's was shown as (a restart described and masked it twice, issue 15), and
    # the status, the attempt and the exit still agree on it, masked.
    masked: list[str] = []

    def mask(text: str) -> str:
        masked.append(text)
        return text.replace("hush", "***")

    spec = SupervisorSpec(
        policy=_policy(4),
        children=(
            JobSpec(
                name="c",
                work=CommandWork(shell="echo hush; exit 3"),
                restart=RestartType.PERMANENT,
            ),
        ),
    )
    events = Events()
    tree = start_tree(spec, runtime, on_event=events, mask=mask)
    try:
        events.reached("c", "gave_up")
        node = tree.status()["children"][0]
    finally:
        assert tree.stop(timeout=20)
    exits = events.of(ChildExited, "c")
    attempts = events.of(AttemptFinished, "c")
    assert len(exits) == len(attempts) == 5
    assert [e.error for e in exits] == [a.error for a in attempts]
    assert exits[-1].error is not None
    assert node["last_exit"]["error"] == exits[-1].error
    assert all("hush" not in (e.error or "") for e in exits)
    assert len([t for t in masked if t.startswith("command ")]) == 5  # once a crash
