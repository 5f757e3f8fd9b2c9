"""/proc readings and process custody for ``bench/vs_supervisord.py``.

Every figure is about one process (a supervisor), read from ``/proc`` by the
benchmark from outside: CPU from ``stat``, RSS from ``status``, PSS from
``smaps_rollup``. ``launched`` starts a supervisor and, whatever happens,
ends it and every descendant it left, each by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name may hold spaces and parentheses: split after its last ')'.
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` so far (not of its children)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for pid {pid}")


def rss_kib(pid: int) -> int:
    return _status(pid, "VmRSS")


def threads(pid: int) -> int:
    return _status(pid, "Threads")


def pss_kib(pid: int) -> int | None:
    """Proportional set size (shared pages divided among their users), if the kernel has it."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


@dataclass(frozen=True, slots=True)
class Proc:
    """A process as it was seen: its start time tells it apart from a later one with its PID."""

    pid: int
    started: int
    argv: tuple[str, ...]

    def alive(self) -> bool:
        """Still running: same PID and start time, and not a zombie."""
        try:
            fields = _stat_fields(self.pid)
        except (OSError, ValueError):
            return False
        return int(fields[19]) == self.started and fields[0] != "Z"


def _snapshot() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, start time) of every process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(int(entry.name))
            table[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return table


def _argv(pid: int) -> tuple[str, ...]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def descendants(pid: int) -> list[Proc]:
    """Every live process below ``pid`` (children, grandchildren, ...)."""
    table = _snapshot()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: list[Proc] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        proc = Proc(child, table[child][1], _argv(child))
        if proc.alive():
            found.append(proc)
        todo.extend(children.get(child, []))
    return found


def stop_and_time(popen: subprocess.Popen[bytes], timeout: float) -> float:
    """SIGTERM ``popen`` and wait for its exit; the seconds between the two."""
    start = time.perf_counter()
    popen.send_signal(signal.SIGTERM)
    popen.wait(timeout)
    return time.perf_counter() - start


@contextlib.contextmanager
def launched(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` with its output in ``cwd/output.log``; on the way out, end it and its tree.

    A supervisor that was already stopped cleanly leaves nothing to do. On an
    error (or a supervisor that would not stop) it is SIGKILLed by PID after
    its descendants were noted, and each of those still alive is SIGKILLed too.
    """
    with (cwd / "output.log").open("wb") as out:
        popen = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        yield popen
    finally:
        left = descendants(popen.pid) if popen.poll() is None else []
        if popen.poll() is None:
            popen.kill()
        popen.wait()
        for proc in left:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"
