"""A job's environment as entries many jobs share (an env file's) under the job's own.

10,000 jobs naming one env file of 10,000 variables were 10,000 dicts of 10,000 entries,
each checked, hashed and kept (165 s and 12 GB to load): the file's entries are one
``SharedEnv``, checked once, that every ``JobEnv`` points at, with only the job's own
entries (its ``env:``) its own. Both are read-only mappings of ``str`` to ``str``; a
``JobEnv`` equals a dict of the same entries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from actors._checks import a_kind, key_field, need, need_key

__all__ = ["JobEnv", "SharedEnv", "as_dict", "check_env"]

_ENV_NAME: Final = re.compile(r"[^=\0]+")  # what execve takes as an environment name


def check_env(env: Mapping[Any, Any]) -> None:
    """``SpecError`` for an entry of ``env`` that execve cannot take, naming it, never its value
    (it may be a secret)."""
    for key, value in env.items():
        # The messages' parts only for a bad entry: an env file may give thousands of jobs
        # hundreds of entries each (their making was 2 s of a 10,000-job manifest's load).
        named = isinstance(key, str) and bool(_ENV_NAME.fullmatch(key))
        if not named:
            need_key(named, key_field("env", key), "a name like FOO_BAR", key)
        text = isinstance(value, str)
        if not text:  # never its value: it may be a secret
            need(text, key_field("env", key), "a string", value, shown=a_kind(value))


class SharedEnv(Mapping[str, str]):
    """Entries many jobs' environments share, checked once when made and never changed.

    ``memo`` keeps what is derived from the entries alone (the journal's canonical forms of
    them), made once for every job that shares them.
    """

    __slots__ = ("_entries", "memo")

    def __init__(self, entries: Mapping[str, str]) -> None:
        check_env(entries)
        self._entries: dict[str, str] = dict(entries)
        self.memo: dict[str, Any] = {}

    def __getitem__(self, key: str) -> str:
        return self._entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if isinstance(other, SharedEnv):  # a reload's new one: compared as dicts, in C
            return self._entries == other._entries
        if not isinstance(other, Mapping):
            return NotImplemented
        return len(other) == len(self) and self._entries == as_dict(other)

    __hash__ = None  # type: ignore[assignment] # as a dict's

    def __repr__(self) -> str:
        return repr(self._entries)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SharedEnv, (self._entries,))


class JobEnv(Mapping[str, str]):
    """A job's environment: its ``own`` entries (checked with its spec) over ``shared``."""

    __slots__ = ("_len", "own", "shared")

    def __init__(self, shared: SharedEnv, own: Mapping[str, str] | None = None) -> None:
        self.shared = shared
        self.own: dict[str, str] = dict(own or {})
        self._len = len(shared) + sum(1 for key in self.own if key not in shared)

    def __getitem__(self, key: str) -> str:
        own = self.own
        return own[key] if key in own else self.shared[key]

    def __contains__(self, key: object) -> bool:
        return key in self.own or key in self.shared

    def __iter__(self) -> Iterator[str]:
        own = self.own
        yield from (key for key in self.shared if key not in own)
        yield from own

    def __len__(self) -> int:
        return self._len

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(other) != len(self):  # the journal asks whether it is {}, the default, per job
            return False
        # A reload's jobs share a new SharedEnv of the same entries: equal in C, not by a copy
        # of each side per job (a reload's diff of 1,000 jobs x 10,000 entries was 6x).
        if isinstance(other, JobEnv) and other.own == self.own:
            return (
                other.shared is self.shared
                or other.shared == self.shared
                or (
                    self.whole() == other.whole()  # the same entries split another way
                )
            )
        return self.whole() == as_dict(other)

    def whole(self) -> dict[str, str]:
        """Its entries as a new dict (a copy of the shared ones too), made in C."""
        return {**self.shared._entries, **self.own}

    def update_into(self, target: dict[str, str]) -> None:
        """``target.update(self)``, in C: an update from a Mapping walks it in Python, key by
        key (a command's start with an env file of 1,000 entries: 128 -> 683 us)."""
        target.update(self.shared._entries)
        target.update(self.own)

    __hash__ = None  # type: ignore[assignment] # as a dict's

    def __repr__(self) -> str:
        return repr(dict(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (JobEnv, (self.shared, self.own))


def as_dict(env: Mapping[str, str]) -> dict[str, str]:
    """``env``'s entries as a dict: itself if it is one, else a copy made in C where it can."""
    if type(env) is dict:
        return env
    if isinstance(env, JobEnv):
        return env.whole()
    return dict(env.items())
