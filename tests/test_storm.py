"""Crash storms and leaks: many children failing at once, and nothing left behind."""

from __future__ import annotations

import threading

import pykka
from actorkit import Journal, Recorder

from supervision import (
    ActorSpec,
    Backoff,
    ChildExited,
    Intensity,
    RestartPolicy,
    RestartScheduled,
    StateChanged,
    SupervisorSpec,
    start_tree,
)

N = 500


def test_crash_storm_of_500_children_all_restarted_no_event_lost(make_tree, events) -> None:
    journal = Journal()
    Recorder.incarnations.clear()
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.01), intensity=Intensity(max_restarts=5)
    )
    spec = SupervisorSpec(
        policy=policy,
        children=tuple(
            ActorSpec(name=f"w{i}", actor_class=Recorder, args=(f"w{i}", journal)) for i in range(N)
        ),
    )
    tree = make_tree(spec, on_event=events)
    assert tree.started(60)
    refs = [tree.ref(f"w{i}") for i in range(N)]
    for ref in refs:
        ref.tell("crash")
    # Every child answers from its second incarnation: restarted, and no message lost.
    answers = [ref.ask("ping", block=False) for ref in refs]
    assert [a.get(timeout=60) for a in answers] == [("pong", f"w{i}", 2) for i in range(N)]
    events.wait_for(
        lambda items: (
            sum(1 for e in items if isinstance(e, StateChanged) and e.new.value == "running")
            >= 2 * N
        ),
        timeout=60,
    )
    assert len(events.of(ChildExited)) == N
    assert len(events.of(RestartScheduled)) == N
    per_child = {f"w{i}": events.states(f"w{i}") for i in range(N)}
    expected = ["starting", "running", "backoff", "starting", "running"]
    assert all(states == expected for states in per_child.values())
    status = tree.status()["children"]
    assert all((n["state"], n["starts"], n["restarts"]) == ("running", 2, 1) for n in status)


def test_no_thread_left_behind_after_stop(runtime) -> None:
    journal = Journal()
    before = {t.ident for t in threading.enumerate()}
    group = SupervisorSpec(
        name="g",
        children=tuple(
            ActorSpec(name=f"a{i}", actor_class=Recorder, args=(f"a{i}", journal))
            for i in range(20)
        ),
    )
    tree = start_tree(SupervisorSpec(children=(group,)), runtime)
    tree.subscribe(lambda event: None)
    assert tree.started(30)
    tree.ref("g/a3").tell("crash")
    journal.wait_count("start", "a3", 2)
    assert tree.stop(30)
    after = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert after == [], f"left behind: {[t.name for t in after]}"
    assert pykka.ActorRegistry.get_all() == []


def test_no_greenlet_left_behind_under_gevent(runtime) -> None:
    if runtime != "gevent":
        import pytest

        pytest.skip("greenlets exist only under the gevent runtime")
    import gc

    import greenlet

    def live_greenlets() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead)

    before = live_greenlets()
    journal = Journal()
    spec = SupervisorSpec(
        children=tuple(
            ActorSpec(name=f"a{i}", actor_class=Recorder, args=(f"a{i}", journal))
            for i in range(20)
        )
    )
    tree = start_tree(spec, runtime)
    assert tree.started(30)
    assert live_greenlets() > before
    assert tree.stop(30)
    assert live_greenlets() <= before
