"""The checks spec constructors share; each raises a ``SpecError`` with field, expected and got.

Specs are built from code and from manifests alike, with values of any type:
every check tests the type before the range, so a wrong type is a
``SpecError`` and never a ``TypeError`` from a comparison. The ``expected``
texts here are the ones users read in manifest errors, so they are written
once, here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

from actors._errors import SpecError

__all__ = [
    "HEADER_NAME",
    "MAX_DURATION",
    "SOCKET_MAX_DURATION",
    "a_kind",
    "check_map",
    "fmt_duration",
    "is_number",
    "key_field",
    "need",
    "need_count",
    "need_duration",
    "need_header_value",
    "need_number",
    "too_long",
]

NO_LIMIT: Final = math.inf
# The ranges an exit code and an HTTP status may take; the specs check them, and the manifest's
# schema (``supervision._fields``) bounds the same fields with them.
EXIT_CODES: Final = (0, 255)
HTTP_STATUSES: Final = (100, 599)
# The longest duration a manifest or a spec may give (3650d, ten years): a lock's wait takes
# up to threading.TIMEOUT_MAX (292 years, gevent's too), a monotonic or wall time plus it is
# still a finite float and a datetime, and a wait longer than poll(2) takes is waited for
# in pieces (``actors._waiters``). Past it, a scheduler's wait used to raise and stop every
# timer of the tree.
MAX_DURATION: Final = 3650 * 86400.0
# The longest wait of one socket operation (an http job's or a notification's ``timeout``): a
# socket's timeout goes to poll(2) as an int of milliseconds (24.8 days), which CPython casts
# to it unchecked, so more would wrap round to an early or an endless wait.
SOCKET_MAX_DURATION: Final = 24 * 86400.0


def is_number(value: object) -> bool:
    """A finite int or float, not a bool."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


# What a message calls a value of a builtin type: words, not Python's type names ("a int").
_KINDS: Final = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (bytes | bytearray, "binary data"),
    (dict, "a mapping"),
    (list, "a list"),
    (tuple, "a tuple"),
    (set | frozenset, "a set"),
)


def a_kind(value: object) -> str:
    """What ``value`` is, for a message that must not show it: ``an integer``, ``a mapping``,
    ``an object``, ``a PosixPath``, ``the class LoggingSpec`` (a class given for an instance)."""
    if value is None:
        return "None"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    for cls, said in _KINDS:
        if isinstance(value, cls):
            return said
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeio' else 'a'} {name}"


def need(ok: bool, field: str, expected: str, got: object, *, shown: str | None = None) -> None:
    """Raise ``SpecError(field, expected, got)`` unless ``ok``."""
    if not ok:
        raise SpecError(field=field, expected=expected, got=got, shown=shown)


def need_key(ok: bool, field: str, expected: str, key: object) -> None:
    """Raise ``SpecError`` about the name ``key`` of the entry at ``field`` unless ``ok``.

    The entry's value is not what is wrong, so the key is what every reader shows.
    """
    if not ok:
        raise SpecError(field=field, expected=expected, got=key, about=repr(key))


def need_duration(
    value: object, field: str, *, positive: bool = False, longest: float = MAX_DURATION
) -> None:
    """A duration in seconds: ``>= 0``, or ``> 0`` when ``positive``, and at most ``longest``.

    An infinite one, or an int too large for a float, is past ``longest`` too.
    """
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and not (isinstance(value, float) and math.isnan(value)):
        need(value <= longest, field, too_long(longest), value)  # type: ignore[operator]
    ok = is_number(value) and (value > 0 if positive else value >= 0)  # type: ignore[operator]
    need(ok, field, f"a duration {'> 0' if positive else '>= 0'}", value)


def too_long(longest: float) -> str:
    """The ``expected`` of a duration past ``longest``: ``a duration up to 3650d``."""
    return f"a duration up to {fmt_duration(longest)}"


def need_count(value: object, field: str, minimum: int) -> None:
    """An int of at least ``minimum`` (a bool is not a count)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    need(ok, field, f"a count >= {minimum}", value)


def need_int_in(value: object, field: str, what: str, low: int, high: int) -> None:
    """An int in ``[low, high]`` (a bool is not one): ``what`` names it (an exit code, a status)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    need(ok, field, f"{what} {low}..{high}", value)


def need_number(
    value: object, field: str, expected: str, low: float = -NO_LIMIT, high: float = NO_LIMIT
) -> None:
    """A finite number in ``[low, high]``."""
    need(is_number(value) and low <= value <= high, field, expected, value)  # type: ignore[operator]


def fmt_duration(seconds: float) -> str:
    """``seconds`` the way a manifest writes it: ``250ms``, ``30s``, ``5m``, ``1h``, ``1d``."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def key_field(prefix: str, key: object) -> str:
    """The field of entry ``key`` under ``prefix``: ``env.PATH``, ``http.headers['X A']``."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{key!r}]"


HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: fullmatch it
# RFC 9110 field-value: visible ASCII and obs-text (Latin-1), spaces and tabs inside only.
_HEADER_VALUE: Final = re.compile(r"(?:[!-~\x80-\xff](?:[ \t!-~\x80-\xff]*[!-~\x80-\xff])?)?")


def need_header_value(field: str, value: str) -> None:
    """An HTTP header's value, which HTTP/1.1 sends as ISO-8859-1: anything else failed every
    try with a raw UnicodeEncodeError. The value may be a secret: never shown."""
    if not _HEADER_VALUE.fullmatch(value):
        raise SpecError(
            field=field,
            expected=(
                "a header value of Latin-1 text without control characters, line breaks "
                "or leading/trailing whitespace (percent-encode or base64 other text)"
            ),
            got=value,
            shown="***",
        )


def check_map(name: str, entries: object, *, header: bool) -> None:
    """Names and string values of ``headers`` or ``params``; a header value is never echoed."""
    need(isinstance(entries, Mapping), f"http.{name}", "a mapping", entries)
    prefix = f"http.{name}"
    # The messages' parts only for a bad entry, as a command's env check makes them: every
    # http job's and notify hook's entries are checked at each manifest load and reload.
    for key, value in entries.items():  # type: ignore[attr-defined]
        if header:
            named = isinstance(key, str) and bool(HEADER_NAME.fullmatch(key))
            if not named:
                expected = "a name like FOO_BAR (header names are tokens)"
                need_key(named, key_field(prefix, key), expected, key)
        else:
            named = isinstance(key, str)
            if not named:
                need_key(named, key_field(prefix, key), "a string", key)
        text = isinstance(value, str)
        if not text:
            need(text, key_field(prefix, key), "a string", value, shown=a_kind(value))
        if header and not _HEADER_VALUE.fullmatch(value):
            need_header_value(key_field(prefix, key), value)
