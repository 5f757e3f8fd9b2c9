"""pykka's registry with jobvisor's container: pykka's API unchanged, no scan, no eager log line."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors import Link, start_supervised
from actors._registry import _Refs, register, unregister


class Echo(pykka.ThreadingActor):
    def __init__(self, heard: list[Any] | None = None) -> None:
        super().__init__()
        self.heard = heard if heard is not None else []

    def on_receive(self, message: Any) -> Any:
        self.heard.append(message)
        return message


class Other(Echo):
    pass


class Parent:
    def __init__(self) -> None:
        self.told: list[Any] = []
        self.event = threading.Event()

    def tell(self, message: Any) -> None:
        self.told.append(message)
        self.event.set()


@pytest.fixture
def pykka_debug() -> Iterator[list[str]]:
    """pykka's own debug lines (stdlib logging), as formatted."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("pykka")
    handler, level = Keep(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_pykkas_registry_api_works_over_the_container() -> None:
    assert isinstance(pykka.ActorRegistry._actor_refs, _Refs)
    heard: list[Any] = []
    first = Echo.start(heard)  # pykka's own start: its own register
    second = Other.start(heard)
    third = Echo.start(heard)
    try:
        everyone = pykka.ActorRegistry.get_all()
        assert everyone[-3:] == [first, second, third]  # in start order
        assert pykka.ActorRegistry.get_by_class(Other) == [second]
        assert pykka.ActorRegistry.get_by_class_name("Other") == [second]
        assert pykka.ActorRegistry.get_by_urn(second.actor_urn) is second
        pykka.ActorRegistry.broadcast("hello", target_class=Echo)
        for ref in (first, second, third):  # each has handled the broadcast once it answers
            assert ref.ask("sync") == "sync"
        assert heard.count("hello") == 3  # Other derives from Echo
        second.stop()  # pykka's unregister, in the middle of the order
        assert pykka.ActorRegistry.get_all()[-2:] == [first, third]
        assert second not in pykka.ActorRegistry._actor_refs
    finally:
        pykka.ActorRegistry.stop_all()
    assert first not in pykka.ActorRegistry.get_all()
    assert not first.is_alive()
    assert not third.is_alive()


def test_register_and_unregister_keep_order_and_forgive_a_second_unregister() -> None:
    actors = [Echo() for _ in range(3)]
    refs = [a.actor_ref for a in actors]
    for ref in refs:
        register(ref)
    try:
        unregister(refs[1])
        unregister(refs[1])  # an incarnation ended twice over (a kill, then its loop)
        assert [r for r in pykka.ActorRegistry.get_all() if r in refs] == [refs[0], refs[2]]
        with pytest.raises(ValueError, match="not registered"):
            pykka.ActorRegistry._actor_refs.remove(refs[1])  # pykka's own call stays a list's
    finally:
        for ref in refs:
            unregister(ref)
    assert not any(r in pykka.ActorRegistry.get_all() for r in refs)


def test_a_list_put_back_in_the_registry_is_taken_over() -> None:
    before = pykka.ActorRegistry._actor_refs
    stranger = Echo().actor_ref
    ours = Echo().actor_ref
    pykka.ActorRegistry._actor_refs = [stranger]  # type: ignore[assignment]
    try:
        register(ours)
        refs = pykka.ActorRegistry._actor_refs
        assert isinstance(refs, _Refs)
        assert list(refs) == [stranger, ours]
        unregister(stranger)
        assert pykka.ActorRegistry.get_all() == [ours]
    finally:
        pykka.ActorRegistry._actor_refs = before


def test_an_incarnation_registers_and_ends_without_pykkas_debug_lines(
    pykka_debug: list[str],
) -> None:
    parent = Parent()
    actor = start_supervised(Echo, Link(parent, key=1, incarnation=1), "test-registry")
    ref = actor.actor_ref
    assert ref in pykka.ActorRegistry.get_all()
    assert ref.ask("ping") == "ping"
    actor._jv_request_stop()
    assert actor.actor_stopped.wait(5)
    assert parent.event.wait(5)
    assert ref not in pykka.ActorRegistry.get_all()
    # pykka formats "Registered ...", "Unregistered ..." and "Stopped ..." for every actor,
    # before asking whether anybody wants them: three f-strings on every restart.
    assert not [line for line in pykka_debug if str(ref) in line or str(actor) in line]
    plain = Echo.start()  # a plain pykka actor still says what pykka says
    plain.stop()
    assert any(line.startswith("Registered") for line in pykka_debug)


class Recorder(pykka.ThreadingActor):
    def __init__(self, name: str, stopped: list[str]) -> None:
        super().__init__()
        self.name, self.stopped = name, stopped

    def on_stop(self) -> None:
        self.stopped.append(self.name)


def test_stop_all_stops_the_last_started_first() -> None:
    stopped: list[str] = []
    for name in ("a", "b", "c"):
        Recorder.start(name, stopped)
    pykka.ActorRegistry.stop_all()
    assert stopped == ["c", "b", "a"]  # pykka reverses get_all(): the container keeps start order


class OwnStop(pykka.ThreadingActor):
    def _stop(self) -> None:
        self.own_stop_ran = True
        super()._stop()


def test_a_class_with_its_own_stop_keeps_it() -> None:
    parent = Parent()
    actor: Any = start_supervised(OwnStop, Link(parent, key=1, incarnation=1), "test-own-stop")
    actor._jv_request_stop()
    assert actor.actor_stopped.wait(5)
    assert parent.event.wait(5)
    assert actor.own_stop_ran
    assert actor.actor_ref not in pykka.ActorRegistry.get_all()


def test_an_actor_whose_thread_cannot_start_leaves_the_registry_and_its_reference(
    monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    if runtime != "threads":
        pytest.skip("a greenlet is made in this process's memory: no OS thread to refuse")
    from actors import ChildExit, ChildRef, _runtime
    from actors._runtime import NoThreadError

    def refuse(function: Any, args: Any) -> None:
        del function, args
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_runtime, "_start_new_thread", refuse)
    ref = ChildRef("test-no-thread")
    before = set(pykka.ActorRegistry.get_all())
    parent = Parent()
    # No exception: the incarnation ends by its one exit report, as a command that cannot fork.
    actor = start_supervised(Echo, Link(parent, key=1, incarnation=1, ref=ref), "test-no-thread")
    assert actor.actor_stopped.is_set()
    assert set(pykka.ActorRegistry.get_all()) == before
    assert ref._inbox is None  # messages to the reference wait for the next incarnation
    [report] = [m for m in parent.told if isinstance(m, ChildExit)]
    assert isinstance(report.error, NoThreadError), report
    assert "could not start: no thread could be started" in str(report.error)
