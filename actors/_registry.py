"""pykka's actor registry, as jobvisor's restarts use it: no list scan, no eager log line.

Every incarnation registers its ``ActorRef`` and unregisters it when it ends.
pykka keeps the refs in a list, so each unregister scans every live actor (about
23 µs per restart in a tree of 1,000), and each register, unregister and stop
formats a debug line with an f-string before the logger is asked whether it
wants it. Here the registry's container is a dict keyed by ref (an ``ActorRef``
compares and hashes by identity) that still answers every list operation
pykka's own ``ActorRegistry`` methods use, so ``get_all``, ``get_by_class``,
``get_by_urn``, ``broadcast`` and ``stop_all`` work as they did, in start order.
``register`` and ``unregister`` below do pykka's work under pykka's lock,
without the log line. Written against pykka 4.x (pinned below 5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from pykka import ActorRegistry

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pykka import ActorRef

__all__ = ["register", "unregister"]


class _Refs:
    """The live refs in registration order: what pykka's list did, without its scans."""

    __slots__ = ("_refs",)

    def __init__(self, refs: list[ActorRef[Any]]) -> None:
        self._refs: dict[ActorRef[Any], None] = dict.fromkeys(refs)

    def append(self, ref: ActorRef[Any]) -> None:
        self._refs[ref] = None

    def remove(self, ref: ActorRef[Any]) -> None:
        try:
            del self._refs[ref]
        except KeyError:
            raise ValueError(f"{ref!r} is not registered") from None

    def __contains__(self, ref: object) -> bool:
        return ref in self._refs

    def __iter__(self) -> Iterator[ActorRef[Any]]:
        return iter(self._refs)

    def __reversed__(self) -> Iterator[ActorRef[Any]]:
        return reversed(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    @overload
    def __getitem__(self, index: int) -> ActorRef[Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[ActorRef[Any]]: ...

    def __getitem__(self, index: int | slice) -> ActorRef[Any] | list[ActorRef[Any]]:
        return list(self._refs)[index]

    def __repr__(self) -> str:
        return repr(list(self._refs))


def _install() -> _Refs:
    with ActorRegistry._actor_refs_lock:
        found: Any = ActorRegistry._actor_refs
        if isinstance(found, _Refs):
            return found
        refs = _Refs(list(found))
        ActorRegistry._actor_refs = refs  # type: ignore[assignment]
        return refs


_install()
_LOCK = ActorRegistry._actor_refs_lock


def register(ref: ActorRef[Any]) -> None:
    """``ActorRegistry.register`` without its debug line."""
    with _LOCK:
        refs: Any = ActorRegistry._actor_refs
        if type(refs) is _Refs:
            refs._refs[ref] = None
        else:  # somebody put a list back (a test resetting pykka): take it over again
            _install()._refs[ref] = None


def unregister(ref: ActorRef[Any]) -> None:
    """``ActorRegistry.unregister`` without its scan and its debug line; twice is fine."""
    with _LOCK:
        refs: Any = ActorRegistry._actor_refs
        if type(refs) is _Refs:
            refs._refs.pop(ref, None)
        elif ref in refs:
            refs.remove(ref)
