"""Exit classification: ``success_exit_codes`` and ``give_up_on`` (SPEC §10)."""

from __future__ import annotations

import json
import marshal
import sys
import textwrap
from pathlib import Path

import isolatedfuncs
import pytest
from httpkit import HttpKit, Reply
from treekit import tree_of

from actors import RetrySpec, RetryWait, SpecError
from actors._command import CommandFailed, CommandWork
from actors._http import HttpStatusError, HttpWork
from actors._python import PythonWork
from actors._python_call import failure_names
from supervision import (
    Intensity,
    JobSpec,
    Journal,
    ManifestError,
    RestartPolicy,
    RestartType,
    load_manifest,
    python_job,
)
from supervision._exits import GiveUpOn
from supervision._history import FILENAME, read_history
from supervision._journal import job_hashes

# Enough restarts that a job which gave up at once plainly did not use them.
ROOMY = RestartPolicy(intensity=Intensity(max_restarts=50))


class Base(Exception):
    pass


class Sub(Base):
    pass


# -- the rule alone, no threads ---------------------------------------------------------------------


def test_an_exit_code_matches_and_names_the_rule() -> None:
    rule = GiveUpOn(exit_codes=(3, 4))
    assert rule.matches(CommandFailed("exited with 3", 3)) == (
        "give_up_on.exit_codes matched exit code 3"
    )
    assert rule.matches(CommandFailed("exited with 5", 5)) is None
    assert rule.matches(None) is None
    # A python job's sys.exit(3) or `return 3`: its exit code too; it never matched (h249).
    from actors import PythonExit

    assert rule.matches(PythonExit("m:f called sys.exit(3)", 3)) == (
        "give_up_on.exit_codes matched exit code 3"
    )
    assert rule.matches(PythonExit("m:f returned 5", 5)) is None


def test_an_exception_matches_its_subclasses_and_in_the_cause_chain() -> None:
    rule = GiveUpOn(exceptions=(Base,))
    assert rule.matches(Sub()) == f"give_up_on.exceptions matched Sub ({__name__}.Base)"
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = Sub()
    assert rule.matches(wrapped) is not None
    assert rule.matches(ValueError()) is None


def test_an_http_status_matches_only_an_http_status_error() -> None:
    rule = GiveUpOn(http_status=(404,))
    assert rule.matches(HttpStatusError("got 404", 404)) == (
        "give_up_on.http_status matched status 404"
    )
    assert rule.matches(CommandFailed("exited with 404?", 404 % 256)) is None
    assert GiveUpOn(exit_codes=(148,)).matches(HttpStatusError("got 148", 148)) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"exit_codes": (256,)}, "exit_codes[0]"),
        ({"exit_codes": (True,)}, "exit_codes[0]"),
        ({"http_status": (99,)}, "http_status[0]"),
        ({"exceptions": (int,)}, "exceptions[0]"),
        ({"exit_codes": 3}, "exit_codes"),
    ],
)
def test_bad_rules_are_refused(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        GiveUpOn(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_success_exit_codes_are_checked() -> None:
    with pytest.raises(SpecError):
        CommandWork(argv=("true",), success_exit_codes=())
    with pytest.raises(SpecError):
        CommandWork(argv=("true",), success_exit_codes=(300,))


# -- in a running tree ----------------------------------------------------------------------------


def test_a_matching_exit_code_gives_up_at_once(make_tree, tmp_path: Path) -> None:
    job = JobSpec(
        name="cfg",
        work=CommandWork(shell="exit 3"),
        restart=RestartType.PERMANENT,
        give_up_on=GiveUpOn(exit_codes=(3,)),
    )
    spec = tree_of(job, policy=ROOMY)
    journal = Journal(tmp_path, hashes=job_hashes(spec))
    try:
        tree = make_tree(spec, on_event=journal.record)
        assert tree.wait(30)
        assert journal.flush()
    finally:
        journal.close()
    node = tree.status()["children"][0]
    assert (node["state"], node["restarts"], node["starts"]) == ("gave_up", 0, 1)
    assert node["last_exit"]["error"].endswith("(give_up_on.exit_codes matched exit code 3)")
    rows = read_history(tmp_path / FILENAME, "cfg")
    assert any("give_up_on.exit_codes matched exit code 3" in json.dumps(r) for r in rows), rows


def test_an_exit_code_not_listed_is_restarted_as_usual(make_tree) -> None:
    job = JobSpec(
        name="other",
        work=CommandWork(shell="exit 4"),
        give_up_on=GiveUpOn(exit_codes=(3,)),
    )
    policy = RestartPolicy(intensity=Intensity(max_restarts=2))
    tree = make_tree(tree_of(job, policy=policy))
    assert tree.wait(30)
    node = tree.status()["children"][0]
    assert (node["state"], node["restarts"]) == ("gave_up", 2)
    assert "give_up_on" not in node["last_exit"]["error"]


def test_a_python_subclass_of_a_listed_exception_gives_up(make_tree) -> None:
    base = python_job("bad", "jobfuncs:fail", "bad")
    job = JobSpec(
        name="bad",
        work=base.work,
        restart=RestartType.PERMANENT,
        give_up_on=GiveUpOn(exceptions=(Exception,)),
    )
    tree = make_tree(tree_of(job, policy=ROOMY))
    assert tree.wait(30)
    node = tree.status()["children"][0]
    assert (node["state"], node["restarts"]) == ("gave_up", 0)
    assert "give_up_on.exceptions matched" in node["last_exit"]["error"]
    assert "(builtins.Exception)" in node["last_exit"]["error"]


def test_an_http_status_gives_up_at_once(make_tree) -> None:
    with HttpKit(default=Reply(410)) as server:
        job = JobSpec(
            name="gone",
            work=HttpWork(url=server.url + "/x"),
            restart=RestartType.PERMANENT,
            give_up_on=GiveUpOn(http_status=(410,)),
        )
        tree = make_tree(tree_of(job, policy=ROOMY))
        assert tree.wait(30)
        node = tree.status()["children"][0]
        assert (node["state"], node["restarts"]) == ("gave_up", 0)
        assert node["last_exit"]["error"].endswith("(give_up_on.http_status matched status 410)")
        assert len(server.requests) == 1


def test_a_listed_success_exit_code_is_a_success(make_tree) -> None:
    job = JobSpec(name="two", work=CommandWork(shell="exit 2", success_exit_codes=(0, 2)))
    tree = make_tree(tree_of(job, policy=ROOMY))
    assert tree.wait(30)
    node = tree.status()["children"][0]
    assert (node["state"], node["failures"]) == ("succeeded", 0)
    assert node["last_exit"]["code"] == 2


def test_zero_fails_when_it_is_not_listed(make_tree) -> None:
    job = JobSpec(name="z", work=CommandWork(shell="exit 0", success_exit_codes=(1,)))
    tree = make_tree(tree_of(job, policy=RestartPolicy(intensity=Intensity(max_restarts=0))))
    assert tree.wait(30)
    assert tree.status()["children"][0]["state"] == "gave_up"


# -- a python job's failure by name, in both isolations (and on Ray, in test_ray) -------------------


def python_tree(make_tree, isolation: str, spelled: str, rule: GiveUpOn, **spec: object) -> dict:
    """Run ``isolatedfuncs:fail_as(spelled)`` under ``rule`` with 2 restarts; its status node."""
    job = JobSpec(
        name="p",
        work=PythonWork(target="isolatedfuncs:fail_as", args=(spelled,), isolation=isolation),
        restart=RestartType.PERMANENT,
        give_up_on=rule,
        **spec,  # type: ignore[arg-type]
    )
    tree = make_tree(tree_of(job, policy=RestartPolicy(intensity=Intensity(max_restarts=2))))
    assert tree.wait(60)
    node: dict = tree.status()["children"][0]
    return node


@pytest.mark.parametrize("isolation", ["thread", "process"])
@pytest.mark.parametrize(
    ("spelled", "rule", "shown"),
    [
        ("ValueError", (ValueError,), "ValueError (builtins.ValueError)"),
        (
            "BadConfigError",
            (isolatedfuncs.ConfigError,),
            "BadConfigError (isolatedfuncs.ConfigError)",
        ),
        ("ConfigError<KeyError", (KeyError,), "KeyError (builtins.KeyError)"),
        (
            "KeyError<ConfigError",
            (isolatedfuncs.ConfigError,),
            "ConfigError (isolatedfuncs.ConfigError)",
        ),
        # A TaskGroup's ExceptionGroup: one of its exceptions (or their causes) suffices.
        ("ValueError+KeyError", (KeyError,), "KeyError (builtins.KeyError)"),
        ("ValueError+ConfigError<KeyError", (KeyError,), "KeyError (builtins.KeyError)"),
        ("ValueError+KeyError", (ExceptionGroup,), "ExceptionGroup (builtins.ExceptionGroup)"),
    ],
)
def test_a_python_failure_gives_up_by_its_classes_and_causes_in_both_isolations(
    make_tree, isolation: str, spelled: str, rule: tuple[type[BaseException], ...], shown: str
) -> None:
    """Under isolation: process, give_up_on.exceptions never matched (not even ValueError):
    the child's error carried only bare names, and the rule read qualified ones."""
    node = python_tree(make_tree, isolation, spelled, GiveUpOn(exceptions=rule))
    assert (node["state"], node["starts"]) == ("gave_up", 1), node["last_exit"]
    # On its first line, which the log's failure line and the summary table show: a child
    # process's error has its traceback below it, after which the rule was unseen (h249).
    first = node["last_exit"]["error"].split("\n", 1)[0]
    assert first.endswith(f"(give_up_on.exceptions matched {shown})")


@pytest.mark.parametrize("isolation", ["thread", "process"])
@pytest.mark.parametrize(
    ("spelled", "rule"),
    [
        ("ValueError", (KeyError,)),
        ("ConfigError", (isolatedfuncs.BadConfigError,)),  # a base is no instance of its subclass
        ("ValueError+ConnectionError", (KeyError,)),
    ],
)
def test_a_python_failure_of_no_listed_class_is_restarted(
    make_tree, isolation: str, spelled: str, rule: tuple[type[BaseException], ...]
) -> None:
    node = python_tree(make_tree, isolation, spelled, GiveUpOn(exceptions=rule))
    assert (node["state"], node["starts"]) == ("gave_up", 3)
    assert "give_up_on" not in node["last_exit"]["error"]


def test_a_suppressed_context_is_no_cause() -> None:
    """``raise X from None`` ends the chain, as the traceback shows it."""
    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise ValueError("v") from None
    except ValueError as exc:
        error = exc
    assert GiveUpOn(exceptions=(KeyError,)).matches(error) is None
    assert GiveUpOn(exceptions=(ValueError,)).matches(error) is not None


def test_a_failures_names_are_bounded_plain_data() -> None:
    """A child sends them with every failed try: a group of thousands, groups nested past
    marshal's depth or a cycle of contexts must neither grow them without end nor break it."""
    wide = ExceptionGroup("wide", [KeyError(i) for i in range(10_000)])
    nested: BaseException = KeyError("deep")
    for _ in range(1_000):
        nested = ExceptionGroup("g", [nested])
    one, other = ValueError(), KeyError()
    one.__context__, other.__context__ = other, one
    for error in (wide, nested, one):
        names = failure_names(error)
        assert marshal.loads(marshal.dumps(names)) == names
        assert len(marshal.dumps(names)) < 64 * 1024
    assert GiveUpOn(exceptions=(KeyError,)).matches(wide) is not None
    assert GiveUpOn(exceptions=(KeyError,)).matches(one) is not None


@pytest.mark.parametrize("isolation", ["thread", "process"])
@pytest.mark.parametrize(
    ("on", "spelled", "calls"),
    [
        (("isolatedfuncs.ConfigError",), "BadConfigError", 3),  # qualified, as give_up_on
        (("ConfigError",), "BadConfigError", 3),  # a bare name still matches any class's name
        (("OSError",), "ConnectionError", 3),  # a builtin by its bare name, subclasses too
        (("builtins.KeyError",), "ConfigError<KeyError", 3),  # in the cause chain
        (("KeyError",), "ValueError", 1),
        # A group is retried when every one of its exceptions is: one that is not listed
        # would escape an ``except*`` of the listed ones, and fails the attempt.
        (("ConnectionError",), "ConnectionError+ConnectionError", 3),
        (("ConnectionError", "KeyError"), "ConnectionError+ValueError<KeyError", 3),
        (("ConnectionError",), "ConnectionError+ConfigError", 1),
    ],
)
def test_retry_on_names_a_python_failure_as_give_up_on_does_in_both_isolations(
    make_tree, tmp_path: Path, *, isolation: str, on: tuple[str, ...], spelled: str, calls: int
) -> None:
    counter = tmp_path / "calls"
    job = JobSpec(
        name="r",
        work=PythonWork(
            target="isolatedfuncs:fail_counted",
            args=(str(counter), 2, spelled),
            isolation=isolation,
        ),
        retry=RetrySpec(attempts=3, wait=RetryWait(initial=0.001, max=0.001, jitter=0), on=on),
    )
    tree = make_tree(tree_of(job, policy=RestartPolicy(intensity=Intensity(max_restarts=0))))
    assert tree.wait(60)
    assert counter.read_text() == str(calls)
    assert tree.status()["children"][0]["state"] == ("succeeded" if calls == 3 else "gave_up")


# -- the manifest ---------------------------------------------------------------------------------


def manifest(jobs: str, defaults: str = "") -> str:
    head = "version: 1\n" + (f"defaults:\n{textwrap.indent(defaults, '  ')}\n" if defaults else "")
    return head + "jobs:\n" + textwrap.indent(textwrap.dedent(jobs).lstrip("\n"), "  ")


def test_the_manifest_builds_both_fields_and_explains_them() -> None:
    m = load_manifest(
        manifest(
            """
            - name: cmd
              command: "exit 3"
              success_exit_codes: [0, 2]
            - name: web
              http: {url: "http://127.0.0.1:1/"}
              give_up_on: {http_status: 404}
            """,
            defaults="give_up_on: {exit_codes: [3, 4], exceptions: [ValueError, json.JSONDecodeError]}",
        ),
        env={},
    )
    cmd, web = m.root.children
    assert isinstance(cmd, JobSpec)
    assert isinstance(web, JobSpec)
    assert cmd.work.success_exit_codes == (0, 2)  # type: ignore[attr-defined]
    assert cmd.give_up_on == GiveUpOn(
        exit_codes=(3, 4), exceptions=(ValueError, json.JSONDecodeError)
    )
    assert web.give_up_on == GiveUpOn(http_status=(404,))  # the job's own replaces the default
    explained = m.explain()
    assert "exits: success_exit_codes=0,2 give_up_on=(exit_codes=[3, 4] exceptions=" in explained
    assert "exits: give_up_on=(http_status=[404])\n" in explained


@pytest.mark.parametrize(
    ("field", "path", "message"),
    [
        ("give_up_on: {exit_codes: [300]}", "jobs[0].give_up_on.exit_codes[0]", "0..255, got 300"),
        (
            "give_up_on: {http_status: [42]}",
            "jobs[0].give_up_on.http_status[0]",
            "100..599, got 42",
        ),
        (
            "give_up_on: {exceptions: [nosuchmod.Err]}",
            "jobs[0].give_up_on.exceptions[0]",
            "importing it failed",
        ),
        (
            "give_up_on: {exceptions: [os.path]}",
            "jobs[0].give_up_on.exceptions[0]",
            "an exception class",
        ),
        ("give_up_on: {signals: [9]}", "jobs[0].give_up_on.signals", "unknown key 'signals'"),
        ("give_up_on: 3", "jobs[0].give_up_on", "a mapping with exit_codes"),
        ("success_exit_codes: [-1]", "jobs[0].success_exit_codes[0]", "0..255, got -1"),
        ("success_exit_codes: []", "jobs[0].success_exit_codes", "non-empty"),
    ],
)
def test_bad_values_name_path_and_line(field: str, path: str, message: str) -> None:
    text = manifest(f"""
        - name: a
          command: "true"
          {field}
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    issues = [i for i in caught.value.issues if i.path == path]
    assert issues, caught.value.issues
    assert issues[0].line == 5
    assert message in issues[0].message


def test_success_exit_codes_on_a_python_job_are_refused() -> None:
    text = manifest("""
        - name: a
          python: "os:getcwd"
          success_exit_codes: [2]
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    (issue,) = caught.value.issues
    assert "expected success_exit_codes only on command jobs" in issue.message


def test_an_exception_class_beside_the_manifest_is_found_as_its_python_jobs_are(
    tmp_path: Path,
) -> None:
    """`python: mod:f` ran a module beside the manifest, but `give_up_on.exceptions:
    [mod.Err]` of the same module failed validation: No module named 'mod'."""
    name = f"jv_beside_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("class Boom(Exception):\n    pass\n\ndef f():\n    pass\n")
    path = tmp_path / "jobs.yaml"
    path.write_text(
        manifest(f"""
            - name: a
              python: "{name}:f"
              give_up_on: {{exceptions: [{name}.Boom]}}
            """)
    )
    before = list(sys.path)
    try:
        m = load_manifest(path, env={})
        (job,) = m.root.children
        assert isinstance(job, JobSpec)
        (cls,) = job.give_up_on.exceptions  # type: ignore[union-attr]
        assert (cls.__module__, cls.__name__) == (name, "Boom")
        assert sys.path == before, "the manifest's directory was only looked in"
    finally:
        sys.modules.pop(name, None)


# -- retry.on of a python job: the spellings give_up_on takes, checked alike -----------------------


def test_retry_on_of_a_python_job_takes_give_up_on_spellings() -> None:
    m = load_manifest(
        manifest(
            """
            - name: a
              python: "isolatedfuncs:fail_as"
              retry: {attempts: 2, on: [isolatedfuncs.ConfigError, ConnectionError]}
            - name: b
              python: "isolatedfuncs:fail_as"
            - name: c
              command: "exit 3"
              retry: {attempts: 2, on: ["exit:3", signal]}
            """,
            defaults="retry: {attempts: 2, on: [json.JSONDecodeError]}",
        ),
        env={},
    )
    a, b, c = m.root.children
    assert isinstance(a, JobSpec)
    assert isinstance(b, JobSpec)
    assert isinstance(c, JobSpec)
    assert a.retry.on == ("isolatedfuncs.ConfigError", "builtins.ConnectionError")
    # As the class names itself (json.decoder), so the failure's names meet it.
    assert b.retry.on == ("json.decoder.JSONDecodeError",)
    assert c.retry.on == ("exit:3", "signal")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        # A typo validated, and the job was never retried.
        ("ConectionError", "expected an importable exception class as module.Class, got "),
        # A class of the user's by its bare name: where it lives is not said.
        ("ConfigError", "a bare name is a builtin"),
        ("nosuchmod.Err", "importing it failed"),
        ("os.path", "an exception class"),
    ],
)
def test_retry_on_of_a_python_job_is_checked_as_give_up_on_is(name: str, message: str) -> None:
    bare = "." not in name  # retry.on's bare names: a warning (they always matched by name)
    for field, path in (
        (f"retry: {{attempts: 2, on: [{name}]}}", "jobs[0].retry.on[0]"),
        (f"give_up_on: {{exceptions: [{name}]}}", "jobs[0].give_up_on.exceptions[0]"),
    ):
        text = manifest(f"""
            - name: a
              python: "isolatedfuncs:fail_as"
              {field}
            """)
        if bare and field.startswith("retry"):
            m = load_manifest(text, env={})
            (job,) = m.root.children
            assert isinstance(job, JobSpec)
            assert job.retry.on == (name,)
            (warning,) = [w for w in m.warnings if w.path == path]
            assert warning.line == 5
            assert f"{name} is no builtin exception: it matches a class of any module" in (
                warning.message
            )
            assert "write module.Class" in warning.message
            continue
        with pytest.raises(ManifestError) as caught:
            load_manifest(text, env={})
        issues = [i for i in caught.value.issues if i.path == path]
        assert issues, caught.value.issues
        assert issues[0].line == 5
        assert message in issues[0].message
    if bare:
        return
    messages = set()
    for field in (f"retry: {{on: [{name}]}}", f"give_up_on: {{exceptions: [{name}]}}"):
        text = manifest(f"""
            - name: a
              python: "isolatedfuncs:fail_as"
              {field}
            """)
        with pytest.raises(ManifestError) as caught:
            load_manifest(text, env={})
        messages.add(caught.value.issues[0].message)
    assert len(messages) == 1, messages  # one check, one message


def test_retry_on_of_a_python_job_inherited_from_defaults_is_checked() -> None:
    text = manifest(
        """
        - name: a
          python: "isolatedfuncs:fail_as"
        """,
        defaults="retry: {attempts: 2, on: [ConectionError, nosuchmod.Err]}",
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    assert any("nosuchmod.Err" in i.message for i in caught.value.issues), caught.value.issues
    text = manifest(
        """
        - name: a
          python: "isolatedfuncs:fail_as"
        """,
        defaults="retry: {attempts: 2, on: [ConectionError]}",
    )
    m = load_manifest(text, env={})
    assert any("ConectionError is no builtin exception" in w.message for w in m.warnings)


@pytest.mark.parametrize("name", ["503", "exit:3", "connection error"])
def test_retry_on_of_a_python_job_refuses_what_no_class_can_be_named(name: str) -> None:
    """Taken with a warning that it "matches a class of any module named so" (h249)."""
    text = manifest(f"""
        - name: p
          python: "isolatedfuncs:fail_as"
          retry: {{attempts: 2, on: ["{name}"]}}
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    (issue,) = caught.value.issues
    assert issue.path == "jobs[0].retry.on[0]", issue
    assert "expected an importable exception class as module.Class" in issue.message


@pytest.mark.parametrize("name", ["exti:3", "exit:x", "exit:", "signals", "timeout"])
def test_retry_on_of_a_command_job_is_checked(name: str) -> None:
    """A typo of ``exit:N`` or ``signal`` validated and never retried anything."""
    text = manifest(f"""
        - name: c
          command: "exit 3"
          retry: {{attempts: 2, on: ["exit:3", "{name}"]}}
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    (issue,) = caught.value.issues
    assert (issue.path, issue.line) == ("jobs[0].retry.on[1]", 5)
    assert "expected exit:N (N a number) or signal" in issue.message, issue.message
