"""Reading manifest values: each with its path and line, converted but never judged.

The schema walk (``_manifest``) reads YAML values through a ``Reader``: it
converts them (``30s`` to seconds, ``TERM`` to a signal, ``${NAME}`` text to
counts and flags) and hands them to the spec constructors, which alone judge
them. ``Reader.build`` turns each ``SpecError`` into an ``Issue`` at the value
its field names, shown as the manifest wrote it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from actors import SpecError
from supervision import _theirs
from supervision._issues import (
    HoldsSecret,
    Issue,
    Merged,
    Text,
    join,
    mask,
    migrant_choice,
    show,
    unknown_key,
)
from supervision._spec import NAME
from supervision._units import BARE_NUMBER, DURATION_HINT, SIZE_HINT, parse_duration, parse_size

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["BAD", "Bad", "Reader", "V", "entries_of", "plain", "truthy"]

T = TypeVar("T")

_TRUE: Final = ("true", "yes", "on")
_FALSE: Final = ("false", "no", "off")
# A field of a SpecError: ``http.url``, ``command[1]``, ``env['A B']``.
_FIELD_PART = re.compile(r"""\[(\d+)\]|\[('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]|\.?([^.\[]+)""")


# Each refused entry costs a build of the spec again: past this many in one mapping (a
# generated manifest), the rest of it goes whole, reported by the first of them.
_ENTRIES_ONE_BY_ONE: Final = 50


class V(NamedTuple):
    """A value of the manifest with where it is: its path and line."""

    value: Any
    path: str
    line: int | None


class Bad:
    """The result of a value that was reported as an issue."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<bad>"


BAD: Final = Bad()


class Reader:
    """Collects issues and warnings instead of raising; converts values for the specs."""

    def __init__(self, file: str | None) -> None:
        self.file = file
        self.issues: list[Issue] = []
        self.warnings: list[Issue] = []
        self.secrets: set[str] = set()
        self._seen: set[tuple[str, int | None, str]] = set()

    # -- issues ----------------------------------------------------------------------------------

    def add(self, at: V, message: str) -> None:
        self._add_at(at.path, at.line, message)

    def _add_at(self, path: str, line: int | None, message: str) -> None:
        key = (path, line, message)
        if key not in self._seen:  # an inherited default is reported once, not per job
            self._seen.add(key)
            self.issues.append(Issue(path, line, message, self.file))

    def _warn_at(self, path: str, line: int | None, message: str) -> None:
        key = (path, line, "warning: " + message)
        if key not in self._seen:
            self._seen.add(key)
            self.warnings.append(Issue(path, line, message, self.file))

    def expected(self, at: V, what: str, *, hint: str = "") -> Bad:
        self.add(at, f"expected {what}, got {show(at.value)}{hint}")
        return BAD

    def missing(self, parent: V, key: str, what: str) -> Bad:
        self.add(V(None, join(parent.path, key), parent.line), f"expected {what}, got nothing")
        return BAD

    def final_issues(self, issues: list[Issue] | None = None) -> list[Issue]:
        ordered = sorted(
            self.issues if issues is None else issues, key=lambda i: (i.line is None, i.line or 0)
        )
        secrets = sorted(self.secrets, key=len, reverse=True)
        return [Issue(i.path, i.line, mask(i.message, secrets), i.file, i.column) for i in ordered]

    def build(self, at: V, cls: Callable[..., T], prefix: str = "", **kwargs: Any) -> T | Bad:
        """``cls(**kwargs)``; each ``SpecError`` becomes an issue at the field it names.

        ``at`` is the mapping the spec is read from and ``prefix`` the name its
        fields start with (``backoff`` for ``backoff.max``). The spec reports
        its first bad field; that field is then left to its default (an entry
        of a mapping field, ``headers.X-One``: that entry left out) and the
        spec built again, so that every bad field of one mapping is reported,
        but none that only follows from one reported.
        """
        return self._build(at, cls, prefix, kwargs, dropped=set())

    def build_read(
        self,
        at: V,
        cls: Callable[..., T],
        values: dict[str, Any],
        prefix: str = "",
        stand_ins: dict[str, Any] | None = None,
    ) -> T | Bad:
        """``build`` from fields read one by one, some of which may have read ``BAD``.

        A field that read ``BAD`` (already reported) is left out, or given its
        stand-in when the spec cannot do without it, and the spec is built all
        the same: the other fields' own problems are reported too (SPEC §3: all
        collected), though none that names a field left out; then ``BAD``. A
        field the spec itself refuses is given its stand-in the same way.
        """
        stand_ins = stand_ins or {}
        unread = {key for key, value in values.items() if isinstance(value, Bad)}
        given = {key: value for key, value in values.items() if key not in unread}
        given.update({key: value for key, value in stand_ins.items() if key in unread})
        return self._build(at, cls, prefix, given, dropped=unread, stand_ins=stand_ins)

    def _build(
        self,
        at: V,
        cls: Callable[..., T],
        prefix: str,
        kwargs: dict[str, Any],
        *,
        dropped: set[str],
        stand_ins: dict[str, Any] | None = None,
    ) -> T | Bad:
        checked_only = bool(dropped)  # a build for its reports: never a spec
        removed: dict[str, int] = {}  # entries refused so far, by argument
        while True:
            try:
                spec = cls(**kwargs)
            except SpecError as exc:
                if dropped and _names_any(exc, dropped):
                    return BAD
                self.report(at, exc, prefix)
                key = _kwarg_of(exc.field, kwargs)
                if key is None or key in dropped:
                    return BAD
                entry = _entry_of(exc.field, key, kwargs[key])
                removed[key] = removed.get(key, 0) + 1
                if entry is not None and removed[key] < _ENTRIES_ONE_BY_ONE:
                    # Only that entry goes (each header, each env variable): the mapping's
                    # other entries are checked too, and each one refused is reported.
                    kwargs[key] = {k: v for k, v in kwargs[key].items() if k != entry[0]}
                    checked_only = True
                    continue
                dropped.add(key)
                if stand_ins and key in stand_ins:  # one the spec cannot do without
                    kwargs[key] = stand_ins[key]
                    checked_only = True
                else:
                    del kwargs[key]
            except Exception as exc:
                if not dropped:
                    self.add(at, f"invalid: {type(exc).__name__}: {exc}")
                return BAD
            else:
                return BAD if checked_only else spec

    def report(self, at: V, exc: SpecError, prefix: str = "") -> None:
        """Add ``exc`` as an issue at the value its field names, shown as the manifest wrote it."""
        if not exc.expected:
            self.add(at, f"invalid: {exc}")
            return
        where, rest = self._locate(at, exc.field, prefix)
        if rest and exc.other is not None:
            other_where, other_rest = self._locate(at, exc.other.field, prefix)
            if not other_rest:  # the problem told at the field the user wrote
                where, rest, exc = other_where, other_rest, exc.other
        expected, hint = exc.expected, ""
        if exc.about is not None:
            shown = exc.about
        elif rest:
            if len(rest) == 1 and entries_of(where) is not None:
                self.missing(where, str(rest[0]), expected)
                return
            shown = exc.shown
        else:
            shown = show(where.value)
            expected, hint = _hints(expected, where.value)
        self.add(where, f"expected {expected}, got {shown}{hint}")

    def _locate(self, at: V, field: str, prefix: str) -> tuple[V, list[str | int]]:
        """The value ``field`` names under ``at`` (named ``prefix``), and the parts not written."""
        parts = _field_parts(field)
        skip = _field_parts(prefix)
        if parts[: len(skip)] == skip:
            del parts[: len(skip)]
        while parts:
            part = parts[0]
            entries = entries_of(at)
            if entries is not None and part in entries:  # a key, an int key too
                at = entries[part]
            elif isinstance(part, int) and isinstance(at.value, list) and part < len(at.value):
                lines = getattr(at.value, "lines", [])
                line = lines[part] if part < len(lines) else at.line
                at = V(at.value[part], f"{at.path}[{part}]", line)
            else:
                break
            parts.pop(0)
        return at, parts

    # -- generic readers: YAML values converted, never judged (the specs do that) ----------------

    def fields(
        self,
        v: V,
        allowed: Sequence[str],
        what: str,
        *,
        null_ok: bool = True,
        extensions: bool = False,
    ) -> dict[str, V] | None:
        """The entries of a mapping with only ``allowed`` keys; unknown keys are issues.

        ``extensions``: keys that start with ``x-`` are left out, not refused (docker
        compose's extension fields, where a file keeps the blocks its anchors name).
        """
        if v.value is None and null_ok:
            return {}
        entries = entries_of(v)
        if entries is None:
            self.expected(v, what)
            return None
        out: dict[str, V] = {}
        values: dict[Any, object] | None = None
        for key, item in entries.items():
            if isinstance(key, str) and key in allowed:
                out[key] = item
            elif extensions and isinstance(key, str) and key.startswith("x-"):
                continue
            else:
                if values is None:  # an unknown key's hint may show the values written
                    values = {k: e.value for k, e in entries.items()}
                self.add(V(key, item.path, item.line), unknown_key(key, allowed, values))
        return out

    @staticmethod
    def count(v: V) -> Any:
        """An int; a count written as ``${NAME}`` is read from its text."""
        value = v.value
        if isinstance(value, Text) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
            return int(value)
        return value

    @staticmethod
    def number(v: V) -> Any:
        """A float for a number (or a number written as ``${NAME}``); anything else as it is.

        Text in a number's form is one: YAML 1.1 reads ``1.5e1`` and ``1e3`` (no dot, or no
        sign in the exponent) as text, where a duration took them (h243).
        """
        value = v.value
        if isinstance(value, str) and BARE_NUMBER.fullmatch(value):
            value = float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                return value
        return value

    @staticmethod
    def duration(v: V) -> Any:
        """Seconds for ``30s``, ``1h30m`` or a number; anything else as it is, for the spec."""
        try:
            return parse_duration(v.value)
        except SpecError:
            return v.value

    @staticmethod
    def size(v: V) -> Any:
        """Bytes for ``10MiB`` or a number; anything else as it is, for the spec to refuse."""
        try:
            return parse_size(v.value)
        except SpecError:
            return v.value

    @staticmethod
    def flag(v: V) -> Any:
        """A bool; a flag written as ``${NAME}`` is read from its text."""
        value = v.value
        if isinstance(value, Text) and value.strip().lower() in (*_TRUE, *_FALSE):
            return value.strip().lower() in _TRUE
        return value

    def choice(self, v: V, choices: Sequence[str]) -> str | Bad:
        value = v.value
        if isinstance(value, str) and value in choices:
            return str(value)
        hint = ""
        if (theirs := migrant_choice(value, choices)) is not None:
            hint = f" ({theirs})"
        elif isinstance(value, str):
            lower = {choice.lower(): choice for choice in choices}
            close = difflib.get_close_matches(value.lower(), lower, n=1)
            hint = f" (did you mean {lower[close[0]]!r}?)" if close else ""
        return self.expected(v, "one of " + ", ".join(choices), hint=hint)

    def text(self, v: V, what: str = "a non-empty string") -> str | Bad:
        value = v.value
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            return self.expected(v, what)
        return str(value)

    def scalar_text(self, v: V, what: str = "a string") -> str | Bad:
        """A string; a number is taken as its text (``PORT: 8080``), a bool is not."""
        value = v.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or "\0" in value:
            hint = " (quote it)" if isinstance(value, bool) else ""
            return self.expected(v, what, hint=hint)
        return str(value)

    def name(self, v: V, what: str) -> str | Bad:
        value = v.value
        if not isinstance(value, str) or not NAME.fullmatch(value):
            return self.expected(v, f"{what} made of letters, digits, '_', '.' or '-'")
        return str(value)

    def items(self, v: V, what: str, *, single_ok: bool = False) -> list[V] | None:
        """The items of a list (a lone scalar counts as a list of one when ``single_ok``)."""
        value = v.value
        if single_ok and isinstance(value, str | int) and not isinstance(value, bool):
            return [v]
        if not isinstance(value, list):
            self.expected(v, what)
            return None
        lines = getattr(value, "lines", None)
        return [
            V(item, f"{v.path}[{i}]", lines[i] if lines and i < len(lines) else v.line)
            for i, item in enumerate(value)
        ]

    def str_map(self, v: V, what: str) -> dict[Any, str] | Bad:
        """A mapping's values as text; its names are the spec's to check."""
        entries = self.fields_any(v, what)
        if entries is None:
            return BAD
        out: dict[Any, str] = {}
        bad = False
        for key, item in entries.items():
            value = self.scalar_text(item)
            if isinstance(value, Bad):
                bad = True
            else:
                out[key] = value
        return BAD if bad else out

    def fields_any(self, v: V, what: str) -> dict[Any, V] | None:
        if v.value is None:
            return {}
        entries = entries_of(v)
        if entries is None:
            self.expected(v, what)
        return entries


def _field_parts(field: str) -> list[str | int]:
    """``headers['X A']`` -> ``["headers", "X A"]``; ``command[1]`` -> ``["command", 1]``."""
    parts: list[str | int] = []
    for index, quoted, name in _FIELD_PART.findall(field):
        if index:
            parts.append(int(index))
        elif quoted:
            parts.append(quoted[1:-1].encode().decode("unicode_escape"))
        else:
            parts.append(name)
    return parts


def _kwarg_of(field: str, kwargs: dict[str, Any]) -> str | None:
    """The keyword argument a spec's field names: ``headers['X']`` -> ``headers``.

    A field written with a dot may be one keyword: ``stop.signal`` -> ``stop_signal``.
    """
    key = next((p for p in _field_parts(field) if p in kwargs), None)
    if isinstance(key, str):
        return key
    joined = field.replace(".", "_")
    return joined if joined in kwargs else None


def _entry_of(field: str, key: str, value: object) -> tuple[object] | None:
    """The entry of mapping ``value`` (keyword ``key``) that ``field`` names, in a 1-tuple:
    ``http.headers.X-Two`` -> ``("X-Two",)``; None when it names the whole of it."""
    parts = _field_parts(field)
    # A Mapping: a job's env over its env files' (``JobEnv``) too.
    if not isinstance(value, Mapping) or key not in parts:  # ``stop.signal``: no entry named
        return None
    at = parts.index(key) + 1
    if at < len(parts) and parts[at] in value:
        return (parts[at],)
    return None


def _names_any(exc: SpecError, fields: set[str]) -> bool:
    """Whether ``exc``, or the same problem told at its other field, names one of ``fields``."""
    named: set[str | int] = set()
    for told in (exc, exc.other):
        if told is not None:
            named.update(_field_parts(told.field))
            named.add(told.field.replace(".", "_"))
    return bool(named & fields)


def _hints(expected: str, value: object) -> tuple[str, str]:
    """``expected`` and a hint after the value, for a value the manifest wrote in a wrong form.

    A duration or size that could not be read gets its forms (``like 250ms, 30s, ...``);
    a misspelt choice gets the closest one; a bool where text was expected, ``(quote it)``.
    """
    if isinstance(value, str | bool) or value is None:
        # A duration past its bound ("up to 3650d") was read: its form needs no hint.
        if expected.startswith("a duration") and "up to" not in expected:
            return f"{expected} like {DURATION_HINT}", _jobvisors_spelling(value)
        if expected.startswith("a size"):
            return f"{expected} like {SIZE_HINT}", ""
    if isinstance(value, str) and expected.startswith("one of "):
        choices = expected.removeprefix("one of ").split(", ")
        lower = {choice.lower(): choice for choice in choices}
        close = difflib.get_close_matches(value.lower(), lower, n=1)
        return expected, f" (did you mean {lower[close[0]]!r}?)" if close else ""
    if isinstance(value, bool) and "string" in expected:
        return expected, " (quote it)"
    return expected, ""


def _jobvisors_spelling(value: object) -> str:
    """For a duration in systemd's spelling (``10sec``, ``1min 30s``), jobvisor's of it."""
    if not isinstance(value, str) or isinstance(value, HoldsSecret):
        return ""
    try:
        parse_duration(value)
    except SpecError:
        theirs = _theirs.span(value)
        return f" (systemd's spelling; jobvisor writes {theirs})" if theirs else ""
    return ""  # read, and refused for its length


def entries_of(v: V) -> dict[Any, V] | None:
    """The entries of a mapping value, each with its path and line; None for a non-mapping."""
    value = v.value
    if isinstance(value, Merged):
        return value.entries
    if not isinstance(value, dict):
        return None
    lines = getattr(value, "lines", {})
    return {key: V(item, join(v.path, key), lines.get(key, v.line)) for key, item in value.items()}


def plain(value: Any) -> Any:
    """Resolved data as plain dicts, lists and strs."""
    if isinstance(value, Merged):
        return {k: plain(v.value) for k, v in value.entries.items()}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def truthy(value: object) -> bool:
    return value is True or (isinstance(value, Text) and value.strip().lower() in _TRUE)
