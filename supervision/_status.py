"""The status document of SPEC §4: one node builder for every child, running or not."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka

from actors._errors import TreeStoppedError
from actors._job import upcoming_tick
from supervision._records import Command, Op
from supervision._spec import JobSpec, SupervisorSpec
from supervision._state import State

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from actors import Breaker, Outcome, SupervisedActor
    from supervision._records import ChildRecord
    from supervision._spec import ChildSpec

__all__ = [
    "LastExit",
    "Process",
    "child_nodes",
    "document",
    "idle_children",
    "node",
    "resolve",
    "stopped_children",
    "version",
]


@functools.cache
def version() -> str:
    """jobvisor's version, as ``--version`` says it (read once: the metadata costs ~10 ms)."""
    from importlib.metadata import PackageNotFoundError  # noqa: PLC0415
    from importlib.metadata import version as of  # noqa: PLC0415

    try:
        return of("jobvisor")
    except PackageNotFoundError:
        return "0+checkout"


@dataclass(frozen=True, slots=True)
class Process:
    """The jobvisor that serves a status document: its ``process`` object (a daemon's, and
    ``run --http``'s endpoint's), which says which process answers and since when."""

    mode: str  # "daemon" or "run"
    manifest: Path | None  # None: a manifest given as text
    state_dir: Path
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)  # wall time, as every ``at``
    _started: float = field(default_factory=time.monotonic)  # uptime: no clock step in it

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "pid": self.pid,
            "version": version(),
            "started_at": self.started_at,
            "uptime": round(time.monotonic() - self._started, 3),
            "manifest": str(self.manifest) if self.manifest is not None else None,
            "state_dir": str(self.state_dir),
            # Its nodes mark each replica (``replica_of``): none marked is no replicas. A
            # client reads replicas by their names (w.0, w.1) only without this (older).
            "marks_replicas": True,
        }


@dataclass(frozen=True, slots=True)
class LastExit:
    """How a child's last incarnation ended, as ``last_exit`` shows it."""

    outcome: Outcome
    code: int | None
    error: str | None
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "code": self.code,
            "error": self.error,
            "at": self.at,
        }


def node(
    spec: ChildSpec,
    path: str,
    state: State,
    *,
    starts: int = 0,
    restarts: int = 0,
    failures: int = 0,
    last_exit: LastExit | None = None,
    next_start_at: float | None = None,
    pid: int | None = None,
    since: float | None = None,
    children: Any = None,
) -> dict[str, Any]:
    """One child's status node; ``children`` (a group's) is a list or a pending future.

    Beyond SPEC's fields: ``pid``, the process leading a running job's process group (a
    command's, an ``isolation: process`` python job's), and ``since``, the wall time of
    its last change of state; and ``autostart: false`` on a job that does not start with
    its tree (the field is there only then); ``replica_of``, on a replica only, the name of
    the job it is one of (``replicas: N``), the only proof: a person may name jobs ``q.0``.
    """
    out: dict[str, Any] = {
        "name": spec.name,
        "path": path,
        "kind": spec.kind,
        "state": state.value,
        "starts": starts,
        "restarts": restarts,
        "failures": failures,
        "last_exit": last_exit.as_dict() if last_exit is not None else None,
        "next_start_at": next_start_at,
        "pid": pid,
        "since": since,
    }
    if isinstance(spec, JobSpec) and not spec.autostart:
        out["autostart"] = False
    if isinstance(spec, JobSpec) and spec.replica_of is not None:
        out["replica_of"] = spec.replica_of
    if isinstance(spec, SupervisorSpec):
        out["children"] = idle_children(spec, path) if children is None else children
    return out


def child_nodes(records: list[ChildRecord], now: float) -> list[dict[str, Any]]:
    """A supervisor's status nodes; a running group's children come as a pending future.

    ``now`` is the wall time: a periodic job's tick that is due already (it runs now) is
    not shown as its next one.
    """
    nodes: list[dict[str, Any]] = []
    for rec in records:
        children: Any = None
        if isinstance(rec.spec, SupervisorSpec):
            actor = rec.actor
            children = (
                _ask_status(actor)
                if actor is not None
                else stopped_children(rec.spec, rec.path, rec.final_children)
            )
        waiting = rec.state in (State.BACKOFF, State.COOLDOWN, State.WAITING) or (
            rec.periodic and rec.state is State.RUNNING  # the next tick (after the first one)
        )
        out = node(
            rec.spec,
            rec.path,
            rec.state,
            starts=rec.starts,
            restarts=rec.restarts,
            failures=rec.failures,
            last_exit=rec.last_exit,
            next_start_at=_next_start(rec, now) if waiting else None,
            pid=_leader(rec),
            since=rec.since,
            children=children,
        )
        if rec.periodic and rec.state is State.RUNNING and _between_ticks(rec):
            out["between_ticks"] = True
        placed = _placed_on(rec)
        if placed is not None:
            out["node"] = placed
        nodes.append(out)
    return nodes


def _between_ticks(rec: ChildRecord) -> bool:
    """Whether a periodic job that is ``running`` (SPEC's state from its start on: its
    dependants count on it) runs no tick now, and waits for its next one.

    Read from its actor's attempt in flight, as ``leader_pid`` is: a tick's start tells the
    supervisor nothing (it would cost a message per tick for a display).
    """
    actor = rec.actor
    return actor is not None and getattr(actor, "_attempt", True) is None


def _leader(rec: ChildRecord) -> int | None:
    """The running job's process, as its actor recorded it at the spawn: no ``/proc`` read."""
    leader = getattr(rec.actor, "leader_pid", None) if rec.actor is not None else None
    return leader() if leader is not None else None


def _next_start(rec: ChildRecord, now: float) -> float | None:
    at = rec.next_start_at
    if not rec.periodic or rec.state is not State.RUNNING:
        return at
    assert isinstance(rec.spec, JobSpec)
    if rec.spec.schedule.jitter:
        # Each tick's delay is drawn as its actor arms it: shown once drawn (the first one's
        # too, which no attempt's report has told yet).
        at = getattr(rec.actor, "next_tick_at", None) or at
    return at if at is None or at > now else upcoming_tick(rec.spec.schedule, at, now)


def _placed_on(rec: ChildRecord) -> dict[str, str] | None:
    """The Ray node (``{id, ip}``) a placed child's incarnation runs on, while it runs."""
    placement = getattr(rec.spec, "placement", "local")
    if rec.actor is None or placement == "local" or rec.state is not State.RUNNING:
        return None
    where = getattr(getattr(rec.actor, "work", None), "node", None) or getattr(
        rec.actor, "placed_node", None
    )
    return dict(where) if where else None


def _ask_status(actor: SupervisedActor) -> pykka.Future[Any]:
    future: pykka.Future[Any] = pykka.ThreadingFuture()
    try:
        actor.actor_ref.tell(Command(Op.STATUS, (), future))
    except pykka.ActorDeadError:
        future.set(None)
    return future


def idle_children(spec: SupervisorSpec, path: str) -> list[dict[str, Any]]:
    """Status nodes for the children of a group that is not running."""
    return [node(child, f"{path}/{child.name}", State.STOPPED) for child in spec.children]


def stopped_children(spec: SupervisorSpec, path: str, nodes: Any) -> Any:
    """The children of a group that is down: its last nodes (``nodes``, at its stop; None: it
    never ran), and a job a reload added since, ``stopped`` as they are, in the spec's order
    (a reload's new order too); one a reload removed, while still shown, after them.

    One a reload changed or removed meanwhile keeps its last node until the group starts
    (compared then with the spec it was counted under: see ``Carried.onto``), and so do its
    metric series; one it added has its zero series from the reload on, and is listed so.
    One pass: a status read of a 10,000-job group is not quadratic.
    """
    if nodes is None:
        return None
    last: dict[Any, dict[str, Any]] = {}
    for item in nodes:
        last.setdefault(item.get("name"), item)
    out: list[dict[str, Any]] = []
    for child in spec.children:
        was = last.pop(child.name, None)
        if was is None:
            out.append(node(child, f"{path}/{child.name}", State.STOPPED))
        elif isinstance(child, SupervisorSpec) and isinstance(was.get("children"), list):
            out.append({**was, "children": stopped_children(child, was["path"], was["children"])})
        else:
            out.append(was)
    # Removed by a reload, shown until the group starts: after the spec's own.
    removed = {id(item) for item in last.values()}
    out.extend(item for item in nodes if id(item) in removed)
    return out


def document(
    name: str, state: State, children: Any, breakers: Mapping[str, Breaker], deadline: float
) -> dict[str, Any]:
    """The whole tree's status: its nodes resolved, by ``deadline`` (monotonic)."""
    return {
        "name": name,
        "state": state.value,
        "children": resolve(children, deadline),
        "breakers": {name: b.state.value for name, b in sorted(breakers.items())},
    }


def resolve(nodes: Any, deadline: float) -> list[dict[str, Any]]:
    """Replace each running group's pending status future by its children, recursively."""
    out: list[dict[str, Any]] = []
    for item in nodes or ():
        children = item.get("children")
        if isinstance(children, pykka.Future):
            try:
                children = children.get(timeout=max(0.0, deadline - time.monotonic()))
            except (pykka.ActorDeadError, pykka.Timeout, TreeStoppedError):
                children = None  # the group ended before it answered: shown as not running
        out.append(
            item
            if children is None and "children" not in item
            else {**item, "children": resolve(children, deadline)}
        )
    return out
