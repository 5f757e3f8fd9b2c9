"""Restart policies as pure values and pure decisions over an explicit restart window.

Nothing here reads a clock, sleeps or touches an actor: ``decide(policy,
window, now, rand)`` returns what to do, and ``Window.apply`` notes it, so
every rule of SPEC §2 is tested as a plain function with exact times.
"""

from __future__ import annotations

import enum
import pickle
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, TypeVar

from actors import Outcome, SpecError
from actors._checks import a_kind, need_count, need_duration
from actors._exponential import Exponential, check_growth

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "Backoff",
    "Budget",
    "Cooldown",
    "CooldownPolicy",
    "Decision",
    "Escalate",
    "GiveUp",
    "Intensity",
    "OnExhausted",
    "Restart",
    "RestartPolicy",
    "RestartType",
    "Strategy",
    "Window",
    "as_enum",
    "decide",
    "decide_budget",
    "decide_probation_failure",
    "kept",
    "wants_restart",
    "wrong_type",
]


E = TypeVar("E", bound=enum.StrEnum)


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


def as_enum(cls: type[E], value: object, field: str) -> E:
    """``value`` as a member of ``cls``: a member, or its exact value as a string (the word a
    manifest writes, ``"permanent"``); anything else is a ``SpecError`` naming ``field``.

    The decisions compare members by identity, so a string kept as given would pass for
    none of them (``restart="permanent"`` ran as transient).
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and value in cls._value2member_map_:
        return cls(value)
    name = cls.__name__
    article = "an" if name[0] in "AEIOU" else "a"
    choices = ", ".join(member.value for member in cls)
    raise SpecError(field=field, expected=f"one of {choices} ({article} {name})", got=value)


_SHOWN_MAX: Final = 200  # a value's repr in a message, cut: a whole config dict helps no one
# A key whose value a hint must not repeat: the text of a SpecError is logged and shown.
_SECRETISH: Final = re.compile(
    r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|URL|HEADER", re.IGNORECASE
)


def _shown(value: object, depth: int = 0) -> str:
    """``value``'s repr with every mapping's values left out (``{'url': ..., 'on': ...}``).

    A mapping given for notify, ready or work can hold a webhook's URL or an Authorization
    header; its keys say what it was, which is all a message about its type needs.
    """
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key!r}: ..." for key in value) + "}"
    if isinstance(value, list | tuple) and depth < 3:
        items = ", ".join(_shown(item, depth + 1) for item in value[:_SHOWN_MAX])
        if isinstance(value, tuple):
            return f"({items},)" if len(value) == 1 else f"({items})"
        return f"[{items}]"
    return repr(value)


def kept(got: object, shown: str) -> object:
    """What a ``SpecError`` keeps as ``got``: ``got`` itself if it pickles, else ``shown``.

    A SpecError goes to other processes (a Ray worker, a pool's caller): ``work=lambda: 0``
    made one that would not pickle.
    """
    try:
        pickle.dumps(got)
    except Exception:  # whatever pickling raises (PicklingError, TypeError, ...)
        return shown
    return got


def _plain(key: object, value: object) -> bool:
    """Whether ``value`` may be repeated in a hint: a number, or a short string of a key that
    holds no secret (nor a URL, which can carry one); a mapping or list is never repeated."""
    if value is None or isinstance(value, bool | int | float):
        return True
    return (
        isinstance(value, str)
        and len(value) <= 40
        and "://" not in value
        and not _SECRETISH.search(str(key))
    )


def _call_hint(build: Callable[..., object], got: Mapping[object, object]) -> str:
    """``Backoff(initial=1)``: the call to write for ``got``, or "" when it would be long,
    would repeat a value that is not plain, or would not build (it is tried)."""
    if not all(isinstance(key, str) and key.isidentifier() for key in got):
        return ""
    if not all(_plain(key, value) for key, value in got.items()):
        return ""
    args = ", ".join(f"{key}={value!r}" for key, value in got.items())
    call = f"{getattr(build, '__name__', '')}({args})"
    if len(call) > _SHOWN_MAX:
        return ""
    try:
        build(**got)  # type: ignore[arg-type]
    except Exception:  # a call that fails (SpecError, TypeError) is none to suggest
        return ""
    return call


def wrong_type(
    owner: str,
    field: str,
    expected: str,
    got: object,
    hint: str = "",
    *,
    build: Callable[..., object] | None = None,
) -> SpecError:
    """The ``SpecError`` of a spec field given a value of the wrong type: ``RestartPolicy.backoff:
    expected a Backoff, got {'initial': ...} (a mapping: write Backoff(initial=1))``.

    Built only once a check has failed (the checks are ``isinstance`` tests inline, as every
    job of a big manifest passes them). A mapping given for ``build``, the spec class the
    field takes, gets the call to write, as a program that took a manifest's shape for the
    API's would write it, when that call builds. A mapping's values are never shown.
    """
    shown = _shown(got)
    if len(shown) > _SHOWN_MAX:
        shown = shown[: _SHOWN_MAX - 3] + "..."
    if not hint and got is not None:
        call = _call_hint(build, got) if build is not None and isinstance(got, Mapping) else ""
        hint = f" ({a_kind(got)}: write {call})" if call else f" ({a_kind(got)})"
    return SpecError(
        f"{owner}.{field}: expected {expected}, got {shown}{hint}",
        field=field,
        expected=expected,
        got=kept(got, shown),
        shown=shown,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff(Exponential):
    """Delay before restart ``n`` in the window: ``min(max, initial * multiplier**(n-1))``.

    Jitter moves it by up to ±``jitter`` of itself but never above ``max``.
    """

    FIELD: ClassVar[str] = "backoff"


@dataclass(frozen=True, slots=True, kw_only=True)
class Intensity:
    """At most ``max_restarts`` restarts inside any sliding window of ``within`` seconds.

    The seconds are the child's own, backoff waits left out (see ``Window``).
    """

    max_restarts: int = 3
    within: float = 60.0

    def __post_init__(self) -> None:
        need_count(self.max_restarts, "intensity.max_restarts", 0)
        need_duration(self.within, "intensity.within", positive=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """The whole tree's restarts: at most ``max_restarts`` inside any ``within`` seconds.

    Intensities are per child and per group, so they multiply down a deep tree
    (three levels of ``max_restarts: 3`` allow 3 x 4 x 4 restarts of one leaf);
    the budget counts every restart anywhere, groups' included, in one window.
    """

    max_restarts: int = 10
    within: float = 60.0

    def __post_init__(self) -> None:
        need_count(self.max_restarts, "budget.max_restarts", 0)
        need_duration(self.within, "budget.within", positive=True)

    @property
    def intensity(self) -> Intensity:
        return Intensity(max_restarts=self.max_restarts, within=self.within)

    def window(self) -> Window:
        """An empty window that remembers just enough restarts for this budget."""
        return Window(self.intensity)


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
    budget: Budget | None = None  # only the root's counts: the tree's restarts (see Budget)

    def __post_init__(self) -> None:
        # A wrong type here passed the constructor and failed deep in the root at the first
        # failure ("internal error: 'dict' object has no attribute 'delay'").
        if not isinstance(self.backoff, Exponential):
            raise wrong_type("RestartPolicy", "backoff", "a Backoff", self.backoff, build=Backoff)
        if not isinstance(self.intensity, Intensity):
            raise wrong_type(
                "RestartPolicy", "intensity", "an Intensity", self.intensity, build=Intensity
            )
        if not isinstance(self.cooldown, CooldownPolicy):
            raise wrong_type(
                "RestartPolicy", "cooldown", "a CooldownPolicy", self.cooldown, build=CooldownPolicy
            )
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise wrong_type(
                "RestartPolicy", "budget", "a Budget or None", self.budget, build=Budget
            )
        on_exhausted = as_enum(OnExhausted, self.on_exhausted, "on_exhausted")
        object.__setattr__(self, "on_exhausted", on_exhausted)


class Window:
    """What a decision remembers about the past restarts of one child or group.

    The window counts the time the child is given to run, not the time it
    waits in its backoff (or for its breaker): were the waits counted, a backoff grown past
    ``within`` would let every restart leave the window before the next
    failure, so a child failing at once would be restarted for ever, its
    backoff never climbing. ``waited`` is the total of the backoff delays given
    since the window was last cleared, and restarts are timed on a clock that
    leaves them out (monotonic time ``now - waited``). The tree's budget gives
    no delays (they are each child's), so its window runs on monotonic time.

    ``restarts`` holds those times of the latest restarts, oldest first: at
    most ``max_restarts + 1`` of them, and none that had left the intensity
    window when the last decision was noted, so a decision costs the same after
    a million restarts as after ten. ``cycles`` counts consecutive cooldown
    cycles; ``probing`` is true while a probe start runs in probation.

    It lives on the supervisor's record of the child (or of the group) and
    changes only through its methods; ``decide`` only reads it.
    """

    __slots__ = ("cycles", "probing", "restarts", "waited", "within")

    def __init__(
        self,
        intensity: Intensity,
        restarts: Iterable[float] = (),
        cycles: int = 0,
        probing: bool = False,
        waited: float = 0.0,
    ) -> None:
        self.within = intensity.within
        self.restarts: deque[float] = deque(restarts, maxlen=intensity.max_restarts + 1)
        self.cycles = cycles
        self.probing = probing
        self.waited = waited

    def __repr__(self) -> str:
        restarts = tuple(self.restarts)
        return (
            f"Window(restarts={restarts!r}, waited={self.waited:g}, cycles={self.cycles}, "
            f"probing={self.probing})"
        )

    def resized(self, intensity: Intensity) -> Window:
        """This window under another intensity (a reload): the latest restarts are kept."""
        return Window(intensity, self.restarts, self.cycles, self.probing, self.waited)

    def in_window(self, now: float) -> int:
        """How many restarts lie inside ``[now - within, now]`` (``now``: monotonic time).

        The edge is inside, as in OTP: a restart exactly ``within`` old still counts.
        """
        since = now - self.waited - self.within
        expired = 0
        for at in self.restarts:  # oldest first: stops at the first one still inside
            if at >= since:
                break
            expired += 1
        return len(self.restarts) - expired

    def apply(self, decision: Decision, now: float) -> None:
        """Note ``decision``, made at monotonic time ``now``."""
        ran = now - self.waited
        since = ran - self.within
        while self.restarts and self.restarts[0] < since:
            self.restarts.popleft()
        match decision:
            case Restart(delay=delay):
                self.restarts.append(ran)
                self.waited += delay
            case Cooldown(cycle=cycle):
                self.reset(cycle)
            case GiveUp(cycles=cycles) if cycles is not None:
                self.reset(cycles)
            case _:
                self.probing = False

    def waited_for(self, seconds: float) -> None:
        """The child waited ``seconds`` without running (for its breaker): off its clock too."""
        self.waited += max(0.0, seconds)

    def probe(self) -> None:
        """A probe start begins its probation."""
        self.probing = True

    def reset(self, cycles: int = 0) -> None:
        """Forget every restart (a probe survived, a person started it); keep ``cycles``."""
        self.restarts.clear()
        self.waited = 0.0  # nothing left to time: the child's clock may start again at now
        self.cycles = cycles
        self.probing = False


@dataclass(frozen=True, slots=True)
class Restart:
    """Restart after ``delay`` seconds; this is restart ``number`` inside the window."""

    delay: float
    number: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Leave the child down in ``gave_up``; siblings go on.

    ``cycles`` is set when cooling down gave up: the cooldown cycles spent.
    """

    reason: str
    cycles: int | None = None


@dataclass(frozen=True, slots=True)
class Escalate:
    """Stop every child in reverse order and fail towards the parent."""

    reason: str


@dataclass(frozen=True, slots=True)
class Cooldown:
    """Stay down ``duration`` seconds (cycle ``cycle``), then start one probe in probation."""

    duration: float
    cycle: int
    reason: str


Decision = Restart | GiveUp | Escalate | Cooldown


def wants_restart(restart: RestartType, outcome: Outcome) -> bool:
    """Whether an exit with ``outcome`` calls for a restart under ``restart``.

    A stop commanded by a person or a shutdown (``STOPPED``/``KILLED``) never does.
    """
    if outcome in (Outcome.STOPPED, Outcome.KILLED) or restart is RestartType.TEMPORARY:
        return False
    return restart is RestartType.PERMANENT or outcome.is_failure


def decide(policy: RestartPolicy, window: Window, now: float, rand: float = 0.5) -> Decision:
    """Decide what follows an exit that wants a restart, at monotonic time ``now``.

    The window slides: restarts older than ``within`` seconds of the child's
    time (backoff waits left out: ``Window``) are forgotten.
    An exit that would be restart number ``max_restarts + 1`` in the window
    exhausts the intensity and ``on_exhausted`` applies; so an always-failing
    child with ``max_restarts: 3`` is started exactly four times.
    """
    if window.probing:
        return decide_probation_failure(policy, window)
    intensity = policy.intensity
    count = window.in_window(now)
    if count < intensity.max_restarts:
        number = count + 1
        return Restart(policy.backoff.delay(number, rand), number)
    # Said as what happened and what to change: "N restarts would exceed max_restarts M"
    # was read as "it restarted N times" or "the limit is N". Not "it failed N times": the
    # window also counts a permanent job's clean exits, and a group's window its children's.
    within = " or within" if intensity.max_restarts else ""
    reason = (
        f"restart {count + 1} within {intensity.within:g}s is more than "
        f"max_restarts ({intensity.max_restarts}) allows "
        f"(raise max_restarts{within}, or fix what makes it exit)"
    )
    return _exhausted(policy, window, reason)


def decide_budget(policy: RestartPolicy, window: Window, now: float) -> Decision:
    """Whether the tree may spend one more restart at monotonic time ``now``.

    ``policy`` is the root's; ``window`` holds the tree's restarts. Inside the
    budget it is ``Restart(0, n)`` (the delay is the restarting supervisor's
    own); beyond it the root's ``on_exhausted`` applies to the whole tree. A
    restart wanted while the tree is on probation after a tree-wide cooldown
    cools the tree down again, longer (or gives up after ``max_cycles``).
    """
    budget = policy.budget
    if budget is None:
        return Restart(0.0, 0)
    if window.probing:
        return _cool_down(policy.cooldown, window.cycles + 1, "a restart in the tree on probation")
    count = window.in_window(now)
    if count < budget.max_restarts:
        return Restart(0.0, count + 1)
    within = " or budget.within" if budget.max_restarts else ""
    reason = (
        f"restart {count + 1} in the tree within {budget.within:g}s is more than "
        f"budget.max_restarts ({budget.max_restarts}) allows "
        f"(raise budget.max_restarts{within}, or fix what makes jobs exit)"
    )
    return _exhausted(policy, window, reason)


def _exhausted(policy: RestartPolicy, window: Window, reason: str) -> Decision:
    """What ``on_exhausted`` says once an intensity (or the budget) is spent."""
    match policy.on_exhausted:
        case OnExhausted.GIVE_UP:
            return GiveUp(reason)
        case OnExhausted.ESCALATE:
            return Escalate(reason)
        case OnExhausted.COOLDOWN:
            return _cool_down(policy.cooldown, window.cycles + 1, reason)


def decide_probation_failure(policy: RestartPolicy, window: Window) -> Decision:
    """A probe failed in probation: cool down again, longer, or give up after ``max_cycles``."""
    return _cool_down(policy.cooldown, window.cycles + 1, "the probe failed in probation")


def _cool_down(cooldown: CooldownPolicy, cycle: int, reason: str) -> Decision:
    if cooldown.max_cycles is not None and cycle > cooldown.max_cycles:
        spent = f"{cooldown.max_cycles} cooldown cycle{'' if cooldown.max_cycles == 1 else 's'}"
        return GiveUp(f"{reason}; {spent} spent", cycle - 1)
    return Cooldown(cooldown.duration_of(cycle), cycle, reason)
