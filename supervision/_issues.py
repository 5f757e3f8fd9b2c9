"""What the manifest loader reports: ``Issue``, ``ManifestError``, and values shown without secrets.

Every module of the loader (YAML reading, ``${NAME}`` resolution, the schema
walk) reports through these, so a problem reads the same wherever it is found
and a secret's value never appears in it.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from actors import SpecError
from actors._checks import a_kind
from supervision import _theirs
from supervision._secrets import SecretMasker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "Issue",
    "ManifestError",
    "Merged",
    "Secret",
    "ShellText",
    "Text",
    "join",
    "mask",
    "migrant_choice",
    "show",
    "unknown_key",
]

TEXT_NAME: Final = "<manifest>"  # the file name issues show for manifest text
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_PLAIN_KEYS: set[str] = set()  # keys known to match _PLAIN_KEY


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

    def __init__(
        self, issues: Iterable[Issue], file: str | None = None, warnings: Iterable[Issue] = ()
    ) -> None:
        self.issues: tuple[Issue, ...] = tuple(issues)
        self.file = file
        # What would have been warned of, had the manifest loaded (not part of the message).
        self.warnings: tuple[Issue, ...] = tuple(warnings)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.issues, self.file, self.warnings))


class Merged:
    """A mapping made of entries from ``defaults`` and from a job, each with its own place."""

    __slots__ = ("entries",)

    def __init__(self, entries: dict[Any, Any]) -> None:
        self.entries = entries


class Text(str):
    """A string that came out of ``${NAME}`` interpolation."""

    __slots__ = ()


class ShellText(Text):
    """Interpolated text where a ``${NAME}``'s value holds what a shell reads as its own
    syntax where it stands (a quote, ``;``, ``$``, a backquote...): ``names`` says whose.

    Harmless but in a shell command string, where that value becomes shell text.
    """

    # No __slots__: an instance keeps its names. Rare (most values are plain words), so
    # their __dict__ costs a big manifest nothing.
    names: tuple[str, ...] = ()


class HoldsSecret(Text):
    """A string with a secret's value in it (``--key=${secret:NAME}``)."""

    __slots__ = ()


class Secret(HoldsSecret):
    """A secret's value: shown as ``***`` everywhere."""

    __slots__ = ()


def join(path: str, key: object) -> str:
    """The path of entry ``key`` under ``path``: ``jobs[0].env.PATH``, ``headers['X A']``."""
    if isinstance(key, str) and (key in _PLAIN_KEYS or _plain_key(key)):
        return f"{path}.{key}" if path else key
    return f"{path}[{show(key)}]"


def _plain_key(key: str) -> bool:
    # Big manifests repeat a few keys (name, command) tens of thousands of times.
    plain = bool(_PLAIN_KEY.fullmatch(key))
    if plain and len(_PLAIN_KEYS) < 10_000:
        _PLAIN_KEYS.add(key)
    return plain


def show(value: object) -> str:  # noqa: PLR0911 - one return per kind of value reads best
    """The actual value for a message: short, YAML-spelled, and never a secret."""
    if isinstance(value, Secret):
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
        # One that holds a secret is shown whole: cut short, a piece of it escapes masking.
        whole = len(value) <= 60 or isinstance(value, HoldsSecret)
        return repr(value if whole else value[:57] + "...")
    if isinstance(value, dict | Merged):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list | tuple):
        return "a list" if value else "an empty list"
    if isinstance(value, bytes):
        return "binary data"
    return a_kind(value)


# supervisord's and systemd's words for a job's fields, as people migrating write them.
_SUPERVISOR_FIELD: Final = "a supervisor's (a group's, or the root's under supervisor:)"
_POLICY_HINT: Final = (
    "backoff and intensity belong to a supervisor: put the job in a group (group: NAME, with "
    "backoff: and jobs: [the job]), or set the root's under supervisor:"
)
_OUTPUT_WORD: Final = (
    "output: {max_bytes: 10MiB, backups: ...} (both streams go to STATE_DIR/output/PATH.log; "
    "supervisord's 1MB is 1MiB; jobvisor's 1MB is 1,000,000 bytes: write 1MiB)"
)
_REPLICAS_WORD: Final = "replicas: N (named NAME.0, NAME.1, ...)"
_DEPENDS_WORD: Final = "depends_on: [db] (it starts after what it names, and stops before it)"
_JOB_WORDS: Final = {
    "autorestart": "restart: permanent (supervisord's true), transient (unexpected, the "
    "default) or temporary (false)",
    "startretries": "intensity: {max_restarts: N, within: ...}, "
    + _SUPERVISOR_FIELD
    + ", which counts every restart within that much run time, not only starts that died "
    "before startsecs: supervisord restarts a program that was up for ever, so keep within "
    "near N x startsecs (startretries=3 with startsecs=1: within: 3s), or set on_exhausted: "
    "cooldown",
    "startsecs": "ready: a probe that says when a service is up ({tcp: ...}, {http: ...} or "
    "{command: [...]}); being ready does not clear the restarts counted (they leave the "
    "intensity's window after its within)",
    "exitcodes": "success_exit_codes",
    "stopsignal": "stop: {signal: TERM}",
    "stopwaitsecs": "stop: {grace: 10s}",
    "directory": "cwd",
    "environment": "env",
    "environmentfile": "env_file: PATH (a leading '-' for one that may be missing, as "
    "systemd's), or a list of them",
    "envfile": "env_file",
    "numprocs": _REPLICAS_WORD,
    "process_name": _REPLICAS_WORD,
    "priority": "the order of the jobs list (they start in order) and depends_on",
    "stdout_logfile": _OUTPUT_WORD,
    "stderr_logfile": _OUTPUT_WORD,
    "stdout_logfile_maxbytes": _OUTPUT_WORD,
    "stdout_logfile_backups": _OUTPUT_WORD,
    "stderr_logfile_maxbytes": _OUTPUT_WORD,
    "stderr_logfile_backups": _OUTPUT_WORD,
    "redirect_stderr": "output: (both streams go to one file, each line says which)",
    "execstart": "command",
    "workingdirectory": "cwd",
    "restartsec": "backoff: {initial: 2s}, " + _SUPERVISOR_FIELD,
    "timeoutstopsec": "stop: {grace: 10s}",
    "killsignal": "stop: {signal: TERM}",
    "successexitstatus": "success_exit_codes",
    "oncalendar": 'cron: "m h dom mon dow"',
    "randomizeddelaysec": "jitter: 5m (on an every: or cron: job)",
    "timeoutstartsec": "ready: {..., timeout: 90s} (how long a service may take to be ready)",
    "runtimemaxsec": "timeout: 1h (the longest a run may last: it is stopped then, a failure)",
    "limitnofile": "limits: {nofile: 65536}",
    "limitnproc": "limits: {nproc: 512}",
    "limitcore": "limits: {core: 0}",
    "limitcpu": "limits: {cpu: 1h}",
    "requires": _DEPENDS_WORD,
    "after": _DEPENDS_WORD,
    "wants": _DEPENDS_WORD,
    "bindsto": _DEPENDS_WORD,
    "startlimitburst": "intensity: {max_restarts: 4, within: 10s}, " + _SUPERVISOR_FIELD,
    "startlimitintervalsec": "intensity: {max_restarts: 4, within: 10s}, " + _SUPERVISOR_FIELD,
    "type": "service: true for a program that runs until stopped (Type=simple, exec or "
    "notify; a forking one must stay in the foreground), nothing for one that ends "
    "(Type=oneshot)",
}
# The words above that show a value: how theirs reads, and the example it replaces.
_THEIR_VALUES: Final[dict[str, tuple[Callable[[object], str | None], str]]] = {
    "startretries": (_theirs.count, "N"),
    "stopsignal": (_theirs.signal_name, "TERM"),
    "stopwaitsecs": (_theirs.span, "10s"),
    "restartsec": (_theirs.span, "2s"),
    "timeoutstopsec": (_theirs.span, "10s"),
    "killsignal": (_theirs.signal_name, "TERM"),
    "randomizeddelaysec": (_theirs.span, "5m"),
    "timeoutstartsec": (_theirs.span, "90s"),
    "runtimemaxsec": (_theirs.span, "1h"),
    "limitnofile": (_theirs.limit, "65536"),
    "limitnproc": (_theirs.limit, "512"),
    "limitcore": (_theirs.limit_size, "0"),
    "limitcpu": (_theirs.limit_duration, "1h"),
}
# systemd's rate limit is two keys, one intensity: each key's hint shows both, or the default.
_RATE_LIMIT: Final = {
    "StartLimitBurst": (_theirs.count, "5"),
    "StartLimitIntervalSec": (_theirs.positive_span, "10s"),
}
_RATE_LIMIT_WORDS: Final = frozenset(name.lower() for name in _RATE_LIMIT)
# Theirs with no word here: what jobvisor does instead.
_GROUP_KILL: Final = (
    "not needed: jobvisor always signals a command's whole process group (its stop signal, "
    "then SIGKILL after stop.grace); a process that calls setsid leaves it"
)
_EXEC_STEPS: Final = (
    'not supported: for a step before every start, command: "prep && exec main"; for a '
    "one-time step, a once job that this one depends_on; nothing runs after a stop"
)
_NO_WORDS: Final = {
    "killmode": _GROUP_KILL,
    "stopasgroup": _GROUP_KILL,
    "killasgroup": _GROUP_KILL,
    "execstartpre": _EXEC_STEPS,
    "execstartpost": _EXEC_STEPS,
    "execstoppost": _EXEC_STEPS,
    "execstop": "not supported: a stop is a signal, stop: {signal: TERM, grace: 10s}",
    "execreload": "not supported: `jobvisor signal HUP PATH` sends the job a signal",
}
_POLICY_WORDS: Final = frozenset({"backoff", "intensity", "on_exhausted", "cooldown", "strategy"})
# ``restart:`` as systemd's Restart= and supervisord's autorestart= spell it.
_RESTART_CHOICES: Final = ("permanent", "transient", "temporary")
_RESTART_KEYS: Final = frozenset({"restart", "autorestart"})
_RESTART_WORDS: Final = {
    True: "supervisord's autorestart=true, systemd's Restart=always, is restart: permanent",
    False: "supervisord's autorestart=false, systemd's Restart=no, is restart: temporary",
    "always": "systemd's Restart=always is restart: permanent",
    "on-failure": "systemd's Restart=on-failure is restart: transient, the default",
    "on-abnormal": "systemd's Restart=on-abnormal is near restart: transient, the default",
    "no": "systemd's Restart=no is restart: temporary",
    "true": "supervisord's autorestart=true is restart: permanent",
    "false": "supervisord's autorestart=false is restart: temporary",
    "unexpected": "supervisord's autorestart=unexpected is restart: transient, the default, "
    "with its exitcodes as success_exit_codes",
}


def migrant_choice(value: object, choices: Sequence[str]) -> str | None:
    """What jobvisor calls ``value``, a choice written in systemd's or supervisord's words."""
    if tuple(choices) != _RESTART_CHOICES:
        return None
    if isinstance(value, str):
        value = value.strip().lower()
    elif not isinstance(value, bool):
        return None
    return _RESTART_WORDS.get(value)


def unknown_key(
    key: object, allowed: Sequence[str], values: Mapping[object, object] | None = None
) -> str:
    """The message for a key that is not one of ``allowed``, with the closest one if any.

    On a job (``allowed`` holds ``success_exit_codes``), supervisord's and systemd's words
    and a supervisor's fields are told where jobvisor has them; ``values``, the mapping's
    entries, gives the word the value written where it translates.
    """
    if isinstance(key, str) and "success_exit_codes" in allowed:
        if key.lower() in _RESTART_KEYS and values is not None:
            # Their value told in jobvisor's word at once: a capital's "did you mean" alone
            # led to a second error, the value's (h264).
            said = migrant_choice(values.get(key), _RESTART_CHOICES)
            if said is not None:
                return f"unknown key {show(key)}; {said}"
        if key in _POLICY_WORDS:
            return f"unknown key {show(key)}; {_POLICY_HINT}"
        word = _JOB_WORDS.get(key.lower())
        if word is not None:
            if values is not None:
                word = _with_their_value(key, word, values)
            return f"unknown key {show(key)}; jobvisor's word is {word}"
        instead = _NO_WORDS.get(key.lower())
        if instead is not None:
            return f"unknown key {show(key)}; {instead}"
    close = _closest(key, allowed) if isinstance(key, str) else []
    if close:
        return f"unknown key {show(key)}; did you mean {close[0]!r}?"
    return f"unknown key {show(key)}; expected one of: {', '.join(allowed)}"


def _with_their_value(key: str, word: str, values: Mapping[object, object]) -> str:
    """``word`` showing the value written for ``key`` in jobvisor's spelling, where it has one.

    Its fixed example stays for a value that does not translate, and for a secret's.
    """
    if key.lower() in _RATE_LIMIT_WORDS:
        return _rate_limit(values) or word + _AN_EXAMPLE
    read, example = _THEIR_VALUES.get(key.lower(), (None, ""))
    if read is None:
        return word
    value = values.get(key)
    theirs = _their_value(value, read)
    if theirs is None:  # the example is not taken for the value written (h264)
        return word if value is None else word + _AN_EXAMPLE
    return word.replace(example, theirs, 1)


_AN_EXAMPLE: Final = " (its value here is an example: the one written does not translate)"


def _their_value(value: object, read: Callable[[object], str | None]) -> str | None:
    return None if isinstance(value, HoldsSecret) else read(value)


def _rate_limit(values: Mapping[object, object]) -> str | None:
    """systemd's StartLimitBurst= and StartLimitIntervalSec= as one intensity, a default for
    one not written; None if one written does not translate."""
    shown: list[str] = []
    defaults: list[str] = []
    for name, (read, default) in _RATE_LIMIT.items():
        written = [v for k, v in values.items() if isinstance(k, str) and k.lower() == name.lower()]
        if not written:
            shown.append(default)
            defaults.append(f"{default}: systemd's default {name}")
            continue
        theirs = _their_value(written[0], read)
        if theirs is None:
            return None
        shown.append(theirs)
    burst, interval = shown
    restarts = int(burst) - 1  # systemd counts every start, the first one too
    if restarts < 0:
        return None
    defaults.append(f"StartLimitBurst={burst} counts the first start too: {restarts} restarts")
    note = f" ({'; '.join(defaults)})"
    return f"intensity: {{max_restarts: {restarts}, within: {interval}}}{note}, {_SUPERVISOR_FIELD}"


def _closest(key: str, allowed: Sequence[str]) -> list[str]:
    """The allowed key most like ``key``; of two as like it, the one it starts like.

    ``retries`` is as like ``times`` as ``retry`` by difflib's measure.
    """
    close = difflib.get_close_matches(key, allowed, n=3)

    def likeness(name: str) -> tuple[float, int]:
        same = difflib.SequenceMatcher(None, key, name).ratio()
        pairs = zip(key, name, strict=False)  # up to the shorter one
        prefix = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(key), len(name)))
        return round(same, 6), prefix

    return sorted(close, key=likeness, reverse=True)[:1]


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret, in every quoted and escaped form, replaced by ``***``."""
    secrets = frozenset(secrets)
    text = _masker(secrets).mask(text)
    # Values too short for the masker to hide everywhere are still hidden where they appear
    # whole: not inside a word (`TK=ab` made "read***le" of every "readable", h251).
    for secret in sorted(secrets, key=len, reverse=True):
        if not secret:
            continue
        if SecretMasker.maskable(secret):
            text = text.replace(secret, "***")
        else:
            whole = rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])"
            text = re.sub(whole, "***", text)
    return text


@functools.lru_cache(maxsize=4)
def _masker(secrets: frozenset[str]) -> SecretMasker:
    # one per manifest, not one per message: a masker compiles a pattern of every form
    return SecretMasker(secrets)
