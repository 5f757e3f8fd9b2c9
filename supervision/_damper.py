"""Crash-loop damping: the log keeps the first lines of a burst of identical failures, then sums up.

A permanent job that exits at once, restarted with no backoff, would
otherwise write three or four lines per restart forever. ``CrashLoopDamper``
decides, record by record, what the log handler writes; it is pure (time
comes from an injected monotonic clock) and knows nothing of logbook.

A *burst* is a run of failures of one child with the same error, each less
than ``interval`` seconds after the previous one. Its first ``keep``
failures are logged in full, with every line around them. After that a
record of a kind already written during the burst (same channel, level,
message template and text arguments: "started", "attempt N failed", the
job's repeated output, "restart N in 0s") is held back, and at most once
per ``interval`` per child one line says how many failures were held::

    crash: failed 412 more times in the last 10 s, same error: command ... exited with 1

A summary is written with the next record once due, or, if none comes
(the child runs again and the tree is quiet), when it falls due: the log
handler asks ``next_due`` and ``due``. A record of a new kind (gave up,
cooling down, a different output line) is always written, after the
summary of what was held before it; so is a
record of what a person or the supervisor did to the child (stopping,
stopped, start requested: ``acted``), every time, since a loop does not
repeat those by itself; and so is the failure that ends in a give-up, an
escalation or a cooldown (an ``acted`` failure), the decision's cause.
A different error, or a pause of ``interval``, ends the burst, and so
does a person's start of the child (``forget``): its next failures are a
new story. Only the log is damped: the journal and events still see every
attempt, and ``--log-level verbose`` turns damping off.

Two trees in one process (``start_tree`` twice) may each have a job ``crash``: the
paths are only unique inside a tree, so each tree has a damper of its own
(``TreeDampers``), released when that tree stops. A record of a tree that is not running
(a thread of a stopped tree that still runs, abandoned at its stop) is damped with those of
no tree: a damper made for it would never be released.

A job that exits *cleanly* and is restarted at once (a permanent command
that does its work and ends) loops the same way and floods the log with the
same line; its exits are a burst too (``clean``), summed up as::

    fast: exited and was restarted 412 more times in the last 10 s, each exit a success
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors._errors import LAST_LINE_SAID

if TYPE_CHECKING:
    from collections.abc import Callable, Container, Hashable

__all__ = ["CLEAN", "CrashLoopDamper", "Summary", "TreeDampers"]

# The "error" of a burst of clean exits: no failure's text is this (each names its error).
CLEAN = "exited (succeeded)"


@dataclass(frozen=True, slots=True)
class Summary:
    """How many failures of ``path`` were held back, over how long, and their error."""

    path: str
    count: int
    seconds: float
    error: str
    restarts: int = 0  # restart lines held with them (a clean loop's are its exits)
    escalations: int = 0  # a group's "escalating" lines held with them

    @property
    def clean(self) -> bool:
        """A loop of clean exits, each restarted."""
        return self.error == CLEAN

    def text(self) -> str:
        times = "time" if self.count == 1 else "times"
        # Tenths under 10 s: a quick loop's summary said "in the last 0 s".
        span = f"{self.seconds:.1f}" if self.seconds < 10 else f"{self.seconds:.0f}"
        if self.clean:
            return (
                f"{self.path}: exited and was restarted {self.count} more {times} "
                f"in the last {span} s, each exit a success"
            )
        said = [f"failed {self.count} more {times}"]
        for did, n in (("escalated", self.escalations), ("was restarted", self.restarts)):
            if n:
                said.append(f"{did} {n} more {'time' if n == 1 else 'times'}")
        done = " and ".join([", ".join(said[:-1]), said[-1]] if len(said) > 1 else said)
        return f"{self.path}: {done} in the last {span} s, same error: {self.error}"


@dataclass(slots=True)
class _Burst:
    error: str
    last_failure: float  # clock time of its latest failure
    key: str = ""  # what a failure of the same loop has too (``same_error``)
    failures: int = 0
    seen: set[Hashable] = field(default_factory=set)  # kinds of record written during it
    held: int = 0  # failures held back since the last summary
    held_since: float = 0.0  # clock time of the first of them
    # Restart and escalation lines held since the last summary: only while ``held`` (a
    # decision held with no failure held would be in no summary: the burst's end writes one
    # only for held failures).
    restarts_held: int = 0
    escalations_held: int = 0
    summarised_at: float | None = None  # clock time of its last summary, if any
    # The longest delay a restart line written during it said: a delay twice as long is news
    # (a backoff growing), not the loop's repetition.
    shown_delay: float = 0.0
    # Clock time of the last line a reader saw of it (a failure in full, or a summary): a
    # summary counts "in the last N s" from there, not from its first held failure (one held
    # failure summed up with the "gave up" that follows at once said "in the last 0.0 s").
    shown_at: float = 0.0


def same_error(error: str) -> str:
    """What failures of one loop have in common: the error, a command's last line on stderr
    aside (a time, a pid, a request's id in it: the loop is the same one, and its summary
    says the first one's line)."""
    return error.partition(LAST_LINE_SAID)[0]


class CrashLoopDamper:
    """Decides which records of a crash loop the log writes. Not thread-safe: lock around it.

    ``keep`` failures of a burst are written in full; ``interval`` seconds
    is both the longest pause inside a burst and the shortest time between
    two summaries of one child. ``clock`` is monotonic seconds.
    """

    def __init__(
        self, *, keep: int = 3, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if keep < 1 or interval <= 0:
            raise ValueError(f"keep must be >= 1 and interval > 0, got {keep} and {interval}")
        self.keep = keep
        self.interval = interval
        self._clock = clock
        self._bursts: dict[str, _Burst] = {}
        self._holding: set[str] = set()  # paths whose burst holds failures not yet summarised
        # For each group, how many of the paths below it hold failures: whether a line about
        # it must let summaries out first is one lookup, not a scan of every holding loop
        # (with 10,000 looping jobs the scan took 0.58 ms a record).
        self._under: dict[str, int] = {}
        # At most the earliest "since" among the holding bursts: until an interval after it,
        # no summary is due, and a record need not look at every holding child (a tree
        # with thousands of them in a crash loop).
        self._earliest = math.inf

    def now(self) -> float:
        return self._clock()

    def hold(
        self,
        path: str,
        kind: Hashable,
        failure: str | None,
        now: float,
        *,
        restart: bool = False,
        delay: float = 0.0,
    ) -> bool:
        """Hold this record back and count it, if ``admit`` at ``now`` would write nothing.

        The gate's one pass, for a caller that asks before it makes a record (a
        crash loop's lines, of which nearly every one is held): True leaves the
        damper as ``admit`` would have; False changes nothing, and the caller
        makes the record (its ``admit`` decides). ``kind`` is only read for a
        record that is not a failure: a held failure's is never needed.
        """
        if now - self._earliest >= self.interval and self._due_paths(now):
            return False  # a summary is due: the record's admit writes it
        burst = self._bursts.get(path)
        if burst is None or now - burst.last_failure >= self.interval or burst.failures < self.keep:
            return False
        if path in self._under:
            return False  # summaries of loops under this group come first: admit's
        if failure is not None:
            held = burst.key == same_error(failure)
            if held:
                self._failed(path, burst, kind, now)
            return held
        held = kind in burst.seen and not (restart and (not burst.held or _grown(burst, delay)))
        if held:
            burst.restarts_held += restart
        return held

    def admit(
        self,
        path: str | None,
        kind: Hashable,
        failure: str | None = None,
        *,
        now: float | None = None,
        acted: bool = False,
        restart: bool = False,
        delay: float = 0.0,
        escalation: bool = False,
    ) -> tuple[list[Summary], bool]:
        """One record: the summaries to write before it, and whether to write it.

        ``path`` is the child the record is about (None: not about a child,
        always written); ``kind`` what makes two records "the same line";
        ``failure`` the error text when the record reports the child failing,
        or ``CLEAN`` when it reports a clean exit that is restarted (a burst of
        them is a loop too). ``acted``: the record says what a person or the
        supervisor did to the child (a stop, a start), which the loop does not
        repeat by itself: always written, as a new kind is; with a ``failure``, it
        is the failure the supervisor gives up, escalates or cools down after
        (counted in the burst, written in full after the summary of what was held). ``restart``: the
        record says the child is restarted (after ``delay`` seconds); held ones are
        counted in the summary, and one whose delay is twice the longest written
        during the burst is written (a backoff growing is news, as a new kind is).
        ``escalation``: the record says a group escalates, counted as a restart is. A repeated
        restart or escalation is held only after a failure held: one that follows a failure
        written in full (or summed up just now) is written, or it would be in no summary.
        """
        now = self._clock() if now is None else now
        out = self._due(now)
        if path is None:
            return out, True
        out += self._inside(path, now)
        burst = self._bursts.get(path)
        if burst is not None and now - burst.last_failure >= self.interval:
            out += self._end(path, now)  # quiet for an interval: the loop is over
            burst = None
        if failure is not None:
            key = same_error(failure)
            if burst is None or burst.key != key:
                if burst is not None:
                    out += self._end(path, now)
                burst = self._bursts[path] = _Burst(failure, now, key=key, shown_at=now)
            return out, self._failed(path, burst, kind, now) or self._deciding(
                path, burst, acted, out
            )
        if burst is None or burst.failures < self.keep:
            if burst is not None:
                _written(burst, kind, restart, delay)
            return out, True
        if kind in burst.seen and not acted:
            return out, self._repeated(burst, restart, delay, escalation)
        # Something new about a looping child: say what was held, then show it.
        _written(burst, kind, restart, delay)
        if burst.held:
            out.append(self._summarise(path, burst, now))
        return out, True

    def _deciding(self, path: str, burst: _Burst, acted: bool, out: list[Summary]) -> bool:
        """Whether a failure just held is the one a give-up, escalation or cooldown follows
        (``acted``): then it is the decision's cause, written in full after the summary of
        what was held before it (in ``out``)."""
        if not acted:
            return False
        burst.held -= 1
        if burst.held:
            out.append(self._summarise(path, burst, burst.last_failure))
        else:
            self._stop_holding(path)
        burst.shown_at = burst.last_failure
        return True

    @staticmethod
    def _repeated(burst: _Burst, restart: bool, delay: float, escalation: bool) -> bool:
        """Whether to write a line the loop has written before (held, and counted, if not)."""
        decision = restart or escalation
        if not decision or (burst.held and not (restart and _grown(burst, delay))):
            burst.restarts_held += restart
            burst.escalations_held += escalation
            return False
        # A decision with no failure held before it (no summary would count it), or a restart
        # whose delay grew: written, and what is held stays held (its number says how many
        # came before; the summary counts them when due).
        if restart:
            burst.shown_delay = max(burst.shown_delay, delay)
        return True

    def _inside(self, path: str, now: float) -> list[Summary]:
        """Summaries of the loops held under the group ``path``: a line about a group (its
        restart, give-up, escalation) comes after them, as a child's own new line does."""
        if path not in self._under:
            return []
        inside = path + "/"
        held = sorted(p for p in self._holding if p.startswith(inside))
        return [self._summarise(p, self._bursts[p], now) for p in held]

    def _start_holding(self, path: str) -> None:
        if path in self._holding:
            return
        self._holding.add(path)
        for group in _groups_above(path):
            self._under[group] = self._under.get(group, 0) + 1

    def _stop_holding(self, path: str) -> None:
        if path not in self._holding:
            return
        self._holding.discard(path)
        for group in _groups_above(path):
            left = self._under[group] - 1
            if left:
                self._under[group] = left
            else:
                del self._under[group]

    def _failed(self, path: str, burst: _Burst, kind: Hashable, now: float) -> bool:
        """Count one more failure of ``burst``; return whether to write its record."""
        burst.failures += 1
        burst.last_failure = now
        if burst.failures <= self.keep:
            burst.seen.add(kind)
            burst.shown_at = now
            return True
        if not burst.held:
            burst.held_since = now
            self._start_holding(path)
            self._earliest = min(self._earliest, _since(burst))
        burst.held += 1
        return False

    def forget(self, path: str) -> list[Summary]:
        """A person started ``path`` again: its loop (and those of the jobs under it, for a
        group) is over, and its next failures are a new story, written in full.

        Returns the summaries of what was held, to be written first.
        """
        inside = path + "/"
        ended = sorted(p for p in self._bursts if p == path or p.startswith(inside))
        return [summary for p in ended for summary in self._end(p, self._clock())]

    @property
    def holding(self) -> bool:
        """Whether some child's failures are held back, not yet summed up."""
        return bool(self._holding)

    def next_due(self) -> float | None:
        """When a held child's summary may fall due (never later; maybe earlier), or None."""
        return self._earliest + self.interval if self._holding else None

    def due(self) -> list[Summary]:
        """The summaries due now, though no record comes: a loop that went quiet is told too."""
        return self._due(self._clock())

    def flush(self) -> list[Summary]:
        """Summaries of every failure still held back (when logging stops)."""
        now = self._clock()
        return [self._summarise(path, self._bursts[path], now) for path in sorted(self._holding)]

    def _due(self, now: float) -> list[Summary]:
        """Summaries of children holding failures for an interval since their last summary.

        Checked on every record, whichever child it is about, so a loop that
        went quiet (its child now runs, or it only logs held lines) is still
        reported once its interval is up.
        """
        return [self._summarise(path, self._bursts[path], now) for path in self._due_paths(now)]

    def _due_paths(self, now: float) -> list[str]:
        """The holding children whose summary is due, in order; only a hint is updated."""
        if now - self._earliest < self.interval:
            return []
        due: list[str] = []
        earliest = math.inf
        for path in self._holding:
            since = _since(self._bursts[path])
            earliest = min(earliest, since)
            if now - since >= self.interval:
                due.append(path)
        # Still counting the due ones, which stay until summarised: a hint may be early, never
        # late (an early one costs one more scan).
        self._earliest = earliest
        return sorted(due)

    def _end(self, path: str, now: float) -> list[Summary]:
        burst = self._bursts.pop(path)
        return [self._summarise(path, burst, now)] if burst.held else []

    def _summarise(self, path: str, burst: _Burst, now: float) -> Summary:
        summary = Summary(
            path,
            burst.held,
            now - burst.shown_at,
            burst.error,
            burst.restarts_held,
            burst.escalations_held,
        )
        burst.held = burst.restarts_held = burst.escalations_held = 0
        burst.summarised_at = burst.shown_at = now
        self._stop_holding(path)
        return summary


class TreeDampers:
    """A ``CrashLoopDamper`` per tree (``None``: records of no tree's): one tree's loop neither
    holds back nor counts another's lines about a job of the same path. The same lock as a
    damper's guards it; the questions about every loop (``holding``, ``due``...) ask each.
    ``running``: the ids of the trees started and not yet stopped, which alone get a damper.
    """

    def __init__(
        self,
        *,
        running: Container[str],
        keep: int = 3,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first = CrashLoopDamper(keep=keep, interval=interval, clock=clock)  # checks them
        self._clock = clock
        # The clock itself, not a method calling it: the log's gate reads it twice a restart.
        self.now: Callable[[], float] = clock
        self._running = running
        self._dampers: dict[str | None, CrashLoopDamper] = {None: self._first}

    def of(self, tree: str | None) -> CrashLoopDamper:
        """The damper of ``tree``'s records, made at its first; no tree's for one not running."""
        damper = self._dampers.get(tree)
        if damper is None:
            first = self._first
            if tree not in self._running:
                return first  # released (or never started): nothing would release one made now
            damper = CrashLoopDamper(keep=first.keep, interval=first.interval, clock=self._clock)
            self._dampers[tree] = damper
        return damper

    def release(self, tree: str) -> list[Summary]:
        """``tree`` stopped: its damper goes, and what it held is summed up now."""
        damper = self._dampers.pop(tree, None)
        return [] if damper is None else damper.flush()

    @property
    def trees(self) -> int:
        """How many dampers are kept, no tree's included."""
        return len(self._dampers)

    @property
    def holding(self) -> bool:
        return any(damper.holding for damper in self._dampers.values())

    def next_due(self) -> float | None:
        due = [d for d in (damper.next_due() for damper in self._dampers.values()) if d is not None]
        return min(due) if due else None

    def due(self) -> list[Summary]:
        return [summary for damper in self._dampers.values() for summary in damper.due()]

    def flush(self) -> list[Summary]:
        return [summary for damper in self._dampers.values() for summary in damper.flush()]


def _groups_above(path: str) -> list[str]:
    """The groups ``path`` is under, innermost last: ``a/b/c`` -> ``a``, ``a/b``."""
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def _since(burst: _Burst) -> float:
    """When the interval before ``burst``'s next summary started."""
    return burst.held_since if burst.summarised_at is None else burst.summarised_at


def _grown(burst: _Burst, delay: float) -> bool:
    """Whether a restart after ``delay`` says the backoff grew since ``burst``'s last one shown."""
    return delay > 0 and delay >= 2 * burst.shown_delay


def _written(burst: _Burst, kind: Hashable, restart: bool, delay: float) -> None:
    """A line of ``kind`` is written during ``burst`` (with ``restart``, one after ``delay``)."""
    burst.seen.add(kind)
    if restart:
        burst.shown_delay = max(burst.shown_delay, delay)
