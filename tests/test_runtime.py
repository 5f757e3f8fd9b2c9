"""The runtime layer: the scheduler, runtime checks, and the event bus, each on its own."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from clockkit import ManualClock
from faultkit import wait_until

from actors import RuntimeSetupError, Scheduler, check_runtime, install_runtime
from supervision import StateChanged, SupervisorSpec
from supervision._events import EventBus

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
