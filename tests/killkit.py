"""Throwing a ``Kill`` at each point where CPython checks for one, one point per run.

Under the threads runtime a job's ``Kill`` is an asynchronous exception
(``PyThreadState_SetAsyncExc``): it lands where the interpreter next checks
for one. In CPython 3.11 and 3.12 that is a function's start, the
instruction after a call to anything but a Python function, and a jump
backwards taken. ``KillAt(n)`` is a tracer that raises ``Kill`` at the
``n``-th such point in the frames of the given files; a run it never
reached (``landed is None``) has ``points`` of them in all. Standard
library only besides the ``Kill`` it is given.

A model, close but not exact: a call that starts any Python frame (a class
whose ``__init__`` is Python, a C function calling back into Python) counts
as a Python call, though CPython checks after it too; and the point after a
call that raised is counted where CPython would not check. Points in the
standard library's Python code are not targeted.

A loop's passes beyond the first ``REPEATS`` in one call are not targeted
either: the loops that pass a point more often than that go over the
machine's processes or files (``/proc``, the temporary directory), so their
number of points, and a run's time, grew with whatever else ran beside the
test (1,700 points and 20 to 60 s, where 16 passes of each leave 280).
"""

from __future__ import annotations

import dis
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CHECKED: bool = sys.version_info[:2] in {(3, 11), (3, 12)}  # the model of the checks above
_CALLS = frozenset(dis.opmap[name] for name in ("CALL", "CALL_FUNCTION_EX") if name in dis.opmap)
_BACK = dis.opmap.get("JUMP_BACKWARD", -1)
# 3.11's conditional backward jumps check too, when taken (3.12 has none).
_BACK_IF = frozenset(
    code for name, code in dis.opmap.items() if name.startswith("POP_JUMP_BACKWARD_IF_")
)
REPEATS = 16  # passes of a point in one call that are targeted (any other loop here: 14 at most)


class KillAt:
    """A ``sys.settrace`` tracer raising ``kill`` at the ``target``-th point (counted from 1)."""

    def __init__(self, target: int, files: set[str], kill: type[BaseException]) -> None:
        self.target = target
        self.files = files
        self.kill = kill
        self.points = 0
        self.landed: str | None = None  # where it raised: "file:line function what"
        # frame -> (its last opcode, its offset, whether it called a Python function since)
        self._last: dict[int, tuple[int, int, bool]] = {}
        self._passes: dict[int, dict[int, int]] = {}  # frame -> offset -> passes so far

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        caller = frame.f_back
        if caller is not None and id(caller) in self._last:
            # A Python callee: its caller's CALL does not check when it returns.
            op, offset, _ = self._last[id(caller)]
            self._last[id(caller)] = (op, offset, True)
        if frame.f_code.co_filename not in self.files:
            return None
        self._last[id(frame)] = (-1, -1, False)
        self._passes[id(frame)] = {}
        self._point(frame, "start", -1)
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._local

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            op, offset, python_callee = self._last.get(id(frame), (-1, -1, False))
            here = frame.f_lasti
            if (
                (op in _CALLS and not python_callee)
                or op == _BACK
                or (op in _BACK_IF and here < offset)
            ):
                self._point(frame, dis.opname[op], here)
            self._last[id(frame)] = (frame.f_code.co_code[here], here, False)
        elif event == "return":
            self._last.pop(id(frame), None)
            self._passes.pop(id(frame), None)
        return self._local

    def _point(self, frame: Any, what: str, offset: int) -> None:
        passes = self._passes.setdefault(id(frame), {})
        passes[offset] = passes.get(offset, 0) + 1
        if passes[offset] > REPEATS:
            return
        self.points += 1
        if self.points == self.target and self.landed is None:
            name = Path(frame.f_code.co_filename).name
            self.landed = f"{name}:{frame.f_lineno} {frame.f_code.co_name} {what}"
            raise self.kill


def run_traced(call: Callable[[], Any], tracer: Any) -> Any:
    """``call()`` in a new thread traced by ``tracer``; what it returned or raised."""

    def run() -> Any:
        sys.settrace(tracer)
        try:
            return call()
        except BaseException as exc:
            return exc
        finally:
            sys.settrace(None)

    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(run()))
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the call did not end"
    return result[0]


def kill_each_point(
    call: Callable[[], Any], files: set[str], kill: type[BaseException]
) -> Iterator[tuple[str, Any]]:
    """Run ``call`` once per point of ``files`` it passes, a ``kill`` landing there.

    Yields where it landed and what ``call`` returned or raised, after each
    run; ends with the first run that passes no more points. (A run may pass
    a varying number of points, e.g. one more read: the count is that run's.)
    """
    target = 1
    while True:
        tracer = KillAt(target, files, kill)
        result = run_traced(call, tracer)
        if tracer.landed is None:
            return
        yield f"a Kill at point {target}, {tracer.landed}", result
        target += 1
