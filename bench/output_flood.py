"""A command flooding its stdout: the attempt's time with its output file against without.

The command writes ``--mib`` MiB of 64-byte lines as fast as the pipe takes
them (``yes`` through ``head``). **Without**: ``CommandWork.run`` with no
output file (the lines only go to the log, which is off here, as in every
benchmark). **With**: the same attempt with the job's output file
(``supervision._output``, default ``output:``: 10 MiB, 3 backups, so the
flood rotates the file), written in a temporary directory. Rounds
alternate the two; figures are medians of wall-clock seconds per attempt.

``--dir`` chooses where the files go (default: the temporary directory):
``/dev/shm`` (tmpfs) shows what the writing costs the pump itself; on a disk,
a long flood also meets the kernel's dirty-page throttling, which holds any
writer of that many bytes to the disk's speed.

    python bench/output_flood.py [--runtime threads|gevent] [--mib 64] [--rounds 7] [--dir D]
"""

from __future__ import annotations

from _common import install, runtime_from_argv

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import add_runtime_arg, machine, median, silence_logs, verdict  # noqa: E402

from actors import Attempt  # noqa: E402
from actors._command import CommandWork  # noqa: E402
from supervision._output import OutputFiles  # noqa: E402
from supervision._spec import OutputSpec  # noqa: E402

TARGET = 1.25  # the flood with its output file at most 1.25x the time without
LINE = "x" * 63  # 64 bytes with its newline


def attempt_seconds(work: CommandWork, files: OutputFiles | None) -> float:
    output = files.opener(OutputSpec()) if files is not None else None
    attempt = Attempt("flood", 1, time.time(), output=output)
    began = time.perf_counter()
    work.run(attempt)
    if output is not None:
        output.close()  # as its job does when no attempt follows at once
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_runtime_arg(parser)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default=None, help="where the output files go")
    args = parser.parse_args()
    silence_logs()
    lines = args.mib * 1024 * 1024 // 64
    work = CommandWork(shell=f"yes {LINE} | head -n {lines}")
    without: list[float] = []
    with_file: list[float] = []
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        files = OutputFiles(Path(tmp) / "output")
        attempt_seconds(work, files)  # warm-up: imports, the first file and directory
        for _ in range(args.rounds):
            a = attempt_seconds(work, None)
            b = attempt_seconds(work, files)
            without.append(a)
            with_file.append(b)
            ratios.append(b / a)
        written = sum(p.stat().st_size for p in (Path(tmp) / "output").iterdir())
    ratio = median(with_file) / median(without)
    print(machine(), f"runtime {RUNTIME}, files in {args.dir or tempfile.gettempdir()}")
    print(f"{args.mib} MiB in {lines} lines of 64 bytes, {args.rounds} rounds")
    print(f"without an output file: {median(without) * 1000:.0f} ms per attempt")
    print(
        f"with its output file:   {median(with_file) * 1000:.0f} ms per attempt "
        f"({written / 2**20:.1f} MiB on disk after rotation)"
    )
    print(f"ratio {ratio:.2f}x (median of rounds {median(ratios):.2f}x), {verdict(ratio, TARGET)}")


if __name__ == "__main__":
    main()
