"""A group's own grace: when it runs out, every process under the group is killed at once.

Real actors and real command processes that ignore SIGTERM (their own and their
child's), each with a grace far longer than the group's: whatever stops the group (a
person's stop, a restart, the tree's stop), no process of its jobs may run on once the
group counts as stopped, nor when its next incarnation starts.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import logbook
from faultkit import gone, wait_until
from treekit import FAST

from actors import CommandWork
from supervision import (
    ChildExited,
    JobSpec,
    Outcome,
    Schedule,
    StateChanged,
    SupervisorSpec,
)
from supervision._table import flatten_status

OWN_GRACE = 30.0  # each job's: a test that waited for it would hit its timeout
GROUP_GRACE = 0.3


def stubborn(name: str, where: Path) -> JobSpec:
    """A command service whose shell and child both ignore SIGTERM; each start appends a line
    ``LEADER CHILD`` (their pids) to ``where/name``."""
    shell = f"trap '' TERM; sleep 60 & echo $$ $! >> {where / name}; wait"
    return JobSpec(
        name=name,
        work=CommandWork(shell=shell),
        schedule=Schedule(service=True),
        grace=OWN_GRACE,
    )


def group(where: Path) -> SupervisorSpec:
    """``g`` (its grace 0.3 s) of two stubborn jobs and a group ``h`` (no grace of its own)
    of a third: stopped one after another, they would take 90 s."""
    inner = SupervisorSpec(name="h", policy=FAST, children=(stubborn("c", where),))
    children = (stubborn("a", where), stubborn("b", where), inner)
    return SupervisorSpec(name="g", policy=FAST, children=children, grace=GROUP_GRACE)


JOBS = {"g/a": "a", "g/b": "b", "g/h/c": "c"}


def started(where: Path, times: int = 1) -> dict[str, list[int]]:
    """Each job's pids (leader and child) of its ``times``-th start, once it has made them."""

    def lines(name: str) -> list[str]:
        path = where / name
        return path.read_text().splitlines() if path.exists() else []

    wait_until(
        lambda: all(len(lines(n)) >= times for n in JOBS.values()), f"start {times} of each job"
    )
    return {path: [int(p) for p in lines(n)[times - 1].split()] for path, n in JOBS.items()}


def sigkill_pending(pid: int) -> bool:
    """Whether ``pid`` has a SIGKILL on its way: dying, if not dead yet (the kill is sent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone meanwhile
    bit = 1 << (signal.SIGKILL - 1)
    return any(
        int(line.split()[1], 16) & bit
        for line in status.splitlines()
        if line.startswith(("SigPnd:", "ShdPnd:"))
    )


def still_running(pids: dict[str, list[int]]) -> dict[str, list[int]]:
    """Those of ``pids`` that run on: neither gone (or a zombie) nor with a SIGKILL pending."""
    left = {
        path: [p for p in ps if not gone(p) and not sigkill_pending(p)] for path, ps in pids.items()
    }
    return {path: ps for path, ps in left.items() if ps}


def all_gone(pids: dict[str, list[int]]) -> bool:
    return all(gone(p) for ps in pids.values() for p in ps)


def nodes(tree: Any) -> dict[str, dict[str, Any]]:
    return {node["path"]: node for node in flatten_status(tree.status())}


def exits(events: Any) -> dict[str, list[tuple[int, Outcome]]]:
    out: dict[str, list[tuple[int, Outcome]]] = {}
    for e in events.of(ChildExited):
        out.setdefault(e.path, []).append((e.incarnation, e.outcome))
    return out


class TestAGroupPastItsGrace:
    def test_a_stop_kills_every_process_under_it_before_it_counts_as_stopped(
        self, make_tree, events, logs, tmp_path
    ) -> None:
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group(tmp_path),)), on_event=events)
        assert tree.started(10)
        pids = started(tmp_path)
        began = time.monotonic()
        tree.stop_child("g")
        took = time.monotonic() - began
        assert still_running(pids) == {}, "the group counts as stopped: nothing of it may run"
        assert took < OWN_GRACE / 3, "its jobs' own graces were not waited out"
        wait_until(lambda: all_gone(pids), "the killed processes gone", timeout=5)
        # One exit each, killed, the group's too: its grace ran out.
        # Events reach a subscriber on the bus's own thread: the group's may come just after.
        want = {path: [(1, Outcome.KILLED)] for path in (*JOBS, "g/h", "g")}
        events.wait_for(
            lambda items: {e.path for e in items if isinstance(e, ChildExited)} >= set(want)
        )
        assert exits(events) == want
        said = nodes(tree)
        assert said["g"]["state"] == "stopped"
        assert said["g"]["last_exit"]["outcome"] == "killed"
        for path in (*JOBS, "g/h"):
            assert said[path]["state"] == "stopped", path
            assert said[path]["last_exit"]["outcome"] == "killed", path
        assert logs.has_warning(
            f"g: did not stop within {GROUP_GRACE}s (its grace); killing every job still running "
            "under it"
        ), [r.message for r in logs.records if r.level >= logbook.WARNING]
        # Each job's story says it too, as a detail: the group's line is the warning.
        for path in JOBS:
            assert logs.has_info(f"{path}: killed (its group g did not stop within {GROUP_GRACE}s)")
        assert not [
            r.message for r in logs.records if ": killed (" in r.message and r.level > logbook.INFO
        ]

    def test_a_restart_starts_its_jobs_again_only_once_the_old_ones_are_killed(
        self, make_tree, events, tmp_path
    ) -> None:
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group(tmp_path),)), on_event=events)
        assert tree.started(10)
        old = started(tmp_path)
        tree.restart("g")
        assert still_running(old) == {}, "two copies of a job: the old one runs on"
        new = started(tmp_path, times=2)
        assert still_running(new) == new
        for path in JOBS:
            # The old incarnation's end is told before the new one's start: never both.
            mine = [
                e
                for e in events.items
                if e.path == path
                and (
                    isinstance(e, ChildExited)
                    or (isinstance(e, StateChanged) and e.new.value == "starting")
                )
            ]
            kinds = [
                (type(e).__name__, e.outcome if isinstance(e, ChildExited) else None) for e in mine
            ]
            assert kinds == [
                ("StateChanged", None),
                ("ChildExited", Outcome.KILLED),
                ("StateChanged", None),
            ], path
        wait_until(lambda: all_gone(old), "the killed processes gone", timeout=5)

    def test_the_trees_stop_kills_every_process_under_it(self, make_tree, events, tmp_path) -> None:
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group(tmp_path),)), on_event=events)
        assert tree.started(10)
        pids = started(tmp_path)
        began = time.monotonic()
        assert tree.stop(timeout=20)
        assert time.monotonic() - began < OWN_GRACE / 3
        assert still_running(pids) == {}
        assert exits(events)["g"] == [(1, Outcome.KILLED)]
        wait_until(lambda: all_gone(pids), "the killed processes gone", timeout=5)
