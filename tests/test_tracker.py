"""The settle count behind ``Tree.wait``: a leaf waiting (pending) for a stopped job, itself or
through the jobs it waits for, is not waited for; one waiting for a job that may still run is.
The check runs on every transition a waiter is notified of, so it is linear in the leaves."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from itertools import pairwise

import jobfuncs
import pytest
from treekit import tree_of

from supervision import JobSpec, python_job
from supervision._state import State
from supervision._table import flatten_status
from supervision._tracker import Tracker


def tracker(*leaves: str) -> Tracker:
    t = Tracker()
    for leaf in leaves:
        t.add(leaf)
        t.update(leaf, State.PENDING, finite=True)
    t.started.set()
    return t


def settled(t: Tracker) -> bool:
    return t.wait_settled(0)


def chain(t: Tracker, names: list[str]) -> None:
    """Each of ``names`` after the first waits for the one before it."""
    for before, after in pairwise(names):
        t.waiting(after, before)


class TestWhatIsWaitedFor:
    def test_a_chain_behind_a_stopped_head_has_settled(self) -> None:
        names = [f"j{i}" for i in range(6)]
        t = tracker(*names)
        chain(t, names)
        t.update("j0", State.STOPPED, finite=True)  # autostart: false
        assert settled(t)

    def test_a_chain_behind_a_head_that_starts_has_not(self) -> None:
        names = [f"j{i}" for i in range(6)]
        t = tracker(*names)
        chain(t, names)
        t.update("j0", State.STARTING, finite=True)
        assert not settled(t)
        t.update("j0", State.STOPPED, finite=True)  # a person's stop: only a person goes on
        assert settled(t)
        t.update("j0", State.STARTING, finite=True)  # a person's start
        assert not settled(t)

    def test_a_stop_in_the_middle_holds_only_those_behind_it(self) -> None:
        t = tracker("a", "b", "c", "d")
        chain(t, ["a", "b", "c", "d"])
        t.update("b", State.STOPPED, finite=True)
        assert not settled(t)  # a still starts; c and d wait for b
        t.update("a", State.SUCCEEDED, finite=True)
        assert settled(t)

    def test_a_leaf_no_one_holds_is_waited_for_whatever_the_others_wait_for(self) -> None:
        t = tracker("held", "b", "c", "free")
        chain(t, ["held", "b", "c"])
        t.update("held", State.STOPPED, finite=True)
        assert not settled(t)  # free waits for nothing: it runs
        t.waiting("free", "c")  # now behind the chain too
        assert settled(t)
        t.waiting("c", None)  # c starts after all
        assert not settled(t)

    def test_waiting_for_a_stopped_group_is_stuck(self) -> None:
        t = tracker("g/x", "y")
        t.waiting("y", "g")
        t.settle_subtree("g", State.STOPPED)
        assert settled(t)

    def test_a_cycle_of_waits_with_nothing_stopped_is_waited_for(self) -> None:
        t = tracker("a", "b", "c")
        t.waiting("a", "b")
        t.waiting("b", "c")
        t.waiting("c", "a")
        assert not settled(t)  # and the check ends

    def test_a_cycle_behind_a_stop_is_stuck_and_one_beside_it_is_not(self) -> None:
        t = tracker("a", "b", "held", "x", "y", "z")
        t.update("held", State.STOPPED, finite=True)
        t.waiting("a", "b")
        t.waiting("b", "held")
        t.waiting("x", "a")  # x, y, z: through a and b to the stopped one
        t.waiting("y", "x")
        t.waiting("z", "y")
        assert settled(t)
        t.waiting("b", "a")  # now a and b wait for each other: nothing stopped among them
        assert not settled(t)

    def test_paths_that_meet_share_the_answer_in_either_order(self) -> None:
        # Walks that reach a job another walk already answered for take its answer: both
        # answers, stuck or not, whichever leaf the check comes to first.
        for seed in range(20):
            leaves = [f"l{i}" for i in range(8)]
            random.Random(seed).shuffle(leaves)
            t = tracker(*leaves, "held", "runs")
            t.update("held", State.STOPPED, finite=True)
            t.update("runs", State.RUNNING, finite=True)
            chain(t, ["held", *leaves[:4]])
            chain(t, ["runs", *leaves[4:]])
            assert not settled(t)
            t.update("runs", State.STOPPED, finite=True)
            assert settled(t)


def test_a_long_chain_is_checked_in_linear_time() -> None:
    """A 10,000-job chain behind an ``autostart: false`` head took 7.7 s to settle: each
    check walked every leaf's chain again (quadratic); each step is now walked once a check."""
    n = 20_000
    names = [f"j{i}" for i in range(n)]
    t = tracker(*names)
    chain(t, names)
    t.update("j0", State.STOPPED, finite=True)
    begun = time.perf_counter()
    for _ in range(5):
        assert settled(t)
    # Quadratic is 2e8 steps a check, minutes; linear is about 20 ms each.
    assert time.perf_counter() - begun < 3


def held_chain(n: int, *, autostart: bool) -> list[JobSpec]:
    """A once-job ``j0`` that blocks until released, and ``j1``..``j{n-1}``: each waits for
    the one before it."""
    head = python_job("j0", "jobfuncs:block", "j0", autostart=autostart)
    return [head] + [
        replace(python_job(f"j{i}", "jobfuncs:ok", f"j{i}"), depends_on=(f"j{i - 1}",))
        for i in range(1, n)
    ]


@pytest.mark.timeout(120)
def test_a_tree_with_a_long_chain_behind_a_held_head_settles(make_tree) -> None:
    n = 2_000
    tree = make_tree(tree_of(*held_chain(n, autostart=False)))
    assert tree.wait(60)
    rows = {row["path"]: row for row in flatten_status(tree.status())}
    assert {rows[f"j{i}"]["state"] for i in range(1, n)} == {"pending"}


def test_a_tree_with_a_chain_behind_a_running_head_waits_for_it(make_tree, events) -> None:
    tree = make_tree(tree_of(*held_chain(4, autostart=True)), on_event=events)
    events.reached("j0", "running")
    assert not tree.wait(0)  # j0 runs: the chain behind it runs after it
    jobfuncs.EVENTS["j0.release"].set()
    assert tree.wait(10)
    events.reached("j3", "succeeded")
