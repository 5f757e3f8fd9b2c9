"""Hostile inputs: durations no timer can wait for, secret files that never end, a cron that
never fires, planted symlinks and a full disk. Each is refused with one clear message, and
none hangs or kills a real ``jobvisor``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import RUNTIME
from faultkit import CLI, ENV, run_jobvisor, start_daemon, stop_daemon

from actors import Schedule, SpecError
from actors._checks import MAX_DURATION
from actors._http import HttpWork
from actors._job import cron_delay
from actors._waiters import PollWaiter

# A run or validate that hangs fails its test here, long before the test's own timeout.
HANG: float = 30.0
# Under this much address space, a read of /dev/zero into memory fails at once (MemoryError)
# instead of eating the machine's memory before the test can tell.
_CAP_MEMORY = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
CAPPED = (sys.executable, "-c", _CAP_MEMORY)


def jobvisor(
    cwd: Path, *args: str, prefix: tuple[str, ...] = (), timeout: float = HANG
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *CLI, *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def validate(cwd: Path, manifest: str) -> subprocess.CompletedProcess[str]:
    (cwd / "jobs.yaml").write_text(textwrap.dedent(manifest).lstrip("\n"))
    return jobvisor(cwd, "validate", prefix=CAPPED)


def one_job(fields: str) -> str:
    return "version: 1\njobs:\n  - name: a\n    command: ['true']\n" + textwrap.indent(
        textwrap.dedent(fields), "    "
    )


# -- durations: every one has a bound that every timer takes ---------------------------------------


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ("timeout: 200000d\n", "jobs[0].timeout: expected a duration up to 3650d, got '200000d'"),
        (
            "every: 99999999999999999999d\ntimes: 2\n",
            "jobs[0].every: expected a duration up to 3650d, got '99999999999999999999d'",
        ),
        (
            "stop: {grace: 3651d}\n",
            "jobs[0].stop.grace: expected a duration up to 3650d, got '3651d'",
        ),
        (
            "retry: {attempts: 2, wait: {max: 1e12}}\n",
            "jobs[0].retry.wait.max: expected a duration up to 3650d, got '1e12'",
        ),
        (
            "limits: {cpu: 4000d}\n",
            "jobs[0].limits.cpu: expected a duration > 0 up to 3650d or unlimited, got '4000d'",
        ),
    ],
    ids=["timeout", "every", "grace", "retry-wait", "cpu"],
)
def test_a_duration_past_the_bound_is_refused_naming_the_bound(
    tmp_path: Path, fields: str, said: str
) -> None:
    out = validate(tmp_path, one_job(fields))
    assert out.returncode == 2, out.stderr
    assert f"jobs.yaml:5: {said}" in out.stderr.splitlines(), out.stderr
    assert "Traceback" not in out.stderr


def test_a_socket_bound_duration_has_the_bound_poll_takes(tmp_path: Path) -> None:
    # A socket's wait goes to poll(2) in milliseconds, an int: 24.8 days at most.
    out = validate(
        tmp_path,
        """
        version: 1
        jobs:
          - name: h
            http: {url: "http://127.0.0.1:9/", timeout: 25d}
        notify:
          - {on: [gave_up], command: ["true"], timeout: 30d}
        """,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert "jobs.yaml:4: jobs[0].http.timeout: expected a duration up to 24d, got '25d'" in lines
    assert "jobs.yaml:6: notify[0].timeout: expected a duration up to 24d, got '30d'" in lines


def test_the_embedded_specs_bound_durations_too() -> None:
    with pytest.raises(
        SpecError, match=r"^timeout: expected a duration up to 3650d, got 1000000000000\.0$"
    ):
        Schedule(timeout=1e12)
    with pytest.raises(SpecError, match=r"^every: expected a duration up to 3650d"):
        Schedule(every=math.inf)
    with pytest.raises(SpecError, match=r"^http.timeout: expected a duration up to 24d"):
        HttpWork(url="http://127.0.0.1:9/", timeout=25 * 86400.0)
    assert MAX_DURATION == 3650 * 86400
    Schedule(timeout=MAX_DURATION, every=MAX_DURATION)  # the bound itself is taken


def test_a_commands_wait_takes_a_timeout_longer_than_poll_takes() -> None:
    # A command's stop waits until its SIGKILL deadline, `stop.grace` away: up to 3650d,
    # where poll(2) takes 24.8 days at most.
    proc = subprocess.Popen(["sleep", "60"])
    read, write = os.pipe()
    owned: list[int] = []
    try:
        waiter = PollWaiter(proc.pid, [read], owned)
        os.write(write, b"x")
        assert waiter.wait(MAX_DURATION) == [read]
    finally:
        proc.kill()
        proc.wait()
        for fd in (read, write, *owned):
            os.close(fd)


def test_every_duration_at_its_bound_runs_and_ends(tmp_path: Path) -> None:
    # Each of these ends up in a timer, a lock's wait, poll(2), a selector or a socket: a
    # wait that one of them refuses would leave the run hanging or a traceback behind.
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """
            version: 1
            supervisor:
              intensity: {max_restarts: 1, within: 3650d}
              backoff: {initial: 1ms, max: 3650d}
              budget: {max_restarts: 50, within: 3650d}
            notify:
              - on: [gave_up]
                command: [sh, -c, "cat > notified.json"]
                timeout: 24d
            jobs:
              - name: svc
                service: true
                command: [sleep, "60"]
                timeout: 3650d
                stop: {grace: 3650d}
                ready: {command: ["true"], timeout: 3650d, interval: 3650d}
              - name: tick
                command: ["true"]
                every: 3650d
              - name: once
                command: [sh, -c, "exit 3"]
                timeout: 3650d
                retry: {attempts: 2, wait: {initial: 1ms, max: 3650d}}
                depends_on: [svc]
              - name: web
                http: {url: "http://127.0.0.1:9/", timeout: 24d}
                restart: temporary
            """
        )
    )
    jv = run_jobvisor(tmp_path, "run", "--json", "--runtime", RUNTIME, "--log-level", "warning")
    assert jv.proc.returncode == 1, jv.stderr  # `once` gave up, `web` failed
    assert "Traceback" not in jv.stderr
    assert "OverflowError" not in jv.stderr
    assert "too large" not in jv.stderr
    states = {n["path"]: n["state"] for n in json.loads(jv.stdout)["children"]}
    assert states == {"svc": "stopped", "tick": "stopped", "once": "gave_up", "web": "failed"}
    assert json.loads((tmp_path / "notified.json").read_text())["path"] == "once"


# -- secret files: a regular file, of a bounded size -----------------------------------------------


SECRET_JOB = """
version: 1
jobs:
  - name: a
    command: ["true"]
    env: {{TOK: {{secret: {{file: {path}}}}}}}
"""


def test_a_secret_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    out = validate(tmp_path, SECRET_JOB.format(path="pipe"))
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        f"jobs.yaml:5: jobs[0].env.TOK.secret.file: expected a readable secret file "
        f"'{tmp_path / 'pipe'}', got: a FIFO, not a regular file\n"
    )


def test_a_secret_file_that_is_a_device_is_refused_unread(tmp_path: Path) -> None:
    out = validate(tmp_path, SECRET_JOB.format(path="/dev/zero"))
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        "jobs.yaml:5: jobs[0].env.TOK.secret.file: expected a readable secret file "
        "'/dev/zero', got: a character device, not a regular file\n"
    )
    # A directory is no secret either.
    out = validate(tmp_path, SECRET_JOB.format(path="/tmp"))
    assert "got: a directory, not a regular file" in out.stderr, out.stderr


def test_a_secret_file_past_1mib_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (2 << 20))
    big.chmod(0o600)
    out = validate(tmp_path, SECRET_JOB.format(path="big"))
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        f"jobs.yaml:5: jobs[0].env.TOK.secret.file: expected a secret file up to 1MiB, "
        f"got '{big}' of 2MiB\n"
    )
    big.write_bytes(b"x" * (1 << 20))  # the bound itself is taken
    out = validate(tmp_path, SECRET_JOB.format(path="big"))
    assert out.returncode == 0, out.stderr


def test_a_secret_behind_symlinks_is_read_as_kubernetes_mounts_it(tmp_path: Path) -> None:
    # A Kubernetes secret volume: token -> ..data/token, ..data -> ..2024_01_01_00_00_00.1/
    stamped = tmp_path / "..2024_01_01_00_00_00.1"
    stamped.mkdir()
    (stamped / "token").write_text("s3cret-behind-links\n")
    (stamped / "token").chmod(0o600)
    (tmp_path / "..data").symlink_to(stamped.name)
    (tmp_path / "token").symlink_to("..data/token")
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """
            version: 1
            jobs:
              - name: a
                command: [sh, -c, 'test "$TOK" = s3cret-behind-links']
                env: {TOK: {secret: {file: token}}}
            """
        )
    )
    jv = run_jobvisor(tmp_path, "run", "--runtime", RUNTIME, "--log-level", "warning")
    assert jv.proc.returncode == 0, jv.stderr
    # A link to a FIFO is refused as the FIFO is.
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to("pipe")
    out = validate(tmp_path, SECRET_JOB.format(path="link"))
    assert out.returncode == 2, out.stderr
    assert "got: a FIFO, not a regular file" in out.stderr


def test_a_reload_naming_a_fifo_changes_nothing_and_leaves_the_daemon_answering(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text("t0k")
    (tmp_path / "token").chmod(0o600)
    manifest = """
        version: 1
        jobs:
          - name: svc
            service: true
            command: [sleep, "600"]
            env: {{TOK: {{secret: {{file: {path}}}}}}}
        """
    running = start_daemon(tmp_path, manifest.format(path="token"), "--runtime", RUNTIME)
    try:
        os.mkfifo(tmp_path / "pipe")
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(manifest.format(path="pipe")))
        out = running.cli("reload")
        assert out.returncode == 2, out.stderr
        assert "got: a FIFO, not a regular file" in out.stderr
        assert running.nodes()["svc"]["state"] == "running"
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(manifest.format(path="token")))
        assert running.cli("reload").returncode == 0  # the reload path is not stuck
    finally:
        assert stop_daemon(running) == 0


# -- cron: an expression that never fires ----------------------------------------------------------


def test_a_cron_expression_that_never_fires_is_refused(tmp_path: Path) -> None:
    out = validate(tmp_path, one_job('cron: "0 0 31 2 *"\n'))
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        "jobs.yaml:5: jobs[0].cron: expected a cron expression that fires, got '0 0 31 2 *', "
        "which never does\n"
    )
    out = validate(tmp_path, one_job('cron: "0 0 29 2 *"\n'))  # leap days come
    assert out.returncode == 0, out.stderr


def test_the_run_time_cron_path_survives_an_expression_with_no_next_time() -> None:
    # Refused by the specs, so only reachable if croniter's view changes after a check: the
    # next tick is then as far as any timer goes, never an exception in the job's thread.
    delay = cron_delay("0 0 31 2 *", time.time())
    assert delay == MAX_DURATION


# -- jobvisor logs: never through a planted symlink, never stuck on a FIFO -------------------------


def planted(tmp_path: Path) -> tuple[Path, Path]:
    """A state dir with an output dir, a manifest with job ``a``, and a secret to protect."""
    out = tmp_path / ".jobvisor" / "output"
    out.mkdir(parents=True, mode=0o700)
    (tmp_path / ".jobvisor").chmod(0o700)
    (tmp_path / "jobs.yaml").write_text("version: 1\njobs: [{name: a, command: 'true'}]\n")
    victim = tmp_path / "shadow"
    victim.write_text("root:$6$secret-hash:19000::::::\n")
    return out, victim


def test_logs_refuses_a_symlink_planted_at_an_output_file(tmp_path: Path) -> None:
    out, victim = planted(tmp_path)
    (out / "a.log").symlink_to(victim)
    shown = jobvisor(tmp_path, "logs", "a")
    assert shown.returncode == 1, shown.stderr
    assert shown.stdout == ""
    assert shown.stderr == (
        f"jobvisor: refusing the output file {out / 'a.log'}: it is a symbolic link (to "
        f"{victim}), and jobvisor never reads through one; remove it\n"
    )


def test_logs_refuses_a_symlink_planted_at_a_rotated_output_file(tmp_path: Path) -> None:
    out, victim = planted(tmp_path)
    (out / "a.log").write_text("2025-01-01T00:00:00.000+00:00 stdout 2 newest\n")
    (out / "a.log.1").symlink_to(victim)
    shown = jobvisor(tmp_path, "logs", "a", "-n", "10")
    assert shown.returncode == 1, shown.stderr
    assert "secret-hash" not in shown.stdout
    assert f"refusing the output file {out / 'a.log.1'}: it is a symbolic link" in shown.stderr


def test_logs_refuses_a_fifo_at_an_output_file_at_once(tmp_path: Path) -> None:
    out, _ = planted(tmp_path)
    os.mkfifo(out / "a.log")
    for args in ((), ("-f",)):
        shown = jobvisor(tmp_path, "logs", "a", *args)
        assert shown.returncode == 1, shown.stderr
        assert shown.stderr == (
            f"jobvisor: refusing the output file {out / 'a.log'}: it is a FIFO, not a regular "
            "file\n"
        )


def _following_a(cwd: Path, swap: Callable[[], None]) -> tuple[int, str, str]:
    """``logs a -f`` once it showed a's first line, then ``swap``: how it ended (its exit
    code, stdout, stderr). Killed if it is still running at the end."""
    with subprocess.Popen(
        [*CLI, "logs", "a", "-f"],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        try:
            assert follower.stdout is not None
            assert follower.stdout.readline().endswith(" first\n")
            swap()
            stdout, stderr = follower.communicate(timeout=HANG)
        finally:
            if follower.poll() is None:
                follower.kill()
    return follower.returncode, stdout, stderr


def test_logs_following_stops_at_a_symlink_planted_as_the_next_file(tmp_path: Path) -> None:
    out, victim = planted(tmp_path)
    current = out / "a.log"
    current.write_text("2025-01-01T00:00:00.000+00:00 stdout 1 first\n")

    def swap() -> None:
        current.rename(out / "a.log.1")  # a rotation, with a planted link as the new file
        current.symlink_to(victim)

    code, stdout, stderr = _following_a(tmp_path, swap)
    assert code == 1, stderr
    assert "secret-hash" not in stdout
    assert f"refusing the output file {current}: it is a symbolic link" in stderr


# -- jobvisor logs: nor through a directory of the state dir another user could swap --------------

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="plays a second user with chown")


def elsewhere(tmp_path: Path) -> Path:
    """A directory outside the state dir holding an ``a.log`` (and ``etl/load.log``) that
    ``logs`` must never print: what a symlinked directory would lead it to."""
    target = tmp_path / "var-log"
    (target / "etl").mkdir(parents=True)
    for path in (target / "a.log", target / "etl" / "load.log"):
        path.write_text("2025-01-01T00:00:00.000+00:00 stdout 1 dpkg: secret-hash\n")
    return target


def test_logs_refuses_an_output_directory_that_is_a_symlink(tmp_path: Path) -> None:
    out, _ = planted(tmp_path)
    out.rmdir()
    out.symlink_to(elsewhere(tmp_path))  # another user's `output -> /var/log`
    for args in ((), ("-f",)):
        shown = jobvisor(tmp_path, "logs", "a", *args)
        assert shown.returncode == 1, shown.stderr
        assert shown.stdout == ""
        assert shown.stderr == (
            f"jobvisor: refusing the output directory {out}: it is a symbolic link (to "
            f"{tmp_path / 'var-log'}), and jobvisor never reads through one; remove it\n"
        )


def test_logs_refuses_a_group_directory_on_the_way_that_is_a_symlink(tmp_path: Path) -> None:
    out, _ = planted(tmp_path)
    (out / "etl").symlink_to(elsewhere(tmp_path) / "etl")
    shown = jobvisor(tmp_path, "logs", "etl/load", "-n", "5")
    assert shown.returncode == 1, shown.stderr
    assert "secret-hash" not in shown.stdout
    assert f"refusing the output directory {out / 'etl'}: it is a symbolic link" in shown.stderr


def test_logs_refuses_a_state_dir_that_is_a_symlink_as_run_does(tmp_path: Path) -> None:
    out, _ = planted(tmp_path)
    (out / "a.log").write_text("2025-01-01T00:00:00.000+00:00 stdout 1 fine\n")
    state = tmp_path / ".jobvisor"
    state.rename(tmp_path / "real")
    state.symlink_to("real")
    for given in (str(state), f"{state}/"):  # a trailing slash would have the kernel follow it
        shown = jobvisor(tmp_path, "logs", "--state-dir", given, "a")
        assert shown.returncode == 2, shown.stderr
        assert shown.stdout == ""
        assert shown.stderr == (
            f"jobvisor: refusing the state dir {state}: it is a symbolic link (to real), and "
            "jobvisor never reads through one; give the real path\n"
        )
    shown = jobvisor(tmp_path, "logs", "--state-dir", str(tmp_path / "real"), "a")
    assert (shown.returncode, shown.stdout) == (0, "2025-01-01T00:00:00.000+00:00 stdout 1 fine\n")


@needs_root
def test_logs_refuses_a_state_dir_or_output_directory_of_another_user(tmp_path: Path) -> None:
    out, _ = planted(tmp_path)
    (out / "a.log").write_text("2025-01-01T00:00:00.000+00:00 stdout 1 planted\n")
    state = out.parent
    os.chown(out, NOBODY, NOBODY)
    shown = jobvisor(tmp_path, "logs", "a")
    assert shown.returncode == 1, shown.stderr
    assert shown.stdout == ""
    assert shown.stderr == (
        f"jobvisor: refusing the output directory {out}: it is owned by nobody (uid 65534), "
        "not by root (uid 0) who runs jobvisor; use one of your own\n"
    )
    os.chown(out, 0, 0)
    os.chown(state, NOBODY, NOBODY)
    shown = jobvisor(tmp_path, "logs", "a")
    assert shown.returncode == 2, shown.stderr  # as run and daemon refuse it
    assert shown.stdout == ""
    assert shown.stderr == (
        f"jobvisor: refusing the state dir {state}: it is owned by nobody (uid 65534), not by "
        "root (uid 0) who runs jobvisor; use one of your own\n"
    )
    run = jobvisor(tmp_path, "run", "--state-dir", str(state), "jobs.yaml")
    assert f"refusing the state dir {state}: it is owned by nobody (uid 65534)" in run.stderr


def test_logs_following_stops_at_an_output_directory_swapped_for_a_symlink(
    tmp_path: Path,
) -> None:
    out, _ = planted(tmp_path)
    (out / "a.log").write_text("2025-01-01T00:00:00.000+00:00 stdout 1 first\n")
    target = elsewhere(tmp_path)

    def swap() -> None:
        out.rename(out.with_name("output.old"))  # swapped whole under the reader
        out.symlink_to(target)

    code, stdout, stderr = _following_a(tmp_path, swap)
    assert code == 1, stderr
    assert "secret-hash" not in stdout
    assert f"refusing the output directory {out}: it is a symbolic link" in stderr


# -- a full disk under the output files ------------------------------------------------------------


def _fsize_prefix(limit: int) -> tuple[str, ...]:
    """Run under RLIMIT_FSIZE: a write past ``limit`` bytes fails (EFBIG) as on a full disk."""
    code = (
        "import os, resource, signal, sys; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return (sys.executable, "-c", code)


def test_an_output_file_that_cannot_be_written_is_called_the_output_file(tmp_path: Path) -> None:
    limit = 512 * 1024
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """
            version: 1
            jobs:
              - name: chatty
                command: [sh, -c, 'i=0; while [ $i -lt 20000 ]; do echo "line $i of output"; i=$((i+1)); done']
                output: {max_bytes: 10MiB}
            """
        )
    )
    jv = run_jobvisor(
        tmp_path, "run", "--runtime", RUNTIME, "--log-level", "warning", prefix=_fsize_prefix(limit)
    )
    assert jv.proc.returncode == 0, jv.stderr
    path = tmp_path / ".jobvisor" / "output" / "chatty.log"
    said = [line for line in jv.stderr.splitlines() if "chatty.log" in line]
    assert len(said) == 1, jv.stderr
    # A record of the log (a detached daemon's stderr is /dev/null), at WARNING.
    assert " WARNING " in said[0], said
    assert f"chatty: cannot write the output file {path}: File too large (" in said[0], said
    # Not said to be in the log: it writes from warning, and they are stdout's (information).
    assert (
        "output lines are dropped (the log does not take them either) until it is writable again"
        in said[0]
    ), said
    assert "log file" not in jv.stderr


def test_a_manifest_another_user_could_change_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    """The rule of an env file's text: the manifest chooses the commands jobvisor runs, so one
    that another user owns or can write is refused, as `validate` and `run` read it. A
    world-writable manifest in a shared directory ran its commands as root."""
    ran = tmp_path / "ran"
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(f"version: 1\njobs:\n  - {{name: c, command: [touch, '{ran}']}}\n")
    manifest.chmod(0o666)
    said = (
        "jobs.yaml: refusing this manifest: it is writable by others (mode 0666), who could "
        "choose the commands jobvisor runs; chmod o-w it"
    )
    for command in ("validate", "run"):
        out = jobvisor(tmp_path, command, "jobs.yaml")
        assert (out.returncode, out.stdout) == (2, ""), out.stderr
        assert said in out.stderr, out.stderr
    manifest.chmod(0o644)
    os.chown(manifest, NOBODY, NOBODY)
    out = jobvisor(tmp_path, "run", "jobs.yaml")
    assert out.returncode == 2, out.stderr
    assert (
        "jobs.yaml: refusing this manifest: it is owned by uid 65534, who could choose the "
        "commands jobvisor runs; chown it to root or to the user that runs jobvisor"
    ) in out.stderr
    assert not ran.exists()
    assert "(where such files are to be trusted, as a container's root running sources " in (
        out.stderr
    )
    # Trusted by name (a container's root running sources mounted from uid 65534): it runs.
    trusting = trusted(tmp_path, "nobody", "validate", "jobs.yaml")
    assert trusting.returncode == 0, trusting.stderr
    manifest.chmod(0o666)  # and '*' trusts every file, one others may write too (WSL's /mnt/c)
    trusting = trusted(tmp_path, "*", "run", "jobs.yaml")
    assert trusting.returncode == 0, trusting.stderr
    assert ran.exists()


def trusted(cwd: Path, owners: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``jobvisor ARGS`` with ``JOBVISOR_TRUSTED_OWNERS=owners``."""
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env={**ENV, "JOBVISOR_TRUSTED_OWNERS": owners},
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )


def test_no_module_is_imported_from_beside_a_manifest_in_a_directory_others_can_write(
    tmp_path: Path,
) -> None:
    """A python job's module beside its manifest, in a directory any user can write (a
    sticky /tmp-like one), is not imported: anyone could have put it there, and it would run
    as jobvisor's user. The job fails to import it; the log says why."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    imported = tmp_path / "imported"
    (shared / "planted.py").write_text(f"open({str(imported)!r}, 'w').close()\ndef f(): pass\n")
    (shared / "jobs.yaml").write_text(
        "version: 1\njobs:\n  - {name: p, python: 'planted:f', restart: temporary}\n"
    )
    checked = jobvisor(shared, "validate", "jobs.yaml")
    assert checked.returncode == 0, checked.stderr
    assert "got 'planted' not found (not looked for beside the manifest: it is writable by " in (
        checked.stderr
    )
    out = jobvisor(shared, "run", "jobs.yaml")
    assert out.returncode == 1, out.stderr
    assert (
        f"python jobs' modules are not looked for beside the manifest, in {shared}: it is "
        "writable by others (mode 1777), who could put a module there"
    ) in out.stderr
    assert "No module named 'planted'" in out.stderr
    assert not imported.exists()


def test_a_broken_module_beside_the_manifest_named_as_jobvisors_own_is_said_in_one_line(
    tmp_path: Path,
) -> None:
    """The manifest's directory comes first on ``sys.path``, as `python -m`'s does, so a job's
    own ``statistics.py`` is its own; a ``prometheus_client.py`` there is what ``--http``
    imports. A broken one gave a traceback; now one line names the file, exit 2, and the
    job's own module beside it is still the job's."""
    (tmp_path / "prometheus_client.py").write_text("raise ImportError('planted')\n")
    (tmp_path / "statistics.py").write_text("def main():\n    print('mine ran')\n")
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\njobs:\n  - {name: p, python: 'statistics:main'}\n"
    )
    out = jobvisor(tmp_path, "run", "--http", "127.0.0.1:0", "jobs.yaml")
    assert (out.returncode, out.stdout) == (2, ""), out.stderr
    assert "Traceback" not in out.stderr
    assert (
        f"jobvisor: could not import prometheus_client: planted ({tmp_path}/prometheus_client.py "
        "beside the manifest has its name, and the manifest's directory comes first on "
        "sys.path, as python -m's does: rename it)"
    ) in out.stderr, out.stderr
    (tmp_path / "prometheus_client.py").unlink()
    out = jobvisor(tmp_path, "run", "jobs.yaml")
    assert out.returncode == 0, out.stderr
    assert "mine ran" in out.stderr + out.stdout
