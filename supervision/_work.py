"""The three job kinds' fields in a manifest: ``command``, ``http`` and ``python``.

Each becomes its kind's work spec (``CommandWork``, ``HttpWork``,
``PythonWork``), built from the fields the manifest sets; the kinds are
imported when a manifest names them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import itertools
import os
import re
import shlex
import shutil
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from actors import PythonWork
from actors._env import JobEnv
from actors._python import ISOLATIONS
from supervision._envfile import loose_dir
from supervision._issues import HoldsSecret, ShellText
from supervision._reader import BAD, Bad, Reader, V, entries_of, plain

__all__ = ["STAND_INS", "WorkReader"]

# fmt: off
HTTP_KEYS: Final = (
    "method", "url", "headers", "params", "json", "body", "timeout", "expect_status",
)
# fmt: on
_HTTP_PLAIN: Final = ("url", "method", "json", "body")  # passed to the spec as written
LIMIT_KEYS: Final = ("nofile", "nproc", "memory", "cpu", "core")
USER_KEYS: Final = ("name", "group")
GIVE_UP_KEYS: Final = ("exit_codes", "exceptions", "http_status")
_SYS_PATH: Final = threading.Lock()  # one import beside a manifest at a time
_UMASK: Final = re.compile(r"\s*0?[0-7]{1,3}\s*")
# A secret in argv works, but every local user can read it:
_ARGV_WARNING: Final = (
    "a secret in a command's argv can be read by every local user (ps, /proc/PID/cmdline); "
    "pass it in env: instead"
)


# A shell command string gets a ${secret:...} (or a ${NAME} holding a quote, ';', '$'...) as
# shell text: the value is run as shell, and its pieces reach the log unmasked.
_SHELL_SECRET_WARNING: Final = (
    _ARGV_WARNING.removesuffix("; pass it in env: instead")
    + "; in a shell command string its value also becomes shell text (its quotes, ';' or "
    "'$' are run by the shell, and pieces of it reach the log unmasked): pass it in env: "
    '(env: {KEY: "${secret:KEY}"}) and write "$KEY" in the command instead'
)


def _shell_text_warning(names: tuple[str, ...]) -> str:
    shown = ", ".join(f"${{{name}}}" for name in names)
    one = len(names) == 1
    return (
        f"the value of {shown} holds characters a shell reads as its own (a quote, ';', '$'...) "
        f"where {'it stands' if one else 'they stand'} in this shell command string: "
        f"{'it becomes' if one else 'they become'} shell text and {'runs' if one else 'run'} "
        f"as such; pass {'it' if one else 'them'} in env: (env: {{{names[0]}: "
        f'"${{{names[0]}}}"}}) and write "${names[0]}" in the command instead'
    )


_SHELLS: Final = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"})

# What fails when a command's program is not there now: (one not on PATH, a path that is not
# an executable file).
JOB_FAILS: Final = (
    "the job fails when it starts (exit 127) unless it is installed by then",
    "the job fails when it starts (exit 126 or 127) unless it is made one by then",
)
PROBE_FAILS: Final = (
    "the readiness check fails, and so does the service's start, unless it is installed by then",
    "the readiness check fails, and so does the service's start, unless it is made one by then",
)
# The first word of a command string that a shell runs itself, not as a program found on PATH:
# its builtins and keywords (sh's, dash's and bash's).
# fmt: off
_SHELL_OWN: Final = frozenset({
    "!", "{", "}", "[[", "]]", "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for",
    "function", "if", "in", "select", "then", "time", "until", "while", ".", ":", "[", "alias",
    "bg", "break", "builtin", "caller", "cd", "command", "compgen", "complete", "continue",
    "declare", "dirs", "disown", "echo", "enable", "eval", "exit", "export", "false", "fc", "fg",
    "getopts", "hash", "help", "history", "jobs", "kill", "let", "local", "logout", "mapfile",
    "newgrp", "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly", "return", "set",
    "shift", "shopt", "source", "suspend", "test", "times", "trap", "true", "type", "typeset",
    "ulimit", "umask", "unalias", "unset", "wait",
})
# fmt: on
# Shell syntax in the first word that this check does not follow: an assignment (A=b cmd),
# an expansion ($X, `cmd`, ~, a glob, {a,b}), history's and negation's '!'.
_UNFOLLOWED: Final = re.compile(r"[$`=*?\[{}!]|^~")
_SHELL_PUNCTUATION: Final = frozenset("();<>|&")


def shell_program(script: str) -> str | None:
    """The program a shell command string runs first, when a plain word names it: ``./sync.sh``
    of ``"./sync.sh --x"``; ``exec``'s word after it. None when the check cannot tell: shell
    syntax before that word (an assignment, an expansion, a redirection, a subshell or group,
    a function definition), a builtin or keyword (``cd``, ``if``, ``.``), or a quote left open.
    A wrapper that is a program (``env``, ``sudo``, ``nice``) is the program looked for: what
    it runs is found through its own rules (sudo's secure_path), not followed here.
    """
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # sh starts a comment only at a word's start (./run#1.sh is a name)
    try:
        words = list(itertools.islice(lexer, 3))
    except ValueError:  # a quote left open: the shell refuses the string itself
        return None
    if words[:1] == ["exec"]:
        words = words[1:]  # exec runs its word as the program (exec's options not followed)
    if not words:
        return None
    first, after = words[0], words[1] if len(words) > 1 else ""
    if (
        not first
        or set(first) <= _SHELL_PUNCTUATION
        or first.startswith(("-", "#"))  # an option, or a comment first: not followed
        or _UNFOLLOWED.search(first)
        or first in _SHELL_OWN
        or after.startswith("(")  # f() { ...; }: a function defined
        or (first.isdigit() and after[:1] in ("<", ">"))  # 2>err cmd: a redirection first
    ):
        return None
    return first


def _shell_script(argv: list[Any]) -> int | None:
    """The index of the script in ``[sh, -c, SCRIPT, ...]`` (``bash -ec``, ``-o pipefail``
    before it too): a string a shell reads, as a command string is; None for other argv."""
    if not argv or Path(str(argv[0])).name not in _SHELLS:
        return None
    told_c = takes_value = False
    for i, arg in enumerate(map(str, argv[1:]), 1):
        if takes_value:
            takes_value = False
        elif arg[:1] in ("-", "+") and arg not in ("-", "--"):
            told_c = told_c or (arg[:1] == "-" and not arg.startswith("--") and "c" in arg)
            takes_value = arg in ("-o", "+o", "-O", "+O")
        else:
            return i if told_c else None
    return None


# What a spec is built with, to report its other fields, when this one could not be read (a
# command's argv, an http job's url, a readiness probe's target; see Reader.build_read).
STAND_INS: Final = {
    "argv": ("true",),
    "url": "http://default.invalid/",
    "tcp": "localhost:1",
    "http": "http://default.invalid/",
    "command": ("true",),
}


class WorkReader(Reader):
    """Reads the work of a job; ``base_dir`` is where relative paths and commands start."""

    def __init__(self, file: str | None, base_dir: Path) -> None:
        super().__init__(file)
        self.base_dir = base_dir
        self.base_text = str(base_dir)
        self._classes: dict[tuple[str, str], Any] = {}
        self._importable: dict[str, bool] = {}  # top-level module names looked for
        self._missing: dict[tuple[str, str], bool] = {}  # (program, PATH or file): not there
        # Where a command's program is looked for, unless its own env sets PATH (jobvisor's
        # environment: what its commands inherit).
        self.exec_path = os.defpath

    def work(
        self, job: V, f: dict[str, V], kind: str | None, stop_signal: object, grace: object
    ) -> Any:
        match kind:
            case "command":
                return self.command_work(job, f, stop_signal, grace)
            case "http":
                return self.http_work(job, f["http"], need_url=True)
            case "python":
                return self.python_work(job, f, grace)
        return BAD

    def stand_in_work(self, kind: str | None) -> Any:
        """A valid work spec of ``kind`` (None if none), to check a job's other fields."""
        match kind:
            case "command":
                cls = self._classes.get(("actors._command", "CommandWork"))
                return None if cls is None else cls(argv=STAND_INS["argv"])
            case "http":
                cls = self._classes.get(("actors._http", "HttpWork"))
                return None if cls is None else cls(url=STAND_INS["url"])
            case "python":
                return PythonWork(target="m:f")
        return None

    def warn_unimportable(self, v: V, target: str) -> None:
        """Warn of a python target whose module cannot be found here; nothing is imported.

        Only the top-level name is looked for (beside the manifest, then on ``sys.path``):
        finding ``pkg.sub`` would run ``pkg/__init__.py``.
        """
        top = target.partition(":")[0].split(".")[0]
        found = self._importable.get(top)
        if found is None:
            try:
                found = (
                    top in sys.modules
                    or importlib.util.find_spec(top) is not None
                    or (
                        importlib.machinery.PathFinder.find_spec(top, [self.base_text]) is not None
                        and loose_dir(self.base_text) is None
                    )
                )
            except (ImportError, ValueError):
                found = True  # a name a finder cannot take: the attempt will say what is wrong
            self._importable[top] = found
        if not found:
            unsafe = loose_dir(self.base_text)
            beside = (
                f" (not looked for beside the manifest: {unsafe})" if unsafe is not None else ""
            )
            self.warn(
                v,
                "expected a module importable here (beside the manifest or on sys.path), got "
                f"{top!r} not found{beside}: the job fails when it starts unless it is installed "
                "by then",
            )

    def command_work(self, job: V, f: dict[str, V], stop_signal: object, grace: object) -> Any:
        """``CommandWork`` with only the fields the manifest sets (the rest keep its defaults)."""
        command = self.command(f["command"])
        # Like Procfile and compose tools: commands run beside the manifest unless told otherwise.
        given: dict[str, Any] = {"cwd": self.base_text}
        if "cwd" in f:
            given["cwd"] = self.directory(f["cwd"])
        if "env" in f:
            given["env"] = self.env_map(f["env"])
        for key, read in (
            ("user", self.run_as),
            ("umask", self.umask),
            ("limits", self.limits),
            ("success_exit_codes", self.success_exit_codes),
        ):
            if key in f:
                given[key] = read(f[key])
        if isinstance(command, Bad):
            given["argv"] = BAD
        else:
            argv, shell = command
            given.update({"argv": argv} if shell is None else {"shell": shell})
            if "placement" not in f:  # a Ray node has its own programs
                self.warn_unrunnable(f["command"], command, given)
        if stop_signal is not None:
            given["stop_signal"] = stop_signal
        if grace is not None:
            given["grace"] = grace
        cls = self.kind_class(f["command"], "actors._command", "CommandWork", "command jobs")
        return BAD if cls is None else self.build_read(job, cls, given, stand_ins=STAND_INS)

    def env_map(self, v: V) -> Any:
        """A job's ``env``: its entries as text, over what its env files set (``OverShared``:
        one ``SharedEnv`` for every job that names them, not read again for each)."""
        own = self.str_map(v, "a mapping of environment variables")
        shared = getattr(v.value, "shared", None)
        return own if shared is None or isinstance(own, Bad) else JobEnv(shared, own)

    def warn_unrunnable(
        self,
        v: V,
        command: tuple[tuple[str, ...], str | None],
        given: dict[str, Any],
        fails: tuple[str, str] = JOB_FAILS,
    ) -> None:
        """Warn of a command (read by ``command``) whose program is not there now: an argv's
        first item, a command string's first word when a plain one names it (``shell_program``).
        ``given`` holds the ``cwd`` and ``env`` it runs with (none: beside the manifest, with
        jobvisor's PATH); ``fails`` says what fails then."""
        argv, shell = command
        program = argv[0] if shell is None else shell_program(shell)
        if program is not None:
            self.warn_missing_program(v, program, given, fails)

    def warn_probe_program(
        self, v: V, command: tuple[tuple[str, ...], str | None], work: object
    ) -> None:
        """Warn of a readiness check's program that is not there now. A command job's check
        runs as its command does (``ReadyProbe.beside``: the job's cwd and env); another's
        beside the manifest with jobvisor's PATH. ``work`` read ``BAD``: not looked for."""
        if isinstance(work, Bad):
            return
        given: dict[str, Any] = {}
        if getattr(work, "confinement", None) is not None:
            given = {"cwd": getattr(work, "cwd", None), "env": getattr(work, "env", {})}
        self.warn_unrunnable(v, command, given, PROBE_FAILS)

    def warn_missing_program(
        self, v: V, program: str, given: dict[str, Any], fails: tuple[str, str] = JOB_FAILS
    ) -> None:
        """Warn of a program that is not there now: the job would fail at its start."""
        env, cwd = given.get("env"), given.get("cwd")
        if "/" in program:
            where = str(Path(cwd if isinstance(cwd, str) else self.base_text, program))
        else:
            where = env["PATH"] if isinstance(env, Mapping) and "PATH" in env else self.exec_path
        # Looked for once per program and place: 10,000 jobs of one program were 10,000 searches.
        missing = self._missing.get((program, where))
        if missing is None:
            missing = self._missing[program, where] = (
                not (os.path.isfile(where) and os.access(where, os.X_OK))  # noqa: PTH113
                if "/" in program
                else shutil.which(program, path=where) is None
            )
        if not missing:
            return
        # An argv's program is its first item; a command string is one value.
        items = self.items(v, "a list") if isinstance(v.value, list) else None
        at = items[0] if items else v
        if "/" in program:
            self.warn(
                at, f"expected an executable file, got {where!r}, which is not one now: {fails[1]}"
            )
        else:
            self.warn(
                at,
                f"expected a program on PATH, got {program!r}, which is not found now: {fails[0]}",
            )

    def directory(self, v: V) -> str | Bad:
        """A job's ``cwd``: resolved beside the manifest; warned of when it is not a directory."""
        cwd = self.text(v, "a directory path")
        if isinstance(cwd, Bad):
            return cwd
        cwd = str(self.base_dir / Path(cwd).expanduser())
        if not Path(cwd).is_dir():  # a warning: an earlier job may make it
            self.warn(
                v,
                f"expected a directory, got {cwd!r}, which is not one now: the job fails when "
                "it starts unless it is made by then",
            )
        return cwd

    # -- exit classification (SPEC §10) -----------------------------------------------------------

    def success_exit_codes(self, v: V) -> tuple[Any, ...] | Bad:
        """``success_exit_codes: [0, 2]``: the codes are ``CommandWork``'s to judge."""
        items = self.items(v, "an exit code 0..255 or a list of them", single_ok=True)
        return BAD if items is None else tuple(plain(item.value) for item in items)

    def give_up_on(self, v: V) -> Any:
        """``give_up_on: {exit_codes, exceptions, http_status}``: a ``GiveUpOn``, judged by it."""
        f = self.fields(v, GIVE_UP_KEYS, "a mapping with exit_codes, exceptions or http_status")
        if f is None:
            return BAD
        given: dict[str, Any] = {}
        for key, what in (("exit_codes", "an exit code 0..255"), ("http_status", "a status")):
            if key in f:
                items = self.items(f[key], f"{what} or a list of them", single_ok=True)
                given[key] = BAD if items is None else tuple(plain(i.value) for i in items)
        if "exceptions" in f:
            what = "an exception class as module.Class or a list of them"
            items = self.items(f["exceptions"], what, single_ok=True)
            classes = [self.exception_class(item) for item in items or ()]
            bad = items is None or any(isinstance(c, Bad) for c in classes)
            given["exceptions"] = BAD if bad else tuple(classes)
        if any(isinstance(value, Bad) for value in given.values()):
            return BAD
        from supervision._exits import GiveUpOn  # noqa: PLC0415 - most manifests have none

        return self.build(v, GiveUpOn, "give_up_on", **given)

    def import_beside(self, module: str) -> Any:
        """Import ``module`` as a ``python:`` job's is found: on ``sys.path``, else beside the
        manifest (whose directory goes on ``sys.path`` only when the tree is composed)."""
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module.split(".", maxsplit=1)[0] or self.base_text in sys.path:
                raise
        unsafe = loose_dir(self.base_text)
        if unsafe is not None:  # not looked in, as a tree's start does not (_modules_beside)
            raise ModuleNotFoundError(
                f"No module named {module!r} (not looked for beside the manifest, in "
                f"{self.base_text}: {unsafe})",
                name=module,
            )
        with _SYS_PATH:  # looked in for this import only: loading a manifest changes nothing
            sys.path.insert(0, self.base_text)
            try:
                return importlib.import_module(module)
            finally:
                with contextlib.suppress(ValueError):
                    sys.path.remove(self.base_text)

    def exception_class(self, v: V) -> Any:
        """``module.Class`` (a bare name is a builtin), imported now so a typo fails validation."""
        text = v.value
        if not isinstance(text, str) or not text.strip():
            return self.expected(v, "an exception class as module.Class")
        module, _, name = text.strip().rpartition(".")
        try:
            cls = getattr(self.import_beside(module or "builtins"), name)
        except Exception as exc:
            why = f"importing it failed: {type(exc).__name__}: {exc}"
            if not module:  # a typo of a builtin, or a class of one's own without its module
                why = "a bare name is a builtin exception, and there is none of that name: a "
                why += "class of your own is written module.Class"
            what = "an importable exception class as module.Class"
            return self.expected(v, what, hint=f" ({why})")
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            return self.expected(v, "an exception class as module.Class")
        return cls

    # -- a command's user, umask and limits (SPEC §10) --------------------------------------------

    def run_as(self, v: V) -> Any:
        """``user: NAME`` or ``user: {name: NAME, group: GROUP}``: a ``RunAs``, judged by it."""
        given: dict[str, Any]
        if entries_of(v) is None:
            given = {"name": plain(v.value)}
        else:
            f = self.fields(v, USER_KEYS, "a user name, or a mapping with name and group")
            if f is None:
                return BAD
            if "name" not in f:
                return self.missing(v, "name", "the name of the user to run as")
            given = {key: plain(item.value) for key, item in f.items()}
        cls = self.kind_class(v, "actors._confine", "RunAs", "command jobs")
        return BAD if cls is None else self.build(v, cls, "user", **given)

    def umask(self, v: V) -> int | Bad:
        """``umask: "027"``: octal text (an unquoted ``027`` would be YAML's number 23)."""
        value = v.value
        if isinstance(value, str) and _UMASK.fullmatch(value):
            return int(value, 8)
        quote = isinstance(value, int) and not isinstance(value, bool)
        hint = " (quote it: YAML reads an unquoted 027 as the number 23)" if quote else ""
        return self.expected(v, 'an octal umask in quotes, like "027"', hint=hint)

    def limits(self, v: V) -> Any:
        """``limits: {nofile, nproc, memory, cpu, core}``: a ``Limits``, judged by it."""
        what = "a mapping of " + ", ".join(LIMIT_KEYS)
        f = self.fields(v, LIMIT_KEYS, what, null_ok=False)
        if f is None:
            return BAD
        cls = self.kind_class(v, "actors._confine", "Limits", "command jobs")
        if cls is None:
            return BAD
        unlimited = importlib.import_module("actors._confine").UNLIMITED
        given: dict[str, Any] = {}
        for key, item in f.items():
            if isinstance(item.value, str) and item.value.strip().lower() == "unlimited":
                given[key] = unlimited
            elif key == "cpu":
                given[key] = self.duration(item)
            elif key in ("memory", "core"):
                given[key] = self.size(item)
            else:
                given[key] = self.count(item)
        return self.build(v, cls, "limits", **given)

    def python_work(self, job: V, f: dict[str, V], grace: object = None) -> PythonWork | Bad:
        args = self.items(f["args"], "a list of arguments") if "args" in f else []
        kwargs = self.kwargs(f["kwargs"]) if "kwargs" in f else {}
        given: dict[str, Any] = {}
        if "isolation" in f:
            given["isolation"] = self.choice(f["isolation"], ISOLATIONS)
        if given.get("isolation") == "process":
            if grace is not None:
                given["grace"] = grace  # a process-isolated try is stopped like a command
            # Its own directory and environment, as a command's (a thread shares jobvisor's:
            # the manifest refuses them there).
            if "cwd" in f:
                given["cwd"] = self.directory(f["cwd"])
            if "env" in f:
                given["env"] = self.env_map(f["env"])
        if args is None or any(isinstance(v, Bad) for v in (kwargs, *given.values())):
            return BAD
        target = f["python"].value if "python" in f else "m:f"
        arguments = tuple(plain(a.value) for a in args)
        return self.build(job, PythonWork, target=target, args=arguments, kwargs=kwargs, **given)

    def kind_class(self, v: V, module: str, name: str, what: str) -> Any:
        if (module, name) in self._classes:  # asked once per job: big manifests have 10,000
            return self._classes[module, name]
        try:
            cls = getattr(importlib.import_module(module), name)
        except Exception as exc:
            self.add(
                v,
                f"expected {what} to be available ({module}.{name}), got "
                f"{type(exc).__name__}: {exc})",
            )
            return None
        self._classes[module, name] = cls
        return cls

    def command(self, v: V) -> tuple[tuple[str, ...], str | None] | Bad:
        """``(argv, None)`` for a list, ``((), shell)`` for a string; warns of a secret in argv
        and of a value that becomes shell text (see ``warn_argv``)."""
        value = v.value
        what = "a list of argv strings or a shell command string"
        if isinstance(value, str):
            if not value.strip() or "\0" in value:
                return self.expected(v, what)
            self.warn_argv(v, in_shell=True)
            return (), str(value)
        items = self.items(v, what)
        if items is None:
            return BAD
        if not items:
            return self.expected(v, "a non-empty list of argv strings")
        argv = [self.scalar_text(item, "an argv string") for item in items]
        if any(isinstance(arg, Bad) for arg in argv):
            return BAD
        script = _shell_script(argv)
        for i, item in enumerate(items):
            self.warn_argv(item, in_shell=i == script)
        return tuple(str(arg) for arg in argv), None

    def warn_argv(self, v: V, *, in_shell: bool) -> None:
        """Warn of a secret in argv, and of a value that becomes shell text ``in_shell`` (a
        command string, an ``sh -c`` script): what it references, not a word it shares."""
        if isinstance(v.value, HoldsSecret):
            self.warn(v, _SHELL_SECRET_WARNING if in_shell else _ARGV_WARNING)
        elif isinstance(v.value, ShellText) and in_shell:
            self.warn(v, _shell_text_warning(v.value.names))

    def warn(self, at: V, message: str) -> None:
        self._warn_at(at.path, at.line, message)

    def kwargs(self, v: V) -> dict[Any, Any] | Bad:
        """The keyword arguments as plain data; their names are the python spec's to check."""
        entries = self.fields_any(v, "a mapping of keyword arguments")
        if entries is None:
            return BAD
        return {key: plain(item.value) for key, item in entries.items()}

    def http_work(self, job: V, v: V, *, need_url: bool) -> Any:
        f = self.fields(v, HTTP_KEYS, "a mapping with url and other request fields", null_ok=False)
        if f is None:
            return BAD
        out: dict[str, Any] = {key: plain(f[key].value) for key in _HTTP_PLAIN if key in f}
        if "url" not in f:
            # A default's other fields are checked on their own, with a stand-in url.
            out["url"] = (
                self.missing(v, "url", "an http:// or https:// URL")
                if need_url
                else STAND_INS["url"]
            )
        for key, what in (("headers", "headers"), ("params", "query parameters")):
            if key in f:
                out[key] = self.str_map(f[key], f"a mapping of {what}")
        if "headers" in f:
            # A redirect to another host drops these (requests drops only Authorization).
            entries = entries_of(f["headers"]) or {}
            out["secret_headers"] = tuple(
                str(name) for name, item in entries.items() if isinstance(item.value, HoldsSecret)
            )
        if "timeout" in f:
            out["timeout"] = self.duration(f["timeout"])
        if "expect_status" in f:
            items = self.items(
                f["expect_status"], "a status 100..599 or a list of them", single_ok=True
            )
            out["expect_status"] = BAD if items is None else tuple(item.value for item in items)
        cls = self.kind_class(v, "actors._http", "HttpWork", "http jobs")
        return BAD if cls is None else self.build_read(job, cls, out, stand_ins=STAND_INS)
