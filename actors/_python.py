"""The ``python`` job kind: call ``module:function`` with ``args`` and ``kwargs``."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from actors._checks import key_field, need, need_key
from actors._errors import JobFailure

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._job import Attempt

__all__ = ["PythonExit", "PythonWork", "resolve_target"]

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def resolve_target(target: str) -> Callable[..., Any]:
    """Import ``module:attr.path`` and return the callable it names.

    Raises ``ImportError``/``AttributeError``/``TypeError`` with the target in
    the message; the job actor turns them into a failed attempt.
    """
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, sys.intern(part))  # interned: no new string per attempt
        except AttributeError:
            raise AttributeError(f"{target}: module {module_name!r} has no {attr_path!r}") from None
    if not callable(obj):
        raise TypeError(f"{target} is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return]


class PythonExit(JobFailure):
    """A python job called ``sys.exit`` with a non-zero code; ``code`` is that code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.code))


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)  # sys.exit(False) is 0 and sys.exit(True) is 1, as for Python itself
    return 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonWork:
    """Call ``target`` (``"module:function"``); a coroutine function runs in its own event loop.

    The call's return value is ignored unless it is an int, which becomes the
    attempt's exit code. An exception fails the attempt.
    """

    kind: ClassVar[str] = "python"
    target: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ok = isinstance(self.target, str) and bool(_TARGET.fullmatch(self.target))
        need(ok, "python", "a target like 'package.module:function'", self.target)
        need(isinstance(self.args, list | tuple), "args", "a list of arguments", self.args)
        object.__setattr__(self, "args", tuple(self.args))
        need(
            isinstance(self.kwargs, Mapping),
            "kwargs",
            "a mapping of keyword arguments",
            self.kwargs,
        )
        for key in self.kwargs:
            ok = isinstance(key, str) and key.isidentifier()
            need_key(ok, key_field("kwargs", key), "a keyword argument name", key)

    def run(self, attempt: Attempt) -> int | None:
        del attempt
        func = resolve_target(self.target)
        try:
            result = func(*self.args, **dict(self.kwargs))
            if inspect.iscoroutine(result):
                import asyncio  # noqa: PLC0415 - on first use: most jobs are not coroutines

                result = asyncio.run(result)
        except SystemExit as exc:
            # As for a process: sys.exit(n) ends the attempt with code n, None is 0 and
            # anything else is 1. Never let it through: it would end the actor unreported.
            code = _exit_code(exc.code)
            if code == 0:
                return 0
            raise PythonExit(f"{self.target} called sys.exit({exc.code!r})", code) from None
        return result if isinstance(result, int) and not isinstance(result, bool) else None

    def cancel(self, attempt: Attempt) -> None:
        # Python code cannot be stopped from outside but by the kill at the end of
        # the grace period; cooperative code watches attempt.cancelled instead.
        del attempt

    def describe(self) -> str:
        return self.target

    def retryable(self, exc: BaseException, on: tuple[str, ...]) -> bool:
        """Any exception by default; with ``on``, only exceptions of those class names."""
        if not on:
            return True
        names = {cls.__name__ for cls in type(exc).__mro__}
        return bool(names.intersection(on))

    def retry_after(self, exc: BaseException) -> float | None:
        del exc
        return None
