"""What a supervisor keeps and is told: its records of children, its messages, its context.

The supervisor actor (``_supervisor``) is the only writer of these records;
the selections at the end read them without changing anything. The tree
context also says what the supervisors decide and hear: it logs and publishes
a decision (``announce``) or an attempt's end, whoever's it is.
"""

from __future__ import annotations

import enum
import heapq
import queue
import random
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import logbook

from actors import JobActor, NoSuchChildError, Outcome, describe, start_supervised
from actors._errors import GroupDownError, NotAGroupError
from actors._placement import RayPlacement
from supervision import _events as ev
from supervision._groupdeps import Blocker, GroupDeps
from supervision._logging import CLEAN_EXIT, QUIET, RESTARTED, held_back
from supervision._policy import Cooldown, Restart, RestartType, Strategy
from supervision._spec import ActorSpec, JobSpec, SupervisorSpec, same_child
from supervision._state import State

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, MutableMapping

    import pykka

    from actors import (
        AttemptDone,
        Breaker,
        BreakerState,
        ChildRef,
        Link,
        Scheduler,
        SupervisedActor,
        TimerHandle,
    )
    from actors._attempt import LineCut, ReadyCheck
    from actors._job import Schedule
    from supervision._budget import TreeBudget
    from supervision._exits import ExitReason
    from supervision._inplace import InPlace
    from supervision._output import OutputFiles
    from supervision._policy import Decision, RestartPolicy, Window
    from supervision._spec import ChildSpec
    from supervision._status import LastExit
    from supervision._tracker import Tracker

log = logbook.Logger("supervision")

__all__ = [
    "CLOSED_BECAUSE",
    "COMING_BACK",
    "DEPENDENCY_STATES",
    "DOWN_FOR_GOOD",
    "GROUP_KEY",
    "Carried",
    "ChildRecord",
    "Command",
    "FinalStatus",
    "GroupRecord",
    "GroupUpdated",
    "Intent",
    "Op",
    "Timer",
    "TimerKind",
    "TreeContext",
    "disarm",
    "down_dependency",
    "group_members",
    "settle",
    "start_incarnation",
    "stop_order",
    "target",
    "unmet_dependency",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeContext:
    """What every supervisor of one tree shares; built once by ``start_tree``."""

    scheduler: Scheduler
    bus: ev.EventBus
    tracker: Tracker
    tree_id: str
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    rand: Callable[[], float] = random.random
    dead_letter: Callable[[str, Any], None] | None = None
    mask: Callable[[str], str] = str  # hides the manifest's secrets in status and events
    # Called inline in the supervisor's thread with every decision and attempt event (state
    # changes only if sink_kinds names them): the journal's record, metrics. Never blocks.
    sink: Callable[[ev.Event], None] | None = None
    sink_kinds: frozenset[type[ev.Event]] | None = None  # what the sink keeps; None: every kind
    # Called inline with every state change, no event built for it: a sink's ``on_state``
    # (the metrics), for which three events per restart were a fifth of what they cost.
    state_hook: Callable[[str, State, State], None] | None = None
    # Called inline with every failure the status counts (a sink's ``on_failure``: the
    # metrics), the one that opens a breaker too, which ends no incarnation.
    failure_hook: Callable[[str, Outcome], None] | None = None
    # Likewise with every restart the status counts (a sink's ``on_restart``).
    restart_hook: Callable[[str], None] | None = None
    # Likewise, in the job's own thread, as a periodic job's tick starts (True) and ends (a
    # sink's ``on_tick``: the metrics' between_ticks, which the status reads from the actor).
    tick_hook: Callable[[str, bool, object], None] | None = None
    # Told when the sink or one of its hooks raises: logged, and the turn goes on.
    sink_failed: ev.SinkFailures = field(default_factory=ev.SinkFailures)
    # A daemon's restart: children still cooling down per the journal, {path: (left, cycle)}.
    cooldowns: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    # A daemon's or run's start: each persistent job's last tick (its start, wall time) per
    # the journal, {path: at}; taken (popped) at the job's first start, so only that start
    # goes by it (a job a reload adds later is a new one).
    last_ticks: MutableMapping[str, float] = field(default_factory=dict)
    # `run --resume`: once-jobs whose identical spec succeeded in an earlier run, {path: (code,
    # at)} of that success; each settles as succeeded with it at its first start, not run.
    succeeded: Mapping[str, tuple[int | None, float]] = field(default_factory=dict)
    breakers: Mapping[str, Breaker] = field(default_factory=dict)
    breaker_listener: Callable[[str, BreakerState, BreakerState], None] | None = (
        None  # unhooked when the tree stops
    )
    output: OutputFiles | None = None  # the jobs' output files; None: output goes to the log only
    # Keeps a secret whole where a command's long line is cut in parts (``Attempt.cut``): the
    # tree's masker; None when it has no secret.
    cut: LineCut | None = None
    budget: TreeBudget | None = None  # the root's budget, charged by every supervisor
    # Every supervisor's children as it last set them, for a dependency on a group.
    group_deps: GroupDeps = field(default_factory=GroupDeps)

    def publish(self, kind: type[ev.Event], event: Callable[[], ev.Event]) -> None:
        """Give the sink and the bus an event of ``kind``, built only if one of them takes it."""
        sink, bus = self.sink, self.bus
        if sink is not None and self.sink_kinds is not None and kind not in self.sink_kinds:
            sink = None
        if sink is None and not bus.active:
            if bus.numbered is not None:
                bus.passed()  # numbered all the same: an endpoint's gap counts it
            return
        built = event()
        if sink is not None:
            try:  # no cost unless it raises (3.11's exceptions): on every restart
                sink(built)
            except Exception as exc:
                self.sink_failed(sink, built, exc)
        if bus.active:
            bus.publish(built)
        elif bus.numbered is not None:
            bus.passed()

    def restarted(self, rec: ChildRecord) -> None:
        """Count a restart of ``rec``'s, in its status and for the restart hook."""
        rec.restarts += 1
        hook = self.restart_hook
        if hook is not None:
            try:
                hook(rec.path)
            except Exception as exc:
                self.sink_failed(hook, f"the restart of {rec.path}", exc)

    def failed(self, rec: ChildRecord, outcome: Outcome) -> None:
        """Count a failure of ``rec``'s, in its status and for the failure hook."""
        rec.failures += 1
        hook = self.failure_hook
        if hook is not None:
            try:
                hook(rec.path, outcome)
            except Exception as exc:
                self.sink_failed(hook, f"the failure of {rec.path} ({outcome.value})", exc)

    def ticks_of(self, path: str) -> Callable[[bool], None] | None:
        """What a periodic job's incarnation at ``path`` calls as each tick starts and ends
        (None: no hook). The hook is told whose tick it is: one left behind by an incarnation
        before (its thread abandoned) must not end the tick of the next."""
        hook = self.tick_hook
        if hook is None:
            return None
        incarnation = object()

        def ticked(running: bool) -> None:
            try:
                hook(path, running, incarnation)
            except Exception as exc:
                said = "starts" if running else "ends"
                self.sink_failed(hook, f"{path}: a tick {said}", exc)

        return ticked

    def state_changed(self, path: str, old: State, new: State) -> None:
        """Publish a state change; the sink gets it only if it names ``StateChanged``."""
        hook = self.state_hook
        if hook is not None:
            try:
                hook(path, old, new)
            except Exception as exc:
                self.sink_failed(hook, f"{path}: {old.value} -> {new.value}", exc)
        kinds, bus = self.sink_kinds, self.bus
        # Not to a sink that takes every kind: sinks were promised no state changes.
        sink = self.sink if kinds is not None and ev.StateChanged in kinds else None
        if sink is None and not bus.active:
            if bus.numbered is not None:
                bus.passed()
            return
        event = ev.StateChanged(path=path, at=self.wall(), old=old, new=new)
        if sink is not None:
            try:
                sink(event)
            except Exception as exc:
                self.sink_failed(sink, event, exc)
        if bus.active:
            bus.publish(event)
        elif bus.numbered is not None:
            bus.passed()

    def announce(
        self,
        decision: Decision,
        policy: RestartPolicy,
        path: str,
        what: str,
        *,
        tail: str = "",
        extra: dict[str, Any] | None = None,
        clean: bool = False,
    ) -> None:
        """Log and publish a restart or cooldown decision, a child's or a group's.

        ``what`` names what it does (``restart 3``, ``one_for_all restart of a, b``)
        and ``tail`` adds to the log line; a give-up or an escalation has its own path.
        ``clean``: the restart follows a clean exit, which its line reports (a loop of
        them is damped like a crash loop).
        """
        wall = self.wall
        match decision:
            case Restart(delay=delay, number=number):
                intensity = policy.intensity
                msg = "{}: {} in {:.3f}s{} (restart {} of {} within {:g}s)"
                args = (
                    path or "root",
                    what,
                    delay,
                    tail,
                    number,
                    intensity.max_restarts,
                    intensity.within,
                )
                about = extra.get("path") if extra else None
                if not (
                    about
                    and held_back(
                        log,
                        logbook.INFO,
                        about,
                        msg,
                        args,
                        clean=clean,
                        restart=True,
                        delay=delay,
                        tree=self.tree_id,
                    )
                ):
                    # for the damper alone: a clean loop's, or a restart and its delay
                    flag: Any = {CLEAN_EXIT: True} if clean else {RESTARTED: float(delay)}
                    log.info(msg, *args, extra={**(extra or {}), **flag})
                self.publish(
                    ev.RestartScheduled,
                    lambda: ev.RestartScheduled(path=path, at=wall(), delay=delay, number=number),
                )
            case Cooldown(duration=duration, cycle=cycle, reason=reason):
                log.warning(
                    "{}: {} {:g}s (cycle {}) because {}{}",
                    path or "root",
                    what,
                    duration,
                    cycle,
                    reason,
                    tail,
                    extra=extra,
                )
                self.publish(
                    ev.CooldownStarted,
                    lambda: ev.CooldownStarted(
                        path=path, at=wall(), duration=duration, cycle=cycle
                    ),
                )

    def attempt_finished(self, path: str, msg: AttemptDone, reason: ExitReason) -> str | None:
        """Log (at debug) and publish how one attempt of the job at ``path`` ended, as
        ``reason`` (``classify``'s) says.

        A failed attempt is the child's failure, which a record at ERROR says: its exit's
        (a once-job, a service, a periodic job's tick all end the incarnation when they
        fail), or its wait for the breaker the failure opened. The same crash is not
        logged twice at two levels. Returns the error as shown (the exit it ends reuses it).
        """
        # The classification's error where it has one (why a service's clean exit failed);
        # else the attempt's own. A stop's own signal or cancellation is none (SPEC §2), nor
        # the SIGKILL (or thrown Kill) past its grace, as its exit says it; what the work
        # raised as it stopped is one, said at WARNING (its outcome, stopped, is no failure to
        # say at ERROR); an exit status of its own on its stop signal (a trap's exit 7) is one
        # too, said at INFO as the status says it: no failure is counted, and a WARNING read
        # as one.
        outcome = reason.outcome
        raised = msg.error if reason.error is None else reason.error
        error = None if outcome is Outcome.KILLED else self.shown(raised)
        code = msg.code
        if (
            outcome is Outcome.STOPPED
            and error is not None
            and raised is msg.error
            and code is not None
            and code > 0
        ):
            log.info(
                "{}: stopped (exited with {} on its stop signal)",
                path,
                code,
                extra={"path": path, "attempt": msg.attempt},
            )
        elif outcome is Outcome.STOPPED and error is not None:
            log.warning(
                "{}: failed while stopping: {}",
                path,
                error,
                extra={"path": path, "attempt": msg.attempt},
            )
        elif (debug := log.debug) is not QUIET:  # on every restart: no call when it is off
            extra = {"path": path, "attempt": msg.attempt}
            if outcome.is_failure:
                debug("{}: attempt {} {}: {}", path, msg.attempt, outcome.value, error, extra=extra)
            else:
                debug("{}: attempt {} {}", path, msg.attempt, outcome.value, extra=extra)
        self.publish(
            ev.AttemptFinished,
            lambda: ev.AttemptFinished(
                path=path,
                at=msg.ended_at,
                attempt=msg.attempt,
                outcome=outcome,
                error=error,
                started_at=msg.started_at,
                code=msg.code,
                node=msg.node,
                next_at=msg.next_at,
            ),
        )
        return error

    def shown(self, error: BaseException | None) -> str | None:
        """An error as logs, status and events show it: described, secrets masked."""
        return None if error is None else self.mask(describe(error))


class Op(enum.Enum):
    """What a ``Command`` from the tree handle asks."""

    STATUS = "status"
    AUTOSTART = "set autostart"
    STOP = "stop"
    START = "start"
    RESTART = "restart"
    SIGNAL = "signal"
    REMOVE = "remove"
    ADD = "add"
    REF = "ref"
    UPDATE = "update"
    SHUTDOWN = "shut down"
    KILL = "kill"


@dataclass(frozen=True, slots=True)
class Command:
    """A request from the tree handle, routed down ``path`` to the supervisor that owns it.

    ``reply`` is set with the result (or the error) once the request is done,
    e.g. after a stopped child has really stopped.
    """

    op: Op
    path: tuple[str, ...]
    reply: pykka.Future[Any]
    arg: Any = None


class Intent(enum.Enum):
    """Why a child's stop is under way; ``SHUTDOWN``/``ESCALATE`` also say why a supervisor ends."""

    STOP = "stop"  # a person: it stays down
    RESTART = "restart"  # a person: it starts again at once
    REMOVE = "remove"  # a person: it is forgotten
    GROUP = "group"  # a group restart takes it down and brings it back
    SHUTDOWN = "shutdown"
    ESCALATE = "escalate"


# Stops after which the child comes back (and which therefore leave its reference open).
COMING_BACK = frozenset({Intent.RESTART, Intent.GROUP})


class TimerKind(enum.Enum):
    RESTART = "restart"  # a child's backoff is over
    PROBE = "probe"  # a child's cooldown is over: one probe start
    PROBATION = "probation"  # a child's probe survived its probation
    KILL = "kill"  # a child ignored its stop for its whole grace
    GROUP_RESTART = "group restart"  # the group's backoff (or cooldown) is over
    GROUP_PROBATION = "group probation"


GROUP_KEY = 0  # child keys start at 1


@dataclass(eq=False, slots=True)
class Timer:
    """A timer's message to its supervisor.

    The one token scheme: a timer counts only while its owner (a child's
    record, or the group's) still holds this very message in the slot it was
    armed in; cancelling or re-arming empties the slot, so a message already on
    its way is recognised as stale.
    """

    key: int  # the child's record, or GROUP_KEY
    kind: TimerKind
    handle: TimerHandle | None = None

    @classmethod
    def arm(
        cls, key: int, kind: TimerKind, delay: float, scheduler: Scheduler, to: pykka.ActorRef[Any]
    ) -> Timer:
        """A timer that tells ``to`` this message after ``delay`` seconds."""
        timer = cls(key, kind)

        def fire() -> None:
            if to.is_alive():
                to.tell(timer)

        timer.handle = scheduler.call_later(delay, fire)
        return timer


@dataclass(frozen=True, slots=True)
class Carried:
    """A child's counters as one incarnation of its group leaves them, for the next one.

    A group's restart (a person's, its parent's strategy, an escalation's) starts a new
    supervisor: its children count on from these, so a path's starts and attempt numbers
    never repeat within one tree's life (the metrics, being counters, never go back either).
    """

    spec: ChildSpec  # what they were counted under: a job changed since starts from zero
    incarnation: int
    starts: int
    restarts: int
    failures: int
    attempts: int
    last_exit: LastExit | None
    # A group child's: its children's, by name, and its last status nodes.
    children: Mapping[str, Carried] | None = None
    nodes: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, rec: ChildRecord) -> Carried:
        return cls(
            rec.spec,
            rec.incarnation,
            rec.starts,
            rec.restarts,
            rec.failures,
            rec.attempts,
            rec.last_exit,
            rec.carried,
            rec.final_children,
        )

    def onto(self, rec: ChildRecord) -> None:
        """Give ``rec`` (a new record of the same name) these counters, if they are its own.

        A job or an actor whose spec changed since (a reload while its group was down) is a
        new child, as a reload's replaced one is: it starts from zero. A group is the same
        group whatever its spec: its children are matched in their turn.
        """
        group = isinstance(rec.spec, SupervisorSpec)
        if group != isinstance(self.spec, SupervisorSpec) or (
            not group and not same_child(rec.spec, self.spec)
        ):
            return
        rec.incarnation = self.incarnation
        rec.starts, rec.restarts, rec.failures = self.starts, self.restarts, self.failures
        rec.attempts, rec.last_exit = self.attempts, self.last_exit
        rec.run_from = self.attempts  # its group starts anew: so does its run of ticks
        rec.carried, rec.final_children = self.children, self.nodes


@dataclass(frozen=True, slots=True)
class FinalStatus:
    """A supervisor's last status nodes, sent to its parent just before it ends, and its
    children's counters (by name), which its group's next incarnation counts on from.

    ``spec`` is the one the group's next incarnation starts from: the group as it ran, with
    the children commands added and removed (its parent's record has the one it started
    from), or the one an update gave it while it ended.
    """

    key: int
    incarnation: int
    nodes: list[dict[str, Any]]
    carried: Mapping[str, Carried]
    spec: SupervisorSpec | None = None


@dataclass(frozen=True, slots=True)
class GroupUpdated:
    """A running group took an update (``Op.UPDATE``): told its parent before the update's
    answer, for the parent's record to hold the new spec at once (the group's ``restart``
    and ``grace``, which the parent applies, and what a restart starts from)."""

    key: int
    incarnation: int
    spec: SupervisorSpec


@dataclass(slots=True, eq=False)
class ChildRecord:
    """Runtime facts about one child, owned (read and written) by its supervisor only."""

    spec: ChildSpec
    key: int
    path: str
    ref: ChildRef
    window: Window  # restarts inside the intensity window, cooldown cycles, probing
    state: State = State.PENDING
    # Invariant: ``actor`` is the live incarnation from a successful start until its
    # ChildExit is handled, and None otherwise. While it is set the state is STARTING,
    # RUNNING, WAITING, PROBATION or STOPPING; a start whose constructor raised leaves it
    # None in STARTING until the ChildExit it tells itself arrives (see ``_launch``).
    actor: SupervisedActor | None = None
    incarnation: int = 0
    starts: int = 0
    restarts: int = 0  # restarts that happened (a scheduled one counts when it starts)
    failures: int = 0
    # Attempts finished over all incarnations: the next incarnation's actor counts on from it.
    attempts: int = 0
    # A periodic job's ``times`` count from here: the attempts before the run of ticks that a
    # person's start (or its group's new start) began; its own restarts go on counting.
    run_from: int = 0
    last_exit: LastExit | None = None
    next_start_at: float | None = None
    since: float | None = None  # wall time of the last change of ``state`` (status's ``since``)
    timer: Timer | None = None  # a restart, probe or probation timer
    kill_timer: Timer | None = None
    intent: Intent | None = None  # why a stop is under way
    # The live incarnation's permit to restart in place (``supervision._inplace``), if granted.
    permit: InPlace | None = None
    waiters: list[Callable[[], None]] = field(default_factory=list)
    final_children: list[dict[str, Any]] | None = None  # a stopped group's last status nodes
    # A group child's: its children's counters as its last incarnation left them.
    carried: Mapping[str, Carried] | None = None
    waits_for: str | None = None  # the dependency its last "waiting for" line named
    # A group's: ``spec`` was given it (by an update) while its incarnation ended, and its
    # next start takes that one, not the one the ending incarnation reports (``FinalStatus``).
    given: bool = False
    # Left stopped at its supervisor's start (autostart: false) and not started since: what
    # the journal decides of a first start (a cooldown, --resume's success) is not its.
    held: bool = False
    # A persistent job's first start, from the journal (``Supervisor._persisted``): run the
    # tick it missed at once (cleared once started), or go on from its last tick (wall time;
    # cleared once its first tick is shown).
    catch_up: bool = False
    last_tick: float | None = None
    # A probe's probation (``Supervisor._probation_over``): its time is over (``served``);
    # a periodic job's tick succeeded since the probe started (``ticked``).
    served: bool = False
    ticked: bool = False
    # Monotonic time it began to wait for its breaker (state waiting), None when it does not:
    # that wait is no running time, as a backoff's is not (``Window.waited``).
    waiting_since: float | None = None
    # What the spec says, read on every restart: a job that ends by itself (the tracker's
    # ``finite``), and a periodic job (whose attempts do not end the child).
    finite: bool = field(init=False)
    periodic: bool = field(init=False)

    def __post_init__(self) -> None:
        spec = self.spec
        self.finite = spec.finite
        self.periodic = isinstance(spec, JobSpec) and spec.schedule.periodic


@dataclass(slots=True, eq=False)
class GroupRecord:
    """The group's own restart state, for one_for_all and rest_for_one."""

    window: Window
    timer: Timer | None = None  # the pending group restart, or the group's probation
    members: list[ChildRecord] = field(default_factory=list)  # what the restart brings back


# A sibling reaching one of these may unblock (or finally fail) a child waiting on depends_on.
DEPENDENCY_STATES = frozenset(
    {State.RUNNING, State.PROBATION, State.SUCCEEDED, State.FAILED, State.GAVE_UP, State.WAITING}
)
# A dependency in one of these will not come back by itself: a person's start of a job that
# depends on it is refused (a job already waiting for it waits on, or fails at once as at boot).
DOWN_FOR_GOOD = frozenset({State.FAILED, State.GAVE_UP, State.STOPPED})
# Why a child's reference is closed when it settles in each final state.
CLOSED_BECAUSE = {
    State.SUCCEEDED: "finished",
    State.FAILED: "failed",
    State.GAVE_UP: "given up",
    State.STOPPED: "stopped",
}


def unmet_dependency(
    rec: ChildRecord, siblings: Mapping[str, ChildRecord], groups: GroupDeps
) -> ChildRecord | Blocker | None:
    """The first sibling ``rec`` depends on that is not ready (running) or succeeded (once);
    for a group, itself until it runs, then what is unmet below it (``GroupDeps.blocker``)."""
    spec = rec.spec
    if not isinstance(spec, JobSpec):
        return None
    for name in spec.depends_on:
        dep = siblings.get(name)
        if dep is None:
            continue  # removed since: nothing left to wait for
        if isinstance(dep.spec, SupervisorSpec):
            if dep.state not in (State.RUNNING, State.PROBATION):
                return dep
            below = groups.blocker(dep.path)
            if below is not None:
                return below
            continue
        once = isinstance(dep.spec, JobSpec) and dep.spec.schedule.finite
        if dep.state is State.SUCCEEDED or (
            not once and dep.state in (State.RUNNING, State.PROBATION, State.WAITING)
        ):
            continue
        return dep
    return None


def down_dependency(
    rec: ChildRecord, siblings: Mapping[str, ChildRecord], groups: GroupDeps
) -> ChildRecord | Blocker | None:
    """The first sibling ``rec`` depends on that is down for good (``DOWN_FOR_GOOD``), or a
    job below a group it depends on that gave up or failed, if any: looked for past one
    that is merely not ready yet."""
    spec = rec.spec
    if not isinstance(spec, JobSpec):
        return None
    for name in spec.depends_on:
        dep = siblings.get(name)
        if dep is None:
            continue
        if dep.state in DOWN_FOR_GOOD:
            return dep
        # A job below stopped by a person is down for good here too, as a sibling is (h264).
        below = (
            groups.down(dep.path, DOWN_FOR_GOOD) if isinstance(dep.spec, SupervisorSpec) else None
        )
        if below is not None:
            return below
    return None


def group_members(
    strategy: Strategy, children: list[ChildRecord], failed: ChildRecord
) -> list[ChildRecord]:
    """The children a group restart takes down and brings back, in start order."""
    chosen = children if strategy is Strategy.ONE_FOR_ALL else children[children.index(failed) :]
    return [
        rec
        for rec in chosen
        if rec is failed
        or (
            rec.spec.restart is not RestartType.TEMPORARY
            and rec.state not in (State.STOPPED, State.GAVE_UP)
            and rec.intent in (None, Intent.GROUP)
        )
    ]


def stop_order(children: list[ChildRecord]) -> list[ChildRecord]:
    """``children`` (in list order) in the order a stop of several takes them: each after
    every sibling that depends on it, and otherwise last first.

    A dependant started after what it depends on, whatever the list order, so it stops
    first (systemd stops an ``After=`` dependant before its dependency). Without
    dependencies this is the reverse list order of OTP's supervisor.
    """
    at = {rec.spec.name: i for i, rec in enumerate(children)}
    needs: list[set[int]] = [set() for _ in children]  # the siblings each one depends on
    dependants = [0] * len(children)  # of each, those not taken yet
    for i, rec in enumerate(children):
        if isinstance(rec.spec, JobSpec):
            needs[i] = {at[n] for n in rec.spec.depends_on if n in at} - {i}
            for j in needs[i]:
                dependants[j] += 1
    # Of those no sibling left depends on, the last in the list goes first.
    free = [-i for i, n in enumerate(dependants) if n == 0]
    heapq.heapify(free)
    order: list[ChildRecord] = []
    while free:
        i = -heapq.heappop(free)
        order.append(children[i])
        for j in needs[i]:
            dependants[j] -= 1
            if dependants[j] == 0:
                heapq.heappush(free, -j)
    if len(order) < len(children):  # a cycle (the manifest refuses one; the API may not)
        taken = set(map(id, order))
        order.extend(rec for rec in reversed(children) if id(rec) not in taken)
    return order


def _this_run(schedule: Schedule, run_from: int) -> Schedule:
    """``schedule`` as an incarnation's actor takes it: it ends once its attempt number reaches
    ``times`` (numbers never repeat), so a run of ticks begun after ``run_from`` attempts ends
    ``times`` after them."""
    if schedule.times is None or not run_from:
        return schedule
    return replace(schedule, times=schedule.times + run_from)


def start_incarnation(
    rec: ChildRecord,
    link: Link,
    ctx: TreeContext,
    group: type[SupervisedActor],
    *,
    at_once: bool = False,
    again: InPlace | None = None,
) -> SupervisedActor:
    """Start one incarnation of the child ``rec`` describes; ``group`` runs a nested group.

    ``at_once``: a plain actor without ``on_start``, or a job without a readiness
    probe, may be counted started now (see ``start_supervised``). ``again``: a job's
    permit to restart in place.
    """
    spec = rec.spec
    name = f"{ctx.tree_id}-{rec.path}"
    if isinstance(spec, JobSpec):
        work = spec.work
        if isinstance(spec.placement, RayPlacement):
            from actors._ray import placed_work  # noqa: PLC0415 - only placed jobs load Ray

            work = placed_work(work, spec.placement, spec.grace)
        return start_supervised(
            JobActor,
            link,
            name,
            work,
            _this_run(spec.schedule, rec.run_from),
            path=rec.path,
            scheduler=ctx.scheduler,
            attempts_done=rec.attempts,
            wall_clock=ctx.wall,
            retry=spec.retry,
            breaker=ctx.breakers.get(spec.breaker) if spec.breaker else None,
            ready=_beside(spec.ready, work),
            output=ctx.output.opener(spec.output) if ctx.output and spec.output else None,
            cut=ctx.cut,
            again=again,
            grace=spec.grace,
            clock=ctx.monotonic,
            rand=ctx.rand,
            catch_up=rec.catch_up,
            last_tick=rec.last_tick,
            # The hook first: a tree without metrics pays no property call an incarnation.
            on_tick=ctx.ticks_of(rec.path)
            if ctx.tick_hook is not None and spec.schedule.periodic
            else None,
            jv_at_once=at_once,
        )
    if isinstance(spec, ActorSpec) and isinstance(spec.placement, RayPlacement):
        from actors._ray import RayActorProxy  # noqa: PLC0415 - only placed actors load Ray

        return start_supervised(
            RayActorProxy,
            link,
            name,
            spec.actor_class,
            spec.args,
            spec.kwargs,
            placement=spec.placement,
            path=rec.path,
        )
    if isinstance(spec, ActorSpec):
        return start_supervised(
            spec.actor_class, link, name, *spec.args, jv_at_once=at_once, **dict(spec.kwargs)
        )
    return start_supervised(group, link, name, spec, ctx, rec.path, rec.carried)


def replicated(records: Iterable[ChildRecord]) -> dict[str, str]:
    """Each replica among ``records``, by path, to the path of the job it is one of."""
    return {
        rec.path: f"{rec.path.rpartition('/')[0]}/{rec.spec.replica_of}".lstrip("/")
        for rec in records
        if isinstance(rec.spec, JobSpec) and rec.spec.replica_of is not None
    }


def target(
    siblings: Mapping[str, ChildRecord], own: str, cmd: Command, order: Iterable[ChildRecord]
) -> ChildRecord:
    """The child a command names first: itself, or the running group to pass it down to.

    ``order``: the children in the tree's order, which a reload changes and ``siblings``
    (by name, in the order they were added) does not: a missing path's hint lists them so.
    """
    rec = siblings.get(cmd.path[0]) if cmd.path else None
    if rec is None:
        records = list(order)
        path = "/".join((*own.split("/"), *cmd.path)).strip("/")
        raise NoSuchChildError(path, [r.path for r in records], replicated(records))
    if len(cmd.path) == 1 and cmd.op is not Op.ADD:
        return rec
    if not isinstance(rec.spec, SupervisorSpec):
        if cmd.op is Op.ADD and len(cmd.path) == 1:
            raise NotAGroupError(rec.path, rec.spec.kind)
        raise NoSuchChildError(f"{rec.path}/{'/'.join(cmd.path[1:])}")
    if rec.actor is None:
        raise GroupDownError(f"{rec.path}/{'/'.join(cmd.path[1:])}", rec.path, rec.state.value)
    return rec


def disarm(timer: Timer | None) -> None:
    if timer is not None and timer.handle is not None:
        timer.handle.cancel()


def settle(future: pykka.Future[Any], value: Any = None, error: Any = None) -> None:
    """Set a reply future once; a second answer (a race with an ending child) is dropped."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set(value)
    except queue.Full:
        pass


def _beside(ready: ReadyCheck | None, work: object) -> ReadyCheck | None:
    """The job's probe, its checks run as the job's work runs where it can (``ReadyProbe``'s)."""
    beside = getattr(ready, "beside", None)
    return ready if beside is None else beside(work)
