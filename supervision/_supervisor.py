"""The supervisor actor: starts, watches, restarts and stops its children.

It never blocks its mailbox: a delay is a scheduler timer that tells it a
message, a stop waits for the child's exit report (or a kill timer), and
an ordered start waits for the ``ChildStarted`` of the previous child. Every
decision comes from the pure functions in ``_policy`` and is logged at
information or above, so no failure is ever silent.
"""

from __future__ import annotations

import queue
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import logbook
import pykka
from pykka._envelope import Envelope

from actors import (
    AttemptDone,
    Breaker,
    BreakerState,
    ChildExit,
    ChildRef,
    ChildStarted,
    EscalationError,
    JobActor,
    Link,
    NoSuchChildError,
    Outcome,
    Resumed,
    Scheduler,
    SpecError,
    SupervisedActor,
    TreeStoppedError,
    Waiting,
    close_work,
    describe,
    start_supervised,
)
from supervision import _events as ev
from supervision._policy import (
    Cooldown,
    Decision,
    Escalate,
    GiveUp,
    History,
    Restart,
    RestartType,
    Strategy,
    decide,
    wants_restart,
)
from supervision._spec import ActorSpec, ChildSpec, JobSpec, SupervisorSpec
from supervision._state import FINAL, TRANSITIONS, State

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["ChildRecord", "Command", "Supervisor", "TreeContext"]

log = logbook.Logger("supervision")


class Tracker:
    """Counts the finite leaves of a tree that have not settled, for ``Tree.wait``.

    Supervisors call ``update`` from their own threads; it is a dict write and
    a notify when the count reaches zero, cheap enough for every transition.
    """

    def __init__(self) -> None:
        import threading  # noqa: PLC0415 - patched by gevent when that runtime is installed

        self._cond = threading.Condition()
        self._unsettled: set[str] = set()
        self._finite: set[str] = set()  # every finite leaf: with none, only the end counts
        self._final: dict[str, State] = {}
        self.started = threading.Event()
        self.ended = threading.Event()

    def update(self, path: str, state: State, finite: bool) -> None:
        """Record ``state`` of the leaf at ``path``; only finite leaves hold ``wait`` up."""
        if not finite and state not in FINAL and path not in self._final:
            return  # an endless leaf between two non-final states: nothing to record
        with self._cond:
            if finite:
                self._finite.add(path)
            if state in FINAL:
                self._unsettled.discard(path)
                self._final[path] = state
                if not self._unsettled:
                    self._cond.notify_all()
            else:
                if finite:
                    self._unsettled.add(path)
                self._final.pop(path, None)

    def settle_subtree(self, path: str, state: State) -> None:
        """A group ended for good (gave up, failed, stopped): nothing under it will run again."""
        prefix = f"{path}/"
        with self._cond:
            self._unsettled = {p for p in self._unsettled if not p.startswith(prefix)}
            self._final[path] = state
            if not self._unsettled:
                self._cond.notify_all()

    def forget(self, path: str) -> None:
        with self._cond:
            self._unsettled.discard(path)
            self._finite.discard(path)
            self._final.pop(path, None)
            self._cond.notify_all()

    def wait_settled(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    self.ended.is_set()
                    or (self.started.is_set() and bool(self._finite) and not self._unsettled)
                ),
                timeout,
            )

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def finals(self) -> dict[str, State]:
        with self._cond:
            return dict(self._final)


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
    # Called inline in the supervisor's thread with every decision and attempt event (not
    # state changes): the journal's non-blocking record. It must never block.
    sink: Callable[[ev.Event], None] | None = None
    sink_kinds: frozenset[type[ev.Event]] | None = None  # what the sink keeps; None: every kind
    # A daemon's restart: children still cooling down per the journal, {path: (left, cycle)}.
    cooldowns: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    breakers: Mapping[str, Breaker] = field(default_factory=dict)
    breaker_listener: Callable[[str, BreakerState, BreakerState], None] | None = (
        None  # unhooked when the tree stops
    )


@dataclass(frozen=True, slots=True)
class Command:
    """A request from the tree handle, routed down ``path`` to the supervisor that owns it.

    ``reply`` is set with the result (or the error) once the request is done,
    e.g. after a stopped child has really stopped.
    """

    op: str  # status | stop | start | restart | remove | add | ref | shutdown
    path: tuple[str, ...]
    reply: pykka.Future[Any]
    arg: Any = None


@dataclass(frozen=True, slots=True)
class _Timer:
    key: int
    token: int
    kind: str  # restart | probe | probation | kill | group


@dataclass(frozen=True, slots=True)
class FinalStatus:
    """A supervisor's last status nodes, sent to its parent just before it ends."""

    key: int
    incarnation: int
    nodes: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class LastExit:
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


@dataclass(slots=True, eq=False)
class ChildRecord:
    """Runtime facts about one child, owned (read and written) by its supervisor only."""

    spec: ChildSpec
    key: int
    path: str
    ref: ChildRef
    state: State = State.PENDING
    actor: SupervisedActor | None = None  # the live incarnation, None while down
    incarnation: int = 0
    starts: int = 0
    restarts: int = 0
    failures: int = 0
    attempts: int = 0  # attempts finished over all incarnations (periodic jobs resume from it)
    last_exit: LastExit | None = None
    next_start_at: float | None = None
    history: History = field(default_factory=History)
    timer_token: int = 0  # timers carrying an older token are stale
    timer: Any = None
    kill_timer: Any = None
    # Why a stop is under way: stop | restart | remove | group | shutdown | escalate
    intent: str | None = None
    waiters: list[Callable[[], None]] = field(default_factory=list)
    final_children: list[dict[str, Any]] | None = None  # a stopped group's last status nodes


_RESTART_INTENTS = frozenset({"restart", "group"})
# A sibling reaching one of these may unblock (or finally fail) a child waiting on depends_on.
_DEPENDENCY_STATES = frozenset(
    {State.RUNNING, State.PROBATION, State.SUCCEEDED, State.FAILED, State.GAVE_UP, State.WAITING}
)


class Supervisor(SupervisedActor):
    """Supervises an ordered list of children under one strategy and policy."""

    _jv_auto_started: bool = False

    def __init__(self, spec: SupervisorSpec, context: TreeContext, path: str) -> None:
        super().__init__()
        self.spec = spec
        self.ctx = context
        self.path = path
        self.policy = spec.policy
        self._keys = iter(range(1, 1 << 62))
        self.children: list[ChildRecord] = []
        self._by_key: dict[int, ChildRecord] = {}
        self._by_name: dict[str, ChildRecord] = {}
        self._group_history = History()
        self._group_token = 0
        self._group_timer: Any = None
        self._group_members: list[ChildRecord] = []  # what the pending group restart brings back
        self._group_probation_timer: Any = None
        # Ordered start: the head of _start_queue starts once _starting reports started or ends.
        self._start_queue: deque[ChildRecord] = deque()
        self._starting: ChildRecord | None = None
        self._reported_started = False
        # Children whose depends_on is not met yet; re-examined after a sibling changes state.
        self._blocked: list[ChildRecord] = []
        self._deps_dirty = False
        # Reverse-order stop: one child at a time, then the callbacks in _after_stop.
        self._stop_queue: deque[ChildRecord] = deque()
        self._stop_waiting: ChildRecord | None = None
        self._after_stop: list[Callable[[], None]] = []
        self._closing: str | None = None  # "shutdown" or "escalate" once the end has begun
        self._force = False  # a forced stop: children get no grace
        self._handlers: dict[type, Callable[[Any], None]] = {
            ChildExit: self._on_exit,
            ChildStarted: self._on_started,
            AttemptDone: self._on_attempt,
            Waiting: self._on_waiting,
            Resumed: self._on_resumed,
            FinalStatus: self._on_final_status,
            _Timer: self._on_timer,
            Command: self._on_command,
        }
        for child in spec.children:
            self._add_record(child)

    # -- pykka hooks -----------------------------------------------------------------------------

    def on_start(self) -> None:
        log.debug("{}: supervisor starting {} children", self._name, len(self.children))
        self._start_queue.extend(self.children)
        self._pump_start()

    def on_receive(self, message: Any) -> Any:
        handler = self._handlers.get(type(message))
        if handler is None:
            log.warning("{}: ignored unknown message {!r}", self._name, message)
            return None
        handler(message)
        if self._deps_dirty:
            self._deps_dirty = False
            self._retry_blocked()
        return None

    def on_stop(self) -> None:
        for rec in self.children:
            self._cancel_timers(rec)
            if rec.actor is None and rec.ref.available:
                rec.ref._close("stopped with its supervisor")
            # A child down at the end (in backoff, given up) has no incarnation to let go of
            # what its work keeps between attempts (an http job's pooled connections).
            if isinstance(rec.spec, JobSpec):
                close_work(rec.spec.work, rec.path)
        self._cancel_group_timers()

    def _actor_loop_teardown(self) -> None:
        # Commands still queued get an answer (a Tree method must never hang); reports from
        # children of a supervisor that has ended have nobody left to read them.
        while not self.actor_inbox.empty():
            message = self.actor_inbox.get().message
            if isinstance(message, Command):
                error = TreeStoppedError(f"{self._name} stopped before it could {message.op}")
                _settle_future(message.reply, error=(TreeStoppedError, error, None))
        ref = self._jv_link.ref
        if ref is not None:
            ref._detach(self.actor_inbox)

    def _jv_request_stop(self) -> None:
        # A supervisor stops its children first: a shutdown message, not pykka's stop.
        self._jv_stop_requested = True
        # Straight into the inbox: a supervisor that has just ended must not make the
        # parent's stop raise; its exit report is on the way and ends the stop.
        self.actor_inbox.put(Envelope(Command("shutdown", (), pykka.ThreadingFuture())))

    @property
    def _name(self) -> str:
        return self.path or "root"

    # -- records ---------------------------------------------------------------------------------

    def _child_path(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name

    def _add_record(self, spec: ChildSpec) -> ChildRecord:
        key = next(self._keys)
        path = self._child_path(spec.name)
        rec = ChildRecord(spec, key, path, ChildRef(path, self.ctx.dead_letter))
        self.children.append(rec)
        self._by_key[key] = rec
        self._by_name[spec.name] = rec
        self._track(rec)
        return rec

    def _track(self, rec: ChildRecord) -> None:
        if self._closing == "escalate" and rec.state is State.STOPPED:
            return  # stopped by an escalation: not settled, the parent decides their fate
        if isinstance(rec.spec, SupervisorSpec):
            if rec.state in FINAL:
                self.ctx.tracker.settle_subtree(rec.path, rec.state)
        else:
            self.ctx.tracker.update(rec.path, rec.state, rec.spec.finite)

    def _set_state(self, rec: ChildRecord, new: State) -> None:
        """The one place a child changes state: checked against the table, tracked, published."""
        old = rec.state
        if old is new:
            return
        if new not in TRANSITIONS[old]:
            log.error("{}: refused transition {} -> {} (a jobvisor bug)", rec.path, old, new)
            return
        rec.state = new
        log.trace("{}: {} -> {}", rec.path, old, new, extra={"path": rec.path})
        if self._blocked and new in _DEPENDENCY_STATES:
            self._deps_dirty = True
        self._track(rec)
        if self.ctx.bus.active:
            self.ctx.bus.publish(
                ev.StateChanged(path=rec.path, at=self.ctx.wall(), old=old, new=new)
            )

    def _publish(self, kind: type[ev.Event], event: Callable[[], ev.Event]) -> None:
        # Takes a factory: an event nobody takes (no subscriber, and no sink or one that
        # keeps other kinds only) is not even built.
        ctx = self.ctx
        sink, bus = ctx.sink, ctx.bus
        if sink is not None and ctx.sink_kinds is not None and kind not in ctx.sink_kinds:
            sink = None
        if sink is None and not bus.active:
            return
        built = event()
        if sink is not None:
            sink(built)
        if bus.active:
            bus.publish(built)

    # -- starting --------------------------------------------------------------------------------

    def _pump_start(self) -> None:
        while self._starting is None and self._start_queue and self._closing is None:
            rec = self._start_queue.popleft()
            if rec.key not in self._by_key or rec.actor is not None:
                continue
            restored = self.ctx.cooldowns.get(rec.path)
            if restored is not None and rec.starts == 0:
                self._resume_cooldown(rec, *restored)
                continue
            blocker = self._unmet_dependency(rec)
            if blocker is not None:
                if blocker.state in (State.FAILED, State.GAVE_UP):
                    self._dependency_failed(rec, blocker)
                elif rec not in self._blocked:
                    log.info("{}: waiting for {} before starting", rec.path, blocker.path)
                    self._blocked.append(rec)
                continue
            self._launch(rec)
            if rec.state is State.STARTING:
                self._starting = rec
        if not self._reported_started and self._starting is None and not self._start_queue:
            self._reported_started = True
            link = self._jv_link
            link.parent.tell(ChildStarted(link.key, link.incarnation))

    def _resume_cooldown(self, rec: ChildRecord, left: float, cycle: int) -> None:
        """Pick up a cooldown the journal says was running when the last daemon stopped."""
        rec.history = History((), cycle)
        self._schedule_start(rec, left, "probe")
        self._set_state(rec, State.COOLDOWN)
        log.warning(
            "{}: still cooling down for {:.1f}s (cycle {}), as the journal recorded",
            rec.path,
            left,
            cycle,
            extra={"path": rec.path},
        )

    def _unmet_dependency(self, rec: ChildRecord) -> ChildRecord | None:
        """The first sibling ``rec`` depends on that is not ready (running) or succeeded (once)."""
        spec = rec.spec
        if not isinstance(spec, JobSpec):
            return None
        for name in spec.depends_on:
            dep = self._by_name.get(name)
            if dep is None:
                continue  # removed since: nothing left to wait for
            once = isinstance(dep.spec, JobSpec) and dep.spec.schedule.finite
            if dep.state is State.SUCCEEDED or (
                not once and dep.state in (State.RUNNING, State.PROBATION, State.WAITING)
            ):
                continue
            return dep
        return None

    def _retry_blocked(self) -> None:
        blocked, self._blocked = self._blocked, []
        self._start_queue.extendleft(reversed(blocked))
        self._pump_start()

    def _dependency_failed(self, rec: ChildRecord, dep: ChildRecord) -> None:
        reason = f"dependency {dep.path} {dep.state.value}"
        rec.last_exit = LastExit(Outcome.FAILED, None, reason, self.ctx.wall())
        log.error("{}: not started: {}", rec.path, reason, extra={"path": rec.path})
        self._set_state(rec, State.FAILED)
        rec.ref._close("failed")

    def _launch(self, rec: ChildRecord) -> None:
        """Start one incarnation of ``rec``; a constructor error is a failed start."""
        self._cancel_timers(rec)
        rec.incarnation += 1
        rec.starts += 1
        rec.next_start_at = None
        rec.intent = None
        rec.ref._reopen()
        link = Link(self.actor_ref, rec.key, rec.incarnation, rec.ref)
        self._set_state(rec, State.STARTING)
        spec = rec.spec
        name = f"{self.ctx.tree_id}-{rec.path}"
        try:
            if isinstance(spec, JobSpec):
                rec.actor = start_supervised(
                    JobActor,
                    link,
                    name,
                    spec.work,
                    spec.schedule,
                    path=rec.path,
                    scheduler=self.ctx.scheduler,
                    attempts_done=rec.attempts,
                    wall_clock=self.ctx.wall,
                    retry=spec.retry,
                    breaker=self.ctx.breakers.get(spec.breaker) if spec.breaker else None,
                    ready=spec.ready,
                )
            elif isinstance(spec, ActorSpec):
                rec.actor = start_supervised(
                    spec.actor_class, link, name, *spec.args, **dict(spec.kwargs)
                )
            else:
                rec.actor = start_supervised(Supervisor, link, name, spec, self.ctx, rec.path)
        except Exception as exc:
            # Told, not handled here: a restart that fails at once would otherwise recurse.
            log.exception("{}: could not start", rec.path)
            self.actor_ref.tell(ChildExit(rec.key, rec.incarnation, Outcome.FAILED, exc))

    def _on_started(self, msg: ChildStarted) -> None:
        rec = self._by_key.get(msg.key)
        if rec is None or rec.incarnation != msg.incarnation:
            return
        if rec.state is State.WAITING and self._starting is rec:
            # Ready while its breaker keeps it waiting: started all the same.
            self._starting = None
            self._pump_start()
            return
        if rec.state is not State.STARTING:
            return
        if rec.history.probing:
            self._set_state(rec, State.PROBATION)
            self._arm_probation(rec)
        else:
            self._set_state(rec, State.RUNNING)
        log.info("{}: started (start {})", rec.path, rec.starts, extra={"path": rec.path})
        if self._starting is rec:
            self._starting = None
            self._pump_start()
            if self._group_history.probing and not self._start_queue and self._starting is None:
                self._arm_group_probation()

    def _on_waiting(self, msg: Waiting) -> None:
        rec = self._by_key.get(msg.key)
        if rec is None or rec.incarnation != msg.incarnation or rec.actor is None:
            return
        rec.next_start_at = msg.retry_at
        self._set_state(rec, State.WAITING)
        log.info(
            "{}: waiting: breaker {} is open; no calls until it half-opens",
            rec.path,
            msg.breaker,
            extra={"path": rec.path, "attempt": rec.attempts},
        )

    def _on_final_status(self, msg: FinalStatus) -> None:
        rec = self._by_key.get(msg.key)
        if rec is not None and rec.incarnation == msg.incarnation:
            rec.final_children = msg.nodes

    def _finish(self, outcome: Outcome, error: BaseException | None = None) -> None:
        """End this supervisor, leaving its last status with its parent."""
        link = self._jv_link
        nodes = self._status()
        link.parent.tell(FinalStatus(link.key, link.incarnation, nodes))
        self._jv_finish(outcome, error)

    def _on_resumed(self, msg: Resumed) -> None:
        rec = self._by_key.get(msg.key)
        if rec is None or rec.incarnation != msg.incarnation or rec.state is not State.WAITING:
            return
        rec.next_start_at = None
        log.info("{}: resumed: its breaker let a call through", rec.path, extra={"path": rec.path})
        if rec.history.probing:
            # Probation counts only while the probe may call: it starts over from here.
            self._set_state(rec, State.PROBATION)
            self._arm_probation(rec)
        else:
            self._set_state(rec, State.RUNNING)

    # -- exits -----------------------------------------------------------------------------------

    def _on_attempt(self, msg: AttemptDone) -> None:
        rec = self._by_key.get(msg.key)
        if rec is None or rec.incarnation != msg.incarnation:
            return
        rec.attempts = max(rec.attempts, msg.attempt)
        error = self.ctx.mask(describe(msg.error)) if msg.error is not None else None
        if msg.outcome.is_failure:
            log.warning(
                "{}: attempt {} {}: {}",
                rec.path,
                msg.attempt,
                msg.outcome.value,
                error,
                extra={"path": rec.path, "attempt": msg.attempt},
            )
        else:
            log.debug("{}: attempt {} {}", rec.path, msg.attempt, msg.outcome.value)
        self._publish(
            ev.AttemptFinished,
            lambda: ev.AttemptFinished(
                path=rec.path,
                at=msg.ended_at,
                attempt=msg.attempt,
                outcome=msg.outcome,
                error=error,
                started_at=msg.started_at,
                code=msg.code,
            ),
        )

    def _on_exit(self, msg: ChildExit) -> None:
        rec = self._by_key.get(msg.key)
        if (
            rec is None
            or rec.incarnation != msg.incarnation
            or (
                rec.actor is None
                and rec.state
                not in (
                    State.STARTING,
                    State.STOPPING,
                )
            )
        ):
            return  # a late report from an incarnation already written off
        rec.actor = None
        self._cancel_timers(rec)
        rec.attempts = max(rec.attempts, msg.attempts)
        error = self.ctx.mask(describe(msg.error)) if msg.error is not None else None
        last = rec.last_exit = LastExit(msg.outcome, msg.code, error, self.ctx.wall())
        if msg.outcome.is_failure:
            rec.failures += 1
        self._publish(
            ev.ChildExited,
            lambda: ev.ChildExited(
                path=rec.path,
                at=last.at,
                incarnation=msg.incarnation,
                outcome=msg.outcome,
                error=error,
                code=msg.code,
            ),
        )
        if self._starting is rec:
            self._starting = None
        intent = rec.intent
        if intent is not None or self._closing is not None:
            self._stopped(rec, msg)
        else:
            self._unexpected_exit(rec, msg)
        self._pump_start()

    def _stopped(self, rec: ChildRecord, msg: ChildExit) -> None:
        """An exit we asked for (or one that came while we were ending): never a failure."""
        if msg.outcome.is_failure and msg.error is not None:
            log.warning("{}: failed while stopping: {}", rec.path, describe(msg.error))
        log.info("{}: stopped ({})", rec.path, msg.outcome.value, extra={"path": rec.path})
        if rec.intent not in _RESTART_INTENTS or self._closing is not None:
            self._set_state(rec, State.STOPPED)
            rec.ref._close("stopped")
        waiters, rec.waiters = rec.waiters, []
        for waiter in waiters:
            waiter()
        if self._stop_waiting is rec:
            self._stop_waiting = None
            self._pump_stop()

    def _unexpected_exit(self, rec: ChildRecord, msg: ChildExit) -> None:
        outcome = msg.outcome
        error = rec.last_exit.error if rec.last_exit else None
        # "failure" (None for a success) is what the log's crash-loop damper keys on
        extra = {"path": rec.path, "attempt": rec.attempts, "failure": error}
        if outcome.is_failure:
            log.error(
                "{}: {} (start {}): {}", rec.path, outcome.value, rec.starts, error, extra=extra
            )
        else:
            log.info("{}: exited ({})", rec.path, outcome.value, extra=extra)
        if not wants_restart(rec.spec.restart, outcome):
            self._settle(rec, outcome)
            return
        if outcome is Outcome.SUCCEEDED and rec.history.probing:
            self._probation_passed(rec)  # a once-job succeeding on probation closes it
        if self.spec.strategy is Strategy.ONE_FOR_ONE:
            self._apply(
                rec,
                decide(self.policy, rec.history, self.ctx.monotonic(), self.ctx.rand()),
                msg.error,
            )
        else:
            history = self._group_history
            self._apply_group(
                rec, decide(self.policy, history, self.ctx.monotonic(), self.ctx.rand()), msg.error
            )

    def _settle(self, rec: ChildRecord, outcome: Outcome) -> None:
        """The child ends for good: succeeded (and its probation passed) or failed finally."""
        if outcome is Outcome.SUCCEEDED:
            if rec.history.probing:
                self._probation_passed(rec)
            self._set_state(rec, State.SUCCEEDED)
            rec.ref._close("finished")
        else:
            reason = "temporary" if rec.spec.restart is RestartType.TEMPORARY else "not restarted"
            log.warning("{}: failed finally ({})", rec.path, reason, extra={"path": rec.path})
            self._set_state(rec, State.FAILED)
            rec.ref._close("failed")

    # -- decisions -------------------------------------------------------------------------------

    def _apply(self, rec: ChildRecord, decision: Decision, cause: BaseException | None) -> None:
        match decision:
            case Restart(delay=delay, number=number, history=history):
                rec.history = history
                rec.restarts += 1
                self._schedule_start(rec, delay, "restart")
                log.info(
                    "{}: restart {} in {:.3f}s (restart {} of {} within {:g}s)",
                    rec.path,
                    rec.restarts,
                    delay,
                    number,
                    self.policy.intensity.max_restarts,
                    self.policy.intensity.within,
                    extra={"path": rec.path, "attempt": rec.attempts},
                )
                self._publish(
                    ev.RestartScheduled,
                    lambda: ev.RestartScheduled(
                        path=rec.path, at=self.ctx.wall(), delay=delay, number=number
                    ),
                )
            case GiveUp(reason=reason, history=history):
                rec.history = history
                self._give_up(rec, reason)
            case Cooldown(duration=duration, cycle=cycle, reason=reason, history=history):
                rec.history = history
                self._schedule_start(rec, duration, "probe")
                self._set_state(rec, State.COOLDOWN)
                log.warning(
                    "{}: cooling down {:g}s (cycle {}) because {}; then one probe start",
                    rec.path,
                    duration,
                    cycle,
                    reason,
                    extra={"path": rec.path},
                )
                self._publish(
                    ev.CooldownStarted,
                    lambda: ev.CooldownStarted(
                        path=rec.path, at=self.ctx.wall(), duration=duration, cycle=cycle
                    ),
                )
            case Escalate(reason=reason):
                self._escalate(f"{rec.path}: {reason}", cause)

    def _give_up(self, rec: ChildRecord, reason: str) -> None:
        self._set_state(rec, State.GAVE_UP)
        rec.ref._close("given up")
        log.error("{}: gave up: {}", rec.path, reason, extra={"path": rec.path})
        self._publish(
            ev.GaveUp, lambda: ev.GaveUp(path=rec.path, at=self.ctx.wall(), reason=reason)
        )

    def _schedule_start(self, rec: ChildRecord, delay: float, kind: str) -> None:
        rec.next_start_at = self.ctx.wall() + delay
        if kind == "restart":
            self._set_state(rec, State.BACKOFF)
        if delay <= 0 and kind == "restart":
            self._launch(rec)
            return
        rec.timer_token += 1
        rec.timer = self._later(delay, _Timer(rec.key, rec.timer_token, kind))

    def _later(self, delay: float, message: Any) -> Any:
        ref = self.actor_ref

        def fire() -> None:
            if ref.is_alive():
                ref.tell(message)

        return self.ctx.scheduler.call_later(delay, fire)

    def _arm_probation(self, rec: ChildRecord) -> None:
        probation = self.policy.cooldown.probation
        if probation <= 0:
            self._probation_passed(rec)
            self._set_state(rec, State.RUNNING)
            return
        if rec.timer is not None:
            rec.timer.cancel()  # a probe re-armed after waiting on its breaker
        rec.timer_token += 1
        rec.timer = self._later(probation, _Timer(rec.key, rec.timer_token, "probation"))

    def _probation_passed(self, rec: ChildRecord) -> None:
        rec.history = rec.history.closed()
        log.info("{}: probation passed; restart window cleared", rec.path, extra={"path": rec.path})
        self._publish(
            ev.ProbationPassed, lambda: ev.ProbationPassed(path=rec.path, at=self.ctx.wall())
        )

    def _on_timer(self, msg: _Timer) -> None:
        if msg.kind.startswith("group"):
            self._on_group_timer(msg)
        else:
            self._on_child_timer(msg)

    def _on_group_timer(self, msg: _Timer) -> None:
        if msg.token != self._group_token:
            return
        if msg.kind == "group":
            self._group_timer = None
            self._start_group_members()
        elif msg.kind == "group-probation" and self._group_history.probing:
            self._group_history = History()
            log.info("{}: group probation passed; restart window cleared", self._name)
            self._publish(
                ev.ProbationPassed, lambda: ev.ProbationPassed(path=self.path, at=self.ctx.wall())
            )

    def _on_child_timer(self, msg: _Timer) -> None:
        rec = self._by_key.get(msg.key)
        if rec is None:
            return
        if msg.kind == "kill":
            if (
                rec.actor is not None
                and rec.state is State.STOPPING
                and msg.token == rec.incarnation
            ):
                log.warning(
                    "{}: did not stop within {}s; killing it",
                    rec.path,
                    rec.spec.grace,
                    extra={"path": rec.path},
                )
                rec.actor._jv_kill()
            return
        if msg.token != rec.timer_token or self._closing is not None:
            return
        rec.timer = None
        # A child's own restart does not wait behind an ordered start sequence.
        if msg.kind == "restart" and rec.state is State.BACKOFF:
            self._launch(rec)
        elif msg.kind == "probe" and rec.state is State.COOLDOWN:
            rec.history = rec.history.probe()
            log.info(
                "{}: cooldown over; probe start in probation", rec.path, extra={"path": rec.path}
            )
            self._launch(rec)
        elif msg.kind == "probation" and rec.state is State.PROBATION:
            self._probation_passed(rec)
            self._set_state(rec, State.RUNNING)

    def _start_now(self, rec: ChildRecord) -> None:
        """Start ``rec`` out of the ordered sequence (its own restart), or queue it behind it."""
        if self._starting is None and not self._start_queue:
            self._launch(rec)
        else:
            self._start_queue.append(rec)
            self._pump_start()

    # -- group strategies ------------------------------------------------------------------------

    def _members(self, failed: ChildRecord) -> list[ChildRecord]:
        """The children a group restart takes down and brings back, in start order."""
        if self.spec.strategy is Strategy.ONE_FOR_ALL:
            chosen = list(self.children)
        else:
            chosen = self.children[self.children.index(failed) :]
        return [
            rec
            for rec in chosen
            if rec is failed
            or (
                rec.spec.restart is not RestartType.TEMPORARY
                and rec.state not in (State.STOPPED, State.GAVE_UP)
                and rec.intent in (None, "group")
            )
        ]

    def _apply_group(
        self, failed: ChildRecord, decision: Decision, cause: BaseException | None
    ) -> None:
        match decision:
            case Restart(delay=delay, number=number, history=history):
                self._group_history = history
                members = self._members(failed)
                log.info(
                    "{}: {} restart of {} in {:.3f}s after {} failed "
                    "(restart {} of {} within {:g}s)",
                    self._name,
                    self.spec.strategy.value,
                    ", ".join(r.path for r in members),
                    delay,
                    failed.path,
                    number,
                    self.policy.intensity.max_restarts,
                    self.policy.intensity.within,
                )
                self._publish(
                    ev.RestartScheduled,
                    lambda: ev.RestartScheduled(
                        path=self.path, at=self.ctx.wall(), delay=delay, number=number
                    ),
                )
                self._take_down(members, delay, "group")
            case Cooldown(duration=duration, cycle=cycle, reason=reason, history=history):
                self._group_history = history
                members = self._members(failed)
                log.warning(
                    "{}: group cooling down {:g}s (cycle {}) because {}",
                    self._name,
                    duration,
                    cycle,
                    reason,
                )
                self._publish(
                    ev.CooldownStarted,
                    lambda: ev.CooldownStarted(
                        path=self.path, at=self.ctx.wall(), duration=duration, cycle=cycle
                    ),
                )
                self._take_down(members, duration, "group-cooldown")
            case GiveUp(reason=reason, history=history):
                self._group_history = history
                self._give_up(failed, reason)
            case Escalate(reason=reason):
                self._escalate(f"{failed.path}: {reason}", cause)

    def _take_down(self, members: list[ChildRecord], delay: float, kind: str) -> None:
        """Stop ``members`` in reverse order, wait ``delay``, start them again in order."""
        # A take-down still under way keeps its members: merge, in start order.
        pending = set(self._group_members) | set(members)
        members = [r for r in self.children if r in pending]
        self._cancel_group_timers()
        self._start_queue = deque(r for r in self._start_queue if r not in members)
        if self._starting in members:
            self._starting = None
        waiting = State.COOLDOWN if kind == "group-cooldown" else State.BACKOFF
        for rec in members:
            rec.restarts += 1
            rec.next_start_at = self.ctx.wall() + delay
            if rec.actor is not None:
                rec.intent = "group"
            else:
                self._cancel_timers(rec)
                self._set_state(rec, waiting)
        self._group_members = members

        def then() -> None:
            for rec in members:
                if rec.state is State.STOPPED or rec not in self._group_members:
                    continue  # a person stopped it meanwhile
                if rec.actor is None and rec.key in self._by_key:
                    self._cancel_timers(rec)
                    self._set_state(rec, waiting)
            self._group_token += 1
            if kind == "group-cooldown":
                self._group_history = self._group_history.probe()
            self._group_timer = self._later(delay, _Timer(0, self._group_token, "group"))

        self._stop_in_reverse([r for r in members if r.actor is not None], then)

    def _start_group_members(self) -> None:
        members = [r for r in self._group_members if r.key in self._by_key]
        for rec in members:
            if rec.state in (State.BACKOFF, State.COOLDOWN):
                self._start_queue.append(rec)
        if self._group_history.probing:
            log.info("{}: group cooldown over; probe start in probation", self._name)
        self._pump_start()
        if self._group_history.probing and self._starting is None and not self._start_queue:
            self._arm_group_probation()

    def _arm_group_probation(self) -> None:
        self._group_token += 1
        self._group_probation_timer = self._later(
            self.policy.cooldown.probation, _Timer(0, self._group_token, "group-probation")
        )

    def _cancel_group_timers(self) -> None:
        for timer in (self._group_timer, self._group_probation_timer):
            if timer is not None:
                timer.cancel()
        self._group_timer = self._group_probation_timer = None

    # -- stopping --------------------------------------------------------------------------------

    def _stop_in_reverse(self, recs: list[ChildRecord], then: Callable[[], None]) -> None:
        """Stop ``recs`` (given in start order) last first, one at a time, then call ``then``."""
        self._stop_queue.extend(reversed(recs))
        self._after_stop.append(then)
        self._pump_stop()

    def _pump_stop(self) -> None:
        while self._stop_waiting is None and self._stop_queue:
            rec = self._stop_queue.popleft()
            if rec.actor is None:
                continue
            self._request_stop(rec)
            if rec.actor is not None:
                self._stop_waiting = rec
        if self._stop_waiting is None and not self._stop_queue and self._after_stop:
            callbacks, self._after_stop = self._after_stop, []
            for callback in callbacks:
                callback()

    def _request_stop(self, rec: ChildRecord) -> None:
        actor = rec.actor
        assert actor is not None
        if rec.intent is None:
            rec.intent = "stop"
        self._set_state(rec, State.STOPPING)
        log.info("{}: stopping ({})", rec.path, rec.intent, extra={"path": rec.path})
        grace = 0.0 if self._force and not isinstance(rec.spec, SupervisorSpec) else rec.spec.grace
        if grace is not None:
            rec.kill_timer = self._later(grace, _Timer(rec.key, rec.incarnation, "kill"))
        actor._jv_request_stop()

    def _cancel_timers(self, rec: ChildRecord) -> None:
        for timer in (rec.timer, rec.kill_timer):
            if timer is not None:
                timer.cancel()
        rec.timer = rec.kill_timer = None
        rec.timer_token += 1

    def _stop_all_then(self, then: Callable[[], None]) -> None:
        self._start_queue.clear()
        self._starting = None
        self._cancel_group_timers()
        for rec in self.children:
            if rec.actor is None:
                self._cancel_timers(rec)
                rec.next_start_at = None
                if rec.state not in FINAL:
                    self._set_state(rec, State.STOPPED)
            elif rec.intent is None:
                rec.intent = self._closing
        self._stop_in_reverse([r for r in self.children if r.actor is not None], then)

    def _escalate(self, reason: str, cause: BaseException | None) -> None:
        if self._closing is not None:
            return
        self._closing = "escalate"
        error = EscalationError(self.path, reason, cause)
        log.error("{}: escalating: {}", self._name, error)
        self._publish(
            ev.Escalated,
            lambda: ev.Escalated(
                path=self.path, at=self.ctx.wall(), reason=reason, error=self.ctx.mask(str(error))
            ),
        )
        self._stop_all_then(lambda: self._finish(Outcome.FAILED, error))

    def _shutdown(self, reply: pykka.Future[Any]) -> None:
        if self._closing is not None:
            self._after_stop.append(lambda: _settle_future(reply))
            self._pump_stop()
            return
        self._closing = "shutdown"
        log.info("{}: shutting down {} children", self._name, len(self.children))

        def done() -> None:
            _settle_future(reply)
            self._finish(Outcome.STOPPED)

        self._stop_all_then(done)

    def _kill_all(self) -> None:
        """Stop now: every child is killed (groups pass it on), without waiting for graces."""
        self._force = True
        if self._closing is None:
            self._shutdown(pykka.ThreadingFuture())
        for rec in self.children:
            actor = rec.actor
            if actor is None:
                continue
            if isinstance(actor, Supervisor):
                actor.actor_ref.tell(Command("kill", (), pykka.ThreadingFuture()))
            elif rec.state is State.STOPPING:
                log.warning("{}: killed (forced stop)", rec.path, extra={"path": rec.path})
                actor._jv_kill()

    # -- commands from the tree ------------------------------------------------------------------

    def _on_command(self, cmd: Command) -> None:
        try:
            if cmd.op == "shutdown":
                self._shutdown(cmd.reply)
                return
            if cmd.op == "kill":
                self._kill_all()
                _settle_future(cmd.reply)
                return
            if cmd.op == "status":
                _settle_future(cmd.reply, self._status())
                return
            if cmd.op == "add" and not cmd.path:
                _settle_future(cmd.reply, self._add(cmd.arg))
                return
            rec = self._by_name.get(cmd.path[0]) if cmd.path else None
            if rec is None:
                raise NoSuchChildError("/".join((*self.path.split("/"), *cmd.path)).strip("/"))
            if len(cmd.path) > 1 or (cmd.op == "add" and cmd.path):
                self._forward(rec, cmd)
                return
            self._act(rec, cmd)
        except Exception:
            _settle_future(cmd.reply, error=sys.exc_info())

    def _forward(self, rec: ChildRecord, cmd: Command) -> None:
        if not isinstance(rec.spec, SupervisorSpec):
            raise NoSuchChildError(f"{rec.path}/{'/'.join(cmd.path[1:])}")
        if rec.actor is None:
            raise NoSuchChildError(
                f"{rec.path}/{'/'.join(cmd.path[1:])} (group {rec.path} is {rec.state.value})"
            )
        rec.actor.actor_ref.tell(replace(cmd, path=cmd.path[1:]))

    def _act(self, rec: ChildRecord, cmd: Command) -> None:
        match cmd.op:
            case "ref":
                _settle_future(cmd.reply, rec.ref)
            case "stop":
                self._person_stop(rec, "stop", lambda: _settle_future(cmd.reply))
            case "remove":
                self._person_stop(rec, "remove", lambda: self._remove(rec, cmd.reply))
            case "start":
                self._person_start(rec)
                _settle_future(cmd.reply)
            case "restart":
                self._person_stop(rec, "restart", lambda: self._restarted(rec, cmd.reply))
            case _:
                raise SpecError(f"unknown command {cmd.op!r}")

    def _person_stop(self, rec: ChildRecord, intent: str, then: Callable[[], None]) -> None:
        """A stop a person asked for: never a failure, never counted against intensity."""
        self._start_queue = deque(r for r in self._start_queue if r is not rec)
        if self._group_members and intent != "restart" and rec in self._group_members:
            self._group_members.remove(rec)  # a person's stop outranks a pending group restart
        if rec.actor is None:
            self._cancel_timers(rec)
            rec.next_start_at = None
            if self._starting is rec:
                self._starting = None
                self._deps_dirty = True  # re-run the ordered start after this message
            if intent != "restart":
                self._set_state(rec, State.STOPPED)
                rec.ref._close("stopped")
            then()
            return
        rec.intent = intent
        rec.waiters.append(then)
        if rec.state is not State.STOPPING:
            self._request_stop(rec)

    def _person_start(self, rec: ChildRecord) -> None:
        if rec.actor is not None:
            return
        if self._closing is not None:
            raise TreeStoppedError(f"{rec.path}: not started, {self._name} is shutting down")
        rec.history = History()
        log.info("{}: start requested", rec.path, extra={"path": rec.path})
        self._start_now(rec)

    def _restarted(self, rec: ChildRecord, reply: pykka.Future[Any]) -> None:
        rec.intent = None
        try:
            self._person_start(rec)
        except TreeStoppedError:
            _settle_future(reply, error=sys.exc_info())
            return
        _settle_future(reply)

    def _remove(self, rec: ChildRecord, reply: pykka.Future[Any]) -> None:
        self.children.remove(rec)
        del self._by_key[rec.key]
        del self._by_name[rec.spec.name]
        rec.ref._close("removed")
        self.ctx.tracker.forget(rec.path)
        log.info("{}: removed", rec.path, extra={"path": rec.path})
        _settle_future(reply)

    def _add(self, spec: ChildSpec) -> ChildRef:
        if spec.name in self._by_name:
            raise SpecError(f"{self._child_path(spec.name)}: a child of that name exists already")
        if self._closing is not None:
            raise SpecError(f"{self._name} is {self._closing.replace('shutdown', 'shutting down')}")
        rec = self._add_record(spec)
        log.info("{}: added", rec.path, extra={"path": rec.path})
        self._start_now(rec)
        return rec.ref

    def _status(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = []
        for rec in self.children:
            last = rec.last_exit
            node: dict[str, Any] = {
                "name": rec.spec.name,
                "path": rec.path,
                "kind": rec.spec.kind,
                "state": rec.state.value,
                "starts": rec.starts,
                "restarts": rec.restarts,
                "failures": rec.failures,
                "last_exit": last.as_dict() if last is not None else None,
                "next_start_at": rec.next_start_at
                if rec.state in (State.BACKOFF, State.COOLDOWN, State.WAITING)
                else None,
            }
            if isinstance(rec.spec, SupervisorSpec):
                actor = rec.actor
                if actor is not None:
                    node["children"] = _ask_status(actor)
                elif rec.final_children is not None:
                    node["children"] = rec.final_children
                else:
                    node["children"] = _idle_children(rec.spec, rec.path)
            nodes.append(node)
        return nodes


def _ask_status(actor: SupervisedActor) -> pykka.Future[Any]:
    future: pykka.Future[Any] = pykka.ThreadingFuture()
    try:
        actor.actor_ref.tell(Command("status", (), future))
    except pykka.ActorDeadError:
        future.set(None)
    return future


def _idle_children(spec: SupervisorSpec, path: str) -> list[dict[str, Any]]:
    """Status nodes for the children of a group that is not running."""
    nodes = []
    for child in spec.children:
        child_path = f"{path}/{child.name}"
        node: dict[str, Any] = {
            "name": child.name,
            "path": child_path,
            "kind": child.kind,
            "state": State.STOPPED.value,
            "starts": 0,
            "restarts": 0,
            "failures": 0,
            "last_exit": None,
            "next_start_at": None,
        }
        if isinstance(child, SupervisorSpec):
            node["children"] = _idle_children(child, child_path)
        nodes.append(node)
    return nodes


def _settle_future(future: pykka.Future[Any], value: Any = None, error: Any = None) -> None:
    """Set a reply future once; a second answer (a race with an ending child) is dropped."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set(value)
    except queue.Full:
        pass
