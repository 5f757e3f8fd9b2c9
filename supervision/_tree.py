"""The tree handle: start a supervisor tree, query it, act on children, stop it."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import numbers
import random
import signal
import sys
import threading
import time
import weakref
from collections import abc
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, overload

import logbook
import pykka

from actors import (
    ActionTimeoutError,
    Breaker,
    BreakerState,
    ChildExit,
    ChildRef,
    ChildStarted,
    EscalationError,
    InHubError,
    Link,
    Outcome,
    RuntimeSetupError,
    Scheduler,
    SpecError,
    TreeStoppedError,
    active_runtime,
    check_runtime,
    start_supervised,
)
from actors._checks import a_kind
from actors._placement import check_placeable
from actors._runtime import KILL_GRACE
from actors._spawn import REAPED_UNREAD, reaped_unread
from actors._warden import WARDEN
from supervision._abandon import AbandonWatch
from supervision._budget import TreeBudget
from supervision._events import BreakerChanged, Event, EventBus, SinkFailures, need_subscriber
from supervision._exits import classify
from supervision._logging import tree_begins, tree_started, tree_stopped
from supervision._output import OutputFiles
from supervision._policy import kept
from supervision._records import Command, FinalStatus, Op, TreeContext
from supervision._spec import (
    ActorSpec,
    BreakerSpec,
    ChildSpec,
    JobSpec,
    SupervisorSpec,
    check_known_dependencies,
    child_path,
    with_autostart,
)
from supervision._state import State
from supervision._status import document
from supervision._supervisor import Supervisor
from supervision._tracker import Tracker

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from actors._attempt import LineCut
    from supervision._events import Subscription

__all__ = ["RunResult", "Tree", "budget_change", "build_breakers", "start_tree"]

log = logbook.Logger("supervision.tree")

_tree_ids = itertools.count(1)
_live_trees: weakref.WeakSet[Tree] = weakref.WeakSet()

COMMAND_TIMEOUT = 60.0  # how long a tree command waits for its supervisor before giving up


class HasTreeSpec(Protocol):
    """A manifest (or anything) that can say which tree it describes."""

    def tree_spec(self) -> SupervisorSpec: ...


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended, for ``jobvisor run``'s exit code.

    ``ok`` is true when no finite job failed or gave up and nothing escalated
    past the root. ``failed`` lists the paths that failed finally or gave up.
    """

    ok: bool
    failed: tuple[str, ...]
    escalation: EscalationError | None


class _Monitor:
    """The root supervisor's parent: records that the root started and how it ended."""

    def __init__(self, tracker: Tracker, tree_id: str, on_end: Callable[[], None]) -> None:
        self._tracker = tracker
        self._tree_id = tree_id
        self._on_end = on_end
        self.exit: ChildExit | None = None
        self.final: list[dict[str, Any]] = []

    def tell(self, message: Any) -> None:
        if isinstance(message, FinalStatus):
            self.final = message.nodes
        elif isinstance(message, ChildStarted):
            self._tracker.started.set()
        elif isinstance(message, ChildExit):
            self.exit = message
            # Whatever ended it (a stop, a kill after a stop that timed out, an escalation past
            # the root), its loops are over: what the log held of them is written now, and their
            # damper goes (a late record of a thread of it is damped with no tree's).
            tree_stopped(self._tree_id)
            # Before ``ended``: whoever it wakes must find how the tree is let go decided.
            self._on_end()
            self._tracker.ended.set()
        self._tracker.notify()


class Tree:
    """A running supervisor tree. Use it as a context manager so it always stops.

    Every method is safe to call from any thread except a supervised child's
    own (a child waiting on its supervisor would wait for itself). Under gevent, in the hub
    greenlet (a plain ``signal.signal`` handler), where nothing may wait: ``stop`` and
    ``kill`` begin and return False, and a call that would wait for an answer raises
    ``InHubError`` unless it has its answer already.
    """

    # How long leaving a ``with`` block waits for the graceful stop before it kills what is
    # left (``__exit__``); None: as long as it takes.
    exit_timeout: float | None = 30.0

    def __init__(self, spec: SupervisorSpec, runtime: str, context: TreeContext) -> None:
        self.spec = spec
        self.runtime = runtime
        self._ctx = context
        # What the tree holds besides its actors (timers, events, its place among the trees the
        # exit stops) is let go once, when the root ends, whatever ended it: see ``_release``.
        self._released = threading.Event()
        # The stable references handed out (a path removed and added again has a new one):
        # told at the end that their tree ended. Weakly: a program that adds and removes
        # children for good does not keep every reference it dropped.
        self._refs: weakref.WeakSet[ChildRef] = weakref.WeakSet()
        self._releaser: threading.Thread | None = None
        self._release_here = False  # no thread could be started to do it: see ``_root_ended``
        self._release_lock = threading.Lock()
        self._monitor = _Monitor(context.tracker, context.tree_id, self._root_ended)
        self._abandon = AbandonWatch(context)  # issue 11.1: a stuck thread never holds a stop
        self._root = start_supervised(
            Supervisor, Link(self._monitor, 0, 1), f"{context.tree_id}-root", spec, context, ""
        )
        self._stop_lock = threading.Lock()
        self._stopped = False

    # -- waiting ---------------------------------------------------------------------------------

    def started(self, timeout: float | None = None) -> bool:
        """Wait until every child has gone through its first start; False on timeout."""
        return self._wait_for(self._ctx.tracker.started, _seconds(timeout, "started"), "started")

    def all_dead(self) -> bool:
        """Every job gave up or failed (itself or with its group): none restarts by itself.

        A tree of endless jobs does not settle then (``wait``): a person may start one again.
        """
        return self._ctx.tracker.all_dead()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every finite job has settled or the root has ended; False on timeout.

        Settled means succeeded, failed finally, gave up or stopped; a job waiting
        (pending) for a stopped one (``autostart: false``, or a person's stop), itself or
        through the jobs it waits for, is not waited for: only a person starts it. A tree
        with no finite job only ends when stopped (or when escalation reaches the root).
        """
        timeout = _seconds(timeout, "wait")
        if _in_hub(self.runtime):
            if self._released.is_set():  # settled, and every event delivered: nothing to wait
                return True
            if timeout == 0:  # as started(0) and wait_ended(0) answer there
                return False
            raise _hub_refusal("Tree.wait()")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._ctx.tracker.wait_settled(timeout):
            return False
        # Subscribers see every event published up to now before wait() returns.
        self._ctx.bus.flush(_left(deadline))
        return True

    @property
    def ended(self) -> bool:
        """True once the root supervisor has ended (stopped, or escalated past the root)."""
        return self._ctx.tracker.ended.is_set()

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Wait until the root supervisor has ended: stopped (``stop``), or by itself (an
        escalation past the root, the root giving up on the tree's budget); False on timeout."""
        return self._wait_for(
            self._ctx.tracker.ended, _seconds(timeout, "wait_ended"), "wait_ended"
        )

    def _wait_for(self, event: threading.Event, timeout: float | None, method: str) -> bool:
        """``event.wait(timeout)``; in gevent's hub only what needs no wait (it is set, or the
        timeout is 0), else ``InHubError``."""
        if _in_hub(self.runtime) and not event.is_set():
            if timeout == 0:
                return False
            raise _hub_refusal(f"Tree.{method}()")
        return event.wait(timeout)

    def result(self) -> RunResult:
        """Summarise the run so far (see ``RunResult``)."""
        failed = tuple(
            sorted(
                path
                for path, state in self._ctx.tracker.finals().items()
                if state in (State.FAILED, State.GAVE_UP)
            )
        )
        exit_ = self._monitor.exit
        escalation = (
            exit_.error if exit_ is not None and isinstance(exit_.error, EscalationError) else None
        )
        # The root itself failed (a fault of jobvisor's own, said at ERROR): not a good run.
        broke = exit_ is not None and classify(exit_).outcome is Outcome.FAILED
        return RunResult(not failed and escalation is None and not broke, failed, escalation)

    # -- queries ---------------------------------------------------------------------------------

    def status(self, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        """The status document of SPEC §4: ``{"name", "state", "children": [...]}``."""
        timeout = _seconds(timeout, "status", none=False)
        deadline = time.monotonic() + timeout
        if not self.ended:
            state = State.STOPPING if self._stopped else State.RUNNING
            try:
                nodes = self._command(Op.STATUS, "", timeout=timeout)
            except TreeStoppedError:
                # The root ended after the look above, and its end is being noted: the final
                # document, once it is (a wait, which yields: a loop of asks under gevent
                # that never did kept the hub from noting it at all).
                if not self.wait_ended(max(0.0, deadline - time.monotonic())):
                    raise
            else:
                return document(self.spec.name, state, nodes, self._ctx.breakers, deadline)
        exit_ = self._monitor.exit
        failed = exit_ is not None and classify(exit_).outcome is Outcome.FAILED
        state = State.FAILED if failed else State.STOPPED
        return document(self.spec.name, state, self._monitor.final, self._ctx.breakers, deadline)

    def ref(self, path: str) -> ChildRef:
        """The stable reference of the actor child at ``path``; it survives the child's restarts.

        A job or a group takes no messages, so has none: ``ChildUnavailableError`` says so.
        """
        ref: ChildRef = self._command(Op.REF, path)
        self._refs.add(ref)
        return ref

    # -- acting on children ----------------------------------------------------------------------

    def restart(self, path: str, *, timeout: float | None = None) -> None:
        """Stop the child at ``path`` and start it again at once (not counted as a failure).

        A job whose dependency gave up, failed or is stopped is not touched: a
        ``DependencyDownError`` says which (start that one first). It waits for the child's
        stop (up to its grace, then its kill) and its start again, as OTP's
        ``restart_child`` does; out of ``timeout`` (None: as long as it takes), an
        ``ActionTimeoutError`` says so and the restart goes on. ``timeout=0`` returns once
        the supervisor has taken it (what an asyncio caller wants: nothing blocks).
        """
        self._act(Op.RESTART, path, _seconds(timeout, "restart"))

    def stop_child(self, path: str, *, timeout: float | None = None) -> str | None:
        """Stop the child at ``path`` gracefully; it stays down (state ``stopped``).

        A child that is not running and will not start by itself (succeeded, failed,
        gave up, stopped) is left as it is, its outcome kept: the answer then says so
        (``once: not running (succeeded); nothing to stop``); None after a real stop. It
        waits for the stop (up to the child's grace, then its kill), as OTP's
        ``terminate_child`` does; out of ``timeout`` (None: as long as it takes), an
        ``ActionTimeoutError`` says so and the stop goes on. ``timeout=0`` returns once the
        supervisor has taken it (None then; ``status()`` says ``stopping`` until it ends).
        """
        said: str | None = self._act(Op.STOP, path, _seconds(timeout, "stop_child"))
        return said

    def start_child(self, path: str, *, timeout: float = COMMAND_TIMEOUT) -> str | None:
        """Start a child that is down (stopped, gave up, failed); clears its restart window.

        A job whose dependency is not ready yet waits for it (``pending``), as at boot; one
        whose dependency gave up, failed or is stopped raises ``DependencyDownError``. A
        child that runs already is left as it is: the answer then says so (``web: already
        running; nothing to start``); None after a real start. Its supervisor not answering
        within ``timeout``, an ``ActionTimeoutError`` says so (the start may still be done).
        """
        timeout = _seconds(timeout, "start_child", none=False)
        said: str | None = self._command(Op.START, path, timeout=timeout)
        return said

    def signal(self, path: str, signum: int) -> None:
        """Send signal ``signum`` to the whole process group of the job at ``path``, now.

        A command's, or a python job's with ``isolation: process``, while it runs; nothing
        else is done: what the job does on it (an exit, say) is judged as any other. A child
        with no process of its own to signal (a group, an actor, an http job, a python job
        in a thread), or one not running, raises ``NotSignalledError``: nothing was sent.
        A ``signum`` that is no signal raises ``SpecError``.
        """
        if isinstance(signum, bool) or signum not in signal.valid_signals():
            raise SpecError(f"signal: expected a signal number such as 1 (SIGHUP), got {signum!r}")
        self._command(Op.SIGNAL, path, signum)

    def add_child(
        self, spec: ChildSpec, under: str = "", *, before: str | None = None
    ) -> ChildRef | None:
        """Add ``spec`` to the group at ``under`` and start it; an actor's stable reference
        (``ref``'s), None for a job or a group, which take no messages.

        It goes last, or before its sibling named ``before``: the order children
        start and stop in, and ``rest_for_one``'s "the ones after it". Its ``depends_on``
        is not checked against the group's children: a name none of them has is waited
        for (``pending``) until a child of that name is added, as a reload adds a group's
        new jobs one by one (``supervision._spec.check_added_dependencies`` checks it).
        """
        if not isinstance(spec, _CHILD_TYPES):
            raise SpecError(
                f"add_child: expected a JobSpec, ActorSpec or SupervisorSpec, got {spec!r}"
            )
        if self.runtime == "threads" and reaped_unread() and _runs_processes((spec,)):
            raise RuntimeSetupError(REAPED_UNREAD)  # as start_tree refuses it
        if _runs_commands((spec,)):
            WARDEN.start()  # as start_tree does
        ref: ChildRef | None = self._command(Op.ADD, under, (spec, before))
        if ref is not None:
            self._refs.add(ref)
        return ref

    def update_group(self, spec: SupervisorSpec, path: str = "") -> None:
        """Give the group at ``path`` (the root: "") ``spec``'s strategy, policy and order.

        ``spec`` names the children the group has now (add and remove them first): they
        keep running, and the restarts they made still count. A group restarted later
        starts from ``spec``; one that is down now starts from it when it starts again.
        The tree's budget can be changed but not added or removed: it is fixed at the start.
        """
        if not isinstance(spec, SupervisorSpec):
            raise SpecError(f"update_group: expected a SupervisorSpec, got {spec!r}")
        root = not child_path(path, "update_group", empty=True)  # before any use of it
        if root:
            budget_change(self.spec, spec)
        self._command(Op.UPDATE, path, spec)
        if root:
            self.spec = spec

    def set_autostart(self, path: str, *, autostart: bool) -> None:
        """Give the job at ``path`` a new ``autostart`` (what a reload that changes only that
        does): it says whether the job starts with its supervisor next time (the tree's start,
        its group's); nothing is started or stopped now. Not a job: ``SpecError``."""
        if not isinstance(autostart, bool):
            raise SpecError(f"set_autostart: expected true or false, got {autostart!r}")
        self._command(Op.AUTOSTART, path, autostart)
        parts = [p for p in path.strip("/").split("/") if p]
        spec = with_autostart(self.spec, parts, autostart)
        if isinstance(spec, SupervisorSpec):
            self.spec = spec

    def remove_child(self, path: str, *, timeout: float | None = None) -> None:
        """Stop the child at ``path`` and forget it once it has stopped.

        Waits as ``stop_child`` does (``timeout``; ``ActionTimeoutError`` out of it, the
        removal going on). With ``timeout=0`` it returns once the supervisor has taken it:
        until its stop ends the child is listed, ``stopping``, and its name is taken.
        """
        self._act(Op.REMOVE, path, _seconds(timeout, "remove_child"))

    def subscribe(self, callback: Callable[[Event], Any]) -> Subscription:
        """Call ``callback(event)`` for every later event of this tree.

        Runs on the tree's event thread (``jv-events``; from asyncio, hand the event to the
        loop with ``loop.call_soon_threadsafe``), in publication order. An exception in the
        callback is logged (the first of its kind in full, the repeats summed up every 10 s)
        and ignored. ``.cancel()`` the result to stop.
        """
        return self._ctx.bus.subscribe(callback)

    def subscribe_numbered(self, callback: Callable[[Event, int], Any]) -> tuple[Subscription, int]:
        """``subscribe``, with ``callback(event, number)``: each event's number, counted from 1
        over every event of the tree's, given to a subscriber or not, when its sink asked for
        them numbered (``numbers_events``: an HTTP endpoint's); and the count as it subscribed,
        so the first number it is given may be larger than that by one or more."""
        sub = self._ctx.bus.subscribe(callback, numbered=True)
        return sub, sub.since

    @property
    def event_count(self) -> int:
        """How many events the tree has had (0 unless its sink asked them numbered)."""
        return self._ctx.bus.numbered or 0

    def announce(self, event: Event) -> None:
        """Publish ``event``, which tells of something done to the tree from outside its
        supervisors (a daemon's reload: ``Reloaded``), to its subscribers and to its sink,
        if the sink takes that kind; any thread. Nothing happens with neither. Anything
        but an ``Event`` is refused (``SpecError``): subscribers read its fields."""
        if not isinstance(event, Event):
            shown = repr(event)[:200]
            raise SpecError(
                f"announce: expected an event (a supervision.events class), got {shown}",
                field="event",
                expected="an event",
                got=shown,
            )
        self._ctx.publish(type(event), lambda: event)

    # -- stopping --------------------------------------------------------------------------------

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop every child in reverse order, then the root; True if all ended within ``timeout``.

        Children that ignore a stop are killed after their grace period. The
        tree's threads (actors, timers, events) are joined before it returns,
        except one still running ``KILL_GRACE`` after its kill (stuck in a
        call, or ignoring the kill): that one is abandoned, reported and
        journaled, and left to run on.

        False when something of the tree still runs: the root has not ended by
        ``timeout`` (``ended`` is False: ``kill()``, or ``stop`` again, ends it),
        or it has but a thread of the tree was abandoned (``abandoned`` names it;
        nothing of jobvisor's can end it). Asked again, it says so again, until
        that thread has returned.

        Under gevent, in the hub greenlet (a plain ``signal.signal`` handler), where nothing
        may wait: it begins the stop and returns False at once, as from an event callback;
        the main greenlet's ``wait()``, ``wait_ended()`` or ``with`` block waits for the end.
        """
        timeout = _seconds(timeout, "stop")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._stop_lock:
            if not self._stopped:
                self._stopped = True
                if not self.ended:
                    self._root._jv_request_stop()
        if _in_hub(self.runtime):
            # A wait here raises gevent's BlockingSwitchOutError (after the stop was asked: the
            # tree was left half stopped, and the main greenlet's wait raised it too).
            return False
        if not self._ctx.tracker.ended.wait(_left(deadline)):
            # The timers (kills after grace) and events run on: a later stop() or kill() can
            # still finish the job.
            return False
        return self._wait_released(deadline)

    def _wait_released(self, deadline: float | None) -> bool:
        """The root has ended: wait until ``_release`` is done; True if nothing of the tree runs.

        From an event callback (``stop`` or ``kill`` once a job succeeded): False at once. The
        events thread is the caller, and ends once it returns; waiting for it waited for
        itself, up to 10 s, every other subscriber's events held meanwhile.
        """
        if self._ctx.bus.dispatching_here:
            if self._release_here:  # no thread could be started for it: done here, then
                with self._release_lock:
                    if not self._released.is_set():
                        self._release()
            return False
        # The caller's own wait for the threads: one killed and still running at its deadline
        # is abandoned (and said) now, even when that comes before its KILL_GRACE does.
        if self._abandon.join(_left(deadline)):
            # Abandoned just now: its event reaches the subscribers before this answer does,
            # as every other event of the stop's (bounded: the bus may be ending meanwhile).
            left = _left(deadline)
            self._ctx.bus.flush(_RELEASE_WAIT if left is None else min(left, _RELEASE_WAIT))
            return False
        if self._release_here:
            with self._release_lock:  # one caller does it; another finds it done
                if not self._released.is_set():
                    self._release()
        if not self._released.wait(_left(deadline)):
            return False
        releaser = self._releaser
        if releaser is not None and releaser is not threading.current_thread():
            releaser.join(_left(deadline))  # it has done its work: only its own end is left
        return not self._abandon.still_running()

    def _root_ended(self) -> None:
        # Called where the root's end is told (its thread, or the scheduler's on a timeout),
        # which must not wait for the tree's threads: a thread of its own does that.
        if self._releaser is not None or self._release_here:
            return
        releaser = threading.Thread(
            target=self._release, name=f"jobvisor-{self._ctx.tree_id}-end", daemon=True
        )
        self._releaser = releaser
        try:
            releaser.start()
        except RuntimeError:
            # No thread can start (a host's thread limit: the daemon's and run's stop are
            # done on the main thread then): the caller of stop() or kill() lets go of it.
            self._releaser = None
            self._release_here = True

    def _release(self) -> None:
        """The root has ended: join the tree's threads, then end its timers and its events.

        Whatever ended the root (a stop, a kill, an escalation past it) this runs once, so a
        tree ended by its kill leaves no scheduler or event thread behind until exit.
        """
        for ref in list(self._refs):
            ref._tree_ended()  # said "start it first", which an ended tree cannot
        try:
            # Threads first (abandoned ones are reported through the events still running).
            self._abandon.join(None)
            self._abandon.close()
            self._ctx.bus.flush(_RELEASE_WAIT)
            self._ctx.scheduler.stop(_RELEASE_WAIT)
            self._ctx.bus.stop(_RELEASE_WAIT)
            listener = self._ctx.breaker_listener
            if listener is not None:
                for breaker in self._ctx.breakers.values():
                    breaker.unlisten(listener)
            _live_trees.discard(self)
        finally:
            self._released.set()

    @property
    def abandoned(self) -> tuple[str, ...]:
        """The names of the tree's threads (greenlets) that outlived their kill and still run.

        Each was reported once (a warning, a ``ThreadAbandoned`` event, a journal row); it
        runs on in the background until it returns or the process exits. Empty once each
        has returned.
        """
        return self._abandon.still_running()

    def follow_breaker(self, breaker: Breaker) -> None:
        """``breaker`` joined the tree's breakers (a reload added it): its transitions are
        published, journaled and counted as those of the breakers it started with."""
        listener = self._ctx.breaker_listener
        if listener is not None:
            breaker.listen(listener)

    def kill(self, timeout: float | None = 0.0) -> bool:
        """Force the stop: kill every child now instead of waiting for its grace.

        Use it after ``stop`` when waiting is not an option (a second Ctrl-C). It sends the
        kill and, by default, returns at once; with ``timeout`` (None: as long as it takes) it
        waits as ``stop`` does. True when the tree has ended, its threads with it (as
        ``stop``'s answer); False while it has not (``wait_ended`` waits for its root).
        In gevent's hub it sends the kill and returns False at once, as ``stop`` does there.
        """
        timeout = _seconds(timeout, "kill")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.ended:
            with self._stop_lock:
                self._stopped = True
            with contextlib.suppress(pykka.ActorDeadError):
                self._root.actor_ref.tell(Command(Op.KILL, (), pykka.ThreadingFuture()))
        if _in_hub(self.runtime):
            return False
        if not self._ctx.tracker.ended.wait(_left(deadline)):
            return False
        return self._wait_released(deadline)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the tree; once the block is left, it has ended, and what it could not end is said.

        The graceful stop gets ``exit_timeout`` seconds (30; None: no limit): what has not
        stopped by then is named in a warning and killed, as ``kill()`` does. So the root
        has ended when the block is left, a few seconds past ``exit_timeout`` at most (a
        thread a kill cannot reach is abandoned ``KILL_GRACE`` after its kill: see
        ``abandoned``); a root that even its kill did not end in ``_KILL_WAIT`` is said in
        an error. A ``KeyboardInterrupt`` during the stop (a second Ctrl-C) kills at once
        instead of waiting out a grace, and goes on up.
        """
        try:
            if self.stop(self.exit_timeout) or self.ended:
                return
            self._kill_leftovers(self.exit_timeout)
        except KeyboardInterrupt:
            log.warning("interrupted while the tree stopped: killing every child now")
            self.kill()
            with contextlib.suppress(KeyboardInterrupt):  # one more: stop waiting at all
                self.stop(_KILL_WAIT)
            raise

    def _kill_leftovers(self, waited: float | None) -> None:
        """After a graceful stop out of time: name what still runs, kill it, wait for the end."""
        running = self._still_running()
        one = len(running) == 1
        log.warning(
            "leaving the with block: the tree did not stop within {} (still running: {}); "
            "killing {} now. To let a slow stop finish, call tree.stop(timeout) with a longer "
            "timeout before the block ends (or set tree.exit_timeout), or give {} a shorter "
            "stop grace",
            "its timeout" if waited is None else f"{waited:g}s",
            ", ".join(running) or "its supervisors",
            "it" if one else "them",
            "that job" if one else "those jobs",
        )
        self.kill()
        if not self.stop(_KILL_WAIT) and not self.ended:
            log.error(
                "leaving the with block: the tree has not ended {}s after its kill; it is left "
                "as it is (tree.ended is False)",
                f"{_KILL_WAIT:g}",
            )

    def _still_running(self) -> list[str]:
        """``path (state)`` of each job or actor the stop has not ended yet, as far as known."""
        try:
            doc = self.status(timeout=_STATUS_WAIT)
        except Exception:  # the root is busy or ended meanwhile: its kill comes all the same
            return []
        from supervision._table import flatten_status  # noqa: PLC0415 - only on a late stop

        return [
            f"{node['path']} ({node['state']})"
            for node in flatten_status(doc)
            if node.get("kind") != "group" and node.get("state") in _RUNNING_STATES
        ]

    # -- plumbing --------------------------------------------------------------------------------

    def _command(self, op: Op, path: str, arg: Any = None, timeout: float = COMMAND_TIMEOUT) -> Any:
        return self._answer(op, path, self._send(op, path, arg), timeout)

    def _send(self, op: Op, path: str, arg: Any = None) -> pykka.Future[Any]:
        if self.ended:
            raise TreeStoppedError(
                f"the tree has stopped; cannot {op.value} {_meant(op, path, arg)}"
            )
        method, param = _METHODS[op]
        parts = child_path(path, method, param=param, empty=op in {Op.ADD, Op.STATUS, Op.UPDATE})
        if _in_hub(self.runtime):  # its answer would be waited for: nothing is asked
            raise _hub_refusal(f"Tree.{method}({path!r})" if path else f"Tree.{method}()")
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        try:
            self._root.actor_ref.tell(Command(op, parts, future, arg))
        except pykka.ActorDeadError:
            raise TreeStoppedError(
                f"the tree has stopped; cannot {op.value} {_meant(op, path, arg)}"
            ) from None
        return future

    def _answer(self, op: Op, path: str, future: pykka.Future[Any], timeout: float | None) -> Any:
        """``future``'s answer, or an ``ActionTimeoutError`` (never pykka's own ``Timeout``)."""
        try:
            return future.get(timeout=timeout)
        except pykka.Timeout:
            method = _METHODS[op][0]
            if op in _CHILD_STOPS:
                doing = _CHILD_STOPS[op]
                raise ActionTimeoutError(
                    f"{method}({path!r}): {doing} after {timeout:g}s (a stop waits up to the "
                    "child's stop grace, then kills it); it goes on: tree.status() shows it, "
                    "or pass a longer timeout (None: as long as it takes)"
                ) from None
            raise ActionTimeoutError(
                f"{method}({path!r}): the tree's supervisor did not answer within {timeout:g}s "
                "(busy, or stuck: see the log); what was asked may still be done, as "
                "tree.status() will show"
            ) from None

    def _act(self, op: Op, path: str, timeout: float | None) -> Any:
        """A stop, restart or removal of a child: its answer once the supervisor has taken it
        (``timeout`` 0), or once done, within ``timeout``."""
        future = self._send(op, path)
        if timeout != 0:
            return self._answer(op, path, future, timeout)
        # A reference asked for after it takes the same way down the groups, each taking its
        # messages in order: once it is answered, the child's own supervisor has taken the
        # action. Answered by then: at once (a refusal, nothing to stop); else under way.
        with contextlib.suppress(Exception):
            self._answer(Op.REF, path, self._send(Op.REF, path), COMMAND_TIMEOUT)
        try:
            return future.get(timeout=0)
        except pykka.Timeout:
            return None


def _in_hub(runtime: str) -> bool:
    """Whether the caller runs in gevent's hub greenlet, where nothing may wait (a wait raises
    gevent's ``BlockingSwitchOutError``): a plain ``signal.signal`` handler runs there when
    its signal comes while the main greenlet waits."""
    if runtime != "gevent":
        return False
    import gevent  # noqa: PLC0415 - loaded whenever a tree runs under gevent
    from gevent.hub import Hub  # noqa: PLC0415

    # Not ``is get_hub()``: that makes a hub for a native thread that has none.
    return isinstance(gevent.getcurrent(), Hub)


def _hub_refusal(call: str) -> InHubError:
    return InHubError(
        f"{call} was called in gevent's hub, where nothing may wait (a signal.signal handler "
        "runs there under the gevent runtime): install the handler with "
        "gevent.signal_handler(signum, handler), which runs it in a greenlet of its own; "
        "tree.stop() works in either (in the hub it begins the stop and returns False)"
    )


@overload
def _seconds(timeout: object, method: str) -> float | None: ...
@overload
def _seconds(timeout: object, method: str, *, none: Literal[False]) -> float: ...
def _seconds(timeout: object, method: str, *, none: bool = True) -> float | None:
    """A ``Tree`` method's ``timeout``, checked before anything is asked: seconds >= 0, or None
    (as long as it takes) where the method takes it; more than a wait can take is None there.

    A string or None given to another one had failed inside, with a bare ``TypeError`` (a
    ``stop_child`` after the stop was sent).
    """
    if timeout is None and none:
        return None
    if isinstance(timeout, numbers.Real) and not isinstance(timeout, bool):  # numpy's too
        seconds = float(timeout)
        if seconds >= 0:  # not NaN
            if seconds <= threading.TIMEOUT_MAX:
                return seconds
            return None if none else threading.TIMEOUT_MAX
    expected = "seconds >= 0" + (" or None (as long as it takes)" if none else "")
    raise SpecError(
        f"Tree.{method}: timeout: expected {expected}, got {timeout!r} ({a_kind(timeout)})",
        field="timeout",
        expected=expected,
        got=kept(timeout, repr(timeout)),
    )


_CHILD_TYPES = (JobSpec, ActorSpec, SupervisorSpec)
# What a child action waited out of time was still doing.
_CHILD_STOPS = {
    Op.STOP: "the child is still stopping",
    Op.RESTART: "the child is still restarting (stopping, or starting again)",
    Op.REMOVE: "the child is still stopping (it is removed once stopped)",
}


def _meant(op: Op, path: str, arg: Any) -> str:
    """What a refused command was about: an added child's own path, not its group's."""
    if op is Op.ADD and isinstance(arg, tuple) and arg:
        name = getattr(arg[0], "name", None)
        if isinstance(name, str):
            path = f"{path.strip('/')}/{name}".lstrip("/")
    return repr(path)


_METHODS = {
    Op.STATUS: ("status", "path"),
    Op.REF: ("ref", "path"),
    Op.RESTART: ("restart", "path"),
    Op.STOP: ("stop_child", "path"),
    Op.START: ("start_child", "path"),
    Op.SIGNAL: ("signal", "path"),
    Op.ADD: ("add_child", "under"),
    Op.UPDATE: ("update_group", "path"),
    Op.AUTOSTART: ("set_autostart", "path"),
    Op.REMOVE: ("remove_child", "path"),
}
# Leaving a with block late: how long the kill may take to end the root (a thread's is
# abandoned KILL_GRACE after it), and how long to ask for the names of what still runs.
_KILL_WAIT = KILL_GRACE + 5.0
_STATUS_WAIT = 2.0
# How long the release of an ended tree waits for its events to be delivered, and for its
# timer and event threads to end (a subscriber that blocks must not hold it for ever).
_RELEASE_WAIT = 5.0
_RUNNING_STATES = frozenset(
    s.value for s in (State.STARTING, State.RUNNING, State.WAITING, State.PROBATION, State.STOPPING)
)


def budget_change(old: SupervisorSpec, new: SupervisorSpec) -> None:
    """Refuse a change the running tree cannot take: a budget added or removed."""
    if (old.policy.budget is None) != (new.policy.budget is None):
        added = "added" if new.policy.budget is not None else "removed"
        raise SpecError(
            f"the tree's restart budget (supervisor.budget) is {added}: it is fixed when the "
            "tree starts; restart the daemon (or the tree) to apply it"
        )


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def start_tree(
    manifest_or_spec: SupervisorSpec | HasTreeSpec,
    runtime: str | None = None,
    *,
    breakers: Mapping[str, Breaker] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    rand: Callable[[], float] = random.random,
    on_event: Callable[[Event], Any] | None = None,
    sink: Callable[[Event], None] | None = None,
    cooldowns: Mapping[str, tuple[float, int]] | None = None,
    output_dir: Path | None = None,
    succeeded: Mapping[str, tuple[int | None, float]] | None = None,
    mask: Callable[[str], str] | None = None,
    last_ticks: Mapping[str, float] | None = None,
) -> Tree:
    """Start the tree a manifest (or a ``SupervisorSpec``) describes and return its handle.

    Children start in order in the background; ``Tree.started()`` waits for
    that and ``Tree.wait()`` for the finite jobs to settle. Anything but a
    ``Manifest`` (``load_manifest``) or a ``SupervisorSpec`` is a ``SpecError``.
    ``runtime`` defaults to the one the process installed
    (``actors.install_runtime``; threads when none was); one that does not
    match it is a ``RuntimeSetupError``, and so is a manifest's ``runtime:
    gevent`` in a process that was not patched for it. Its records go where
    ``configure_logging`` sends them; with no logbook handler at all, to the
    standard library's ``logging`` (see ``supervision._logging``).
    ``breakers`` defaults to fresh breakers built from the manifest's
    ``breakers`` section. ``on_event`` subscribes before the first child
    starts, so it misses nothing; ``sink`` (a journal's ``record``) gets
    every attempt and decision event inline, without the event thread's hop,
    and must never block (a sink with an ``event_types`` attribute, like
    ``Journal.record``, gets only those kinds, and no other is even built for
    it; one with an ``on_state(path, old, new)`` method gets every state change
    through it, without an event; one with a true ``numbers_events`` has every event
    numbered, ``subscribe_numbered``, a counter the only cost of one nobody takes);
    ``monotonic``, ``wall`` and ``rand``
    replace the clocks and the jitter source (tests make them exact; a
    ``monotonic`` with an ``attach(wake)`` method, such as a test's manual
    clock, is handed the scheduler's ``wake`` so that moving it fires timers).
    With ``output_dir`` the command output of each job whose spec keeps it
    (``JobSpec.output``) also goes to ``output_dir/PATH.log``.
    ``succeeded`` (what ``run --resume`` found in the journal) maps the paths
    of once-jobs that succeeded in an earlier run to that success's ``(code,
    at)``: each stays in the tree and its status, settled as succeeded with
    that exit and never started (a job depending on it starts at once).
    ``last_ticks`` (what a daemon or ``run`` found in the journal) maps the paths of
    ``persistent`` periodic jobs to their last tick's start (wall time): at its first start
    such a job runs a tick it missed since at once, or goes on from it (see
    ``actors._job.missed_tick``); without it a persistent job has nothing to go by and
    starts as any periodic job.
    ``mask`` hides secrets in the status and the output files (default: the
    manifest's ``secrets``); a daemon passes its own masker, which a reload adds
    the new manifest's secrets to. A ``SecretMasker``'s ``mask`` also keeps each
    secret whole where a command's long line is logged in parts (any other mask
    cannot say where its secrets are).
    """
    spec = _tree_spec(manifest_or_spec)
    runtime = _runtime(manifest_or_spec, runtime)
    if breakers is None:
        specs: Mapping[str, BreakerSpec] = getattr(manifest_or_spec, "breakers", {}) or {}
        breakers = build_breakers(specs, monotonic)
    _check_given(breakers, on_event, sink)
    _check_spec(spec, breakers, runtime)  # before the bus: a refused tree leaves no thread
    if _runs_commands(spec.children):
        # Before any command's spawn, not by the first one: a jobvisor killed while the
        # warden starts (milliseconds) left the commands spawned meanwhile running.
        WARDEN.start()
    tree_started(manifest_or_spec)
    tree_id = f"t{next(_tree_ids)}"
    # Real time, not ``monotonic``: the bus only sums up a broken subscriber's log lines,
    # which a test's clock that stands still would hold for ever.
    bus = EventBus(numbered=bool(getattr(sink, "numbers_events", False)))
    if on_event is not None:
        bus.subscribe(on_event)

    sink_kinds = getattr(sink, "event_types", None)
    sink_failed = SinkFailures()
    publish = _breaker_publisher(bus, sink, sink_kinds, wall, sink_failed)
    for breaker in breakers.values():
        breaker.listen(publish)
    scheduler = _scheduler(monotonic)
    if mask is None:
        mask = _masker(manifest_or_spec)
    context = TreeContext(
        scheduler=scheduler,
        bus=bus,
        tracker=Tracker(),
        tree_id=tree_id,
        monotonic=monotonic,
        wall=wall,
        rand=rand,
        dead_letter=_dead_letter,
        breakers=breakers,
        breaker_listener=publish,
        mask=mask,
        output=None if output_dir is None else OutputFiles(output_dir, mask),
        cut=_line_cut(mask),
        sink=sink,
        sink_kinds=sink_kinds,
        state_hook=getattr(sink, "on_state", None),
        failure_hook=getattr(sink, "on_failure", None),
        restart_hook=getattr(sink, "on_restart", None),
        tick_hook=getattr(sink, "on_tick", None),
        sink_failed=sink_failed,
        cooldowns=cooldowns or {},
        last_ticks=dict(last_ticks or {}),  # the tree's own: its supervisors take from it
        succeeded=succeeded or {},
        budget=TreeBudget(spec.policy, monotonic) if spec.policy.budget is not None else None,
    )
    tree_begins(tree_id, spec.name)  # its records' damper is kept from now until its root ends
    try:
        tree = Tree(spec, runtime, context)
    except BaseException:
        tree_stopped(tree_id)
        raise
    _live_trees.add(tree)
    return tree


def _breaker_publisher(
    bus: EventBus,
    sink: Callable[[Event], None] | None,
    sink_kinds: frozenset[type[Event]] | None,
    wall: Callable[[], float],
    sink_failed: SinkFailures,
) -> Callable[[str, BreakerState, BreakerState], None]:
    """What a breaker calls as it changes state: a ``BreakerChanged`` to the bus and the sink."""
    breaker_sink = sink if sink_kinds is None or BreakerChanged in sink_kinds else None

    def publish(name: str, old: BreakerState, new: BreakerState) -> None:
        if bus.active or breaker_sink is not None:
            event = BreakerChanged(path="", at=wall(), name=name, old=old.value, new=new.value)
            if breaker_sink is not None:
                try:
                    breaker_sink(event)
                except Exception as exc:
                    sink_failed(breaker_sink, event, exc)
            if bus.active:
                bus.publish(event)
                return
        if bus.numbered is not None:
            bus.passed()

    return publish


def _tree_spec(manifest_or_spec: object) -> SupervisorSpec:
    """The root's spec, or a ``SpecError`` that says what was given and what to do instead."""
    if isinstance(manifest_or_spec, SupervisorSpec):
        return manifest_or_spec
    tree_spec = getattr(manifest_or_spec, "tree_spec", None)
    spec = tree_spec() if callable(tree_spec) else None
    if isinstance(spec, SupervisorSpec):
        return spec
    from collections.abc import Mapping  # noqa: PLC0415 - only a refusal needs it at run time

    given = manifest_or_spec
    what = a_kind(given)
    if isinstance(given, str | PurePath):
        what += ": load it with load_manifest(path_or_text) first"
    elif isinstance(given, Mapping):
        what += ": load it with load_manifest(mapping) first, which takes a parsed one"
    elif isinstance(given, JobSpec | ActorSpec):
        what += ": put it in one, SupervisorSpec(children=(spec,))"
    elif spec is not None:
        what += f" whose tree_spec() gave {spec!r}"
    raise SpecError(f"start_tree takes a Manifest or a SupervisorSpec; got {what}")


def _runtime(manifest_or_spec: object, named: str | None) -> str:
    """The runtime to run under: ``named``, else the process's, which a manifest's gevent needs.

    A manifest's ``runtime: threads`` (its default) yields to a process patched by gevent,
    as the manifest yields to ``--runtime`` on the command line; its ``gevent`` cannot be
    had by a process that was not patched before anything else was imported.
    """
    if named is None:
        named = active_runtime()
        if getattr(manifest_or_spec, "runtime", None) == "gevent" and named != "gevent":
            raise RuntimeSetupError(
                "the manifest says runtime: gevent, but this process runs threads (it was not "
                "monkey-patched by gevent): call actors.install_runtime('gevent') first thing in "
                "your program, before importing anything else, or remove runtime: from the "
                "manifest, or pass runtime='threads' to start_tree"
            )
    check_runtime(named)
    return named


def _scheduler(monotonic: Callable[[], float]) -> Scheduler:
    scheduler = Scheduler(monotonic)  # it logs a failed callback itself, naming it
    attach = getattr(monotonic, "attach", None)
    if attach is not None:  # a clock a test moves by hand: moving it must fire what is due
        attach(scheduler.wake)
    return scheduler


def build_breakers(
    specs: Mapping[str, BreakerSpec], monotonic: Callable[[], float] = time.monotonic
) -> dict[str, Breaker]:
    """One ``Breaker`` per spec, logging every transition; a tree also publishes them."""

    def logged(name: str, old: BreakerState, new: BreakerState) -> None:
        del old
        level = log.warning if new is BreakerState.OPEN else log.info
        level("breaker {} {}", name, _BREAKER_WORDS[new])

    return {
        name: Breaker(
            name,
            failure_threshold=spec.failure_threshold,
            reset_timeout=spec.reset_timeout,
            half_open_max_calls=spec.half_open_max_calls,
            clock=monotonic,
            on_change=logged,
        )
        for name, spec in specs.items()
    }


_BREAKER_WORDS = {
    BreakerState.OPEN: "opened: its jobs wait and make no calls",
    BreakerState.HALF_OPEN: "half-opened: letting a trial call through",
    BreakerState.CLOSED: "closed: calls flow again",
}


def _check_given(breakers: object, on_event: object, sink: object = None) -> None:
    """Refuse ``start_tree``'s other arguments at once: a list of breakers had failed deep
    inside (an ``AttributeError``), a subscriber or sink that cannot be called at every event."""
    if not isinstance(breakers, abc.Mapping) or not all(
        isinstance(name, str) and isinstance(breaker, Breaker) for name, breaker in breakers.items()
    ):
        raise SpecError(
            "start_tree: breakers: expected a mapping of names to Breakers (build_breakers "
            f"makes one), got {a_kind(breakers)}",
            field="breakers",
            expected="a mapping of names to Breakers",
            got=a_kind(breakers),
        )
    if on_event is not None:
        need_subscriber(on_event, "start_tree", "on_event")
    if sink is not None:
        need_subscriber(sink, "start_tree", "sink")


def _check_spec(spec: SupervisorSpec, breakers: Mapping[str, Breaker], runtime: str) -> None:
    """Refuse what cannot run: a job naming an unknown breaker, Ray placement it cannot have,
    processes whose exits the system would reap unread."""
    check_known_dependencies(spec)
    _check_children(spec, breakers, runtime)
    if runtime == "threads" and reaped_unread() and _runs_processes(spec.children):
        raise RuntimeSetupError(REAPED_UNREAD)


def _check_children(spec: SupervisorSpec, breakers: Mapping[str, Breaker], runtime: str) -> None:
    for child in spec.children:
        if isinstance(child, SupervisorSpec):
            _check_children(child, breakers, runtime)
        elif isinstance(child, JobSpec) and child.breaker and child.breaker not in breakers:
            known = ", ".join(sorted(breakers)) or "none are declared"
            raise SpecError(
                f"job {child.name}: unknown breaker {child.breaker!r} ({known}): declare it, "
                "start_tree(spec, breakers={name: Breaker(...)}) or a manifest's breakers:"
            )
        if isinstance(child, JobSpec | ActorSpec) and child.placement != "local":
            check_placeable(
                f"{'actor' if isinstance(child, ActorSpec) else 'job'} {child.name}", runtime
            )


def _runs_commands(children: tuple[Any, ...]) -> bool:
    """Whether a job among ``children`` (at any depth) runs commands here, each registered with
    the command warden: a command, a python job isolated in a process, placed nowhere else."""
    for child in children:
        if isinstance(child, SupervisorSpec):
            if _runs_commands(child.children):
                return True
        elif (
            isinstance(child, JobSpec)
            and child.placement == "local"
            and (child.kind == "command" or getattr(child.work, "isolation", "thread") == "process")
        ):
            return True
    return False


def _runs_processes(children: tuple[Any, ...]) -> bool:
    """Whether a job among ``children`` (at any depth) starts processes whose exit it reads.

    Commands, python jobs isolated in a process, and command readiness checks.
    """
    for child in children:
        if isinstance(child, SupervisorSpec):
            if _runs_processes(child.children):
                return True
        elif isinstance(child, JobSpec) and (
            child.kind == "command"
            or getattr(child.work, "isolation", "thread") == "process"
            or getattr(child.ready, "command", None) is not None
        ):
            return True
    return False


def _masker(source: object) -> Callable[[str], str]:
    secrets = getattr(source, "secrets", None)
    if not secrets:
        return str
    from supervision._secrets import SecretMasker  # noqa: PLC0415 - only manifests with secrets

    return SecretMasker(secrets).mask


def _line_cut(mask: Callable[[str], str]) -> LineCut | None:
    """The masker behind ``mask`` (a ``SecretMasker``'s ``mask``), which also says where a
    command's long line may be cut without splitting a secret; None for any other mask."""
    masker = getattr(mask, "__self__", None)
    return masker if callable(getattr(masker, "safe_cut", None)) else None


def _dead_letter(path: str, message: Any) -> None:
    log.warning("{}: message {!r} was not delivered: the child stopped for good", path, message)


@atexit.register
def _stop_live_trees() -> None:
    # Actor threads are daemons (see SupervisedActor); stop what the program left running
    # gracefully instead of letting the interpreter cut it off. A Ctrl-C meanwhile does what
    # it does in a with block: kill at once, said in one line, not a traceback of atexit's.
    trees = list(_live_trees)
    try:
        for tree in trees:
            if not tree.stop(timeout=10.0) and not tree.ended:
                tree.kill(_KILL_WAIT)
    except KeyboardInterrupt:
        log.warning(
            "interrupted while the exit stopped the trees left running: killing every child now"
        )
        with contextlib.suppress(KeyboardInterrupt):  # one more: stop waiting at all
            for tree in trees:
                tree.kill()
            for tree in trees:
                tree.kill(_KILL_WAIT)
    placed = sys.modules.get("actors._ray")
    if placed is not None:  # after the trees: their placed children have stopped by now
        placed.shutdown()
