"""Helpers shared by the benchmark scripts.

Import order matters: a script calls ``install(runtime_from_argv())`` before it
imports pykka, logbook or supervision, so that under gevent the process is
monkey-patched before anything creates a thread, a lock or a socket. This
module therefore imports nothing at the top beyond the standard library
modules that gevent's patching does not care about.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import sys
from pathlib import Path

RUNTIMES = ("threads", "gevent")

# Run from a checkout without installing: the repository root holds actors/ and supervision/.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def runtime_from_argv(argv: list[str] | None = None) -> str:
    """Read ``--runtime threads|gevent`` (or ``--runtime=...``) before anything is imported."""
    args = sys.argv[1:] if argv is None else argv
    runtime = "threads"
    for i, arg in enumerate(args):
        if arg == "--runtime" and i + 1 < len(args):
            runtime = args[i + 1]
        elif arg.startswith("--runtime="):
            runtime = arg.split("=", 1)[1]
    if runtime not in RUNTIMES:
        sys.exit(f"--runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return runtime


def install(runtime: str) -> None:
    """Prepare the process for ``runtime`` (gevent monkey-patches it); call it first."""
    from actors import install_runtime  # noqa: PLC0415 - must run before pykka is used

    install_runtime(runtime)


LOG_MODES = ("off", "null", "information")


def silence_logs(mode: str = "off") -> None:
    """Logging off for the measured runs, for both sides alike.

    ``off`` (the default, like ``--log-level none``): every logbook ``Logger``
    of jobvisor's modules is disabled, so a log call returns before a record
    is made, and a ``NullHandler`` pushed application-wide swallows anything
    else. ``null``: only the ``NullHandler``: every record is still made and
    then dropped, which shows what record creation alone costs.
    Standard logging is disabled in both modes, so pykka's own "Unhandled
    exception" error (the bare baseline logs one per crash) prints nothing.
    """
    import logging  # noqa: PLC0415

    import logbook  # noqa: PLC0415

    if mode not in LOG_MODES:
        raise ValueError(f"log mode: expected one of {LOG_MODES}, got {mode!r}")
    logbook.NullHandler().push_application()
    if mode == "information":
        # What `jobvisor run` does at its default level, with the lines going to /dev/null:
        # records made, filtered, damped, rendered and written.
        from supervision._logging import configure_logging  # noqa: PLC0415
        from supervision._spec import LoggingSpec  # noqa: PLC0415

        devnull = open(os.devnull, "w")  # noqa: SIM115, PTH123 - open until the process ends
        configure_logging(LoggingSpec(level="information"), stream=devnull)
    logging.disable(logging.CRITICAL)
    if mode == "off":
        for name, module in list(sys.modules.items()):
            if name.split(".")[0] not in ("actors", "supervision", "cli") or module is None:
                continue
            for value in vars(module).values():
                if isinstance(value, logbook.Logger):
                    value.disabled = True


class LogSwitch:
    """Turns jobvisor's logging at its default level on and off between rounds of one process.

    For ``--logging share``: the same tree runs rounds with logging off (as ``off``: every
    jobvisor ``Logger`` disabled, no setup) and rounds with ``jobvisor run``'s setup at
    information writing to /dev/null (as ``information``), so what logging adds is measured
    without the spread between processes. Call ``silence_logs("off")`` first.
    """

    def __init__(self) -> None:
        import logbook  # noqa: PLC0415

        self._loggers = [
            value
            for name, module in list(sys.modules.items())
            if name.split(".")[0] in ("actors", "supervision", "cli") and module is not None
            for value in vars(module).values()
            if isinstance(value, logbook.Logger)
        ]
        self._devnull = open(os.devnull, "w")  # noqa: SIM115, PTH123 - closed by close()
        self._setup = None

    def on(self) -> None:
        from supervision._logging import configure_logging  # noqa: PLC0415
        from supervision._spec import LoggingSpec  # noqa: PLC0415

        for logger in self._loggers:
            logger.disabled = False
        self._setup = configure_logging(LoggingSpec(level="information"), stream=self._devnull)

    def off(self) -> None:
        if self._setup is not None:
            self._setup.close()
            self._setup = None
        for logger in self._loggers:
            logger.disabled = True

    def close(self) -> None:
        self.off()
        self._devnull.close()


def add_log_arg(parser) -> None:
    parser.add_argument(
        "--logging",
        choices=LOG_MODES,
        default="off",
        help="off (default): jobvisor's loggers disabled, no record is made; "
        "null: records are made and dropped by a NullHandler; "
        "information: the default level of `jobvisor run`, written to /dev/null",
    )


def add_runtime_arg(parser) -> None:
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="threads",
        help="threads (default) or gevent (monkey-patches the process first)",
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    cpus = os.cpu_count()
    return (
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{cpus} CPUs"
    )


def verdict(ratio: float, target: float, *, higher_is_better: bool = False) -> str:
    ok = ratio >= target if higher_is_better else ratio <= target
    sign = ">=" if higher_is_better else "<="
    return f"target {sign} {target:g}x: {'met' if ok else 'MISSED'}"


def thread_cpu(pid: int | str = "self") -> dict[int, tuple[int, int]]:
    """{tid: (ns on a CPU, voluntary context switches)} of every thread of ``pid`` now.

    From ``/proc/PID/task/TID/schedstat`` (time on a CPU, user and system) and its
    ``status``; a thread that ends while it is read is left out.
    """
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ns = int((task / "schedstat").read_text().split()[0])
            status = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        found = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.MULTILINE)
        out[int(task.name)] = (ns, int(found[1]) if found else 0)
    return out


def jv_threads_alive() -> list[str]:
    """Names of jobvisor threads still alive (a benchmark must leave none)."""
    import threading  # noqa: PLC0415 - after the runtime is installed

    return [t.name for t in threading.enumerate() if t.name.startswith("jv-") and t.is_alive()]


def side_in_subprocess(
    script: str, runtime: str, kind: str, n: int, logging: str, *, timeout: float
) -> dict:
    """Run one side of ``script`` in a fresh process (no shared heap) and return its JSON line."""
    import json  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    argv = [sys.executable, script, "--runtime", runtime, "--side", kind, "--n", str(n)]
    out = subprocess.run(
        [*argv, "--logging", logging], check=True, capture_output=True, text=True, timeout=timeout
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
