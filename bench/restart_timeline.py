"""Where a restart of ``/bin/true`` spends its time, step by step, in a real ``jobvisor daemon``.

The daemon runs one permanent ``/bin/true`` job with no backoff (as in
``command_restart.py``) for ``--seconds``. This script starts it as itself
with ``--daemon OUT``: that process wraps the restart path's hot calls with
``time.perf_counter_ns`` stamps, then runs ``cli.py`` as a person would;
the stamps go to ``OUT`` when the daemon stops (SIGTERM, by its PID). Each
restart is anchored on the old leader's exit, when the attempt first sees it
(its waiter's ``check_exit``); the figure per step is the median, over the
restarts after the first fifth, of when that step first came after the anchor.

    python bench/restart_timeline.py [--runtime threads|gevent] [--seconds 4]

Steps: the old attempt's ``close`` (kill the group, reap, release), its exit
report, the old thread's end, the supervisor's turn and ``_on_exit``, the
new incarnation's ``start_supervised``, the new thread's loop, and the next
``spawn`` (``fork_exec``). A command restarted in place (the default here: no
backoff) skips the report, the thread's end and ``start_supervised``: its
steps are the permit's answer, the next attempt and its start, the permit told
that the next command has started, and the exit reports told (under threads,
a tight loop's are told together: ``flush`` is then in few restarts). The
wrappers cost about a microsecond each.
"""

from __future__ import annotations

import argparse
import atexit
import os
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _supervisord_proc import launched, stop_and_time, tail

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = """\
version: 1
logging: {level: information, file: jobvisor.log}
supervisor:
  strategy: one_for_one
  backoff: {initial: 0, max: 0, jitter: 0}
  intensity: {max_restarts: 1000000000, within: 1s}
jobs:
  - {name: fast, command: ["/bin/true"], restart: permanent}
"""
# In the order a restart passes them; "exited" is the anchor.
STEPS = (
    ("close>", "the old attempt's close() begins"),
    ("close<", "it has killed, reaped and released"),
    ("inplace>", "it asks its permit to restart in place"),
    ("inplace<", "the permit has answered (yes: the next incarnation)"),
    ("attempt>", "the next attempt begins (in place: on the same thread)"),
    ("start>", "its command's start begins (pipes, then spawn)"),
    ("report>", "the old incarnation reports its exit"),
    ("loop<", "the old thread's actor loop has ended"),
    ("turn>", "the supervisor's turn begins"),
    ("onexit>", "its _on_exit begins"),
    ("startsup>", "start_supervised of the next incarnation"),
    ("startsup<", "it has returned (the thread is started)"),
    ("turn<", "the supervisor's turn ends"),
    ("loop>", "the new thread runs its actor loop"),
    ("spawn>", "the next spawn begins"),
    ("spawn<", "fork_exec has returned"),
    ("started>", "a restart in place: the permit hears the next command started"),
    ("flush>", "kept exit reports are told (under threads, a batch: not every restart)"),
    ("next", "the next leader's exit (one restart)"),
)


def instrument(out: str) -> None:
    """In the daemon's process: stamp the hot calls, write them to ``out`` at exit."""
    sys.path.insert(0, str(ROOT))
    import actors._command as command  # noqa: PLC0415 - after the path is set
    import actors._job as job  # noqa: PLC0415
    import actors._supervised as supervised  # noqa: PLC0415
    import actors._waiters as waiters  # noqa: PLC0415
    import supervision._inplace as inplace  # noqa: PLC0415
    import supervision._records as records  # noqa: PLC0415
    import supervision._supervisor as supervisor  # noqa: PLC0415

    stamps: list[tuple[str, int]] = []
    add, now = stamps.append, time.perf_counter_ns

    def wrap(owner: Any, name: str, tag: str, *, enter: bool = True, leave: bool = True) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if enter:
                add((tag + ">", now()))
            try:
                return inner(*args, **kwargs)
            finally:
                if leave:
                    add((tag + "<", now()))

        setattr(owner, name, wrapped)

    wrap(command, "spawn", "spawn")
    wrap(command._Child, "close", "close")
    wrap(supervised.SupervisedActor, "_jv_report", "report", leave=False)
    wrap(supervised.SupervisedActor, "_actor_loop", "loop")
    wrap(supervisor.Supervisor, "on_receive", "turn")
    wrap(supervisor.Supervisor, "_on_exit", "onexit")
    wrap(records, "start_supervised", "startsup")
    wrap(job.JobActor, "_restarted_in_place", "inplace")
    wrap(job.JobActor, "_run_attempt", "attempt", leave=False)
    wrap(command._Child, "start", "start", leave=False)
    wrap(inplace.InPlace, "tell_due", "started", leave=False)
    wrap(inplace.InPlace, "flush", "flush", leave=False)
    for waiter in (waiters.PollWaiter, waiters.HubWaiter):
        inner_check = waiter.check_exit

        # The attempt asks until the first True: that moment is the anchor.
        def check_exit(self: Any, *, pipes_closed: bool, _inner: Any = inner_check) -> bool:
            exited = bool(_inner(self, pipes_closed=pipes_closed))
            if exited:
                add(("exited", now()))
            return exited

        waiter.check_exit = check_exit  # type: ignore[method-assign]

    def dump() -> None:
        with open(out, "w") as f:  # noqa: PTH123
            f.writelines(f"{tag} {at}\n" for tag, at in stamps)

    atexit.register(dump)


def medians(path: Path) -> tuple[int, dict[str, tuple[float, int]]]:
    """Restarts counted; each step's median µs after the leader's exit, and in how many."""
    cycles: list[dict[str, int]] = []
    current: dict[str, int] | None = None
    for line in path.read_text().splitlines():
        tag, at = line.split()
        if tag == "exited":
            if current is not None:
                current["next"] = int(at)
                cycles.append(current)
            current = {"exited": int(at)}
        elif current is not None and tag not in current:
            current[tag] = int(at)
    cycles = cycles[len(cycles) // 5 :]  # the warm-up's out
    out = {}
    for tag, _ in STEPS:
        offsets = [(c[tag] - c["exited"]) / 1000 for c in cycles if tag in c]
        if offsets:
            out[tag] = (statistics.median(offsets), len(offsets))
    return len(cycles), out


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--daemon":
        out, rest = sys.argv[2], sys.argv[3:]
        instrument(out)
        sys.argv = [str(ROOT / "cli.py"), *rest]
        runpy.run_path(sys.argv[0], run_name="__main__")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", choices=("threads", "gevent"), default="threads")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long it restarts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "jobs.yaml").write_text(MANIFEST)
        stamps = directory / "stamps.txt"
        env = {
            k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOBVISOR_RUNTIME")
        }
        env["PYTHONPATH"] = str(ROOT)
        argv = [sys.executable, __file__, "--daemon", str(stamps), "--runtime", args.runtime]
        with launched([*argv, "daemon", "jobs.yaml"], directory, env) as daemon:
            time.sleep(args.seconds)  # the window itself: restarts happen all along it
            stop_and_time(daemon, 60)  # SIGTERM: the stamps are written at its exit
        if not stamps.exists():
            print(tail(directory / "output.log", 20), file=sys.stderr)
            return 1
        count, steps = medians(stamps)
    print(f"restart_timeline: runtime {args.runtime}, {count} restarts after the warm-up")
    print("  median µs after the old leader's exit:")
    for tag, what in STEPS:
        if tag in steps:
            median, seen = steps[tag]
            where = "" if seen == count else f", in {seen} of them"
            print(f"    {median:8.1f}  {what} ({tag}{where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
