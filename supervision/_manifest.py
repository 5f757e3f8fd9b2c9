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
import importlib
import importlib.util
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from actors import PythonWork, RetrySpec, RetryWait, Schedule, SpecError
from supervision._issues import (
    TEXT_NAME,
    Issue,
    ManifestError,
    Merged,
    Text,
    join,
    mask,
    show,
    unknown_key,
)
from supervision._policy import (
    Backoff,
    CooldownPolicy,
    Intensity,
    OnExhausted,
    RestartPolicy,
    RestartType,
    Strategy,
)
from supervision._resolve import Resolver
from supervision._spec import (
    DEFAULT_GRACE,
    NAME,
    PLACEMENTS,
    BreakerSpec,
    ChildSpec,
    JobSpec,
    LoggingSpec,
    RotateSpec,
    SupervisorSpec,
)
from supervision._units import (
    BARE_NUMBER,
    DURATION_HINT,
    SIZE_HINT,
    parse_duration,
    parse_size,
)
from supervision._yaml import read_yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

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

MAX_REPLICAS: Final = 10_000  # children one job entry may expand into


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
    # Things that work but may not be what the user meant (a secret in argv): shown, not fatal.
    warnings: tuple[Issue, ...] = field(default=(), repr=False, compare=False)

    def tree_spec(self) -> SupervisorSpec:
        """The root supervisor's spec, for ``start_tree``."""
        return self.root

    def explain(self) -> str:
        """The resolved tree with every effective policy, defaults filled in; secrets masked."""
        from supervision._explain import explain  # noqa: PLC0415 - only --explain renders

        return explain(self)


# -- loading ---------------------------------------------------------------------------------------


def load_manifest(path_or_text: str | Path, *, env: Mapping[str, str] | None = None) -> Manifest:
    """Read and validate a manifest: a ``Path``, a string naming a file, or text holding a newline.

    ``env`` (default ``os.environ``) resolves ``${NAME}`` and ``{secret: {env:
    NAME}}``. Relative paths resolve against the manifest's directory (the
    working directory for text). Raises ``ManifestError`` listing every
    problem; nothing else, whatever the manifest holds.
    """
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        return parse(_FromYaml(read_yaml(path_or_text, TEXT_NAME)), env=env, file=TEXT_NAME)
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
    data = _FromYaml(read_yaml(text, file))
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
_HTTP_PLAIN: Final = ("url", "method", "json", "body")  # passed to the spec as written
_OWN_ONLY: Final = ("name", "depends_on")
_FOR_KINDS: Final = {
    "env": ("command",),
    "cwd": ("command",),
    "args": ("python",),
    "kwargs": ("python",),
    "service": ("command", "python"),
}
_KIND_NOUN: Final = {"command": "a command job", "http": "an http job", "python": "a python job"}
_TRUE: Final = ("true", "yes", "on")
_FALSE: Final = ("false", "no", "off")
# A field of a SpecError: ``http.url``, ``command[1]``, ``env['A B']``.
_FIELD_PART = re.compile(r"""\[(\d+)\]|\[('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]|\.?([^.\[]+)""")
# A secret in argv works, but every local user can read it:
_ARGV_WARNING: Final = (
    "a secret in a command's argv can be read by every local user (ps, /proc/PID/cmdline); "
    "pass it in env: instead"
)


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
        self.base_dir = base_dir
        self.file = file
        self.issues: list[Issue] = []
        self.warnings: list[Issue] = []
        self._seen: set[tuple[str, int | None, str]] = set()
        self.resolver = Resolver(env, base_dir, self._add_at, self._warn_at)
        self.secrets = self.resolver.secrets
        self.runtime = "threads"
        self.breakers: dict[str, BreakerSpec] = {}
        self.breaker_names: list[str] = []
        self.defaults: dict[str, _V] = {}
        self.used_defaults: set[str] = set()
        self._ray: bool | None = None

    # -- issues ----------------------------------------------------------------------------------

    def add(self, at: _V, message: str) -> None:
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

    def expected(self, at: _V, what: str, *, hint: str = "") -> _Bad:
        self.add(at, f"expected {what}, got {show(at.value)}{hint}")
        return BAD

    def missing(self, parent: _V, key: str, what: str) -> _Bad:
        self.add(_V(None, join(parent.path, key), parent.line), f"expected {what}, got nothing")
        return BAD

    def final_issues(self, issues: list[Issue] | None = None) -> list[Issue]:
        ordered = sorted(
            self.issues if issues is None else issues, key=lambda i: (i.line is None, i.line or 0)
        )
        secrets = sorted(self.secrets, key=len, reverse=True)
        return [Issue(i.path, i.line, mask(i.message, secrets), i.file, i.column) for i in ordered]

    def build(self, at: _V, cls: Callable[..., T], prefix: str = "", **kwargs: Any) -> T | _Bad:
        """``cls(**kwargs)``; each ``SpecError`` becomes an issue at the field it names.

        ``at`` is the mapping the spec is read from and ``prefix`` the name its
        fields start with (``backoff`` for ``backoff.max``). The spec reports
        its first bad field; that field is then left to its default and the
        spec built again, so that every bad field of one mapping is reported,
        but none that only follows from one reported.
        """
        dropped: set[str] = set()
        while True:
            try:
                return cls(**kwargs)
            except SpecError as exc:
                if dropped and _names_any(exc, dropped):
                    return BAD
                self.report(at, exc, prefix)
                key = next((p for p in _field_parts(exc.field) if p in kwargs), None)
                if not isinstance(key, str) or key in dropped:
                    return BAD
                dropped.add(key)
                del kwargs[key]
            except Exception as exc:
                if not dropped:
                    self.add(at, f"invalid: {type(exc).__name__}: {exc}")
                return BAD

    def report(self, at: _V, exc: SpecError, prefix: str = "") -> None:
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
            if len(rest) == 1 and _entries(where) is not None:
                self.missing(where, str(rest[0]), expected)
                return
            shown = exc.shown
        else:
            shown = show(where.value)
            expected, hint = _hints(expected, where.value)
        self.add(where, f"expected {expected}, got {shown}{hint}")

    def _locate(self, at: _V, field: str, prefix: str) -> tuple[_V, list[str | int]]:
        """The value ``field`` names under ``at`` (named ``prefix``), and the parts not written."""
        parts = _field_parts(field)
        skip = _field_parts(prefix)
        if parts[: len(skip)] == skip:
            del parts[: len(skip)]
        while parts:
            part = parts[0]
            entries = _entries(at)
            if entries is not None and part in entries:  # a key, an int key too
                at = entries[part]
            elif isinstance(part, int) and isinstance(at.value, list) and part < len(at.value):
                lines = getattr(at.value, "lines", [])
                line = lines[part] if part < len(lines) else at.line
                at = _V(at.value[part], f"{at.path}[{part}]", line)
            else:
                break
            parts.pop(0)
        return at, parts

    # -- generic readers: YAML values converted, never judged (the specs do that) ----------------

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
                self.add(_V(key, item.path, item.line), unknown_key(key, allowed))
        return out

    @staticmethod
    def count(v: _V) -> Any:
        """An int; a count written as ``${NAME}`` is read from its text."""
        value = v.value
        if isinstance(value, Text) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
            return int(value)
        return value

    @staticmethod
    def number(v: _V) -> Any:
        """A float for a number (or a number written as ``${NAME}``); anything else as it is."""
        value = v.value
        if isinstance(value, Text) and BARE_NUMBER.fullmatch(value):
            value = float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                return value
        return value

    @staticmethod
    def duration(v: _V) -> Any:
        """Seconds for ``30s``, ``1h30m`` or a number; anything else as it is, for the spec."""
        try:
            return parse_duration(v.value)
        except SpecError:
            return v.value

    @staticmethod
    def size(v: _V) -> Any:
        """Bytes for ``10MiB`` or a number; anything else as it is, for the spec to refuse."""
        try:
            return parse_size(v.value)
        except SpecError:
            return v.value

    @staticmethod
    def flag(v: _V) -> Any:
        """A bool; a flag written as ``${NAME}`` is read from its text."""
        value = v.value
        if isinstance(value, Text) and value.strip().lower() in (*_TRUE, *_FALSE):
            return value.strip().lower() in _TRUE
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

    def str_map(self, v: _V, what: str) -> dict[Any, str] | _Bad:
        """A mapping's values as text; its names are the spec's to check."""
        entries = self.fields_any(v, what)
        if entries is None:
            return BAD
        out: dict[Any, str] = {}
        bad = False
        for key, item in entries.items():
            value = self.scalar_text(item)
            if isinstance(value, _Bad):
                bad = True
            else:
                out[key] = value
        return BAD if bad else out

    def fields_any(self, v: _V, what: str) -> dict[Any, _V] | None:
        if v.value is None:
            return {}
        entries = _entries(v)
        if entries is None:
            self.expected(v, what)
        return entries

    # -- the document ----------------------------------------------------------------------------

    def manifest(self, data: Any, path: Path | None, line: int | None) -> Manifest | None:
        if isinstance(data, _FromYaml):
            data = data.data
        root = _V(self.resolver.resolve(data, "", line), "", line)
        if self.resolver.bounded:  # whatever follows would only describe the cut
            return None
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
            warnings=tuple(self.final_issues(self.warnings)),
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
            kwargs["level"] = f["level"].value
        if "format" in f:
            kwargs["format"] = f["format"].value
        if "file" in f and f["file"].value is not None:
            file = self.text(f["file"], "a log file path")
            if not isinstance(file, _Bad):
                file = str(self.base_dir / Path(file).expanduser())
            kwargs["file"] = file
        if "rotate" in f and f["rotate"].value is not None:
            kwargs["rotate"] = self.rotate(f["rotate"])
        return self.finish(v, LoggingSpec, kwargs, "logging")

    def rotate(self, v: _V) -> RotateSpec | _Bad:
        f = self.fields(v, ("max_bytes", "backups", "when"), "a mapping of rotation fields")
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "max_bytes" in f:
            kwargs["max_bytes"] = self.size(f["max_bytes"])
        if "backups" in f:
            kwargs["backups"] = self.count(f["backups"])
        if "when" in f:
            kwargs["when"] = f["when"].value
        return self.build(v, RotateSpec, "rotate", **kwargs)

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
                kwargs["failure_threshold"] = self.count(f["failure_threshold"])
            if "reset_timeout" in f:
                kwargs["reset_timeout"] = self.duration(f["reset_timeout"])
            if "half_open_max_calls" in f:
                kwargs["half_open_max_calls"] = self.count(f["half_open_max_calls"])
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
                self.add(_V(key, item.path, item.line), unknown_key(key, allowed))

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
            kwargs["max_restarts"] = self.count(f["max_restarts"])
        if "within" in f:
            kwargs["within"] = self.duration(f["within"])
        return self.build(v, Intensity, "intensity", **kwargs)

    def backoff(self, v: _V) -> Backoff | _Bad:
        f = self.fields(
            v, ("initial", "max", "multiplier", "jitter"), "a mapping of backoff fields"
        )
        return BAD if f is None else self.build(v, Backoff, "backoff", **self.growth(f))

    def growth(self, f: dict[str, _V]) -> dict[str, Any]:
        """``initial``, ``max``, ``multiplier`` and ``jitter`` of a backoff or a retry wait."""
        kwargs: dict[str, Any] = {}
        for key in ("initial", "max"):
            if key in f:
                kwargs[key] = self.duration(f[key])
        for key in ("multiplier", "jitter"):
            if key in f:
                kwargs[key] = self.number(f[key])
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
        for key in ("duration", "probation", "max"):
            if key in f:
                kwargs[key] = self.duration(f[key])
        if "multiplier" in f:
            kwargs["multiplier"] = self.number(f["multiplier"])
        if "max_cycles" in f and f["max_cycles"].value is not None:
            kwargs["max_cycles"] = self.count(f["max_cycles"])
        return self.build(v, CooldownPolicy, "cooldown", **kwargs)

    def finish(
        self, v: _V, cls: Callable[..., T], kwargs: dict[str, Any], prefix: str = ""
    ) -> T | _Bad:
        """``build``, unless a value was reported already (a nested spec that failed)."""
        if any(isinstance(value, _Bad) for value in kwargs.values()):
            return BAD
        return self.build(v, cls, prefix, **kwargs)

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
            at = _V(None, join(v.path, "jobs"), v.line)
            self.add(at, "expected group: NAME beside jobs to declare a group")
        f, inherited = self.with_defaults(own)
        name_v = f.get("name") or _V(None, join(v.path, "name"), v.line)
        name = (
            self.name(f["name"], "a job name")
            if "name" in f
            else self.missing(v, "name", "a job name made of letters, digits, '_', '.' or '-'")
        )
        replicas = self.replicas(f["replicas"]) if "replicas" in f else None
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

        job = _V(Merged(f), v.path, v.line)

        def build(depends: tuple[str, ...]) -> list[ChildSpec]:
            # Each replica its own copy of the work: an equal value, but its own session (an
            # http job's pooled connections), which stopping one replica must not close.
            specs = [
                self.build(job, JobSpec, name=n, depends_on=depends, **_own_work(options))
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
        job = _V(Merged(f), v.path, v.line)  # the job's own fields and those it inherits
        schedule = self.schedule(job, f)
        stop_signal, grace = self.stop(f["stop"]) if "stop" in f else (None, DEFAULT_GRACE)
        if stop_signal is not None and kind not in ("command", None) and "stop" not in inherited:
            at = (_entries(f["stop"]) or {}).get("signal", f["stop"])
            self.add(at, f"expected stop.signal only on command jobs, got it on {_KIND_NOUN[kind]}")
            stop_signal = BAD
        options: dict[str, Any] = {
            "schedule": schedule,
            "restart": RestartType.TRANSIENT,
            "grace": grace,
            "retry": self.retry(f["retry"], kind) if "retry" in f else None,
            "breaker": self.breaker(f["breaker"]) if "breaker" in f else None,
            "ready": self.ready(f["ready"]) if "ready" in f else None,
            "placement": self.placement(f["placement"]) if "placement" in f else "local",
            "work": self.work(job, f, kind, stop_signal, grace),
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
        job = _V(Merged({key: v}), "defaults", v.line)
        restarts = [r.value for r in RestartType]
        checks: dict[str, Callable[[_V], object]] = {
            "command": self.command,
            "http": lambda v: self.http_work(job, v, need_url=False),
            "python": lambda v: self.python_work(job, {key: v}),
            "args": lambda v: self.items(v, "a list of arguments"),
            "kwargs": lambda v: self.python_work(job, {"python": _V("m:f", "", None), key: v}),
            "cwd": lambda v: self.text(v, "a directory path"),
            "env": lambda v: self.str_map(v, "a mapping of environment variables"),
            "service": lambda _: self.schedule(job, {key: v}),
            "every": lambda _: self.schedule(job, {key: v}),
            "timeout": lambda _: self.schedule(job, {key: v}),
            "cron": lambda _: self.schedule(job, {key: v}),
            "times": lambda _: self.build(job, Schedule, every=1.0, times=self.count(v)),
            "replicas": self.replicas,
            "retry": lambda v: self.retry(v, None),
            "breaker": self.breaker,
            "restart": lambda v: self.choice(v, restarts),
            "ready": self.ready,
            "stop": self.stop_fields,
            "placement": self.placement,
        }
        check = checks.get(key)
        return None if check is None else check(v)

    def replicas(self, v: _V) -> int | _Bad:
        """The replica count: no spec holds it, so it is checked here."""
        value = self.count(v)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return self.expected(v, "a count >= 1")
        if value > MAX_REPLICAS:
            return self.expected(v, f"a count between 1 and {MAX_REPLICAS}")
        return value

    def schedule(self, job: _V, f: dict[str, _V]) -> Schedule | _Bad:
        kwargs: dict[str, Any] = {}
        if "service" in f:
            kwargs["service"] = self.flag(f["service"])
        for key in ("every", "timeout"):
            if key in f:
                kwargs[key] = self.duration(f[key])
        if "times" in f:
            kwargs["times"] = self.count(f["times"])
        if "cron" in f:
            kwargs["cron"] = f["cron"].value
        return self.build(job, Schedule, **kwargs)

    def stop(self, v: _V) -> tuple[Any, Any]:
        """``stop.signal`` (a number when the name is known) and ``stop.grace`` in seconds."""
        f = self.fields(v, ("signal", "grace"), "a mapping with signal and grace")
        if f is None:
            return None, BAD
        grace = self.duration(f["grace"]) if "grace" in f else DEFAULT_GRACE
        signum = self.signal(f["signal"]) if "signal" in f else None
        return signum, grace

    def stop_fields(self, v: _V) -> object:
        signum, grace = self.stop(v)
        if isinstance(grace, _Bad):
            return grace
        given: dict[str, Any] = {"grace": grace}
        if signum is not None:
            given["stop_signal"] = signum
        at = _V(Merged({"stop": v}), "defaults", v.line)
        cls = self.kind_class(v, "actors._command", "CommandWork", "command jobs")
        return BAD if cls is None else self.build(at, cls, argv=("true",), **given)

    @staticmethod
    def signal(v: _V) -> Any:
        """The number of a signal written by name (``TERM``, ``SIGHUP``); anything else as it is."""
        value = v.value
        if isinstance(value, str):
            name = value.strip().upper()
            name = name if name.startswith("SIG") else f"SIG{name}"
            if name in signal.Signals.__members__:
                return signal.Signals[name]
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return signal.Signals(value)
            except ValueError:
                return value
        return value

    def retry(self, v: _V, kind: str | None) -> RetrySpec | _Bad | None:
        if v.value is None:
            return None
        f = self.fields(v, ("attempts", "wait", "on"), "a mapping with attempts, wait and on")
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "attempts" in f:
            kwargs["attempts"] = self.count(f["attempts"])
        if "wait" in f:
            wait = self.fields(
                f["wait"], ("initial", "max", "multiplier", "jitter"), "a mapping of wait fields"
            )
            kwargs["wait"] = (
                BAD
                if wait is None
                else self.build(f["wait"], RetryWait, "retry.wait", **self.growth(wait))
            )
        if "on" in f:
            kwargs["on"] = self.retry_on(f["on"], kind)
        return self.finish(v, RetrySpec, kwargs, "retry")

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
            if check is not None and isinstance(
                self.build(item, check, "retry.on", on=(name,)), _Bad
            ):
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
        kwargs: dict[str, Any] = {key: f[key].value for key in ("tcp", "http") if key in f}
        if "command" in f:
            command = self.command(f["command"])
            if isinstance(command, _Bad):
                return BAD
            argv, shell = command
            kwargs["command"] = argv if shell is None else ("/bin/sh", "-c", shell)
        for key in ("timeout", "interval"):
            if key in f:
                kwargs[key] = self.duration(f[key])
        cls = self.kind_class(v, "actors._ready", "ReadyProbe", "readiness probes")
        return BAD if cls is None else self.build(v, cls, "ready", **kwargs)

    def placement(self, v: _V) -> Any:
        """The value as written; ``ray`` is checked against the runtime and Ray's presence."""
        value = v.value
        if value != "ray":
            if value not in PLACEMENTS:  # the job spec refuses it; the manifest adds a hint
                return self.choice(v, PLACEMENTS)
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

    def work(
        self, job: _V, f: dict[str, _V], kind: str | None, stop_signal: object, grace: object
    ) -> Any:
        match kind:
            case "command":
                return self.command_work(job, f, stop_signal, grace)
            case "http":
                return self.http_work(job, f["http"], need_url=True)
            case "python":
                return self.python_work(job, f)
        return BAD

    def command_work(self, job: _V, f: dict[str, _V], stop_signal: object, grace: object) -> Any:
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
            given["env"] = self.str_map(f["env"], "a mapping of environment variables")
        values = (stop_signal, grace, *given.values())
        if isinstance(command, _Bad) or any(isinstance(value, _Bad) for value in values):
            return BAD
        argv, shell = command
        given.update({"argv": argv} if shell is None else {"shell": shell})
        if stop_signal is not None:
            given["stop_signal"] = stop_signal
        if "stop" in f:
            given["grace"] = grace
        cls = self.kind_class(f["command"], "actors._command", "CommandWork", "command jobs")
        return BAD if cls is None else self.build(job, cls, **given)

    def python_work(self, job: _V, f: dict[str, _V]) -> PythonWork | _Bad:
        args = self.items(f["args"], "a list of arguments") if "args" in f else []
        kwargs = self.kwargs(f["kwargs"]) if "kwargs" in f else {}
        if args is None or isinstance(kwargs, _Bad):
            return BAD
        target = f["python"].value if "python" in f else "m:f"
        arguments = tuple(_plain(a.value) for a in args)
        return self.build(job, PythonWork, target=target, args=arguments, kwargs=kwargs)

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
        """``(argv, None)`` for a list, ``((), shell)`` for a string; warns of a secret in argv."""
        value = v.value
        what = "a list of argv strings or a shell command string"
        if isinstance(value, str):
            if not value.strip() or "\0" in value:
                return self.expected(v, what)
            if self.secrets and any(secret in value for secret in self.secrets):
                self.warn(v, _ARGV_WARNING)
            return (), str(value)
        items = self.items(v, what)
        if items is None:
            return BAD
        if not items:
            return self.expected(v, "a non-empty list of argv strings")
        argv = [self.scalar_text(item, "an argv string") for item in items]
        if any(isinstance(arg, _Bad) for arg in argv):
            return BAD
        for item, arg in zip(items, argv, strict=True):
            if self.secrets and any(secret in str(arg) for secret in self.secrets):
                self.warn(item, _ARGV_WARNING)
        return tuple(str(arg) for arg in argv), None

    def warn(self, at: _V, message: str) -> None:
        self._warn_at(at.path, at.line, message)

    def kwargs(self, v: _V) -> dict[Any, Any] | _Bad:
        """The keyword arguments as plain data; their names are the python spec's to check."""
        entries = self.fields_any(v, "a mapping of keyword arguments")
        if entries is None:
            return BAD
        return {key: _plain(item.value) for key, item in entries.items()}

    def http_work(self, job: _V, v: _V, *, need_url: bool) -> Any:
        f = self.fields(v, _HTTP_KEYS, "a mapping with url and other request fields", null_ok=False)
        if f is None:
            return BAD
        out: dict[str, Any] = {key: _plain(f[key].value) for key in _HTTP_PLAIN if key in f}
        if "url" not in f:
            # A default's other fields are checked on their own, with a stand-in url.
            out["url"] = (
                self.missing(v, "url", "an http:// or https:// URL")
                if need_url
                else "http://default.invalid/"
            )
        for key, what in (("headers", "headers"), ("params", "query parameters")):
            if key in f:
                out[key] = self.str_map(f[key], f"a mapping of {what}")
        if "timeout" in f:
            out["timeout"] = self.duration(f["timeout"])
        if "expect_status" in f:
            items = self.items(
                f["expect_status"], "a status 100..599 or a list of them", single_ok=True
            )
            out["expect_status"] = BAD if items is None else tuple(item.value for item in items)
        if any(isinstance(value, _Bad) for value in out.values()):
            return BAD
        cls = self.kind_class(v, "actors._http", "HttpWork", "http jobs")
        return BAD if cls is None else self.build(job, cls, **out)


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


def _names_any(exc: SpecError, fields: set[str]) -> bool:
    """Whether ``exc``, or the same problem told at its other field, names one of ``fields``."""
    named = set(_field_parts(exc.field))
    if exc.other is not None:
        named.update(_field_parts(exc.other.field))
    return bool(named & fields)


def _hints(expected: str, value: object) -> tuple[str, str]:
    """``expected`` and a hint after the value, for a value the manifest wrote in a wrong form.

    A duration or size that could not be read gets its forms (``like 250ms, 30s, ...``);
    a misspelt choice gets the closest one; a bool where text was expected, ``(quote it)``.
    """
    if isinstance(value, str | bool) or value is None:
        if expected.startswith("a duration"):
            return f"{expected} like {DURATION_HINT}", ""
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


def _entries(v: _V) -> dict[Any, _V] | None:
    """The entries of a mapping value, each with its path and line; None for a non-mapping."""
    value = v.value
    if isinstance(value, Merged):
        return value.entries
    if not isinstance(value, dict):
        return None
    lines = getattr(value, "lines", {})
    return {key: _V(item, join(v.path, key), lines.get(key, v.line)) for key, item in value.items()}


def _merge(default: _V, own: _V, nested: Sequence[str] = ()) -> _V:
    """``own`` over ``default``, entry by entry (``nested`` keys merge one level deeper)."""
    base, top = _entries(default), _entries(own)
    if base is None or top is None:
        return own
    merged = dict(base)
    for key, item in top.items():
        merged[key] = _merge(base[key], item) if key in nested and key in base else item
    return _V(Merged(merged), own.path, own.line)


def _plain(value: Any) -> Any:
    """Resolved data as plain dicts, lists and strs."""
    if isinstance(value, Merged):
        return {k: _plain(v.value) for k, v in value.entries.items()}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, Text) and value.strip().lower() in _TRUE)


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


def _absolute(path: Path) -> Path:
    try:
        return path.absolute()
    except OSError:
        return path


def _own_work(options: dict[str, Any]) -> dict[str, Any]:
    work = options.get("work")
    if work is None or not dataclasses.is_dataclass(work) or isinstance(work, type):
        return options
    return {**options, "work": dataclasses.replace(work)}
