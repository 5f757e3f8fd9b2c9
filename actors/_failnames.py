"""A python job's failure by the names of its classes: ``give_up_on.exceptions`` and ``retry.on``.

One matcher for every python failure: raised in the job actor's thread, in a
child process (``PythonError``) or on a Ray node (``RemoteError``), where
the classes may not even import here. Each is read as
``actors._python_call.failure_names`` gives it: its classes' ``module.Class``
names, its cause chain's and, for an exception group, its exceptions'.

A wanted name is ``module.Class`` as the class names itself
(``qualified_name``: ``builtins.KeyError``, ``json.decoder.JSONDecodeError``)
and matches an exception of that class or a subclass; a bare name (no dot)
matches any class of that name, as ``retry.on`` always did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors._python_call import failure_names

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["every_part", "first_match", "qualified_name"]


def qualified_name(cls: type) -> str:
    """``module.Class`` of ``cls``, as ``failure_names`` gives it."""
    return f"{cls.__module__}.{cls.__qualname__}"


def first_match(error: BaseException, wanted: Collection[str]) -> tuple[str, str] | None:
    """``(class name, wanted name)`` of the first exception of ``error`` that is one wanted.

    Looked for along the cause chain, and into an exception group's exceptions
    (their causes too): one of them suffices, as one ``except*`` clause catches
    its part of a group. The group's own classes count as well.
    """
    return _first(failure_names(error), tuple(wanted))


def every_part(error: BaseException, wanted: Collection[str]) -> bool:
    """Whether ``error`` is one wanted, an exception group only when each of its exceptions is.

    An exception of the group that is none of ``wanted`` would escape an
    ``except*`` of them: the group is retried only when nothing would.
    Along the cause chain as ``first_match``.
    """
    return _every(failure_names(error), tuple(wanted))


def _meets(names: tuple[str, ...], want: str) -> bool:
    if "." in want:
        return want in names
    return any(name.rpartition(".")[2] == want for name in names)


def _first(chain: tuple[Any, ...], wanted: tuple[str, ...]) -> tuple[str, str] | None:
    for names, members in chain:
        for want in wanted:
            if _meets(names, want):
                return names[0].rpartition(".")[2], want
        for member in members:
            found = _first(member, wanted)
            if found is not None:
                return found
    return None


def _every(chain: tuple[Any, ...], wanted: tuple[str, ...]) -> bool:
    for names, members in chain:
        if any(_meets(names, want) for want in wanted):
            return True
        if members and all(_every(member, wanted) for member in members):
            return True
    return False
