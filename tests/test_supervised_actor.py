"""Every way a supervised pykka actor can end becomes exactly one ChildExit."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pykka
import pytest
from pykka._envelope import Envelope

from actors import (
    ChildExit,
    ChildKilled,
    ChildRef,
    ChildStarted,
    ChildUnavailableError,
    Link,
    Outcome,
    join_tasks,
    start_supervised,
)
from actors._ref import OwnMessage
from supervision._exits import ExitReason, classify


class Inbox:
    """A parent that records what its child tells it."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()

    def tell(self, message: Any) -> None:
        self.messages.put(message)

    def next(self, kind: type, timeout: float = 5.0) -> Any:
        while True:
            message = self.messages.get(timeout=timeout)
            if isinstance(message, kind):
                return message

    def exits(self) -> list[ChildExit]:
        out = []
        while not self.messages.empty():
            message = self.messages.get_nowait()
            if isinstance(message, ChildExit):
                out.append(message)
        return out


class Worker(pykka.ThreadingActor):
    def __init__(self, fail_on_start: BaseException | None = None) -> None:
        super().__init__()
        self.fail_on_start = fail_on_start

    def on_start(self) -> None:
        if self.fail_on_start is not None:
            raise self.fail_on_start

    def on_receive(self, message: Any) -> Any:
        if message == "ping":
            return "pong"
        if message == "stop-self":
            self.stop()
            return None
        if isinstance(message, BaseException):
            raise message
        return message


class FailingOnFailure(Worker):
    def on_failure(self, *args: Any) -> None:
        raise RuntimeError("on_failure broke too")


class SystemExitOnStop(Worker):
    def on_stop(self) -> None:
        raise SystemExit(2)


@pytest.fixture
def parent() -> Inbox:
    return Inbox()


def start(parent: Inbox, cls: type[pykka.ThreadingActor] = Worker, **kwargs: Any) -> Any:
    return start_supervised(cls, Link(parent, key=7, incarnation=1), "test-actor", **kwargs)


def one_exit(parent: Inbox, actor: Any) -> ExitReason:
    """The one exit report of ``actor``, as its supervisor classifies it."""
    exit_ = parent.next(ChildExit)
    actor.actor_stopped.wait(5)
    assert parent.exits() == [], "more than one exit report"
    assert (exit_.key, exit_.incarnation) == (7, 1)
    return classify(exit_)


def test_started_then_self_stop_is_success(parent: Inbox) -> None:
    actor = start(parent)
    assert parent.next(ChildStarted) == ChildStarted(7, 1)
    actor.actor_ref.tell("stop-self")
    assert one_exit(parent, actor).outcome is Outcome.SUCCEEDED


def test_stop_requested_is_stopped_not_failure(parent: Inbox) -> None:
    actor = start(parent)
    actor._jv_request_stop()
    exit_ = one_exit(parent, actor)
    assert exit_.outcome is Outcome.STOPPED
    assert exit_.error is None


def test_exception_in_on_start(parent: Inbox) -> None:
    actor = start(parent, fail_on_start=ValueError("bad config"))
    exit_ = one_exit(parent, actor)
    assert exit_.outcome is Outcome.FAILED
    assert isinstance(exit_.error, ValueError)
    assert parent.messages.empty()  # never reported started


def test_exception_in_tell(parent: Inbox) -> None:
    actor = start(parent)
    actor.actor_ref.tell(KeyError("boom"))
    exit_ = one_exit(parent, actor)
    assert exit_.outcome is Outcome.FAILED
    assert isinstance(exit_.error, KeyError)


def test_exception_in_ask_goes_to_caller_and_actor_lives(parent: Inbox) -> None:
    actor = start(parent)
    with pytest.raises(KeyError):
        actor.actor_ref.ask(KeyError("for the caller"), timeout=5)
    assert actor.actor_ref.ask("ping", timeout=5) == "pong"
    actor._jv_request_stop()
    assert one_exit(parent, actor).outcome is Outcome.STOPPED


def test_exception_in_on_failure(parent: Inbox) -> None:
    actor = start(parent, FailingOnFailure)
    actor.actor_ref.tell(KeyError("first"))
    exit_ = one_exit(parent, actor)
    assert exit_.outcome is Outcome.FAILED
    assert isinstance(exit_.error, KeyError), "the first failure is the cause"


@pytest.mark.parametrize("exc", [SystemExit(1), KeyboardInterrupt(), GeneratorExit()])
def test_base_exception_in_tell_ends_only_this_actor(parent: Inbox, exc: BaseException) -> None:
    bystander = Worker.start()
    try:
        actor = start(parent)
        actor.actor_ref.tell(exc)
        exit_ = one_exit(parent, actor)
        assert exit_.outcome is Outcome.FAILED
        assert isinstance(exit_.error, ChildKilled)
        assert exit_.error.__cause__ is exc
        assert bystander.ask("ping", timeout=5) == "pong", "pykka must not stop_all()"
    finally:
        bystander.stop()


def test_base_exception_in_ask_fails_the_caller_and_ends_the_actor(parent: Inbox) -> None:
    bystander = Worker.start()
    try:
        actor = start(parent)
        with pytest.raises(ChildKilled):
            actor.actor_ref.ask(SystemExit(9), timeout=5)
        assert one_exit(parent, actor).outcome is Outcome.FAILED
        assert bystander.ask("ping", timeout=5) == "pong"
    finally:
        bystander.stop()


def test_base_exception_in_on_start(parent: Inbox) -> None:
    bystander = Worker.start()
    try:
        actor = start(parent, fail_on_start=SystemExit(4))
        exit_ = one_exit(parent, actor)
        assert exit_.outcome is Outcome.FAILED
        assert isinstance(exit_.error, ChildKilled)
        assert not actor.actor_ref.is_alive()
        assert bystander.ask("ping", timeout=5) == "pong"
    finally:
        bystander.stop()


def test_base_exception_in_on_stop(parent: Inbox) -> None:
    bystander = Worker.start()
    try:
        actor = start(parent, SystemExitOnStop)
        actor._jv_request_stop()
        exit_ = one_exit(parent, actor)
        assert exit_.outcome is Outcome.FAILED
        assert bystander.ask("ping", timeout=5) == "pong"
    finally:
        bystander.stop()


def test_kill_ends_a_busy_actor_once(parent: Inbox) -> None:
    entered = threading.Event()

    class Busy(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            entered.set()
            while True:  # short sleeps: the Kill lands between them (and gevent gets to run)
                time.sleep(0.001)

    actor = start(parent, Busy)
    actor.actor_ref.tell("spin")
    assert entered.wait(5)
    actor._jv_kill()
    exit_ = classify(parent.next(ChildExit))
    assert exit_.outcome is Outcome.KILLED
    assert actor.actor_stopped.wait(5)
    # The thread (or greenlet) really ends; its late teardown must not report a second time.
    assert join_tasks("jv-test-actor", 5) == []
    assert parent.exits() == []


def test_an_incarnations_own_queued_messages_do_not_move_to_the_stable_ref(parent: Inbox) -> None:
    # A job queues its own next run; queued behind a stop, it reached the next incarnation
    # (a second run) or, the child stopped for good, a "not delivered" warning in the log.
    ref = ChildRef("w")
    gate = threading.Event()
    own = OwnMessage("run")

    class Gated(Worker):
        def on_receive(self, message: Any) -> Any:
            if message == "wait":
                gate.wait(5)
                self.actor_inbox.put(Envelope(own))
                raise RuntimeError("crash with its own message queued")
            return super().on_receive(message)

    actor = start_supervised(Gated, Link(parent, 1, 1, ref), "test-actor")
    ref.tell("wait")
    future = ref.ask("ping", block=False)  # queued behind the crash
    gate.set()
    assert classify(parent.next(ChildExit)).outcome is Outcome.FAILED
    actor.actor_stopped.wait(5)
    assert [e.message for e in ref._stash] == ["ping"]
    second = start_supervised(Worker, Link(parent, 1, 2, ref), "test-actor")
    assert future.get(timeout=5) == "pong"
    second._jv_request_stop()
    parent.next(ChildExit)


def test_queued_messages_of_a_crashed_incarnation_move_to_the_stable_ref(parent: Inbox) -> None:
    ref = ChildRef("w")
    gate = threading.Event()

    class Gated(Worker):
        def on_receive(self, message: Any) -> Any:
            if message == "wait":
                gate.wait(5)
                raise RuntimeError("crash with a full inbox")
            return super().on_receive(message)

    actor = start_supervised(Gated, Link(parent, 1, 1, ref), "test-actor")
    ref.tell("wait")
    future = ref.ask("ping", block=False)  # queued behind the crash
    gate.set()
    assert classify(parent.next(ChildExit)).outcome is Outcome.FAILED
    actor.actor_stopped.wait(5)
    # The next incarnation gets the queued ask.
    second = start_supervised(Worker, Link(parent, 1, 2, ref), "test-actor")
    assert future.get(timeout=5) == "pong"
    ref._close("stopped")
    with pytest.raises(ChildUnavailableError, match="w is stopped"):
        ref.tell("late")
    second._jv_request_stop()
    parent.next(ChildExit)


def test_an_actor_class_keeps_its_own_inbox() -> None:
    # jobvisor's incarnations take a SimpleQueue inbox (cheaper than pykka's Queue); a
    # class that makes its own inbox keeps it.
    from actors._supervised import supervised_class

    class Plain(pykka.ThreadingActor):
        pass

    class Own(pykka.ThreadingActor):
        @staticmethod
        def _create_actor_inbox() -> Any:
            return queue.LifoQueue()

    assert isinstance(supervised_class(Plain)._create_actor_inbox(), queue.SimpleQueue)
    assert isinstance(supervised_class(Own)._create_actor_inbox(), queue.LifoQueue)


class Initialised(pykka.ThreadingActor):
    def __init__(self, value: int) -> None:
        super().__init__()
        self.value = value


class InitialisedDirectly(pykka.ThreadingActor):
    def __init__(self) -> None:
        pykka.ThreadingActor.__init__(self)
        self.ready = True


def test_a_supervised_class_is_initialised_as_pykka_would_with_unique_urns() -> None:
    import uuid

    from actors._supervised import supervised_class

    actors = [supervised_class(Initialised)(n) for n in range(200)]
    assert [a.value for a in actors] == list(range(200))  # the user's __init__ ran
    urns = [a.actor_urn for a in actors]
    assert len(set(urns)) == 200
    for urn in urns:
        assert urn.startswith("urn:uuid:")
        assert str(uuid.UUID(urn.removeprefix("urn:uuid:"))) == urn.removeprefix("urn:uuid:")
    actor = actors[0]
    assert actor.actor_ref.actor_urn == actor.actor_urn
    assert not actor.actor_stopped.is_set()
    assert isinstance(actor.actor_inbox, queue.SimpleQueue)
    # a class that calls pykka's own __init__ directly still gets every field (a uuid4 urn)
    direct = supervised_class(InitialisedDirectly)()
    assert direct.ready
    assert direct.actor_urn.startswith("urn:uuid:")
    assert direct.actor_urn not in urns
