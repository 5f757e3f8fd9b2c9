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
    ("raised", NAME, NAMES, TEXT, TB, CAUSE)
                                         an exception: its class name, ``failure_names`` of
                                         it (for ``give_up_on`` and ``retry.on``), str(exc),
                                         the traceback text ("" if it has nothing but its
                                         message) and its ``__cause__`` as ``Type: message``
                                         ("" if none)
"""

from __future__ import annotations

import _thread
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
    imported = module_name in sys.modules
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, sys.intern(part))  # interned: no new string per attempt
        except AttributeError:
            said = f"{target}: module {module_name!r} has no {attr_path!r}"
            hint = _imported_before(obj, imported, part) or _close_to(obj, part, imported)
            raise AttributeError(said + hint) from None
    if not callable(obj):
        kind = type(obj).__name__
        article = "an" if kind[:1].lower() in "aeio" else "a"  # an int, a float
        raise TypeError(f"{target} is {article} {kind}, not a function")
    return obj


def _imported_before(module: Any, imported: bool, name: str) -> str:
    """Why a name added to a module's file since is not there: the module was imported
    before, once in this process, and is not imported again (a daemon's reload adds a job
    naming a function its file has now, and the job failed with "has no ..."). Said only
    when its file defines ``name`` now: a typo's file never did (h249)."""
    where = getattr(module, "__file__", None) if imported else None
    if not where or name not in _file_names(where):
        return ""
    return _IMPORTED_BEFORE.format(where=where)


_IMPORTED_BEFORE = (
    " (it was imported from {where} before, and a module is imported once in a "
    "process: to run what its file holds now, restart jobvisor, or give the job "
    "isolation: process, whose every attempt imports it anew)"
)


def _close_to(obj: Any, name: str, imported: bool) -> str:
    """`` (did you mean 'show'?)`` when ``obj`` has a public name close to ``name``, or its
    file defines one now (then why it is not there yet is said too)."""
    import difflib  # noqa: PLC0415 - only when a name is missing

    try:
        names = {each for each in dir(obj) if not each.startswith("_")}
    except Exception:  # a module whose __dir__ raises: no suggestion
        return ""
    where = getattr(obj, "__file__", None)
    in_file = _file_names(where) if isinstance(where, str) else frozenset()
    close = difflib.get_close_matches(name, sorted(names | in_file), n=1)
    if not close:
        return ""
    hint = f" (did you mean {close[0]!r}?)"
    if close[0] not in names and imported:
        hint += _IMPORTED_BEFORE.format(where=where)
    return hint


def _file_names(path: str) -> frozenset[str]:
    """The names a Python source file binds at its top level (under an ``if`` or ``try``
    too): its defs, classes, assignments and imports. Empty for anything but a ``.py`` file
    of at most 4 MiB that parses. Read on a failure only, once per version of the file."""
    try:
        st = os.stat(path)  # noqa: PTH116 - no pathlib in a child's imports
    except OSError:
        return frozenset()
    if not path.endswith(".py") or st.st_size > 4 << 20:
        return frozenset()
    key = (path, st.st_mtime_ns, st.st_size)  # a file changed is read again
    names = _NAMES.get(key)
    if names is None:
        if len(_NAMES) >= 64:
            _NAMES.clear()
        names = _NAMES[key] = _names_in(path)
    return names


# Each file's names by (path, mtime, size): a crash loop of a missing name reads it once.
_NAMES: dict[tuple[str, int, int], frozenset[str]] = {}


def _names_in(path: str) -> frozenset[str]:
    import ast  # noqa: PLC0415 - only when a name is missing

    try:
        with open(path, "rb") as file:  # noqa: PTH123
            tree = ast.parse(file.read(), path)
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    names: set[str] = set()
    body: list[Any] = list(tree.body)
    while body:
        node = body.pop()
        names.update(_bound_by(ast, node))
        if isinstance(node, ast.If | ast.Try | ast.With):
            body.extend(node.body)
            body.extend(getattr(node, "orelse", ()))
            body.extend(getattr(node, "finalbody", ()))
            for handler in getattr(node, "handlers", ()):
                body.extend(handler.body)
    return frozenset(names)


def _bound_by(ast: Any, node: Any) -> list[str]:
    """The names one top-level statement binds (none for an annotation alone)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [alias.asname or alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign) and node.value is not None:
        targets = [node.target]
    else:
        return []
    return [n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)]


def call_target(
    target: str, args: tuple[Any, ...], kwargs: dict[str, Any], cancelled: Any = None
) -> int | None:
    """Call ``target``; a coroutine function runs in its own event loop (``asyncio.run``).

    ``cancelled``: the attempt's event (``Attempt.cancelled``). Set, and ``cancel_coroutine``
    called with it, it cancels the coroutine's task: ``CancelledError`` at its await, and a
    call that lets it out returns None, as a thread job that returns once cancelled.
    ``ON_SIGTERM`` in a child process (its main thread): SIGTERM, its stop, cancels the task
    alike. None: plain ``asyncio.run``. Under the gevent runtime a coroutine function is
    refused in a thread (``TypeError``): see ``_gevent_patched``.

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
        if _gevent_patched():
            # Never started, it has nothing to clean up; closed, it warns of no "never awaited".
            result.close()
            raise TypeError(
                f"{target} is a coroutine function, which jobvisor does not run in a thread "
                "under the gevent runtime (asyncio's event loop and gevent's would share that "
                "thread): use isolation: process, or the threads runtime"
            )
        result = _run_coroutine(result, cancelled)
    return result if isinstance(result, int) and not isinstance(result, bool) else None


# ``call_target``'s ``cancelled`` in a child process: SIGTERM cancels the coroutine's task.
ON_SIGTERM = "SIGTERM"


def _run_coroutine(coro: Any, cancelled: Any) -> Any:
    """``asyncio.run(coro)``, its task cancelled once ``cancel_coroutine(cancelled)`` asks.

    asyncio.run's own cleanup follows either way: the loop's other tasks are cancelled, its
    async generators and default executor shut down, the loop closed; no thread or loop of
    a timed-out attempt runs on beside the next one (its exit is reported once the call has
    returned, or at its grace's kill: ``coroutine_running``).
    """
    import asyncio  # noqa: PLC0415 - on first use: most jobs are not coroutines

    if cancelled is None:
        return asyncio.run(coro)
    stop = _LoopStop(cancelled)
    try:
        return asyncio.run(stop.watch(coro))
    except asyncio.CancelledError:
        if not stop.sent:
            raise  # its own (a task it awaited was cancelled): the job's failure
        return None  # ended by our cancel, as a sync job that returns once cancelled


# The coroutine calls running now, by id of their attempt's ``cancelled`` (``cancel_coroutine``).
_LOOPS: dict[int, _LoopStop] = {}
_LOCK = _thread.allocate_lock()  # threading is not loaded in a bare interpreter: _thread is


class _LoopStop:
    """Cancels a running coroutine call's task from another thread, once."""

    __slots__ = ("cancelled", "loop", "sent", "task")

    def __init__(self, cancelled: Any) -> None:
        self.cancelled = cancelled
        self.loop: Any = None
        self.task: Any = None
        self.sent = False

    async def watch(self, coro: Any) -> Any:
        """Run ``coro`` in this task, reachable by ``cancel_coroutine`` while it runs."""
        import asyncio  # noqa: PLC0415 - loaded already: this runs in its loop

        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        if self.cancelled is ON_SIGTERM:
            import signal  # noqa: PLC0415 - loaded already: asyncio's loop imports it

            # Python's default would end the child at once: no CancelledError, no finally, as
            # a thread's coroutine gets. Left in place until asyncio.run closes the loop (which
            # removes it): a second SIGTERM during its cleanup cancels nothing again.
            self.loop.add_signal_handler(signal.SIGTERM, self.send)
            return await coro
        try:
            with _LOCK:
                _LOOPS[id(self.cancelled)] = self
                if self.cancelled.is_set():
                    # Set before it was registered (a stop as the attempt began): its cancel
                    # found nothing to cancel. The coroutine starts all the same, as a sync
                    # job would (seeing it set), and is cancelled at its first await.
                    self.send()
            return await coro
        finally:
            with _LOCK:
                _LOOPS.pop(id(self.cancelled), None)

    def send(self) -> None:
        """Cancel the task, once; under ``_LOCK``, while registered (or in its loop, by
        SIGTERM): its loop still runs (it closes after ``watch`` has let go of it)."""
        # Once: a stop after a timeout must not cancel the cleanup the first cancel began.
        if not self.sent:
            self.sent = True
            self.loop.call_soon_threadsafe(self.task.cancel)


def coroutine_running(cancelled: Any) -> bool:
    """Whether a coroutine call of the attempt whose event is ``cancelled`` runs now."""
    with _LOCK:
        stop = _LOOPS.get(id(cancelled))
        return stop is not None and stop.cancelled is cancelled


def cancel_coroutine(cancelled: Any) -> None:
    """Cancel the task of the coroutine call whose attempt's event is ``cancelled``, if one
    runs; from any thread, never blocks. Set ``cancelled`` first: a call that begins after
    this sees it set and cancels itself."""
    with _LOCK:
        stop = _LOOPS.get(id(cancelled))
        if stop is not None and stop.cancelled is cancelled:
            stop.send()


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


def _gevent_patched() -> bool:
    """Whether gevent patched this process's threads into greenlets (the gevent runtime).

    Its greenlets share one OS thread, and asyncio one running loop per OS thread: a
    second ``asyncio.run`` while another's loop waits failed with "cannot be called from a
    running event loop". A child process (``isolation: process``) loads no gevent.
    """
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


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


def said(exc: BaseException) -> str:
    """``exc`` as ``Type: message`` (its message cut as ``clip_head`` cuts it), or ``Type``.

    An exception whose ``__str__`` raises is still told: ``Type: <unprintable Type>``.
    """
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        return f"{name}: <unprintable {name}>"
    return f"{name}: {clip_head(text)}" if text else name


def headline(exc: BaseException) -> str:
    """``said(exc)``, naming what it was raised ``from``: ``Type: message (caused by Type: ..)``.

    The one line a failure is told in (status, history, events): an explicit cause is
    part of what went wrong; an implicit context (an error while handling another) is
    left to the traceback, where the log shows it.
    """
    cause = exc.__cause__
    return said(exc) if cause is None else f"{said(exc)} (caused by {said(cause)})"


def user_traceback(exc: BaseException) -> str | None:
    """The traceback of an exception a call of ``call_target`` raised, as a child's record has it.

    Its causes and contexts included, our own frames left out (the call, the import of the
    target and whatever called them), the messages cut as ``clip_head`` and the whole as
    ``clip_tail`` cuts them. None if ``exc`` did not come out of such a call (it was raised
    by jobvisor, or in another process) and so has nothing of the user's to show.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != __file__:
        tb = tb.tb_next
    if tb is None:
        return None
    import traceback  # noqa: PLC0415 - only when a call fails

    shown = traceback.TracebackException.from_exception(exc)
    # Our own frames (the call, the import of the target, and in a thread the job actor's
    # around them) are not the user's business: the stack starts after the last of ours.
    frames = list(shown.stack)
    ours = [i for i, frame in enumerate(frames) if frame.filename == __file__]
    shown.stack = traceback.StackSummary.from_list(frames[ours[-1] + 1 :] if ours else frames)
    if (
        not shown.stack
        and shown.__cause__ is None
        and (shown.__context__ is None or shown.__suppress_context__)
    ):
        return None  # raised by the call itself (a generator refused): its message says it all
    _clip_messages(shown)
    return clip_tail("".join(shown.format()).rstrip("\n"))


def _raised(exc: BaseException) -> tuple[Any, ...]:
    text = user_traceback(exc) or ""
    try:
        message = clip_head(str(exc))
    except Exception:  # an exception whose __str__ fails still fails the call
        message = f"<unprintable {type(exc).__name__}>"
    cause = "" if exc.__cause__ is None else said(exc.__cause__)
    return ("raised", type(exc).__name__, failure_names(exc), message, text, cause)


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
        code = call_target(target, args, kwargs, ON_SIGTERM)
    except SystemExit as exc:
        return ("exit", exit_code(exc.code), clip_head(repr(exc.code)))
    except BaseException as exc:  # every way a call fails is reported
        return _raised(exc)
    return ("returned", code)


def main(argv: list[str]) -> None:
    """A child's main: make the call, wait for its threads, write the result, end the process.

    The threads the call left running (not daemons) are waited for, as the
    interpreter's exit waits for them, within the attempt's timeout and stop
    like the call itself; then ``os._exit``: nothing else the call left (atexit
    hooks, daemon threads) may hold the attempt up.
    """
    record = _call_from(argv[1])
    _wait_for_threads()
    fd = os.open(argv[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(marshal.dumps(record))
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib would cost every child its import
            stream.flush()
        except Exception:  # noqa: S110 - a closed stream: nothing left to flush
            pass
    os._exit(0)


def _wait_for_threads() -> None:
    """Wait for the non-daemon threads still running, as Python's own exit does.

    ``threading._shutdown`` is what the interpreter runs at its exit: it runs the
    hooks of ``threading._register_atexit`` (a ``ThreadPoolExecutor`` left open
    finishes its queue and ends its workers) and joins every non-daemon thread.
    A line on stderr (the job's log) says why the attempt has not ended yet.
    """
    threading = sys.modules.get("threading")
    if threading is None:
        return  # never imported: the call started no thread Python would wait for
    main = threading.main_thread()
    left = [t.name for t in threading.enumerate() if t is not main and not t.daemon]
    if not left:
        return
    print(  # noqa: T201 - the child's stderr is the job's log
        f"jobvisor: the call ended; waiting for the thread{'s' if len(left) > 1 else ''} "
        f"it left running, as Python's exit would: {', '.join(left)}",
        file=sys.stderr,
    )
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
        return
    for thread in threading.enumerate():  # pragma: no cover - a Python without _shutdown
        if thread is not main and not thread.daemon:
            thread.join()


if __name__ == "__main__":
    main(sys.argv)
