"""The manifest loader: ``jobs.yaml`` -> a validated ``Manifest`` of frozen specs (SPEC §3, §7).

YAML is read safely, keeping the line of every key and list item (``_yaml``);
``${NAME}`` and secrets are resolved (``_resolve``); a pure ``parse(data)``
then walks the schema: it checks the document's shape (keys, kinds, which
field goes with which), converts values (``30s``, ``TERM``) and calls the
spec constructors, which alone judge values and raise ``SpecError`` naming
the field. Every problem is collected into one ``ManifestError``, each with
its path (``jobs[2].retry.attempts``), line, the expected and the actual
value. No other exception escapes for any manifest.

Rules this module decides where SPEC §3 is silent:

- ``${NAME}`` and secrets: see ``_resolve``; a count, number or flag written
  as ``${NAME}`` is read from the text.
- ``defaults``: see ``_defaults``.
- ``env_file``: files read by ``_envfile`` (relative to the manifest's
  directory; ``-PATH`` may be missing), layered under ``env`` by
  ``with_env_files``; a value whose name looks secret (``looks_secret``) and
  is long enough to mask is a secret, a shorter one is warned of.
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

import builtins
import contextlib
import dataclasses
import difflib
import gc
import importlib
import importlib.util
import os
import re
import signal
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from actors import RetrySpec, RetryWait, Schedule
from actors._checks import a_kind
from actors._env import SharedEnv
from actors._failnames import qualified_name
from actors._placement import RAY_FIELDS, RayPlacement
from actors._retry import DEFAULT_ATTEMPTS
from supervision._defaults import FOR_KINDS, JOB_KEYS, KINDS, Defaults
from supervision._envfile import (
    TRUSTED_OWNERS,
    EnvFileError,
    OverShared,
    loose,
    planted_link,
    read_env_file,
)
from supervision._interpolation import INTERPOLATION, VARIABLE
from supervision._issues import (
    TEXT_NAME,
    HoldsSecret,
    Issue,
    ManifestError,
    Merged,
    Secret,
    join,
    mask,
)
from supervision._listen import READS, HttpSpec
from supervision._notify import NotifySpec, read_notify
from supervision._policy import (
    Backoff,
    Budget,
    CooldownPolicy,
    Intensity,
    OnExhausted,
    RestartPolicy,
    RestartType,
    Strategy,
)
from supervision._reader import BAD, Bad, V, entries_of, plain
from supervision._resolve import MAX_DEPTH, Resolver, looks_secret, too_short
from supervision._secrets import SecretMasker
from supervision._siblings import Entry, check_dependencies, check_names, replica_names
from supervision._spec import (
    PLACEMENTS,
    BreakerSpec,
    ChildSpec,
    JobSpec,
    LoggingSpec,
    OutputSpec,
    RotateSpec,
    SupervisorSpec,
)
from supervision._units import (
    parse_duration,
    parse_size,
)
from supervision._work import STAND_INS, WorkReader
from supervision._yaml import read_yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

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
_ONCE: Final = Schedule()  # most jobs' schedule: built once, it is a frozen value
_PERIODIC: Final = {"every": 60.0, "cron": "@daily"}  # stand-ins for a refused one


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
    cluster_namespace: str | None = None
    http: HttpSpec | None = None  # the HTTP endpoint (SPEC §9); None: off
    notify: tuple[NotifySpec, ...] = ()  # every job's (and the tree's) notifications
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


def load_manifest(
    path_or_text: str | Path | Mapping[str, Any], *, env: Mapping[str, str] | None = None
) -> Manifest:
    """Read and validate a manifest: a ``Path``, a string naming a file, text holding a
    newline, or a mapping (the manifest as parsed YAML or JSON gives it, its problems told
    at their field paths, ``jobs[0].command``, with no line).

    ``env`` (default ``os.environ``) resolves ``${NAME}`` and ``{secret: {env:
    NAME}}``. Relative paths resolve against the manifest's directory (the
    working directory for text). Raises ``ManifestError`` listing every
    problem; nothing else, whatever the manifest holds.
    """
    with _collector_paused():
        return _load(path_or_text, env)


def _as_dicts(value: Any, depth: int = 0) -> Any:
    """``value`` with every mapping in it a ``dict`` (a ``MappingProxyType``, a program's own
    ``Mapping``), as the reader takes what YAML gives: dicts, lists and scalars.

    Past the reader's nesting bound it is left as it is, for the reader to refuse (a mapping
    holding itself ends there too).
    """
    if depth > MAX_DEPTH or isinstance(value, str | int | float) or value is None:
        return value
    if isinstance(value, list | tuple):
        items = [_as_dicts(item, depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, Mapping):
        return {key: _as_dicts(item, depth + 1) for key, item in value.items()}
    return value


def _load(path_or_text: object, env: Mapping[str, str] | None) -> Manifest:
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        return parse(_FromYaml(read_yaml(path_or_text, TEXT_NAME)), env=env, file=TEXT_NAME)
    if isinstance(path_or_text, Mapping):
        return parse(_as_dicts(path_or_text), env=env, file=TEXT_NAME)
    if not isinstance(path_or_text, str | Path):
        message = (
            "expected a manifest file's path (a str or Path), manifest text (YAML with a "
            f"newline) or a mapping, got {a_kind(path_or_text)}"
        )
        raise ManifestError([Issue("", None, message, TEXT_NAME)], TEXT_NAME)
    if isinstance(path_or_text, str) and not path_or_text.strip():
        message = (
            "expected a manifest file's path or manifest text (YAML with a newline), got an "
            f"empty string: {path_or_text!r}"
        )
        raise ManifestError([Issue("", None, message, TEXT_NAME)], TEXT_NAME)
    path = Path(path_or_text)
    file = str(path_or_text)
    try:
        raw, why = _read_trusted(path.expanduser())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"expected a readable manifest file, got: {reason}"
        if isinstance(path_or_text, str) and _looks_inline(path_or_text):
            message += (
                "; manifest text is read as text only when it holds a newline: end it with "
                "'\\n', or pass it parsed, as a mapping (load_manifest(yaml.safe_load(text)))"
            )
        raise ManifestError([Issue("", None, message, file)], file) from None
    if why is not None:
        why += (
            f" (where such files are to be trusted, as a container's root running sources "
            f"mounted from another user: {TRUSTED_OWNERS}=UID, or '*' for every file)"
        )
        raise ManifestError([Issue("", None, f"refusing this manifest: {why}", file)], file)
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


def _read_trusted(path: Path) -> tuple[bytes, str | None]:
    """The bytes of the manifest at ``path``, and why it is not to be run if another user
    could choose what it runs: its file is theirs, or they can write it, or a symbolic link
    of theirs leads to it (the rule of an env file's and a secret file's text)."""
    with path.open("rb") as file:
        st = os.fstat(file.fileno())
        raw = file.read()
    why = loose(st, "choose the commands jobvisor runs") if stat.S_ISREG(st.st_mode) else None
    return raw, why or planted_link(path)


_RAY_ADDRESS: Final = re.compile(
    r"(?:ray://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?):(\d{1,5})"
)


def _ray_address(text: str) -> bool:
    """Whether ``text`` is an address ``ray.init`` takes: ``auto``, ``local``, ``HOST:PORT`` or
    ``ray://HOST:PORT`` (a port from 1 to 65535)."""
    if text.strip() in ("auto", "local"):
        return True
    found = _RAY_ADDRESS.fullmatch(text.strip())
    return found is not None and 1 <= int(found[1]) <= 65535


def _looks_inline(text: str) -> bool:
    """Whether a string that named no file was meant as manifest text (``{version: 1, ...}``,
    ``version: 1``): a path starts with neither a brace nor holds a key's ``": "``."""
    return text.lstrip().startswith("{") or ": " in text


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
        raise ManifestError(issues, file, warnings=parser.final_issues(parser.warnings))
    return manifest


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a manifest loads.

    Loading builds a few objects per value, none of them in a cycle that must
    be freed at once; with the collector running, a 10,000-job manifest spends
    a third of its time in collections that find nothing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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


# fmt: off
TOP_KEYS: Final = (
    "version", "runtime", "state_dir", "logging", "defaults", "supervisor", "breakers", "cluster",
    "notify", "jobs", "http",
)
POLICY_KEYS: Final = ("strategy", "intensity", "backoff", "on_exhausted", "cooldown")
GROUP_KEYS: Final = ("group", *POLICY_KEYS, "restart", "notify", "jobs")
ROOT_KEYS: Final = (*POLICY_KEYS, "budget")  # the budget is the whole tree's: root only
LOGGING_KEYS: Final = ("level", "file", "rotate", "format")
ROTATE_KEYS: Final = ("max_bytes", "backups", "when")
CLUSTER_KEYS: Final = ("address", "namespace")
LISTEN_KEYS: Final = ("listen", "token", "heartbeat", "reads")
BREAKER_KEYS: Final = ("failure_threshold", "reset_timeout", "half_open_max_calls")
WINDOW_KEYS: Final = ("max_restarts", "within")  # an intensity or a budget
GROWTH_KEYS: Final = ("initial", "max", "multiplier", "jitter")  # a backoff or a retry wait
COOLDOWN_KEYS: Final = ("duration", "probation", "multiplier", "max", "max_cycles")
OUTPUT_KEYS: Final = ("max_bytes", "backups", "log")
STOP_KEYS: Final = ("signal", "grace")
_Signals = signal.Signals  # the class's method ``signal`` hides the module in annotations
# Signals whose default action ends no process (ignored, or a pause). SIGWINCH is left out:
# httpd's graceful stop is one.
_NO_END_BY_DEFAULT: Final = frozenset(
    {
        signal.SIGTSTP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGCONT,
        signal.SIGCHLD,
        signal.SIGURG,
    }
)
RETRY_KEYS: Final = ("attempts", "wait", "on")
READY_KEYS: Final = ("tcp", "http", "command", "timeout", "interval")
PLACEMENT_KEYS: Final = ("ray",)
# fmt: on
# give_up_on's keys: the kinds that fail that way, as said, and the one that never does. A python
# job has an exit code too (sys.exit(n), an int result), and an HTTP status if its own code
# raises jobvisor's HttpStatusError.
_GIVE_UP_UNMET: Final = (
    ("http_status", "http", "command", "HTTP status"),
    ("exit_codes", "command or python", "http", "exit code"),
)
_KIND_NOUN: Final = {"command": "a command job", "http": "an http job", "python": "a python job"}

# Fields a python job has only in a child process of its own (isolation: process): a thread
# shares jobvisor's. ``defaults`` give them to commands only.
_PROCESS_KEYS: Final = {
    key: (
        f"expected {key} on a python job only with isolation: process (a thread shares "
        "jobvisor's own working directory and environment), got it on a python job in a thread"
    )
    for key in ("cwd", "env", "env_file")
}


def _in_the_manifest(token: str) -> str | None:
    """What of an HTTP token written as ``token`` is in the manifest's text itself, said; None
    when all of it comes from the environment (``${NAME}``)."""
    variables = 0
    written = False  # text beside the variables, a ``$${``, or a fallback
    end = 0
    for match in INTERPOLATION.finditer(token):
        written = written or match.start() > end or match.group(0) == "$${"
        end = match.end()
        found = VARIABLE.fullmatch(match.group(1) or "") if match.group(2) else None
        if found is not None:  # another is refused as it is read
            variables += 1
            written = written or bool(found.group(2))
    if not variables:
        return "the token is written in the manifest"
    if written or end < len(token):
        return (
            "part of the token is written in the manifest (text beside its ${NAME}, or a "
            "${NAME:-fallback}, the token whenever NAME is unset)"
        )
    return None


# Methods a server may act on twice if sent twice (here, not from actors._http: validate loads
# no requests).
_NON_IDEMPOTENT: Final = ("POST", "PATCH")


class _Parser(WorkReader):
    """One pass over manifest data: the schema walk, collecting issues instead of raising."""

    def __init__(self, env: Mapping[str, str], base_dir: Path, file: str | None) -> None:
        super().__init__(file, base_dir)
        self.resolver = Resolver(env, base_dir, self._add_at, self._warn_at)
        self.exec_path = env.get("PATH", os.defpath)
        self.secrets = self.resolver.secrets
        self.runtime = "threads"
        self.breakers: dict[str, BreakerSpec] = {}
        self.breaker_names: list[str] = []
        self.defaults = Defaults()
        self._ray: bool | None = None
        self._token_written: str | None = None  # http.token's text, before ``${...}``
        self._groups: list[str] = []  # the names of the groups being read, outermost first
        # Each env file read once per load, however many jobs name it (defaults' for 10,000):
        # its values, secrets decided (a ``Secret`` each), or why it cannot be used (None:
        # missing).
        self._env_files: dict[str, dict[str, str | Secret] | str | None] = {}
        # What a job's env_file field sets, by where it is written: ``defaults:``' one serves
        # every job (10,000 jobs made its entries 10,000 times).
        self._env_entries: dict[tuple[str, int | None], SharedEnv | None] = {}
        # The entries of each list of files, by their paths: 10,000 jobs each naming one file
        # of 10,000 variables share one (they were 10,000 copies, 12 GB and 165 s to load).
        self._shared_envs: dict[tuple[str, ...], SharedEnv] = {}
        self._combined: dict[tuple[int, ...], SharedEnv] = {}  # defaults' files and a job's

    def final_issues(self, issues: list[Issue] | None = None) -> list[Issue]:
        """As ``Reader``'s, but a warning that names no value is left as written."""
        final = super().final_issues(issues)
        if not self.resolver.valueless:
            return final
        whole = {mask(message, self.secrets): message for message in self.resolver.valueless}
        return [dataclasses.replace(i, message=whole.get(i.message, i.message)) for i in final]

    # -- the document ----------------------------------------------------------------------------

    def manifest(self, data: Any, path: Path | None, line: int | None) -> Manifest | None:
        if isinstance(data, _FromYaml):
            data = data.data
        http = data.get("http") if isinstance(data, dict) else None
        token = http.get("token") if isinstance(http, dict) else None
        self._token_written = token if isinstance(token, str) else None
        root = V(self.resolver.resolve(data, "", line), "", line)
        if self.resolver.bounded:  # whatever follows would only describe the cut
            return None
        what = "a mapping with version and jobs"
        if root.value is None:
            self.add(root, f"expected {what}, got an empty document")
            return None
        top = self.fields(root, TOP_KEYS, what, null_ok=False, extensions=True)
        if top is None:
            return None
        state_dir = self.header(root, top)
        logging = self.logging(top["logging"]) if "logging" in top else LoggingSpec()
        cluster, namespace = self.cluster(top["cluster"]) if "cluster" in top else (None, None)
        http = self.http(top["http"]) if "http" in top else None
        if "breakers" in top:
            self.read_breakers(top["breakers"])
        if "defaults" in top:
            self.defaults.read(self, top["defaults"])
        notify = read_notify(self, top["notify"]) if "notify" in top else ()
        spec = self.root(root, top)
        self.check_unused_defaults()
        if (
            self.issues
            or isinstance(logging, Bad)
            or isinstance(spec, Bad)
            or isinstance(http, Bad)
        ):
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
            cluster_namespace=namespace,
            http=http,
            notify=notify or (),
            warnings=tuple(self.final_issues(self.warnings)),
        )

    def header(self, root: V, top: dict[str, V]) -> Path:
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

    def root(self, root: V, top: dict[str, V]) -> SupervisorSpec | Bad:
        flags: dict[str, Any] = {}
        sup = None
        if "supervisor" in top:
            sup = self.fields(top["supervisor"], ROOT_KEYS, "a mapping of restart policy fields")
            flags = {} if sup is None else self.policy(sup)
            if sup is not None and "budget" in sup and sup["budget"].value is not None:
                budget = self.budget(sup["budget"])
                if not isinstance(budget, Bad):
                    policy = flags.get("policy", RestartPolicy())
                    flags["policy"] = dataclasses.replace(policy, budget=budget)
        if "jobs" not in top:
            return self.missing(root, "jobs", "a non-empty list of jobs and groups")
        children = self.children(top["jobs"], flags.get("strategy"))
        if self.issues:
            return BAD
        if sup is not None:
            self.warn_endless_cooldown(sup, flags, children, "supervisor:")
        return self.build(root, SupervisorSpec, name="root", children=children, **flags)

    def logging(self, v: V) -> LoggingSpec | Bad:
        f = self.fields(v, LOGGING_KEYS, "a mapping of logging fields")
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "level" in f:
            kwargs["level"] = f["level"].value
        if "format" in f:
            kwargs["format"] = f["format"].value
        if "file" in f and f["file"].value is not None:
            file = self.text(f["file"], "a log file path")
            if not isinstance(file, Bad):
                file = str(self.base_dir / Path(file).expanduser())
            kwargs["file"] = file
        if "rotate" in f and f["rotate"].value is not None:
            kwargs["rotate"] = self.rotate(f["rotate"])
        return self.finish(v, LoggingSpec, kwargs, "logging")

    def rotate(self, v: V) -> RotateSpec | Bad:
        f = self.fields(v, ROTATE_KEYS, "a mapping of rotation fields")
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

    def cluster(self, v: V) -> tuple[str | None, str | None]:
        """``(address, namespace)``; None for what is not set."""
        f = self.fields(v, CLUSTER_KEYS, "a mapping with address and namespace")
        out: list[str | None] = []
        for key, what in (
            ("address", "a Ray cluster address: auto, HOST:PORT or ray://HOST:PORT"),
            ("namespace", "a Ray namespace name"),
        ):
            if not f or key not in f or f[key].value is None:
                out.append(None)
                continue
            value = self.text(f[key], what)
            if key == "address" and isinstance(value, str) and not _ray_address(value):
                # "foo" passed validate, then failed each attempt at run time (":99999" only
                # after waiting 15 s to connect).
                value = self.expected(f[key], what)
            out.append(value if isinstance(value, str) else None)
        return out[0], out[1]

    def http(self, v: V) -> HttpSpec | Bad | None:
        f = self.fields(v, LISTEN_KEYS, "a mapping with listen and token")
        if f is None:
            return BAD
        if not f:
            return None  # `http:` left empty: off, like leaving it out
        kwargs: dict[str, Any] = {}
        if "listen" in f:
            kwargs["listen"] = self.scalar_text(f["listen"], "HOST:PORT such as 127.0.0.1:8080")
        if "token" in f and f["token"].value is not None:
            kwargs["token"] = self.token(f["token"])
        if "heartbeat" in f:
            kwargs["heartbeat"] = self.duration(f["heartbeat"])
        if "reads" in f:
            kwargs["reads"] = self.choice(f["reads"], READS)
        if any(isinstance(value, Bad) for value in kwargs.values()):
            return BAD
        return self.build(v, HttpSpec.of, "http", **kwargs)

    def token(self, v: V) -> Any:
        """The HTTP token at ``v``, masked wherever it shows, whatever it was written as.

        One written in the manifest, whole or in part (text beside a ``${NAME}``, or a
        ``${NAME:-fallback}``), is warned of. A plain ``${NAME}`` is not: read from the
        environment and masked here, it is as safe as ``{secret: {env: NAME}}``.
        """
        token = v.value
        if not isinstance(token, str) or isinstance(token, HoldsSecret) or not token.strip():
            return token  # a blank one is refused (HttpSpec)
        written = _in_the_manifest(self._token_written or "")
        if written is not None:
            self.warn(
                v,
                f"{written}, where whoever reads the file finds it; "
                "write token: {secret: {env: NAME}} or {secret: {file: PATH}} instead (it is "
                "masked all the same)",
            )
        self.resolver.collect(token, v.path, v.line, "the token")
        return token

    def read_breakers(self, v: V) -> None:
        entries = self.fields_any(v, "a mapping of breaker names to their settings")
        for key, item in (entries or {}).items():
            name = self.name(V(key, item.path, item.line), "a breaker name")
            if isinstance(name, Bad):
                continue
            self.breaker_names.append(name)
            f = self.fields(
                item,
                BREAKER_KEYS,
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
            if not isinstance(spec, Bad):
                self.breakers[name] = spec

    def check_unused_defaults(self) -> None:
        """Check the defaults no job inherited, so that no bad value goes unreported."""
        for key, v in self.defaults.unused():
            self.job_field(key, v)
        if "stop" in self.defaults.used:  # a job that is no command ignores stop.signal
            self.stop_fields(self.defaults.fields["stop"])

    # -- policies --------------------------------------------------------------------------------

    def policy(self, f: dict[str, V]) -> dict[str, Any]:
        """A supervisor's ``strategy`` and ``policy`` as far as ``f`` sets them; specs default."""
        flags: dict[str, Any] = {}
        if "strategy" in f:
            value = self.choice(f["strategy"], [s.value for s in Strategy])
            if isinstance(value, str):
                flags["strategy"] = Strategy(value)
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
        good = {k: value for k, value in kwargs.items() if not isinstance(value, Bad)}
        if good:
            flags["policy"] = RestartPolicy(**good)
        return flags

    def warn_endless_cooldown(
        self, f: dict[str, V], flags: dict[str, Any], children: tuple[ChildSpec, ...], where: str
    ) -> None:
        """Warn of finite jobs that a cooldown without ``max_cycles`` would never let settle.

        While such a job fails, it is tried again after each cooldown for ever, so
        ``jobvisor run``, which waits for every finite job, never ends.
        """
        policy = flags.get("policy")
        if (
            "on_exhausted" not in f
            or not isinstance(policy, RestartPolicy)
            or policy.on_exhausted is not OnExhausted.COOLDOWN
            or policy.cooldown.max_cycles is not None
        ):
            return
        finite = [
            child.name
            for child in children
            if isinstance(child, JobSpec)
            and child.schedule.finite
            and child.restart is not RestartType.TEMPORARY
        ]
        if not finite:
            return
        shown = ", ".join(finite[:5]) + (f" and {len(finite) - 5} more" if len(finite) > 5 else "")
        one = len(finite) == 1
        self.warn(
            f["on_exhausted"],
            f"on_exhausted: cooldown without cooldown.max_cycles: the finite job"
            f"{'' if one else 's'} {shown} never settle{'s' if one else ''} while "
            f"{'it keeps' if one else 'they keep'} failing (tried again after each cooldown, "
            f"for ever), so jobvisor run never ends; set cooldown: {{max_cycles: N}} in "
            f"{where} (a job gives up after N cycles), or on_exhausted: give_up",
        )

    def intensity(self, v: V) -> Intensity | Bad:
        return self.window_limit(v, Intensity, "intensity")

    def budget(self, v: V) -> Budget | Bad:
        return self.window_limit(v, Budget, "budget")

    def window_limit(self, v: V, cls: Callable[..., T], prefix: str) -> T | Bad:
        """An intensity or a budget: ``max_restarts`` inside ``within``."""
        f = self.fields(v, WINDOW_KEYS, "a mapping with max_restarts and within")
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "max_restarts" in f:
            kwargs["max_restarts"] = self.count(f["max_restarts"])
        if "within" in f:
            kwargs["within"] = self.duration(f["within"])
        return self.build(v, cls, prefix, **kwargs)

    def backoff(self, v: V) -> Backoff | Bad:
        f = self.fields(v, GROWTH_KEYS, "a mapping of backoff fields")
        return BAD if f is None else self.build(v, Backoff, "backoff", **self.growth(f))

    def growth(self, f: dict[str, V]) -> dict[str, Any]:
        """``initial``, ``max``, ``multiplier`` and ``jitter`` of a backoff or a retry wait."""
        kwargs: dict[str, Any] = {}
        for key in ("initial", "max"):
            if key in f:
                kwargs[key] = self.duration(f[key])
        for key in ("multiplier", "jitter"):
            if key in f:
                kwargs[key] = self.number(f[key])
        return kwargs

    def cooldown(self, v: V) -> CooldownPolicy | Bad:
        f = self.fields(
            v,
            COOLDOWN_KEYS,
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
        self, v: V, cls: Callable[..., T], kwargs: dict[str, Any], prefix: str = ""
    ) -> T | Bad:
        """``build``, unless a value was reported already (a nested spec that failed)."""
        if any(isinstance(value, Bad) for value in kwargs.values()):
            return BAD
        return self.build(v, cls, prefix, **kwargs)

    # -- children --------------------------------------------------------------------------------

    def children(self, v: V, strategy: Strategy | None = None) -> tuple[ChildSpec, ...]:
        items = self.items(v, "a non-empty list of jobs and groups")
        if items is None:
            return ()
        if not items:
            self.expected(v, "a non-empty list of jobs and groups")
            return ()
        before = len(self.issues)
        entries: list[Entry] = []
        for item in items:
            value = item.value
            if isinstance(value, dict) and "group" in value:
                entry = self.group(item)
            else:
                entry = self.job(item)
            if entry is not None:
                entries.append(entry)
        owners = check_names(self, entries)
        deps = check_dependencies(self, entries, owners)
        if strategy is Strategy.REST_FOR_ONE:
            self.warn_listed_before(entries, owners)
        # Refused already: built without their dependencies, so that their group's spec does
        # not refuse again what is reported (a cycle, a sibling that could not be built).
        refused = len(self.issues) > before
        children: list[ChildSpec] = []
        for entry in entries:
            children.extend(entry.build(() if refused else deps.get(id(entry), ())))
        return tuple(children)

    def warn_listed_before(self, entries: list[Entry], owners: dict[str, Entry]) -> None:
        """Warn of a dependant listed before what it depends on under rest_for_one.

        A restart takes the failed child and those listed after it (OTP's rule, kept):
        such a dependant is not restarted with its dependency, though it started after it.
        """
        place = {id(entry): i for i, entry in enumerate(entries)}
        named = {**owners, **{e.name: e for e in entries if e.name is not None}}
        where = f"group {'/'.join(self._groups)}" if self._groups else "the root supervisor"
        for i, entry in enumerate(entries):
            for dep in entry.deps:
                target = named.get(dep.value) if isinstance(dep.value, str) else None
                if target is None or place[id(target)] <= i:
                    continue
                self.warn(
                    dep,
                    f"{entry.name} depends on {dep.value} but is listed before it: under "
                    f"rest_for_one ({where}) a restart of {dep.value} restarts only the "
                    f"children listed after {dep.value}, not {entry.name}; list {dep.value} "
                    f"before {entry.name}",
                )

    def group(self, v: V) -> Entry | None:
        v, misplaced = _without(v, "autostart")  # a job's field: said so, naming the group
        f = self.fields(v, GROUP_KEYS, "a group mapping")
        if f is None:
            return None
        name_v = f["group"]
        name = self.name(name_v, "a group name")
        if misplaced is not None:
            self.add(
                misplaced,
                "expected autostart only on a job (a group starts with its parent: set "
                "autostart: false on each of its jobs), got it on "
                + (f"group {name}" if isinstance(name, str) else "a group"),
            )
        flags = self.policy(f)
        if "restart" in f:
            value = self.choice(f["restart"], [r.value for r in RestartType])
            if isinstance(value, str):
                flags["restart"] = RestartType(value)
        if "notify" in f:
            notify = read_notify(self, f["notify"])
            if notify:
                flags["notify"] = notify
        children: tuple[ChildSpec, ...] = ()
        if "jobs" not in f:
            self.missing(v, "jobs", "a non-empty list of the group's jobs")
        else:
            self._groups.append(name if isinstance(name, str) else "?")
            try:
                children = self.children(f["jobs"], flags.get("strategy"))
            finally:
                self._groups.pop()
        if isinstance(name, Bad):
            return None
        self.warn_endless_cooldown(f, flags, children, f"group {name}")

        def build(deps: tuple[str, ...]) -> list[ChildSpec]:
            del deps  # a group has no depends_on of its own
            spec = self.build(v, SupervisorSpec, name=name, children=children, **flags)
            return [] if isinstance(spec, Bad) else [spec]

        return Entry(name, v, name_v, (name,), [], None, build)

    # -- jobs ------------------------------------------------------------------------------------

    def job(self, v: V) -> Entry | None:
        what = "a job: a mapping with name and one of command, http or python"
        own = self.fields(v, JOB_KEYS, what, null_ok=False)
        if own is None:
            return None
        if isinstance(v.value, dict) and "jobs" in v.value:
            at = V(None, join(v.path, "jobs"), v.line)
            self.add(at, "expected group: NAME beside jobs to declare a group")
        f, inherited = self.defaults.inherit(own)
        name_v = f.get("name") or V(None, join(v.path, "name"), v.line)
        name = (
            self.name(f["name"], "a job name")
            if "name" in f
            else self.missing(v, "name", "a job name made of letters, digits, '_', '.' or '-'")
        )
        replicas = self.replicas(f["replicas"]) if "replicas" in f else None
        deps = self.depends_on(f["depends_on"]) if "depends_on" in f else []
        kind = self.job_kind(v, f, inherited)
        f = self.with_env_files(own, f, kind)
        job = V(Merged(f), v.path, v.line)  # the job's own fields and those it inherits
        options = self.job_options(job, f, kind, inherited)
        if isinstance(name, Bad):
            return None
        names = replica_names(name, None if isinstance(replicas, Bad) else replicas)
        if options is None or isinstance(
            replicas, Bad
        ):  # still a sibling, so that depends_on on it is not reported too
            return Entry(name, v, name_v, names, deps, f.get("depends_on"), lambda _: [])

        def build(depends: tuple[str, ...]) -> list[ChildSpec]:
            # Each replica its own copy of the work: an equal value, but its own session (an
            # http job's pooled connections), which stopping one replica must not close.
            specs = [
                self.build(
                    job,
                    JobSpec,
                    name=n,
                    depends_on=depends,
                    replica_of=None if replicas is None else name,
                    **(_own_work(options) if len(names) > 1 else options),
                )
                for n in names
            ]
            return [spec for spec in specs if not isinstance(spec, Bad)]

        return Entry(name, v, name_v, names, deps, f.get("depends_on"), build)

    # -- env files ---------------------------------------------------------------------------------

    def with_env_files(self, own: dict[str, V], f: dict[str, V], kind: str | None) -> dict[str, V]:
        """``f`` with what its env files set under ``env``, layered closest last: ``defaults``'
        files, ``defaults``' ``env``, the job's own files in order, the job's own ``env``.

        The files' entries are one ``SharedEnv`` for every job that names the same files
        (``OverShared``); the job keeps only its own and ``defaults``' ``env`` entries (those
        its files do not set over). A job with an environment of its own only (a command, a
        python job in a process of its own); elsewhere ``job_kind`` has said so. A file that
        cannot be read is reported and left out.
        """
        process = kind == "python" and "isolation" in f and f["isolation"].value == "process"
        if "env_file" not in f or not (kind == "command" or process):
            return f
        defaults = self.defaults.fields
        default_files = defaults.get("env_file") if kind == "command" else None
        own_files = own.get("env_file")
        if default_files is not None and own_files is not None:
            self.defaults.used.add("env_file")  # both are read: a job's files add to defaults'
        files: list[SharedEnv] = []
        for named in (default_files, own_files):
            if named is not None:
                layer = self.env_file_entries(named)
                if layer is None:  # reported
                    return f
                files.append(layer)
        over = files[-1] if own_files is not None else None  # what beats defaults' env
        entries: dict[Any, V] = {}
        for layer_v, under in ((defaults.get("env"), over), (own.get("env"), None)):
            if layer_v is None or "env" not in f:
                continue
            found = entries_of(layer_v)
            if found is None:  # reported by env's own reader
                return f
            entries.update((k, e) for k, e in found.items() if under is None or k not in under)
        at = f.get("env", f["env_file"])
        return {**f, "env": V(OverShared(entries, self.shared_env(files)), at.path, at.line)}

    def shared_env(self, layers: list[SharedEnv]) -> SharedEnv:
        """One ``SharedEnv`` of ``layers`` (defaults' files, a job's own), a later one winning:
        made once for every job that names the same files."""
        if len(layers) == 1:
            return layers[0]
        key = tuple(id(layer) for layer in layers)  # each layer kept in _env_entries
        found = self._combined.get(key)
        if found is None:
            merged: dict[str, str] = {}
            for layer in layers:
                merged.update(layer)
            found = self._combined[key] = SharedEnv(merged)
        return found

    def env_file_entries(self, v: V) -> SharedEnv | None:
        """What the env files of ``v`` (a path or a list of them) set, a later file winning;
        None when one cannot be used. One ``SharedEnv`` for each list of files, however many
        jobs name it, whether in ``defaults`` or each on its own."""
        key = (v.path, v.line)
        if key not in self._env_entries:
            self._env_entries[key] = self._env_file_entries(v)
        return self._env_entries[key]

    def _env_file_entries(self, v: V) -> SharedEnv | None:
        what = "an env file's path, or a list of them (a leading '-': one that may be missing)"
        items = self.items(v, what, single_ok=True)
        if items is None:
            return None
        read: list[tuple[str, dict[str, str | Secret]]] = []
        usable = True
        for item in items:
            name = self.text(item, what)
            if isinstance(name, Bad) or any(i.path == item.path for i in self.issues):
                # Reported (an unset ${NAME} in it): a path with its stand-in is no file to read.
                usable = False
                continue
            # systemd's spelling: EnvironmentFile=-/etc/default/app
            optional = name.startswith("-")
            where = self.base_dir / Path(name.removeprefix("-")).expanduser()
            values = self.env_file(item, where, optional=optional)
            if values is None:
                usable = False
                continue
            read.append((str(where), values))
        if not usable:
            return None
        files = tuple(where for where, _ in read)
        shared = self._shared_envs.get(files)
        if shared is None:
            merged: dict[str, str] = {}
            for _, values in read:
                # Plain text: a secret's value is masked by the set it was added to on reading.
                merged.update((name, str(value)) for name, value in values.items())
            shared = self._shared_envs[files] = SharedEnv(merged)
        return shared

    def env_file(self, item: V, where: Path, *, optional: bool) -> dict[str, str | Secret] | None:
        """What the env file ``where`` (named at ``item``) sets, a later line winning, each value
        a ``Secret`` when its name looks secret; None if it cannot be used (reported at
        ``item``), empty for an optional one that is missing."""
        key = str(where)
        if key not in self._env_files:
            self._env_files[key] = self.read_env_file(item, where)
        found = self._env_files[key]
        if isinstance(found, dict):
            return found
        if found is None:  # missing
            if optional:
                return {}
            found = (
                f"expected a readable env file {key!r}, got: No such file or directory (write "
                f"-{item.value} for one that may be missing, as systemd's EnvironmentFile=- does)"
            )
        self.add(item, found)
        return None

    def read_env_file(self, item: V, where: Path) -> dict[str, str | Secret] | str | None:
        """Read ``where`` once: what it sets (``env_file``), its secrets collected and their
        doubts warned of; or why it cannot be used (None: it is missing)."""
        try:
            assignments, st = read_env_file(where)
        except EnvFileError as exc:
            return None if exc.missing else str(exc)
        values: dict[str, str | Secret] = {}
        secret_names: list[str] = []
        for assignment in assignments:
            values[assignment.name] = assignment.value  # a later line wins, secret or not
            if not looks_secret(assignment.name) or not assignment.value.strip():
                continue
            if _plain_setting(assignment.value):
                self.warn(
                    item,
                    f"{where}:{assignment.line}: {assignment.name} looks like a secret, but its "
                    "value is a boolean or a number, a setting: not masked (masked, it would hide "
                    "that word in every line of every job); a secret of that shape belongs in "
                    "{secret: {file: PATH}}",
                )
                continue
            if SecretMasker.maskable(assignment.value):
                self.secrets.add(assignment.value)
                secret_names.append(assignment.name)
                values[assignment.name] = Secret(assignment.value)
                continue
            self.warn(
                item,
                f"{where}:{assignment.line}: {assignment.name} looks like a secret, but "
                f"{too_short('its value')}; give it a longer value, or a name without TOKEN, "
                "KEY, SECRET, PASSWORD, PASSWD or CREDENTIAL if it is none",
            )
        if secret_names and st.st_mode & 0o077:
            self.warn(
                item,
                f"other users can read the env file {str(where)!r} (mode "
                f"{stat.S_IMODE(st.st_mode):04o}), which sets {', '.join(secret_names[:3])}"
                f"{' and more' if len(secret_names) > 3 else ''}; make it private: chmod 600",
            )
        return values

    def job_kind(self, v: V, f: dict[str, V], inherited: set[str]) -> str | None:
        """The job's kind; kind-specific fields the job sets for another kind are issues."""
        kinds = [k for k in KINDS if k in f]
        if not kinds:
            self.add(v, "expected one of command, http or python, got none")
            return None
        if len(kinds) > 1:
            got = " and ".join(kinds)
            self.add(f[kinds[1]], f"expected exactly one of command, http or python, got {got}")
        kind = kinds[0]
        for key, kinds_ok in FOR_KINDS.items():
            if key in f and key not in inherited and kind not in kinds_ok:
                if key == "service" and f[key].value is False:
                    continue
                if key in _PROCESS_KEYS and kind == "python":
                    if "isolation" not in f or f["isolation"].value != "process":
                        self.add(f[key], _PROCESS_KEYS[key])
                    continue
                noun = " or ".join(kinds_ok)
                self.add(
                    f[key], f"expected {key} only on {noun} jobs, got it on {_KIND_NOUN[kind]}"
                )
        return kind

    def job_options(
        self, job: V, f: dict[str, V], kind: str | None, inherited: set[str]
    ) -> dict[str, Any] | None:
        """``JobSpec`` fields but name and depends_on; None when one of them is bad.

        ``job`` holds the job's own fields and those it inherits (``f``).
        """
        schedule = self.schedule(job, f)
        stop_signal, grace = self.job_stop(f, kind, inherited)
        # Only what the manifest sets: every default is the spec's own.
        options: dict[str, Any] = {
            "schedule": schedule,
            "work": self.work(job, f, kind, stop_signal, grace),
        }
        if grace is not None:
            options["grace"] = grace
        if "retry" in f:
            options["retry"] = self.retry(f["retry"], kind)
        if "notify" in f:
            options["notify"] = read_notify(self, f["notify"]) or BAD
        for key, read in (
            ("breaker", self.breaker),
            ("ready", lambda v: self.ready(v, None if "placement" in f else options["work"])),
            ("placement", self.placement),
            ("give_up_on", self.give_up_on),
            ("autostart", self.flag),
        ):
            if key in f:
                options[key] = read(f[key])
        if "restart" in f:
            value = self.choice(f["restart"], [r.value for r in RestartType])
            options["restart"] = RestartType(value) if isinstance(value, str) else value
        if "output" in f:
            options["output"] = self.output(f["output"])
        self.warn_permanent_once(f, schedule, options)
        if "ready" in f and isinstance(schedule, Schedule) and not schedule.service:
            mode = "periodic" if schedule.periodic else "once"
            at, what = f["ready"], "ready only on a service (service: true)"
            self.add(at, f"expected {what}, got it on a {mode} job")
        self.warn_never_applies(f, kind, schedule, inherited)
        return self.options_read(job, f, kind, options, stop_signal)

    def warn_never_applies(
        self, f: dict[str, V], kind: str | None, schedule: object, inherited: set[str]
    ) -> None:
        """A job's own exit rules that its kind or run mode never meets (not its defaults')."""
        if "give_up_on" in f and "give_up_on" not in inherited:
            self.warn_give_up_unmet(f["give_up_on"], kind)
        codes = "success_exit_codes"
        service = isinstance(schedule, Schedule) and schedule.service
        if service and codes in f and codes not in inherited:
            self.warn(
                f[codes],
                "expected success_exit_codes on a once or periodic job, got them on a "
                "service, whose every exit is a failure (it runs until it is stopped): they "
                "never apply; for supervisord's autorestart=unexpected, drop service: true "
                "(a once job with restart: transient, the default, is restarted after any "
                "other exit)",
            )

    def warn_give_up_unmet(self, v: V, kind: str | None) -> None:
        """A job's own ``give_up_on`` rule for what its kind never fails with: a command has
        no HTTP status, an http job no exit code (one from ``defaults`` is for every kind)."""
        entries = entries_of(v) or {}
        for key, noun, never, lacks in _GIVE_UP_UNMET:
            if key in entries and kind == never:
                self.warn(
                    entries[key],
                    f"expected give_up_on.{key} on {noun} jobs, got it on {_KIND_NOUN[kind]}, "
                    f"which has no {lacks}: it never applies",
                )

    def warn_permanent_once(
        self, f: dict[str, V], schedule: object, options: dict[str, Any]
    ) -> None:
        """A once job restarted after a success too never settles: ``run`` cannot end on it."""
        once = isinstance(schedule, Schedule) and schedule.finite and not schedule.periodic
        if once and options.get("restart") is RestartType.PERMANENT:
            name = f["name"].value if "name" in f else "this job"
            self.warn(
                f["restart"],
                f"{name} is a once job with restart: permanent, so it is restarted after it "
                "succeeds too and never settles: jobvisor run gives up on it (exit 1, with 0 "
                "failures) once its intensity is spent, or runs for ever under a larger "
                "intensity or on_exhausted: cooldown; write restart: transient (the default: "
                "restarted after a failure only) for a job that should end, or service: true "
                "for one that runs until it is stopped",
            )

    def options_read(
        self, job: V, f: dict[str, V], kind: str | None, options: dict[str, Any], stop: object
    ) -> dict[str, Any] | None:
        """``options``, or None when one is bad (the others then still checked)."""
        if any(isinstance(value, Bad) for value in options.values()):
            self.check_job_spec(job, kind, options)
            return None
        if kind == "python" and options.get("placement", "local") == "local":
            self.warn_unimportable(f["python"], options["work"].target)  # Ray's may differ
        if kind == "http":
            self.warn_repeated_post(f, options)
        return None if isinstance(stop, Bad) else options

    def warn_repeated_post(self, f: dict[str, V], options: dict[str, Any]) -> None:
        """A POST or PATCH retried on SPEC's default failures may be done twice by the server."""
        work, retry = options.get("work"), options.get("retry")
        method = getattr(work, "method", "GET")
        if method not in _NON_IDEMPOTENT or retry is None or retry.attempts < 2 or retry.on:
            return
        name = f["name"].value if "name" in f else "this job"
        self.warn(
            f["retry"] if "retry" in f else f["http"],
            f"{name} sends a {method}, which is retried on a timeout and a 5xx as every http "
            "job is (SPEC §2): the server may have acted on the try that failed, and a retry "
            "does it again (a connection dropped after the request was read too); write "
            "retry: {on: [429]} to retry only what it refused for its rate, or make the "
            "endpoint idempotent (an idempotency key)",
        )

    def job_stop(self, f: dict[str, V], kind: str | None, inherited: set[str]) -> tuple[Any, Any]:
        """A job's ``stop.signal`` and ``stop.grace``; a signal of its own only on a command."""
        stop_signal, grace = self.stop(f["stop"]) if "stop" in f else (None, None)
        if stop_signal is not None and kind not in ("command", None) and "stop" not in inherited:
            at = (entries_of(f["stop"]) or {}).get("signal", f["stop"])
            self.add(at, f"expected stop.signal only on command jobs, got it on {_KIND_NOUN[kind]}")
            stop_signal = BAD
        return stop_signal, grace

    def check_job_spec(self, job: V, kind: str | None, options: dict[str, Any]) -> None:
        """Report a job's own fields (grace, retry) though another of them could not be read."""
        work = {"work": self.stand_in_work(kind)} if isinstance(options["work"], Bad) else {}
        self.build_read(job, JobSpec, {"name": "x", **options}, stand_ins=work)

    def job_field(self, key: str, v: V) -> object:
        """Check one job field on its own (for defaults that no job inherited)."""
        job = V(Merged({key: v}), "defaults", v.line)
        restarts = [r.value for r in RestartType]
        checks: dict[str, Callable[[V], object]] = {
            "command": self.command,
            "http": lambda v: self.http_work(job, v, need_url=False),
            "python": lambda v: self.python_work(job, {key: v}),
            "args": lambda v: self.items(v, "a list of arguments"),
            "kwargs": lambda v: self.python_work(job, {"python": V("m:f", "", None), key: v}),
            "isolation": lambda v: self.python_work(job, {"python": V("m:f", "", None), key: v}),
            "cwd": lambda v: self.text(v, "a directory path"),
            "env": lambda _: self.command_work(
                job, {"command": V(["true"], "", None), key: v}, None, None
            ),
            "env_file": self.env_file_entries,
            "service": lambda _: self.schedule(job, {key: v}),
            "every": lambda _: self.schedule(job, {key: v}),
            "timeout": lambda _: self.schedule(job, {key: v}),
            "cron": lambda _: self.schedule(job, {key: v}),
            "times": lambda _: self.build(job, Schedule, every=1.0, times=self.count(v)),
            "persistent": lambda _: self.build(job, Schedule, every=1.0, persistent=self.flag(v)),
            # On a cron job: only the bounds every jitter has (``every`` adds its own).
            "jitter": lambda _: self.build(job, Schedule, cron="@daily", jitter=self.duration(v)),
            "replicas": self.replicas,
            "retry": lambda v: self.retry(v, None),
            "breaker": self.breaker,
            "restart": lambda v: self.choice(v, restarts),
            "autostart": lambda v: (
                v if isinstance(self.flag(v), bool) else self.expected(v, "true or false")
            ),
            "ready": self.ready,
            "stop": self.stop_fields,
            "placement": self.placement,
            "output": self.output,
            "notify": lambda v: read_notify(self, v),
            "user": self.run_as,
            "umask": self.umask,
            "limits": self.limits,
            "success_exit_codes": self.success_exit_codes,
            "give_up_on": self.give_up_on,
        }
        check = checks.get(key)
        return None if check is None else check(v)

    def output(self, v: V) -> OutputSpec | Bad | None:
        """``false`` (None: no output file), ``true`` (the defaults) or ``{max_bytes, backups,
        log}``."""
        what = "false, true or a mapping with max_bytes, backups and log"
        value = self.flag(v)
        if isinstance(value, bool):
            return OutputSpec() if value else None
        f = self.fields(v, OUTPUT_KEYS, what, null_ok=False)
        if f is None:
            return BAD
        readers = {"max_bytes": self.size, "backups": self.count, "log": self.flag}
        kwargs = {key: read(f[key]) for key, read in readers.items() if key in f}
        return self.build(v, OutputSpec, "output", **kwargs)

    def replicas(self, v: V) -> int | Bad:
        """The replica count: no spec holds it, so it is checked here."""
        value = self.count(v)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return self.expected(v, "a count >= 1")
        if value > MAX_REPLICAS:
            return self.expected(v, f"a count between 1 and {MAX_REPLICAS}")
        return value

    def schedule(self, job: V, f: dict[str, V]) -> Schedule | Bad:
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
        if "persistent" in f:
            kwargs["persistent"] = self.flag(f["persistent"])
        if "jitter" in f:
            kwargs["jitter"] = self.duration(f["jitter"])
        if not kwargs:
            return _ONCE
        # A refused every or cron still makes it a periodic job: its times, jitter and
        # persistent are checked as such, not as a once job's (h267).
        return self._build(job, Schedule, "", kwargs, dropped=set(), stand_ins=_PERIODIC)

    def stop(self, v: V) -> tuple[Any, Any]:
        """``stop.signal`` (a number when the name is known) and ``stop.grace`` in seconds."""
        f = self.fields(v, STOP_KEYS, "a mapping with signal and grace")
        if f is None:
            return None, BAD
        grace = self.duration(f["grace"]) if "grace" in f else None
        signum = self.signal(f["signal"]) if "signal" in f else None
        return signum, grace

    def stop_fields(self, v: V) -> object:
        signum, grace = self.stop(v)
        if grace is BAD and signum is None:
            return BAD  # not a mapping
        given: dict[str, Any] = {"argv": ("true",)}
        if grace is not None:
            given["grace"] = grace
        if signum is not None:
            given["stop_signal"] = signum
        at = V(Merged({"stop": v}), "defaults", v.line)
        cls = self.kind_class(v, "actors._command", "CommandWork", "command jobs")
        return BAD if cls is None else self.build_read(at, cls, given)

    def signal(self, v: V) -> Any:
        """The number of a signal written by name (``TERM``, ``SIGHUP``) or number (``15``,
        quoted too, as ``jobvisor signal`` takes it); anything else as it is. One that cannot
        stop a process is refused, one that does not by default warned of (h266)."""
        value = v.value
        if isinstance(value, str):
            name = value.strip().upper()
            if name.isdigit():
                value = int(name)
            else:
                name = name if name.startswith("SIG") else f"SIG{name}"
                if name in signal.Signals.__members__:
                    return self._stopping(v, signal.Signals[name])
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return self._stopping(v, signal.Signals(value))
            except ValueError:
                return value
        return value

    def _stopping(self, v: V, signum: _Signals) -> Any:
        if signum is signal.SIGSTOP:
            return self.expected(
                v,
                "a signal that asks a process to end (TERM, INT, HUP...)",
                hint=": SIGSTOP pauses a process and cannot be caught, so every stop would wait "
                "its grace and end in SIGKILL",
            )
        if signum in _NO_END_BY_DEFAULT:
            self.warn(
                v,
                f"{signum.name} does not end a process unless the program handles it (its "
                "default is to ignore it, or to pause the process): if this one does not, every "
                "stop waits its grace and ends in SIGKILL",
            )
        return signum

    def retry(self, v: V, kind: str | None) -> RetrySpec | Bad | None:
        if v.value is None:
            return None
        f = self.fields(v, RETRY_KEYS, "a mapping with attempts, wait and on")
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        if "attempts" in f:
            kwargs["attempts"] = self.count(f["attempts"])
        if "wait" in f:
            wait = self.fields(f["wait"], GROWTH_KEYS, "a mapping of wait fields")
            kwargs["wait"] = (
                BAD
                if wait is None
                else self.build(f["wait"], RetryWait, "retry.wait", **self.growth(wait))
            )
        if "on" in f:
            kwargs["on"] = self.retry_on(f["on"], kind)
        if kwargs.get("attempts") == 1 and ("on" in f or "wait" in f):
            self.warn(
                f["attempts"],
                "a retry of attempts: 1 never retries (one try, the first): its on and wait "
                "never apply; write attempts: 2 or more, or leave attempts out "
                f"({DEFAULT_ATTEMPTS} tries), or "
                "drop the retry",
            )
        # Built though a field read BAD, for the others' own reports (attempts: 0 beside a bad on).
        return self.build_read(v, RetrySpec, kwargs, "retry")

    def bare_retry_name(self, item: V) -> bool:
        """Whether ``item`` is a bare name of no builtin exception, kept as it is with a warning.

        ``retry.on: [ConfigError]`` always retried a class of that name from any module: a
        manifest written so keeps working, told how to say which class it means (a typo,
        which matches nothing, looks the same).
        """
        text = item.value
        if not isinstance(text, str) or "." in text or not text.strip().isidentifier():
            return False  # no class's name (503, exit:3): refused as give_up_on's are (h249)
        name = text.strip()
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, BaseException):
            return False
        self.warn(
            item,
            f"{name} is no builtin exception: it matches a class of any module named so, and "
            "nothing if it is misspelt; write module.Class (as give_up_on.exceptions does) to "
            "say which class, checked at validation",
        )
        return True

    def retry_on(self, v: V, kind: str | None) -> tuple[str, ...] | Bad:
        items = self.items(v, "a list of failure names", single_ok=True)
        if items is None:
            return BAD
        names: list[str] = []
        check = _http_retry_check() if kind == "http" else None
        for item in items:
            if kind == "python":
                if self.bare_retry_name(item):
                    names.append(item.value.strip())
                    continue
                # Spelled and checked as give_up_on.exceptions are, and kept as the class names
                # itself (json.decoder.JSONDecodeError), which is how a failure's names give it.
                cls = self.exception_class(item)
                if isinstance(cls, Bad):
                    return BAD
                names.append(qualified_name(cls))
                continue
            name = self.scalar_text(item, "a failure name")
            if isinstance(name, Bad):
                return BAD
            if kind == "command" and not _command_failure(name):
                return self.expected(item, "exit:N (N a number) or signal")
            if check is not None and isinstance(
                self.build(item, check, "retry.on", on=(name,)), Bad
            ):
                return BAD
            names.append(name)
        return tuple(names)

    def breaker(self, v: V) -> str | Bad:
        name = self.name(v, "a breaker name")
        if isinstance(name, Bad) or name in self.breaker_names:
            return name
        if not self.breaker_names:
            return self.expected(v, "the name of a breaker declared under breakers: (none is)")
        close = difflib.get_close_matches(name, self.breaker_names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        declared = ", ".join(self.breaker_names)
        return self.expected(v, f"the name of a declared breaker ({declared})", hint=hint)

    def depends_on(self, v: V) -> list[V]:
        items = self.items(v, "a list of sibling names", single_ok=True)
        return [i for i in items or [] if not isinstance(self.name(i, "a sibling's name"), Bad)]

    def ready(self, v: V, work: object = None) -> Any:
        """``ready:``; its command's program is warned of when it is not there, as it runs
        beside ``work`` (the job's; None: not looked for, a job run on Ray or a default)."""
        f = self.fields(
            v,
            READY_KEYS,
            "a mapping with one of tcp, http or command, and timeout",
            null_ok=False,
        )
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {key: f[key].value for key in ("tcp", "http") if key in f}
        if "command" in f:
            command = self.command(f["command"])
            if isinstance(command, Bad):
                kwargs["command"] = BAD
            else:
                argv, shell = command
                kwargs["command"] = argv if shell is None else ("/bin/sh", "-c", shell)
                if work is not None:
                    self.warn_probe_program(f["command"], command, work)
        for key in ("timeout", "interval"):
            if key in f:
                kwargs[key] = self.duration(f[key])
        cls = self.kind_class(v, "actors._ready", "ReadyProbe", "readiness probes")
        # A bad tcp is replaced, not dropped: else "exactly one of" follows from it.
        return BAD if cls is None else self.build_read(v, cls, kwargs, "ready", STAND_INS)

    def placement(self, v: V) -> Any:
        """``local``, or a ``RayPlacement``; Ray is checked against the runtime and its presence."""
        value = v.value
        if entries_of(v) is not None:
            value = self.ray_placement(v)
            if isinstance(value, Bad):
                return BAD
        elif value != "ray":
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

    def ray_placement(self, v: V) -> RayPlacement | Bad:
        """``{ray: {num_cpus, num_gpus, memory, resources, node}}``: each field at its line."""
        outer = self.fields(v, PLACEMENT_KEYS, "local, ray, or a mapping with ray", null_ok=False)
        if outer is None:
            return BAD
        if "ray" not in outer:
            if entries_of(v):  # an unknown key, reported already
                return BAD
            return self.missing(v, "ray", "the Ray settings (a mapping, may be empty)")
        ray = outer["ray"]
        f = self.fields(ray, RAY_FIELDS, "a mapping of " + ", ".join(RAY_FIELDS))
        if f is None:
            return BAD
        kwargs: dict[str, Any] = {}
        for key in ("num_cpus", "num_gpus"):
            if key in f:
                kwargs[key] = self.number(f[key])
        if "memory" in f:
            kwargs["memory"] = self.size(f["memory"])
        if "resources" in f:
            entries = self.fields_any(f["resources"], "a mapping of resource names to amounts")
            kwargs["resources"] = {
                plain(key): self.number(item) for key, item in (entries or {}).items()
            }
        if "node" in f:
            kwargs["node"] = plain(f["node"].value)
        return self.build(ray, RayPlacement, "placement.ray", **kwargs)

    def ray_available(self) -> bool:
        if self._ray is None:
            try:
                self._ray = importlib.util.find_spec("ray") is not None
            except (ImportError, ValueError):
                self._ray = False
        return self._ray


# -- helpers ---------------------------------------------------------------------------------------


# Values of a secret-looking name in an env file that are settings, not secrets: masked, each would
# hide that word in every line of every job (ENABLE_TOKEN_AUTH=true, KEY_TTL=3600).
_PLAIN_WORDS: Final = frozenset(
    {"true", "false", "yes", "no", "on", "off", "enabled", "disabled", "none", "null"}
)
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def _plain_setting(value: str) -> bool:
    """Whether an env file's value is a boolean or a number: a setting, never masked."""
    text = value.strip()
    return text.lower() in _PLAIN_WORDS or bool(_PLAIN_NUMBER.fullmatch(text))


def _command_failure(name: str) -> bool:
    """Whether ``name`` is one a command's ``retry.on`` knows (``CommandWork.retryable``)."""
    code = name.removeprefix("exit:")
    return name == "signal" or (code != name and code.lstrip("-").isdigit())


def _http_retry_check() -> Callable[..., None] | None:
    """``actors._http.check_http_retry_on`` taking ``on=``; None while the http kind is missing."""
    try:
        check = importlib.import_module("actors._http").check_http_retry_on
    except Exception:  # the http job itself reports the missing kind
        return None

    def check_on(*, on: tuple[str, ...]) -> None:
        check(on)

    return check_on


def _absolute(path: Path) -> Path:
    try:
        return path.absolute()
    except OSError:
        return path


def _without(v: V, key: str) -> tuple[V, V | None]:
    """``v`` (a mapping) without ``key``, and ``key``'s value if it had one."""
    entries = entries_of(v)
    if entries is None or key not in entries:
        return v, None
    rest = {k: item for k, item in entries.items() if k != key}
    return V(Merged(rest), v.path, v.line), entries[key]


def _own_work(options: dict[str, Any]) -> dict[str, Any]:
    work = options.get("work")
    if work is None or not dataclasses.is_dataclass(work) or isinstance(work, type):
        return options
    return {**options, "work": dataclasses.replace(work)}
