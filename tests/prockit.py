"""What this process holds, read from /proc: open fds, child processes, zombies, resident memory.

Shared by ``tests/test_leaks.py`` and ``bench/leaks.py``; standard library
only, so a benchmark can import it before or after choosing its runtime.
"""

from __future__ import annotations

import os
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """Resident bytes of this process now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def fds() -> dict[int, str]:
    """Open fds and what each points to; the listing's own fd is closed by the time it is read."""
    out: dict[int, str] = {}
    for entry in Path("/proc/self/fd").iterdir():
        try:
            out[int(entry.name)] = str(entry.readlink())
        except FileNotFoundError:
            continue
    return out


def children(of: int | None = None) -> dict[int, str]:
    """Our child processes (or ``of``'s) and their state letter (Z: exited, nobody reaped it)."""
    me, out = os.getpid() if of is None else of, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name in parentheses may hold spaces: split after its end.
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == me:
            out[int(entry.name)] = state
    return out


def a_zombie() -> int | None:
    """One of our children that exited and was not reaped yet, if any: one waitid, which
    neither reaps it nor reads /proc (a few ms a call, with many processes on the machine)."""
    try:
        found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None  # no children at all
    return None if found is None else found.si_pid


def zombies() -> list[int]:
    """Our children that exited and were not reaped yet."""
    return sorted(pid for pid, state in children().items() if state == "Z")


def running(argv: tuple[str, ...]) -> set[int]:
    """Our child processes running exactly ``argv`` (read from their cmdline)."""
    wanted = b"".join(os.fsencode(a) + b"\0" for a in argv)
    found = set()
    for pid in children():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == wanted:
                found.add(pid)
        except OSError:
            continue  # gone meanwhile
    return found
