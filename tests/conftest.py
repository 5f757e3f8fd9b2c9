"""Test fixtures: the runtime under test, captured logs, trees that always stop, leak checks.

``JOBVISOR_RUNTIME=gevent`` runs the whole suite under gevent; the process (each
worker's, under ``-n``) is monkey-patched here, before the code under test is imported.
"""

from __future__ import annotations

import os

from actors import install_runtime, join_tasks

RUNTIME = os.environ.get("JOBVISOR_RUNTIME", "threads")
install_runtime(RUNTIME)
if RUNTIME == "gevent" and os.environ.get("PYTEST_XDIST_WORKER"):
    # A pytest-xdist worker (``-n``) waits for its next test on an Event that execnet's own
    # thread sets. Patched, that wait runs gevent's hub, which ends it at once with LoopExit
    # when nothing else of the hub's is pending: this timer (never due) keeps one pending,
    # and the set from the other thread wakes the hub.
    import gevent

    _KEEP_HUB = gevent.get_hub().loop.timer(86400.0, 86400.0)
    _KEEP_HUB.start(lambda: None)

import threading  # noqa: E402 - after the runtime is installed
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import logbook  # noqa: E402
import pykka  # noqa: E402
import pytest  # noqa: E402

from supervision import SupervisorSpec, Tree, start_tree  # noqa: E402


@pytest.fixture
def runtime() -> str:
    return RUNTIME


@pytest.fixture(autouse=True)
def logs() -> Iterator[logbook.TestHandler]:
    """Every record of the test, captured instead of printed."""
    handler = logbook.TestHandler(level=logbook.TRACE)
    with handler.applicationbound():
        yield handler


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Each test must leave no actor of ours running and no jobvisor thread or greenlet alive."""
    yield
    still = join_tasks("jv-", 5)
    pykka.ActorRegistry.stop_all(timeout=5)
    assert not still, f"threads or greenlets left behind: {still}"


@pytest.fixture
def make_tree(runtime: str) -> Iterator[Callable[..., Tree]]:
    """Start trees that are stopped (and checked to have stopped) after the test."""
    trees: list[Tree] = []

    def make(spec: SupervisorSpec, **kwargs: Any) -> Tree:
        tree = start_tree(spec, runtime, **kwargs)
        trees.append(tree)
        return tree

    yield make
    for tree in trees:
        assert tree.stop(timeout=20), "tree did not stop in time"


class Events:
    """Collects a tree's events; tests wait on conditions over them, never on sleeps."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, event: Any) -> None:
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 10.0) -> list[Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self.items), timeout)
            assert ok, f"condition not met; events: {self.items[-30:]}"
            return list(self.items)

    def of(self, kind: type, path: str | None = None) -> list[Any]:
        with self._cond:
            return [
                e for e in self.items if isinstance(e, kind) and (path is None or e.path == path)
            ]

    def states(self, path: str) -> list[str]:
        from supervision import StateChanged

        return [e.new.value for e in self.of(StateChanged, path)]

    def reached(self, path: str, state: str, times: int = 1, timeout: float = 10.0) -> None:
        from supervision import StateChanged

        self.wait_for(
            lambda items: (
                sum(
                    1
                    for e in items
                    if isinstance(e, StateChanged) and e.path == path and e.new.value == state
                )
                >= times
            ),
            timeout,
        )


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture(autouse=True)
def _reset_jobfuncs() -> Iterator[None]:
    import jobfuncs

    jobfuncs.reset()
    yield
    for key, event in list(jobfuncs.EVENTS.items()):
        if key.endswith(".release"):
            event.set()


@pytest.fixture
def procs() -> Iterator[Any]:
    """Processes watched through pidfds; whatever a test leaves running is SIGKILLed after it."""
    from faultkit import Watched

    watched = Watched()
    yield watched
    watched.close()
