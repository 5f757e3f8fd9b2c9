"""Per-job output files: a command's stdout and stderr also go to ``STATE_DIR/output/PATH.log``.

Each line is stamped with the time, its stream and the attempt's number::

    2025-05-01T10:00:00.123+02:00 stdout 3 the job's own bytes

and otherwise holds the job's bytes as it wrote them (no escaping: that is
for a terminal, which ``jobvisor logs`` does when it prints to one), with the
tree's secrets masked. The lines of one read from the pipe share a stamp and
go to the file in one write, so the pump pays one more system call per read,
not one per line. The file is rotated by size (``output: {max_bytes,
backups}``) like jobvisor's own log; directories are 0700, files 0600, and
no symlink is followed, at the file nor at a directory of the path.

A file that cannot be opened or written (a full disk, a read-only or missing
directory) is a WARNING in the log once per job until it can be written again
(and has stayed so ``SETTLE`` seconds: a flood that a rotation frees room for,
and fills again, is one trouble), then one INFO line with what it missed. Its
lines go to the log meanwhile, unless the job said ``log: false``: then they are
dropped, and counted.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import logbook

from actors import JobvisorError
from supervision._logging import _FileSink, _Trouble, log_takes
from supervision._logs import output_file
from supervision._spec import RotateSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._attempt import Attempt
    from supervision._spec import OutputSpec

__all__ = ["KeptOutput", "OutputFiles", "output_dir"]

log = logbook.Logger("supervision.output")

# How long a job's file must go on taking writes after a failure before the log says it is
# writable again (told with the next write after that).
SETTLE: Final = 5.0

# The level each stream's lines are logged at (actors._command): whether the log takes them.
_LEVELS: Final = {"stdout": logbook.INFO, "stderr": logbook.WARNING}


def output_dir(state_dir: Path) -> Path:
    """Where a state dir keeps its jobs' output files."""
    return state_dir / "output"


class OutputFiles:
    """The output files of one tree's jobs, under ``directory``; ``mask`` hides its secrets."""

    def __init__(self, directory: Path, mask: Callable[[str], str] = str) -> None:
        self.directory = directory
        self.mask = None if mask is str else mask  # str: the tree has no secret
        # Each job's trouble with its file, over all its attempts (each opens the file
        # again): said once per job, not once per attempt. Keyed by path and ``log``.
        self._troubles: dict[tuple[str, bool], _Trouble] = {}
        self._lock = threading.Lock()
        # Each job's file and the directories on its way, worked out once (pathlib's 60-odd
        # calls an attempt of a crash loop that prints); only ever added, the same each time.
        self._where: dict[str, tuple[Path, tuple[Path, ...]]] = {}

    def opener(self, spec: OutputSpec) -> KeptOutput:
        """What a job actor hands each attempt (``Attempt.output``) for a job kept as ``spec``:
        one per incarnation, whose attempts share the open file (see ``KeptOutput``)."""
        return KeptOutput(self, spec)

    def where(self, path: str) -> tuple[Path, tuple[Path, ...]]:
        """The output file of the job at ``path``, and the directories from ours to its own
        (each checked at every open). Any thread."""
        found = self._where.get(path)
        if found is None:
            file = Path(output_file(str(self.directory), path))
            parent = self.directory
            dirs = [parent]
            for part in file.relative_to(parent).parts[:-1]:
                parent /= part
                dirs.append(parent)
            found = self._where[path] = (file, tuple(dirs))
        return found

    def trouble(self, path: str, logged: bool) -> _Trouble:
        """The reporter of ``path``'s trouble with its file (``logged``: its lines go to the
        log all the same; else they are dropped)."""
        key = (path, logged)
        trouble = self._troubles.get(key)  # one dict read: entries are only ever added
        if trouble is not None:
            return trouble
        with self._lock:
            trouble = self._troubles.get(key)
            if trouble is None:
                file = output_file(str(self.directory), path)
                trouble = self._troubles[key] = _Trouble(
                    f"the output file {file}",
                    "output lines",
                    logged=logged,
                    say=partial(_say, path),
                    settle=SETTLE,
                )
        return trouble


def _say(path: str, level: int, text: str) -> None:
    log.log(level, "{}: {}", path, text, extra={"path": path})


class KeptOutput:
    """Opens each attempt's writer of one incarnation's output file, and keeps the file open
    from one attempt to the next until ``close()``.

    A command restarted in place runs its next attempt at once, on the same actor: a crash
    loop that prints opened and closed its file on every restart (its directories' checks, the
    open: 18 system calls and about 70 Python calls a restart). The job actor closes it when
    its attempts stop following each other at once (``actors._job``): a job waiting for a
    backoff, a retry's wait, a tick or a stop holds no file, nor do attempts that have not
    written to it for ``actors._job.OUTPUT_LINGER`` seconds (``idle_since``). A file moved or
    deleted meanwhile is noticed at the next write and opened again, each directory on its way
    checked (``_FileSink``).
    """

    __slots__ = ("_files", "_spec", "idle_since", "sink", "used_at")

    def __init__(self, files: OutputFiles, spec: OutputSpec) -> None:
        self._files = files
        self._spec = spec
        self.sink: _FileSink | None = None  # the open file, owned here; None: not open
        self.used_at = 0.0  # monotonic: when an attempt last began writing to it
        # ``used_at`` while the file is open and the attempt under way has not tried to write
        # yet, else None: a plain attribute, read at every start (``JobActor._work_started``).
        self.idle_since: float | None = None

    def __call__(self, attempt: Attempt) -> JobOutput:
        self.idle_since = None if self.sink is None else self.used_at
        return JobOutput(self._files, self._spec, attempt, self)

    def close(self) -> None:
        """Close the file; the next attempt opens it again. Idempotent."""
        self.idle_since = None
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.close()


class JobOutput:
    """One attempt's writer of its job's output file, opened at its first line.

    Runs in the attempt's thread only. A file that cannot be opened (a planted
    symlink, a full disk) is reported in the log, once for the job until it can be
    written again (``OutputFiles.trouble``), and the attempt's lines go to the log
    only, or nowhere with ``log: false`` (counted): output is never a reason for a
    job to fail.
    """

    __slots__ = ("_failed", "_files", "_kept", "_path", "_prefix", "_sink", "_spec", "_trouble")

    def __init__(
        self, files: OutputFiles, spec: OutputSpec, attempt: Attempt, kept: KeptOutput
    ) -> None:
        self._files = files
        self._kept = kept  # who owns the file, shared with the attempts before and after
        self._spec = spec
        self._path = attempt.path
        self._prefix = f" {{}} {attempt.number} "
        self._sink: _FileSink | None = None
        self._failed = False
        self._trouble = files.trouble(attempt.path, spec.log)

    def write(self, stream: str, lines: bytes) -> None:
        sink = self._sink or self._open(stream)
        if sink is None:
            # missed() counts only while the trouble lasts: its recovery told (another attempt
            # wrote the file since), the lines' fate is not asked of the log (a stat each).
            if self._trouble.troubled:
                self._trouble.missed(lines.count(b"\n") + 1, taken=self._taken(stream))
            return
        mask = self._files.mask
        if mask is not None:
            text = lines.decode("utf-8", "surrogateescape")
            masked = mask(text)
            if masked is not text:
                lines = masked.encode("utf-8", "surrogateescape")
        stamp = (_now() + self._prefix.format(stream)).encode()
        data = stamp + lines.replace(b"\n", b"\n" + stamp) + b"\n"
        limit = self._spec.max_bytes
        # Asked only when a write fails: the healthy path asks the log nothing.
        taken = partial(self._taken, stream)
        while len(data) > limit:  # a file rotates between writes: none may be bigger than it
            cut = data.rfind(b"\n", 0, limit) + 1 or data.find(b"\n", limit) + 1
            sink.write_bytes(data[:cut], taken=taken)
            data = data[cut:]
        if data:
            sink.write_bytes(data, taken=taken)

    def _taken(self, stream: str) -> bool:
        """Whether ``stream``'s lines get into the log now, for what its file misses: not
        with ``log: false``, nor while the log itself fails or writes from above their level."""
        return self._spec.log and log_takes(_LEVELS.get(stream, logbook.INFO))

    @property
    def logged(self) -> bool:
        """Whether the lines go to the log too: unless ``log: false``, even when its file
        cannot take them (that is the promise of ``log: false``: they are dropped, counted)."""
        return self._spec.log

    def close(self) -> None:
        self._sink = None  # its keeper's to close (``KeptOutput``)

    def _open(self, stream: str) -> _FileSink | None:
        kept = self._kept
        kept.idle_since = None
        kept.used_at = time.monotonic()
        sink = kept.sink
        if sink is not None:
            if sink.is_open:
                self._sink = sink  # the attempt before this one's, still open
                return sink
            kept.close()  # its reopen failed: tried once an attempt, as a first open is
        if self._failed:
            return None
        path, dirs = self._files.where(self._path)
        try:
            rotate = _rotate(self._spec.max_bytes, self._spec.backups)
            sink = _FileSink(
                path, rotate, _local_now, output=True, trouble=self._trouble, dirs=dirs
            )
        except (OSError, JobvisorError) as exc:
            self._failed = True  # not again in this attempt: once per write would be a flood
            self._trouble.failed(exc, 0, taken=self._taken(stream))
            return None
        kept.sink = sink
        self._sink = sink
        return sink


@lru_cache(maxsize=64)
def _rotate(max_bytes: int, backups: int) -> RotateSpec:
    return RotateSpec(max_bytes=max_bytes, backups=backups)


def _local_now() -> datetime:
    return datetime.now().astimezone()


def _now() -> str:
    return _local_now().isoformat(timespec="milliseconds")
