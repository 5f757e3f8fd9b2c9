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
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import logbook

from actors import JobvisorError, describe
from supervision._files import ensure_private_dir
from supervision._logging import _FileSink
from supervision._logs import output_file
from supervision._spec import RotateSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._attempt import Attempt, OutputSink
    from supervision._spec import OutputSpec

__all__ = ["OutputFiles", "output_dir"]

log = logbook.Logger("supervision.output")


def output_dir(state_dir: Path) -> Path:
    """Where a state dir keeps its jobs' output files."""
    return state_dir / "output"


class OutputFiles:
    """The output files of one tree's jobs, under ``directory``; ``mask`` hides its secrets."""

    def __init__(self, directory: Path, mask: Callable[[str], str] = str) -> None:
        self.directory = directory
        self.mask = None if mask is str else mask  # str: the tree has no secret

    def opener(self, spec: OutputSpec) -> Callable[[Attempt], OutputSink]:
        """What a job actor hands each attempt (``Attempt.output``) for a job kept as ``spec``."""
        return partial(JobOutput, self, spec)


class JobOutput:
    """One attempt's writer of its job's output file, opened at its first line.

    Runs in the attempt's thread only. A file that cannot be opened (a planted
    symlink, a full disk) is reported once in the log, and the attempt's
    lines go to the log only: output is never a reason for a job to fail.
    """

    __slots__ = ("_failed", "_files", "_missed", "_path", "_prefix", "_sink", "_spec")

    def __init__(self, files: OutputFiles, spec: OutputSpec, attempt: Attempt) -> None:
        self._files = files
        self._spec = spec
        self._path = attempt.path
        self._prefix = f" {{}} {attempt.number} "
        self._sink: _FileSink | None = None
        self._failed = False
        self._missed = False  # the last lines written did not reach the file

    def write(self, stream: str, lines: bytes) -> None:
        self._missed = False
        sink = self._sink or self._open()
        if sink is None:
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
        while len(data) > limit:  # a file rotates between writes: none may be bigger than it
            cut = data.rfind(b"\n", 0, limit) + 1 or data.find(b"\n", limit) + 1
            if not sink.write_bytes(data[:cut]):
                self._missed = True
            data = data[cut:]
        if data and not sink.write_bytes(data):
            self._missed = True

    @property
    def logged(self) -> bool:
        """Whether the lines go to the log too: unless ``log: false``, and the file takes them
        (asked after each ``write``: lines its file could not take go to the log)."""
        return self._spec.log or self._failed or self._missed

    def close(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()

    def _open(self) -> _FileSink | None:
        if self._failed:
            return None
        path = Path(output_file(str(self._files.directory), self._path))
        try:
            # Each directory on the way is checked: O_NOFOLLOW guards the file's name only.
            ensure_private_dir(self._files.directory, "output directory")
            parent = self._files.directory
            for part in path.relative_to(parent).parts[:-1]:
                parent /= part
                ensure_private_dir(parent, "output directory")
            rotate = RotateSpec(max_bytes=self._spec.max_bytes, backups=self._spec.backups)
            self._sink = _FileSink(path, rotate, _local_now, output=True)
        except (OSError, JobvisorError) as exc:
            self._failed = True
            log.warning("{}: its output goes to the log only: {}", self._path, describe(exc))
            return None
        return self._sink


def _local_now() -> datetime:
    return datetime.now().astimezone()


def _now() -> str:
    return _local_now().isoformat(timespec="milliseconds")
