"""`jobvisor unit`: the printed systemd unit parses, verifies, and its commands run the daemon."""

from __future__ import annotations

import _socket
import configparser
import contextlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from faultkit import CLI, DAEMON, ENV, ROOT

from supervision._unit import jobvisor_command, render_unit


def unit_of(cwd: Path, *args: str) -> configparser.ConfigParser:
    done = subprocess.run(
        [*CLI, "unit", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return parse(done.stdout)


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign] # systemd keys keep case
    parser.read_string(text)
    return parser


def test_system_unit_has_the_daemons_contract(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(DAEMON))
    unit = unit_of(tmp_path)
    service = unit["Service"]
    manifest = str(tmp_path / "jobs.yaml")
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30s"
    assert service["KillMode"] == "mixed"
    assert service["Restart"] == "on-failure"
    # A bad manifest or state dir is exit 2 at every start: left failed, not looped on.
    assert service["RestartPreventExitStatus"] == "2"
    start = shlex.split(service["ExecStart"])
    assert start == [sys.executable, str(ROOT / "cli.py"), "daemon", manifest]
    assert all(Path(word).is_absolute() for word in (start[0], start[1], start[3]))
    assert shlex.split(service["ExecReload"])[2:] == ["reload", "--manifest", manifest]
    assert service["User"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_user_unit_names_no_user_and_keeps_the_state_dir(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(DAEMON))
    unit = unit_of(tmp_path, "--user", "--state-dir", "st")
    assert "User" not in unit["Service"]
    assert unit["Install"]["WantedBy"] == "default.target"
    state = str(tmp_path / "st")
    assert shlex.split(unit["Service"]["ExecStart"])[-2:] == ["--state-dir", state]
    assert shlex.split(unit["Service"]["ExecReload"])[-2:] == ["--state-dir", state]


def test_missing_manifest_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "unit", "nope.yaml"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert (
        done.stderr
        == "jobvisor: no manifest at nope.yaml: pass the path of the daemon's YAML file\n"
    )
    assert done.stdout == ""


def test_paths_with_spaces_and_percent_are_quoted(tmp_path: Path) -> None:
    odd = tmp_path / "my jobs 100%"
    odd.mkdir()
    text = render_unit(str(odd / "jobs.yaml"), command=["/opt/j v/jobvisor"], user="svc")
    start = parse(text)["Service"]["ExecStart"]
    # systemd reads %% as one %, then splits words as a shell would.
    assert shlex.split(start.replace("%%", "%")) == [
        "/opt/j v/jobvisor",
        "daemon",
        str(odd / "jobs.yaml"),
    ]
    service, unit = parse(text)["Service"], parse(text)["Unit"]
    # A path setting is not split into words: no quotes (systemd would take them as part of
    # the path, which is then not absolute), only its specifiers' % doubled.
    assert service["WorkingDirectory"] == str(odd).replace("%", "%%")
    assert unit["Description"] == f"jobvisor daemon for {odd}/jobs.yaml".replace("%", "%%")
    # Where a manifest's secrets come from, under systemd: said, commented out.
    assert "# EnvironmentFile=" in text


def test_an_installed_script_runs_as_is(tmp_path: Path) -> None:
    script = tmp_path / "jobvisor"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert jobvisor_command(str(script)) == [str(script)]
    assert jobvisor_command(str(ROOT / "cli.py"), "/usr/bin/python3") == [
        "/usr/bin/python3",
        str(ROOT / "cli.py"),
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("user", [False, True])
def test_systemd_analyze_verifies_it(tmp_path: Path, user: bool) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(DAEMON))
    text = render_unit(str(tmp_path / "jobs.yaml"), user_unit=user, user="root")
    unit = tmp_path / "jobvisor-test.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *(["--user"] if user else []), str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # Complaints about the machine (no bus, other units) are not about this file.
    ours = [line for line in done.stderr.splitlines() if unit.name in line]
    assert ours == [], done.stderr


def test_the_units_commands_run_and_reload_the_daemon(tmp_path: Path) -> None:
    """What systemd would do: ExecStart with a notify socket and a watchdog, ExecReload, SIGTERM."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(DAEMON))
    service = unit_of(tmp_path)["Service"]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    # Read all along, as systemd does: a socket queues 10 datagrams (max_dgram_qlen), and
    # unread, the watchdog's every 0.1 s filled it while a loaded machine started the reload's
    # command, and the daemon's STOPPING=1 then waited on it, never exiting.
    heard: list[bytes] = []
    said = threading.Condition()

    def listen() -> None:
        with contextlib.suppress(OSError):  # closed at the end
            while message := notify.recv(4096):
                with said:
                    heard.append(message)
                    said.notify_all()

    def told(message: bytes, after: int = -1) -> int:
        """The index of the first datagram holding ``message`` past index ``after``, once one
        came."""

        def first() -> int | None:
            return next((i for i, got in enumerate(heard) if i > after and message in got), None)

        with said:
            assert said.wait_for(lambda: first() is not None, 30), heard
            at = first()
            assert at is not None
            return at

    listener = threading.Thread(target=listen, name="test-notify", daemon=True)
    listener.start()
    env = {**ENV, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen(
        shlex.split(service["ExecStart"]),
        cwd=service["WorkingDirectory"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # A watchdog's keep-alive after the daemon said it is ready (one before is allowed:
        # sd_notify's WATCHDOG=1 is a keep-alive whenever it comes).
        told(b"WATCHDOG=1", after=told(b"READY=1"))
        reload = subprocess.run(
            shlex.split(service["ExecReload"]),
            cwd="/",
            env=ENV,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert reload.returncode == 0, reload.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        told(b"STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.shutdown(socket.SHUT_RDWR)
        notify.close()
        listener.join(10)


def test_the_stop_timeout_covers_every_jobs_grace_in_turn(tmp_path: Path) -> None:
    """The daemon stops its jobs one after another, each up to its grace: systemd's
    TimeoutStopSec must not SIGKILL it half way (it was 90 s whatever the manifest)."""
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            defaults: {stop: {grace: 60s}}
            jobs:
              - {name: a, command: [sleep, "9"], service: true}
              - {name: w, command: [sleep, "9"], service: true, replicas: 2}
              - group: g
                jobs:
                  - {name: b, command: [sleep, "9"], service: true, stop: {grace: 10s}}
            """
        )
    )
    # 60 + 2 x 60 + 10 of graces, a second each to reap what was killed, and 30 s to spare.
    assert unit_of(tmp_path)["Service"]["TimeoutStopSec"] == f"{190 + 4 + 30}s"
    (tmp_path / "jobs.yaml").write_text("version: 1\njobs:\n  - {name: a, command: [ls]}\n")
    assert unit_of(tmp_path)["Service"]["TimeoutStopSec"] == "90s"  # never below systemd's own


def test_a_unit_for_a_bad_manifest_is_refused_with_its_problems(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text("version: 1\njobs:\n  - {name: a, comand: [ls]}\n")
    done = subprocess.run(
        [*CLI, "unit"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "jobs[0].comand: unknown key 'comand'" in done.stderr
    assert done.stdout == ""


def test_a_unit_for_a_state_dir_the_daemon_would_refuse_is_refused_as_the_daemon_says(
    tmp_path: Path,
) -> None:
    """A state dir in a world-writable parent: the daemon refused it at each start, exit 2,
    and systemd restarted it for ever; `unit` wrote it without a word."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(DAEMON))
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    refusals = []
    for verb in (("unit", "--state-dir", "loose/st"), ("daemon", "--state-dir", "loose/st")):
        done = subprocess.run(
            [*CLI, *verb],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert len(done.stderr.splitlines()) == 1, done.stderr
        refusals.append(done.stderr)
    assert refusals[0] == refusals[1]
    assert f"refusing the state dir {loose / 'st'}: the directory {loose} above it" in refusals[0]
    assert not (loose / "st").exists()


def test_a_unit_needs_no_secret_of_the_environment_systemd_gives_later(tmp_path: Path) -> None:
    """The unit says secrets come from its EnvironmentFile= under systemd: `unit` is run where
    they are not set, and must not refuse the manifest for them."""
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            jobs:
              - {name: a, command: [sleep, "9"], service: true, env: {TOKEN: "${secret:JV_UNSET_TOKEN}"}}
            """
        )
    )
    env = {k: v for k, v in ENV.items() if k != "JV_UNSET_TOKEN"}
    done = subprocess.run(
        [*CLI, "unit"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert parse(done.stdout)["Service"]["TimeoutStopSec"] == "90s"


def test_sd_notify_to_a_full_socket_drops_the_message_and_warns_once_a_burst(
    tmp_path: Path,
) -> None:
    """A notify socket nobody reads fills after a few datagrams; a blocking send then waited
    for ever (the watchdog's thread, STOPPING=1 at the daemon's exit). Dropped now, said once
    until a send gets through again."""
    import logbook

    from supervision._daemon import sd_notify

    address = tmp_path / "notify.sock"
    env = {"NOTIFY_SOCKET": str(address)}
    # The C socket: gevent's waits on the hub where MSG_DONTWAIT says not to wait.
    unread = _socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with contextlib.closing(unread), logbook.TestHandler() as said:
        unread.bind(str(address))
        sent = [sd_notify("WATCHDOG=1", env) for _ in range(50)]
        assert True in sent
        assert sent[-1] is False, "the queue is full: dropped, not waited for"
        assert len([r for r in said.records if "nobody reads it" in r.message]) == 1
        with contextlib.suppress(BlockingIOError):  # read at last: room again
            while True:
                unread.recv(4096, socket.MSG_DONTWAIT)
        assert sd_notify("STOPPING=1", env) is True
        sent = [sd_notify("WATCHDOG=1", env) for _ in range(50)]  # a second burst
        assert sent[-1] is False
        assert len([r for r in said.records if "nobody reads it" in r.message]) == 2
