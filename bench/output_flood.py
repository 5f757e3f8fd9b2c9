"""A command flooding its stdout: the attempt's time with its output file against without.

The command writes ``--mib`` MiB of 64-byte lines as fast as the pipe takes
them (``yes`` through ``head``). **Without** (the floor): ``CommandWork.run``
with no output file and the log off (every jobvisor logger disabled, as in
every benchmark). **log: false**: the same attempt with the job's output file
(``supervision._output``, default sizes: 10 MiB, 3 backups, so the flood
rotates the file), written in a temporary directory, the log off.
**Default**: the output file with ``log: true``, and the log on as ``jobvisor
run --log-file`` has it (information, to a file in the temporary directory):
the job's first 1,000 lines and 100 a second go into it, the rest is counted
and said (``LogBudget``). Each default attempt has a new budget, as a job's
first flood does. Rounds alternate the three; figures are medians of
wall-clock seconds per attempt, and of the process's CPU seconds (the pump's
and the log's threads together) for the default against ``log: false``.

``--dir`` chooses where the files go (default: the temporary directory):
``/dev/shm`` (tmpfs) shows what the writing costs the pump itself; on a disk,
a long flood also meets the kernel's dirty-page throttling, which holds any
writer of that many bytes to the disk's speed.

    python bench/output_flood.py [--runtime threads|gevent] [--mib 64] [--rounds 7] [--dir D]
        [--unbudgeted]
"""

from __future__ import annotations

from _common import install, runtime_from_argv

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import LogSwitch, add_runtime_arg, machine, median, silence_logs, verdict  # noqa: E402

from actors import Attempt  # noqa: E402
from actors._command import CommandWork  # noqa: E402
from supervision import _output  # noqa: E402
from supervision._logging import LoggingSetup, configure_logging  # noqa: E402
from supervision._output import OutputFiles  # noqa: E402
from supervision._spec import LoggingSpec, OutputSpec  # noqa: E402

TARGET = 1.25  # the flood with its output file at most 1.25x the time without
LOGGED_TARGET = 2.0  # the default (log on) at most 2x the CPU of log: false (fix43e)
LINE = "x" * 63  # 64 bytes with its newline


def attempt_seconds(
    work: CommandWork, files: OutputFiles | None, spec: OutputSpec | None = None
) -> tuple[float, float]:
    """The attempt's wall-clock and CPU seconds (the process's: pump and log alike)."""
    output = files.opener(spec or OutputSpec()) if files is not None else None
    attempt = Attempt("flood", 1, time.time(), output=output)
    began, cpu = time.perf_counter(), time.process_time()
    work.run(attempt)
    return time.perf_counter() - began, time.process_time() - cpu


class _LogOn:
    """``jobvisor run --log-file`` 's log, on for the default rounds only."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.switch = LogSwitch()  # its loggers: every jobvisor Logger
        self.switch.off()
        self.setup: LoggingSetup | None = None

    def __enter__(self) -> None:
        for logger in self.switch._loggers:
            logger.disabled = False
        self.setup = configure_logging(LoggingSpec(level="information"), file=str(self.file))

    def __exit__(self, *exc: object) -> None:
        if self.setup is not None:
            self.setup.close()
        self.switch.off()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_runtime_arg(parser)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default=None, help="where the output files go")
    parser.add_argument(
        "--unbudgeted",
        action="store_true",
        help="every line into the log, as before fix43e (about 60 us a line: use a small --mib)",
    )
    args = parser.parse_args()
    if args.unbudgeted:
        _output.LOG_BURST = 2**62  # read at each take: the bucket never runs dry
    silence_logs()
    lines = args.mib * 1024 * 1024 // 64
    work = CommandWork(shell=f"yes {LINE} | head -n {lines}")
    quiet = OutputSpec(log=False)
    floor: list[float] = []
    unlogged: list[tuple[float, float]] = []
    logged: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        out = Path(tmp) / "output"
        log_on = _LogOn(Path(tmp) / "jobvisor.log")
        attempt_seconds(work, OutputFiles(out), quiet)  # warm-up: imports, the first file
        for _ in range(args.rounds):
            floor.append(attempt_seconds(work, None)[0])
            unlogged.append(attempt_seconds(work, OutputFiles(out), quiet))
            with log_on:  # a new OutputFiles: the job's first flood, its budget whole
                logged.append(attempt_seconds(work, OutputFiles(out)))
        written = sum(p.stat().st_size for p in out.iterdir())
        log_lines = sum(1 for _ in log_on.file.open("rb")) // args.rounds
    wall_floor = median(floor)
    wall_quiet = median([w for w, _ in unlogged])
    wall_logged = median([w for w, _ in logged])
    cpu_quiet = median([c for _, c in unlogged])
    cpu_logged = median([c for _, c in logged])
    ratio = wall_quiet / wall_floor
    print(machine(), f"runtime {RUNTIME}, files in {args.dir or tempfile.gettempdir()}")
    print(f"{args.mib} MiB in {lines} lines of 64 bytes, {args.rounds} rounds")
    print(f"without an output file, log off (floor): {wall_floor * 1000:.0f} ms per attempt")
    print(
        f"its output file, log: false:  {wall_quiet * 1000:.0f} ms, {cpu_quiet * 1000:.0f} ms CPU "
        f"per attempt ({written / 2**20:.1f} MiB on disk after rotation)"
    )
    print(
        f"its output file, log on:      {wall_logged * 1000:.0f} ms, {cpu_logged * 1000:.0f} ms "
        f"CPU per attempt ({log_lines} lines in the log each)"
    )
    print(f"log: false / floor: {ratio:.2f}x wall, {verdict(ratio, TARGET)}")
    print(f"log on / floor: {wall_logged / wall_floor:.2f}x wall")
    cpu_ratio = cpu_logged / cpu_quiet
    print(
        f"log on / log: false: {wall_logged / wall_quiet:.2f}x wall, {cpu_ratio:.2f}x CPU, "
        f"{verdict(cpu_ratio, LOGGED_TARGET)}"
    )


if __name__ == "__main__":
    main()
