"""``defaults:`` of a manifest: which job inherits which default, and how they merge.

``defaults`` holds job fields for every job at any depth unless the job sets
them. Each key merges shallowly (the job's value replaces the default), except
``env`` and ``http.headers``, whose entries merge (the job's entry wins; other
``http`` keys merge shallowly too), and ``env_file``, whose files are read
before the job's own (``_manifest.with_env_files`` layers them). A default
applies only where it can: ``env``/``env_file``/``cwd`` to command jobs,
``args``/``kwargs`` to python jobs, ``service`` to command and python jobs,
``ready`` to services, ``stop.signal``/``user``/``umask``/``limits`` to
command jobs, a default ``command``/``http``/``python`` only to a job that
names no kind of its own, the run mode keys
(``service``/``every``/``cron``/``times``) only to a job that sets none of
``service``, ``every`` or ``cron``, and ``persistent``/``jitter`` to periodic
jobs only (whether their ``every`` or ``cron`` is their own or inherited), as
``ready`` goes to services. ``name`` and ``depends_on`` cannot be defaults.
Problems in an inherited value are reported once, at ``defaults.KEY``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from supervision._issues import Merged, unknown_key
from supervision._reader import V, entries_of, truthy

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from supervision._reader import Reader

__all__ = [
    "FOR_KINDS",
    "JOB_KEYS",
    "KINDS",
    "MODES",
    "OWN_ONLY",
    "PERIODIC",
    "TIMER_KEYS",
    "Defaults",
]

# fmt: off
KINDS: Final = ("command", "http", "python")
MODES: Final = ("service", "every", "cron")
JOB_KEYS: Final = (
    "name", *KINDS, "args", "kwargs", "cwd", "env", "env_file", "service", "every", "times", "cron",
    "persistent", "jitter", "timeout", "retry", "breaker", "restart", "autostart", "replicas",
    "depends_on", "ready", "stop", "placement", "isolation", "output", "notify", "user", "umask",
    "limits",
    "success_exit_codes", "give_up_on",
)
# fmt: on
OWN_ONLY: Final = ("name", "depends_on")
PERIODIC: Final = ("every", "cron")  # the run modes a timer's settings go with
TIMER_KEYS: Final = ("persistent", "jitter")  # a periodic job's only
FOR_KINDS: Final = {  # fields that apply to some kinds only
    "env": ("command",),
    "env_file": ("command",),
    "cwd": ("command",),
    "args": ("python",),
    "kwargs": ("python",),
    "isolation": ("python",),
    "service": ("command", "python"),
    "output": ("command", "python"),  # python: with isolation process, whose output is a command's
    "user": ("command",),
    "umask": ("command",),
    "limits": ("command",),
    "success_exit_codes": ("command",),
}


class Defaults:
    """The ``defaults`` of one manifest and which of them some job inherited."""

    def __init__(self) -> None:
        self.fields: dict[str, V] = {}
        self.used: set[str] = set()

    def read(self, reader: Reader, v: V) -> None:
        """Take the fields of ``defaults:``; other keys are issues."""
        allowed = [key for key in JOB_KEYS if key not in OWN_ONLY]
        entries = reader.fields_any(v, "a mapping of job fields shared by every job")
        for key, item in (entries or {}).items():
            if key in OWN_ONLY:
                reader.add(
                    item, f"expected job fields shared by every job, got {key} (each job's own)"
                )
            elif isinstance(key, str) and key in allowed:
                self.fields[key] = item
            else:
                values = {k: e.value for k, e in (entries or {}).items()}
                reader.add(V(key, item.path, item.line), unknown_key(key, allowed, values))

    def unused(self) -> Iterator[tuple[str, V]]:
        """The defaults no job inherited: still checked, so that no bad value goes unreported."""
        return ((key, v) for key, v in self.fields.items() if key not in self.used)

    def inherit(self, own: dict[str, V]) -> tuple[dict[str, V], set[str]]:
        """The job's fields with the defaults it inherits (see the module docstring)."""
        if not self.fields:
            return own, set()
        merged = dict(own)
        inherited: set[str] = set()
        defaults = self.fields
        own_kinds = [k for k in KINDS if k in own]
        kind = own_kinds[0] if own_kinds else next((k for k in KINDS if k in defaults), None)
        unfit = self._unfit(own, kind)
        for key, dv in defaults.items():
            if key in own:
                if key == "env":
                    merged[key] = _merge(dv, own[key])
                elif key == "http":
                    merged[key] = _merge(dv, own[key], nested=("headers",))
                else:
                    continue
                self.used.add(key)
                continue
            if key in unfit:
                continue  # unused by this job: checked alone if no job uses it
            merged[key] = dv
            inherited.add(key)
            self.used.add(key)
        service = "service" in merged and truthy(merged["service"].value)
        # A probe is a service's; a timeout, a run's that ends (on a service it is a lifetime:
        # written on the service itself, it is meant).
        for key in ("timeout",) if service else ("ready",):
            if key in inherited:
                del merged[key]
                inherited.discard(key)
        return merged, inherited

    def _unfit(self, own: dict[str, V], kind: str | None) -> set[str]:
        """The defaults a job with fields ``own`` of kind ``kind`` cannot take."""
        unfit = {key for key, kinds in FOR_KINDS.items() if kind not in kinds}
        if any(k in own for k in KINDS):
            unfit.update(KINDS)
        own_mode = any(k in own for k in MODES)
        if own_mode:
            unfit.update((*MODES, "times"))
        if not any(k in (own if own_mode else self.fields) for k in PERIODIC):
            unfit.update(TIMER_KEYS)  # not periodic, by its own mode or an inherited one
        return unfit


def _merge(default: V, own: V, nested: Sequence[str] = ()) -> V:
    """``own`` over ``default``, entry by entry (``nested`` keys merge one level deeper)."""
    base, top = entries_of(default), entries_of(own)
    if base is None or top is None:
        return own
    merged = dict(base)
    for key, item in top.items():
        merged[key] = _merge(base[key], item) if key in nested and key in base else item
    return V(Merged(merged), own.path, own.line)
