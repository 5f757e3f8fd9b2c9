"""The manifest loader: ``jobs.yaml`` -> a validated ``Manifest`` of frozen specs (SPEC §3, §7).

YAML is read safely, keeping the line of every key and list item; a pure
``parse(data)`` then checks the whole document, collects every problem and
raises one ``ManifestError`` that lists them all, each with its path
(``jobs[2].retry.attempts``), line, the expected and the actual value. No
other exception escapes for any manifest.

Rules this module decides where SPEC §3 is silent:

- ``${NAME}`` is replaced from the environment in every string *value*
  (mapping keys are names and stay as written); ``${NAME:-fallback}`` gives a
  fallback; ``$${`` writes a literal ``${``. Any other ``${...}`` is an error.
  A count, number or flag written as ``${NAME}`` is read from the text.
- ``{secret: {env: NAME}}`` / ``{secret: {file: PATH}}`` (a mapping whose only
  key is ``secret``) is replaced by the secret's value; a file is read as
  UTF-8, relative to the manifest's directory, without one trailing newline.
  Secret values are collected in ``Manifest.secrets`` and shown as ``***``
  in every issue and in ``explain()``.
- ``defaults`` holds job fields for every job at any depth unless the job sets
  them. Each key merges shallowly (the job's value replaces the default),
  except ``env`` and ``http.headers``, whose entries merge (the job's entry
  wins; other ``http`` keys merge shallowly too). A default applies only
  where it can: ``env``/``cwd`` to command jobs, ``args``/``kwargs`` to python
  jobs, ``service`` to command and python jobs, ``ready`` to services,
  ``stop.signal`` to command jobs, a default ``command``/``http``/``python``
  only to a job that names no kind of its own, and the run mode keys
  (``service``/``every``/``cron``/``times``) only to a job that sets none of
  ``service``, ``every`` or ``cron``. ``name`` and ``depends_on`` cannot be
  defaults. Problems in an inherited value are reported once, at
  ``defaults.KEY``.
- Every group has its own policy with the documented defaults; the root's
  ``supervisor:`` is not inherited by groups.
- ``depends_on`` names siblings (jobs or groups); a replicated name means all
  of its replicas. Relative ``state_dir``, ``logging.file`` and ``cwd``
  resolve against the manifest's directory (for manifest text: the working
  directory).
- YAML timestamps stay strings (``2024-01-01``); a YAML bool is never a number;
  a mapping key that YAML 1.1 reads as a bool (``on:``, ``yes:``) keeps its text.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import importlib.util
import json as jsonlib
import math
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar
from urllib.parse import urlsplit

import yaml

from actors import PythonWork, RetrySpec, RetryWait, Schedule, SpecError
from supervision._policy import (
    Backoff,
    CooldownPolicy,
    Intensity,
    OnExhausted,
    RestartPolicy,
    RestartType,
    Strategy,
)
from supervision._secrets import SecretMasker
from supervision._spec import (
    DEFAULT_GRACE,
    LEVELS,
    NAME,
    BreakerSpec,
    ChildSpec,
    JobSpec,
    LoggingSpec,
    RotateSpec,
    SupervisorSpec,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "Issue",
    "Manifest",
    "ManifestError",
    "load_manifest",
    "parse",
    "parse_duration",
    "parse_size",
]

T = TypeVar("T")

TEXT_NAME: Final = "<manifest>"  # the file name issues show for manifest text
MAX_DEPTH: Final = 64  # levels of nesting a manifest may have
MAX_VALUES: Final = 100_000  # values a manifest may hold once aliases are expanded
MAX_REPLICAS: Final = 10_000  # children one job entry may expand into


# -- results and errors ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem of a manifest: where it is and what was expected instead of what was found.

    ``path`` is like ``jobs[2].retry.attempts`` ("" for the whole document),
    ``line`` and ``column`` are 1-based or None; ``file`` is the manifest's
    name as the user gave it (``<manifest>`` for text) or None.
    """

    path: str
    line: int | None
    message: str
    file: str | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
            if self.column is not None:
                where = f"{where}:{self.column}"
        parts = [p for p in (where, self.path) if p]
        return ": ".join([*parts, self.message])


class ManifestError(SpecError):
    """A manifest cannot be used; ``issues`` lists every problem found, in document order.

    Raised by ``load_manifest`` and ``parse`` for unreadable files, invalid
    YAML (one issue at ``FILE:LINE:COL``) and schema problems (all of them at
    once). Fix the issues and load again. Unlike a plain ``SpecError``, which
    reports the first bad value of one spec built in code, it carries file
    positions. ``str()`` shows one issue per line; secret values never
    appear in it.
    """

    def __init__(self, issues: Iterable[Issue], file: str | None = None) -> None:
        self.issues: tuple[Issue, ...] = tuple(issues)
        self.file = file
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.issues, self.file))


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A validated manifest: the tree to run and everything around it.

    ``secrets`` holds the resolved secret values so that logs, status and the
    journal can mask them; it is left out of ``repr``.
    """

    path: Path | None  # the manifest file, None for manifest text
    version: int
    runtime: str  # "threads" | "gevent"
    state_dir: Path  # absolute
    logging: LoggingSpec
    root: SupervisorSpec
    breakers: Mapping[str, BreakerSpec]
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    cluster_address: str | None = None

    def tree_spec(self) -> SupervisorSpec:
        """The root supervisor's spec, for ``start_tree``."""
        return self.root

    def explain(self) -> str:
        """The resolved tree with every effective policy, defaults filled in; secrets masked."""
        out = [
            f"manifest: {self.path or TEXT_NAME} (version {self.version})",
            f"runtime: {self.runtime}",
            f"state_dir: {self.state_dir}",
            _explain_logging(self.logging),
            f"cluster: {self.cluster_address or 'local (when a job uses placement ray)'}",
        ]
        if self.breakers:
            out.append("breakers:")
            out.extend(
                f"  {name}: {_explain_breaker(spec)}" for name, spec in self.breakers.items()
            )
        else:
            out.append("breakers: none")
        _explain_supervisor(self.root, out, "", self.breakers)
        return _mask("\n".join(out), self.secrets)


# -- durations and sizes --------------------------------------------------------------------------

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE_NUMBER = re.compile(rf"\s*{_NUMBER}(?:[eE][+-]?\d+)?\s*")
_DURATION = re.compile(rf"\s*(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+", re.IGNORECASE)
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(rf"\s*({_NUMBER})\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
_SIZE_UNITS: Final = {
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
            if _BARE_NUMBER.fullmatch(value):
                seconds = float(value)
            elif _DURATION.fullmatch(value):
                seconds = sum(
                    float(number) * _DURATION_UNITS[unit.lower()]
                    for number, unit in _DURATION_PART.findall(value)
                )
    except (OverflowError, ValueError):
        seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise SpecError(f"expected a duration like {DURATION_HINT}, got {_show(value)}")
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
        scaled = float(number) * _SIZE_UNITS[(unit or "b").lower()]
        size = int(scaled) if math.isfinite(scaled) else None
    if size is None or size < 0:
        raise SpecError(f"expected a size like {SIZE_HINT}, got {_show(value)}")
    return size


# -- YAML with line numbers -----------------------------------------------------------------------


class _LineDict(dict[Any, Any]):
    """A mapping read from YAML, with the line of each key and the keys written twice."""

    __slots__ = ("duplicates", "line", "lines")

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[Any, int | None] = {}
        self.duplicates: list[tuple[Any, int, int]] = []  # (key, line, first line)


class _LineList(list[Any]):
    """A sequence read from YAML, with the line of each item."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int | None] = []


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that records lines, keeps timestamps as text and marks bad scalars."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, OverflowError, TypeError) as exc:
            # e.g. an integer of more than 4300 digits: report it where it is written.
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from None


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Any:
    data = _LineDict(node.start_mark.line + 1)
    yield data
    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            ident = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if ident in seen:
                data.duplicates.append((key_node.value, line, seen[ident]))
            else:
                seen[ident] = line
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:bool":
            key = key_node.value  # a key is a name: ``on:`` (retry.on) is "on", not YAML 1.1's true
        else:
            key = loader.construct_object(key_node, deep=False)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found a key that is a list or a mapping",
                key_node.start_mark,
            ) from None
        data[key] = loader.construct_object(value_node, deep=False)
        data.lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Any:
    data = _LineList(node.start_mark.line + 1)
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=False))
        data.lines.append(item.start_mark.line + 1)


def _construct_text(loader: _Loader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)


def _read_yaml(text: str, file: str) -> Any:
    """The data of ``text``, or a ``ManifestError`` with one issue at ``FILE:LINE:COL``."""
    issue: Issue
    try:
        loader = _Loader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context:
            where = ""
            if exc.context_mark is not None and exc.context_mark is not mark:
                where = (
                    f" that started at line {exc.context_mark.line + 1}, "
                    f"column {exc.context_mark.column + 1}"
                )
            message = (
                f"{exc.context}{where}, {message}"
                if message.startswith("but ")
                else f"{message} ({exc.context}{where})"
            )
        line = None if mark is None else mark.line + 1
        column = None if mark is None else mark.column + 1
        issue = Issue("", line, f"invalid YAML: {message}", file, column)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"invalid YAML: expected printable text, got the character #x{char:04x}"
        issue = Issue("", line, message, file, column)
    except yaml.YAMLError as exc:
        issue = Issue("", None, f"invalid YAML: {exc}", file)
    except RecursionError:
        issue = Issue("", None, "invalid YAML: expected less deeply nested data", file)
    raise ManifestError([issue], file)


# -- loading ---------------------------------------------------------------------------------------


def load_manifest(path_or_text: str | Path, *, env: Mapping[str, str] | None = None) -> Manifest:
    """Read and validate a manifest: a ``Path``, a string naming a file, or text holding a newline.

    ``env`` (default ``os.environ``) resolves ``${NAME}`` and ``{secret: {env:
    NAME}}``. Relative paths resolve against the manifest's directory (the
    working directory for text). Raises ``ManifestError`` listing every
    problem; nothing else, whatever the manifest holds.
    """
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        return parse(_FromYaml(_read_yaml(path_or_text, TEXT_NAME)), env=env, file=TEXT_NAME)
    if not isinstance(path_or_text, str | Path):
        raise TypeError(f"load_manifest: expected a Path or a str, got {path_or_text!r}")
    path = Path(path_or_text)
    file = str(path_or_text)
    try:
        raw = path.expanduser().read_bytes()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ManifestError(
            [Issue("", None, f"expected a readable manifest file, got: {reason}", file)], file
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"expected UTF-8 text, got byte {raw[exc.start]:#04x}"
        raise ManifestError([Issue("", line, message, file)], file) from None
    data = _FromYaml(_read_yaml(text, file))
    try:
        absolute = path.expanduser().resolve()
    except (OSError, RuntimeError):
        absolute = path.expanduser().absolute()
    return parse(data, env=env, path=absolute, file=file)


def parse(
    data: Any,
    *,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
    base_dir: Path | None = None,
    file: str | None = None,
) -> Manifest:
    """Validate manifest ``data`` (as YAML gives it) and build its ``Manifest``.

    Pure but for reading ``env`` and secret files. ``path`` is the manifest
    file (its directory is the default ``base_dir`` for relative paths; the
    working directory otherwise); ``file`` is the name issues show. Lines are
    known when ``data`` came from ``load_manifest``'s reader. Raises
    ``ManifestError`` with every problem; nothing else, for any data.
    """
    if base_dir is None:
        base_dir = path.parent if path is not None else _cwd()
    if file is None and path is not None:
        file = str(path)
    parser = _Parser(os.environ if env is None else env, base_dir, file)
    manifest = parser.manifest(data, path, 1 if isinstance(data, _FromYaml) else None)
    if parser.issues or manifest is None:
        issues = parser.final_issues() or [Issue("", None, "expected a valid manifest", file)]
        raise ManifestError(issues, file)
    return manifest


class _FromYaml:
    """A document as ``_read_yaml`` gave it: issues about the document as a whole are on line 1."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data


def _cwd() -> Path:
    try:
        return Path.cwd()
    except OSError:
        return Path()


# -- the parser ------------------------------------------------------------------------------------


class _V(NamedTuple):
    """A value of the manifest with where it is: its path and line."""

    value: Any
    path: str
    line: int | None


class _Merged:
    """A mapping made of entries from ``defaults`` and from a job, each with its own place."""

    __slots__ = ("entries",)

    def __init__(self, entries: dict[Any, _V]) -> None:
        self.entries = entries


class _Text(str):
    """A string that came out of ``${NAME}`` interpolation."""

    __slots__ = ()


class _Secret(_Text):
    """A secret's value: shown as ``***`` everywhere."""

    __slots__ = ()


class _Bad:
    """The result of a value that was reported as an issue."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<bad>"


BAD: Final = _Bad()

# fmt: off
_TOP_KEYS: Final = (
    "version", "runtime", "state_dir", "logging", "defaults", "supervisor", "breakers", "cluster",
    "jobs",
)
_POLICY_KEYS: Final = ("strategy", "intensity", "backoff", "on_exhausted", "cooldown")
_GROUP_KEYS: Final = ("group", *_POLICY_KEYS, "restart", "jobs")
_KINDS: Final = ("command", "http", "python")
_MODES: Final = ("service", "every", "cron")
_JOB_KEYS: Final = (
    "name", *_KINDS, "args", "kwargs", "cwd", "env", "service", "every", "times", "cron",
    "timeout", "retry", "breaker", "restart", "replicas", "depends_on", "ready", "stop",
    "placement",
)
_HTTP_KEYS: Final = (
    "method", "url", "headers", "params", "json", "body", "timeout", "expect_status",
)
# fmt: on
_OWN_ONLY: Final = ("name", "depends_on")
_FOR_KINDS: Final = {
    "env": ("command",),
    "cwd": ("command",),
    "args": ("python",),
    "kwargs": ("python",),
    "service": ("command", "python"),
}
_KIND_NOUN: Final = {"command": "a command job", "http": "an http job", "python": "a python job"}
_HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INTERPOLATION = re.compile(r"\$\$\{|\$\{([^}]*)(\})?")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SPEC_FIELD = re.compile(r"([A-Za-z_][\w.\-]*): (.*)", re.DOTALL)
_TRUE: Final = ("true", "yes", "on")
_FALSE: Final = ("false", "no", "off")


@dataclass(slots=True)
class _Entry:
    """A child of a supervisor, read but not yet built: it needs its siblings' names first."""

    name: str | None
    v: _V  # the list item
    name_v: _V  # where its name is written
    names: tuple[str, ...]  # the children it becomes (replicas expanded)
    deps: list[_V]  # depends_on items, each a str value
    deps_at: _V | None  # where depends_on is written
    build: Callable[[tuple[str, ...]], list[ChildSpec]]


class _Parser:
    """One pass over manifest data that collects issues instead of raising."""

    def __init__(self, env: Mapping[str, str], base_dir: Path, file: str | None) -> None:
        self.env = env
        self.base_dir = base_dir
        self.file = file
        self.issues: list[Issue] = []
        self._seen: set[tuple[str, int | None, str]] = set()
        self.secrets: set[str] = set()
        self.budget = MAX_VALUES
        self.runtime = "threads"
        self.breakers: dict[str, BreakerSpec] = {}
        self.breaker_names: list[str] = []
        self.defaults: dict[str, _V] = {}
        self.used_defaults: set[str] = set()
        self._ray: bool | None = None

    # -- issues ----------------------------------------------------------------------------------

    def add(self, at: _V, message: str) -> None:
        key = (at.path, at.line, message)
        if key not in self._seen:  # an inherited default is reported once, not per job
            self._seen.add(key)
            self.issues.append(Issue(at.path, at.line, message, self.file))

    def expected(self, at: _V, what: str, *, hint: str = "") -> _Bad:
        self.add(at, f"expected {what}, got {_show(at.value)}{hint}")
        return BAD

    def missing(self, parent: _V, key: str, what: str) -> _Bad:
        self.add(_V(None, _join(parent.path, key), parent.line), f"expected {what}, got nothing")
        return BAD

    def final_issues(self) -> list[Issue]:
        ordered = sorted(self.issues, key=lambda i: (i.line is None, i.line or 0))
        secrets = sorted(self.secrets, key=len, reverse=True)
        return [Issue(i.path, i.line, _mask(i.message, secrets), i.file, i.column) for i in ordered]

    def build(self, at: _V, cls: Callable[..., T], **kwargs: Any) -> T | _Bad:
        """``cls(**kwargs)``; a ``SpecError`` (or any error) becomes an issue at its field."""
        try:
            return cls(**kwargs)
        except Exception as exc:
            message = str(exc) if isinstance(exc, SpecError) else f"{type(exc).__name__}: {exc}"
            where = at
            if isinstance(exc, SpecError) and (match := _SPEC_FIELD.fullmatch(message)):
                where, message = self._locate(at, match.group(1)), match.group(2)
            self.add(where, message if message.startswith("expected") else f"invalid: {message}")
            return BAD

    def _locate(self, at: _V, dotted: str) -> _V:
        """The value a SpecError's ``field.path:`` prefix names, as far as ``at`` holds it."""
        parts = dotted.split(".")
        entries = _entries(at)
        while parts and entries is not None and parts[0] not in entries:
            parts.pop(0)  # a leading "retry." or "http." names ``at`` itself
        while parts and entries is not None and parts[0] in entries:
            at = entries[parts.pop(0)]
            entries = _entries(at)
        return at

    # -- generic readers -------------------------------------------------------------------------

    def fields(
        self, v: _V, allowed: Sequence[str], what: str, *, null_ok: bool = True
    ) -> dict[str, _V] | None:
        """The entries of a mapping with only ``allowed`` keys; unknown keys are issues."""
        if v.value is None and null_ok:
            return {}
        entries = _entries(v)
        if entries is None:
            self.expected(v, what)
            return None
        out: dict[str, _V] = {}
        for key, item in entries.items():
            if isinstance(key, str) and key in allowed:
                out[key] = item
            else:
                self.add(_V(key, item.path, item.line), _unknown_key(key, allowed))
        return out

    def count(self, v: _V, minimum: int = 0) -> int | _Bad:
        value = v.value
        if isinstance(value, _Text) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return self.expected(v, f"a count >= {minimum}")
        return value

    def number(
        self, v: _V, what: str, minimum: float | None = None, maximum: float | None = None
    ) -> float | _Bad:
        value = v.value
        if isinstance(value, _Text) and _BARE_NUMBER.fullmatch(value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self.expected(v, what)
        try:
            number = float(value)
        except OverflowError:
            return self.expected(v, what)
        if (
            not math.isfinite(number)
            or (minimum is not None and number < minimum)
            or (maximum is not None and number > maximum)
        ):
            return self.expected(v, what)
        return number

    def duration(self, v: _V, *, positive: bool = False) -> float | _Bad:
        bound = "> 0" if positive else ">= 0"
        try:
            seconds = parse_duration(v.value)
        except SpecError:
            return self.expected(v, f"a duration {bound} like {DURATION_HINT}")
        if positive and seconds <= 0:
            return self.expected(v, f"a duration {bound}")
        return seconds

    def size(self, v: _V, minimum: int = 0) -> int | _Bad:
        try:
            size = parse_size(v.value)
        except SpecError:
            return self.expected(v, f"a size >= {minimum} like {SIZE_HINT}")
        if size < minimum:
            return self.expected(v, f"a size >= {minimum} bytes")
        return size

    def flag(self, v: _V) -> bool | _Bad:
        value = v.value
        if isinstance(value, _Text) and value.strip().lower() in (*_TRUE, *_FALSE):
            return value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            return self.expected(v, "true or false")
        return value

    def choice(self, v: _V, choices: Sequence[str]) -> str | _Bad:
        value = v.value
        if isinstance(value, str) and value in choices:
            return str(value)
        hint = ""
        if isinstance(value, str):
            lower = {choice.lower(): choice for choice in choices}
            close = difflib.get_close_matches(value.lower(), lower, n=1)
            hint = f" (did you mean {lower[close[0]]!r}?)" if close else ""
        return self.expected(v, "one of " + ", ".join(choices), hint=hint)

    def text(self, v: _V, what: str = "a non-empty string") -> str | _Bad:
        value = v.value
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            return self.expected(v, what)
        return str(value)

    def scalar_text(self, v: _V, what: str = "a string") -> str | _Bad:
        """A string; a number is taken as its text (``PORT: 8080``), a bool is not."""
        value = v.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or "\0" in value:
            hint = " (quote it)" if isinstance(value, bool) else ""
            return self.expected(v, what, hint=hint)
        return str(value)

    def name(self, v: _V, what: str) -> str | _Bad:
        value = v.value
        if not isinstance(value, str) or not NAME.fullmatch(value):
            return self.expected(v, f"{what} made of letters, digits, '_', '.' or '-'")
        return str(value)

    def items(self, v: _V, what: str, *, single_ok: bool = False) -> list[_V] | None:
        """The items of a list (a lone scalar counts as a list of one when ``single_ok``)."""
        value = v.value
        if single_ok and isinstance(value, str | int) and not isinstance(value, bool):
            return [v]
        if not isinstance(value, list):
            self.expected(v, what)
            return None
        lines = getattr(value, "lines", None)
        return [
            _V(item, f"{v.path}[{i}]", lines[i] if lines and i < len(lines) else v.line)
            for i, item in enumerate(value)
        ]

    def str_map(self, v: _V, what: str, key_pattern: re.Pattern[str] | None) -> dict[str, str]:
        entries = self.fields_any(v, what)
        out: dict[str, str] = {}
        for key, item in (entries or {}).items():
            if not isinstance(key, str) or (
                key_pattern is not None and not key_pattern.fullmatch(key)
            ):
                self.add(item, f"expected a name like FOO_BAR, got {_show(key)}")
                continue
            value = self.scalar_text(item)
            if not isinstance(value, _Bad):
                out[key] = value
        return out

    def fields_any(self, v: _V, what: str) -> dict[Any, _V] | None:
        if v.value is None:
            return {}
        entries = _entries(v)
        if entries is None:
            self.expected(v, what)
        return entries

    # -- resolving ${NAME} and secrets -----------------------------------------------------------

    def resolve(self, value: Any, path: str, line: int | None, depth: int = 0) -> Any:
        """A copy of ``value`` with every string interpolated and every secret read."""
        self.budget -= 1
        if self.budget == -1:
            self.add(_V(None, path, line), f"expected at most {MAX_VALUES} values, got more")
        if isinstance(value, str) and self.budget >= 0:
            return self.interpolate(value, path, line)
        if not isinstance(value, dict | list | tuple) or self.budget < 0:
            return value if self.budget >= 0 else None
        if depth >= MAX_DEPTH:
            self.add(
                _V(None, path, line),
                f"expected at most {MAX_DEPTH} levels of nesting, got more (a recursive alias?)",
            )
            return None
        if isinstance(value, dict):
            if len(value) == 1 and "secret" in value:
                return self.secret(_V(value, path, line), depth)
            return self.resolve_mapping(value, path, line, depth)
        return self.resolve_sequence(value, path, line, depth)

    def resolve_mapping(
        self, value: dict[Any, Any], path: str, line: int | None, depth: int
    ) -> _LineDict:
        lines = getattr(value, "lines", {})
        for key, key_line, first in getattr(value, "duplicates", ()):
            self.add(
                _V(None, _join(path, key), key_line),
                f"expected each key once, got {key!r} again (first at line {first})",
            )
        mapping = _LineDict(getattr(value, "line", line))
        for key, item in value.items():
            item_line = lines.get(key, line)
            mapping[key] = self.resolve(item, _join(path, key), item_line, depth + 1)
            mapping.lines[key] = item_line
        return mapping

    def resolve_sequence(
        self, value: list[Any] | tuple[Any, ...], path: str, line: int | None, depth: int
    ) -> _LineList:
        item_lines = getattr(value, "lines", [])
        sequence = _LineList(getattr(value, "line", line))
        for i, item in enumerate(value):
            item_line = item_lines[i] if i < len(item_lines) else line
            sequence.append(self.resolve(item, f"{path}[{i}]", item_line, depth + 1))
            sequence.lines.append(item_line)
        return sequence

    def interpolate(self, text: str, path: str, line: int | None) -> str:
        if "${" not in text:
            return text
        at = _V(text, path, line)

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            inner, closed = match.group(1), match.group(2)
            variable = _VARIABLE.fullmatch(inner) if closed else None
            if variable is None:
                shown = f"${{{inner}{closed or ''}"
                self.add(
                    at,
                    f"expected ${{NAME}} or ${{NAME:-fallback}} with NAME of letters, digits "
                    f"and '_', got {shown!r} (write $${{ for a literal ${{)",
                )
                return ""
            name, fallback = variable.groups()
            value = self.env.get(name)
            if value is None:
                if fallback is not None:
                    return str(fallback)
                self.add(
                    at,
                    f"expected environment variable {name} to be set (for ${{{name}}}), "
                    f"got it unset; set it or write ${{{name}:-fallback}}",
                )
                return ""
            return str(value)

        return _Text(_INTERPOLATION.sub(substitute, text))

    def secret(self, v: _V, depth: int) -> _Secret | None:
        lines = getattr(v.value, "lines", {})
        source = _V(v.value["secret"], _join(v.path, "secret"), lines.get("secret", v.line))
        what = "a secret source: {env: NAME} or {file: PATH}"
        entries = self.fields(source, ("env", "file"), what, null_ok=False)
        if entries is None:
            return None
        if len(entries) != 1:
            got = " and ".join(entries) or "neither"
            self.add(source, f"expected exactly one of env or file, got {got}")
            return None
        kind, item = next(iter(entries.items()))
        value = self.secret_env(item) if kind == "env" else self.secret_file(item, depth)
        if value is None:
            return None
        if value:
            self.secrets.add(value)
        return _Secret(value)

    def secret_env(self, item: _V) -> str | None:
        name = item.value
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            self.expected(item, "an environment variable name like API_TOKEN")
            return None
        value = self.env.get(name)
        if value is None:
            self.add(item, f"expected environment variable {name} to be set, got it unset")
        return value

    def secret_file(self, item: _V, depth: int) -> str | None:
        """The file's text without one trailing newline."""
        file_name = self.resolve(item.value, item.path, item.line, depth + 1)
        if not isinstance(file_name, str) or not file_name.strip() or "\0" in file_name:
            self.expected(item, "the path of a file holding the secret")
            return None
        where = self.base_dir / Path(file_name).expanduser()
        try:
            value = where.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # its text would quote the secret's bytes
            reason = "not UTF-8 text"
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        else:
            return value.removesuffix("\n").removesuffix("\r") if value.endswith("\n") else value
        self.add(item, f"expected a readable secret file {str(where)!r}, got: {reason}")
        return None

    # -- the document ----------------------------------------------------------------------------

    def manifest(self, data: Any, path: Path | None, line: int | None) -> Manifest | None:
        if isinstance(data, _FromYaml):
            data = data.data
        root = _V(self.resolve(data, "", line), "", line)
        what = "a mapping with version and jobs"
        if root.value is None:
            self.add(root, f"expected {what}, got an empty document")
            return None
        top = self.fields(root, _TOP_KEYS, what, null_ok=False)
        if top is None:
            return None
        state_dir = self.header(root, top)
        logging = self.logging(top["logging"]) if "logging" in top else LoggingSpec()
        cluster = self.cluster(top["cluster"]) if "cluster" in top else None
        if "breakers" in top:
            self.read_breakers(top["breakers"])
        if "defaults" in top:
            self.read_defaults(top["defaults"])
        spec = self.root(root, top)
        self.check_unused_defaults()
        if self.issues or isinstance(logging, _Bad) or isinstance(spec, _Bad):
            return None
        return Manifest(
            path=path,
            version=1,
            runtime=self.runtime,
            state_dir=_absolute(state_dir),
            logging=logging,
            root=spec,
            breakers=dict(self.breakers),
            secrets=frozenset(self.secrets),
            cluster_address=cluster,
        )

    def header(self, root: _V, top: dict[str, _V]) -> Path:
        """Check version and runtime; return the state directory."""
        version = top.get("version")
        if version is None:
            self.missing(root, "version", "1 (the manifest format)")
        elif type(version.value) is not int or version.value != 1:
            self.expected(version, "1 (the only manifest format so far)")
        if "runtime" in top:
            runtime = self.choice(top["runtime"], ("threads", "gevent"))
            self.runtime = runtime if isinstance(runtime, str) else "threads"
        if "state_dir" in top:
            state = self.text(top["state_dir"], "a directory path")
            if isinstance(state, str):
                return self.base_dir / Path(state).expanduser()
        return self.base_dir / ".jobvisor"

    def root(self, root: _V, top: dict[str, _V]) -> SupervisorSpec | _Bad:
        strategy, policy = Strategy.ONE_FOR_ONE, RestartPolicy()
        if "supervisor" in top:
            sup = self.fields(top["supervisor"], _POLICY_KEYS, "a mapping of restart policy fields")
            if sup is not None:
                strategy, policy = self.policy(sup)
        if "jobs" not in top:
            return self.missing(root, "jobs", "a non-empty list of jobs and groups")
        children = self.children(top["jobs"])
        if self.issues:
            return BAD
        return self.build(
            root, SupervisorSpec, name="root", strategy=strategy, policy=policy, children=children
        )

    def logging(self, v: _V) -> LoggingSpec | _Bad:
        f = self.fields(v, ("level", "file", "rotate", "format"), "a mapping of logging fields")
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "level" in f:
            kwargs["level"] = self.choice(f["level"], LEVELS)
        if "format" in f:
            kwargs["format"] = self.choice(f["format"], ("text", "json"))
        if "file" in f and f["file"].value is not None:
            file = self.text(f["file"], "a log file path")
            if not isinstance(file, _Bad):
                file = str(self.base_dir / Path(file).expanduser())
            kwargs["file"] = file
        if "rotate" in f and f["rotate"].value is not None:
            kwargs["rotate"] = self.rotate(f["rotate"])
        if any(isinstance(value, _Bad) for value in kwargs.values()):
            return BAD
        return self.build(v, LoggingSpec, **kwargs)

    def rotate(self, v: _V) -> RotateSpec | _Bad:
        f = self.fields(v, ("max_bytes", "backups", "when"), "a mapping of rotation fields")
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "max_bytes" in f:
            kwargs["max_bytes"] = self.size(f["max_bytes"], 1)
        if "backups" in f:
            kwargs["backups"] = self.count(f["backups"], 0)
        if "when" in f:
            kwargs["when"] = self.choice(f["when"], ("hourly", "daily"))
        if any(isinstance(value, _Bad) for value in kwargs.values()):
            return BAD
        return self.build(v, RotateSpec, **kwargs)

    def cluster(self, v: _V) -> str | None:
        f = self.fields(v, ("address",), "a mapping with address")
        if not f or "address" not in f or f["address"].value is None:
            return None
        address = self.text(f["address"], "a Ray cluster address like ray://host:10001 or auto")
        return address if isinstance(address, str) else None

    def read_breakers(self, v: _V) -> None:
        entries = self.fields_any(v, "a mapping of breaker names to their settings")
        for key, item in (entries or {}).items():
            name = self.name(_V(key, item.path, item.line), "a breaker name")
            if isinstance(name, _Bad):
                continue
            self.breaker_names.append(name)
            f = self.fields(
                item,
                ("failure_threshold", "reset_timeout", "half_open_max_calls"),
                "a mapping with failure_threshold, reset_timeout and half_open_max_calls",
            )
            if f is None:
                continue
            kwargs: dict[str, Any] = {}
            if "failure_threshold" in f:
                kwargs["failure_threshold"] = self.count(f["failure_threshold"], 1)
            if "reset_timeout" in f:
                kwargs["reset_timeout"] = self.duration(f["reset_timeout"], positive=True)
            if "half_open_max_calls" in f:
                kwargs["half_open_max_calls"] = self.count(f["half_open_max_calls"], 1)
            if any(isinstance(value, _Bad) for value in kwargs.values()):
                continue
            spec = self.build(item, BreakerSpec, **kwargs)
            if not isinstance(spec, _Bad):
                self.breakers[name] = spec

    def read_defaults(self, v: _V) -> None:
        allowed = [key for key in _JOB_KEYS if key not in _OWN_ONLY]
        entries = self.fields_any(v, "a mapping of job fields shared by every job")
        for key, item in (entries or {}).items():
            if key in _OWN_ONLY:
                self.add(
                    item, f"expected job fields shared by every job, got {key} (each job's own)"
                )
            elif isinstance(key, str) and key in allowed:
                self.defaults[key] = item
            else:
                self.add(_V(key, item.path, item.line), _unknown_key(key, allowed))

    def check_unused_defaults(self) -> None:
        """Check the defaults no job inherited, so that no bad value goes unreported."""
        for key, v in self.defaults.items():
            if key not in self.used_defaults:
                self.job_field(key, v)

    # -- policies --------------------------------------------------------------------------------

    def policy(self, f: dict[str, _V]) -> tuple[Strategy, RestartPolicy]:
        strategy = Strategy.ONE_FOR_ONE
        if "strategy" in f:
            value = self.choice(f["strategy"], [s.value for s in Strategy])
            strategy = Strategy(value) if isinstance(value, str) else strategy
        kwargs: dict[str, Any] = {}
        if "intensity" in f:
            kwargs["intensity"] = self.intensity(f["intensity"])
        if "backoff" in f:
            kwargs["backoff"] = self.backoff(f["backoff"])
        if "on_exhausted" in f:
            value = self.choice(f["on_exhausted"], [o.value for o in OnExhausted])
            kwargs["on_exhausted"] = OnExhausted(value) if isinstance(value, str) else value
        if "cooldown" in f:
            kwargs["cooldown"] = self.cooldown(f["cooldown"])
        good = {k: value for k, value in kwargs.items() if not isinstance(value, _Bad)}
        return strategy, RestartPolicy(**good)

    def intensity(self, v: _V) -> Intensity | _Bad:
        f = self.fields(v, ("max_restarts", "within"), "a mapping with max_restarts and within")
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "max_restarts" in f:
            kwargs["max_restarts"] = self.count(f["max_restarts"], 0)
        if "within" in f:
            kwargs["within"] = self.duration(f["within"], positive=True)
        return self.finish(v, Intensity, kwargs)

    def backoff(self, v: _V) -> Backoff | _Bad:
        f = self.fields(
            v, ("initial", "max", "multiplier", "jitter"), "a mapping of backoff fields"
        )
        if f is None:
            return BAD
        kwargs = self.growth(f, Backoff())
        return self.finish(v, Backoff, kwargs)

    def growth(self, f: dict[str, _V], default: Backoff | RetryWait) -> dict[str, Any]:
        """``initial``, ``max``, ``multiplier`` and ``jitter`` of a backoff or a retry wait."""
        kwargs: dict[str, Any] = {}
        if "initial" in f:
            kwargs["initial"] = self.duration(f["initial"])
        if "max" in f:
            kwargs["max"] = self.duration(f["max"])
        if "multiplier" in f:
            kwargs["multiplier"] = self.number(f["multiplier"], "a number >= 1", minimum=1)
        if "jitter" in f:
            kwargs["jitter"] = self.number(f["jitter"], "a fraction in [0, 1]", 0, 1)
        initial, high = kwargs.get("initial", default.initial), kwargs.get("max", default.max)
        if not isinstance(initial, _Bad) and not isinstance(high, _Bad) and high < initial:
            if "max" in f:
                kwargs["max"] = self.expected(
                    f["max"], f"a duration >= initial ({_fmt_duration(initial)})"
                )
            else:
                kwargs["initial"] = self.expected(
                    f["initial"], f"a duration <= max ({_fmt_duration(high)})"
                )
        return kwargs

    def cooldown(self, v: _V) -> CooldownPolicy | _Bad:
        f = self.fields(
            v,
            ("duration", "probation", "multiplier", "max", "max_cycles"),
            "a mapping of cooldown fields",
        )
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "duration" in f:
            kwargs["duration"] = self.duration(f["duration"], positive=True)
        if "probation" in f:
            kwargs["probation"] = self.duration(f["probation"])
        if "multiplier" in f:
            kwargs["multiplier"] = self.number(f["multiplier"], "a number >= 1", minimum=1)
        if "max" in f:
            kwargs["max"] = self.duration(f["max"], positive=True)
        if "max_cycles" in f and f["max_cycles"].value is not None:
            kwargs["max_cycles"] = self.count(f["max_cycles"], 1)
        duration = kwargs.get("duration", CooldownPolicy().duration)
        high = kwargs.get("max", CooldownPolicy().max)
        if not isinstance(duration, _Bad) and not isinstance(high, _Bad) and high < duration:
            if "max" in f:
                kwargs["max"] = self.expected(
                    f["max"], f"a duration >= duration ({_fmt_duration(duration)})"
                )
            else:
                kwargs["duration"] = self.expected(
                    f["duration"], f"a duration <= max ({_fmt_duration(high)})"
                )
        return self.finish(v, CooldownPolicy, kwargs)

    def finish(self, v: _V, cls: Callable[..., T], kwargs: dict[str, Any]) -> T | _Bad:
        if any(isinstance(value, _Bad) for value in kwargs.values()):
            return BAD
        return self.build(v, cls, **kwargs)

    # -- children --------------------------------------------------------------------------------

    def children(self, v: _V) -> tuple[ChildSpec, ...]:
        items = self.items(v, "a non-empty list of jobs and groups")
        if items is None:
            return ()
        if not items:
            self.expected(v, "a non-empty list of jobs and groups")
            return ()
        entries: list[_Entry] = []
        for item in items:
            value = item.value
            if isinstance(value, dict) and "group" in value:
                entry = self.group(item)
            else:
                entry = self.job(item)
            if entry is not None:
                entries.append(entry)
        owners = self.check_names(entries)
        deps = self.check_dependencies(entries, owners)
        children: list[ChildSpec] = []
        for entry in entries:
            children.extend(entry.build(deps.get(id(entry), ())))
        return tuple(children)

    def check_names(self, entries: list[_Entry]) -> dict[str, _Entry]:
        owners: dict[str, _Entry] = {}
        for entry in entries:
            for name in entry.names:
                if name in owners:
                    first = owners[name].name_v
                    at = f" at line {first.line}" if first.line is not None else ""
                    self.add(
                        entry.name_v,
                        f"expected a name unique among its siblings, got {name!r} "
                        f"(already used by {first.path}{at})",
                    )
                else:
                    owners[name] = entry
        return owners

    def check_dependencies(
        self, entries: list[_Entry], owners: dict[str, _Entry]
    ) -> dict[int, tuple[str, ...]]:
        """Each entry's dependencies as child names; unknown names, itself and cycles are issues."""
        by_name = {entry.name: entry for entry in entries if entry.name is not None}
        resolved: dict[int, tuple[str, ...]] = {}
        edges: dict[int, list[_Entry]] = {}
        for entry in entries:
            names: list[str] = []
            targets: list[_Entry] = []
            for dep in entry.deps:
                name = dep.value
                target = by_name.get(name) or owners.get(name)
                if target is None:
                    choices = sorted(set(by_name) | set(owners))
                    close = difflib.get_close_matches(name, choices, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    listed = ", ".join(choices) if len(choices) <= 12 else f"{len(choices)} names"
                    self.expected(dep, f"the name of a sibling ({listed})", hint=hint)
                    continue
                if target is entry:
                    self.expected(dep, "the name of another sibling, not the job's own")
                    continue
                wanted = target.names if name == target.name else (name,)
                names.extend(n for n in wanted if n not in names)
                targets.append(target)
            resolved[id(entry)] = tuple(names)
            edges[id(entry)] = targets
        for cycle in _cycles(entries, edges):
            first = cycle[0]
            text = " -> ".join(str(e.name) for e in (*cycle, first))
            self.add(first.deps_at or first.v, f"expected no dependency cycle, got {text}")
        return resolved

    def group(self, v: _V) -> _Entry | None:
        f = self.fields(v, _GROUP_KEYS, "a group mapping")
        if f is None:
            return None
        name_v = f["group"]
        name = self.name(name_v, "a group name")
        strategy, policy = self.policy(f)
        restart = RestartType.PERMANENT
        if "restart" in f:
            value = self.choice(f["restart"], [r.value for r in RestartType])
            restart = RestartType(value) if isinstance(value, str) else restart
        children: tuple[ChildSpec, ...] = ()
        if "jobs" not in f:
            self.missing(v, "jobs", "a non-empty list of the group's jobs")
        else:
            children = self.children(f["jobs"])
        if isinstance(name, _Bad):
            return None

        def build(deps: tuple[str, ...]) -> list[ChildSpec]:
            del deps  # a group has no depends_on of its own
            spec = self.build(
                v,
                SupervisorSpec,
                name=name,
                strategy=strategy,
                policy=policy,
                children=children,
                restart=restart,
            )
            return [] if isinstance(spec, _Bad) else [spec]

        return _Entry(name, v, name_v, (name,), [], None, build)

    # -- jobs ------------------------------------------------------------------------------------

    def with_defaults(self, own: dict[str, _V]) -> tuple[dict[str, _V], set[str]]:
        """The job's fields with the defaults it inherits (see the module docstring)."""
        merged = dict(own)
        inherited: set[str] = set()
        defaults = self.defaults
        own_kinds = [k for k in _KINDS if k in own]
        kind = own_kinds[0] if own_kinds else next((k for k in _KINDS if k in defaults), None)
        own_mode = any(k in own for k in _MODES)
        for key, dv in defaults.items():
            if key in own:
                if key == "env":
                    merged[key] = _merge(dv, own[key])
                elif key == "http":
                    merged[key] = _merge(dv, own[key], nested=("headers",))
                else:
                    continue
                self.used_defaults.add(key)
                continue
            if (key in _KINDS and own_kinds) or (key in (*_MODES, "times") and own_mode):
                continue
            if key in _FOR_KINDS and kind not in _FOR_KINDS[key]:
                continue
            merged[key] = dv
            inherited.add(key)
            self.used_defaults.add(key)
        if "ready" in inherited and not ("service" in merged and _truthy(merged["service"].value)):
            del merged["ready"]
            inherited.discard("ready")
        return merged, inherited

    def job(self, v: _V) -> _Entry | None:
        what = "a job: a mapping with name and one of command, http or python"
        own = self.fields(v, _JOB_KEYS, what, null_ok=False)
        if own is None:
            return None
        if isinstance(v.value, dict) and "jobs" in v.value:
            at = _V(None, _join(v.path, "jobs"), v.line)
            self.add(at, "expected group: NAME beside jobs to declare a group")
        f, inherited = self.with_defaults(own)
        name_v = f.get("name") or _V(None, _join(v.path, "name"), v.line)
        name = (
            self.name(f["name"], "a job name")
            if "name" in f
            else self.missing(v, "name", "a job name made of letters, digits, '_', '.' or '-'")
        )
        replicas = self.count(f["replicas"], 1) if "replicas" in f else None
        if isinstance(replicas, int) and replicas > MAX_REPLICAS:
            replicas = self.expected(f["replicas"], f"a count between 1 and {MAX_REPLICAS}")
        deps = self.depends_on(f["depends_on"]) if "depends_on" in f else []
        kind = self.job_kind(v, f, inherited)
        options = self.job_options(v, f, kind, inherited)
        if isinstance(name, _Bad):
            return None
        names = _replica_names(name, None if isinstance(replicas, _Bad) else replicas)
        if options is None or isinstance(
            replicas, _Bad
        ):  # still a sibling, so that depends_on on it is not reported too
            return _Entry(name, v, name_v, names, deps, f.get("depends_on"), lambda _: [])

        def build(depends: tuple[str, ...]) -> list[ChildSpec]:
            # Each replica its own copy of the work: an equal value, but its own session (an
            # http job's pooled connections), which stopping one replica must not close.
            specs = [
                self.build(v, JobSpec, name=n, depends_on=depends, **_own_work(options))
                for n in names
            ]
            return [spec for spec in specs if not isinstance(spec, _Bad)]

        return _Entry(name, v, name_v, names, deps, f.get("depends_on"), build)

    def job_kind(self, v: _V, f: dict[str, _V], inherited: set[str]) -> str | None:
        """The job's kind; kind-specific fields the job sets for another kind are issues."""
        kinds = [k for k in _KINDS if k in f]
        if not kinds:
            self.add(v, "expected one of command, http or python, got none")
            return None
        if len(kinds) > 1:
            got = " and ".join(kinds)
            self.add(f[kinds[1]], f"expected exactly one of command, http or python, got {got}")
        kind = kinds[0]
        for key, kinds_ok in _FOR_KINDS.items():
            if key in f and key not in inherited and kind not in kinds_ok:
                if key == "service" and f[key].value is False:
                    continue
                noun = " or ".join(kinds_ok)
                self.add(
                    f[key], f"expected {key} only on {noun} jobs, got it on {_KIND_NOUN[kind]}"
                )
        return kind

    def job_options(
        self, v: _V, f: dict[str, _V], kind: str | None, inherited: set[str]
    ) -> dict[str, Any] | None:
        """``JobSpec`` fields but name and depends_on; None when one of them is bad."""
        schedule = self.schedule(v, f)
        stop_signal, grace = self.stop(f["stop"]) if "stop" in f else (None, DEFAULT_GRACE)
        if stop_signal is not None and kind not in ("command", None) and "stop" not in inherited:
            at = (_entries(f["stop"]) or {}).get("signal", f["stop"])
            self.add(at, f"expected stop.signal only on command jobs, got it on {_KIND_NOUN[kind]}")
        options: dict[str, Any] = {
            "schedule": schedule,
            "restart": RestartType.TRANSIENT,
            "grace": grace,
            "retry": self.retry(f["retry"], kind) if "retry" in f else None,
            "breaker": self.breaker(f["breaker"]) if "breaker" in f else None,
            "ready": self.ready(f["ready"]) if "ready" in f else None,
            "placement": self.placement(f["placement"]) if "placement" in f else "local",
            "work": self.work(f, kind, stop_signal, grace),
        }
        if "restart" in f:
            value = self.choice(f["restart"], [r.value for r in RestartType])
            options["restart"] = RestartType(value) if isinstance(value, str) else value
        if "ready" in f and isinstance(schedule, Schedule) and not schedule.service:
            mode = "periodic" if schedule.periodic else "once"
            at, what = f["ready"], "ready only on a service (service: true)"
            self.add(at, f"expected {what}, got it on a {mode} job")
        values = [*options.values(), stop_signal]
        return None if any(isinstance(value, _Bad) for value in values) else options

    def job_field(self, key: str, v: _V) -> object:
        """Check one job field on its own (for defaults that no job inherited)."""
        restarts = [r.value for r in RestartType]
        checks: dict[str, Callable[[_V], object]] = {
            "command": self.command,
            "http": lambda v: self.http(v, need_url=False),
            "python": self.target,
            "args": lambda v: self.items(v, "a list of arguments"),
            "kwargs": self.kwargs,
            "cwd": lambda v: self.text(v, "a directory path"),
            "env": lambda v: self.str_map(v, "a mapping of environment variables", _ENV_KEY),
            "service": self.flag,
            "every": lambda v: self.duration(v, positive=True),
            "timeout": lambda v: self.duration(v, positive=True),
            "times": lambda v: self.count(v, 1),
            "replicas": lambda v: self.count(v, 1),
            "cron": self.cron,
            "retry": lambda v: self.retry(v, None),
            "breaker": self.breaker,
            "restart": lambda v: self.choice(v, restarts),
            "ready": self.ready,
            "stop": self.stop,
            "placement": self.placement,
        }
        check = checks.get(key)
        return None if check is None else check(v)

    def schedule(self, job: _V, f: dict[str, _V]) -> Schedule | _Bad:
        service: bool | _Bad = self.flag(f["service"]) if "service" in f else False
        every = self.duration(f["every"], positive=True) if "every" in f else None
        cron = self.cron(f["cron"]) if "cron" in f else None
        times = self.count(f["times"], 1) if "times" in f else None
        timeout = self.duration(f["timeout"], positive=True) if "timeout" in f else None
        modes = [m for m in _MODES if m in f and (m != "service" or service is True)]
        bad = False
        if len(modes) > 1:
            self.add(f[modes[1]], f"expected one run mode, got both {modes[0]} and {modes[1]}")
            bad = True
        if "times" in f and "every" not in f and "cron" not in f:
            mode = "service" if service is True else "once"
            self.add(
                f["times"],
                f"expected times only on a periodic job (every or cron), got it on a {mode} job",
            )
            bad = True
        values = (service, every, cron, times, timeout)
        if bad or any(isinstance(value, _Bad) for value in values):
            return BAD
        return self.build(
            job, Schedule, service=service, every=every, times=times, cron=cron, timeout=timeout
        )

    def cron(self, v: _V) -> str | _Bad:
        value = self.text(v, "a cron expression 'm h dom mon dow'")
        if isinstance(value, _Bad):
            return value
        try:
            Schedule(cron=value)
        except Exception:
            return self.expected(v, "a cron expression of 5 fields 'm h dom mon dow'")
        return value

    def stop(self, v: _V) -> tuple[int | _Bad | None, float | _Bad]:
        f = self.fields(v, ("signal", "grace"), "a mapping with signal and grace")
        if f is None:
            return None, BAD
        grace = self.duration(f["grace"]) if "grace" in f else DEFAULT_GRACE
        signum = self.signal(f["signal"]) if "signal" in f else None
        return signum, grace

    def signal(self, v: _V) -> int | _Bad:
        value = v.value
        what = "a signal name like TERM, INT, HUP or KILL, or its number"
        if isinstance(value, int) and not isinstance(value, bool):
            if value in signal.valid_signals():
                try:
                    return signal.Signals(value)
                except ValueError:
                    return value
            return self.expected(v, what)
        if isinstance(value, str):
            name = value.strip().upper()
            name = name if name.startswith("SIG") else f"SIG{name}"
            if name in signal.Signals.__members__:
                return signal.Signals[name]
        return self.expected(v, what)

    def retry(self, v: _V, kind: str | None) -> RetrySpec | _Bad | None:
        if v.value is None:
            return None
        f = self.fields(v, ("attempts", "wait", "on"), "a mapping with attempts, wait and on")
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "attempts" in f:
            kwargs["attempts"] = self.count(f["attempts"], 1)
        if "wait" in f:
            wait = self.fields(
                f["wait"], ("initial", "max", "multiplier", "jitter"), "a mapping of wait fields"
            )
            kwargs["wait"] = (
                BAD
                if wait is None
                else self.finish(f["wait"], RetryWait, self.growth(wait, RetryWait()))
            )
        if "on" in f:
            kwargs["on"] = self.retry_on(f["on"], kind)
        return self.finish(v, RetrySpec, kwargs)

    def retry_on(self, v: _V, kind: str | None) -> tuple[str, ...] | _Bad:
        items = self.items(v, "a list of failure names", single_ok=True)
        if items is None:
            return BAD
        names: list[str] = []
        check = _http_retry_check() if kind == "http" else None
        for item in items:
            name = self.scalar_text(item, "a failure name")
            if isinstance(name, _Bad):
                return BAD
            if check is not None and isinstance(self.build(item, check, on=(name,)), _Bad):
                return BAD
            names.append(name)
        return tuple(names)

    def breaker(self, v: _V) -> str | _Bad:
        name = self.name(v, "a breaker name")
        if isinstance(name, _Bad) or name in self.breaker_names:
            return name
        if not self.breaker_names:
            return self.expected(v, "the name of a breaker declared under breakers: (none is)")
        close = difflib.get_close_matches(name, self.breaker_names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        declared = ", ".join(self.breaker_names)
        return self.expected(v, f"the name of a declared breaker ({declared})", hint=hint)

    def depends_on(self, v: _V) -> list[_V]:
        items = self.items(v, "a list of sibling names", single_ok=True)
        return [i for i in items or [] if not isinstance(self.name(i, "a sibling's name"), _Bad)]

    def ready(self, v: _V) -> Any:
        f = self.fields(
            v,
            ("tcp", "http", "command", "timeout", "interval"),
            "a mapping with one of tcp, http or command, and timeout",
            null_ok=False,
        )
        if f is None:
            return BAD
        probes = [k for k in ("tcp", "http", "command") if k in f]
        if len(probes) != 1:
            got = " and ".join(probes) if probes else "none"
            self.add(v, f"expected exactly one of tcp, http or command, got {got}")
            return BAD
        kwargs: dict[str, Any] = {}
        if "tcp" in f:
            kwargs["tcp"] = self.host_port(f["tcp"])
        if "http" in f:
            kwargs["http"] = self.url(f["http"])
        if "command" in f:
            command = self.command(f["command"])
            if isinstance(command, _Bad):
                kwargs["command"] = command
            else:
                argv, shell = command
                kwargs["command"] = argv if shell is None else ("/bin/sh", "-c", shell)
        if "timeout" in f:
            kwargs["timeout"] = self.duration(f["timeout"], positive=True)
        if "interval" in f:
            kwargs["interval"] = self.duration(f["interval"], positive=True)
        if any(isinstance(value, _Bad) for value in kwargs.values()):
            return BAD
        cls = self.kind_class(v, "actors._ready", "ReadyProbe", "readiness probes")
        return BAD if cls is None else self.build(v, cls, **kwargs)

    def host_port(self, v: _V) -> str | _Bad:
        value = v.value
        what = "host:port like localhost:5432"
        if not isinstance(value, str):
            return self.expected(v, what)
        host, sep, port = value.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host.strip() or not port.isdigit() or not 0 < int(port[:6]) < 65536:
            return self.expected(v, what)
        return str(value)

    def url(self, v: _V) -> str | _Bad:
        value = v.value
        what = "an http:// or https:// URL"
        if not isinstance(value, str):
            return self.expected(v, what)
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        return str(value) if ok else self.expected(v, what)

    def placement(self, v: _V) -> str | _Bad:
        value = self.choice(v, ("local", "ray"))
        if value != "ray":
            return value
        if self.runtime == "gevent":
            return self.expected(
                v, "placement local with runtime gevent (Ray and gevent don't mix)"
            )
        if not self.ray_available():
            return self.expected(
                v,
                "placement local unless Ray is installed",
                hint="; install the 'ray' extra: pip install 'jobvisor[ray]'",
            )
        return value

    def ray_available(self) -> bool:
        if self._ray is None:
            try:
                self._ray = importlib.util.find_spec("ray") is not None
            except (ImportError, ValueError):
                self._ray = False
        return self._ray

    # -- work ------------------------------------------------------------------------------------

    def work(self, f: dict[str, _V], kind: str | None, stop_signal: object, grace: object) -> Any:
        match kind:
            case "command":
                return self.command_work(f, stop_signal, grace)
            case "http":
                fields = self.http(f["http"], need_url=True)
                if isinstance(fields, _Bad):
                    return BAD
                cls = self.kind_class(f["http"], "actors._http", "HttpWork", "http jobs")
                return BAD if cls is None else self.build(f["http"], cls, **fields)
            case "python":
                return self.python_work(f)
        return BAD

    def command_work(self, f: dict[str, _V], stop_signal: object, grace: object) -> Any:
        """``CommandWork`` with only the fields the manifest sets (the rest keep its defaults)."""
        command = self.command(f["command"])
        # Like Procfile and compose tools: commands run beside the manifest unless told otherwise.
        given: dict[str, Any] = {"cwd": str(self.base_dir)}
        if "cwd" in f:
            cwd = self.text(f["cwd"], "a directory path")
            if not isinstance(cwd, _Bad):
                cwd = str(self.base_dir / Path(cwd).expanduser())
            given["cwd"] = cwd
        if "env" in f:
            given["env"] = self.str_map(f["env"], "a mapping of environment variables", _ENV_KEY)
        if isinstance(command, _Bad) or isinstance(given.get("cwd"), _Bad):
            return BAD
        argv, shell = command
        given.update({"argv": argv} if shell is None else {"shell": shell})
        if isinstance(stop_signal, int):
            given["stop_signal"] = stop_signal
        if "stop" in f and isinstance(grace, float):
            given["grace"] = grace
        cls = self.kind_class(f["command"], "actors._command", "CommandWork", "command jobs")
        return BAD if cls is None else self.build(f["command"], cls, **given)

    def python_work(self, f: dict[str, _V]) -> PythonWork | _Bad:
        target = self.target(f["python"])
        args = self.items(f["args"], "a list of arguments") if "args" in f else []
        kwargs = self.kwargs(f["kwargs"]) if "kwargs" in f else {}
        if isinstance(target, _Bad) or args is None or isinstance(kwargs, _Bad):
            return BAD
        arguments = tuple(_plain(a.value) for a in args)
        return self.build(f["python"], PythonWork, target=target, args=arguments, kwargs=kwargs)

    def kind_class(self, v: _V, module: str, name: str, what: str) -> Any:
        try:
            return getattr(importlib.import_module(module), name)
        except Exception as exc:
            self.add(
                v,
                f"expected {what} to be available ({module}.{name}), got "
                f"{type(exc).__name__}: {exc}",
            )
            return None

    def command(self, v: _V) -> tuple[tuple[str, ...], str | None] | _Bad:
        value = v.value
        what = "a list of argv strings or a shell command string"
        if isinstance(value, str):
            if not value.strip() or "\0" in value:
                return self.expected(v, what)
            return (), str(value)
        items = self.items(v, what)
        if items is None:
            return BAD
        if not items:
            return self.expected(v, "a non-empty list of argv strings")
        argv = [self.scalar_text(item, "an argv string") for item in items]
        if any(isinstance(arg, _Bad) for arg in argv):
            return BAD
        return tuple(str(arg) for arg in argv), None

    def target(self, v: _V) -> str | _Bad:
        value = v.value
        if not isinstance(value, str) or not _TARGET.fullmatch(value):
            return self.expected(v, "a target like 'package.module:function'")
        return str(value)

    def kwargs(self, v: _V) -> dict[str, Any] | _Bad:
        entries = self.fields_any(v, "a mapping of keyword arguments")
        if entries is None:
            return BAD
        out: dict[str, Any] = {}
        for key, item in entries.items():
            if not isinstance(key, str) or not key.isidentifier():
                self.add(item, f"expected a keyword argument name, got {_show(key)}")
                continue
            out[key] = _plain(item.value)
        return out

    def http(self, v: _V, *, need_url: bool) -> dict[str, Any] | _Bad:
        f = self.fields(v, _HTTP_KEYS, "a mapping with url and other request fields", null_ok=False)
        if f is None:
            return BAD
        out: dict[str, Any] = {}
        if "url" in f:
            out["url"] = self.url(f["url"])
        elif need_url:
            out["url"] = self.missing(v, "url", "an http:// or https:// URL")
        if "method" in f:
            method = f["method"]
            upper = method.value.upper() if isinstance(method.value, str) else method.value
            out["method"] = self.choice(method._replace(value=upper), _HTTP_METHODS)
        if "headers" in f:
            out["headers"] = self.str_map(f["headers"], "a mapping of headers", _HEADER_NAME)
        if "params" in f:
            out["params"] = self.str_map(f["params"], "a mapping of query parameters", None)
        out.update(self.payload(f))
        if "timeout" in f:
            out["timeout"] = self.duration(f["timeout"], positive=True)
        if "expect_status" in f:
            out["expect_status"] = self.statuses(f["expect_status"])
        if any(isinstance(value, _Bad) for value in out.values()):
            return BAD
        return out

    def payload(self, f: dict[str, _V]) -> dict[str, Any]:
        """``json`` or ``body`` of a request."""
        out: dict[str, Any] = {}
        if "json" in f:
            payload = _plain(f["json"].value)
            try:
                jsonlib.dumps(payload, allow_nan=False)
                out["json"] = payload
            except (TypeError, ValueError, RecursionError):
                what = "JSON data (mappings with string keys, lists, strings, numbers)"
                out["json"] = self.expected(f["json"], what)
        if "body" in f:
            body = f["body"].value
            if "json" in f and f["json"].value is not None and body is not None:
                out["body"] = self.expected(f["body"], "json or body, not both")
            elif body is not None and not isinstance(body, str | bytes):
                out["body"] = self.expected(f["body"], "the request body as a string")
            else:
                out["body"] = body if isinstance(body, bytes) or body is None else str(body)
        return out

    def statuses(self, v: _V) -> tuple[int, ...] | _Bad:
        items = self.items(v, "a status 100..599 or a list of them", single_ok=True)
        if items is None:
            return BAD
        codes: list[int] = []
        for item in items:
            code = item.value
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                return self.expected(item, "a status 100..599")
            codes.append(code)
        return tuple(codes)


_ENV_KEY = re.compile(r"[^=\0]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


# -- helpers ---------------------------------------------------------------------------------------


def _http_retry_check() -> Callable[..., None] | None:
    """``actors._http.check_http_retry_on`` taking ``on=``; None while the http kind is missing."""
    try:
        check = importlib.import_module("actors._http").check_http_retry_on
    except Exception:  # the http job itself reports the missing kind
        return None

    def check_on(*, on: tuple[str, ...]) -> None:
        check(on)

    return check_on


def _entries(v: _V) -> dict[Any, _V] | None:
    """The entries of a mapping value, each with its path and line; None for a non-mapping."""
    value = v.value
    if isinstance(value, _Merged):
        return value.entries
    if not isinstance(value, dict):
        return None
    lines = getattr(value, "lines", {})
    return {
        key: _V(item, _join(v.path, key), lines.get(key, v.line)) for key, item in value.items()
    }


def _merge(default: _V, own: _V, nested: Sequence[str] = ()) -> _V:
    """``own`` over ``default``, entry by entry (``nested`` keys merge one level deeper)."""
    base, top = _entries(default), _entries(own)
    if base is None or top is None:
        return own
    merged = dict(base)
    for key, item in top.items():
        merged[key] = _merge(base[key], item) if key in nested and key in base else item
    return _V(_Merged(merged), own.path, own.line)


def _plain(value: Any) -> Any:
    """Resolved data as plain dicts, lists and strs."""
    if isinstance(value, _Merged):
        return {k: _plain(v.value) for k, v in value.entries.items()}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, _Text) and value.strip().lower() in _TRUE)


def _replica_names(name: str, replicas: int | None) -> tuple[str, ...]:
    """``replicas: N`` makes ``name.0`` .. ``name.N-1`` (even for N = 1); no replicas: ``name``."""
    return (name,) if replicas is None else tuple(f"{name}.{i}" for i in range(replicas))


def _cycles(entries: list[_Entry], edges: dict[int, list[_Entry]]) -> list[list[_Entry]]:
    """One dependency cycle per strongly connected group of entries, in list order."""
    reach = {id(entry): _reachable(entry, edges) for entry in entries}
    done: set[int] = set()
    cycles: list[list[_Entry]] = []
    for entry in entries:
        key = id(entry)
        if key in done or key not in reach[key]:
            continue
        members = {other for other in reach[key] if key in reach.get(other, set())}
        done |= members
        cycles.append(_path_back(entry, members, edges))
    return cycles


def _reachable(start: _Entry, edges: dict[int, list[_Entry]]) -> set[int]:
    seen: set[int] = set()
    todo = list(edges.get(id(start), []))
    while todo:
        node = todo.pop()
        if id(node) not in seen:
            seen.add(id(node))
            todo.extend(edges.get(id(node), []))
    return seen


def _path_back(start: _Entry, members: set[int], edges: dict[int, list[_Entry]]) -> list[_Entry]:
    """A shortest cycle from ``start`` back to itself inside one strongly connected group."""
    previous: dict[int, _Entry] = {}
    frontier = [start]
    seen = {id(start)}
    while frontier:
        following: list[_Entry] = []
        for node in frontier:
            for target in edges.get(id(node), []):
                if target is start:
                    path = [node]
                    while path[-1] is not start:
                        path.append(previous[id(path[-1])])
                    return list(reversed(path))
                if id(target) in members and id(target) not in seen:
                    seen.add(id(target))
                    previous[id(target)] = node
                    following.append(target)
        frontier = following
    return [start]


def _join(path: str, key: object) -> str:
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_show(key)}]"


def _show(value: object) -> str:  # noqa: PLR0911 - one return per kind of value reads best
    """The actual value for a message: short, YAML-spelled, and never a secret."""
    if isinstance(value, _Secret):
        return "***"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value) if value.bit_length() < 64 else "a very large number"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict | _Merged):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list | tuple):
        return "a list" if value else "an empty list"
    if isinstance(value, bytes):
        return "binary data"
    return f"a {type(value).__name__}"


def _unknown_key(key: object, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
    if close:
        return f"unknown key {_show(key)}; did you mean {close[0]!r}?"
    return f"unknown key {_show(key)}; expected one of: {', '.join(allowed)}"


def _mask(text: str, secrets: Iterable[str]) -> str:
    secrets = frozenset(secrets)
    text = _masker(secrets).mask(text)  # every quoted and escaped form, too
    # Values too short for the masker to hide everywhere are still hidden where they appear whole.
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


@functools.lru_cache(maxsize=4)
def _masker(secrets: frozenset[str]) -> SecretMasker:
    # one per manifest, not one per message: a masker compiles a pattern of every form
    return SecretMasker(secrets)


def _absolute(path: Path) -> Path:
    try:
        return path.absolute()
    except OSError:
        return path


# -- explain ---------------------------------------------------------------------------------------


def _fmt_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _explain_logging(spec: LoggingSpec) -> str:
    text = f"logging: level={spec.level} format={spec.format} file={spec.file or '(stderr)'}"
    if spec.rotate is not None:
        rotate = spec.rotate
        size = f"{rotate.max_bytes}B" if rotate.max_bytes is not None else "none"
        text += f" rotate=(max_bytes={size} backups={rotate.backups} when={rotate.when or 'none'})"
    return text


def _explain_breaker(spec: BreakerSpec) -> str:
    return (
        f"failure_threshold={spec.failure_threshold} "
        f"reset_timeout={_fmt_duration(spec.reset_timeout)} "
        f"half_open_max_calls={spec.half_open_max_calls}"
    )


def _explain_policy(policy: RestartPolicy, out: list[str], pad: str) -> None:
    b, i, c = policy.backoff, policy.intensity, policy.cooldown
    out.append(f"{pad}intensity: max_restarts={i.max_restarts} within={_fmt_duration(i.within)}")
    out.append(
        f"{pad}backoff: initial={_fmt_duration(b.initial)} max={_fmt_duration(b.max)} "
        f"multiplier={b.multiplier:g} jitter={b.jitter:g}"
    )
    out.append(f"{pad}on_exhausted: {policy.on_exhausted.value}")
    if policy.on_exhausted is OnExhausted.COOLDOWN:
        cycles = c.max_cycles if c.max_cycles is not None else "unlimited"
        out.append(
            f"{pad}cooldown: duration={_fmt_duration(c.duration)} "
            f"probation={_fmt_duration(c.probation)} multiplier={c.multiplier:g} "
            f"max={_fmt_duration(c.max)} max_cycles={cycles}"
        )


def _explain_supervisor(
    spec: SupervisorSpec, out: list[str], pad: str, breakers: Mapping[str, BreakerSpec]
) -> None:
    kind = "supervisor" if not pad else "group"
    out.append(f"{pad}{kind} {spec.name}")
    inner = pad + "  "
    if pad:
        out.append(f"{inner}restart: {spec.restart.value}")
    out.append(f"{inner}strategy: {spec.strategy.value}")
    _explain_policy(spec.policy, out, inner)
    out.append(f"{inner}children (start in order, stop in reverse):")
    for child in spec.children:
        if isinstance(child, SupervisorSpec):
            _explain_supervisor(child, out, inner + "  ", breakers)
        elif isinstance(child, JobSpec):
            _explain_job(child, out, inner + "  ", breakers)
        else:
            out.append(f"{inner}  actor {child.name} ({child.actor_class.__name__})")


def _explain_job(
    spec: JobSpec, out: list[str], pad: str, breakers: Mapping[str, BreakerSpec]
) -> None:
    inner = pad + "  "
    out.append(f"{pad}job {spec.name}")
    out.extend(f"{inner}{line}" for line in _explain_work(spec))
    timeout = _fmt_duration(spec.schedule.timeout) if spec.schedule.timeout else "none"
    mode = _explain_mode(spec.schedule)
    out.append(f"{inner}run: {mode}; timeout={timeout}; restart={spec.restart.value}")
    out.append(f"{inner}stop: {_explain_stop(spec)}")
    out.append(f"{inner}retry: {_explain_retry(spec.retry)}")
    if spec.breaker is not None:
        settings = breakers.get(spec.breaker)
        detail = f" ({_explain_breaker(settings)})" if settings is not None else ""
        out.append(f"{inner}breaker: {spec.breaker}{detail}")
    if spec.depends_on:
        out.append(f"{inner}depends_on: {', '.join(spec.depends_on)}")
    if spec.ready is not None:
        out.append(f"{inner}ready: {_explain_ready(spec.ready)}")
    out.append(f"{inner}placement: {spec.placement}")


def _describe(obj: object) -> str:
    describe = getattr(obj, "describe", None)
    text = str(describe()) if callable(describe) else repr(obj)
    return text.replace("\n", "\\n")


def _explain_work(spec: JobSpec) -> list[str]:
    work = spec.work
    lines = [f"work: {spec.kind} {_describe(work)}"]
    extras = []
    if cwd := getattr(work, "cwd", None):
        extras.append(f"cwd={cwd}")
    if env := getattr(work, "env", None):
        extras.append("env=" + ",".join(sorted(env)))  # names only: values may be secret
    if headers := getattr(work, "headers", None):
        extras.append("headers=" + ",".join(sorted(headers)))
    if spec.kind == "http":
        statuses = getattr(work, "expect_status", ())
        expect = ",".join(str(code) for code in statuses) if statuses else "2xx"
        extras.append(f"timeout={_fmt_duration(getattr(work, 'timeout', 0.0))}")
        extras.append(f"expect_status={expect}")
    if extras:
        lines.append(" ".join(extras))
    return lines


def _explain_mode(schedule: Schedule) -> str:
    if schedule.service:
        mode = "service"
    elif schedule.every is not None:
        mode = f"every {_fmt_duration(schedule.every)}"
    elif schedule.cron is not None:
        mode = f"cron {schedule.cron!r}"
    else:
        mode = "once"
    return mode if schedule.times is None else f"{mode}, times={schedule.times}"


def _explain_stop(spec: JobSpec) -> str:
    stop = f"grace={_fmt_duration(spec.grace)}"
    signum = getattr(spec.work, "stop_signal", None)
    if signum is None:
        return stop
    try:
        return f"signal={signal.Signals(signum).name} {stop}"
    except ValueError:
        return f"signal={signum} {stop}"


def _explain_retry(retry: RetrySpec | None) -> str:
    if retry is None or retry.attempts == 1:
        return "none (attempts=1)"
    w = retry.wait
    on = ",".join(retry.on) if retry.on else "the kind's defaults"
    return (
        f"attempts={retry.attempts} wait=(initial={_fmt_duration(w.initial)} "
        f"max={_fmt_duration(w.max)} multiplier={w.multiplier:g} jitter={w.jitter:g}) on={on}"
    )


def _explain_ready(probe: object) -> str:
    timeout = getattr(probe, "timeout", None)
    interval = getattr(probe, "interval", None)
    tail = ""
    if isinstance(timeout, int | float) and isinstance(interval, int | float):
        tail = f" timeout={_fmt_duration(timeout)} interval={_fmt_duration(interval)}"
    return _describe(probe) + tail


def _own_work(options: dict[str, Any]) -> dict[str, Any]:
    work = options.get("work")
    if work is None or not dataclasses.is_dataclass(work) or isinstance(work, type):
        return options
    return {**options, "work": dataclasses.replace(work)}
