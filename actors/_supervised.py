"""The pykka actor base that turns every way an actor can end into one exit report.

pykka ends an actor in several ways with different side effects: an
exception in ``on_start`` stops it without ``on_failure``; one in a ``tell``
stops it after ``on_failure``; one in an ``ask`` goes to the caller and the
actor lives on; and any ``BaseException`` makes pykka stop *every* actor in the
process. ``SupervisedActor`` hooks pykka's actor loop so that each incarnation
sends exactly one ``ChildExit`` to its supervisor, whatever happened, and no
``BaseException`` ever reaches pykka. (A command restarting in place tells a tight loop's
reports together, in one ``ChildExits``: one ``ChildExit`` each still.)
"""

from __future__ import annotations

import itertools
import queue
import sys
import uuid
from typing import TYPE_CHECKING, Any, Final

import pykka
from pykka import ActorRef

from actors._errors import ChildKilled
from actors._messages import ChildExit, ChildStarted, Link
from actors._registry import register, unregister
from actors._runtime import (
    NoThreadError,
    current_task,
    interrupt_task,
    new_event,
    start_task,
    task_slot,
)

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Kill", "SupervisedActor", "start_supervised", "supervised_class"]


class Kill(BaseException):
    """Thrown into an actor's thread to end work that ignored a stop or ran out of time.

    A ``BaseException`` so that user code's ``except Exception`` cannot swallow it.
    """


class SupervisedActor(pykka.ThreadingActor):
    """A pykka actor that reports how it ended to its supervisor.

    The report holds facts only: the first exception that ended the actor,
    an exit code (set through ``_jv_finish``), whether a stop was asked,
    whether it was killed, and the attempts it finished. Its supervisor
    classifies them (``supervision._exits.classify``).
    """

    # Supervisors report ChildStarted themselves, once their own children have started.
    _jv_auto_started: bool = True
    # True when the supervisor counted this incarnation started as it launched it (see
    # ``start_supervised``): the actor then sends no ChildStarted.
    _jv_started_at_once: bool = False
    # An actor whose own on_start only queues its first work (nothing there can fail, no
    # readiness to report) says so, to be started at once like one without on_start.
    _jv_trivial_on_start: bool = False

    _jv_link: Link
    _jv_task: Any = None
    _jv_error: BaseException | None = None
    _jv_code: int | None = None
    # The one attempt counter: attempts finished over every incarnation (a job starts it
    # from its supervisor's record, so a periodic job's numbering goes on after a restart).
    _jv_attempts: int = 0
    # An attempt's report kept to go with the exit report (see ``ChildExit.attempt``).
    _jv_attempt_report: Any = None
    _jv_stop_requested: bool = False
    _jv_killed: bool = False
    _jv_in_stop: bool = False  # the error was on_stop's (``ChildExit.in_stop``)
    _jv_running: bool = False  # true while the actor's thread runs our loop: a kill may land
    _jv_slot: int = 0  # which task of its thread the loop is (a pooled thread runs several)
    _jv_thread_name: str = "actor"
    # The message the actor's thread handles now (None between two): a kill answers its ask,
    # whose asker waited for ever on an actor stuck in a call no Kill reaches (threads).
    _jv_envelope: Any = None
    # One token, taken by the one exit report: list.pop is atomic (one C call), and cheaper
    # than a lock per incarnation (a Python object of gevent's under gevent).
    _jv_report_token: list[bool]

    @staticmethod
    def _create_actor_inbox() -> Any:
        # pykka's queue.Queue takes a Condition and its locks on every put and get; the
        # inbox needs only put, get and empty, which SimpleQueue does in C (gevent's own
        # under gevent) for a fraction of that, on every message and every restart.
        return queue.SimpleQueue()

    # -- hooks into pykka's loop (all run in the actor's own thread) ---------------------------

    def _actor_loop(self) -> None:
        self._jv_task = task = current_task()
        self._jv_slot = task_slot(task)
        self._jv_running = True
        try:
            self._actor_loop_setup()
            if self._jv_auto_started and not self.actor_stopped.is_set():
                link = self._jv_link
                link.parent.tell(ChildStarted(link.key, link.incarnation))
            self._actor_loop_running()
        except BaseException as exc:
            # A BaseException in on_start, on_failure or a blocking wait: pykka would
            # stop every actor in the process; we end only this one.
            self._jv_record(exc)
            unregister(self.actor_ref)
            self.actor_stopped.set()
        finally:
            try:
                self._actor_loop_teardown()
            finally:
                self._jv_running = False
                self._jv_report()

    def _actor_loop_running(self) -> None:
        # pykka's loop, except that a BaseException ends only this actor (pykka would call
        # ActorRegistry.stop_all()) and an ask's exception is not logged: it goes to its caller.
        inbox, stopped = self.actor_inbox, self.actor_stopped
        while not stopped.is_set():
            envelope = self._jv_envelope = inbox.get()
            try:
                response = self._handle_receive(envelope.message)
                if envelope.reply_to is not None:
                    _answer(envelope.reply_to, response)
            except Exception:
                if envelope.reply_to is not None:
                    _answer(envelope.reply_to, None, sys.exc_info())
                else:
                    self._tell_failed(sys.exc_info())
            except BaseException as exc:
                self._jv_record(exc)
                unregister(self.actor_ref)
                stopped.set()
                killed = ChildKilled(f"{type(exc).__name__} ended the actor")
                killed.__cause__ = exc
                if envelope.reply_to is not None:
                    _answer(envelope.reply_to, None, (ChildKilled, killed, None))
                else:
                    self._tell_failed((ChildKilled, killed, None))
            # Not kept while the loop waits for the next message: a supervisor's last one is
            # often an exit report, whose error holds the ended incarnation's frames and so the
            # whole actor, for as long as the supervisor stays idle.
            self._jv_envelope = None
            del envelope
            response = None

    def _tell_failed(self, exc_info: Any) -> None:
        self._handle_failure(*exc_info)
        try:
            self.on_failure(*exc_info)
        except Exception:
            self._handle_failure(*sys.exc_info())

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # pykka would log here too; the supervisor logs every failure once, with its path.
        del exception_type, traceback
        if exception_value is not None:
            self._jv_record(exception_value)
        unregister(self.actor_ref)
        self.actor_stopped.set()

    def _actor_loop_teardown(self) -> None:
        if self._jv_link.ref is None:
            super()._actor_loop_teardown()
            return
        self._jv_detach()

    def _jv_detach(self) -> None:
        """Let go of the stable reference: messages still queued move on (or fail, counted)."""
        ref = self._jv_link.ref
        if ref is not None:
            ref._detach(self.actor_inbox)

    # -- how the actor ends ----------------------------------------------------------------------

    def _stop(self) -> None:
        # pykka's, without its debug line: an f-string of the actor on every restart. A user's
        # class that has its own keeps it (``supervised_class``).
        unregister(self.actor_ref)
        self.actor_stopped.set()
        try:
            self.on_stop()
        except Exception:
            if self._jv_error is None:  # the first error of its end is on_stop's own
                self._jv_in_stop = True
            self._handle_failure(*sys.exc_info())

    def _jv_record(self, exc: BaseException) -> None:
        if self._jv_error is None:
            self._jv_error = exc

    def _jv_finish(self, error: BaseException | None = None, code: int | None = None) -> None:
        """End this incarnation now, with ``error`` if none was recorded (actor's thread)."""
        if error is not None:
            self._jv_record(error)
        if code is not None:
            self._jv_code = code
        if not self.actor_stopped.is_set():
            self._stop()

    def _jv_report(self) -> None:
        """Send the one exit report of this incarnation; later calls do nothing.

        May run in the actor's thread or in the scheduler's (timeouts).
        """
        try:
            self._jv_report_token.pop()
        except IndexError:
            return
        if self._jv_running:
            # Reported from another thread (a timeout, a kill) while the actor's thread may
            # still run: route new messages away now; its teardown drains the rest.
            self._jv_detach()
        link = self._jv_link
        report = ChildExit(
            link.key,
            link.incarnation,
            self._jv_error,
            self._jv_code,
            self._jv_stop_requested,
            self._jv_killed,
            self._jv_attempts,
            self._jv_attempt_report,
            in_stop=self._jv_in_stop,
        )
        try:  # noqa: SIM105 - not contextlib.suppress: this runs on every restart
            link.parent.tell(report)
        except pykka.ActorDeadError:
            pass  # the supervisor is gone already: nobody is left to tell

    def _start_actor_loop(self) -> None:
        # Like pykka's, but named after the child's path so a tree can find and join its tasks,
        # and a bare greenlet under gevent.
        start_task(self._actor_loop, f"jv-{self._jv_thread_name}", reuse=self._jv_pool())

    def _jv_pool(self) -> str | None:
        """The pool of threads this actor's loop may run on (``start_task``'s ``reuse``).

        None, a thread of its own: an actor runs the user's Python, which may keep
        thread-local state that must not outlive its incarnation.
        """
        return None

    # -- called from the supervisor's thread -----------------------------------------------------

    def _jv_request_stop(self) -> None:
        """Ask the actor to stop after the messages already queued (thread-safe)."""
        self._jv_stop_requested = True
        self.actor_inbox.put(pykka._envelope.Envelope(pykka.messages._ActorStop()))

    def _jv_kill(self) -> None:
        """End the actor's thread now: it ignored a stop for its whole grace period.

        The ask it is handling is answered now, ``ChildKilled``: under threads a Kill does
        not reach a thread blocked in a call, and its asker waited for ever.
        """
        self._jv_stop_requested = True
        self._jv_killed = True
        envelope = self._jv_envelope
        if envelope is not None and envelope.reply_to is not None:
            path = self._jv_link.ref.path if self._jv_link.ref is not None else "the actor"
            killed = ChildKilled(f"child {path} was killed while it handled this message")
            _answer(envelope.reply_to, None, (ChildKilled, killed, None))
        task = self._jv_task
        if task is not None and self._jv_running:
            interrupt_task(task, Kill, self._jv_slot)
        unregister(self.actor_ref)
        self.actor_stopped.set()
        self._jv_report()


def _answer(future: Any, value: Any, exc_info: Any = None) -> None:
    """Set an ask's reply (``exc_info``: its exception), unless it has one already: a kill
    answered it while the actor still handled it (``_jv_kill``)."""
    try:
        if exc_info is None:
            future.set(value)
        else:
            future.set_exception(exc_info)
    except queue.Full:
        pass


# An actor's urn: this process's random prefix and a counter, unique as pykka needs it (its
# registry's key) for a fraction of a uuid4 (a getrandom call and a UUID object per actor).
_URN_PREFIX: Final = f"urn:uuid:{str(uuid.uuid4())[:24]}"
_urn_numbers = itertools.count()


class QuickInit(pykka.ThreadingActor):
    """pykka's ``Actor.__init__``, with a cheaper ``actor_urn``: last before pykka's in the MRO.

    Every incarnation is a new actor, so its construction is on the restart path. A
    supervised user class gets it after its own class (``supervised_class``), so the user's
    ``super().__init__()`` lands here; jobvisor's own actors derive from ``OwnActor``.
    """

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        # The fields pykka's Actor.__init__ sets (pykka 4.x, pinned below 5).
        self.actor_urn = f"{_URN_PREFIX}{next(_urn_numbers) & 0xFFFFFFFFFFFF:012x}"
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = new_event()
        self._actor_ref = ActorRef(self)


class OwnActor(SupervisedActor, QuickInit):
    """The base of jobvisor's own supervised actors (jobs, supervisors, Ray proxies)."""


_NO_ON_START = pykka.ThreadingActor.on_start

_classes: dict[type[pykka.ThreadingActor], type[SupervisedActor]] = {}


def supervised_class(cls: type[pykka.ThreadingActor]) -> type[SupervisedActor]:
    """Return a subclass of ``cls`` that reports its exit; cached per class."""
    found = _classes.get(cls)  # first: issubclass on pykka's ABC-based classes is slow
    if found is None:
        if issubclass(cls, SupervisedActor):
            found = cls
        else:
            body: dict[str, Any] = {"__module__": cls.__module__}
            if cls._create_actor_inbox is not pykka.ThreadingActor._create_actor_inbox:
                body["_create_actor_inbox"] = cls._create_actor_inbox  # the user's own inbox
            if cls._stop is not pykka.ThreadingActor._stop:
                body["_stop"] = cls._stop  # the user's own stop, over ours without pykka's line
            found = type(f"Supervised{cls.__name__}", (SupervisedActor, cls, QuickInit), body)
        _classes[cls] = found
    return found


def start_supervised(
    cls: type[pykka.ThreadingActor],
    link: Link,
    name: str,
    *args: Any,
    jv_at_once: bool = False,
    **kwargs: Any,
) -> SupervisedActor:
    """Construct and start one incarnation of ``cls`` under ``link``, in a thread named ``jv-NAME``.

    The constructor runs in the caller's thread: an exception in it propagates
    to the caller (the supervisor counts it as a failed start). The stable
    reference, if any, is attached before the loop starts, so messages stashed
    during a restart are the first the new incarnation handles.

    ``jv_at_once``: the caller counts the incarnation started as soon as this
    returns, if it can: an actor without its own ``on_start`` has nothing that
    can fail before its first message and no readiness to report, so it skips
    the ChildStarted handshake (``_jv_started_at_once`` says whether it did).

    No thread for its loop (``NoThreadError``: the host's limit on tasks) is no
    exception here: the incarnation is returned ended, its exit reported with that error.
    """
    actor = supervised_class(cls)(*args, **kwargs)
    actor._jv_link = link
    actor._jv_thread_name = name
    actor._jv_report_token = [True]
    if (
        jv_at_once
        and actor._jv_auto_started
        and (actor._jv_trivial_on_start or type(actor).on_start is _NO_ON_START)
    ):
        actor._jv_auto_started = False
        actor._jv_started_at_once = True
    if link.ref is not None:
        link.ref._attach(actor.actor_inbox)
    register(actor.actor_ref)
    try:
        actor._start_actor_loop()
    except NoThreadError as exc:
        # The host is out of tasks: this incarnation fails, as a command that cannot fork
        # does, by its one exit report (its supervisor's policy restarts it), never as a
        # start that raised, whose traceback a limit of the host's does not deserve.
        actor._jv_record(exc)
        unregister(actor.actor_ref)
        actor.actor_stopped.set()
        actor._jv_detach()
        actor._jv_report()
    except BaseException:
        # Any other failed start: nothing will ever end this actor, so it leaves the registry
        # and the stable reference now; the caller counts a failed start.
        unregister(actor.actor_ref)
        if link.ref is not None:
            link.ref._detach(actor.actor_inbox)
        raise
    return actor
