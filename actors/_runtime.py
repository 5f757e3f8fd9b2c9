"""Runtimes (threads, gevent): how work is scheduled later and how it is interrupted.

Under ``gevent`` the process is monkey-patched first, so pykka's
``ThreadingActor`` threads become greenlets and every lock, queue and timer
below cooperates with the hub; the code is the same for both runtimes.
"""

from __future__ import annotations

import ctypes
import functools
import heapq
import itertools
import queue
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Self

import pykka

from actors._errors import NoThreadError, RuntimeSetupError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "KILL_GRACE",
    "RUNTIMES",
    "DueKill",
    "NoThreadError",
    "Scheduler",
    "TimerHandle",
    "abandoned",
    "active_runtime",
    "current_task",
    "install_runtime",
    "interrupt_later",
    "interrupt_task",
    "join_tasks",
    "kill_age",
    "live_tasks",
    "os_lock_type",
    "start_or_say",
    "start_task",
    "start_thread",
    "watch_kills",
]

RUNTIMES: Final = ("threads", "gevent")
_COMPACT_MIN: Final = 64  # below this many cancelled entries a rebuild is not worth it
KILL_GRACE: Final = 1.0  # how long a killed task may take to unwind before it is abandoned


_patched = False  # once patched, a process stays patched: remember it (hot paths ask)
# gevent.monkey's record of what it patched, once gevent is loaded: a dict lookup answers then,
# where importing monkey and asking it cost 0.7 µs, several times per restart.
_monkey_saved: dict[str, Any] | None = None


def _gevent_patched() -> bool:
    global _patched, _monkey_saved  # noqa: PLW0603 - a one-way latch and a lookup kept
    if _patched:
        return True
    saved = _monkey_saved
    if saved is None:
        if "gevent" not in sys.modules:
            return False
        from gevent import monkey  # noqa: PLC0415 - only when gevent is already loaded

        saved = _monkey_saved = monkey.saved
    _patched = "threading" in saved  # what monkey.is_module_patched("threading") looks up
    return _patched


def install_runtime(name: str) -> None:
    """Prepare this process for runtime ``name``; call it before anything else.

    ``gevent`` monkey-patches the whole process, so it must run before the
    modules that create threads, locks or sockets are used (once jobvisor has
    started a thread it is refused, ``RuntimeSetupError``); ``threads`` needs
    nothing. Calling it twice is harmless.
    """
    if name not in RUNTIMES:
        raise RuntimeSetupError(f"unknown runtime {name!r}: expected one of {', '.join(RUNTIMES)}")
    if name == "gevent" and not _gevent_patched():
        if _threads_started:
            raise RuntimeSetupError(
                "install_runtime('gevent') comes too late: jobvisor has started threads in this "
                "process (a tree, or a job's), which gevent's patching would break; call it "
                "first thing in your program, before start_tree"
            )
        from gevent import monkey  # noqa: PLC0415 - importing gevent is the patching step

        monkey.patch_all()


def active_runtime() -> str:
    """Return ``gevent`` if this process is monkey-patched, else ``threads``."""
    return "gevent" if _gevent_patched() else "threads"


def check_runtime(name: str) -> None:
    """Raise ``RuntimeSetupError`` unless the process can run runtime ``name``."""
    if name not in RUNTIMES:
        raise RuntimeSetupError(f"unknown runtime {name!r}: expected one of {', '.join(RUNTIMES)}")
    active = active_runtime()
    if name != active:
        if name == "gevent":
            raise RuntimeSetupError(
                "runtime 'gevent' needs the process monkey-patched before anything else: "
                "call actors.install_runtime('gevent') first thing in your program, "
                "or run `jobvisor --runtime gevent`"
            )
        raise RuntimeSetupError(
            "runtime 'threads' was asked for, but this process is monkey-patched by gevent: "
            "use runtime='gevent'"
        )


# Set once jobvisor has started a thread of its own: gevent's patching would break it (a lock
# it holds, a wait it is in), so install_runtime('gevent') is refused from then on.
_threads_started = False


def start_thread(thread: threading.Thread) -> None:
    """``thread.start()``, raising ``NoThreadError`` when the OS has no thread to give."""
    global _threads_started  # noqa: PLW0603 - a one-way latch
    _threads_started = True
    try:
        thread.start()
    except RuntimeError as exc:
        if not _no_thread(exc):
            raise
        raise NoThreadError from None


THREAD_TRIES: Final = 10  # a host out of tasks: tries at a thread of jobvisor's, 0.1 s apart


def start_or_say(make: Callable[[], threading.Thread], instead: str) -> threading.Thread | None:
    """Start the thread ``make`` makes; None when the host has none to give (its limit on
    tasks, ``NoThreadError``) after ``THREAD_TRIES`` tries, said in one line with ``instead``,
    what the caller does without it. A new thread each try: one whose start failed may not
    be started again."""
    for left in range(THREAD_TRIES - 1, -1, -1):
        thread = make()
        try:
            start_thread(thread)
        except NoThreadError as exc:
            if not left:
                import logbook  # noqa: PLC0415 - as the Scheduler's: install_runtime may not have run

                logbook.Logger("actors.runtime").warning("{}: {}; {}", thread.name, exc, instead)
                return None
            time.sleep(0.1)
        else:
            return thread
    return None


def _no_thread(exc: RuntimeError) -> bool:
    # CPython says "can't start new thread" for any failure of pthread_create (EAGAIN,
    # ENOMEM); anything else (starting a thread twice) is a caller's bug, not the host's.
    return "can't start new thread" in str(exc)


def current_task() -> Any:
    """Return a handle for the running thread (or greenlet) for ``interrupt_task``."""
    if _gevent_patched():
        import gevent  # noqa: PLC0415 - gevent is loaded whenever this branch runs

        return gevent.getcurrent()
    return threading.current_thread()


def task_slot(task: Any) -> int:
    """Which of ``task``'s tasks runs now: a pooled thread runs one after another."""
    return task._slot if isinstance(task, _Task) else 0


# Greenlets started by ``start_task``; dead ones drop out by themselves.
_greenlets: weakref.WeakSet[Any] = weakref.WeakSet()


def start_task(target: Callable[[], object], name: str, *, reuse: str | None = None) -> None:
    """Run ``target`` in a new daemon thread named ``name``, or a greenlet under gevent.

    Under gevent a bare greenlet, not a ``threading.Thread``: a patched thread
    is a greenlet plus a Thread object, its locks and a start handshake, and
    that came to half the cost of a restart. Each call gets a fresh task, so
    nothing thread- or greenlet-local survives into the next one, except with
    ``reuse``: the caller promises that ``target`` runs only jobvisor's own code
    (a command's incarnation, never a user's Python), and under threads it may
    then run on an idle thread of the pool ``reuse`` names (see ``_Task``), which
    that thread joins again when ``target`` returns. ``join_tasks(reuse)``
    retires the pool.
    Daemon threads: Python 3.11 scans every live non-daemon thread on each
    ``Thread.start()``, which made starts quadratic in the number of actors;
    trees are stopped gracefully at exit by their atexit hook instead.
    """
    if _gevent_patched():
        from gevent import get_hub  # noqa: PLC0415 - gevent is loaded whenever this branch runs

        hub = get_hub()
        task = _task_greenlet()(_run_greenlet, hub)
        task.name = name
        _greenlets.add(task)
        hub.loop.run_callback(task.switch, target, name)
        return
    if reuse is not None:
        worker, handed = None, False
        try:
            with _pool_lock:
                idle = _idle.get(reuse)
                worker = idle.pop() if idle else None
            if worker is not None:
                worker._name = name
                worker._handoff.put(target)
                handed = True
                return
        except BaseException:
            # A Kill landed here (a supervisor being killed): the thread taken must not wait
            # for a task that never comes. At worst it gets this one and then ends.
            if worker is not None and not handed:
                worker._handoff.put(None)
            raise
    task = _Task(target, name, reuse)
    if reuse is not None:
        with _pool_lock:
            _members.setdefault(reuse, set()).add(task)
    try:
        start_thread(task)
    except BaseException:
        if reuse is not None:
            _leave(reuse, task)  # it never ran: its pool must not count (nor wait for) it
        raise


# -- threads that run one command incarnation after another ----------------------------------------
#
# Waking a waiting thread costs less than starting an OS thread and ending it (``clone3``, its
# stack, signal masks, the Thread object): 0-17% of the daemon's CPU per command restart
# (``bench/README.md``, issue 15, fifth pass). A command incarnation runs no Python of the
# user's, so its thread may serve the next one: nothing of a user's is thread-local to it.

IDLE_SECONDS: Final = 10.0  # an idle thread ends after this long without a task
MAX_IDLE: Final = 8  # idle threads kept per pool; more end at once

_pool_lock = threading.Lock()
_members: dict[str, set[_Task]] = {}  # pool -> its threads, busy or idle; an ended one leaves
_idle: dict[str, list[_Task]] = {}  # pool -> its idle threads, the last to park first
_retired: set[str] = set()  # pools whose threads end with their task (join_tasks)


def _retire(prefix: str) -> list[_Task]:
    """End the threads of the pools named ``prefix...``: idle ones now, busy ones after their
    task; return the idle ones (just told to end)."""
    with _pool_lock:
        pools = [pool for pool in _members if pool.startswith(prefix)]
        _retired.update(pools)
        idle = [worker for pool in pools for worker in _idle.pop(pool, [])]
        members = [worker for pool in pools for worker in _members[pool]]
    for worker in members:
        # Also to a busy one: if a hand-off to it was lost, it waits for this instead.
        worker._handoff.put(None)
    return idle


def _leave(pool: str, worker: _Task) -> None:
    """``worker`` ends: forget it, and its pool once retired and empty."""
    with _pool_lock:
        members = _members.get(pool)
        if members is not None:
            members.discard(worker)
            if not members and pool in _retired:
                del _members[pool]
                _retired.discard(pool)
                _idle.pop(pool, None)


# ``Thread.start`` without its last step, on the Pythons whose ``start`` is known (3.11, 3.12):
# there it is ``_start_new_thread(self._bootstrap, ())`` between two limbo steps. Later ones
# start a thread another way (a joinable handle), and get ``Thread.start`` as it is.
_start_new_thread: Callable[..., object] | None = (
    getattr(threading, "_start_new_thread", None) if sys.version_info < (3, 13) else None
)


class _Boot:
    """What a ``_Task``'s new thread runs: its ``_bootstrap``; and, when the thread lets go
    of it, a check that the task said it started.

    In CPython 3.11 a thread not running yet carries its starter's thread id, so a kill
    (``PyThreadState_SetAsyncExc``) aimed at a thread that is starting one can land in the new
    one, at its first bytecode: it ends before it says it started. It would then be alive and
    joinable-after-start for ever (``_Task.is_alive``/``join``), and a tree's stop would wait
    for it until its timeout. This marks it ended instead.
    """

    __slots__ = ("task",)

    def __init__(self, task: _Task) -> None:
        self.task = task

    def __call__(self) -> None:
        self.task._bootstrap()  # type: ignore[attr-defined]

    def __del__(self) -> None:
        task = self.task
        if not task._started.is_set():  # it ended before it ran: as Thread would have it
            with threading._active_limbo_lock:  # type: ignore[attr-defined]
                threading._limbo.pop(task, None)  # type: ignore[attr-defined]
            task._is_stopped = True
            task._started.set()


class _Task(threading.Thread):
    """A task's thread: its ``start`` returns without waiting for the thread to run.

    ``Thread.start`` waits for the new thread to say it runs, and that thread
    then keeps the GIL until it first blocks: the starter's turn goes on only
    after two GIL hand-offs and the whole setup of the new incarnation. Not
    waiting lets the supervisor finish its turn first; that is about 15% of a
    restart cycle, and half of the daemon's context switches per restart of a
    command (``bench/README.md``, issue 15, third pass).

    The thread is in ``threading.enumerate()`` from ``start`` on (``Thread``'s
    own limbo step), and ``is_alive``/``join`` treat a thread started but not
    running yet as alive, where ``Thread``'s would say not alive / refuse to join.
    """

    _launched = False

    _pool: str | None = None
    _slot = 0  # counts the tasks a pooled thread ended: a kill names the one it is for
    _kill_sent = False

    def __init__(self, target: Callable[[], object], name: str, pool: str | None = None) -> None:
        if pool is not None:
            # When ``target`` returns, the thread waits for the next task of ``pool`` instead
            # of ending, unless it was killed meanwhile (see ``_park``). A thread of its own
            # (an actor's) needs none of this: it makes no queue and no lock on every restart.
            self._pool = pool
            self._handoff: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
            self._slot_lock = threading.Lock()
        if _start_new_thread is None:
            super().__init__(target=target, name=name, daemon=True)
            return
        # Thread.__init__ of 3.11/3.12 for a named daemon thread, with a LazyEvent for its
        # started flag: nobody waits on it (start does not), so no Condition is built.
        self._target = target
        self._name = name
        self._args = ()
        self._kwargs: dict[str, Any] = {}
        self._daemonic = True
        self._ident = None
        self._native_id = None
        self._tstate_lock = None
        self._started = LazyEvent()
        self._is_stopped = False
        self._initialized = True
        self._stderr = sys.stderr
        self._invoke_excepthook = threading._make_invoke_excepthook()  # type: ignore[attr-defined]
        threading._dangling.add(self)  # type: ignore[attr-defined]

    def start(self) -> None:
        if _start_new_thread is None:
            super().start()
            return
        limbo_lock: Any = threading._active_limbo_lock  # type: ignore[attr-defined]
        limbo: dict[Any, Any] = threading._limbo  # type: ignore[attr-defined]
        with limbo_lock:
            limbo[self] = self
        self._launched = True
        try:
            _start_new_thread(_Boot(self), ())
        except Exception:
            self._launched = False
            with limbo_lock:
                limbo.pop(self, None)  # the _Boot let go of may have taken it out already
            raise

    def run(self) -> None:
        target: Callable[[], object] | None = self._target
        del self._target  # as Thread.run does: the thread must not keep its first task alive
        pool = self._pool
        if pool is None:
            if target is not None:
                target()
            return
        try:
            while target is not None:
                try:
                    target()
                finally:
                    target = None
                target = self._park()
        except BaseException:
            if not self._kill_sent:
                raise
            # A kill meant for the task that just ended landed between two of our lines: the
            # thread ends (it would have anyway), without a traceback for nothing.
        finally:
            _leave(pool, self)

    def _park(self) -> Callable[[], object] | None:
        """Wait in the pool for the next task; None: the thread ends.

        A kill landing in here ends the thread (see ``run``): it was sent for the
        task that just ended, and ``_kill_sent`` keeps the thread out of the pool.
        """
        pool = self._pool
        assert pool is not None
        with self._slot_lock:
            self._slot += 1  # a kill sent for the task that just ended no longer applies
            killed = self._kill_sent
        if killed:
            return None
        with _pool_lock:
            idle = _idle.setdefault(pool, [])
            if pool in _retired or len(idle) >= MAX_IDLE:
                return None
            self._name = f"{pool}(idle)"
            idle.append(self)
        try:
            return self._handoff.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            with _pool_lock:
                if self in idle:
                    idle.remove(self)
                    return None
        # Taken as the wait ran out: its task is on its way (start_task puts it right after
        # taking the thread, or None if it was interrupted), or the pool is retired (None).
        return self._handoff.get()

    def is_alive(self) -> bool:
        if self._launched and not self._started.is_set():
            return True
        return super().is_alive()

    def join(self, timeout: float | None = None) -> None:
        started: LazyEvent = self._started
        if self._launched and not started.is_set():
            deadline = None if timeout is None else time.monotonic() + timeout
            if not started.wait(timeout):
                return
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
        super().join(timeout)


class LazyEvent:
    """``threading.Event``'s interface, with its ``Condition`` made only when somebody waits.

    Every incarnation has events nobody waits on (pykka's ``actor_stopped``, its thread's
    started flag), and ``threading.Event()`` builds a ``Condition`` in Python: about 2 µs
    each, on every restart. Here a plain lock guards the flag, and ``wait`` makes the
    condition the first time it blocks. The lock and condition are ``threading``'s at the
    time they are made, so under gevent they are gevent's.
    """

    __slots__ = ("_cond", "_flag", "_guard")

    def __init__(self) -> None:
        self._flag = False
        self._cond: threading.Condition | None = None
        self._guard = threading.Lock()

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set  # noqa: N815 - threading.Event's old name, kept as it keeps it

    def set(self) -> None:
        with self._guard:
            self._flag = True
            cond = self._cond
        if cond is not None:  # None: nobody waits, and a waiter that comes sees the flag
            with cond:
                cond.notify_all()

    def clear(self) -> None:
        with self._guard:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        with self._guard:
            cond = self._cond
            if cond is None:
                cond = self._cond = threading.Condition(threading.Lock())
        with cond:
            # set() takes cond after setting the flag: checked under cond, no wake-up is lost.
            if not self._flag:
                cond.wait(timeout)
            return self._flag

    def _at_fork_reinit(self) -> None:
        self._guard = threading.Lock()
        self._cond = None


@functools.cache
def os_lock_type() -> Callable[[], Any]:
    """The OS's lock, also under gevent, whose patched ``threading.Lock`` is pure Python.

    For a lock held only around work that never yields to gevent's hub (no wait, no
    cooperative I/O): no greenlet can then find it held by another of its own thread, so
    the OS's lock cannot block a hub. About 2 µs less per acquire under gevent; the command
    attempt's (``_Child.lock``), the warden's and a restart-in-place permit's are taken on
    every restart.
    """
    if active_runtime() == "gevent":
        from gevent import monkey  # noqa: PLC0415 - only under the gevent runtime

        return monkey.get_original("_thread", "allocate_lock")  # type: ignore[no-any-return]
    return threading.Lock


def new_event() -> Any:
    """An event made per incarnation or attempt (an actor's ``actor_stopped``, an attempt's
    ``cancelled``): a ``LazyEvent`` under threads, gevent's own ``Event`` under gevent.

    Most are set, or never set, and never waited on: under threads a ``threading.Event``
    would build a ``Condition`` for each (an attempt's was 8% of a crashing command's
    restarts in the daemon's GIL time, issue 15's fifth pass).

    gevent's ``Event`` is compiled and cheap to make, and a ``LazyEvent``'s lock would be a
    gevent lock in Python (alternated runs of the gevent restart cycle: 1.08x against 1.02x).
    """
    return threading.Event() if _gevent_patched() else LazyEvent()


def reply_future() -> pykka.Future[Any]:
    """A future for an ask's reply: pykka's ``ThreadingFuture``, on gevent's ``Event`` under gevent.

    Under gevent, ``ThreadingFuture``'s ``Condition`` is the standard library's, over an
    ``RLock`` written in Python over gevent's lock: four acquisitions and a new waiter lock
    on every ask. Everything that sets or waits on it runs in greenlets of one hub, and none
    of the future's critical sections can yield, so the hub's own ``Event`` is enough.
    """
    if _gevent_patched():
        return _hub_future_class()()
    return pykka.ThreadingFuture()


@functools.cache
def _hub_future_class() -> type[pykka.ThreadingFuture[Any]]:
    from gevent.event import Event  # noqa: PLC0415 - loaded whenever this runs (gevent)

    class _HubCondition:
        """What ``ThreadingFuture`` asks of its condition, for greenlets of one hub."""

        __slots__ = ("_event",)

        def __init__(self) -> None:
            self._event = Event()

        def __enter__(self) -> Self:
            return self

        def __exit__(self, *_exc: object) -> None:
            return None

        def wait(self, timeout: float | None = None) -> bool:
            return bool(self._event.wait(timeout))

        def notify_all(self) -> None:
            self._event.set()

    class HubFuture(pykka.ThreadingFuture[Any]):
        def __init__(self) -> None:
            pykka.Future.__init__(self)
            self._condition = _HubCondition()  # type: ignore[assignment]
            self._result = None

    return HubFuture


@functools.cache
def _task_greenlet() -> type:
    """The greenlet class of a task under gevent: a bare greenlet with a name and a ``join``.

    Not ``gevent.Greenlet``: its links, spawn-tree bookkeeping and result slots cost a third
    of a greenlet's start, and a task needs only to run, be killed (``gevent.kill`` throws
    into a bare greenlet) and be waited for.
    """
    import greenlet  # noqa: PLC0415 - gevent's own dependency, only under gevent
    from gevent.event import Event  # noqa: PLC0415

    class TaskGreenlet(greenlet.greenlet):  # type: ignore[misc]
        name = ""
        joiners: list[Any] | None = None  # Events of join() calls waiting for the end

        def join(self, timeout: float | None = None) -> None:
            if self.dead:
                return
            event = Event()
            if self.joiners is None:
                self.joiners = []
            self.joiners.append(event)
            event.wait(timeout)

        def __repr__(self) -> str:
            return f"<TaskGreenlet {self.name} {'dead' if self.dead else 'alive'}>"

    return TaskGreenlet


def _run_greenlet(target: Callable[[], object], name: str) -> None:
    import gevent  # noqa: PLC0415 - only under gevent

    try:
        _last_resort(target, name)
    finally:
        task = gevent.getcurrent()
        joiners, task.joiners = task.joiners, None
        for event in joiners or ():
            event.set()  # they run once this greenlet has ended


def _last_resort(target: Callable[[], object], name: str) -> None:
    # A Thread swallows what escapes its target; gevent's hub would rethrow it into the
    # main greenlet and end the process. Actor loops catch everything themselves: this
    # only keeps a bug there from taking every other actor down with it.
    try:
        target()
    except BaseException as exc:
        if type(exc).__name__ != "GreenletExit":  # a kill asked for: nothing to say
            sys.stderr.write(f"jobvisor: task {name} ended with {type(exc).__name__}: {exc}\n")


def live_tasks(prefix: str) -> list[Any]:
    """Threads and greenlets from ``start_task`` (or named like them) still running."""
    tasks: list[Any] = [
        t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()
    ]
    tasks.extend(g for g in list(_greenlets) if not g.dead and g.name.startswith(prefix))
    return tasks


def join_tasks(prefix: str, timeout: float | None, *, abandon: bool = False) -> list[str]:
    """Wait for the tasks named ``prefix...`` to end; return the names still running.

    With ``abandon``, a task that was killed (``interrupt_task``) is waited
    for only until ``KILL_GRACE`` after its kill: one stuck in a call a kill
    cannot reach would otherwise hold the caller for the whole ``timeout``,
    or for ever.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    for worker in _retire(prefix):
        # Just told to end, and ending at once: worth waiting for even past the deadline, or
        # a stop out of time would name an idle thread among those still running.
        worker.join(max(1.0, 0.0 if deadline is None else deadline - time.monotonic()))
    me = threading.current_thread()
    current = current_task()
    for task in live_tasks(prefix):
        if task is me or task is current:
            continue
        until = deadline
        if abandon:
            abandon_at = _abandon_at(task)
            if abandon_at is not None:
                until = abandon_at if until is None else min(until, abandon_at)
        task.join(None if until is None else max(0.0, until - time.monotonic()))
    return [t.name for t in live_tasks(prefix) if t is not me and t is not current]


def _abandon_at(task: Any) -> float | None:
    """When a join gives up on ``task``: ``KILL_GRACE`` after its kill, come or due; None: never
    killed."""
    with _kill_lock:
        abandon_at = _killed.get(task)
        due = _kills_due.get(task)
    if abandon_at is None and due is not None:
        return due + KILL_GRACE
    return abandon_at


# -- abandoning what a kill cannot end -------------------------------------------------------------
#
# A thread cannot be killed in Python: the exception ``interrupt_task`` raises in it lands at
# its next bytecode, so a thread blocked in a C call (time.sleep, a lock, a socket without a
# timeout) runs on until the call returns, and code that catches BaseException never ends.
# Such a task is abandoned KILL_GRACE after its kill: the watcher of its tree reports it, and
# ``join_tasks(..., abandon=True)`` waits no longer for it. It runs on in the background.

_kill_lock = threading.Lock()
# task -> when it is abandoned if still running (monotonic); a task's first kill sets it.
_killed: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
# task -> when a kill is due for it (monotonic): ``interrupt_later`` set it, the kill not come yet.
_kills_due: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_kill_watchers: dict[str, Callable[[Any], None]] = {}


def watch_kills(prefix: str, on_kill: Callable[[Any], None]) -> Callable[[], None]:
    """Call ``on_kill(task)`` when a task named ``prefix...`` is first killed; returns the unwatch.

    ``on_kill`` runs in the killing thread (a supervisor's, the scheduler's)
    and must not block: a tree uses it to check the task ``KILL_GRACE`` later.
    """
    with _kill_lock:
        _kill_watchers[prefix] = on_kill

    def unwatch() -> None:
        with _kill_lock:
            if _kill_watchers.get(prefix) is on_kill:
                del _kill_watchers[prefix]

    return unwatch


def abandoned(task: Any, grace: float = KILL_GRACE) -> bool:
    """True if ``task`` was killed ``grace`` or more ago and still runs.

    ``grace=0``: killed and still running, however recently (a stop that ends
    sooner than ``KILL_GRACE`` after the kill leaves it behind all the same).
    """
    age = kill_age(task)
    return age is not None and age >= grace and _alive(task)


def kill_age(task: Any) -> float | None:
    """Seconds since ``task`` was first killed (``interrupt_task``); None if it never was."""
    with _kill_lock:
        abandon_at = _killed.get(task)
    return None if abandon_at is None else time.monotonic() - (abandon_at - KILL_GRACE)


def _alive(task: Any) -> bool:
    return not task.dead if hasattr(task, "dead") else bool(task.is_alive())


def _note_kill(task: Any) -> None:
    name = getattr(task, "name", "")
    with _kill_lock:
        if task in _killed:
            return  # a second kill gives it no more time
        _killed[task] = time.monotonic() + KILL_GRACE
        told = [on_kill for prefix, on_kill in _kill_watchers.items() if name.startswith(prefix)]
    for on_kill in told:
        on_kill(task)


def interrupt_task(task: Any, exc_type: type[BaseException], slot: int | None = None) -> None:
    """Raise ``exc_type`` inside ``task`` as soon as it runs Python code again.

    ``slot``: the task's ``task_slot`` when the caller took it; a pooled thread
    that has ended that task since is left alone.

    Threads get an asynchronous exception (delivered at the next bytecode;
    a thread blocked inside C code sees it when the call returns). Greenlets
    are thrown into at once, even when parked in a cooperative wait. A task
    still running ``KILL_GRACE`` later is abandoned (see ``watch_kills``).
    """
    if _gevent_patched():
        import gevent  # noqa: PLC0415 - gevent is loaded whenever this branch runs

        if task.dead:
            return
        _note_kill(task)
        if isinstance(task, gevent.Greenlet):
            task.kill(exc_type, block=False)
        else:
            gevent.kill(task, exc_type)
        return
    if not task.is_alive():
        return
    if not isinstance(task, _Task) or task._pool is None:  # a thread that runs one task only
        _note_kill(task)
        _raise_in(task, exc_type)
        return
    with task._slot_lock:  # against the thread ending that task and taking the next meanwhile
        if slot is not None and task._slot != slot:
            return  # the task it was for has ended; the thread runs another one now
        task._kill_sent = True  # and so it ends with this task: never pooled again
        _note_kill(task)
        _raise_in(task, exc_type)


class DueKill:
    """A kill of a task to come (``interrupt_later``); ``cancel()`` it once the work ended."""

    __slots__ = ("_task", "_timer")

    def __init__(self, task: Any, timer: TimerHandle) -> None:
        self._task = task
        self._timer = timer

    def cancel(self) -> None:
        self._timer.cancel()
        with _kill_lock:
            _kills_due.pop(self._task, None)


def interrupt_later(
    scheduler: Scheduler,
    delay: float,
    task: Any,
    exc_type: type[BaseException],
    slot: int | None = None,
) -> DueKill:
    """``interrupt_task`` in ``delay`` seconds (a grace), on ``scheduler``'s thread.

    Meanwhile a join that abandons killed tasks (``join_tasks(..., abandon=True)``: a tree's
    stop) waits for this one only until ``KILL_GRACE`` after the kill is due, as if it had
    come: a task blocked in a call must not hold a stop for ever before its kill.
    """
    with _kill_lock:
        _kills_due[task] = time.monotonic() + delay

    def kill() -> None:
        with _kill_lock:
            _kills_due.pop(task, None)
        interrupt_task(task, exc_type, slot)

    return DueKill(task, scheduler.call_later(delay, kill))


def _raise_in(thread: Any, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
    )


@dataclass(eq=False, slots=True)
class TimerHandle:
    """A scheduled call; ``cancel()`` it and it will not run."""

    when: float
    callback: Callable[[], None] | None = field(repr=False)
    scheduler: Scheduler | None = field(default=None, repr=False)

    def cancel(self) -> None:
        if self.callback is None:
            return
        self.callback = None
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            scheduler._forget_one()

    @property
    def cancelled(self) -> bool:
        return self.callback is None

    @property
    def overdue(self) -> float:
        """Seconds it is past its time and still not run (0.0 when not due, run or cancelled).

        Under gevent, a greenlet that never yields keeps the scheduler from running it.
        """
        scheduler = self.scheduler
        if scheduler is None or self.callback is None:
            return 0.0
        return max(0.0, scheduler._clock() - self.when)


# The longest the scheduler waits at once before it looks at its clock again: a lock's wait
# takes at most threading.TIMEOUT_MAX (gevent's too), and a deadline may lie beyond it.
_LONGEST_WAIT: Final = 3600.0


class Scheduler:
    """One thread that runs small callbacks at monotonic deadlines.

    Supervisors never sleep in their mailbox: a delay is a timer here whose
    callback tells them a message. Callbacks run on the scheduler's thread and
    must not block. Nothing one timer does stops the others: a deadline however
    far away is waited for in pieces, and an exception in a callback (any
    ``BaseException``) is logged once, naming the callback, and then passed to
    ``on_error`` (which runs on the scheduler's thread too; what it raises is
    logged and dropped); the scheduler goes on. One scheduler serves a whole
    tree, so thousands of backoffs cost one thread, not thousands. Raises
    ``NoThreadError`` when the OS has no thread for it.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[BaseException], None] | None = None,
        name: str = "jobvisor-scheduler",
    ) -> None:
        self._clock = clock
        self._on_error = on_error
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._cancelled = 0  # cancelled entries still in the heap (an upper bound)
        self._seq = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        start_thread(self._thread)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the scheduler thread after ``delay`` seconds.

        A delay that is not a number > 0 (NaN too) is none: ``callback`` is due now.
        """
        handle = TimerHandle(self._clock() + (delay if delay > 0 else 0.0), callback, self)
        with self._cond:
            if self._stopped:
                handle.callback = handle.scheduler = None
                return handle
            heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
            if self._heap[0][2] is handle:
                self._cond.notify()
        return handle

    def wake(self) -> None:
        """Look at the clock again now: an injected clock was moved (a test's ``advance``)."""
        with self._cond:
            self._cond.notify()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Drop every pending call and end the thread."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cancelled = 0
            self._cond.notify()
        thread = self._thread
        if thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Entries held, cancelled ones not dropped yet included."""
        return len(self._heap)

    def _forget_one(self) -> None:
        # A cancelled entry stays in the heap until popped; once they are most of it,
        # rebuild it without them (as asyncio does), so cancelling is O(1) amortised.
        with self._cond:
            self._cancelled += 1
            heap = self._heap
            if self._cancelled > _COMPACT_MIN and self._cancelled * 2 > len(heap):
                self._heap = [entry for entry in heap if entry[2].callback is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - self._clock()
                    if wait <= 0:
                        break
                    self._cond.wait(min(wait, _LONGEST_WAIT))
                if self._stopped:
                    return
                handle = heapq.heappop(self._heap)[2]
                callback = handle.callback
                if callback is None:
                    self._cancelled = max(0, self._cancelled - 1)
                handle.callback = handle.scheduler = None
            if callback is None:
                continue
            try:
                callback()
            except BaseException as exc:  # one timer must not end every other
                self._failed(callback, exc)

    def _failed(self, callback: Callable[[], None], exc: BaseException) -> None:
        """Say once which callback failed and how; then tell ``on_error``, if any."""
        import logbook  # noqa: PLC0415 - not at import: install_runtime may not have run yet

        log = logbook.Logger("actors.runtime")
        name = _named(callback)
        log.error("timer callback {} failed: {}", name, _said(exc))
        if self._on_error is None:
            return
        try:
            self._on_error(exc)
        except BaseException as again:  # as above
            # One line, as the failure's own: what went wrong is said, no traceback to scroll.
            log.error("timer callback {} failed; its report failed too: {}", name, _said(again))  # noqa: TRY400


def _named(callback: Callable[[], None]) -> str:
    """A callback's name for a log line: its function's qualified name, never its arguments
    (they may hold anything, a secret too)."""
    while isinstance(callback, functools.partial):
        callback = callback.func
    return str(getattr(callback, "__qualname__", None) or type(callback).__qualname__)


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
