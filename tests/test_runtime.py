"""The runtime layer: the scheduler, runtime checks, and the event bus, each on its own."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from clockkit import ManualClock
from faultkit import wait_until

from actors import RuntimeSetupError, Scheduler, check_runtime, install_runtime
from supervision import StateChanged, SupervisorSpec
from supervision._events import EventBus

if TYPE_CHECKING:
    import logbook

ROOT = Path(__file__).resolve().parent.parent


def test_scheduler_runs_due_callbacks_in_deadline_order() -> None:
    done = threading.Event()
    order: list[str] = []
    scheduler = Scheduler()
    try:
        scheduler.call_later(0.03, lambda: (order.append("late"), done.set()))
        scheduler.call_later(0.0, lambda: order.append("now"))
        scheduler.call_later(0.01, lambda: order.append("soon"))
        cancelled = scheduler.call_later(0.02, lambda: order.append("cancelled"))
        cancelled.cancel()
        assert done.wait(5)
        assert order == ["now", "soon", "late"]
    finally:
        scheduler.stop()
    assert not scheduler.alive


def test_scheduler_with_an_injected_clock_runs_nothing_before_its_time() -> None:
    clock = ManualClock()
    fired = threading.Event()
    scheduler = Scheduler(clock)
    try:
        handle = scheduler.call_later(10.0, fired.set)
        assert handle.when == 110.0
        assert not fired.wait(0.05)
    finally:
        scheduler.stop()


def test_cancelled_timers_do_not_wait_in_the_scheduler_until_their_deadline() -> None:
    # Every stop arms a kill-after-grace timer and cancels it when the child is down:
    # with long graces and frequent stops, cancelled entries must not pile up.
    scheduler = Scheduler(ManualClock())
    try:
        handles = [scheduler.call_later(3600, lambda: None) for _ in range(1000)]
        kept = scheduler.call_later(7200, lambda: None)
        for handle in handles:
            handle.cancel()
        assert 1 <= scheduler.pending <= 64
        assert not kept.cancelled
        handles[0].cancel()  # twice is harmless
        kept.cancel()
        assert scheduler.pending <= 64
    finally:
        scheduler.stop()


def test_scheduler_survives_a_failing_callback() -> None:
    errors: list[BaseException] = []
    done = threading.Event()
    scheduler = Scheduler(on_error=errors.append)
    try:
        scheduler.call_later(0, lambda: 1 / 0)
        scheduler.call_later(0.001, done.set)
        assert done.wait(5)
        assert isinstance(errors[0], ZeroDivisionError)
    finally:
        scheduler.stop()


def test_a_timer_past_what_any_wait_takes_does_not_stop_the_scheduler() -> None:
    # A lock's wait takes at most threading.TIMEOUT_MAX (gevent's too): a deadline further
    # away must not end the thread, or no backoff, timeout or tick of the tree fires again.
    scheduler = Scheduler()
    try:
        far = [scheduler.call_later(delay, lambda: None) for delay in (1e12, math.inf)]
        for _ in range(2):  # the second is armed once the scheduler waits for the far ones
            done = threading.Event()
            scheduler.call_later(0.01, done.set)
            assert done.wait(5)
        assert scheduler.alive
        assert all(not handle.cancelled for handle in far)
    finally:
        scheduler.stop()


def test_a_failing_callback_is_logged_once_with_what_it_was(logs: logbook.TestHandler) -> None:
    def broken() -> None:
        raise ZeroDivisionError("division by zero")

    def bad_reporter(exc: BaseException) -> None:
        raise RuntimeError(f"reporter broke on {exc}")

    done = threading.Event()
    for on_error in (None, bad_reporter):
        scheduler = Scheduler(on_error=on_error)
        try:
            scheduler.call_later(0, broken)
            scheduler.call_later(0, lambda: (_ for _ in ()).throw(SystemExit(3)))
            done.clear()
            scheduler.call_later(0.001, done.set)
            assert done.wait(5)
            assert scheduler.alive
        finally:
            scheduler.stop()
    said = [r.message for r in logs.records if r.channel == "actors.runtime"]
    here = "timer callback test_a_failing_callback_is_logged_once_with_what_it_was.<locals>"
    broke, exited = f"{here}.broken failed", f"{here}.<lambda> failed"
    reported = "; its report failed too: RuntimeError: reporter broke on"
    assert said == [
        f"{broke}: ZeroDivisionError: division by zero",
        f"{exited}: SystemExit: 3",
        f"{broke}: ZeroDivisionError: division by zero",
        f"{broke}{reported} division by zero",
        f"{exited}: SystemExit: 3",
        f"{exited}{reported} 3",
    ]


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(RuntimeSetupError, match="expected one of threads, gevent"):
        install_runtime("asyncio")
    with pytest.raises(RuntimeSetupError, match="unknown runtime"):
        check_runtime("trio")


def test_the_other_runtime_is_refused_with_what_to_do(runtime: str) -> None:
    other = "threads" if runtime == "gevent" else "gevent"
    with pytest.raises(RuntimeSetupError, match=r"install_runtime|runtime='gevent'"):
        check_runtime(other)


def test_start_tree_under_gevent_after_install_in_a_fresh_process() -> None:
    code = (
        "from actors import install_runtime; install_runtime('gevent')\n"
        "from supervision import SupervisorSpec, python_job, start_tree\n"
        "spec = SupervisorSpec(children=(python_job('j', 'math:sqrt', 4),))\n"
        "with start_tree(spec, 'gevent') as tree:\n"
        "    assert tree.wait(10)\n"
        "    print(tree.status()['children'][0]['state'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "succeeded"


def test_gevent_installed_after_a_tree_started_is_refused_and_the_tree_runs_on() -> None:
    """Patching under running threads broke them: the tree's stop waited out its timeout and
    tracebacks of gevent's reached stderr (trial h255). Imported only, nothing is started."""
    code = (
        "import pykka\n"
        "from actors import RuntimeSetupError, active_runtime, install_runtime\n"
        "from supervision import ActorSpec, SupervisorSpec, start_tree\n"
        "class A(pykka.ThreadingActor):\n"
        "    pass\n"
        "tree = start_tree(SupervisorSpec(children=(ActorSpec(name='a', actor_class=A),)))\n"
        "assert tree.started(10)\n"
        "try:\n"
        "    install_runtime('gevent')\n"
        "except RuntimeSetupError as exc:\n"
        "    print(exc)\n"
        "print(active_runtime(), tree.stop(10))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.splitlines() == [
        (
            "install_runtime('gevent') comes too late: jobvisor has started threads in this "
            "process (a tree, or a job's), which gevent's patching would break; call it first "
            "thing in your program, before start_tree"
        ),
        "threads True",
    ]
    assert out.stderr == ""
    imported_only = (
        "import supervision\n"
        "from actors import active_runtime, install_runtime\n"
        "install_runtime('gevent')\n"
        "print(active_runtime())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", imported_only],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout == "gevent\n"


def test_a_tree_left_running_is_stopped_gracefully_at_exit() -> None:
    code = (
        "import pykka\n"
        "from supervision import ActorSpec, SupervisorSpec, start_tree\n"
        "class A(pykka.ThreadingActor):\n"
        "    def on_stop(self): print('stopped gracefully', flush=True)\n"
        "tree = start_tree(SupervisorSpec(children=(ActorSpec(name='a', actor_class=A),)))\n"
        "assert tree.started(10)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "stopped gracefully" in out.stdout


def test_event_bus_keeps_delivering_after_a_callback_raises(logs) -> None:
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(lambda event: 1 / 0)
    bus.subscribe(seen.append)
    event = StateChanged(path="x", at=0.0, old="pending", new="starting")  # type: ignore[arg-type]
    bus.publish(event)
    bus.publish(event)
    assert bus.flush(5)
    bus.stop()
    assert seen == [event, event]
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in logs.records)


def test_a_subscriber_is_given_only_the_events_published_after_it_subscribed() -> None:
    """Events still queued behind a slow subscriber when another subscribes are not its: it
    took an earlier start's ``starting`` and ``running`` for its own start's (review r49)."""
    bus = EventBus()
    holding, release = threading.Event(), threading.Event()

    def slow(event: object) -> None:
        holding.set()
        release.wait(10)

    bus.subscribe(slow)
    earlier = StateChanged(path="x", at=0.0, old="pending", new="starting")  # type: ignore[arg-type]
    later = StateChanged(path="x", at=1.0, old="starting", new="running")  # type: ignore[arg-type]
    bus.publish(earlier)
    bus.publish(earlier)  # queued behind the one the slow subscriber holds
    assert holding.wait(10)
    seen: list[object] = []
    gone: list[object] = []
    sub = bus.subscribe(seen.append)
    cancelled = bus.subscribe(gone.append)
    bus.publish(later)
    cancelled.cancel()  # before its delivery: nothing more for it
    release.set()
    assert bus.flush(10)
    bus.stop()
    sub.cancel()
    assert seen == [later]
    assert gone == []


def test_a_subscription_cancelled_during_a_dispatch_is_given_nothing_more() -> None:
    """Cancelled by an earlier subscriber's callback while an event is being handed out:
    ``cancel()`` stops further deliveries, that event's too (review r50)."""
    bus = EventBus()
    seen: list[object] = []
    later: list[Any] = []
    bus.subscribe(lambda event: later[0].cancel())
    later.append(bus.subscribe(seen.append))
    bus.publish(StateChanged(path="x", at=0.0, old="pending", new="starting"))  # type: ignore[arg-type]
    assert bus.flush(10)
    bus.stop()
    assert seen == []


def test_an_event_published_after_the_bus_stopped_is_not_waited_for() -> None:
    """Nothing hands it out once the dispatcher has ended: it was counted all the same, and
    every later flush waited its whole timeout for it (review r50)."""
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(seen.append)
    event = StateChanged(path="x", at=0.0, old="pending", new="starting")  # type: ignore[arg-type]
    bus.publish(event)
    bus.stop()
    bus.publish(event)
    assert bus.flush(0.5) is True
    assert seen == [event]


def _broken(event: object) -> None:
    raise ZeroDivisionError("division by zero")


def _subscriber_lines(logs: logbook.TestHandler) -> list[Any]:
    return [r for r in logs.records if r.channel == "supervision.events"]


def test_a_subscriber_that_keeps_raising_is_logged_in_full_once_then_summed_up(logs) -> None:
    # A broken callback on a busy tree raised on every event, each an ERROR with the event.
    clock = ManualClock()
    bus = EventBus(clock)
    bus.subscribe(_broken)
    event = StateChanged(path="x", at=0.0, old="pending", new="starting")  # type: ignore[arg-type]
    try:
        for _ in range(50):
            bus.publish(event)
        assert bus.flush(5)
        [first] = _subscriber_lines(logs)
        assert first.level_name == "ERROR"
        assert first.exc_info[0] is ZeroDivisionError
        assert "test_runtime._broken raised on StateChanged(path='x'" in first.message
        assert "summed up" in first.message  # says what comes of the next ones
        clock.advance(6)
        for _ in range(3):
            bus.publish(event)
        assert bus.flush(5)
        assert len(_subscriber_lines(logs)) == 1  # 52 failures so far, one line
        clock.advance(4)  # 10 s since the first
        bus.publish(event)
        assert bus.flush(5)
        summary = _subscriber_lines(logs)[1]
        assert summary.level_name == "ERROR"
        assert not summary.exc_info
        assert summary.message == (
            "event subscriber test_runtime._broken raised 53 more times in the last 10 s "
            "(last: ZeroDivisionError: division by zero)"
        )
        clock.advance(2)
        bus.publish(event)  # held: it is said at the bus's stop, if not before
        assert bus.flush(5)
        assert len(_subscriber_lines(logs)) == 2
    finally:
        bus.stop()
    last = _subscriber_lines(logs)[2]
    assert last.message.startswith("event subscriber test_runtime._broken raised 1 more time in ")
    assert len(_subscriber_lines(logs)) == 3


def test_a_subscriber_failing_again_after_a_quiet_spell_or_otherwise_is_shown_in_full(
    logs,
) -> None:
    clock = ManualClock()
    bus = EventBus(clock)
    fail_with: list[type[Exception]] = [ZeroDivisionError]

    def broken(event: object) -> None:
        raise fail_with[0]("no")

    bus.subscribe(broken)
    event = StateChanged(path="x", at=0.0, old="pending", new="starting")  # type: ignore[arg-type]
    try:
        bus.publish(event)
        assert bus.flush(5)
        fail_with[0] = KeyError  # another error: in full, though within the 10 s
        bus.publish(event)
        assert bus.flush(5)
        clock.advance(10.5)  # quiet for longer than that: a new story
        bus.publish(event)
        assert bus.flush(5)
    finally:
        bus.stop()
    lines = _subscriber_lines(logs)
    assert [r.exc_info[0] for r in lines] == [ZeroDivisionError, KeyError, KeyError]


def test_cancelled_subscription_gets_nothing_more(make_tree, events) -> None:
    seen: list[object] = []
    tree = make_tree(SupervisorSpec(), on_event=events)
    sub = tree.subscribe(seen.append)
    sub.cancel()
    tree.add_child(SupervisorSpec(name="g"))
    events.reached("g", "running")
    assert seen == []


def test_a_subscriber_can_stop_its_own_tree(make_tree) -> None:
    from supervision import GaveUp, Intensity, RestartPolicy, python_job

    stopped = threading.Event()
    have_tree = threading.Event()
    holder: list[object] = []
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))

    def on_event(event: object) -> None:
        if isinstance(event, GaveUp):
            assert have_tree.wait(10)
            holder[0].stop(timeout=10)  # type: ignore[attr-defined]
            stopped.set()

    spec = SupervisorSpec(policy=policy, children=(python_job("f", "jobfuncs:fail", "f"),))
    tree = make_tree(spec, on_event=on_event)
    holder.append(tree)
    have_tree.set()
    assert stopped.wait(15)
    assert tree.ended


def test_a_task_can_be_found_killed_and_joined(runtime: str) -> None:
    from actors import Kill, current_task, interrupt_task, join_tasks, live_tasks, start_task

    running, seen, ended = threading.Event(), [], threading.Event()

    def target() -> None:
        seen.append(current_task())
        running.set()
        try:
            while True:
                time.sleep(0.01)  # a Kill lands between two sleeps, or in one under gevent
        except Kill:
            ended.set()

    start_task(target, "jv-task-test")
    assert running.wait(10)
    (task,) = live_tasks("jv-task-test")
    assert seen == [task]
    assert task.name == "jv-task-test"
    if runtime == "gevent":
        import gevent

        assert not isinstance(task, gevent.Greenlet)  # a bare greenlet: see start_task
    assert join_tasks("jv-task-test", 0.05) == ["jv-task-test"]  # still running
    interrupt_task(task, Kill)
    assert ended.wait(10)
    assert join_tasks("jv-task-test", 10) == []
    assert live_tasks("jv-task-test") == []
    interrupt_task(task, Kill)  # an ended task: nothing happens


def test_a_task_is_alive_and_joinable_from_the_moment_start_task_returns() -> None:
    # Under threads start_task does not wait for the new thread to run (see actors._runtime
    # ._Task); a supervisor that stops a tree at once must still see and wait for it.
    from actors import join_tasks, live_tasks, start_task

    release = threading.Event()
    try:
        for i in range(50):
            name = f"jv-early-{i:02d}"
            start_task(release.wait, name)
            (task,) = live_tasks(name)
            task.join(0.001)  # a Thread not yet running would refuse: "cannot join ... before"
            assert live_tasks(name) == [task]
        assert len(live_tasks("jv-early-")) == 50
    finally:
        release.set()
    assert join_tasks("jv-early-", 10) == []
    assert live_tasks("jv-early-") == []


def test_a_lazy_event_keeps_threading_events_contract(runtime: str) -> None:
    # actor_stopped and a task's started flag are LazyEvents: users may wait on the first.
    from actors._runtime import LazyEvent

    event = LazyEvent()
    assert not event.is_set()
    assert event.wait(0.01) is False  # a timeout, and the condition it made is reused later
    woke: list[bool] = []
    waiters = [threading.Thread(target=lambda: woke.append(event.wait(10))) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    # set must wake waiters already blocked, not only later callers: wait until all three are.
    wait_until(lambda: event._cond is not None and len(event._cond._waiters) == 3, "3 waiting")
    event.set()
    for waiter in waiters:
        waiter.join(10)
    assert woke == [True, True, True]
    assert event.is_set()
    assert event.wait() is True
    assert event.wait(0) is True
    event.clear()
    assert not event.is_set()
    assert event.wait(0) is False
    fresh = LazyEvent()
    fresh.set()  # nobody ever waited: no condition is made, a later wait returns at once
    assert fresh.wait(0) is True
    assert fresh._cond is None


def test_an_attempts_cancelled_event_makes_no_condition_until_waited_on(runtime: str) -> None:
    # One per attempt, and mostly never waited on (issue 15): under threads a LazyEvent.
    from actors._attempt import Attempt
    from actors._runtime import LazyEvent

    never_waited = Attempt("p", 1, 0.0).cancelled
    never_waited.set()
    assert never_waited.is_set()
    attempt = Attempt("p", 2, 0.0)
    if runtime == "threads":
        assert isinstance(never_waited, LazyEvent)
        assert never_waited._cond is None
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(attempt.cancelled.wait(10)))
    waiter.start()
    if runtime == "threads":
        wait_until(
            lambda: attempt.cancelled._cond is not None and attempt.cancelled._cond._waiters,
            "the waiter to block",
        )
    attempt.cancelled.set()  # as a stop or a timeout does
    waiter.join(10)
    assert woke == [True]


def test_an_actors_stopped_event_can_be_waited_on(make_tree) -> None:
    import pykka

    from supervision import ActorSpec

    class Idle(pykka.ThreadingActor):
        pass

    tree = make_tree(SupervisorSpec(children=(ActorSpec(name="idle", actor_class=Idle),)))
    assert tree.started(10)
    (actor,) = [
        ref._actor_weakref()
        for ref in pykka.ActorRegistry.get_all()
        if "Idle" in ref.actor_class.__name__
    ]
    stopped = actor.actor_stopped
    assert not stopped.is_set()
    assert stopped.wait(0.01) is False
    ended = threading.Event()
    threading.Thread(target=lambda: stopped.wait(10) and ended.set(), daemon=True).start()
    assert tree.stop(10)
    assert ended.wait(10)


def test_an_asks_reply_future_keeps_pykkas_contract(runtime: str) -> None:
    # ChildRef.ask's future: pykka's ThreadingFuture, on the hub's Event under gevent.
    import queue

    import pykka

    from actors._runtime import reply_future

    future = reply_future()
    assert isinstance(future, pykka.Future)
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.01)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(future.get(timeout=10)))
    waiter.start()
    # set must wake a waiter already blocked in get, not only later callers.
    condition: Any = future._condition  # type: ignore[attr-defined]
    if runtime == "gevent":
        wait_until(lambda: condition._event.linkcount() == 1, "a waiter")
    else:
        wait_until(lambda: len(condition._waiters) == 1, "a waiter")
    future.set("pong")
    waiter.join(10)
    assert got == ["pong"]
    assert future.get() == "pong"
    assert future.map(str.upper).get(timeout=1) == "PONG"
    with pytest.raises(queue.Full):
        future.set("again")

    failed = reply_future()
    try:
        raise ValueError("no")  # with its traceback, as an ask sets it
    except ValueError:
        failed.set_exception()
    with pytest.raises(ValueError, match="no"):
        failed.get(timeout=1)


# -- pooled threads: a command's incarnations, one after another on one thread ---------------------


@pytest.fixture
def pool() -> Any:
    """A pool name of this test's own, retired (its threads ended) when the test ends."""
    from actors import join_tasks

    name = f"jv-pool{time.monotonic_ns()}-"
    yield name
    assert join_tasks(name, 10) == []


def _run_in(pool: str, name: str, body: Any = None) -> tuple[Any, threading.Event, int]:
    """Start ``body`` (default: nothing) as a task of ``pool``; once it runs, return its task,
    the event set when it has ended, and its ``task_slot`` (read in the task, as an actor does).
    """
    from actors._runtime import current_task, start_task, task_slot

    running, done, seen = threading.Event(), threading.Event(), []

    def target() -> None:
        seen.append(current_task())
        slots.append(task_slot(seen[0]))
        running.set()
        try:
            if body is not None:
                body()
        finally:
            done.set()

    slots: list[int] = []
    start_task(target, f"{pool}{name}", reuse=pool)
    assert running.wait(10)
    return seen[0], done, slots[0]


def test_a_pooled_task_runs_on_the_thread_of_one_that_ended(runtime: str, pool: str) -> None:
    from actors import live_tasks

    first, done, _ = _run_in(pool, "a")
    assert done.wait(10)
    if runtime == "threads":
        wait_until(lambda: live_tasks(f"{pool}(idle)"), "the thread to wait in its pool")
    second, done, _ = _run_in(pool, "a")
    assert done.wait(10)
    if runtime == "threads":
        assert second is first  # the same thread, not a new one
        assert first.is_alive()
    else:
        assert second is not first  # under gevent every task is a greenlet of its own


def test_a_task_without_a_pool_never_runs_on_an_older_thread(pool: str) -> None:
    from actors._runtime import current_task, start_task

    first, done, _ = _run_in(pool, "a")
    assert done.wait(10)
    seen, ran = [], threading.Event()
    start_task(lambda: (seen.append(current_task()), ran.set()), f"{pool}own")
    assert ran.wait(10)
    assert seen[0] is not first


def test_join_tasks_ends_a_pools_idle_threads(runtime: str, pool: str) -> None:
    from actors import join_tasks, live_tasks

    first, done, _ = _run_in(pool, "a")
    assert done.wait(10)
    assert join_tasks(pool, 10) == []
    assert live_tasks(pool) == []
    assert not first.is_alive() if runtime == "threads" else first.dead
    # A retired pool keeps no thread: the next task's thread ends with it.
    second, done, _ = _run_in(pool, "b")
    assert done.wait(10)
    assert join_tasks(pool, 10) == []
    assert second is not first


def test_an_idle_thread_ends_after_idle_seconds(
    runtime: str, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors import _runtime

    monkeypatch.setattr(_runtime, "IDLE_SECONDS", 0.05)
    first, done, _ = _run_in(pool, "a")
    assert done.wait(10)
    first.join(10)
    assert not _runtime._alive(first)
    second, done, _ = _run_in(pool, "b")  # the pool goes on with a thread of its own
    assert done.wait(10)
    assert second is not first


def test_a_pool_keeps_at_most_max_idle_threads(runtime: str, pool: str) -> None:
    from actors import _runtime, live_tasks

    release = threading.Event()
    started = [_run_in(pool, f"t{i}", release.wait) for i in range(_runtime.MAX_IDLE + 3)]
    release.set()
    for _, done, _ in started:
        assert done.wait(10)
    for task, _, _ in started:
        # Each either waits in the pool or has ended (and is joined): none is still busy.
        wait_until(
            lambda task=task: not _runtime._alive(task) or task.name == f"{pool}(idle)",
            "every thread to end or park",
        )
    idle = live_tasks(f"{pool}(idle)")
    assert len(idle) <= _runtime.MAX_IDLE
    if runtime == "threads":
        assert len(idle) == _runtime.MAX_IDLE


THREADS_ONLY = pytest.mark.skipif(
    os.environ.get("JOBVISOR_RUNTIME", "threads") == "gevent",
    reason="under gevent every task is a greenlet of its own: nothing is pooled",
)


@THREADS_ONLY
def test_a_kill_for_a_task_that_ended_spares_the_next_one_on_its_thread(pool: str) -> None:
    from actors import Kill, interrupt_task

    first, done, slot = _run_in(pool, "a")
    assert done.wait(10)
    wait_until(lambda: first.name == f"{pool}(idle)", "the thread to wait in its pool")

    release, outcome = threading.Event(), []

    def body() -> None:
        try:
            while not release.wait(0.01):  # a Kill lands between two waits
                pass
            outcome.append("finished")
        except Kill:
            outcome.append("killed")

    second, done, _ = _run_in(pool, "b", body)
    assert second is first
    interrupt_task(second, Kill, slot)  # meant for "a", which has ended: nothing happens
    release.set()
    assert done.wait(10)
    assert outcome == ["finished"]


@THREADS_ONLY
def test_a_killed_tasks_thread_is_never_pooled_again(pool: str) -> None:
    from actors import Kill, interrupt_task

    outcome = []

    def body() -> None:
        try:
            while True:
                time.sleep(0.01)
        except Kill:
            outcome.append("killed")

    first, done, slot = _run_in(pool, "a", body)
    interrupt_task(first, Kill, slot)
    assert done.wait(10)
    assert outcome == ["killed"]
    first.join(10)
    assert not first.is_alive()  # it ended instead of waiting for the next task
    second, done, _ = _run_in(pool, "b")
    assert done.wait(10)
    assert second is not first


@THREADS_ONLY
def test_a_thread_taken_from_its_pool_without_a_task_still_ends_with_the_pool(pool: str) -> None:
    # start_task interrupted between taking an idle thread and handing it its task (a Kill in
    # the supervisor): the thread must not wait for ever, and the tree's stop must end it.
    from actors import _runtime, join_tasks

    first, done, _ = _run_in(pool, "a")
    assert done.wait(10)
    wait_until(lambda: first.name == f"{pool}(idle)", "the thread to wait in its pool")
    with _runtime._pool_lock:
        taken = _runtime._idle[pool].pop()  # what start_task does first
    assert taken is first
    assert join_tasks(pool, 10) == []
    assert not first.is_alive()


def test_a_stop_out_of_time_still_ends_a_pools_idle_threads(runtime: str, pool: str) -> None:
    from actors import join_tasks, live_tasks

    first, done, _ = _run_in(pool, "a")
    assert done.wait(10)
    if runtime == "threads":
        wait_until(lambda: first.name == f"{pool}(idle)", "the thread to wait in its pool")
    assert join_tasks(pool, 0) == []  # no time left, and no idle thread named as still running
    assert live_tasks(pool) == []


@THREADS_ONLY
@pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="_Task starts threads its own way on 3.11/3.12"
)
def test_a_thread_that_ends_before_it_runs_is_not_alive_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A kill aimed at a thread that is starting another can land in the new one at its first
    # bytecode (CPython 3.11 gives it its starter's id until it runs): it never says it started.
    from actors import Kill, join_tasks, live_tasks
    from actors._runtime import _Task

    said: list[str] = []  # what Python says of it: kept as text, so nothing holds the thread's
    monkeypatch.setattr(sys, "unraisablehook", lambda args: said.append(str(args.exc_value)))

    class EndsAtOnce(_Task):
        def _bootstrap(self) -> None:
            raise Kill("landed at the new thread's first bytecode")

    task = EndsAtOnce(lambda: None, "jv-boot-dies")
    task.start()
    wait_until(lambda: not task.is_alive(), "the thread to count as ended")
    task.join(10)  # returns: nothing to wait for, and no "cannot join before it is started"
    assert join_tasks("jv-boot-dies", 10) == []
    assert live_tasks("jv-boot-dies") == []
    assert task not in threading.enumerate()
    assert said == ["landed at the new thread's first bytecode"]


@THREADS_ONLY
@pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="_Task starts threads its own way on 3.11/3.12"
)
def test_a_thread_that_cannot_start_raises_why_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The thread's _Boot is let go of at once (and marks the task ended): the start's own
    # cleanup must not trip over that and hide the reason with a KeyError.
    from actors import _runtime

    def refuse(function: Any, args: Any) -> None:
        del function, args  # as the C call does: nothing keeps the _Boot while this raises
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_runtime, "_start_new_thread", refuse)
    task = _runtime._Task(lambda: None, "jv-cannot-start")
    with pytest.raises(RuntimeError, match="can't start new thread"):
        task.start()
    assert not task.is_alive()
    assert task not in threading.enumerate()


def test_a_sink_that_keeps_raising_is_said_in_full_once_a_kind_and_its_repeats_summed_up(
    logs: logbook.TestHandler,
) -> None:
    # A first failure of another kind dropped the repeats held (review r51).
    from supervision._events import SinkFailures

    clock = ManualClock()
    failed = SinkFailures(clock)

    def sink(event: object) -> None:
        raise ValueError("v")

    def fail(exc: Exception) -> None:
        try:
            raise exc
        except Exception as raised:
            failed(sink, "an event", raised)

    for _ in range(50):
        fail(ValueError("v"))
    fail(KeyError("k"))
    lines = [r for r in logs.records if "the tree's sink" in r.message]
    assert [bool(r.exc_info) for r in lines] == [True, True]  # one in full a kind
    clock.advance(12)  # a quiet spell: what was held is said, and the next is news
    fail(ValueError("v"))
    lines = [r.message for r in logs.records if "the tree's sink" in r.message]
    assert lines[2].endswith("raised 49 more times in the last 12 s (last: ValueError: v)")
    assert "raised on an event" in lines[3]
    for _ in range(3):  # failing on, 4 s apart: summed up once 10 s have passed
        clock.advance(4)
        fail(ValueError("v"))
    lines = [r.message for r in logs.records if "the tree's sink" in r.message]
    assert lines[4].endswith("raised 3 more times in the last 12 s (last: ValueError: v)")
    assert len(lines) == 5
