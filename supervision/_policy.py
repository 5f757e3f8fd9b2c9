"""Restart policies as pure values and pure decisions over an explicit history.

Nothing here reads a clock, sleeps or touches an actor: ``decide(policy,
history, now, rand)`` returns what to do and the history after it, so every
rule of SPEC §2 is tested as a plain function with exact times.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from actors import Outcome
from actors._checks import need_count, need_duration
from actors._exponential import Exponential, check_growth

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Backoff",
    "Cooldown",
    "CooldownPolicy",
    "Decision",
    "Escalate",
    "GiveUp",
    "History",
    "Intensity",
    "OnExhausted",
    "Restart",
    "RestartPolicy",
    "RestartType",
    "Strategy",
    "decide",
    "decide_probation_failure",
    "wants_restart",
]


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one of them fails."""

    ONE_FOR_ONE = "one_for_one"  # only the failed child
    ONE_FOR_ALL = "one_for_all"  # every child, stopped in reverse and started in order
    REST_FOR_ONE = "rest_for_one"  # the failed child and every child after it


class RestartType(enum.StrEnum):
    """Which exits of a child lead to a restart."""

    PERMANENT = "permanent"  # any exit
    TRANSIENT = "transient"  # failures only (the default)
    TEMPORARY = "temporary"  # never


class OnExhausted(enum.StrEnum):
    """What a supervisor does when a failure would exceed its intensity."""

    GIVE_UP = "give_up"
    ESCALATE = "escalate"
    COOLDOWN = "cooldown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff(Exponential):
    """Delay before restart ``n`` in the window: ``min(max, initial * multiplier**(n-1))``.

    Jitter moves it by up to ±``jitter`` of itself but never above ``max``.
    """

    FIELD: ClassVar[str] = "backoff"


@dataclass(frozen=True, slots=True, kw_only=True)
class Intensity:
    """At most ``max_restarts`` restarts inside any sliding window of ``within`` seconds."""

    max_restarts: int = 3
    within: float = 60.0

    def __post_init__(self) -> None:
        need_count(self.max_restarts, "intensity.max_restarts", 0)
        need_duration(self.within, "intensity.within", positive=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class CooldownPolicy:
    """Breaker-style cooling down once the intensity is exhausted.

    Cycle ``k`` (1-based) cools down ``min(max, duration * multiplier**(k-1))``
    seconds, then starts one probe in probation; surviving ``probation``
    seconds closes it. ``max_cycles`` consecutive cycles, if set, end in give-up.
    """

    duration: float = 30.0
    probation: float = 10.0
    multiplier: float = 2.0
    max: float = 600.0
    max_cycles: int | None = None

    def __post_init__(self) -> None:
        check_growth(
            "cooldown",
            self.duration,
            self.max,
            self.multiplier,
            initial_name="duration",
            positive=True,
        )
        need_duration(self.probation, "cooldown.probation")
        if self.max_cycles is not None:
            need_count(self.max_cycles, "cooldown.max_cycles", 1)

    def duration_of(self, cycle: int) -> float:
        """How long cycle ``cycle`` (1-based) cools down."""
        growth = Exponential(
            initial=self.duration, max=self.max, multiplier=self.multiplier, jitter=0.0
        )
        return growth.delay(cycle)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """Everything that decides what follows a failure, with every default in one place."""

    backoff: Backoff = Backoff()
    intensity: Intensity = Intensity()
    on_exhausted: OnExhausted = OnExhausted.GIVE_UP
    cooldown: CooldownPolicy = CooldownPolicy()


class History:
    """What a decision needs to remember about past failures of one child or group.

    ``restarts`` holds the monotonic times of restarts still inside the window,
    oldest first. ``cycles`` counts consecutive cooldown cycles; ``probing``
    is true while a probe start runs in probation.

    A value: immutable, compared and hashed by those three. Inside, a history
    is a slice ``[lo, hi)`` of a list of times it may share with the history it
    came from, so a decision costs the same with ten restarts in the window as
    with a million (a tuple would be copied on every restart). The list is only
    ever appended to past the newest slice; branching from an older history
    copies its slice, so every history keeps its own times.
    """

    __slots__ = ("_hi", "_lo", "_times", "cycles", "probing")

    _times: list[float]
    _lo: int
    _hi: int
    cycles: int
    probing: bool

    def __init__(
        self, restarts: Sequence[float] = (), cycles: int = 0, probing: bool = False
    ) -> None:
        times = list(restarts)
        self._init(times, 0, len(times), cycles, probing)

    def _init(self, times: list[float], lo: int, hi: int, cycles: int, probing: bool) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "_times", times)
        setattr_(self, "_lo", lo)
        setattr_(self, "_hi", hi)
        setattr_(self, "cycles", cycles)
        setattr_(self, "probing", probing)

    @classmethod
    def _slice(
        cls, times: list[float], lo: int, hi: int, cycles: int, probing: bool = False
    ) -> History:
        history = cls.__new__(cls)
        history._init(times, lo, hi, cycles, probing)
        return history

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"History is immutable; cannot set {name}")

    def __reduce__(self) -> tuple[type[History], tuple[tuple[float, ...], int, bool]]:
        # Copies and pickles rebuild it from its value (the shared list is an internal).
        return (History, (self.restarts, self.cycles, self.probing))

    @property
    def restarts(self) -> tuple[float, ...]:
        return tuple(self._times[self._lo : self._hi])

    def _key(self) -> tuple[tuple[float, ...], int, bool]:
        return (self.restarts, self.cycles, self.probing)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"History(restarts={self.restarts!r}, cycles={self.cycles}, probing={self.probing})"

    def _in_window(self, since: float) -> tuple[int, int]:
        """The slice of restarts later than ``since``: a bisection, not a scan."""
        return bisect.bisect_right(self._times, since, self._lo, self._hi), self._hi

    def _kept(self, lo: int) -> History:
        """The restarts from ``lo`` on, with no new one."""
        return History._slice(self._times, lo, self._hi, self.cycles)

    def _grown(self, lo: int, now: float) -> History:
        """The restarts from ``lo`` on plus one at ``now``."""
        times, hi = self._times, self._hi
        # Appending is safe only at the tip: no other history sees past ``hi``.
        # Compacting once half the list has left the window keeps memory bounded.
        if hi == len(times) and lo <= hi // 2:
            times.append(now)
            return History._slice(times, lo, hi + 1, self.cycles)
        kept = times[lo:hi]
        kept.append(now)
        return History._slice(kept, 0, len(kept), self.cycles)

    def probe(self) -> History:
        """The same history with a probe start in probation."""
        return History._slice(self._times, self._lo, self._hi, self.cycles, probing=True)

    def closed(self) -> History:
        """The history after a probe survived probation: window and cycles cleared."""
        return History()


@dataclass(frozen=True, slots=True)
class Restart:
    """Restart after ``delay`` seconds; this is restart ``number`` inside the window."""

    delay: float
    number: int
    history: History


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Leave the child down in ``gave_up``; siblings go on."""

    reason: str
    history: History


@dataclass(frozen=True, slots=True)
class Escalate:
    """Stop every child in reverse order and fail towards the parent."""

    reason: str
    history: History


@dataclass(frozen=True, slots=True)
class Cooldown:
    """Stay down ``duration`` seconds (cycle ``cycle``), then start one probe in probation."""

    duration: float
    cycle: int
    reason: str
    history: History


Decision = Restart | GiveUp | Escalate | Cooldown


def wants_restart(restart: RestartType, outcome: Outcome) -> bool:
    """Whether an exit with ``outcome`` calls for a restart under ``restart``.

    A stop commanded by a person or a shutdown (``STOPPED``/``KILLED``) never does.
    """
    if outcome in (Outcome.STOPPED, Outcome.KILLED) or restart is RestartType.TEMPORARY:
        return False
    return restart is RestartType.PERMANENT or outcome.is_failure


def decide(policy: RestartPolicy, history: History, now: float, rand: float = 0.5) -> Decision:
    """Decide what follows an exit that wants a restart, at monotonic time ``now``.

    The window slides: restarts older than ``within`` seconds are forgotten.
    An exit that would be restart number ``max_restarts + 1`` in the window
    exhausts the intensity and ``on_exhausted`` applies; so an always-failing
    child with ``max_restarts: 3`` is started exactly four times.
    """
    if history.probing:
        return decide_probation_failure(policy, history)
    intensity = policy.intensity
    lo, hi = history._in_window(now - intensity.within)
    count = hi - lo
    if count < intensity.max_restarts:
        number = count + 1
        return Restart(
            policy.backoff.delay(number, rand),
            number,
            history._grown(lo, now),
        )
    reason = (
        f"{count + 1} restarts within {intensity.within:g}s would exceed "
        f"max_restarts {intensity.max_restarts}"
    )
    match policy.on_exhausted:
        case OnExhausted.GIVE_UP:
            return GiveUp(reason, history._kept(lo))
        case OnExhausted.ESCALATE:
            return Escalate(reason, history._kept(lo))
        case OnExhausted.COOLDOWN:
            return _cool_down(policy.cooldown, history.cycles + 1, reason)


def decide_probation_failure(policy: RestartPolicy, history: History) -> Decision:
    """A probe failed in probation: cool down again, longer, or give up after ``max_cycles``."""
    return _cool_down(policy.cooldown, history.cycles + 1, "the probe failed in probation")


def _cool_down(cooldown: CooldownPolicy, cycle: int, reason: str) -> Decision:
    if cooldown.max_cycles is not None and cycle > cooldown.max_cycles:
        return GiveUp(
            f"{reason}; {cooldown.max_cycles} cooldown cycles spent", History((), cycle - 1)
        )
    return Cooldown(cooldown.duration_of(cycle), cycle, reason, History((), cycle))
