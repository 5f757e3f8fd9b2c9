"""Loaded by ``bench/call_counts.py``'s daemon (on its ``PYTHONPATH``): profiles the job's
thread (cProfile) from its attempts, ``CALLCOUNT_WARM`` s after the start, for
``CALLCOUNT_SPAN`` s, and writes the counts per restart to ``CALLCOUNT_OUT``. Under gevent
cProfile sees every greenlet of the one thread: the whole daemon. With ``CALLCOUNT_THREAD``
``supervisor`` (threads only) it profiles the supervisor's turns instead, per exit report
handled (one ``ChildExit``, alone or in a ``ChildExits``)."""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

OUT = os.environ.get("CALLCOUNT_OUT")
WARM = float(os.environ.get("CALLCOUNT_WARM", "3"))
SPAN = float(os.environ.get("CALLCOUNT_SPAN", "5"))
THREAD = os.environ.get("CALLCOUNT_THREAD", "job")


def _write(prof: cProfile.Profile, restarts: int) -> None:
    stats = pstats.Stats(prof)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][1])  # type: ignore[attr-defined]
    with open(str(OUT), "w", encoding="utf-8") as out:  # noqa: PTH123
        total = stats.total_calls  # type: ignore[attr-defined]
        out.write(f"restarts {restarts} calls {total} per restart {total / restarts:.1f}\n")
        out.writelines(
            f"{calls / restarts:8.2f} {own / restarts * 1e6:8.2f}us "
            f"{inclusive / restarts * 1e6:8.2f}us  {Path(file).name}:{line} {name}\n"
            for (file, line, name), (_, calls, own, inclusive, _) in rows[:80]
        )


def _reports(message: Any) -> int:
    """How many exit reports a supervisor's message brings."""
    kind = type(message).__name__
    return len(message.reports) if kind == "ChildExits" else int(kind == "ChildExit")


def _patch() -> None:
    module, owner, method = (
        ("supervision._supervisor", "Supervisor", "on_receive")
        if THREAD == "supervisor"
        else ("actors._job", "JobActor", "_run_attempt")
    )
    while not hasattr(sys.modules.get(module), owner):
        time.sleep(0.001)
    job: Any = getattr(sys.modules[module], owner)
    original = getattr(job, method)
    state: dict[str, Any] = {"t0": time.monotonic(), "prof": None, "n": 0, "done": False}

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not state["done"]:
            now = time.monotonic()
            if state["prof"] is None:
                if now - state["t0"] > WARM:
                    state["prof"], state["start"] = cProfile.Profile(), now
                    state["prof"].enable()
            else:
                state["n"] += _reports(args[0]) if THREAD == "supervisor" else 1
                if now - state["start"] > SPAN:
                    state["prof"].disable()
                    state["done"] = True
                    _write(state["prof"], state["n"])
        return original(self, *args, **kwargs)

    setattr(job, method, wrapped)


if OUT and "daemon" in sys.argv:
    threading.Thread(target=_patch, daemon=True).start()
