"""The state dirs this process holds, and whether a path lies in one that went since.

``StateDirLock`` (``supervision._statedir``) adds its state dir here while it holds it.
Whatever makes a directory or reopens a file (``supervision._files.make_dirs``, the log's
and the output files' reopen in ``supervision._logging``) asks ``gone_dir`` first: once a
held state dir was moved, deleted or replaced, nothing of jobvisor makes anything at its
path again (another jobvisor may hold a new one there), and the files it has open are
written on where they went. Plain module state, as the lock it mirrors is the process's.
"""

# ruff: noqa: PTH100 - abspath, not resolve: a path is compared as it is given, no symlink followed

from __future__ import annotations

import os
from typing import Final

__all__ = ["gone_dir", "hold", "release"]

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
