"""``jobvisor top``: a live view of the daemon's tree in the terminal, redrawn twice a second.

One row per child (path, state, restarts, last exit, next start), groups
indented, states coloured on a colour terminal; a long last exit is cut so
that every column fits the terminal's width. The status comes from the
control socket like ``jobvisor status``; ``q`` or Ctrl-C quits with 0. It uses
the standard library's ``curses`` (a table redrawn in place needs nothing
more), and imports nothing of the runtime.
"""

from __future__ import annotations

import contextlib
import curses
import itertools
import sys
import time

from supervision._client import NoDaemonError, find_state_dir, request
from supervision._printable import printable
from supervision._table import _exit_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["HEADER", "layout", "rows", "run_top"]

REFRESH: Final = 0.5  # seconds between two status requests
_KEY_WAIT_MS: Final = 100  # how long one wait for a key lasts: q is heeded at once
# State -> colour; the others (stopped, succeeded, pending) keep the terminal's own.
_COLOURS: Final = {
    "running": curses.COLOR_GREEN,
    "probation": curses.COLOR_CYAN,
    "starting": curses.COLOR_CYAN,
    "stopping": curses.COLOR_CYAN,
    "backoff": curses.COLOR_YELLOW,
    "cooldown": curses.COLOR_YELLOW,
    "waiting": curses.COLOR_YELLOW,
    "failed": curses.COLOR_RED,
    "gave_up": curses.COLOR_RED,
}
HEADER: Final = ("PATH", "STATE", "RESTARTS", "LAST EXIT", "NEXT START")
_LAST_EXIT: Final = HEADER.index("LAST EXIT")
_MIN_LAST_EXIT: Final = len("LAST EXIT")  # the narrowest it is cut to: its header stays whole
_GAP: Final = 2  # spaces between two columns


def rows(doc: dict[str, Any], now: float) -> list[tuple[str, ...]]:
    """The table's rows for a status document: indented names, and ``now`` for countdowns."""
    out: list[tuple[str, ...]] = []

    def visit(nodes: list[dict[str, Any]], depth: int) -> None:
        for node in nodes:
            group = node.get("kind") == "group"
            name = "  " * depth + str(node.get("name", node.get("path"))) + ("/" if group else "")
            at = node.get("next_start_at")
            upcoming = f"in {max(0.0, at - now):.1f}s" if isinstance(at, int | float) else "-"
            last = printable(_exit_text(node.get("last_exit"), str).splitlines()[0])
            out.append((name, str(node["state"]), str(node["restarts"]), last, upcoming))
            visit(node.get("children") or [], depth + 1)

    visit(doc.get("children") or [], 0)
    return out


def layout(table: list[tuple[str, ...]], width: int) -> list[list[tuple[int, str]]]:
    """Each row's cells, with the column each starts at, for a screen ``width`` wide.

    A column is as wide as its widest cell, but LAST EXIT (an error can be a
    line long) gives up room, its text cut with an ellipsis, so that NEXT
    START still fits. On a screen too narrow even for that, the screen's edge
    cuts what does not fit, the first columns staying whole.
    """
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    over = sum(widths) + _GAP * (len(widths) - 1) - width
    if over > 0:
        widths[_LAST_EXIT] = max(_MIN_LAST_EXIT, widths[_LAST_EXIT] - over)
    starts = list(itertools.accumulate((w + _GAP for w in widths[:-1]), initial=0))
    return [
        [(x, _cut(cell, w)) for x, cell, w in zip(starts, row, widths, strict=True)]
        for row in table
    ]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_top(manifest: str, state_dir: str | None) -> int:
    """The ``top`` command: 0 when quit, 3 with no daemon, 2 without a terminal."""
    directory = find_state_dir(manifest, state_dir)
    try:
        reply = request(directory, {"op": "status"}, timeout=5.0)
    except NoDaemonError as exc:
        sys.stderr.write(f"jobvisor: {exc}\n")
        return 3
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        sys.stderr.write("jobvisor: top needs a terminal; use `jobvisor status` in scripts\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        curses.wrapper(_Screen(directory, reply).loop)
    return 0


class _Screen:
    """The curses loop: a status request every ``REFRESH`` seconds, keys in between."""

    def __init__(self, directory: str, first: dict[str, Any]) -> None:
        self.directory = directory
        self.reply = first
        self.problem = ""  # why the last request failed; "" when it worked
        self.colours: dict[str, int] = {}

    def loop(self, screen: Any) -> None:
        self._setup(screen)
        fetched = time.monotonic()
        while True:
            self._draw(screen)
            deadline = fetched + REFRESH
            while (left := deadline - time.monotonic()) > 0:
                screen.timeout(max(1, min(_KEY_WAIT_MS, int(left * 1000))))
                key = screen.getch()
                if key in (ord("q"), ord("Q")):
                    return
                if key == curses.KEY_RESIZE:
                    self._draw(screen)
            fetched = time.monotonic()
            self._fetch()

    def _setup(self, screen: Any) -> None:
        with contextlib.suppress(curses.error):  # a terminal that cannot hide it shows it
            curses.curs_set(0)
        if curses.has_colors():
            curses.use_default_colors()
            for n, (state, colour) in enumerate(_COLOURS.items(), 1):
                curses.init_pair(n, colour, -1)
                self.colours[state] = curses.color_pair(n)
        screen.keypad(True)  # noqa: FBT003 - curses' own signature

    def _fetch(self) -> None:
        try:
            self.reply = request(self.directory, {"op": "status"}, timeout=2.0)
            self.problem = ""
        except NoDaemonError as exc:
            self.problem = str(exc)

    def _draw(self, screen: Any) -> None:
        height, width = screen.getmaxyx()
        screen.erase()
        result = self.reply.get("result") if self.reply.get("ok") else None
        title = f"jobvisor top  {self.directory}  {time.strftime('%H:%M:%S')}  (q quits)"
        self._put(screen, 0, title, width, curses.A_BOLD)
        if self.problem:
            self._put(screen, 1, printable(self.problem), width, self.colours.get("failed", 0))
        elif result is None:
            self._put(screen, 1, printable(str(self.reply.get("error"))), width)
        table = [HEADER, *rows(result or {}, time.time())]
        for y, placed in enumerate(layout(table, width)[: max(0, height - 3)], 2):
            for i, (x, cell) in enumerate(placed):
                attr = curses.A_BOLD if y == 2 else 0
                if i == 1 and y > 2:
                    attr = self.colours.get(cell, 0)
                self._put(screen, y, cell, width - x, attr, x=x)
        if result is not None and result.get("breakers"):
            breakers = ", ".join(f"{k}={v}" for k, v in result["breakers"].items())
            y = min(len(table) + 3, height - 1)
            self._put(screen, y, f"breakers: {breakers}", width)
        screen.refresh()

    @staticmethod
    def _put(screen: Any, y: int, text: str, room: int, attr: int = 0, *, x: int = 0) -> None:
        if room <= 0:
            return
        with contextlib.suppress(curses.error):  # the bottom-right cell, or a shrunk terminal
            screen.addnstr(y, x, text, room, attr)
