"""One call of a python job's target, as both isolations make it; run as a script, a child's main.

``isolation: thread`` calls ``call_target`` in the job actor's thread.
``isolation: process`` runs this file as a script in a new interpreter
(``python -u _python_call.py CALL RESULT``, see ``actors._isolated``): it
reads the parent's ``sys.path`` and the call from the file ``CALL``, makes
the call, writes what happened to the file ``RESULT`` and ends the process.
Run by its path, it loads no module of jobvisor (nor the ``actors``
package), so a child starts about as fast as a bare interpreter; that is why
this module imports nothing of ours, and nothing that a bare interpreter has
not loaded already but ``marshal`` (``pickle`` alone costs a child 15 ms).

The call file is ``marshal`` data: ``(sys.path, "m", (target, args, kwargs))``
when args and kwargs are plain values (what a manifest gives), else
``(sys.path, "p", PICKLE)``. A result is plain ``marshal`` data too::

    ("returned", CODE)                   CODE: an int the call returned, else None
    ("exit", CODE, SHOWN)                sys.exit(x): CODE as a process gets it, SHOWN = repr(x)
    ("raised", NAME, NAMES, TEXT, TB)    an exception: its class name, ``failure_names`` of
                                         it (for ``give_up_on`` and ``retry.on``), str(exc)
                                         and the traceback text
"""

from __future__ import annotations

import importlib
import marshal
import os
import sys

TYPE_CHECKING = False  # typing itself costs a child 16 ms: mypy alone reads the imports below
if TYPE_CHECKING:
    from typing import Any


async def _coroutine() -> None:
    pass


# types.CoroutineType, as the types module gets it, without loading that module.
_probe = _coroutine()
_CoroutineType = type(_probe)
_probe.close()
del _probe


def _generator() -> Any:
    yield None


async def _async_generator() -> Any:
    yield None


# types.GeneratorType and types.AsyncGeneratorType, likewise.
_GENERATORS = (type(_generator()), type(_async_generator()))

# What jobvisor keeps of an error's text (log, status, events, journal; per attempt): the first
# MESSAGE_MAX characters of its message and the last TRACEBACK_MAX of a child's traceback, so
# ``raise ValueError("x" * 5_000_000)`` in a crash loop does not write megabytes per restart.
MESSAGE_MAX = 8 * 1024
TRACEBACK_MAX = 64 * 1024
# CPython's sys.exit reads an int through a C long (-1 for one beyond it, so 255).
_LONG_MIN = -sys.maxsize - 1


def clip_head(text: str, limit: int = MESSAGE_MAX) -> str:
    """``text``, or its first ``limit`` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def clip_tail(text: str, limit: int = TRACEBACK_MAX) -> str:
    """``text``, or how many characters came first and its last ``limit`` characters."""
    if len(text) <= limit:
        return text
    return f"({len(text) - limit:,} more characters) ...{text[-limit:]}"


def resolve_target(target: str) -> Any:
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
    return obj


def call_target(target: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """Call ``target``; a coroutine function runs in its own event loop.

    Returns the attempt's exit code: the call's result if it is an int (not
    a bool), else None. Exceptions, ``SystemExit`` too, go to the caller.
    """
    result = resolve_target(target)(*args, **kwargs)
    if isinstance(result, _GENERATORS):
        # Called, a generator function runs none of its body: the job would "succeed" having
        # done nothing. Never started, it has nothing to clean up either.
        raise TypeError(
            f"{target} returned a generator ({type(result).__name__}), which jobvisor "
            "never iterates: none of its body ran (make the target a plain function, one "
            "that iterates the generator if that is the job)"
        )
    if isinstance(result, _CoroutineType):
        import asyncio  # noqa: PLC0415 - on first use: most jobs are not coroutines

        result = asyncio.run(result)
    return result if isinstance(result, int) and not isinstance(result, bool) else None


# The most links failure_names gives (a cause chain of thousands, a group of thousands): what
# it gives goes to the parent with every failed try, and marshal nests at most 2,000 deep.
_LINKS_MAX = 256


def failure_names(exc: BaseException) -> tuple[Any, ...]:
    """The names ``exc`` answers to (``give_up_on``, ``retry.on``), as plain data ``marshal`` sends.

    A chain: a link for ``exc``, then one for its cause and so on, as its traceback shows
    them (``__cause__``, else ``__context__`` unless ``raise ... from None`` suppressed it).
    A link is ``(NAMES, MEMBERS)``: NAMES are ``module.Class`` of each class of the exception,
    its own first (its MRO); MEMBERS the chains of an exception group's exceptions, else
    ``()``. An error that stands for one raised elsewhere (``PythonError``, ``RemoteError``)
    carries that one's chain as ``failure_names``, which ends the chain in its place.
    Made here, in a child too, so that thread, process and Ray name a failure alike.
    """
    return _chain(exc, [_LINKS_MAX])


def _chain(exc: BaseException | None, budget: list[int]) -> tuple[Any, ...]:
    links: list[Any] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and budget[0] > 0:
        seen.add(id(exc))
        carried = getattr(exc, "failure_names", None)
        if isinstance(carried, tuple):
            links.extend(carried)
            break
        budget[0] -= 1
        names = tuple(f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__)
        group = exc.exceptions if isinstance(exc, BaseExceptionGroup) else ()
        links.append((names, tuple(_chain(member, budget) for member in group[: budget[0]])))
        cause = exc.__cause__
        exc = cause if cause is not None or exc.__suppress_context__ else exc.__context__
    return tuple(links)


def exit_code(code: object) -> int:
    """The exit code of ``sys.exit(code)``, as a process gets it: 0..255 (-1 is 255).

    Never negative, which would read as "killed by signal N", in a thread as in a process.
    An int beyond a C long is 255, as the interpreter exits with it (``sys.exit(2**70)``).
    """
    if code is None:
        return 0
    if isinstance(code, int):
        if not _LONG_MIN <= code <= sys.maxsize:
            return 0xFF
        return int(code) & 0xFF  # sys.exit(False) is 0 and sys.exit(True) is 1, as for Python
    return 1


def _raised(exc: BaseException) -> tuple[Any, ...]:
    import traceback  # noqa: PLC0415 - only when a call fails

    shown = traceback.TracebackException.from_exception(exc)
    # Our own frames (the call, the import of the target) are not the user's business.
    shown.stack = traceback.StackSummary.from_list(
        [frame for frame in shown.stack if frame.filename != __file__]
    )
    _clip_messages(shown)
    text = clip_tail("".join(shown.format()).rstrip("\n"))
    try:
        message = clip_head(str(exc))
    except Exception:  # an exception whose __str__ fails still fails the call
        message = f"<unprintable {type(exc).__name__}>"
    return ("raised", type(exc).__name__, failure_names(exc), message, text)


def _clip_messages(shown: Any) -> None:
    """Cut each message a traceback ends an exception with (its causes' too), as ``clip_head``.

    Its ``_str`` is the message it formats (CPython 3.11 to 3.13); where it has none, the
    whole text is cut by its end all the same.
    """
    seen: set[int] = set()
    todo = [shown]
    while todo:
        one = todo.pop()
        if one is None or id(one) in seen:
            continue
        seen.add(id(one))
        text = getattr(one, "_str", None)
        if isinstance(text, str):
            one._str = clip_head(text)
        todo.extend((one.__cause__, one.__context__, *(getattr(one, "exceptions", None) or ())))


def _call_from(path: str) -> tuple[Any, ...]:
    """Read the call and make it; what happened, as a result record."""
    try:
        # Written by our parent into a directory only this user can enter (0700).
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
            sys.path[:], how, call = marshal.loads(file.read())  # noqa: S302 - see above
        if how == "p":
            import pickle  # noqa: PLC0415 - only for args that are not plain values

            call = pickle.loads(call)  # noqa: S301 - after sys.path: it may import the user's
        target, args, kwargs = call
        code = call_target(target, args, kwargs)
    except SystemExit as exc:
        return ("exit", exit_code(exc.code), clip_head(repr(exc.code)))
    except BaseException as exc:  # every way a call fails is reported
        return _raised(exc)
    return ("returned", code)


def main(argv: list[str]) -> None:
    """A child's main: make the call, write the result, end the process at once.

    ``os._exit``: the attempt is over once the call returns, as it is in a
    thread, so nothing the call left (threads, atexit hooks) may hold it up.
    """
    record = _call_from(argv[1])
    fd = os.open(argv[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(marshal.dumps(record))
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib would cost every child its import
            stream.flush()
        except Exception:  # noqa: S110 - a closed stream: nothing left to flush
            pass
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
