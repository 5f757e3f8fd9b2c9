"""The state dirs this process holds, and whether a path lies in one that went since.

``StateDirLock`` (``supervision._statedir``) adds its state dir here while it holds it.
Whatever makes a directory or reopens a file (``supervision._files.make_dirs``, the log's
and the output files' reopen in ``supervision._logging``) asks ``gone_dir`` first: once a
held state dir was moved, deleted or replaced, nothing of jobvisor makes anything at its
path again (another jobvisor may hold a new one there), and the files it has open are
written on where they went. Plain module state, as the lock it mirrors is the process's.
``lost_line`` is what ``run`` and the daemon say at ERROR when theirs went.
"""

# ruff: noqa: PTH100 - abspath, not resolve: a path is compared as it is given, no symlink followed

from __future__ import annotations

import os
from typing import Final, Literal

__all__ = ["gone_dir", "hold", "lost_line", "release"]

# abspath -> (st_dev, st_ino) of the directory made there; the process's, as its lock is.
_HELD: Final[dict[str, tuple[int, int]]] = {}


def hold(path: str | os.PathLike[str], ident: tuple[int, int]) -> None:
    _HELD[os.path.abspath(path)] = ident


def release(path: str | os.PathLike[str], ident: tuple[int, int]) -> None:
    where = os.path.abspath(path)
    if _HELD.get(where) == ident:  # a later holder of the same path keeps its entry
        del _HELD[where]


def gone_dir(path: str | os.PathLike[str]) -> str | None:
    """The held state dir that ``path`` is in (or is) and that is no longer the directory
    held there (moved, deleted, replaced); None when there is none. An ``lstat`` per held
    dir that contains ``path``: any thread, no lock."""
    if not _HELD:
        return None
    where = os.path.abspath(path)
    for held, ident in tuple(_HELD.items()):
        if where != held and not where.startswith(held + os.sep):
            continue
        try:
            st = os.lstat(held)
        except OSError:
            return held
        if (st.st_dev, st.st_ino) != ident:
            return held
    return None


# What went with a lost state dir, what that means and what is stopped, for each holder.
_LOST: Final = {
    "run": (
        "run",
        "its journal, lock and output files",
        "this run's record is lost and another jobvisor",
        "stopping every job",
    ),
    "daemon": (
        "the daemon",
        "its lock, control socket and journal",
        "no command reaches this daemon and another",
        "stopping",
    ),
}


def lost_line(why: str, holder: str | None, kind: Literal["run", "daemon"], code: int) -> str:
    """The ERROR line of a ``run`` or a daemon (``kind``) whose state dir went while it ran:
    ``why`` (``StateDirLock.lost``), the other jobvisor that holds its path now (``holder``,
    ``run, pid 12``) if one does, and the exit ``code`` it stops with."""
    who, went, so, stopping = _LOST[kind]
    now = f"; another jobvisor ({holder}) holds it now" if holder else ""
    return (
        f"{why} while {who} ran{now}: {went} went with it, so {so} could start there and run "
        f"every job twice; {stopping} (exit {code})"
    )
