"""One jobvisor per state dir: the lock ``run`` and the daemon hold, and how they notice losing it.

Two jobvisors on one state dir would run every job twice and write the same output
files, journal and ``http.json``; the lock (``STATE_DIR/daemon.lock``, an ``flock``)
refuses the second, whichever command each is. A state dir deleted (or replaced)
while one runs takes the lock with it, so the holder looks every second whether
the dir and the lock file are still the ones it made (``StateDirLock.lost``, on the
thread of a ``StateDirWatch``), and stops once they are not. A state dir moved away
(``mv .jobvisor .jv-old``) is told from one deleted, and where it went is said: its
journal, log and output files go on being written there until the stop's end, and
nothing is made at its old path again (``supervision._held``).
"""

# ruff: noqa: PTH115 - readlink of /proc/self/fd/N, a string in and out

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from typing import IO, TYPE_CHECKING, Final

import logbook

from actors._errors import JobvisorError
from actors._runtime import start_or_say
from supervision._files import check_parents, ensure_private_dir, open_private
from supervision._held import hold, release

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["LOCK_NAME", "WATCH_EVERY", "StateDirHeldError", "StateDirLock", "StateDirWatch"]

LOCK_NAME: Final = "daemon.lock"  # the name since the daemon alone took it: kept for old readers
log = logbook.Logger("supervision.statedir")

WATCH_EVERY: Final = 1.0  # seconds between two looks at the state dir and its lock file
# How long a start waits for the lock before it is refused: a look at who holds it (the
# client's hint, ``StateDirLock.holder``) takes it shared for an instant, and a start that
# came in that instant was refused, naming a holder that had ended.
LOCK_PATIENCE: Final = 0.25


class StateDirHeldError(JobvisorError):
    """Another jobvisor (a daemon or a ``run``) holds the state dir: stop it, or use another.

    Raised at the start of ``run`` and ``daemon`` (the CLI's exit 2); nothing was started.
    """


def _holder(text: str) -> str:
    """``daemon, pid 12`` from the lock file's ``12 daemon`` (``12`` alone: an older daemon's)."""
    pid, _, kind = text.strip().partition(" ")
    return f"{kind or 'daemon'}, pid {pid or 'unknown'}"


def _lock(handle: IO[str], patience: float) -> None:
    """Take ``handle``'s flock, exclusive, trying for ``patience`` seconds; BlockingIOError if
    another still holds it then (a jobvisor running there holds it for its whole life)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
        else:
            return


class StateDirLock:
    """Holds ``STATE_DIR/daemon.lock`` from its creation until ``close()``.

    ``kind`` (``run``, ``daemon``) is written beside the pid, so the refusal a second
    jobvisor gets names what holds the dir. The state dir's parents are checked first
    (``check_parents``), then the dir is made private or checked.
    """

    def __init__(self, state_dir: Path, kind: str) -> None:
        self.state_dir = state_dir
        self.kind = kind
        check_parents(state_dir)
        ensure_private_dir(state_dir)
        fd = open_private(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, "lock file")
        handle = os.fdopen(fd, "r+")
        try:
            _lock(handle, LOCK_PATIENCE)
        except BlockingIOError:
            handle.seek(0)
            owner = _holder(handle.read())
            handle.close()
            this = "this daemon" if kind == "daemon" else kind
            raise StateDirHeldError(
                f"another jobvisor ({owner}) holds {state_dir}: stop it, or give {this} "
                "its own --state-dir"
            ) from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {kind}\n")
        handle.flush()
        self._handle = handle
        # What it made: a state dir or lock file at these paths that is not these is not ours.
        # The dir held open too: once it is gone from its path, whether it was moved (and
        # where to) or deleted is asked of it.
        try:
            self._fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            handle.close()
            raise
        self._dir = _inode(os.fstat(self._fd))
        self._file = _inode(os.fstat(handle.fileno()))
        hold(state_dir, self._dir)

    def lost(self) -> str | None:
        """Why the lock no longer guards the state dir (deleted, replaced); None while it does.

        Two ``lstat`` calls: cheap enough to ask every second.
        """
        lock = self.state_dir / LOCK_NAME
        # Each asked of its own open file: the lock file alone deleted leaves its dir in place.
        for path, made, what, fd in (
            (self.state_dir, self._dir, "the state dir", self._fd),
            (lock, self._file, "its lock file", self._handle.fileno()),
        ):
            try:
                now = _inode(os.lstat(path))
            except FileNotFoundError:
                return f"{what} {path} {_went(fd)}"
            except OSError as exc:
                return f"{what} {path} cannot be seen any more ({exc.strerror})"
            if now != made:
                if (went := _went(fd)) != "was deleted":
                    return f"{what} {path} {went}, and another was made in its place"
                return f"{what} {path} was deleted and made again (or replaced)"
        return None

    def holder(self) -> str | None:
        """Who holds the lock file at the state dir's path now, if another does (``run, pid N``)."""
        try:
            with open(self.state_dir / LOCK_NAME, encoding="utf-8") as file:  # noqa: PTH123
                try:
                    fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return _holder(file.read())
        except OSError:
            return None
        return None

    def close(self) -> None:
        release(self.state_dir, self._dir)
        with contextlib.suppress(OSError):
            self._handle.close()
        fd, self._fd = self._fd, -1
        if fd >= 0:  # once: a second close must not close a number reused since
            with contextlib.suppress(OSError):
                os.close(fd)


class StateDirWatch:
    """Looks every ``every`` seconds, on a thread of its own, whether ``lock`` still guards its
    state dir, until ``close()``; once it does not, ``lost`` says why and ``on_lost(why,
    holder)`` is called, once, and the watch ends.

    ``holder`` is who holds a lock file at the state dir's path now (``run, pid 12``), if
    another jobvisor does. ``each`` runs before every look (the daemon's look at its terminal).
    Both run on the watch's thread: an exception there ends the watch, and is logged by the
    thread's excepthook. ``run`` and the daemon stop when their state dir is lost: its journal,
    lock and output files (the daemon's control socket too) went with it, and another jobvisor
    could start there and run every job twice.
    """

    def __init__(
        self,
        lock: StateDirLock,
        on_lost: Callable[[str, str | None], None],
        *,
        each: Callable[[], None] | None = None,
        every: float = WATCH_EVERY,
    ) -> None:
        self.lost: str | None = None
        self._lock = lock
        self._on_lost = on_lost
        self._each = each
        self._every = every
        self._done = threading.Event()
        # A host out of tasks: tried for a second, as jobvisor's other threads are; then the
        # rest runs, and only a loss of the state dir goes unseen.
        self._thread = start_or_say(
            lambda: threading.Thread(target=self._run, name="jv-statewatch", daemon=True),
            f"the {lock.kind}'s state dir is not watched: should it be moved or deleted, the "
            f"{lock.kind} runs on unaware of it",
        )

    def _run(self) -> None:
        while not self._done.wait(self._every):
            if self._each is not None:
                self._each()
            why = self._lock.lost()
            if why is not None:
                self.lost = why
                self._on_lost(why, self._lock.holder())
                return

    def close(self) -> None:
        """End the watch (at once, unless ``on_lost`` is running: it is waited for)."""
        self._done.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(5)


def _inode(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _went(fd: int) -> str:
    """``was moved to P`` or ``was deleted``, asked of the dir or file held open as ``fd``."""
    try:
        if os.fstat(fd).st_nlink == 0:
            return "was deleted"
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "was moved or deleted"
    if where.endswith(" (deleted)"):  # unlinked, its inode not yet freed
        return "was deleted"
    return f"was moved to {where}"
