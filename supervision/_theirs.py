"""supervisord's and systemd's values in jobvisor's spelling, for the hints a migrant's key gets.

Each reader returns the manifest's text for a value (``90s``, ``INT``, ``unlimited``) or None
for one that does not translate as it stands: the hint then keeps its fixed example. No
reader raises: a value may be anything YAML makes.
"""

from __future__ import annotations

import math
import re
import signal
from typing import Final

from actors._checks import MAX_DURATION, fmt_duration

__all__ = [
    "count",
    "limit",
    "limit_duration",
    "limit_size",
    "positive_span",
    "seconds",
    "signal_name",
    "span",
    "spelled",
]

_NUMBER: Final = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
# systemd.time(7): its units are case-sensitive (M is a month, m a minute).
_SPAN_UNITS: Final = {
    **dict.fromkeys(("usec", "us", "\u00b5s", "\u03bcs"), 1e-6),
    **dict.fromkeys(("msec", "ms"), 1e-3),
    **dict.fromkeys(("seconds", "second", "sec", "s"), 1.0),
    **dict.fromkeys(("minutes", "minute", "min", "m"), 60.0),
    **dict.fromkeys(("hours", "hour", "hr", "h"), 3600.0),
    **dict.fromkeys(("days", "day", "d"), 86400.0),
    **dict.fromkeys(("weeks", "week", "w"), 604800.0),
    **dict.fromkeys(("months", "month", "M"), 2629800.0),
    **dict.fromkeys(("years", "year", "y"), 31557600.0),
}
_SPAN_UNIT: Final = "|".join(sorted(map(re.escape, _SPAN_UNITS), key=len, reverse=True))
_SPAN: Final = re.compile(rf"(?:\s*{_NUMBER}\s*(?:{_SPAN_UNIT}))+\s*")
_SPAN_PART: Final = re.compile(rf"({_NUMBER})\s*({_SPAN_UNIT})")
_BARE: Final = re.compile(rf"\s*{_NUMBER}\s*")
_PARTS: Final = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
_MILLIS: Final = dict(_PARTS)
_LIMIT_SIZES: Final = {"K": "KiB", "M": "MiB", "G": "GiB", "T": "TiB"}  # systemd's are 1024-based
_LIMIT_SIZE: Final = re.compile(r"\s*([0-9]{1,15})\s*([KMGT])\s*")
_INFINITY: Final = "infinity"


def seconds(value: object) -> float | None:
    """Seconds in a systemd time span (``1min 30s``, ``90sec``) or a number of seconds (either's
    bare number)."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return _finite(float(value))
        if not isinstance(value, str):
            return None
        if _BARE.fullmatch(value):
            return _finite(float(value))
        if _SPAN.fullmatch(value):
            parts = _SPAN_PART.findall(value)
            return _finite(sum(float(number) * _SPAN_UNITS[unit] for number, unit in parts))
    except (OverflowError, ValueError):
        pass
    return None


def _finite(number: float) -> float | None:
    return number if math.isfinite(number) and number >= 0 else None


def spelled(value: float | None) -> str | None:
    """``value`` seconds as a manifest writes a duration (``90s``, ``2h``, ``1d2h3m4s``); None past
    jobvisor's longest or finer than a microsecond."""
    if value is None or not 0 <= value <= MAX_DURATION:
        return None
    # fmt_duration's is the shortest, but rounds to 6 digits (1.23457e+06s): not if it moved.
    text = fmt_duration(value)
    shown = re.fullmatch(r"([0-9.]+)(ms|[smhd])", text)
    if shown and math.isclose(float(shown[1]) * _MILLIS[shown[2]] / 1000, value):
        return text
    millis = round(value * 1000)
    if not math.isclose(millis / 1000, value, abs_tol=1e-9):
        return None
    parts = []
    for name, size in _PARTS:
        whole, millis = divmod(millis, size)
        if whole:
            parts.append(f"{whole}{name}")
    return "".join(parts)


def span(value: object) -> str | None:
    """A systemd time span, or supervisord's seconds, as a jobvisor duration."""
    return spelled(seconds(value))


def positive_span(value: object) -> str | None:
    """``span``, but None for 0 (systemd's "no limit" in a rate limit's interval)."""
    return span(value) if seconds(value) else None


def count(value: object) -> str | None:
    """A whole number, written as one or as digits."""
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,18}\s*", value):
        return str(int(value))
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return str(value)
    return None


def _unlimited(value: object) -> bool:
    return isinstance(value, str) and value.strip() == _INFINITY


def limit(value: object) -> str | None:
    """A resource limit's count (``LimitNOFILE=``): its number, or ``unlimited`` for infinity."""
    return "unlimited" if _unlimited(value) else count(value)


def limit_size(value: object) -> str | None:
    """A resource limit in bytes (``LimitCORE=1G``, 1024-based) as a jobvisor size."""
    if isinstance(value, str) and (match := _LIMIT_SIZE.fullmatch(value)):
        return f"{int(match[1])}{_LIMIT_SIZES[match[2]]}"
    return limit(value)


def limit_duration(value: object) -> str | None:
    """A resource limit in seconds (``LimitCPU=``) as a jobvisor duration."""
    return "unlimited" if _unlimited(value) else span(value)


def signal_name(value: object) -> str | None:
    """A signal as ``stop.signal`` writes it (``INT``), from ``SIGINT``, ``int`` or ``2``."""
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,3}\s*", value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return signal.Signals(value).name.removeprefix("SIG")
        except ValueError:
            return None
    if isinstance(value, str):
        name = value.strip().upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if name in signal.Signals.__members__:
            return name.removeprefix("SIG")
    return None
