"""What a reload's replace of a job changes, named by the manifest's fields (``command``,
``stop.grace``), an environment's by its variables' names: never a value, which may be a secret."""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from actors._env import JobEnv
from supervision._defaults import JOB_KEYS
from supervision._spec import JobSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from actors._env import SharedEnv
    from supervision._spec import ChildSpec

__all__ = ["EnvMemo", "changed_fields"]

# The changed variables of an env file's entries, by the ids of the old and new ``SharedEnv``:
# thousands of jobs share one, and its thousands of entries are compared once a diff.
EnvMemo: TypeAlias = dict[tuple[int, int], list[str]]

_NAMED: Final = 5  # variables named in a line, the rest counted (an env file may hold thousands)

# A job's fields by the manifest's key; "" for one told by its own fields (below).
_JOB: Final = {
    "work": "",
    "schedule": "",
    "restart": "restart",
    "grace": "stop.grace",
    "retry": "retry",
    "breaker": "breaker",
    "depends_on": "depends_on",
    "ready": "ready",
    "placement": "placement",
    "output": "output",
    "give_up_on": "give_up_on",
    "autostart": "autostart",
    "replica_of": "replicas",
}
_SCHEDULE: Final = {
    name: name for name in ("service", "every", "times", "cron", "timeout", "persistent", "jitter")
}
# The work specs a manifest makes, by module and class, their fields by the manifest's key
# ("env": by its variables). By name: the http one's module imports requests.
_WORKS: Final[dict[tuple[str, str], dict[str, str]]] = {
    ("actors._command", "CommandWork"): {
        "argv": "command",
        "shell": "command",
        "cwd": "cwd",
        "env": "env",
        "stop_signal": "stop.signal",
        "grace": "stop.grace",
        "user": "user",
        "umask": "umask",
        "limits": "limits",
        "success_exit_codes": "success_exit_codes",
    },
    ("actors._python", "PythonWork"): {
        "target": "python",
        "args": "args",
        "kwargs": "kwargs",
        "isolation": "isolation",
        "grace": "stop.grace",
        "cwd": "cwd",
        "env": "env",
    },
    ("actors._http", "HttpWork"): {
        "url": "http.url",
        "method": "http.method",
        "headers": "http.headers",
        "params": "http.params",
        "json": "http.json",
        "body": "http.body",
        "timeout": "http.timeout",
        "expect_status": "http.expect_status",
        "secret_headers": "http.headers",  # which headers hold a secret
    },
}
_ORDER: Final = {key: i for i, key in enumerate(JOB_KEYS)}
_KEY: Final = re.compile(r"[a-z_]+")  # a name's top-level key: http of http.url


def changed_fields(was: ChildSpec, new: ChildSpec, memo: EnvMemo) -> tuple[str, ...]:
    """The manifest's fields in which the job ``new`` differs from ``was``, in the manifest's
    order (``command``, ``env (MODE)``, ``stop.grace``); empty when they differ in what no
    field of a manifest says (a group become a job, an embedding's own work or actor)."""
    if not (isinstance(was, JobSpec) and isinstance(new, JobSpec)):
        return ()
    # The work first, field by field: its equality compares an env's shared entries anew
    # for each job (thousands a job, for thousands of jobs), its env's diff once for them all.
    named = _work(was.work, new.work, memo)
    if named is None:
        return ()
    for f in fields(JobSpec):
        if not f.compare or f.name in ("name", "work"):
            continue
        old, now = getattr(was, f.name), getattr(new, f.name)
        if old == now:
            continue
        key = _JOB.get(f.name)
        found = _differing(old, now, _SCHEDULE) if key == "" else key and [key]
        if not found:  # a field no manifest sets
            return ()
        named.extend(found)
    if not named:
        return ()
    # stop.grace is the job's and its work's both: said once
    unique = dict.fromkeys(named)
    return tuple(sorted(unique, key=lambda name: (_ORDER[_top(name)], name)))


def _top(name: str) -> str:
    found = _KEY.match(name)
    assert found is not None
    return found.group()


def _work(old: Any, now: Any, memo: EnvMemo) -> list[str] | None:
    """The keys of the work's fields that differ; None when one has none (an embedding's
    own work)."""
    if old is now:
        return []
    keys = _WORKS.get((type(now).__module__, type(now).__qualname__))
    if keys is None or (type(old).__module__, type(old).__qualname__) not in _WORKS:
        return None
    if type(old) is not type(now):  # command: became python: ...
        return [f"{now.kind} (was {old.kind})"]
    named: list[str] = []
    for f in fields(now):
        if not f.compare:
            continue
        key = keys.get(f.name)
        if key == "env":
            named.extend(_env(old.env, now.env, memo))
        elif getattr(old, f.name) != getattr(now, f.name):
            if key is None:
                return None
            named.append(key)
    return named


def _differing(old: Any, now: Any, keys: Mapping[str, str]) -> list[str]:
    """The keys of the fields of dataclasses ``old`` and ``now`` that differ; none when one has
    no key."""
    if type(old) is not type(now) or not is_dataclass(now):
        return []
    named: list[str] = []
    for f in fields(now):
        if f.compare and getattr(old, f.name) != getattr(now, f.name):
            if f.name not in keys:
                return []
            named.append(keys[f.name])
    return named


def _env(old: Mapping[str, str], now: Mapping[str, str], memo: EnvMemo) -> list[str]:
    """``env (NAMES)`` of the variables whose value a job's own ``env:`` changed, ``env_file
    (NAMES)`` of those only its env files set, by name alone."""
    own_old, shared_old = _parts(old)
    own_now, shared_now = _parts(now)
    own = [k for k in dict.fromkeys([*own_now, *own_old]) if old.get(k) != now.get(k)]
    files = [
        k
        for k in _shared_changes(shared_old, shared_now, memo)
        if k not in own_old and k not in own_now
    ]
    return [
        f"{key} ({_names(names)})" for key, names in (("env", own), ("env_file", files)) if names
    ]


def _parts(env: Mapping[str, str]) -> tuple[Mapping[str, str], SharedEnv | None]:
    """A job's env as its own entries and its env files' (None when it names none)."""
    return (env.own, env.shared) if isinstance(env, JobEnv) else (env, None)


def _shared_changes(old: SharedEnv | None, now: SharedEnv | None, memo: EnvMemo) -> list[str]:
    key = (id(old), id(now))
    if key not in memo:
        was = {} if old is None else JobEnv(old).whole()  # a copy in C, then compared in C
        is_ = {} if now is None else JobEnv(now).whole()
        memo[key] = (
            []
            if was == is_
            else [k for k in dict.fromkeys([*is_, *was]) if was.get(k) != is_.get(k)]
        )
    return memo[key]


def _names(names: list[str]) -> str:
    if len(names) <= _NAMED:
        return ", ".join(names)
    return f"{', '.join(names[:_NAMED])} and {len(names) - _NAMED} more"
