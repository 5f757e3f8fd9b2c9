"""Reporting a tree's abandoned threads: killed, yet still running a kill grace later.

A thread cannot be killed in Python (see ``actors._runtime``): Python code
blocked in a C call, or catching ``BaseException``, runs on after its kill.
The tree gives up on such a thread ``KILL_GRACE`` after the kill: it is
logged once as a warning, journaled (a ``ThreadAbandoned`` event, kind
``abandoned``), and a stop no longer waits for it, so ``Tree.stop``, a
``with`` block and ``jobvisor run`` end on time.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import logbook

from actors._runtime import KILL_GRACE, abandoned, join_tasks, kill_age, live_tasks, watch_kills
from supervision._events import ThreadAbandoned

if TYPE_CHECKING:
    from supervision._records import TreeContext

__all__ = ["AbandonWatch"]

log = logbook.Logger("supervision")


class AbandonWatch:
    """Watches the kills of one tree's tasks and reports each one that outlives its grace once."""

    def __init__(self, context: TreeContext) -> None:
        self._ctx = context
        self._prefix = f"jv-{context.tree_id}-"
        self._lock = threading.Lock()
        self._reported: weakref.WeakSet[Any] = weakref.WeakSet()
        self._unwatch = watch_kills(self._prefix, self._on_kill)

    def join(self, timeout: float | None) -> list[str]:
        """Wait for the tree's tasks (a killed one until its grace ends); report the abandoned.

        Returns the names of the tasks still running.
        """
        running = join_tasks(self._prefix, timeout, abandon=True)
        for task in live_tasks(self._prefix):
            # The stop goes on without it: a killed task still running is abandoned now, even
            # when the stop's own timeout came before its KILL_GRACE did.
            self._check(task, leaving=True)
        return running

    def close(self) -> None:
        self._unwatch()

    def still_running(self) -> tuple[str, ...]:
        """The names of the tasks reported abandoned that still run."""
        with self._lock:
            tasks = list(self._reported)
        # Each was killed: killed and still running, however long ago.
        return tuple(sorted(str(task.name) for task in tasks if abandoned(task, 0.0)))

    def _on_kill(self, task: Any) -> None:
        # In the killing thread: only a timer here, the check runs a grace later.
        self._ctx.scheduler.call_later(KILL_GRACE, lambda: self._check(task))

    def _check(self, task: Any, *, leaving: bool = False) -> None:
        """Report ``task`` once if it outlived its kill by ``KILL_GRACE`` (``leaving``: at all)."""
        if not abandoned(task, 0.0 if leaving else KILL_GRACE):
            return
        age = kill_age(task) or 0.0
        with self._lock:
            if task in self._reported:
                return
            self._reported.add(task)
        name = str(task.name)
        path = name.removeprefix(self._prefix)
        log.warning(
            "{}: its thread {} still runs {:.1f}s after it was killed (blocked in a call, or it "
            "ignores the kill): abandoned; it runs on in the background until it returns or "
            "the process exits",
            path,
            name,
            age,
            extra={"path": path},
        )
        ctx = self._ctx
        sink, kinds = ctx.sink, ctx.sink_kinds
        if sink is not None and kinds is not None and ThreadAbandoned not in kinds:
            sink = None
        bus = ctx.bus
        if sink is None and not bus.active:
            if bus.numbered is not None:
                bus.passed()
            return
        event = ThreadAbandoned(path=path, at=ctx.wall(), thread=name)
        if sink is not None:
            try:
                sink(event)
            except Exception as exc:
                ctx.sink_failed(sink, event, exc)
        if bus.active:
            bus.publish(event)
        elif bus.numbered is not None:
            bus.passed()
