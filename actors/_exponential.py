"""One exponential growth, ``min(max, initial * multiplier**(n-1))`` with jitter, for every wait.

Restart backoff, cooldown growth and the waits between retries are all this
value (tenacity likewise reuses one ``wait_exponential``), so the formula,
its overflow guard and its validation exist once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Final

from actors._checks import fmt_duration, need_duration, need_number
from actors._errors import SpecError

__all__ = ["JITTERS", "MULTIPLIERS", "Exponential", "check_growth"]


# The loader's bounds, which the manifest schema carries too (``supervision._fields``).
MULTIPLIERS: Final = (1.0, None)  # a growth factor: never shrinking
JITTERS: Final = (0.0, 1.0)  # a fraction of the wait, either way


def check_growth(
    prefix: str,
    initial: object,
    high: object,
    multiplier: object,
    jitter: object = 0.0,
    *,
    initial_name: str = "initial",
    positive: bool = False,
) -> None:
    """Raise ``SpecError`` unless ``0 <= initial <= max``, ``multiplier >= 1`` and jitter in [0, 1].

    Field names are ``prefix.initial_name`` and so on. A ``max`` below
    ``initial`` is reported at ``max``, with the same problem told at
    ``initial`` as its ``other``.
    """
    first = f"{prefix}.{initial_name}"
    need_duration(initial, first, positive=positive)
    need_duration(high, f"{prefix}.max", positive=positive)
    need_number(multiplier, f"{prefix}.multiplier", "a number >= 1", low=MULTIPLIERS[0])
    need_number(jitter, f"{prefix}.jitter", "a fraction in [0, 1]", *JITTERS)
    if high < initial:  # type: ignore[operator]
        raise SpecError(
            field=f"{prefix}.max",
            expected=f"a duration >= {initial_name} ({fmt_duration(initial)})",  # type: ignore[arg-type]
            got=high,
            other=SpecError(
                field=first,
                expected=f"a duration <= max ({fmt_duration(high)})",  # type: ignore[arg-type]
                got=initial,
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Exponential:
    """Wait ``n`` (1-based): ``min(max, initial * multiplier**(n-1))``, moved ±``jitter`` of itself.

    Jitter never takes a wait above ``max`` nor below 0. ``FIELD`` prefixes
    the field names of a ``SpecError`` (``backoff.max``, ``retry.wait.max``).
    """

    FIELD: ClassVar[str] = "exponential"
    initial: float = 0.1
    max: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        check_growth(self.FIELD, self.initial, self.max, self.multiplier, self.jitter)

    def delay(self, n: int, rand: float = 0.5) -> float:
        """Wait number ``n`` (1-based); ``rand`` in [0, 1) picks the jitter (0.5: none)."""
        if not self.initial:
            base = 0.0  # no backoff: also no power to raise (it overflows past restart ~1000)
        else:
            try:
                growth = float(self.multiplier) ** max(0, n - 1)
            except OverflowError:  # restart 5000 of a long-lived window: max caps it anyway
                growth = math.inf
            base = min(self.max, self.initial * growth)
        jittered = base * (1 + self.jitter * (2 * rand - 1))
        return max(0.0, min(self.max, jittered))
