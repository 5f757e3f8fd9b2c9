"""The supervisor actor: starts, watches, restarts and stops its children.

It never blocks its mailbox: a delay is a scheduler timer that tells it a
message, a stop waits for the child's exit report (or a kill timer), and
an ordered start waits for the ``ChildStarted`` of the previous child. Every
decision comes from the pure functions in ``_policy`` (what to do) and
``_exits`` (what an exit means) and is logged at information or above, so no
failure is ever silent.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import logbook
import pykka
from pykka._envelope import Envelope

from actors import (
    AttemptDone,
    ChildExit,
    ChildExits,
    ChildRef,
    ChildStarted,
    ChildUnavailableError,
    EscalationError,
    Link,
    NoSuchChildError,
    Outcome,
    Resumed,
    SpecError,
    TreeStoppedError,
    Waiting,
    active_runtime,
    close_work,
    describe,
)
from actors._checks import fmt_duration
from actors._errors import (
    ChildrenChangedError,
    DependencyDownError,
    GroupDownError,
    NotAGroupError,
    NotSignalledError,
    ShuttingDownError,
    actor_raised,
    traceback_of,
)
from actors._job import JobActor, first_tick, missed_tick, no_process
from actors._placement import RayPlacement
from actors._supervised import OwnActor
from supervision import _events as ev
from supervision._budget import BudgetExhausted
from supervision._client import signal_name
from supervision._exits import ExitReason, classify
from supervision._groupdeps import Blocker, Nudge, Seen
from supervision._inplace import InPlace
from supervision._logging import ACTED, ESCALATED, QUIET, held_back, new_story
from supervision._policy import (
    Cooldown,
    Decision,
    Escalate,
    GiveUp,
    Restart,
    RestartType,
    Strategy,
    Window,
    decide,
    wants_restart,
)
from supervision._records import (
    CLOSED_BECAUSE,
    COMING_BACK,
    DEPENDENCY_STATES,
    GROUP_KEY,
    Carried,
    ChildRecord,
    Command,
    FinalStatus,
    GroupRecord,
    GroupUpdated,
    Intent,
    Op,
    Timer,
    TimerKind,
    TreeContext,
    disarm,
    down_dependency,
    group_members,
    settle,
    start_incarnation,
    stop_order,
    target,
    unmet_dependency,
)
from supervision._spec import ActorSpec, ChildSpec, JobSpec, SupervisorSpec, with_autostart
from supervision._state import FINAL, TRANSITIONS, State
from supervision._status import LastExit, child_nodes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from actors import SupervisedActor


__all__ = ["Supervisor"]

# Where the traceback an error carries begins (an exception group's too).
_TRACEBACK_START: Final = re.compile(
    r"\n[ |+]*(?:Exception Group )?Traceback \(most recent call last\):"
)

log = logbook.Logger("supervision")

# How long a group told to kill its jobs (its grace ran out) may take to end: it kills them
# all at once and their reports come at once, so only a jobvisor bug ever waits this out.
KILLED_GROUP_ENDS = 5.0


# An attempt's error and the text it was shown as (``TreeContext.shown``). A plain tuple: a
# named one's ``__new__`` is a Python call, once a restart.
_Shown = tuple[BaseException | None, str | None]


class Supervisor(OwnActor):
    """Supervises an ordered list of children under one strategy and policy."""

    _jv_auto_started: bool = False

    def __init__(
        self,
        spec: SupervisorSpec,
        context: TreeContext,
        path: str,
        carried: Mapping[str, Carried] | None = None,
    ) -> None:
        """``carried``: the children's counters as this group's last incarnation left them."""
        super().__init__()
        self.spec = spec
        self.ctx = context
        # Whether a state change goes anywhere but a subscriber of the bus (a frozen context's
        # hooks): else ``state_changed`` is called only while the bus has one.
        self._states_kept = (
            context.state_hook is not None
            or context.bus.numbered is not None  # counted: an endpoint's ids number each one
            or (
                context.sink is not None
                and context.sink_kinds is not None
                and ev.StateChanged in context.sink_kinds
            )
        )
        self.path = path
        self.policy = spec.policy
        self._keys = iter(range(GROUP_KEY + 1, 1 << 62))
        self.children: list[ChildRecord] = []
        self._by_key: dict[int, ChildRecord] = {}
        self._by_name: dict[str, ChildRecord] = {}
        self._group = GroupRecord(Window(self.policy.intensity))
        # Ordered start: the head of _start_queue starts once _starting reports started or ends.
        self._start_queue: deque[ChildRecord] = deque()
        self._starting: ChildRecord | None = None
        self._reported_started = False
        # Children whose depends_on is not met yet; re-examined after a sibling changes state.
        self._blocked: list[ChildRecord] = []
        self._deps_dirty = False
        # Ordered stop (see stop_order): one child at a time, then the callbacks in _after_stop.
        self._stop_queue: deque[ChildRecord] = deque()
        self._stop_waiting: ChildRecord | None = None
        self._after_stop: list[Callable[[], None]] = []
        self._closing: Intent | None = None  # SHUTDOWN or ESCALATE once the end has begun
        # An update that came while this group ended: the spec its next incarnation starts from.
        self._next_spec: SupervisorSpec | None = None
        self._force = False  # a forced stop: children get no grace
        # Why it was forced, said on each kill: its own grace ran out (``_kill_all``), or
        # None for a forced stop of the tree (``Tree.kill``).
        self._forced_by: str | None = None
        # Children killed at once (``_kill_all``), or groups told to kill what runs under them
        # (``_kill_group``), whose exit reports are still to come: this supervisor's stop (and
        # a group's end) waits for them as it waits for ``_stop_waiting``.
        self._dying: set[int] = set()
        # While the exit report of a restart in place is handled: its child and the actor that
        # is its next incarnation already, for that child's launch to take (see ``_launch``).
        self._adopt: tuple[ChildRecord, SupervisedActor] | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            ChildExit: self._on_exit,
            ChildExits: self._on_exits,
            ChildStarted: self._on_started,
            AttemptDone: self._on_attempt,
            Waiting: self._on_waiting,
            Resumed: self._on_resumed,
            FinalStatus: self._on_final_status,
            GroupUpdated: self._on_group_updated,
            Timer: self._on_timer,
            Command: self._on_command,
            BudgetExhausted: self._on_budget_exhausted,
            Nudge: self._on_nudge,
        }
        # This incarnation's children as a dependency on a group below it sees them.
        self._seen = context.group_deps.table(path)
        # A group's later incarnation (its restart) says its jobs left stopped only in detail.
        self._first = carried is None
        for child in spec.children:
            rec = self._add_record(child)
            was = carried.get(child.name) if carried else None
            if was is not None:
                was.onto(rec)

    # -- pykka hooks -----------------------------------------------------------------------------

    def on_start(self) -> None:
        log.debug(
            "{}: supervisor starting {}", self._name, _children(self.children), extra=self._here
        )
        if not self.path and self.ctx.budget is not None:
            self.ctx.budget.tell_root = self.actor_ref.tell
        for rec in self.children:
            self._watch_groups(rec)
        self._start_queue.extend(
            rec for rec in self.children if not self._left_stopped(rec, loud=self._first)
        )
        self._pump_start()

    def on_receive(self, message: Any) -> Any:
        handler = self._handlers.get(type(message))
        if handler is None:
            log.warning("{}: ignored unknown message {!r}", self._name, message, extra=self._here)
            return None
        try:
            handler(message)
        except Exception:
            # A fault of ours (see _tell_failed): a person's command still gets its answer.
            if isinstance(message, Command):
                settle(message.reply, error=sys.exc_info())
            raise
        if self._deps_dirty:
            self._deps_dirty = False
            self._retry_blocked()
        return None

    def _tell_failed(self, exc_info: Any) -> None:
        # A handler of ours raised: a jobvisor bug. It is never silent, and nothing this
        # supervisor started may outlive it unsupervised: every child is killed now (a group
        # passes the kill on), then it fails, and its parent's policy judges that failure.
        try:
            log.error(
                "{}: internal error: {}; killing its children and failing it (a jobvisor bug: "
                "please report it with this traceback)",
                self._name,
                describe(exc_info[1]),
                exc_info=exc_info,
                extra=self._here,
            )
        finally:
            self._kill_children_now()
            with contextlib.suppress(Exception):  # its last status, as far as it can tell it
                link = self._jv_link
                link.parent.tell(
                    FinalStatus(link.key, link.incarnation, self._status(), {}, self._spec_now())
                )
        super()._tell_failed(exc_info)

    def _kill_children_now(self) -> None:
        """Kill every child at once, trusting as little of this supervisor's bookkeeping as it
        can; each is shown stopped, as a kill at a shutdown leaves it."""
        for rec in self.children:
            actor = rec.actor
            if actor is None:
                continue
            try:
                if isinstance(actor, Supervisor):
                    actor.actor_ref.tell(Command(Op.KILL, (), pykka.ThreadingFuture()))
                else:
                    actor._jv_kill()
                rec.actor = None
                if rec.state is not State.STOPPING:
                    self._set_state(rec, State.STOPPING)
                self._set_state(rec, State.STOPPED)
            except Exception:
                log.exception("{}: killing it failed", rec.path, extra={"path": rec.path})

    def on_stop(self) -> None:
        for rec in self.children:
            self._cancel_timers(rec)
            if rec.actor is None and rec.ref.available:
                rec.ref._close("stopped with its supervisor")
            # A child down at the end (in backoff, given up) has no incarnation to let go of
            # what its work keeps between attempts (an http job's pooled connections).
            if isinstance(rec.spec, JobSpec):
                close_work(rec.spec.work, rec.path)
        self._cancel_group_timer()

    def _actor_loop_teardown(self) -> None:
        # Commands still queued get an answer (a Tree method must never hang); reports from
        # children of a supervisor that has ended have nobody left to read them.
        while not self.actor_inbox.empty():
            message = self.actor_inbox.get().message
            if isinstance(message, Command):
                error = TreeStoppedError(f"{self._name} stopped before it could {message.op.value}")
                settle(message.reply, error=(TreeStoppedError, error, None))
        self._jv_detach()

    def _jv_request_stop(self) -> None:
        # A supervisor stops its children first: a shutdown message, not pykka's stop.
        self._jv_stop_requested = True
        # Straight into the inbox: a supervisor that has just ended must not make the
        # parent's stop raise; its exit report is on the way and ends the stop.
        self.actor_inbox.put(Envelope(Command(Op.SHUTDOWN, (), pykka.ThreadingFuture())))

    @property
    def _name(self) -> str:
        return self.path or "root"

    @property
    def _here(self) -> dict[str, Any] | None:
        """The ``extra`` of a record about this group: its path (the root has none)."""
        return {"path": self.path} if self.path else None

    # -- records ---------------------------------------------------------------------------------

    def _child_path(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name

    def _add_record(self, spec: ChildSpec, before: str | None = None) -> ChildRecord:
        key = next(self._keys)
        path = self._child_path(spec.name)
        ref = ChildRef(path, self.ctx.dead_letter)
        rec = ChildRecord(spec, key, path, ref, Window(self.policy.intensity))
        rec.since = self.ctx.wall()  # pending from now
        if before is None:
            self.children.append(rec)
        else:
            self.children.insert(self.children.index(self._by_name[before]), rec)
        self._by_key[key] = rec
        self._by_name[spec.name] = rec
        self._seen[path] = Seen(rec.state, rec.finite, isinstance(spec, SupervisorSpec))
        if not isinstance(spec, SupervisorSpec):
            self.ctx.tracker.add(path)
        self._track(rec)
        return rec

    def _track(self, rec: ChildRecord) -> None:
        if self._closing is Intent.ESCALATE and rec.state is State.STOPPED:
            return  # stopped by an escalation: not settled, the parent decides their fate
        if isinstance(rec.spec, SupervisorSpec):
            # Released once its children went through their starts again (their own states
            # count from there on), or when it ends for good.
            if rec.state in (State.RUNNING, State.PROBATION) or rec.state in FINAL:
                self.ctx.tracker.release(rec.path)
            if rec.state in FINAL:
                self.ctx.tracker.settle_subtree(rec.path, rec.state)
        else:
            self.ctx.tracker.update(rec.path, rec.state, rec.finite)

    def _set_state(self, rec: ChildRecord, new: State) -> None:  # noqa: C901 - kept in one place
        """The one place a child changes state: checked, tracked, published.

        It also opens the child's stable reference when it starts and closes it when
        it settles or is stopped: the supervisor's half of the reference's lifecycle.
        """
        old = rec.state
        if old is new:
            return
        if new not in TRANSITIONS[old]:
            log.error("{}: refused transition {} -> {} (a jobvisor bug)", rec.path, old, new)
            return
        rec.state = new
        rec.since = self.ctx.wall()
        if old is State.WAITING:  # however it leaves: resumed, ended, stopped
            self._waited(rec, self.ctx.monotonic())
        trace = log.trace
        if trace is not QUIET:  # three times a restart: no call (nor ``extra``) when off
            trace("{}: {} -> {}", rec.path, old, new, extra={"path": rec.path})
        closed_because = CLOSED_BECAUSE.get(new)
        if closed_because is not None:
            rec.ref._close(closed_because)
        elif new is State.STARTING:
            rec.ref._reopen()
        seen = self._seen.get(rec.path)
        if seen is not None:  # None: removed meanwhile
            # Not ``_replace`` (four calls), nor ``Seen(...)`` (its ``__new__`` is Python):
            # three times a restart
            self._seen[rec.path] = tuple.__new__(Seen, (new, seen.once, seen.group))
        ctx = self.ctx
        # No watcher: nothing depends on a group (``changed`` would say so)
        if new in DEPENDENCY_STATES and (self._blocked or ctx.group_deps.watchers):
            self._dependency_moved(rec)
        if self._closing is None and not isinstance(rec.spec, SupervisorSpec):
            ctx.tracker.update(rec.path, new, rec.finite)  # ``_track``'s, a call less
        else:
            self._track(rec)
        if self._states_kept or ctx.bus.active:  # else nobody is told: no call
            ctx.state_changed(rec.path, old, new)

    def _dependency_moved(self, rec: ChildRecord) -> None:
        """``rec`` went into a state its dependants look at: the blocked ones look again."""
        if self._blocked:
            self._deps_dirty = True
        deps = self.ctx.group_deps
        if deps.watchers:
            deps.changed(rec.path)

    # -- starting --------------------------------------------------------------------------------

    def _pump_start(self) -> None:
        while self._starting is None and self._start_queue and self._closing is None:
            rec = self._start_queue.popleft()
            if rec.key not in self._by_key or rec.actor is not None:
                continue
            if rec.starts == 0 and not rec.held and self._journal_decides(rec):
                continue
            blocker = unmet_dependency(rec, self._by_name, self.ctx.group_deps)
            if blocker is not None:
                self._not_yet(rec, blocker)
                continue
            if rec.starts == 0 and rec.periodic:
                self._persisted(rec)
            self._launch(rec)
            if rec.state is State.STARTING:
                self._starting = rec
        if not self._reported_started and self._starting is None and not self._start_queue:
            self._reported_started = True
            link = self._jv_link
            link.parent.tell(ChildStarted(link.key, link.incarnation))

    def _left_stopped(self, rec: ChildRecord, *, loud: bool = True) -> bool:
        """Whether ``rec`` stays stopped as its supervisor starts: a job with ``autostart:
        false`` never started yet, which waits for a person's start (supervisord's
        ``autostart=false``; its dependants wait for it, pending). One a person started once
        comes back with its group's restart, as any other job. ``loud``: said at INFO (at a
        group's restart, a detail)."""
        spec = rec.spec
        if not isinstance(spec, JobSpec) or spec.autostart or rec.starts:
            return False
        rec.held = True
        said = log.info if loud else log.debug
        said(
            "{}: not started (autostart: false); start it with: jobvisor start {}",
            rec.path,
            rec.path,
            extra={"path": rec.path},
        )
        self._set_state(rec, State.STOPPED)
        return True

    def _journal_decides(self, rec: ChildRecord) -> bool:
        """Whether the journal decided ``rec``'s first start instead: a cooldown a daemon's
        restart picks up, or a success of an earlier run that `run --resume` keeps."""
        restored = self.ctx.cooldowns.get(rec.path)
        if restored is not None:
            self._resume_cooldown(rec, *restored)
            return True
        before = self.ctx.succeeded.get(rec.path)
        if before is not None and rec.state is State.PENDING:
            self._succeeded_before(rec, *before)
            return True
        return False

    def _persisted(self, rec: ChildRecord) -> None:
        """A periodic job's first start: a persistent one goes by its last tick in the journal.

        It runs a tick it missed while jobvisor was not running at once (once, however many
        it missed: ``missed_tick``), or its ticks go on from its last one (``first_tick``).
        """
        last = self.ctx.last_ticks.pop(rec.path, None)
        spec = rec.spec
        if last is None or not isinstance(spec, JobSpec) or not spec.schedule.persistent:
            return
        missed = missed_tick(spec.schedule, last, self.ctx.wall())
        if missed is None:
            rec.last_tick = last
            return
        rec.catch_up = True
        log.info(
            "{}: missed its tick at {} while jobvisor was not running (persistent): running it now",
            rec.path,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(missed)),
            extra={"path": rec.path},
        )

    def _resume_cooldown(self, rec: ChildRecord, left: float, cycle: int) -> None:
        """Pick up a cooldown the journal says was running when the last daemon stopped."""
        rec.window.reset(cycle)
        self._schedule_start(rec, left, TimerKind.PROBE)
        self._set_state(rec, State.COOLDOWN)
        log.warning(
            "{}: still cooling down for {:.1f}s (cycle {}), as the journal recorded",
            rec.path,
            left,
            cycle,
            extra={"path": rec.path},
        )

    def _succeeded_before(self, rec: ChildRecord, code: int | None, at: float) -> None:
        """`run --resume`: the journal has this spec's success; it counts, as it ended then."""
        rec.last_exit = LastExit(Outcome.SUCCEEDED, code, None, at)
        log.info(
            "{}: succeeded in an earlier run; not run again (--resume)",
            rec.path,
            extra={"path": rec.path},
        )
        self._set_state(rec, State.SUCCEEDED)

    def _retry_blocked(self) -> None:
        blocked, self._blocked = self._blocked, []
        self._start_queue.extendleft(reversed(blocked))
        self._pump_start()

    def _watch_groups(self, rec: ChildRecord) -> None:
        """Be nudged when a child below a group a job here depends on changes (it is another
        supervisor's), as this one is by its own children's changes: for a job ``rec``, the
        groups it names; for a group ``rec`` (one a reload adds or makes of a job), itself
        when a sibling names it."""
        spec, deps = rec.spec, self.ctx.group_deps
        if isinstance(spec, JobSpec):
            for name in spec.depends_on:
                dep = self._by_name.get(name)
                if dep is not None and isinstance(dep.spec, SupervisorSpec):
                    deps.watch(dep.path, self.actor_ref)
        elif isinstance(spec, SupervisorSpec) and any(
            isinstance(other.spec, JobSpec) and spec.name in other.spec.depends_on
            for other in self.children
        ):
            deps.watch(rec.path, self.actor_ref)

    def _on_nudge(self, _: Nudge) -> None:
        if self._blocked:
            self._deps_dirty = True

    def _not_yet(self, rec: ChildRecord, blocker: ChildRecord | Blocker) -> None:
        """``rec`` cannot start before ``blocker``, a job it depends on: it waits (pending)
        until that one is ready, or fails if that one failed finally or gave up."""
        if blocker.state in (State.FAILED, State.GAVE_UP):
            self._dependency_failed(rec, blocker)
            return
        if rec in self._blocked:
            return
        if rec.waits_for != blocker.path:  # said once per dependency waited for
            rec.waits_for = blocker.path
            log.info(
                "{}: waiting for {} before starting",
                rec.path,
                blocker.path,
                extra={"path": rec.path},
            )
        self._cancel_timers(rec)
        rec.next_start_at = None
        self._set_state(rec, State.PENDING)  # a person's start, or a group's restart
        self._blocked.append(rec)
        # Behind a job that is stopped (autostart: false, or a person's stop) it cannot start
        # by itself: a run does not wait for it (see Tracker.waiting).
        self.ctx.tracker.waiting(rec.path, blocker.path)

    def _dependency_failed(self, rec: ChildRecord, dep: ChildRecord | Blocker) -> None:
        reason = f"dependency {dep.path} {dep.state.value}"
        at = self.ctx.wall()
        rec.last_exit = LastExit(Outcome.FAILED, None, reason, at)
        log.error("{}: not started: {}", rec.path, reason, extra={"path": rec.path})
        self._set_state(rec, State.FAILED)
        # A decision like a give-up: the journal keeps it, so `history` can tell it.
        self.ctx.publish(
            ev.NotStarted,
            lambda: ev.NotStarted(path=rec.path, at=at, reason=reason, dependency=dep.path),
        )

    def _launch(self, rec: ChildRecord, *, at_once: bool = False) -> None:
        """Start one incarnation of ``rec``; a constructor error is a failed start.

        ``at_once`` (an immediate restart, outside the start queue): a plain actor
        without ``on_start``, or a job without a readiness probe, is counted started
        in this same turn, with no ChildStarted message from its thread.
        """
        self._cancel_timers(rec)
        rec.incarnation += 1
        rec.starts += 1
        rec.next_start_at = None
        rec.intent = None
        rec.held = False
        rec.given = False  # this incarnation took it
        if rec.waits_for is not None:
            rec.waits_for = None
            self.ctx.tracker.waiting(rec.path, None)
        self._set_state(rec, State.STARTING)
        adopt = self._adopt
        if adopt is not None and adopt[0] is rec:
            # It restarted in place: it is this incarnation already (its link says so), running.
            self._adopt = None
            rec.actor = adopt[1]
            self._started(rec)
            return
        link = Link(self.actor_ref, rec.key, rec.incarnation, rec.ref)
        permit = rec.permit = self._permit_for(rec)
        try:
            rec.actor = start_incarnation(
                rec, link, self.ctx, Supervisor, at_once=at_once, again=permit
            )
        except Exception as exc:
            rec.catch_up, rec.last_tick = False, None  # the first start's only
            # Told, not handled here: a restart that fails at once would otherwise recurse.
            if not actor_raised(exc):
                # Not the actor's own __init__ (whose failure line shows its frames, once):
                # jobvisor's, in full.
                log.exception("{}: could not start", rec.path)
            self.actor_ref.tell(ChildExit(rec.key, rec.incarnation, exc))
            return
        rec.catch_up = False  # the first start's only: a restart's ticks go on from it
        if rec.actor._jv_started_at_once:
            # Its exit, if it already crashed, is queued behind this turn: started comes first,
            # as it would have by message.
            self._started(rec)
            return
        ready = getattr(rec.spec, "ready", None)
        if ready is not None:
            # Said now: a long readiness wait was silence until its failure.
            said = log.info if rec.starts == 1 else log.debug
            said(
                "{}: started; waiting until it is ready ({})",
                rec.path,
                _probe(ready),
                extra={"path": rec.path},
            )

    def _permit_for(self, rec: ChildRecord) -> InPlace | None:
        """A permit to restart in place, where only this supervisor's policy could say no.

        Only commands (whose thread runs none of the user's Python), once or service, with
        nothing else that decides between their attempts or over their restarts: no timeout,
        readiness probe, breaker, give-up rule, placement, group strategy or tree budget.
        """
        spec = rec.spec
        if (
            not isinstance(spec, JobSpec)
            or not getattr(spec.work, "pooled_thread", False)
            or rec.periodic
            or spec.schedule.timeout is not None
            or spec.ready is not None
            or spec.breaker is not None
            or spec.give_up_on is not None
            or isinstance(spec.placement, RayPlacement)
            or self.spec.strategy is not Strategy.ONE_FOR_ONE
            or self.ctx.budget is not None
            or rec.window.probing
            or self._closing is not None
        ):
            return None
        return InPlace(
            self.policy,
            rec.window,
            spec.restart,
            service=spec.schedule.service,
            path=rec.path,
            monotonic=self.ctx.monotonic,
            rand=self.ctx.rand,
            # Under gevent the supervisor is a greenlet of the command's own thread: a batch
            # of reports holds the command's greenlet up while it is handled, and a journal
            # commit with it. Kept only where the command leaves room for that (a crash
            # loop of Python commands: 8 ms), never a 0.6 ms /bin/true loop.
            fit=InPlace.FIT if active_runtime() == "gevent" else 0.0,
        )

    @staticmethod
    def _hold(rec: ChildRecord) -> None:
        """No more restarts in place for ``rec``: this supervisor is about to act on it.

        The report of one made already is told now, to be handled in its turn (after the
        stop that revokes it has begun: ``_restarted_before_stop``).
        """
        permit = rec.permit
        if permit is not None:
            permit.revoke()

    def _on_started(self, msg: ChildStarted) -> None:
        rec = self._by_key.get(msg.key)
        if rec is not None and rec.incarnation == msg.incarnation:
            self._started(rec)

    def _started(self, rec: ChildRecord) -> None:
        """Its current incarnation started (told, or counted so in its launch's own turn)."""
        if rec.state is State.WAITING and self._starting is rec:
            # Ready while its breaker keeps it waiting: started all the same.
            self._starting = None
            self._pump_start()
            return
        if rec.state is not State.STARTING:
            return
        if rec.periodic:  # its first tick, until its attempts tell the next ones exactly
            assert isinstance(rec.spec, JobSpec)
            last, rec.last_tick = rec.last_tick, None
            rec.next_start_at = first_tick(rec.spec.schedule, self.ctx.wall(), last)
        self._up(rec)
        # A restart's own line said it was coming: its start is a detail (one record per
        # decision a person needs: the failure, then the restart or the give-up).
        started = log.info if rec.starts == 1 else log.debug
        if started is not QUIET:
            started("{}: started (start {})", rec.path, rec.starts, extra={"path": rec.path})
        if self._starting is rec:
            self._starting = None
            self._pump_start()
            if self._group.window.probing and not self._start_queue and self._starting is None:
                self._arm_group_probation()

    def _on_waiting(self, msg: Waiting) -> None:
        rec = self._by_key.get(msg.key)
        if rec is None or rec.incarnation != msg.incarnation or rec.actor is None:
            return
        if msg.still:
            # Refused again: the breaker reopened, or kept the trial for a job that waited
            # longer. Only when it asks next changed, nothing to say.
            if rec.state is State.WAITING:
                rec.next_start_at = msg.retry_at
            return
        # Its attempt ended just before a stop reached it: the stop goes on, nothing waits.
        stopping = rec.state is State.STOPPING
        if msg.error is not None:
            # The attempt that opened the breaker failed: told here, as the child lives on.
            error = self.ctx.shown(msg.error)
            self.ctx.failed(rec, Outcome.FAILED)
            rec.last_exit = LastExit(Outcome.FAILED, msg.code, error, self.ctx.wall())
            extra = {"path": rec.path, "attempt": rec.attempts, "failure": error}
            text = "{}: failed (attempt {}): {}; breaker {} is open"
            if not stopping:
                text = (
                    "{}: failed (attempt {}): {}; waiting: breaker {} is open, no calls until "
                    "it half-opens"
                )
            text, args = self._traced(text, (rec.path, rec.attempts, error, msg.breaker), msg.error)
            log.error(text, *args, extra=extra)
        elif not stopping:
            log.info(
                "{}: waiting: breaker {} is open; no calls until it half-opens",
                rec.path,
                msg.breaker,
                extra={"path": rec.path, "attempt": rec.attempts},
            )
        if not stopping:
            rec.next_start_at = msg.retry_at
            rec.waiting_since = self.ctx.monotonic()
            self._set_state(rec, State.WAITING)

    def _on_final_status(self, msg: FinalStatus) -> None:
        rec = self._by_key.get(msg.key)
        if rec is not None and rec.incarnation == msg.incarnation:
            rec.final_children = msg.nodes
            rec.carried = msg.carried
            if msg.spec is not None and not rec.given and isinstance(rec.spec, SupervisorSpec):
                rec.spec = msg.spec

    def _on_group_updated(self, msg: GroupUpdated) -> None:
        rec = self._by_key.get(msg.key)
        if rec is not None and rec.incarnation == msg.incarnation and not rec.given:
            rec.spec = msg.spec

    def _finish(self, error: BaseException | None = None) -> None:
        """End this supervisor, leaving its last status, its children's counters and the spec
        it ran with its parent (for the group's next incarnation to start from)."""
        link = self._jv_link
        nodes = self._status()
        carried = {rec.spec.name: Carried.of(rec) for rec in self.children}
        link.parent.tell(FinalStatus(link.key, link.incarnation, nodes, carried, self._spec_now()))
        self._jv_finish(error)

    def _spec_now(self) -> SupervisorSpec:
        """What this group's next incarnation starts from: the children it has now (a command
        added or removed some since it started) under its spec, or the spec an update gave it
        as it ended."""
        if self._next_spec is not None:
            return self._next_spec
        return replace(self.spec, children=tuple(rec.spec for rec in self.children))

    def _on_resumed(self, msg: Resumed) -> None:
        rec = self._by_key.get(msg.key)
        if rec is None or rec.incarnation != msg.incarnation or rec.state is not State.WAITING:
            return
        rec.next_start_at = None
        log.info("{}: resumed: its breaker let a call through", rec.path, extra={"path": rec.path})
        # A probe's probation counts only while it may call: it starts over from here.
        self._up(rec)

    def _waited(self, rec: ChildRecord, now: float) -> None:
        """The child's wait for its breaker is over: it is no running time of its window's."""
        since, rec.waiting_since = rec.waiting_since, None
        if since is not None:  # off the window its exits are decided by (a group's, or its own)
            one = self.spec.strategy is Strategy.ONE_FOR_ONE
            (rec.window if one else self._group.window).waited_for(now - since)

    def _up(self, rec: ChildRecord) -> None:
        """The child started or may call again: running, or serving a probe's probation."""
        if not rec.window.probing:
            self._set_state(rec, State.RUNNING)
            return
        probation = self.policy.cooldown.probation
        rec.served = False
        if probation > 0:
            # Armed before the state is published: whoever sees it can rely on the timer.
            self._arm_child(rec, TimerKind.PROBATION, probation)
        self._set_state(rec, State.PROBATION)
        if probation <= 0:
            self._probation_over(rec)

    def _probation_over(self, rec: ChildRecord) -> None:
        """The probe's probation time is over: it passes, a periodic job's once a tick has
        also succeeded since the probe started. Its ticks may come less often than the
        probation lasts: the time alone proved nothing, and a failure before that good tick
        fails the probation (a longer cooldown, ``max_cycles``), as any probe's does."""
        rec.served = True
        if rec.periodic and not rec.ticked:
            return  # ``_on_attempt`` passes it at its first good tick
        self._probation_passed(rec)
        self._set_state(rec, State.RUNNING)

    # -- exits -----------------------------------------------------------------------------------

    def _on_attempt(self, msg: AttemptDone) -> None:
        self._attempt(msg)

    def _attempt(self, msg: AttemptDone) -> _Shown | None:
        """Note how one attempt ended; the error it showed, for its exit's report to reuse."""
        rec = self._by_key.get(msg.key)
        if rec is None or rec.incarnation != msg.incarnation:
            return None
        rec.attempts = max(rec.attempts, msg.attempt)
        spec = rec.spec
        service = isinstance(spec, JobSpec) and spec.schedule.service
        reason = classify(msg, service=service, path=rec.path)
        if rec.periodic:
            # Each tick is an attempt (SPEC §2): between two, the status shows how the last one
            # ended and when the next is due.
            error = self.ctx.shown(reason.error)
            rec.last_exit = LastExit(reason.outcome, msg.code, error, msg.ended_at)
            rec.next_start_at = msg.next_at
        text = self.ctx.attempt_finished(rec.path, msg, reason)
        if rec.periodic and reason.outcome is Outcome.SUCCEEDED and rec.state is State.PROBATION:
            rec.ticked = True
            if rec.served:  # told after the tick that proves it
                self._probation_over(rec)
        return (msg.error if reason.error is None else reason.error), text

    def _on_exits(self, msg: ChildExits) -> None:
        for report in msg.reports:
            self._on_exit(report)

    def _on_exit(self, msg: ChildExit) -> None:
        shown = None if msg.attempt is None else self._attempt(msg.attempt)
        rec = self._by_key.get(msg.key)
        if (
            rec is None
            or rec.incarnation != msg.incarnation
            or (rec.actor is None and rec.state not in (State.STARTING, State.STOPPING))
        ):
            return  # a late report from an incarnation already written off
        again = msg.again
        if again is not None and (rec.intent is not None or self._closing is not None):
            self._restarted_before_stop(rec, msg)
            return
        if again is None:
            rec.permit = None
        elif rec.actor is not None:
            self._adopt = (rec, rec.actor)
        rec.actor = None
        self._cancel_timers(rec)
        try:
            self._exited(rec, msg, shown)
        finally:
            adopt, self._adopt = self._adopt, None
            if adopt is not None:  # never: the permit decides as this supervisor just did
                log.error(
                    "{}: restarted in place against its policy; killed",
                    rec.path,
                    extra={"path": rec.path},
                )
                if rec.permit is not None:
                    rec.permit.revoke()
                adopt[1]._jv_kill()
        self._pump_start()

    def _exited(self, rec: ChildRecord, msg: ChildExit, shown: _Shown | None = None) -> None:
        reason, rule = self._note_exit(rec, msg, shown)
        if self._starting is rec:
            self._starting = None
        if rec.intent is not None or self._closing is not None:
            self._stopped(rec, reason)
        else:
            self._unexpected_exit(rec, reason, rule, msg.again)

    def _note_exit(
        self, rec: ChildRecord, msg: ChildExit, shown: _Shown | None = None
    ) -> tuple[ExitReason, str | None]:
        """Count and publish an incarnation's exit; with the ``give_up_on`` rule it matches.

        ``shown``: the error its last attempt's report showed, reused if it is the exit's too
        (a crash's: describing and masking it again was four calls a restart).
        """
        rec.attempts = max(rec.attempts, msg.attempts)
        spec = rec.spec
        service = isinstance(spec, JobSpec) and spec.schedule.service
        reason = classify(msg, service=service, path=rec.path)
        if shown is not None and shown[0] is reason.error:
            error = shown[1]
        else:
            error = self.ctx.shown(reason.error)
        rule = self._give_up_rule(rec, reason)
        if rule is not None:
            # Before a traceback the error carries (a child process's, a Ray node's), so that
            # the failure line and the summary table, which show its first line, show it too.
            text = error or ""
            found = _TRACEBACK_START.search(text)
            cut = len(text) if found is None else found.start()
            error = f"{text[:cut]} ({rule}){text[cut:]}"
        # When it exited: its last attempt's end, if it brings one (a restart in place may be
        # told up to ``InPlace.HOLD`` later); else now, as it is handled.
        at = self.ctx.wall() if msg.attempt is None else msg.attempt.ended_at
        last = LastExit(reason.outcome, msg.code, error, at)
        if not (
            # A periodic job stopped: its last exit stays its last tick's (a tick the stop
            # ended was reported as stopped already, as its attempt).
            reason.outcome is Outcome.STOPPED
            and msg.attempt is None
            and rec.last_exit is not None
            and isinstance(spec, JobSpec)
            and spec.schedule.periodic
        ):
            rec.last_exit = last
        if reason.outcome.is_failure:
            self.ctx.failed(rec, reason.outcome)
        self.ctx.publish(
            ev.ChildExited,
            lambda: ev.ChildExited(
                path=rec.path,
                at=last.at,
                incarnation=msg.incarnation,
                outcome=reason.outcome,
                error=error,
                code=msg.code,
            ),
        )
        return reason, rule

    def _restarted_before_stop(self, rec: ChildRecord, msg: ChildExit) -> None:
        """An incarnation restarted in place before this supervisor revoked its permit.

        Its exit and restart are counted as they happened; the next incarnation is the one
        the stop (or the shutdown) under way ends. Nothing else changes.
        """
        reason = self._note_exit(rec, msg)[0]
        outcome = reason.outcome
        error = rec.last_exit.error if rec.last_exit else None
        extra = {"path": rec.path, "attempt": rec.attempts, "failure": error}
        self._say_exit(rec, outcome, extra, merged=not outcome.is_failure, cause=reason.error)
        what = f"restart {rec.restarts + 1}"
        if not outcome.is_failure:  # one line for both, as a clean exit restarted at once has
            what = f"exited ({outcome.value}); {what}"
        self.ctx.announce(
            msg.again,
            self.policy,
            rec.path,
            what,
            tail=", before its stop",
            extra=extra,
            clean=not outcome.is_failure,
        )
        # Through the states of any restart, back to where the stop had it (running while
        # it waits its turn to be stopped, or stopping): what counts starts sees this one.
        state = rec.state
        self._set_state(rec, State.BACKOFF)
        self.ctx.restarted(rec)
        rec.incarnation += 1
        rec.starts += 1
        self._set_state(rec, State.STARTING)
        self._set_state(rec, state)

    def _give_up_rule(self, rec: ChildRecord, reason: ExitReason) -> str | None:
        """The ``give_up_on`` rule an unasked-for failure matches, if any (SPEC §10)."""
        spec = rec.spec
        if (
            not isinstance(spec, JobSpec)
            or spec.give_up_on is None
            or not reason.outcome.is_failure
            or rec.intent is not None
            or self._closing is not None
        ):
            return None
        return spec.give_up_on.matches(reason.error)

    def _stopped(self, rec: ChildRecord, reason: ExitReason) -> None:
        """An exit we asked for (or one that came while we were ending): never a failure."""
        if reason.outcome.is_failure and reason.error is not None:
            log.warning(
                "{}: failed while stopping: {}",
                rec.path,
                describe(reason.error),
                extra={"path": rec.path},
            )
        log.info("{}: stopped ({})", rec.path, reason.outcome.value, extra=_acted(rec))
        if rec.intent not in COMING_BACK or self._closing is not None:
            self._set_state(rec, State.STOPPED)
        elif rec.state is not State.STOPPING:
            # It ended while it waited its turn in a group's take-down: down as its siblings
            # the take-down stopped are, not `running` with no incarnation (a person's start
            # of it was refused as a transition from `running`).
            self._set_state(rec, State.STOPPING)
        if self._stop_waiting is not rec and rec in self._stop_queue:
            # The queued stop was for this incarnation: a person's start or restart makes
            # the next one, which the take-down must not stop for good.
            self._stop_queue.remove(rec)
        was_dying = rec.key in self._dying
        self._dying.discard(rec.key)
        waiters, rec.waiters = rec.waiters, []
        for waiter in waiters:
            waiter()
        if self._stop_waiting is rec:
            self._stop_waiting = None
            self._pump_stop()
        elif was_dying:
            self._pump_stop()

    def _unexpected_exit(  # noqa: C901 - one exit's decision and what is said of it, in order
        self,
        rec: ChildRecord,
        reason: ExitReason,
        rule: str | None = None,
        again: Decision | None = None,
    ) -> None:
        """An exit nobody asked for; ``again``: the decision of a restart in place."""
        outcome = reason.outcome
        error = rec.last_exit.error if rec.last_exit else None
        # "failure" (None for a success) is what the log's crash-loop damper keys on
        extra = {"path": rec.path, "attempt": rec.attempts, "failure": error}
        # A restart in place (``again``) was made as one_for_one decides: so it is handled,
        # also when a reload changed the strategy since (its report came after).
        one = self.spec.strategy is Strategy.ONE_FOR_ONE or again is not None
        failed = outcome.is_failure  # a property: asked once
        restarting = (
            rule is None
            and wants_restart(rec.spec.restart, outcome)
            and not (failed and _ticks_run(rec))
        )
        # A clean exit that is restarted is said by the restart's own line (one record per
        # decision), unless something else comes between them.
        merge = (
            restarting and one and not failed and not rec.window.probing and self.ctx.budget is None
        )
        if not restarting:
            self._ended(rec, reason, extra, merge, rule)
            return
        if not failed:  # a failure's line waits for its decision, which it may be the cause of
            self._say_exit(rec, outcome, extra, merged=merge)
            if outcome is Outcome.SUCCEEDED and rec.window.probing:
                self._probation_passed(rec)  # a once-job succeeding on probation closes it
        window = rec.window if one else self._group.window
        now = self.ctx.monotonic()
        if rec.waiting_since is not None:  # an exit while it waited: the state may not say so
            self._waited(rec, now)
        decision = self._decide(window, now, again)
        restart = isinstance(decision, Restart)
        budget = self.ctx.budget
        # (no budget: no call to charge none, once a restart)
        verdict, word = (None, None) if not restart or budget is None else budget.charge(rec.path)
        if failed:
            # Said once decided: a failure the supervisor gives up, escalates or cools down
            # after is that decision's cause, written in full even in a crash loop.
            final = not restart or verdict is not None
            self._say_exit(rec, outcome, extra, merged=False, cause=reason.error, final=final)
        if word is not None:
            # Now that its cause is said (not before: the root's answer came first in the log),
            # and before the refused child's own end, which the root is to hear of second.
            assert budget is not None
            budget.tell(word)
        if merge and not restart:
            log.info("{}: exited ({})", rec.path, outcome.value, extra=extra)
            merge = False
        if verdict is not None:
            self._over_budget(rec, verdict)
            return
        if again is None:
            window.apply(decision, now)
        if one:
            self._apply(rec, decision, reason.error, exited=outcome if merge else None)
        else:
            self._apply_group(rec, decision, reason.error)

    def _ended(
        self,
        rec: ChildRecord,
        reason: ExitReason,
        extra: dict[str, Any],
        merge: bool,
        rule: str | None,
    ) -> None:
        """An exit that is not restarted: the child gives up to ``rule``, or settles."""
        outcome = reason.outcome
        # A failure that is not restarted ends its story: written in full (``final``).
        final = outcome.is_failure
        self._say_exit(rec, outcome, extra, merged=merge, cause=reason.error, final=final)
        if rule is not None:  # no restart can mend it: none is burned, no backoff waited
            self._give_up(rec, rule)
        else:
            self._settle(rec, outcome)

    def _say_exit(
        self,
        rec: ChildRecord,
        outcome: Outcome,
        extra: dict[str, Any],
        *,
        merged: bool,
        cause: BaseException | None = None,
        final: bool = False,
    ) -> None:
        """Log an exit nobody asked for; ``merged``: a clean one the restart's line says;
        ``final``: a failure no restart follows, never held back.

        ``cause``: the exception that failed it, whose traceback (a python thread job's)
        follows the line, as a child's follows its error; only once the damper let it
        through, so a crash loop formats none of those it holds.
        """
        if outcome.is_failure:
            error = extra["failure"]
            # ``_value_``, not ``value``: an enum's property is two Python calls (Python 3.11)
            # Its attempt's number, as its record's ``attempt`` and history say it (a breaker's
            # wait or a tick is an attempt of the same start, h253).
            msg, args = "{}: {} (attempt {}): {}", (rec.path, outcome._value_, rec.attempts, error)
            if rec.attempts < rec.starts:
                # An actor's (it has starts, no attempts), or a start that failed before its
                # first attempt (no thread for it): its start's number, not the last attempt's.
                msg, args = "{}: {} (start {}): {}", (rec.path, outcome._value_, rec.starts, error)
            if final:
                msg, args = self._traced(msg, args, cause)
                log.error(msg, *args, extra={**extra, ACTED: True})
            elif not held_back(
                log, logbook.ERROR, rec.path, msg, args, error, tree=self.ctx.tree_id
            ):
                msg, args = self._traced(msg, args, cause)
                log.error(msg, *args, extra=extra)
        elif not merged:
            log.info("{}: exited ({})", rec.path, outcome.value, extra=extra)

    def _traced(
        self, msg: str, args: tuple[Any, ...], cause: BaseException | None
    ) -> tuple[str, tuple[Any, ...]]:
        """A failure's log line with the traceback of ``cause`` below it, if it has one to show."""
        # Not for a record nobody makes (its logger off: --log-level none, the benchmarks):
        # an actor's traceback, formatted for nothing, doubled its crash loop's cycle.
        off = log.disabled or log.level > logbook.ERROR
        trace = None if cause is None or off else traceback_of(cause)
        if trace is None:
            return msg, args
        return f"{msg}\n{{}}", (*args, self.ctx.mask(trace))

    def _decide(self, window: Window, now: float, again: Decision | None) -> Decision:
        """The policy's decision; a restart in place brings its own, noted in ``window`` already.

        (The incarnation made it with this policy and this window, under its permit's lock.)
        """
        return decide(self.policy, window, now, self.ctx.rand()) if again is None else again

    def _settle(self, rec: ChildRecord, outcome: Outcome) -> None:
        """The child ends for good: succeeded (and its probation passed) or failed finally."""
        if outcome is Outcome.SUCCEEDED:
            if rec.window.probing:
                self._probation_passed(rec)
            self._set_state(rec, State.SUCCEEDED)
        else:
            times = _ticks_run(rec)
            if times:  # a restart would run more ticks than it has: ``times`` counts failed ones
                reason = f"its {times} ticks, times: {times}, are run"
            elif rec.spec.restart is RestartType.TEMPORARY:
                reason = "temporary"
            else:
                reason = "not restarted"
            log.warning("{}: failed finally ({})", rec.path, reason, extra={"path": rec.path})
            self._set_state(rec, State.FAILED)
            self.ctx.publish(
                ev.FailedFinally,
                lambda: ev.FailedFinally(path=rec.path, at=self.ctx.wall(), reason=reason),
            )

    # -- decisions -------------------------------------------------------------------------------

    def _over_budget(self, rec: ChildRecord, verdict: Decision) -> None:
        """The tree's budget refused a restart of ``rec`` (its ``verdict``).

        A refused child stays down: it gives up with the budget's reason, or waits in
        backoff (unscheduled) for the root to escalate or cool the whole tree down.
        """
        match verdict:
            case GiveUp(reason=reason):
                self._give_up(rec, f"tree budget exhausted: {reason}")
            case _:
                log.warning(
                    "{}: not restarted: the tree's budget is exhausted; the root decides",
                    rec.path,
                    extra={"path": rec.path},
                )
                rec.next_start_at = None
                self._set_state(rec, State.BACKOFF)

    def _on_budget_exhausted(self, msg: BudgetExhausted) -> None:
        """At the root: the tree's budget is spent; ``on_exhausted`` applies to the whole tree."""
        if self._closing is not None:
            return
        reason = f"tree budget exhausted: {msg.decision.reason} (after {msg.path} failed)"
        match msg.decision:
            case GiveUp():
                log.error("root: {}; giving up: stopping the whole tree", reason)
                self.ctx.publish(
                    ev.GaveUp, lambda: ev.GaveUp(path="", at=self.ctx.wall(), reason=reason)
                )
                self._closing = Intent.SHUTDOWN
                self._stop_all_then(self._finish)
            case Escalate():
                self._escalate(reason, None)
            case Cooldown(duration=duration, cycle=cycle):
                branch = self._by_name.get(msg.path.split("/", 1)[0])
                members = [
                    r
                    for r in self.children
                    if r.spec.restart is not RestartType.TEMPORARY and r.state not in FINAL
                ]
                if branch is not None and branch not in members:
                    members.append(branch)
                decision = Cooldown(duration, cycle, reason)
                self.ctx.announce(
                    decision,
                    self.policy,
                    "",
                    "tree cooling down",
                    tail="; then every child starts again on probation",
                )
                self._take_down(members, duration, cooldown=True)

    def _apply(
        self,
        rec: ChildRecord,
        decision: Decision,
        cause: BaseException | None,
        *,
        exited: Outcome | None = None,
    ) -> None:
        """Carry a child's ``decision`` out; ``exited``: the clean exit its restart line says."""
        match decision:
            case Restart(delay=delay):
                what = f"restart {rec.restarts + 1}"
                extra: dict[str, Any] = {"path": rec.path, "attempt": rec.attempts}
                if exited is not None:
                    what = f"exited ({exited.value}); {what}"
                self._schedule_start(rec, delay, TimerKind.RESTART)
                self.ctx.announce(
                    decision, self.policy, rec.path, what, extra=extra, clean=exited is not None
                )
            case Cooldown(duration=duration):
                self._schedule_start(rec, duration, TimerKind.PROBE)
                self._set_state(rec, State.COOLDOWN)
                # A decision, never the loop's noise: the damper writes it every time.
                tail, extra = "; then one probe start", _acted(rec)
                self.ctx.announce(
                    decision, self.policy, rec.path, "cooling down", tail=tail, extra=extra
                )
            case GiveUp(reason=reason):
                self._give_up(rec, reason)
            case Escalate(reason=reason):
                self._escalate(f"{rec.path}: {reason}", cause)

    def _give_up(self, rec: ChildRecord, reason: str) -> None:
        self._set_state(rec, State.GAVE_UP)
        log.error("{}: gave up: {}", rec.path, reason, extra=_acted(rec))  # written every time
        self.ctx.publish(
            ev.GaveUp, lambda: ev.GaveUp(path=rec.path, at=self.ctx.wall(), reason=reason)
        )

    def _schedule_start(self, rec: ChildRecord, delay: float, kind: TimerKind) -> None:
        rec.next_start_at = self.ctx.wall() + delay
        if kind is TimerKind.RESTART and delay <= 0:
            self._set_state(rec, State.BACKOFF)
            self.ctx.restarted(rec)
            self._launch(rec, at_once=True)
            return
        # Armed before the state is published: whoever sees it can rely on the timer.
        self._arm_child(rec, kind, delay)
        if kind is TimerKind.RESTART:
            self._set_state(rec, State.BACKOFF)

    def _arm(self, key: int, kind: TimerKind, delay: float) -> Timer:
        return Timer.arm(key, kind, delay, self.ctx.scheduler, self.actor_ref)

    def _arm_child(self, rec: ChildRecord, kind: TimerKind, delay: float) -> None:
        if kind is TimerKind.KILL:
            disarm(rec.kill_timer)
            rec.kill_timer = self._arm(rec.key, kind, delay)
        else:
            disarm(rec.timer)  # e.g. a probe re-armed after waiting on its breaker
            rec.timer = self._arm(rec.key, kind, delay)

    def _cancel_timers(self, rec: ChildRecord) -> None:
        if rec.timer is None and rec.kill_timer is None:
            return  # a crash loop's restart, twice: no call to disarm nothing
        disarm(rec.timer)
        disarm(rec.kill_timer)
        rec.timer = rec.kill_timer = None

    def _probation_passed(self, rec: ChildRecord) -> None:
        rec.window.reset()
        log.info("{}: probation passed; restart window cleared", rec.path, extra=_acted(rec))
        self.ctx.publish(
            ev.ProbationPassed, lambda: ev.ProbationPassed(path=rec.path, at=self.ctx.wall())
        )

    def _on_timer(self, msg: Timer) -> None:
        if msg.key == GROUP_KEY:
            if self._group.timer is msg:
                self._group.timer = None
                self._on_group_timer(msg.kind)
            return
        rec = self._by_key.get(msg.key)
        if rec is None:
            return
        if msg.kind is TimerKind.KILL:
            if rec.kill_timer is msg:
                rec.kill_timer = None
                self._kill_overdue(rec)
            return
        if rec.timer is not msg or self._closing is not None:
            return
        rec.timer = None
        # A child's own restart does not wait behind an ordered start sequence.
        if msg.kind is TimerKind.RESTART and rec.state is State.BACKOFF:
            self.ctx.restarted(rec)
            self._launch(rec)
        elif msg.kind is TimerKind.PROBE and rec.state is State.COOLDOWN:
            rec.window.probe()
            rec.ticked = False
            # A decision of the policy's, as its cooldown is: never held back in a loop.
            log.info("{}: cooldown over; probe start in probation", rec.path, extra=_acted(rec))
            self._launch(rec)
        elif msg.kind is TimerKind.PROBATION and rec.state is State.PROBATION:
            self._probation_over(rec)

    def _on_group_timer(self, kind: TimerKind) -> None:
        if kind is TimerKind.GROUP_RESTART:
            self._start_group_members()
        elif kind is TimerKind.GROUP_PROBATION and self._group.window.probing:
            self._group.window.reset()
            if not self.path and self.ctx.budget is not None and self.ctx.budget.probing:
                self.ctx.budget.probation_passed()
            here = None if self._here is None else {**self._here, ACTED: True}
            log.info("{}: group probation passed; restart window cleared", self._name, extra=here)
            self.ctx.publish(
                ev.ProbationPassed, lambda: ev.ProbationPassed(path=self.path, at=self.ctx.wall())
            )

    def _kill_overdue(self, rec: ChildRecord) -> None:
        actor = rec.actor
        if actor is None or rec.state is not State.STOPPING:
            return
        if isinstance(actor, Supervisor):
            if rec.key in self._dying:
                # It was told to kill its jobs and end, and has not ended since: never seen
                # (a group's kills are reported at once), a jobvisor bug; it is not waited for.
                log.error(
                    "{}: did not end {}s after it was told to kill its jobs; killing it (a "
                    "jobvisor bug: please report it)",
                    rec.path,
                    KILLED_GROUP_ENDS,
                    extra={"path": rec.path},
                )
                actor._jv_kill()
                return
            # Its own kill would end only the group's actor: its jobs ran on until their own
            # graces (or never, those it had not stopped yet), into its next incarnation's.
            log.warning(
                "{}: did not stop within {}s (its grace); killing every job still running under it",
                rec.path,
                rec.spec.grace,
                extra=_acted(rec),
            )
            self._kill_group(
                rec, actor, f"its group {rec.path} did not stop within {rec.spec.grace}s"
            )
            return
        if self._force:  # no grace was given: say why it is killed
            self._say_killed(rec)
        else:
            log.warning(
                "{}: did not stop within {}s; killing it",
                rec.path,
                rec.spec.grace,
                extra={"path": rec.path},
            )
        actor._jv_kill()

    def _say_killed(self, rec: ChildRecord) -> None:
        """Say why ``rec`` is killed with no grace of its own: a forced stop of the tree (a
        warning), or its group's grace that ran out, which its group's own warning says once
        for all its jobs (a detail here)."""
        if self._forced_by is None:
            log.warning("{}: killed (forced stop)", rec.path, extra={"path": rec.path})
        else:
            log.info("{}: killed ({})", rec.path, self._forced_by, extra={"path": rec.path})

    def _kill_group(self, rec: ChildRecord, actor: Supervisor, why: str | None) -> None:
        """Tell the group ``rec`` to kill every job under it now and end; its exit report,
        which comes once they are dead, ends its stop. ``why``: said on each of its kills."""
        self._dying.add(rec.key)
        with contextlib.suppress(pykka.ActorDeadError):  # it ended just now: its report comes
            actor.actor_ref.tell(Command(Op.KILL, (), pykka.ThreadingFuture(), why))
        # Its end is waited for, not forever: a group that never reports is killed itself.
        self._arm_child(rec, TimerKind.KILL, KILLED_GROUP_ENDS)

    def _start_now(self, rec: ChildRecord) -> None:
        """Start ``rec`` out of the ordered sequence (a person's start, an added child), or
        queue it behind it; one whose dependencies are not met waits for them, as at boot."""
        blocker = unmet_dependency(rec, self._by_name, self.ctx.group_deps)
        if blocker is not None:
            self._not_yet(rec, blocker)
            return
        if self._starting is None and not self._start_queue:
            self._launch(rec)
        else:
            self._start_queue.append(rec)
            self._pump_start()

    # -- group strategies ------------------------------------------------------------------------

    def _apply_group(
        self, failed: ChildRecord, decision: Decision, cause: BaseException | None
    ) -> None:
        match decision:
            case Restart(delay=delay):
                members = group_members(self.spec.strategy, self.children, failed)
                names = ", ".join(r.path for r in members)
                what = f"{self.spec.strategy.value} restart of {names}"
                after = f" after {failed.path} failed"
                self.ctx.announce(
                    decision, self.policy, self.path, what, tail=after, extra=self._here
                )
                self._take_down(members, delay, cooldown=False)
            case Cooldown(duration=duration):
                members = group_members(self.spec.strategy, self.children, failed)
                self.ctx.announce(
                    decision, self.policy, self.path, "group cooling down", extra=self._here
                )
                self._take_down(members, duration, cooldown=True)
            case GiveUp(reason=reason):
                self._give_up(failed, reason)
            case Escalate(reason=reason):
                self._escalate(f"{failed.path}: {reason}", cause)

    def _take_down(self, members: list[ChildRecord], delay: float, *, cooldown: bool) -> None:
        """Stop ``members`` (dependants first, else last first), wait ``delay``, start them
        again in order."""
        group = self._group
        # A take-down still under way keeps its members: merge, in start order.
        pending = set(group.members) | set(members)
        members = [r for r in self.children if r in pending]
        self._cancel_group_timer()
        self._start_queue = deque(r for r in self._start_queue if r not in members)
        if self._starting in members:
            self._starting = None
        waiting = State.COOLDOWN if cooldown else State.BACKOFF
        for rec in members:
            rec.next_start_at = self.ctx.wall() + delay
            if rec.actor is not None:
                self._hold(rec)
                rec.intent = Intent.GROUP
                if isinstance(rec.spec, SupervisorSpec):
                    self.ctx.tracker.hold(rec.path)
            else:
                self._cancel_timers(rec)
                self._set_state(rec, waiting)
        group.members = members

        def then() -> None:
            if cooldown:
                group.window.probe()
            group.timer = self._arm(GROUP_KEY, TimerKind.GROUP_RESTART, delay)
            for rec in members:
                if rec.state is State.STOPPED or rec not in group.members:
                    continue  # a person stopped it meanwhile
                if rec.actor is None and rec.key in self._by_key:
                    self._cancel_timers(rec)
                    self._set_state(rec, waiting)

        self._stop_in_order([r for r in members if r.actor is not None], then)

    def _start_group_members(self) -> None:
        group = self._group
        budget = self.ctx.budget
        if not self.path and budget is not None and budget.tripped:
            budget.probe()  # the tree's cooldown is over: its restarts count on probation now
        for rec in group.members:
            if rec.key in self._by_key and rec.state in (State.BACKOFF, State.COOLDOWN):
                if rec.state is State.BACKOFF:  # a cooldown's probe start is no restart
                    self.ctx.restarted(rec)
                rec.run_from = rec.attempts  # its group starts anew: so does its run of ticks
                self._start_queue.append(rec)
        # The restart is under way, no longer to come: its members are the start queue's now
        # (kept, a later take-down would take them down again, and a settled one's stop would
        # not find it settled).
        group.members = []
        if group.window.probing:
            tree = budget is not None and budget.probing and not self.path
            what = (
                "tree cooldown over; every child starts"
                if tree
                else "group cooldown over; probe start"
            )
            log.info("{}: {} in probation", self._name, what, extra=self._here)
        self._pump_start()
        if group.window.probing and self._starting is None and not self._start_queue:
            self._arm_group_probation()

    def _arm_group_probation(self) -> None:
        disarm(self._group.timer)
        self._group.timer = self._arm(
            GROUP_KEY, TimerKind.GROUP_PROBATION, self.policy.cooldown.probation
        )

    def _cancel_group_timer(self) -> None:
        disarm(self._group.timer)
        self._group.timer = None

    # -- stopping --------------------------------------------------------------------------------

    def _stop_in_order(self, recs: list[ChildRecord], then: Callable[[], None]) -> None:
        """Stop ``recs`` one at a time, dependants before what they depend on and otherwise
        last first (see ``stop_order``), then call ``then``."""
        self._stop_queue = self._in_stop_order([*self._stop_queue, *recs])
        self._after_stop.append(then)
        self._pump_stop()

    def _in_stop_order(self, recs: Iterable[ChildRecord]) -> deque[ChildRecord]:
        """``recs`` that are still children, in the order a stop takes them."""
        recs = list(recs)
        if len(recs) <= 1:  # a person's stop of one: no order to find among 10,000 children
            return deque(r for r in recs if self._by_name.get(r.spec.name) is r)
        wanted = set(map(id, recs))
        return deque(r for r in stop_order(self.children) if id(r) in wanted)

    def _pump_stop(self) -> None:
        while self._stop_waiting is None and self._stop_queue:
            rec = self._stop_queue.popleft()
            if rec.actor is None:
                continue
            self._request_stop(rec)
            if rec.actor is not None:
                self._stop_waiting = rec
        if (
            self._stop_waiting is None
            and not self._stop_queue
            and not self._dying
            and self._after_stop
        ):
            callbacks, self._after_stop = self._after_stop, []
            for callback in callbacks:
                callback()

    def _request_stop(self, rec: ChildRecord) -> None:
        actor = rec.actor
        assert actor is not None
        self._hold(rec)
        if rec.intent is None:
            rec.intent = Intent.STOP
        self._set_state(rec, State.STOPPING)
        log.info("{}: stopping ({})", rec.path, rec.intent.value, extra=_acted(rec))
        grace = 0.0 if self._force and not isinstance(rec.spec, SupervisorSpec) else rec.spec.grace
        if grace is not None:
            self._arm_child(rec, TimerKind.KILL, grace)
        actor._jv_request_stop()

    def _drop_restart(self, rec: ChildRecord) -> None:
        """A stop or a person's start overtakes the restart ``rec`` waits for in its backoff.

        That restart is never made: it is not counted, and the journal hears so.
        """
        if rec.state is State.BACKOFF and rec.next_start_at is not None:
            rec.next_start_at = None
            self.ctx.publish(
                ev.RestartCancelled, lambda: ev.RestartCancelled(path=rec.path, at=self.ctx.wall())
            )

    def _stop_all_then(self, then: Callable[[], None]) -> None:
        self._start_queue.clear()
        self._starting = None
        self._cancel_group_timer()
        for rec in self.children:
            if rec.actor is None:
                self._drop_restart(rec)
                self._cancel_timers(rec)
                rec.next_start_at = None
                if rec.state not in FINAL:
                    self._set_state(rec, State.STOPPED)
            else:
                self._hold(rec)
                if rec.intent is None:
                    rec.intent = self._closing
        self._stop_in_order([r for r in self.children if r.actor is not None], then)

    def _escalate(self, reason: str, cause: BaseException | None) -> None:
        if self._closing is not None:
            return
        self._closing = Intent.ESCALATE
        error = EscalationError(self.path, reason, cause)
        # for the damper alone: a loop's escalations are each written or counted
        here = None if self._here is None else {**self._here, ESCALATED: True}
        log.error("{}: escalating: {}", self._name, error, extra=here)
        self.ctx.publish(
            ev.Escalated,
            lambda: ev.Escalated(
                path=self.path, at=self.ctx.wall(), reason=reason, error=self.ctx.mask(str(error))
            ),
        )
        self._stop_all_then(lambda: self._finish(error))

    def _shutdown(self, reply: pykka.Future[Any]) -> None:
        if self._closing is not None:
            self._after_stop.append(lambda: settle(reply))
            self._pump_stop()
            return
        self._closing = Intent.SHUTDOWN
        self._jv_stop_requested = True  # a forced stop (Tree.kill) asks for it too
        log.info("{}: shutting down {}", self._name, _children(self.children), extra=self._here)

        def done() -> None:
            settle(reply)
            self._finish()

        self._stop_all_then(done)

    def _kill_all(self, why: str | None = None) -> None:
        """Stop now: every child is killed at once (groups pass it on), none waits for its
        grace or its turn; this supervisor ends once every one has reported its end.

        ``why``: its parent's reason, this group's grace that ran out (its exit is then
        reported killed, as a job's past its grace is); None for a forced stop of the tree.
        """
        self._force = True
        if why is not None:
            self._forced_by = why
            self._jv_killed = True
        if self._closing is None:
            self._shutdown(pykka.ThreadingFuture())
        # Everything is killed now: nothing is left to stop in turn (each child's end is
        # waited for through ``_dying``, the one stopping now's too).
        self._stop_queue.clear()
        self._stop_waiting = None
        for rec in self.children:
            actor = rec.actor
            if actor is None or rec.key in self._dying:
                continue
            self._hold(rec)
            if rec.intent is None:
                rec.intent = self._closing
            # Killed here: its kill timer (of no grace, when the stop began just now) would
            # say so a second time.
            disarm(rec.kill_timer)
            rec.kill_timer = None
            self._set_state(rec, State.STOPPING)
            if isinstance(actor, Supervisor):
                self._kill_group(rec, actor, self._forced_by)
                continue
            self._dying.add(rec.key)
            self._say_killed(rec)
            actor._jv_kill()
        self._pump_stop()  # nothing had an incarnation: the stop is over now

    # -- commands from the tree ------------------------------------------------------------------

    def _on_command(self, cmd: Command) -> None:
        try:
            match cmd.op:
                case Op.SHUTDOWN:
                    self._shutdown(cmd.reply)
                case Op.KILL:
                    self._kill_all(cmd.arg)
                    settle(cmd.reply)
                case Op.STATUS:
                    settle(cmd.reply, self._status())
                case Op.ADD if not cmd.path:
                    settle(cmd.reply, self._add(*cmd.arg))
                case Op.UPDATE if not cmd.path:
                    self._update(cmd.arg)
                    settle(cmd.reply)
                case _:
                    self._route(cmd)
        except Exception:
            settle(cmd.reply, error=sys.exc_info())

    def _route(self, cmd: Command) -> None:
        """Act on the child ``cmd.path`` names, or pass the command down to its group."""
        rec = target(self._by_name, self.path, cmd, self.children)
        if len(cmd.path) == 1 and cmd.op is not Op.ADD:
            self._act(rec, cmd)
            return
        assert rec.actor is not None
        try:
            rec.actor.actor_ref.tell(replace(cmd, path=cmd.path[1:]))
        except pykka.ActorDeadError:  # it ended just now; its exit report is on the way
            where = "/".join((*self.path.split("/"), *cmd.path)).strip("/")
            raise GroupDownError(where, rec.path, "stopping") from None

    def _act(self, rec: ChildRecord, cmd: Command) -> None:
        match cmd.op:
            case Op.REF:
                _give_ref(rec, cmd.reply)
            case Op.STOP:
                said = self._nothing_to_stop(rec)
                if said is not None:
                    settle(cmd.reply, said)
                    return
                self._commanded(rec, "stop")
                self._person_stop(rec, Intent.STOP, lambda: settle(cmd.reply))
            case Op.REMOVE:
                self._person_stop(rec, Intent.REMOVE, lambda: self._remove(rec, cmd.reply))
            case Op.START:
                settle(cmd.reply, self._start_asked(rec))
            case Op.RESTART:
                if self._closing is None:
                    self._refuse_without_dependencies(rec, "restart")  # before it is stopped
                self._person_stop(rec, Intent.RESTART, lambda: self._restarted(rec, cmd.reply))
            case Op.UPDATE | Op.AUTOSTART:
                self._update_in_place(rec, cmd)
            case Op.SIGNAL:
                self._signal(rec, cmd.arg)
                settle(cmd.reply)

    def _start_asked(self, rec: ChildRecord) -> str | None:
        """A person's start of ``rec``: None once started, or what it says when it runs."""
        if rec.actor is not None:  # nothing was done: it says so, as a stop does
            return self._nothing_to_start(rec)
        self._person_start(rec)
        self._commanded(rec, "start")
        return None

    def _signal(self, rec: ChildRecord, signum: int) -> None:
        """A person's signal to ``rec``'s process group, sent from here: a kill, never a wait.

        Nothing else changes (no stop, no state, nothing counted): what the job does on it
        is an exit like any other. ``NotSignalledError`` says why nothing was sent.
        """
        spec = rec.spec
        if isinstance(spec, SupervisorSpec):
            first = f" ({rec.path}/{spec.children[0].name} ...)" if spec.children else ""
            why = f"is a group: signal its jobs{first} one by one"
        elif not isinstance(spec, JobSpec):
            why = "is an actor: it has no process of its own to signal"
        elif (none := no_process(spec.work)) is not None:
            why = none
        elif not isinstance(rec.actor, JobActor) or not rec.actor.send_signal(signum):
            why = (
                "has no process right now (between two tries, or about to start its next)"
                if rec.state is State.RUNNING
                else f"is not running ({rec.state.value})"
            )
        else:
            name = signal_name(signum)
            log.info("{}: {} sent (by a person)", rec.path, name, extra=_acted(rec))
            self._commanded(rec, "signal", name)
            return
        raise NotSignalledError(rec.path, f"{why}; nothing was sent")

    def _nothing_to_stop(self, rec: ChildRecord) -> str | None:
        """What a person's stop of ``rec`` says when it is settled (succeeded, failed, gave up,
        stopped): it stays as it is, its outcome kept, as ``systemctl stop`` of an inactive
        unit changes nothing. None when there is something to stop (or to keep from coming
        back: a restart it waits for, its group's, its dependencies)."""
        if (
            rec.actor is not None
            or rec.state not in FINAL
            or rec in self._group.members
            or rec in self._start_queue
        ):
            return None
        said = f"{rec.path}: not running ({rec.state.value}); nothing to stop"
        log.info("{}", said, extra=_acted(rec))
        return said

    def _nothing_to_start(self, rec: ChildRecord) -> str:
        """What a person's start of ``rec``, which has an incarnation, says (it starts nothing)."""
        if rec.state is State.STOPPING:
            said = f"{rec.path}: stopping; start it once it has stopped (or restart it)"
        else:
            said = f"{rec.path}: already {rec.state.value}; nothing to start"
        log.info("{}", said, extra=_acted(rec))
        return said

    def _commanded(self, rec: ChildRecord, action: str, signal: str | None = None) -> None:
        """Tell the journal (and subscribers) what was done to ``rec`` from outside the tree:
        a daemon's restore must know that a person's start ended the cooldown it journaled."""
        at = self.ctx.wall()
        self.ctx.publish(
            ev.Commanded,
            lambda: ev.Commanded(path=rec.path, at=at, action=action, signal=signal),
        )

    def _person_stop(self, rec: ChildRecord, intent: Intent, then: Callable[[], None]) -> None:
        """A stop a person asked for: never a failure, never counted against intensity."""
        self._start_queue = deque(r for r in self._start_queue if r is not rec)
        if rec in self._blocked:  # it waits no more for its dependencies: a stop sticks
            self._blocked.remove(rec)
        group = self._group
        if group.members and intent is not Intent.RESTART and rec in group.members:
            group.members.remove(rec)  # a person's stop outranks a pending group restart
        if rec.actor is None:
            self._drop_restart(rec)
            self._cancel_timers(rec)
            rec.next_start_at = None
            if self._starting is rec:
                self._starting = None
                self._deps_dirty = True  # re-run the ordered start after this message
            if intent is not Intent.RESTART:
                self._set_state(rec, State.STOPPED)
            then()
            return
        self._hold(rec)
        rec.intent = intent
        rec.waiters.append(then)
        if rec.state is not State.STOPPING:
            self._request_stop(rec)

    def _person_start(self, rec: ChildRecord, verb: str = "start") -> None:
        if rec.actor is not None:
            return
        if self._closing is not None:
            raise ShuttingDownError(f"{rec.path}: not started, {self._name} is {self._ending}")
        self._refuse_without_dependencies(rec, verb)
        self._drop_restart(rec)
        rec.window.reset()
        rec.run_from = rec.attempts  # a periodic job's ``times`` count its ticks from here
        new_story(
            rec.path, tree=self.ctx.tree_id
        )  # a loop it gave up in is over: its next failures are shown in full
        log.info("{}: start requested", rec.path, extra=_acted(rec))
        self._start_now(rec)

    def _refuse_without_dependencies(self, rec: ChildRecord, verb: str) -> None:
        """A person may not start ``rec`` while a job it depends on is down for good (gave up,
        failed, stopped), as systemd's ``Requires=`` would not; one not ready yet is waited for."""
        down = down_dependency(rec, self._by_name, self.ctx.group_deps)
        if down is not None:
            raise DependencyDownError(verb, rec.path, down.path, down.state.value)

    @property
    def _ending(self) -> str:
        return "escalating" if self._closing is Intent.ESCALATE else "shutting down"

    def _restarted(self, rec: ChildRecord, reply: pykka.Future[Any]) -> None:
        rec.intent = None
        try:
            self._person_start(rec, "restart")
        except (ShuttingDownError, DependencyDownError):  # a dependency went down meanwhile
            if rec.state is State.STOPPING:
                self._set_state(rec, State.STOPPED)
            settle(reply, error=sys.exc_info())
            return
        self._commanded(rec, "restart")
        settle(reply)

    def _remove(self, rec: ChildRecord, reply: pykka.Future[Any]) -> None:
        self.children.remove(rec)
        # Never started again: not when its dependencies are met, nor by an ordered start.
        self._blocked = [r for r in self._blocked if r is not rec]
        self._start_queue = deque(r for r in self._start_queue if r is not rec)
        del self._by_key[rec.key]
        del self._by_name[rec.spec.name]
        self._seen.pop(rec.path, None)
        if isinstance(rec.spec, SupervisorSpec):
            self.ctx.group_deps.forget(rec.path)
        rec.ref._close("removed")
        self.ctx.tracker.forget(rec.path)
        if rec.state is not State.STOPPED:
            # Down (gave up, in backoff...): its story ends stopped all the same, as a running
            # one's does, and a replacement's first state, `stopped -> pending`, reads on.
            old, rec.state = rec.state, State.STOPPED
            self.ctx.state_changed(rec.path, old, State.STOPPED)
        log.info("{}: removed", rec.path, extra={"path": rec.path})
        self._commanded(rec, "remove")
        if not self.children:
            log.info("{}: no children left; idle until one is added", self._name, extra=self._here)
        settle(reply)

    def _add(self, spec: ChildSpec, before: str | None = None) -> ChildRef | None:
        if spec.name in self._by_name:
            raise SpecError(f"{self._child_path(spec.name)}: a child of that name exists already")
        if before is not None and before not in self._by_name:
            raise NoSuchChildError(self._child_path(before))
        if self._closing is not None:
            raise ShuttingDownError(
                f"{self._child_path(spec.name)}: not added, {self._name} is {self._ending}"
            )
        rec = self._add_record(spec, before)
        self._watch_groups(rec)
        log.info("{}: added", rec.path, extra={"path": rec.path})
        self._commanded(rec, "add")
        # Its path ran nothing until now: said, so that a subscriber sees where its story
        # starts (made at the tree's start, a record's `pending` goes unsaid).
        self.ctx.state_changed(rec.path, State.STOPPED, State.PENDING)
        if not self._left_stopped(rec):
            self._start_now(rec)
        # An actor's stable reference; a job or a group takes no messages (``_give_ref``)
        return rec.ref if isinstance(rec.spec, ActorSpec) else None

    def _update_in_place(self, rec: ChildRecord, cmd: Command) -> None:
        """A reload's change of ``rec`` that restarts nothing: a group's new spec, a job's
        ``autostart`` (its group's end carries it on to its next start: ``_spec_now``)."""
        if cmd.op is Op.UPDATE:
            self._update_group(rec, cmd)
            return
        self._set_autostart(rec, cmd.arg)
        settle(cmd.reply)

    @staticmethod
    def _set_autostart(rec: ChildRecord, autostart: bool) -> None:
        """A reload's new ``autostart`` of the job ``rec``: for its next start with its
        supervisor (the tree's, its group's); nothing is started or stopped now."""
        spec = rec.spec
        if not isinstance(spec, JobSpec):
            raise SpecError(f"{rec.path} is no job: only a job has autostart")
        rec.spec = with_autostart(spec, (), autostart)

    def _update_group(self, rec: ChildRecord, cmd: Command) -> None:
        """A reload's new spec of the group ``rec``: what it runs, and what it restarts from.

        A running group takes it itself and tells it back (``GroupUpdated``), or refuses it
        whole (other children than it has: ``ChildrenChangedError``); when it ends, it tells
        the spec it ran (``FinalStatus``). One down or ending takes it here, for its next
        start, whatever its children.
        """
        spec = cmd.arg
        if not isinstance(rec.spec, SupervisorSpec):
            raise NotAGroupError(rec.path, rec.spec.kind)
        if rec.actor is None:
            rec.spec = spec  # down: it starts from the new spec when it starts again
            settle(cmd.reply)
            return
        if rec.state is not State.STOPPING:
            try:
                rec.actor.actor_ref.tell(replace(cmd, path=()))
            except pykka.ActorDeadError:
                pass  # ending: as one stopping
            else:
                return
        # Going: its next incarnation starts from the new spec, not the one this one reports.
        rec.spec, rec.given = spec, True
        settle(cmd.reply)

    def _same_children(self, spec: SupervisorSpec) -> list[str]:
        """``spec``'s children's names, in its order, when they are the ones running, each with
        the spec it runs; else ``ChildrenChangedError``: the update was made while the group
        was down (or before it restarted), and the reload looks again."""
        names = [c.name for c in spec.children]
        if set(names) != set(self._by_name):
            raise ChildrenChangedError(
                f"{self._name}: an update keeps the same children "
                f"({', '.join(self._by_name) or 'none'}), got {', '.join(names) or 'none'}"
            )
        changed = [c.name for c in spec.children if self._by_name[c.name].spec != c]
        if changed:
            raise ChildrenChangedError(
                f"{self._name}: an update keeps the same children, got other specs of "
                f"{', '.join(changed)}"
            )
        return names

    def _update(self, spec: SupervisorSpec) -> None:
        """Take ``spec``'s strategy, policy and order of children in place (a reload).

        The children keep running, and the restarts they made still count. Restarts in
        place are revoked first: a permit decides with the policy it was given.
        """
        if self._closing is not None:
            if not self.path:
                raise ShuttingDownError(f"{self._name}: not updated, it is {self._ending}")
            self._next_spec = spec  # ending: its next incarnation starts from it
            self._tell_updated()
            return
        names = self._same_children(spec)
        if (spec.strategy, spec.policy) != (self.spec.strategy, self.policy):
            for rec in self.children:
                self._hold(rec)
        intensity = spec.policy.intensity
        if intensity != self.policy.intensity:
            for rec in self.children:
                rec.window = rec.window.resized(intensity)
            self._group.window = self._group.window.resized(intensity)
        if not self.path and self.ctx.budget is not None and spec.policy.budget is not None:
            self.ctx.budget.retune(spec.policy)  # the tree's: only the root's spec has one
        self.spec, self.policy = spec, spec.policy
        place = {name: i for i, name in enumerate(names)}

        def ordered(records: Iterable[ChildRecord]) -> list[ChildRecord]:
            here = [r for r in records if self._by_key.get(r.key) is r]
            return sorted(here, key=lambda r: place[r.spec.name])

        self.children = ordered(self.children)
        self._start_queue = deque(ordered(self._start_queue))
        self._group.members = ordered(self._group.members)  # a group restart to come
        self._stop_queue = self._in_stop_order(self._stop_queue)
        self._tell_updated()

    def _tell_updated(self) -> None:
        """Give the parent's record the spec this group took, before the update's answer."""
        if self.path:  # the root's spec is its tree handle's
            link = self._jv_link
            with contextlib.suppress(pykka.ActorDeadError):  # the tree is ending
                link.parent.tell(GroupUpdated(link.key, link.incarnation, self._spec_now()))

    def _status(self) -> list[dict[str, Any]]:
        return child_nodes(self.children, self.ctx.wall())


def _acted(rec: ChildRecord) -> dict[str, Any]:
    """A line's fields when it says what was done to ``rec``, by a person or by the policy's
    give-up, cooldown or passed probation (never held back in a loop)."""
    return {"path": rec.path, ACTED: True}


def _probe(ready: Any) -> str:
    """A readiness probe as a person reads it; an embedder's own has only ``wait_ready``."""
    describe, timeout = getattr(ready, "describe", None), getattr(ready, "timeout", None)
    what = describe() if callable(describe) else type(ready).__name__
    if not isinstance(timeout, int | float):
        return what
    return f"{what}, up to {fmt_duration(timeout)}"


def _children(children: list[ChildRecord]) -> str:
    return "1 child" if len(children) == 1 else f"{len(children)} children"


def _ticks_run(rec: ChildRecord) -> int | None:
    """A periodic job's ``times`` once it has run them all (failed ticks count too), else None."""
    spec = rec.spec
    if not rec.periodic or not isinstance(spec, JobSpec):
        return None
    times = spec.schedule.times
    return times if times is not None and rec.attempts - rec.run_from >= times else None


def _give_ref(rec: ChildRecord, reply: pykka.Future[Any]) -> None:
    """Answer ``Tree.ref``: an actor's stable reference. A job or a group has none: a tell to
    one was taken and never handled, and an ask waited for as long as it ran."""
    if isinstance(rec.spec, ActorSpec):
        settle(reply, rec.ref)
    else:
        settle(reply, error=(ChildUnavailableError, _no_ref(rec), None))


def _no_ref(rec: ChildRecord) -> ChildUnavailableError:
    """Why ``Tree.ref`` gives ``rec`` no reference: it is a job or a group."""
    path, spec = rec.path, rec.spec
    if isinstance(spec, SupervisorSpec):
        what = "a group"
    else:
        what = f"{'an' if spec.kind[:1] in 'aeiou' else 'a'} {spec.kind} job"
    return ChildUnavailableError(
        f"{path!r} is {what}: only an actor (ActorSpec) has a stable reference, as only an "
        "actor takes messages; a job or a group is acted on through the tree's own methods "
        "(status, start_child, stop_child, restart, signal)"
    )
