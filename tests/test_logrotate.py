"""Day-2 operations on the files jobvisor writes: logrotate's ``create`` and ``copytruncate``.

Real files, a real ``logrotate`` (tests that need it are skipped without it), real daemons,
foreground and detached. Run as root, the other user is ``nobody`` (``chown``).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import logbook
import pytest
from conftest import RUNTIME
from faultkit import CLI, ENV, Jobvisor, gone, wait_until

from supervision import configure_logging
from supervision._files import UnsafePathError
from supervision._logging import LoggingSetupError, _FileSink
from supervision._spec import LoggingSpec, RotateSpec

LOGROTATE = shutil.which("logrotate") or next(
    (p for p in ("/usr/sbin/logrotate", "/sbin/logrotate") if os.access(p, os.X_OK)), None
)
needs_logrotate = pytest.mark.skipif(LOGROTATE is None, reason="logrotate is not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="plays a second user with chown")
NOBODY = 65534

CHATTY = """
version: 1
jobs:
  - name: chatty
    command: "i=0; while true; do i=$((i+1)); echo line-$i; echo $i > count; sleep 0.02; done"
    service: true
    restart: permanent
"""

LOOSER = "mode 0664 was looser than jobvisor writes (0600); made it 0600 (logrotate's create: use create 0600)"


def me() -> tuple[str, str]:
    return pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name


def logrotate(tmp_path: Path, files: list[Path], *directives: str) -> None:
    """Rotate ``files`` now (``-f``), as cron's logrotate would, with ``directives``."""
    assert LOGROTATE is not None
    conf = tmp_path / "lr.conf"
    body = "\n".join(f"    {d}" for d in ("nocompress", "missingok", *directives))
    conf.write_text(f"{' '.join(map(str, files))} {{\n{body}\n}}\n")
    out = subprocess.run(
        [LOGROTATE, "-f", str(conf), "-s", str(tmp_path / "lr.state")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def count(tmp_path: Path) -> int:
    try:
        return int((tmp_path / "count").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def lines_pass(tmp_path: Path, n: int = 20) -> None:
    """Wait until the job wrote ``n`` more lines."""
    start = count(tmp_path)
    wait_until(lambda: count(tmp_path) >= start + n, f"{n} more lines of chatty")


@contextlib.contextmanager
def detached(tmp_path: Path, *args: str) -> Iterator[int]:
    """A ``jobvisor daemon --detach`` of ``CHATTY``; its pid. Stopped (SIGTERM) at the end."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(CHATTY))
    pidfile = tmp_path / "jv.pid"
    launcher = subprocess.run(
        [*CLI, "daemon", "--detach", "--pidfile", str(pidfile), "--runtime", RUNTIME, *args],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert launcher.returncode == 0, launcher.stderr
    pid = int(pidfile.read_text())
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: gone(pid), "the detached daemon ended", timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def foreground(tmp_path: Path, *args: str) -> Iterator[Jobvisor]:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(CHATTY))
    jv = Jobvisor(tmp_path, "daemon", "--runtime", RUNTIME, *args)
    try:
        yield jv
    finally:
        try:
            assert jv.terminate() == 0, jv.stderr
        finally:
            jv.close()


def logs(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "logs", *args], cwd=tmp_path, env=ENV, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"line-(\d+)", text)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- 1. create 0664: made private, said in the log ------------------------------------------------


@needs_logrotate
def test_logrotate_create_0664_is_made_private_and_said_in_a_detached_daemons_log(
    tmp_path: Path,
) -> None:
    """It refused both new files: its log and every job's output stayed empty, silently."""
    log = tmp_path / "jv.log"
    out = tmp_path / ".jobvisor" / "output" / "chatty.log"
    with detached(tmp_path, "--log-file", str(log)):
        wait_until(lambda: out.exists() and log.exists(), "the files")
        lines_pass(tmp_path)
        user, group = me()
        logrotate(tmp_path, [log, out], "rotate 3", f"create 0664 {user} {group}")
        before = max(numbers((tmp_path / ".jobvisor" / "output" / "chatty.log.1").read_text()))
        lines_pass(tmp_path)
        wait_until(lambda: LOOSER in log.read_text() and out.stat().st_size > 0, "both written")
        assert mode(log) == 0o600
        assert mode(out) == 0o600
        text = log.read_text()
        assert f"{log}: {LOOSER}" in text, text
        assert f"{out}: {LOOSER}" in text, text
        assert text.count(LOOSER) == 2, text  # once each, not at every write
        assert "WARNING" in next(line for line in text.splitlines() if f"{log}: mode" in line)
        shown = logs(tmp_path, "chatty", "-n", "3")
        assert shown.returncode == 0, shown.stderr
        assert min(numbers(shown.stdout)) > before, shown.stdout
        assert shown.stderr == ""


def test_a_log_file_recreated_0664_by_hand_is_made_private_with_a_warning_in_it(
    tmp_path: Path,
) -> None:
    """As logrotate's ``create 0664`` does it: the file moved away, a new one made 0664."""
    log = tmp_path / "jv.log"
    with configure_logging(LoggingSpec(level="information", file=str(log))):
        logbook.Logger("supervision").info("one")
        log.rename(tmp_path / "jv.log.1")
        os.close(os.open(log, os.O_CREAT | os.O_WRONLY, 0o600))
        log.chmod(0o664)
        logbook.Logger("supervision").info("two")
        logbook.Logger("supervision").info("three")
    assert mode(log) == 0o600
    text = log.read_text().splitlines()
    assert len(text) == 3, text
    assert "WARNING" in text[0]
    assert text[0].endswith(f"{log}: {LOOSER}"), text
    assert text[1].endswith("two")
    assert text[2].endswith("three")


def test_a_loose_log_file_of_ours_at_the_start_is_made_private(tmp_path: Path) -> None:
    log = tmp_path / "jv.log"
    log.write_text("")
    log.chmod(0o664)
    with configure_logging(LoggingSpec(level="information", file=str(log))):
        logbook.Logger("supervision").info("one")
    assert mode(log) == 0o600
    assert LOOSER in log.read_text()


@needs_root
def test_another_users_log_file_is_still_refused(tmp_path: Path) -> None:
    log = tmp_path / "jv.log"
    log.write_text("")
    log.chmod(0o600)
    os.chown(log, NOBODY, NOBODY)
    with pytest.raises((UnsafePathError, LoggingSetupError), match="owned by"):
        configure_logging(LoggingSpec(level="information", file=str(log)))
    assert mode(log) == 0o600


# -- refusals that remain: said where a person sees them, and never a false claim -----------------


def block(path: Path) -> None:
    """Make ``path`` unwritable as a file (a directory where it goes), as a refusal is."""
    path.unlink(missing_ok=True)
    path.mkdir()


def test_a_log_that_could_not_be_written_says_so_in_itself_once_writable_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A detached daemon's stderr is /dev/null: the log itself must tell of its gap."""
    log = tmp_path / "jv.log"
    with configure_logging(LoggingSpec(level="information", file=str(log))):
        logbook.Logger("supervision").info("one")
        block(log)
        for n in range(5):
            logbook.Logger("supervision").info("lost {}", n)
        log.rmdir()
        logbook.Logger("supervision").info("two")
    text = log.read_text()
    assert "two" in text
    gap = [line for line in text.splitlines() if "could not write the log file" in line]
    assert len(gap) == 1, text
    assert "WARNING" in gap[0]
    assert "Is a directory" in gap[0]
    assert "5 log records were dropped" in gap[0]
    assert "cannot write the log file" in capsys.readouterr().err


def test_output_lines_the_log_refused_too_are_said_dropped_not_sent_to_the_log(
    tmp_path: Path,
) -> None:
    """The output file and the log both refused: `N output lines went to the log only` was
    false; they were dropped."""
    log = tmp_path / "jv.log"
    out = tmp_path / ".jobvisor" / "output" / "chatty.log"
    with foreground(tmp_path, "--log-file", str(log)) as jv:
        wait_until(lambda: out.exists() and out.stat().st_size > 0, "the output file")
        lines_pass(tmp_path)
        block(log)
        block(out)
        lines_pass(tmp_path)
        out.rmdir()
        log.rmdir()
        wait_until(
            lambda: log.is_file() and f"{out} is writable again" in log.read_text(),
            "the recovery",
            timeout=30,
        )
        text = log.read_text()
        assert "went to the log only" not in text, text
        said = [line for line in text.splitlines() if f"{out} is writable again" in line]
        assert len(said) == 1, text
        assert re.search(r"\d+ output lines were dropped", said[0]), said
        assert "could not write the log file" in text
        assert "Traceback" not in jv.stderr


@needs_root
def test_an_output_file_of_another_user_is_said_in_the_log_and_by_logs(tmp_path: Path) -> None:
    log = tmp_path / "jv.log"
    out = tmp_path / ".jobvisor" / "output" / "chatty.log"
    with detached(tmp_path, "--log-file", str(log)):
        wait_until(lambda: out.exists() and out.stat().st_size > 0, "the output file")
        if LOGROTATE is not None:
            logrotate(tmp_path, [out], "rotate 3", "create 0600 nobody nogroup")
        else:
            out.rename(out.with_name("chatty.log.1"))
            out.write_text("")
            os.chown(out, NOBODY, NOBODY)
        assert out.stat().st_uid == NOBODY
        lines_pass(tmp_path)
        wait_until(lambda: f"refusing the output file {out}" in log.read_text(), "the refusal")
        assert "owned by nobody" in log.read_text()
        shown = logs(tmp_path, "chatty", "-n", "3")
        assert shown.returncode == 0, shown.stderr
        assert str(out) in shown.stderr, shown.stderr
        assert "owned by nobody" in shown.stderr, shown.stderr
        assert "jobvisor's log" in shown.stderr, shown.stderr
        assert out.stat().st_size == 0


# -- 2. copytruncate: the size rotation goes by the file's real size -----------------------------


def write_until(sink: _FileSink, path: Path, size: int) -> None:
    n = 0
    while not path.exists() or path.stat().st_size < size:
        sink.write_bytes(b"x" * 40 + f" {n:08}\n".encode())
        n += 1


def test_size_rotation_counts_from_the_files_real_size_after_a_copytruncate(
    tmp_path: Path,
) -> None:
    """Its count survived the truncation: at 3 KiB, truncated at 1175 B, it rotated at 1880 B."""
    path = tmp_path / "a.log"
    sink = _FileSink(path, RotateSpec(max_bytes=3072, backups=5), _now, output=True)
    try:
        write_until(sink, path, 1175)
        shutil.copyfile(path, tmp_path / "copy")  # as copytruncate: copy, then truncate
        os.truncate(path, 0)
        write_until(sink, path, 2900)
        assert not path.with_name("a.log.1").exists(), "rotated early"
        write_until(sink, path, 3072 - 50)
        for _ in range(4):
            sink.write_bytes(b"y" * 40 + b"\n")
        assert path.with_name("a.log.1").exists(), "never rotated"
        assert path.with_name("a.log.1").stat().st_size <= 3072
    finally:
        sink.close()


@needs_logrotate
def test_logrotate_copytruncate_of_a_log_rotated_by_size_too(tmp_path: Path) -> None:
    log = tmp_path / "jv.log"
    spec = LoggingSpec(level="information", file=str(log), rotate=RotateSpec(max_bytes=3072))
    (tmp_path / "old").mkdir()
    with configure_logging(spec):
        record = logbook.Logger("supervision")
        while not log.exists() or log.stat().st_size < 1175:
            record.info("x" * 40)
        logrotate(tmp_path, [log], "rotate 3", "copytruncate", f"olddir {tmp_path / 'old'}")
        assert log.stat().st_size == 0
        while log.stat().st_size < 2900:
            record.info("x" * 40)
        assert not log.with_name("jv.log.1").exists(), "rotated early"
    assert len(list((tmp_path / "old").iterdir())) == 1


def _now() -> datetime:
    return datetime.now().astimezone()
