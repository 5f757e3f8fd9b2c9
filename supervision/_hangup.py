"""After a terminal's hangup: the standard streams that were that terminal go to /dev/null.

Shared by `run` and the daemon, each of which stops gracefully when its terminal hangs up.
"""

from __future__ import annotations

import errno
import os
import termios

__all__ = ["off_the_terminal"]


def off_the_terminal() -> None:
    """Point the standard streams that are a hung-up terminal (EIO) at /dev/null.

    Writing a hung-up terminal fails: the log's stderr lines (which nobody can read any
    more) would, and so would a python job's print, and the interpreter's last flush (exit
    120). Safe in a signal handler: no lock.
    """
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for fd in (0, 1, 2):
            try:
                termios.tcgetattr(fd)
            except termios.error as exc:
                if exc.args[0] == errno.EIO:
                    os.dup2(null, fd)  # inheritable, as the stream it replaces
    finally:
        os.close(null)
