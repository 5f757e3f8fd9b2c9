"""Durations and sizes as a manifest writes them: ``250ms``, ``1h30m``, ``10MiB`` or a number."""

from __future__ import annotations

import math
import re
from typing import Final

from actors import SpecError
from actors._checks import fmt_duration
from supervision._issues import show

__all__ = [
    "BARE_NUMBER",
    "DURATION_HINT",
    "DURATION_UNITS",
    "EXPONENT",
    "NUMBER",
    "SIZE_HINT",
    "SIZE_UNITS",
    "fmt_duration",
    "fmt_size",
    "parse_duration",
    "parse_size",
]

# The forms as pattern text, which the manifest's JSON Schema reuses (``supervision._fields``).
NUMBER: Final = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
EXPONENT: Final = r"(?:[eE][+-]?[0-9]+)?"
BARE_NUMBER = re.compile(rf"\s*{NUMBER}{EXPONENT}\s*")
DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_UNIT = "|".join(DURATION_UNITS)  # "ms" before "m": the longer unit wins
_DURATION = re.compile(rf"\s*(?:{NUMBER}\s*(?:{_UNIT})\s*)+", re.IGNORECASE)
_DURATION_PART = re.compile(rf"({NUMBER})\s*({_UNIT})", re.IGNORECASE)
_SIZE = re.compile(rf"\s*({NUMBER})\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
SIZE_UNITS: Final = {
    "b": 1,
    **{f"{p}b": 1000**i for i, p in enumerate("kmgt", 1)},
    **{f"{p}ib": 1024**i for i, p in enumerate("kmgt", 1)},
}
DURATION_HINT: Final = "250ms, 30s, 5m, 1h, 1d or a number of seconds"
SIZE_HINT: Final = "512KiB, 10MiB, 1GiB or a number of bytes"


def parse_duration(value: object) -> float:
    """Seconds in ``value``: ``250ms``, ``30s``, ``5m``, ``1h``, ``1d`` (or ``1h30m``) or a number.

    Raises ``SpecError`` for anything else, for a bool, and for negative or
    infinite durations.
    """
    seconds: float | None = None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            if BARE_NUMBER.fullmatch(value):
                seconds = float(value)
            elif _DURATION.fullmatch(value):
                seconds = sum(
                    # 700 * 0.001 is 0.7000000000000001, 700 / 1000 is 0.7: what was written.
                    float(number) / 1000
                    if unit.lower() == "ms"
                    else float(number) * DURATION_UNITS[unit.lower()]
                    for number, unit in _DURATION_PART.findall(value)
                )
    except (OverflowError, ValueError):
        seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise SpecError(expected=f"a duration like {DURATION_HINT}", got=value, shown=show(value))
    return seconds


def parse_size(value: object) -> int:
    """Bytes in ``value``: ``512KiB``, ``10MiB``, ``1GiB`` (or ``10MB``, 1000-based) or an int.

    Raises ``SpecError`` for anything else, for a bool and for negative sizes.
    """
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        number, unit = match.groups()
        scaled = float(number) * SIZE_UNITS[(unit or "b").lower()]
        size = int(scaled) if math.isfinite(scaled) else None
    if size is None or size < 0:
        raise SpecError(expected=f"a size like {SIZE_HINT}", got=value, shown=show(value))
    return size


def fmt_size(size: int) -> str:
    """``size`` bytes as a manifest would write it: ``10MiB``, ``512KiB``, else ``1000B``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"
