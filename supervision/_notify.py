"""``notify:`` of a manifest: who hears of which events, as frozen specs and their reader.

A notification is a command (the event as JSON on its stdin) or an HTTP
POST (the event as the JSON body), for the events it names in ``on``. Top
level ones hear of every job (and of the tree itself); a job's own add to
them for that job. Delivering them is ``supervision._notifier``'s work, off
every supervisor's path.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from actors._checks import (
    SOCKET_MAX_DURATION,
    check_map,
    need,
    need_count,
    need_duration,
)
from supervision._reader import BAD, Bad

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from supervision._reader import V
    from supervision._work import WorkReader

__all__ = ["DAMPED", "NOTIFY_KEYS", "HttpTarget", "NotifyEvent", "NotifySpec", "read_notify"]


class NotifyEvent(enum.StrEnum):
    """What a notification can be sent for."""

    GAVE_UP = "gave_up"  # a child gave up (path "" : the tree's budget gave up the tree)
    ESCALATED = "escalated"
    FAILED = "failed"  # failed finally (temporary, not restarted, a dependency failed)
    COOLDOWN = "cooldown"  # a child, a group or the tree started cooling down
    BREAKER_OPENED = "breaker_opened"
    BREAKER_CLOSED = "breaker_closed"
    RESTARTED = "restarted"  # a restart was scheduled
    SUCCEEDED = "succeeded"
    # One of the failures above that this notification sent is over (the notifier's rule).
    RECOVERED = "recovered"


EVENTS: Final = ", ".join(e.value for e in NotifyEvent)
NOTIFY_KEYS: Final = ("name", "on", "command", "http", "timeout", "retry", "damp")
# The events a loop repeats, told at most once per job per ``damp``: a crash loop's restarts.
DAMPED: Final = frozenset({NotifyEvent.RESTARTED})
DAMP: Final = 60.0
NOTIFY_HTTP_KEYS: Final = ("url", "headers")
URL_EXPECTED: Final = (
    "an http:// or https:// URL with a host and no spaces or control characters "
    "(percent-encode them: %20)"
)
# What fails when a notifier's program is not there now (see WorkReader.warn_unrunnable).
_NOTIFIER_FAILS: Final = (
    "every notification it is to send fails unless it is installed by then",
    "every notification it is to send fails unless it is made one by then",
)
# Whitespace and control characters: an HTTP client refuses them in the request line.
_NOT_IN_URL: Final = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


def _is_url(url: object) -> bool:
    """Whether ``url`` is an http(s) URL with a host that can be sent as it is written."""
    if not isinstance(url, str) or _NOT_IN_URL.search(url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpTarget:
    """Where an HTTP notification POSTs its JSON: ``url`` with extra ``headers``."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The manifest reader shows a secret URL as ***, whatever is wrong with it.
        need(_is_url(self.url), "http.url", URL_EXPECTED, self.url)
        check_map("headers", self.headers, header=True)  # as an http job's


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifySpec:
    """One notification: for the events ``on``, run ``command`` or POST to ``http``.

    Each delivery gets ``timeout`` seconds per try and ``retry`` more tries.
    A ``DAMPED`` event is sent at most once per job per ``damp`` seconds (0: each one).
    ``name`` is what logs and the journal call it (default: the command or URL).
    """

    on: tuple[NotifyEvent, ...]
    command: tuple[str, ...] | None = None
    http: HttpTarget | None = None
    timeout: float = 10.0
    retry: int = 2
    name: str = ""
    damp: float = DAMP

    def __post_init__(self) -> None:
        ok = isinstance(self.on, tuple) and bool(self.on)
        need(
            ok and all(isinstance(e, NotifyEvent) for e in self.on),
            "on",
            f"a list of {EVENTS}",
            self.on,
        )
        need(
            (self.command is None) != (self.http is None),
            "command",
            "exactly one of command or http",
            "both" if self.command is not None else "neither",
        )
        if self.command is not None:
            ok = isinstance(self.command, tuple) and bool(self.command)
            need(
                ok and all(isinstance(a, str) for a in self.command),
                "command",
                "a non-empty argv list",
                self.command,
            )
        need_duration(self.timeout, "timeout", positive=True, longest=SOCKET_MAX_DURATION)
        need_count(self.retry, "retry", 0)
        need_duration(self.damp, "damp")
        need(isinstance(self.name, str), "name", "a string", self.name)

    @property
    def label(self) -> str:
        """How logs name it."""
        if self.name:
            return self.name
        return self.command[0] if self.command else self.http.url if self.http else "notify"


def read_notify(reader: WorkReader, v: V) -> tuple[NotifySpec, ...] | None:
    """The notifications of a ``notify:`` list; None if one of them is bad (issues added)."""
    items = reader.items(v, "a list of notifications (each with on and command or http)")
    if items is None:
        return None
    specs: list[NotifySpec] = []
    bad = False
    names: dict[str, V] = {}  # where each name is first given
    for item in items:
        spec = _read_one(reader, item, names)
        if spec is None:
            bad = True
        else:
            specs.append(spec)
    return None if bad else tuple(specs)


def _read_one(reader: WorkReader, v: V, names: dict[str, V]) -> NotifySpec | None:
    """One notification; None if it is bad (every problem of it added, a name given twice
    in one list too: metrics and logs know a notification by its name)."""
    f = reader.fields(v, NOTIFY_KEYS, "a mapping with on and command or http", null_ok=False)
    if f is None:
        return None
    kwargs: dict[str, Any] = {}
    if "on" not in f:
        kwargs["on"] = reader.missing(v, "on", f"a list of {EVENTS}")
    else:
        kwargs["on"] = _events(reader, f["on"])
    if "command" in f:
        command = reader.command(f["command"])
        if not isinstance(command, Bad):  # run beside the manifest, with jobvisor's PATH
            reader.warn_unrunnable(f["command"], command, {}, _NOTIFIER_FAILS)
        kwargs["command"] = (
            command
            if isinstance(command, Bad)
            else command[0]
            or (
                "/bin/sh",
                "-c",
                str(command[1]),
            )
        )
    if "http" in f:
        kwargs["http"] = _http(reader, f["http"])
    plain: dict[str, Callable[[V], Any]] = {
        "timeout": reader.duration,
        "retry": reader.count,
        "damp": reader.duration,
        "name": lambda name: reader.text(name, "a name for logs"),
    }
    kwargs.update((key, read(f[key])) for key, read in plain.items() if key in f)
    name = kwargs.get("name")
    if isinstance(name, str):
        first = names.setdefault(name, f["name"])
        if first is not f["name"]:
            at = f" at line {first.line}" if first.line is not None else ""
            kwargs["name"] = reader.expected(
                f["name"],
                "a name no other notification here has",
                hint=f" (already used by {first.path}{at})",
            )
    # Built with what was read well, the rest standing in: its other problems are said too.
    spec = reader.build_read(v, NotifySpec, kwargs, stand_ins=_STAND_INS)
    return None if isinstance(spec, Bad) else spec


# What a field that read badly is built with, so that the others are checked: never run.
_STAND_INS: Final[dict[str, Any]] = {
    "on": (NotifyEvent.FAILED,),
    "command": ("true",),
    "http": HttpTarget(url="http://stand.in/"),
}


def _events(reader: WorkReader, v: V) -> tuple[NotifyEvent, ...] | Bad:
    events = reader.items(v, f"a list of {EVENTS}", single_ok=True)
    if events is None:
        return BAD
    chosen = [reader.choice(e, [n.value for n in NotifyEvent]) for e in events]
    if any(isinstance(c, Bad) for c in chosen):
        return BAD
    return tuple(NotifyEvent(str(c)) for c in chosen)


def _http(reader: WorkReader, v: V) -> HttpTarget | Bad:
    h = reader.fields(v, NOTIFY_HTTP_KEYS, "a mapping with url and headers", null_ok=False)
    if h is None:
        return BAD
    if "url" not in h:
        return reader.missing(v, "url", "an http:// or https:// URL")
    target: dict[str, Any] = {"url": h["url"].value}
    if "headers" in h:
        target["headers"] = reader.str_map(h["headers"], "a mapping of headers")
        if isinstance(target["headers"], Bad):
            return BAD
    return reader.build(v, HttpTarget, "http", **target)
