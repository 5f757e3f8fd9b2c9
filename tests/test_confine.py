"""A command job's ``user``, ``umask`` and ``limits`` (SPEC §10), seen from inside real children.

The suite runs as root here, so the user switch is the real one, to the
real ``nobody``; each setting is read back by the child itself (``id``,
``umask``, ``/proc/self/limits``), and jobvisor's own settings are checked
to be untouched afterwards.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import logbook
import pytest
from faultkit import wait_until
from treekit import tree_of

from actors import Attempt
from actors._command import CommandFailed, CommandWork
from actors._confine import UNLIMITED, Limits, RunAs
from supervision import (
    Backoff,
    Intensity,
    JobSpec,
    ManifestError,
    RestartPolicy,
    SpecError,
    load_manifest,
)

ROOT = Path(__file__).resolve().parent.parent
NOBODY = pwd.getpwnam("nobody")
USERS = grp.getgrnam("users")
ONCE = RestartPolicy(backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=0))
_RESOURCES = {
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "memory": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "core": resource.RLIMIT_CORE,
}
# The rows of /proc/PID/limits, by our names.
_PROC_ROWS = {
    "nofile": "Max open files",
    "nproc": "Max processes",
    "memory": "Max address space",
    "cpu": "Max cpu time",
    "core": "Max core file size",
}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


class Output(logbook.Handler):
    """The stdout and stderr lines of the commands, by stream."""

    def __init__(self) -> None:
        super().__init__(
            level=logbook.DEBUG,
            bubble=True,
            filter=lambda record, handler: record.channel == "actors.command",
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.cond = threading.Condition()

    def emit(self, record: logbook.LogRecord) -> None:
        with self.cond:
            self.lines[record.extra["stream"]].append(record.message.split(" ", 1)[1])
            self.cond.notify_all()


@pytest.fixture
def output() -> Iterator[Output]:
    handler = Output()
    with handler.applicationbound():
        yield handler


@pytest.fixture
def own_settings() -> Iterator[None]:
    """jobvisor's own user, groups, umask and limits are the same after the test."""

    def settings() -> tuple[Any, ...]:
        umask = os.umask(0o22)
        os.umask(umask)
        limits = [resource.getrlimit(r) for r in _RESOURCES.values()]
        return os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), umask, limits

    before = settings()
    yield
    assert settings() == before


def run(work: CommandWork, output: Output) -> list[str]:
    """Run ``work`` once; its stdout lines."""
    assert work.run(Attempt("cmd", 1, time.time())) == 0, output.lines["stderr"]
    return output.lines["stdout"]


def proc_limits(lines: list[str]) -> dict[str, tuple[str, str]]:
    """``/proc/self/limits`` as printed by ``cat``: (soft, hard) by our names."""
    out = {}
    for name, row in _PROC_ROWS.items():
        line = next(line for line in lines if line.startswith(row))
        soft, hard = line[len(row) :].split()[:2]
        out[name] = (soft, hard)
    return out


# -- the specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field", "expected"),
    [
        (lambda: RunAs(name="no-such-user-xyz"), "name", "a user of this system"),
        (lambda: RunAs(name=""), "name", "a user name"),
        (lambda: RunAs(name="nobody", group="no-such-group-xyz"), "group", "a group of this"),
        (lambda: Limits(nofile=0), "nofile", "a count >= 1"),
        (lambda: Limits(memory=-5), "memory", "a size >= 1"),
        (lambda: Limits(core=True), "core", "a size >= 0"),
        (lambda: Limits(cpu=0), "cpu", "a duration > 0"),
        (lambda: Limits(nproc="lots"), "nproc", "a count >= 1"),
        (lambda: CommandWork(argv=("true",), umask=0o1000), "umask", "octal umask"),
        (lambda: CommandWork(argv=("true",), limits={"nofile": 5}), "limits", "resource limits"),
    ],
)
def test_bad_values_are_refused_naming_the_field(make: Any, field: str, expected: str) -> None:
    with pytest.raises(SpecError, match=expected) as caught:
        make()
    assert caught.value.field == field


def test_a_user_given_by_name_alone_becomes_a_run_as() -> None:
    work = CommandWork(argv=("true",), user="nobody")  # type: ignore[arg-type]
    assert work.user == RunAs(name="nobody")
    assert work.user.describe() == f"nobody group={grp.getgrgid(NOBODY.pw_gid).gr_name}"


def test_cpu_gets_a_hard_limit_one_second_later_so_that_sigxcpu_comes_first() -> None:
    rlimits = {res: (soft, hard) for _, res, soft, hard in Limits(cpu=1.2).rlimits()}
    assert rlimits == {resource.RLIMIT_CPU: (2, 3)}
    lifted = Limits(core=UNLIMITED).rlimits()
    infinity = resource.RLIM_INFINITY
    assert lifted == (("core", resource.RLIMIT_CORE, infinity, infinity),)


# -- inside the child ------------------------------------------------------------------------------


def test_user_switches_uid_gid_groups_and_the_login_env(output: Output, own_settings: None) -> None:
    del own_settings
    work = CommandWork(
        shell="id -u; id -g; id -G; echo $HOME $USER $LOGNAME", cwd="/", user="nobody"
    )  # type: ignore[arg-type]
    groups = " ".join(map(str, os.getgrouplist("nobody", NOBODY.pw_gid)))
    assert run(work, output) == [
        str(NOBODY.pw_uid),
        str(NOBODY.pw_gid),
        groups,
        f"{NOBODY.pw_dir} nobody nobody",
    ]


def test_a_group_overrides_the_primary_group(output: Output) -> None:
    work = CommandWork(
        shell="id -u; id -g; id -G", cwd="/", user=RunAs(name="nobody", group="users")
    )
    groups = " ".join(map(str, os.getgrouplist("nobody", USERS.gr_gid)))
    assert run(work, output) == [str(NOBODY.pw_uid), str(USERS.gr_gid), groups]


def test_the_jobs_env_wins_over_the_users_home(output: Output) -> None:
    work = CommandWork(shell="echo $HOME", cwd="/", user=RunAs(name="nobody"), env={"HOME": "/x"})
    assert run(work, output) == ["/x"]


def test_umask_applies_to_the_files_the_child_creates(
    output: Output, tmp_path: Path, own_settings: None
) -> None:
    del own_settings
    work = CommandWork(shell="umask; touch made; mkdir dir", cwd=str(tmp_path), umask=0o27)
    assert run(work, output) == ["0027"]
    assert (tmp_path / "made").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "dir").stat().st_mode & 0o777 == 0o750


def test_each_limit_is_set_in_the_child(output: Output, own_settings: None) -> None:
    del own_settings
    limits = Limits(nofile=1000, nproc=200, memory=512 << 20, cpu=1.5, core=1 << 20)
    work = CommandWork(
        shell="ulimit -n; ulimit -v; ulimit -t; cat /proc/self/limits", limits=limits
    )
    lines = run(work, output)
    assert lines[:3] == ["1000", str(512 << 10), "2"]  # sh: files, KiB, seconds
    assert proc_limits(lines[3:]) == {
        "nofile": ("1000", "1000"),
        "nproc": ("200", "200"),
        "memory": (str(512 << 20), str(512 << 20)),
        "cpu": ("2", "3"),
        "core": (str(1 << 20), str(1 << 20)),
    }


def test_user_umask_and_limits_together(output: Output, own_settings: None) -> None:
    del own_settings
    work = CommandWork(
        shell="id -u; id -g; id -G; umask; cat /proc/self/limits",
        cwd="/",
        user=RunAs(name="nobody", group="users"),
        umask=0o77,
        limits=Limits(nofile=512, core=UNLIMITED),
    )
    lines = run(work, output)
    groups = " ".join(map(str, os.getgrouplist("nobody", USERS.gr_gid)))
    assert lines[:4] == [str(NOBODY.pw_uid), str(USERS.gr_gid), groups, "0077"]
    got = proc_limits(lines[4:])
    assert got["nofile"] == ("512", "512")
    assert got["core"] == ("unlimited", "unlimited")


def test_a_user_and_limits_command_named_without_a_path_is_found(output: Output) -> None:
    """The helper switched user before execvp, which imports `warnings` to search PATH: from
    an interpreter the user cannot read (a root's pyenv or venv under /root), every attempt
    failed with a traceback (h271). It is imported first."""
    work = CommandWork(
        argv=("id", "-u"), cwd="/", user=RunAs(name="nobody"), limits=Limits(nofile=512)
    )
    assert run(work, output) == [str(NOBODY.pw_uid)]


@pytest.mark.parametrize("command", ["no-such-command-xyz", "./no-such-script-xyz"])
def test_a_missing_command_with_limits_could_not_start_as_without(command: str) -> None:
    work = CommandWork(argv=(command,), limits=Limits(nofile=64), cwd="/")
    with pytest.raises(CommandFailed) as caught:
        work.run(Attempt("cmd", 1, time.time()))
    assert caught.value.code == 127
    assert str(caught.value) == (
        f"command {command} could not start: No such file or directory: {command}"
    )


def test_a_command_that_cannot_exec_fails_with_the_helpers_reason(
    output: Output, tmp_path: Path
) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    work = CommandWork(argv=("./not-executable",), cwd=str(tmp_path), limits=Limits(nofile=64))
    with pytest.raises(CommandFailed) as caught:
        work.run(Attempt("cmd", 1, time.time()))
    assert caught.value.code == 126
    assert output.lines["stderr"] == [
        "jobvisor: './not-executable' could not start: Permission denied"
    ]


# -- the cpu limit ---------------------------------------------------------------------------------

SPIN = "while :; do :; done"


def test_sigxcpu_at_the_cpu_limit_fails_saying_so(own_settings: None) -> None:
    del own_settings
    work = CommandWork(shell=SPIN, limits=Limits(cpu=1, core=0))
    with pytest.raises(CommandFailed) as caught:
        work.run(Attempt("cmd", 1, time.time()))
    assert caught.value.code == -24
    assert str(caught.value) == f"command {SPIN} killed by SIGXCPU: the cpu limit of 1s ended it"


def test_a_child_that_ignores_sigxcpu_is_killed_at_the_hard_limit_saying_so() -> None:
    shell = f"trap '' XCPU; {SPIN}"
    work = CommandWork(shell=shell, limits=Limits(cpu=1, core=0))
    with pytest.raises(CommandFailed) as caught:
        work.run(Attempt("cmd", 1, time.time()))
    assert caught.value.code == -9
    assert str(caught.value).endswith("killed by SIGKILL: the cpu limit of 1s ended it")


def test_our_own_sigkill_is_not_blamed_on_the_cpu_limit(output: Output) -> None:
    work = CommandWork(shell="echo up; exec sleep 60", limits=Limits(cpu=30))
    att = Attempt("cmd", 1, time.time())
    result: list[BaseException] = []

    def target() -> None:
        try:
            work.run(att)
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    with output.cond:
        assert output.cond.wait_for(lambda: output.lines["stdout"] == ["up"], 10)
    work.kill(att)
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(result[0], CommandFailed)
    assert str(result[0]) == "command echo up; exec sleep 60 killed by SIGKILL"


def test_in_a_tree_the_last_exit_says_the_cpu_limit_ended_it(make_tree, events) -> None:
    job = JobSpec(name="spin", work=CommandWork(shell=SPIN, limits=Limits(cpu=1, core=0)))
    tree = make_tree(tree_of(job, policy=ONCE), on_event=events)
    assert tree.wait(30)
    node = tree.status()["children"][0]
    assert node["state"] == "gave_up"
    assert node["last_exit"]["error"].endswith("the cpu limit of 1s ended it")


# -- the manifest ----------------------------------------------------------------------------------


def manifest(jobs: str) -> str:
    return "version: 1\njobs:\n" + textwrap.indent(textwrap.dedent(jobs).lstrip("\n"), "  ")


def test_the_manifest_builds_user_umask_and_limits() -> None:
    m = load_manifest(
        manifest("""
        - name: web
          command: [sleep, "1"]
          user: {name: nobody, group: users}
          umask: "027"
          limits: {nofile: 1024, nproc: 64, memory: 512MiB, cpu: 1m30s, core: unlimited}
        - name: plain
          command: "true"
          user: nobody
        """),
        env={},
    )
    web, plain = (child.work for child in m.root.children)  # type: ignore[union-attr]
    assert web.user == RunAs(name="nobody", group="users")
    assert web.umask == 0o27
    assert web.limits == Limits(nofile=1024, nproc=64, memory=512 << 20, cpu=90.0, core=UNLIMITED)
    assert (plain.user, plain.umask, plain.limits) == (RunAs(name="nobody"), None, None)
    explained = m.explain()
    assert "user=nobody group=users umask=027 " in explained
    assert "limits=(nofile=1024 nproc=64 memory=512MiB cpu=90s core=unlimited)" in explained
    assert f"user=nobody group={grp.getgrgid(NOBODY.pw_gid).gr_name}\n" in explained


def test_defaults_give_command_jobs_a_user_and_leave_other_kinds_alone() -> None:
    text = "version: 1\ndefaults:\n  user: nobody\n  umask: '022'\n" + manifest("""
        - name: cmd
          command: "true"
        - name: py
          python: "os:getcwd"
        """).removeprefix("version: 1\n")
    cmd, py = (child.work for child in load_manifest(text, env={}).root.children)  # type: ignore[union-attr]
    assert (cmd.user, cmd.umask) == (RunAs(name="nobody"), 0o22)
    assert not hasattr(py, "user")


@pytest.mark.parametrize(
    ("job", "path", "message"),
    [
        (
            "user: no-such-user-xyz",
            "jobs[0].user",
            "the name of a user of this system, got 'no-such-user-xyz'",
        ),
        (
            "user: {name: nobody, group: no-such-group-xyz}",
            "jobs[0].user.group",
            "a group of this system, got 'no-such-group-xyz'",
        ),
        (
            "user: {group: users}",
            "jobs[0].user.name",
            "the name of the user to run as, got nothing",
        ),
        ("user: {name: nobody, shell: /bin/sh}", "jobs[0].user.shell", "unknown key 'shell'"),
        ("umask: 027", "jobs[0].umask", "got 23 (quote it"),
        ("umask: '999'", "jobs[0].umask", "an octal umask in quotes, like \"027\", got '999'"),
        ("limits: {nofile: 0}", "jobs[0].limits.nofile", "a count >= 1 or unlimited, got 0"),
        (
            "limits: {memory: lots}",
            "jobs[0].limits.memory",
            "a size >= 1 or unlimited like 512KiB",
        ),
        ("limits: {cpu: forever}", "jobs[0].limits.cpu", "a duration > 0 or unlimited like"),
        ("limits: {core: -1}", "jobs[0].limits.core", "a size >= 0 or unlimited, got -1"),
        ("limits: {stack: 1}", "jobs[0].limits.stack", "unknown key 'stack'"),
        ("limits: 5", "jobs[0].limits", "a mapping of nofile, nproc, memory, cpu, core, got 5"),
    ],
)
def test_bad_values_in_a_manifest_name_path_and_line(job: str, path: str, message: str) -> None:
    text = manifest(f"""
        - name: a
          command: "true"
          {job}
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    issues = [i for i in caught.value.issues if i.path == path]
    assert issues, caught.value.issues
    assert issues[0].line == 5  # the job's third line
    assert message in issues[0].message


@pytest.mark.parametrize("field", ["user: nobody", "umask: '022'", "limits: {nofile: 10}"])
@pytest.mark.parametrize("kind", ['python: "os:getcwd"', "http: {url: 'http://127.0.0.1:1/'}"])
def test_user_umask_and_limits_on_another_kind_are_refused(field: str, kind: str) -> None:
    text = manifest(f"""
        - name: a
          {kind}
          {field}
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    key = field.split(":", maxsplit=1)[0]
    (issue,) = caught.value.issues
    assert (issue.path, issue.line) == (f"jobs[0].{key}", 5)
    assert f"expected {key} only on command jobs, got it on a" in issue.message


def test_cli_validate_reports_an_unknown_user_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        manifest("""
        - name: a
          command: "true"
          user: no-such-user-xyz
        """)
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"{path}:5: jobs[0].user: expected the name of a user of this system, "
        "got 'no-such-user-xyz'"
    )


# -- not root --------------------------------------------------------------------------------------


@pytest.fixture
def as_nobody() -> Iterator[None]:
    """The test process runs with nobody's effective uid (root stays its real and saved uid)."""
    os.seteuid(NOBODY.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)


def test_without_root_only_the_current_user_is_accepted(as_nobody: None) -> None:
    del as_nobody
    with pytest.raises(SpecError) as caught:
        RunAs(name="root")
    assert (caught.value.field, caught.value.expected) == (
        "name",
        "the user jobvisor runs as (nobody): switching users needs root",
    )
    with pytest.raises(SpecError, match="switching groups needs root") as caught:
        RunAs(name="nobody", group="users")
    assert caught.value.field == "group"
    itself = RunAs(name="nobody")
    credentials, env = itself.confinement()
    assert credentials is None  # nothing to switch: it is the current user
    assert env["USER"] == "nobody"


def test_a_limit_the_kernel_refuses_fails_the_start_naming_it(output: Output) -> None:
    too_many = int(Path("/proc/sys/fs/nr_open").read_text()) + 1  # refused even to root
    work = CommandWork(argv=("true",), limits=Limits(nofile=too_many))
    with pytest.raises(CommandFailed) as caught:
        work.run(Attempt("cmd", 1, time.time()))
    assert caught.value.code == 126
    reason = f"cannot set limits.nofile to {too_many}: not allowed to raise maximum limit"
    assert output.lines["stderr"] == [f"jobvisor: 'true' could not start: {reason}"]


def test_a_manifests_job_runs_confined_in_a_tree(make_tree, output: Output) -> None:
    m = load_manifest(
        manifest("""
        - name: probe
          command: "id -u; id -g; umask; ulimit -n"
          cwd: /
          user: {name: nobody, group: users}
          umask: "077"
          limits: {nofile: 300, cpu: 30s}
        """),
        env={},
    )
    tree = make_tree(m.tree_spec())
    assert tree.wait(30)
    assert tree.status()["children"][0]["state"] == "succeeded"
    assert output.lines["stdout"] == [str(NOBODY.pw_uid), str(USERS.gr_gid), "0077", "300"]


@pytest.mark.parametrize("with_limits", [False, True])
def test_a_command_probe_runs_as_its_jobs_command(
    tmp_path: Path, own_settings: None, with_limits: bool
) -> None:
    # A probe that checks its own uid, gid, umask and (with limits) nofile: ready only if it
    # runs as the job's command would (systemd runs ExecStartPost= as User= too).
    from actors._ready import NotReady, ReadyProbe

    want_limit = "64" if with_limits else str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    check = (
        f'[ "$(id -u)" = {NOBODY.pw_uid} ] && [ "$(id -g)" = {USERS.gr_gid} ] '
        f'&& [ "$(umask)" = 0077 ] && [ "$(ulimit -n)" = {want_limit} ] '
        '&& [ "$(pwd)" = /tmp ] && [ "$MARK" = here ]'
    )
    work = CommandWork(
        argv=("true",),
        cwd="/tmp",
        env={"MARK": "here"},
        user=RunAs(name="nobody", group="users"),
        umask=0o077,
        limits=Limits(nofile=64) if with_limits else None,
    )
    probe = ReadyProbe(command=("/bin/sh", "-c", check), timeout=10, interval=0.01)
    with pytest.raises(NotReady):  # as jobvisor itself (root, its cwd and umask): not ready
        ReadyProbe(command=probe.command, timeout=0.2, interval=0.05).wait_ready(threading.Event())
    probe.beside(work).wait_ready(threading.Event())
    assert probe.beside(work) == probe  # the job is no part of the probe's identity


@pytest.fixture
def fleeting_user() -> Iterator[str]:
    """A real user of this system, made for the test; the test deletes it, or this does."""
    name = f"jvgone{os.getpid()}"
    made = subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot make a user here: {made.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


def test_a_user_deleted_after_the_manifest_was_read_fails_the_start_and_the_probe(
    fleeting_user: str,
) -> None:
    # The name was checked when the spec was built; by the start (or a restart, or the
    # probe) the user is gone: each says so, as 126 "could not start", and nothing runs.
    from actors._ready import NotReady, ReadyProbe

    work = CommandWork(argv=("true",), user=RunAs(name=fleeting_user))
    probe = ReadyProbe(command=("true",), timeout=5, interval=0.01).beside(work)
    probe.wait_ready(threading.Event())  # the user is still there: ready at once
    subprocess.run(["userdel", fleeting_user], check=True)
    with pytest.raises(CommandFailed, match="could not start: its user or group is gone") as info:
        work.run(Attempt("gone", 1, time.time()))
    assert info.value.code == 126
    assert fleeting_user in str(info.value)
    with pytest.raises(NotReady, match="its user or group is gone"):
        probe.wait_ready(threading.Event())


# -- the environment of a command with a user ------------------------------------------------------


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """What a command switched to ``nobody`` gets: its login's, the PATH, locale and TZ, ``extra``."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if k in {"PATH", "LANG", "LANGUAGE", "TZ"} or k.startswith("LC_")
    }
    login = {"HOME": NOBODY.pw_dir, "USER": "nobody", "LOGNAME": "nobody"}
    return {**kept, **login, "SHELL": NOBODY.pw_shell or "/bin/sh", **extra}


@pytest.fixture
def daemon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """jobvisor's own environment holds what no other user may read, and a locale and TZ."""
    monkeypatch.setenv("JV_DAEMONS_OWN", "not-for-nobody")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("TZ", "UTC")


@pytest.mark.parametrize("with_limits", [False, True])
def test_a_user_switch_starts_from_a_clean_environment(
    output: Output, daemon_env: None, with_limits: bool
) -> None:
    # The other user can read its own /proc/PID/environ: what jobvisor's environment holds
    # (an HTTP token, other jobs' secrets) must not be there, as sudo and systemd's User= do.
    work = CommandWork(
        argv=("/usr/bin/env",),
        cwd="/",
        user="nobody",
        env={"MINE": "1", "TZ": "Europe/Paris"},
        limits=Limits(nofile=64) if with_limits else None,
    )
    got = dict(line.split("=", 1) for line in run(work, output))
    assert got == _clean_env({"MINE": "1", "TZ": "Europe/Paris"})  # the job's env wins


def test_a_probe_of_a_job_with_a_user_gets_its_clean_environment(daemon_env: None) -> None:
    from actors._ready import ReadyProbe

    work = CommandWork(argv=("true",), cwd="/", user="nobody", env={"MINE": "1"})
    check = '[ -z "${JV_DAEMONS_OWN+set}" ] && [ "$MINE" = 1 ] && [ "$USER" = nobody ]'
    probe = ReadyProbe(command=("/bin/sh", "-c", check), timeout=5, interval=0.01)
    probe.beside(work).wait_ready(threading.Event())


def _environ(pid: int) -> dict[str, str]:
    """The environment ``pid`` was exec'd with: a job's pid is known from its fork on, and until
    its exec (a user switch forks for real) /proc shows the forked copy's, ours."""
    wait_until(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"), "its exec")
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if item)


def test_only_a_job_with_a_user_starts_without_the_variables_secrets_come_from(
    make_tree: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The security trial: a job switched to a lower user held the HTTP token and another
    # job's password in its environment (readable by that user), and with the token it
    # controlled the whole tree. A user: job starts clean; it gets a secret only by its env.
    # A job of jobvisor's own user inherits them as every variable: it is no boundary (the
    # same uid reads jobvisor's /proc/PID/environ and its control socket), and psql reading
    # PGPASSWORD that another job's header also names must keep working.
    monkeypatch.setenv("JV_DBPW", "db-password-123")
    monkeypatch.setenv("JV_TOKEN", "http-token-456")
    monkeypatch.setenv("JV_PLAIN", "plain-value")
    m = load_manifest(
        textwrap.dedent("""
        version: 1
        http: {listen: "127.0.0.1:1", token: {secret: {env: JV_TOKEN}}}
        jobs:
          - name: db
            command: [sleep, "60"]
            env: {DBPW: {secret: {env: JV_DBPW}}}
            service: true
          - name: same
            command: [sleep, "60"]
            service: true
          - name: low
            command: [sleep, "60"]
            user: nobody
            service: true
          - name: low-named
            command: [sleep, "60"]
            user: nobody
            env: {DBPW: "${secret:JV_DBPW}"}
            service: true
        """),
        env=os.environ,
    )
    tree = make_tree(m)
    assert tree.started(30)

    def pids() -> dict[str, int]:
        return {c["name"]: c["pid"] for c in tree.status()["children"] if c["pid"]}

    wait_until(lambda: len(pids()) == 4, "the four jobs' pids")
    env = {name: _environ(pid) for name, pid in pids().items()}
    assert env["db"]["DBPW"] == "db-password-123"
    for name in ("db", "same"):  # jobvisor's own user: its environment, as a shell's children
        assert env[name]["JV_DBPW"] == "db-password-123"
        assert env[name]["JV_TOKEN"] == "http-token-456"
        assert env[name]["JV_PLAIN"] == "plain-value"
    assert env["low"] == _clean_env({})  # no token, no password, nothing else of jobvisor's
    assert env["low-named"] == _clean_env({"DBPW": "db-password-123"})
    assert tree.stop(20)
