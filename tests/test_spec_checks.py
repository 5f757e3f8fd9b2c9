"""Specs built in code get the checks a manifest gets: a bad one is a SpecError when it is built.

A spec a program builds never went through the manifest's reader, so whatever the
manifest refuses (a dependency cycle, a ``depends_on`` naming no sibling, a value of
the wrong kind) must be refused by the spec itself, or the tree runs it and
misbehaves (two jobs pending for ever, a strategy given as a string ending the
root with an internal error).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import pathlib
import pickle
import sys
import threading
import types
import typing
from dataclasses import replace

import jobfuncs
import pykka
import pytest
from treekit import tree_of

import actors
import supervision
from supervision import (
    ActorSpec,
    JobSpec,
    OnExhausted,
    PythonWork,
    RestartPolicy,
    RestartType,
    Schedule,
    SpecError,
    Strategy,
    SupervisorSpec,
    python_job,
)


def job(name: str, *deps: str) -> JobSpec:
    return JobSpec(name=name, work=PythonWork(target="jobfuncs:ok"), depends_on=deps)


class Idle(pykka.ThreadingActor):
    pass


# -- depends_on ----------------------------------------------------------------------------------


def test_a_dependency_cycle_is_refused_as_the_manifest_refuses_it() -> None:
    with pytest.raises(SpecError) as caught:
        SupervisorSpec(children=(job("a", "b"), job("b", "a")))
    assert str(caught.value) == "a: depends_on: expected no dependency cycle, got a -> b -> a"
    assert caught.value.field == "depends_on"
    assert caught.value.expected == "no dependency cycle"


def test_the_cycle_told_is_a_shortest_one_from_the_first_job_in_it() -> None:
    children = (job("x"), job("a", "x", "c"), job("b", "a"), job("c", "b", "a"), job("d", "c"))
    with pytest.raises(SpecError) as caught:
        SupervisorSpec(name="g", children=children)
    assert str(caught.value) == "a: depends_on: expected no dependency cycle, got a -> c -> a"


def test_a_long_chain_is_no_cycle() -> None:
    chain = tuple(job(f"j{i}", *((f"j{i - 1}",) if i else ())) for i in range(3000))
    assert len(SupervisorSpec(children=chain).children) == 3000


def test_depends_on_naming_no_sibling_is_refused_with_the_names_there_are() -> None:
    from supervision._spec import check_known_dependencies

    # Checked as a tree starts (start_tree), not as a spec is built: jobvisor rebuilds a
    # running group's spec from what it runs, which may name a sibling removed since.
    spec = SupervisorSpec(children=(job("db"), job("app", "dbb")))
    with pytest.raises(SpecError) as caught:
        check_known_dependencies(spec)
    assert str(caught.value) == (
        "app: depends_on: expected the name of a sibling (app, db), got 'dbb' (did you mean 'db'?)"
    )
    assert caught.value.field == "depends_on"
    assert caught.value.got == "dbb"


def test_depends_on_may_name_a_group_or_an_actor() -> None:
    group = SupervisorSpec(name="g", children=(job("x"),))
    actor = ActorSpec(name="cache", actor_class=Idle)
    spec = SupervisorSpec(children=(group, actor, job("app", "g", "cache")))
    assert spec.children[2].depends_on == ("g", "cache")  # type: ignore[union-attr]


def test_a_plain_string_for_depends_on_is_refused_and_a_list_is_taken() -> None:
    with pytest.raises(SpecError) as caught:
        JobSpec(name="app", work=PythonWork(target="jobfuncs:ok"), depends_on="db")  # type: ignore[arg-type]
    assert str(caught.value) == "depends_on: expected a list of sibling names, got 'db'"
    spec = JobSpec(name="app", work=PythonWork(target="jobfuncs:ok"), depends_on=["db"])  # type: ignore[arg-type]
    assert spec.depends_on == ("db",)  # a tuple, as the manifest makes it: equal specs compare


def test_a_job_depending_on_itself_names_the_field() -> None:
    with pytest.raises(SpecError) as caught:
        job("app", "db", "app")
    assert str(caught.value) == (
        "app: depends_on: expected the name of another sibling, not the job's own, got 'app'"
    )
    assert caught.value.field == "depends_on"


def test_a_job_added_later_is_checked_against_the_siblings_it_joins() -> None:
    from supervision._spec import check_added_dependencies

    siblings = (job("db"), job("web", "db"))
    check_added_dependencies(job("app", "db", "web"), siblings)
    with pytest.raises(SpecError) as caught:
        check_added_dependencies(job("app", "nope"), siblings)
    assert str(caught.value) == (
        "app: depends_on: expected the name of a sibling (app, db, web), got 'nope'"
    )
    # A sibling may still name one removed since; the name coming back can close a cycle.
    with pytest.raises(SpecError) as caught:
        check_added_dependencies(job("gone", "web"), (job("db"), job("web", "gone")))
    assert str(caught.value) == (
        "web: depends_on: expected no dependency cycle, got web -> gone -> web"
    )
    check_added_dependencies(ActorSpec(name="cache", actor_class=Idle), ())


# -- enum fields given as their value --------------------------------------------------------------


def test_an_enums_value_as_a_string_is_taken_as_the_enum() -> None:
    spec = SupervisorSpec(strategy="one_for_all", restart="temporary")  # type: ignore[arg-type]
    assert spec.strategy is Strategy.ONE_FOR_ALL
    assert spec.restart is RestartType.TEMPORARY
    assert python_job("j", "jobfuncs:ok", restart="permanent").restart is RestartType.PERMANENT  # type: ignore[arg-type]
    actor = ActorSpec(name="a", actor_class=Idle, restart="transient")  # type: ignore[arg-type]
    assert actor.restart is RestartType.TRANSIENT
    policy = RestartPolicy(on_exhausted="cooldown")  # type: ignore[arg-type]
    assert policy.on_exhausted is OnExhausted.COOLDOWN
    assert policy == RestartPolicy(on_exhausted=OnExhausted.COOLDOWN)


@pytest.mark.parametrize(
    ("build", "said"),
    [
        (
            lambda: SupervisorSpec(strategy="one-for-all"),
            (
                "strategy: expected one of one_for_one, one_for_all, rest_for_one "
                "(a Strategy), got 'one-for-all'"
            ),
        ),
        (
            lambda: SupervisorSpec(restart=1),
            "restart: expected one of permanent, transient, temporary (a RestartType), got 1",
        ),
        (
            lambda: python_job("etl", "jobfuncs:ok", restart="PERMANENT"),
            (
                "etl: restart: expected one of permanent, transient, temporary (a RestartType), "
                "got 'PERMANENT'"
            ),
        ),
        (
            lambda: RestartPolicy(on_exhausted=None),
            "on_exhausted: expected one of give_up, escalate, cooldown (an OnExhausted), got None",
        ),
        (
            lambda: SupervisorSpec(policy="fast"),
            "SupervisorSpec.policy: expected a RestartPolicy, got 'fast' (a string)",
        ),
    ],
)
def test_a_bad_enum_value_is_refused_naming_the_field_and_the_choices(build, said: str) -> None:
    with pytest.raises(SpecError) as caught:
        build()
    assert str(caught.value) == said


def test_a_restart_given_as_its_string_runs_as_that_restart(make_tree, events) -> None:
    """ "permanent" ran as transient: the decision compares restart types by identity."""
    policy = RestartPolicy(
        backoff=supervision.Backoff(initial=0.001, max=0.005, jitter=0),
        intensity=supervision.Intensity(max_restarts=2, within=60),
    )
    spec = tree_of(python_job("j", "jobfuncs:ok", "j", restart="permanent"), policy=policy)  # type: ignore[arg-type]
    make_tree(spec, on_event=events)
    events.reached("j", "gave_up")
    assert jobfuncs.CALLS["j"] == 3  # the first run and two restarts of a job that succeeded


def test_a_strategy_given_as_its_string_runs_as_that_strategy(make_tree, events) -> None:
    """ "one_for_all" ended the root with an internal error (AttributeError on .value)."""
    spec = replace(
        tree_of(
            python_job("a", "jobfuncs:block", "a", schedule=Schedule(service=True)),
            python_job("b", "jobfuncs:fail_times", "b", 1),
        ),
        strategy="one_for_all",  # type: ignore[arg-type]
    )
    tree = make_tree(spec, on_event=events)
    events.reached("b", "succeeded")
    events.reached("a", "running", times=2)  # restarted with b: one_for_all
    assert tree.status()["state"] == "running"


# -- fields of the wrong type ----------------------------------------------------------------------

_WORK = PythonWork(target="jobfuncs:ok")


@pytest.mark.parametrize(
    ("build", "said"),
    [
        (
            lambda: RestartPolicy(backoff={"initial": 1}),
            (
                "RestartPolicy.backoff: expected a Backoff, got {'initial': ...} "
                "(a mapping: write Backoff(initial=1))"
            ),
        ),
        (
            lambda: RestartPolicy(intensity=5),
            "RestartPolicy.intensity: expected an Intensity, got 5 (an integer)",
        ),
        (
            lambda: RestartPolicy(cooldown="x"),
            "RestartPolicy.cooldown: expected a CooldownPolicy, got 'x' (a string)",
        ),
        (
            lambda: RestartPolicy(budget="x"),
            "RestartPolicy.budget: expected a Budget or None, got 'x' (a string)",
        ),
        (
            lambda: JobSpec(name="a", work="work:poller"),
            (
                "JobSpec.work: expected a job's work: a PythonWork, CommandWork, HttpWork or a "
                "Work (an object with a str kind and a run()), got 'work:poller' (a string: a python function is python_job('a', 'work:poller') or "
                "work=PythonWork(target='work:poller'); a command CommandWork(argv=[...]) or "
                "CommandWork(shell='...'); a URL HttpWork(url='...'))"
            ),
        ),
        (
            lambda: JobSpec(name="a", work=None),
            (
                "JobSpec.work: expected a job's work: a PythonWork, CommandWork, HttpWork or a "
                "Work (an object with a str kind and a run()), got None"
            ),
        ),
        (
            lambda: JobSpec(name="a", work=_WORK, schedule={"every": 1}),
            (
                "JobSpec.schedule: expected a Schedule, got {'every': ...} "
                "(a mapping: write Schedule(every=1))"
            ),
        ),
        (
            lambda: python_job("a", "jobfuncs:ok", schedule={"every": 1}),
            (
                "a: JobSpec.schedule: expected a Schedule, got {'every': ...} "
                "(a mapping: write Schedule(every=1))"
            ),
        ),
        (
            lambda: JobSpec(name="a", work=_WORK, retry={"attempts": 3}),
            (
                "JobSpec.retry: expected a RetrySpec or None, got {'attempts': ...} "
                "(a mapping: write RetrySpec(attempts=3))"
            ),
        ),
        (
            lambda: JobSpec(name="a", work=_WORK, breaker=supervision.BreakerSpec()),
            (
                "JobSpec.breaker: expected the name of a breaker in start_tree(breakers=...), or "
                "None, got BreakerSpec(failure_threshold=5, reset_timeout=30.0, "
                "half_open_max_calls=1) (a BreakerSpec)"
            ),
        ),
        (
            lambda: JobSpec(name="a", work=_WORK, ready="localhost:80"),
            "JobSpec.ready: expected a ReadyProbe or None, got 'localhost:80' (a string)",
        ),
        (
            lambda: JobSpec(name="a", work=_WORK, give_up_on=(2,)),
            "JobSpec.give_up_on: expected a GiveUpOn or None, got (2,) (a tuple)",
        ),
        (
            lambda: JobSpec(name="a", work=_WORK, notify=("http://x",)),
            "JobSpec.notify: expected a tuple of NotifySpec, got ('http://x',) (a tuple)",
        ),
        (
            lambda: ActorSpec(name="a", actor_class=Idle, args="xy"),
            "ActorSpec.args: expected a tuple of arguments, got 'xy' (a string)",
        ),
        (
            lambda: ActorSpec(name="a", actor_class=Idle, kwargs=[("k", 1)]),
            "ActorSpec.kwargs: expected a mapping of keyword arguments, got [('k', 1)] (a list)",
        ),
        (
            lambda: SupervisorSpec(policy={"intensity": 1}),
            ("SupervisorSpec.policy: expected a RestartPolicy, got {'intensity': ...} (a mapping)"),
        ),
        (
            lambda: SupervisorSpec(notify="ops"),
            "SupervisorSpec.notify: expected a tuple of NotifySpec, got 'ops' (a string)",
        ),
        (
            lambda: supervision.LoggingSpec(rotate={"max_bytes": 5}),
            (
                "LoggingSpec.rotate: expected a RotateSpec or None, got {'max_bytes': ...} "
                "(a mapping: write RotateSpec(max_bytes=5))"
            ),
        ),
        (
            lambda: supervision.LoggingSpec(file=3),
            "LoggingSpec.file: expected a file name or None, got 3 (an integer)",
        ),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_naming_class_field_value_and_type(
    build, said: str
) -> None:
    """Each was taken and failed later: at the first failure ("root: internal error: 'dict'
    object has no attribute 'delay'"), at every attempt ("'str' object has no attribute
    'run'"), or in start_tree and status() (AttributeError 'window', 'finite', 'kind')."""
    with pytest.raises(SpecError) as caught:
        build()
    assert str(caught.value) == said


def test_the_field_and_value_of_a_wrong_type_are_the_errors_attributes() -> None:
    with pytest.raises(SpecError) as caught:
        RestartPolicy(backoff={"initial": 1})
    assert (caught.value.field, caught.value.got) == ("backoff", {"initial": 1})
    assert caught.value.expected == "a Backoff"


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(SpecError) as caught:
        RestartPolicy(intensity=list(range(1000)))
    message = str(caught.value)
    assert message.startswith("RestartPolicy.intensity: expected an Intensity, got [0, 1, 2, ")
    assert message.endswith("... (a list)")
    assert len(message) < 300


def test_lists_are_taken_where_a_tuple_is_and_every_right_type_still_builds() -> None:
    from supervision import (
        Budget,
        CooldownPolicy,
        GiveUpOn,
        NotifyEvent,
        NotifySpec,
        ReadyProbe,
        RetrySpec,
    )

    notify = NotifySpec(on=tuple(NotifyEvent), command=("true",))
    spec = JobSpec(
        name="a",
        work=_WORK,
        schedule=Schedule(every=1),
        retry=RetrySpec(),
        breaker="db",
        ready=ReadyProbe(tcp="127.0.0.1:1"),
        give_up_on=GiveUpOn(exit_codes=(2,)),
        notify=[notify],  # type: ignore[arg-type]
    )
    assert spec.notify == (notify,)
    actor = ActorSpec(name="c", actor_class=Idle, args=[1, 2], kwargs={"k": 1})  # type: ignore[arg-type]
    assert actor.args == (1, 2)
    policy = RestartPolicy(budget=Budget(), cooldown=CooldownPolicy())
    group = SupervisorSpec(policy=policy, notify=[notify], children=(spec, actor))  # type: ignore[arg-type]
    assert group.notify == (notify,)
    assert supervision.LoggingSpec(file=pathlib.Path("jv.log")).file == pathlib.Path("jv.log")


def test_a_child_path_that_is_no_string_is_a_spec_error_naming_method_and_value() -> None:
    from supervision._spec import child_path

    assert child_path("/etl/load/", "restart") == ("etl", "load")
    assert child_path("", "add_child", param="under", empty=True) == ()
    with pytest.raises(SpecError) as caught:
        child_path(5, "restart")
    assert str(caught.value) == (
        "Tree.restart: path: expected a child path like 'etl/load' (a string), got 5 (an integer)"
    )
    assert (caught.value.field, caught.value.got) == ("path", 5)
    with pytest.raises(SpecError) as caught:
        child_path(["etl"], "add_child", param="under", empty=True)
    assert str(caught.value) == (
        "Tree.add_child: under: expected a child path like 'etl/load' (a string), got ['etl'] "
        "(a list)"
    )
    with pytest.raises(SpecError) as caught:
        child_path("/", "stop_child")
    assert str(caught.value) == (
        "Tree.stop_child: path: expected a child path like 'etl/load', got '/'"
    )


def test_tree_restart_of_a_path_that_is_no_string_is_a_spec_error(make_tree) -> None:
    """tree.restart(5) raised AttributeError: 'int' object has no attribute 'strip'."""
    tree = make_tree(
        tree_of(python_job("j", "jobfuncs:block", "j", schedule=Schedule(service=True)))
    )
    assert tree.started(10)
    with pytest.raises(SpecError, match=r"^Tree\.restart: path: expected a child path"):
        tree.restart(5)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"^Tree\.stop_child: path: .* got None$"):
        tree.stop_child(None)  # type: ignore[arg-type]
    assert tree.status()["children"][0]["state"] == "running"


def test_a_tree_of_a_policy_with_a_dict_backoff_is_never_started(make_tree) -> None:
    """It started, and at the first failure the root died of an internal error while wait()
    returned True and status() showed the child running."""
    with pytest.raises(SpecError, match=r"^RestartPolicy\.backoff: "):
        make_tree(
            tree_of(
                python_job("j", "jobfuncs:fail", "j"),
                policy=RestartPolicy(
                    backoff={"initial": 1}  # type: ignore[arg-type]
                ),
            )
        )


# -- what the public signatures name is exported -------------------------------------------------

_OURS = ("actors", "supervision")
# Dataclasses jobvisor hands a program (load_manifest's, current_attempt's) and that it
# never builds: what their fields take is not something a program names.
_HANDED_OUT = ("Manifest", "Attempt")


def _classes_in(hint: object) -> typing.Iterator[type]:
    """The classes a type hint names, through unions, generics and Callable."""
    if isinstance(hint, type) and not typing.get_args(hint):
        yield hint
    origin = typing.get_origin(hint)
    if isinstance(origin, type) and origin is not types.UnionType:
        yield origin
    for arg in typing.get_args(hint):
        if isinstance(arg, list):  # Callable's parameters
            for inner in arg:
                yield from _classes_in(inner)
        else:
            yield from _classes_in(arg)


class _Names(dict[str, object]):
    """Where a hint's names are looked up past its module's globals: our modules import what
    only annotations use under ``TYPE_CHECKING``, so it is found in the module defining it."""

    def __missing__(self, name: str) -> object:
        for space in (collections.abc, typing):
            if hasattr(space, name):
                return getattr(space, name)
        if name in sys.modules:  # a module named in a hint: threading.Event
            return sys.modules[name]
        for module in list(sys.modules.values()):
            if module.__name__.split(".")[0] in _OURS and isinstance(vars(module).get(name), type):
                return vars(module)[name]
        raise KeyError(name)


def _hints(obj: object) -> dict[str, object]:
    """What a function's parameters or a dataclass's fields take (those a caller gives)."""
    if inspect.isclass(obj):
        if not dataclasses.is_dataclass(obj) or obj.__name__ in _HANDED_OUT:
            return {}  # handles and errors jobvisor makes, which a program does not
        hints = typing.get_type_hints(obj, localns=_Names())
        return {f.name: hints[f.name] for f in dataclasses.fields(obj) if f.init}
    if inspect.isfunction(obj):
        return typing.get_type_hints(obj, localns=_Names())
    return {}


def _unexported(package: types.ModuleType) -> dict[str, set[str]]:
    """Of the classes named by the parameters of ``package``'s public callables (and of the
    classes those name, and so on), ours that ``package`` does not export: by who names them."""
    exported = {id(getattr(package, name)) for name in package.__all__}
    todo = [getattr(package, name) for name in package.__all__]
    seen: set[int] = set()
    missing: dict[str, set[str]] = {}
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for param, hint in _hints(obj).items():
            if param == "return":
                continue
            for cls in _classes_in(hint):
                if cls.__module__.split(".")[0] not in _OURS or getattr(cls, "_is_protocol", False):
                    continue  # a protocol (Work) is met by exported classes, not named
                if id(cls) not in exported:
                    missing.setdefault(cls.__name__, set()).add(f"{obj.__name__}.{param}")
                todo.append(cls)
    return missing


@pytest.mark.parametrize("package", [supervision, actors], ids=lambda p: p.__name__)
def test_every_type_a_public_signature_takes_is_exported(package: types.ModuleType) -> None:
    assert _unexported(package) == {}


def test_a_group_whose_dependency_was_removed_stops_cleanly(make_tree, logs) -> None:
    # Its spec is rebuilt from what it runs as it ends: ``app`` names ``db``, removed since.
    # The check of a known sibling at every build made that rebuild fail ("internal error").
    from supervision._table import flatten_status

    def svc(name: str, *deps: str) -> JobSpec:
        return replace(
            python_job(name, "jobfuncs:block", name),
            schedule=Schedule(service=True),
            depends_on=deps,
        )

    group = SupervisorSpec(name="g", children=(svc("db"), svc("app", "db")))
    tree = make_tree(SupervisorSpec(children=(group,)))
    assert tree.started(10)
    tree.remove_child("g/db")
    tree.stop_child("g")
    assert {n["path"]: n["state"] for n in flatten_status(tree.status())}["g"] == "stopped"
    assert not [r.message for r in logs.records if "internal error" in r.message]


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"argv": 5}, "CommandWork.argv: expected a list of strings, got 5 (an integer)"),
        ({"argv": "ls -l"}, "CommandWork.argv: expected a list of strings, got 'ls -l' (a string)"),
        (
            {"shell": "true", "env": 5},
            "CommandWork.env: expected a mapping of names to strings, got 5 (an integer)",
        ),
        (
            {"argv": ("true",), "user": 5},
            "CommandWork.user: expected a RunAs, the name of a user, or None, got 5 (an integer)",
        ),
    ],
)
def test_a_commands_field_of_the_wrong_type_is_a_spec_error_naming_class_and_field(
    fields: dict[str, object], said: str
) -> None:
    """``argv=5`` was a TypeError, ``env=5`` an AttributeError."""
    with pytest.raises(SpecError) as caught:
        actors.CommandWork(**fields)  # type: ignore[arg-type]
    assert str(caught.value) == said
    assert caught.value.field == said.split(":", maxsplit=1)[0].split(".")[1]


def test_a_commands_user_that_does_not_exist_asks_for_a_runas() -> None:
    with pytest.raises(SpecError) as caught:
        actors.CommandWork(argv=("true",), user="no-such-user-h42f")
    said = str(caught.value)
    assert said.startswith("CommandWork.user: "), said
    assert "RunAs(" in said, said
    assert "no-such-user-h42f" in said, said


# -- a Work of a program's own, and what a refusal shows -------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldKind:
    """A Work whose kind is a slots dataclass field: the class holds a descriptor, not a str."""

    kind: str = "echo"
    ran: threading.Event = dataclasses.field(default_factory=threading.Event)

    def run(self, attempt: object) -> int:
        self.ran.set()
        return 0

    def cancel(self, attempt: object) -> None:
        pass

    def describe(self) -> str:
        return "echo"

    def retryable(self, exc: BaseException, on: tuple[str, ...]) -> bool:
        return False

    def retry_after(self, exc: BaseException) -> float | None:
        return None


class _KindProperty:
    """A Work whose kind is a property."""

    def __init__(self) -> None:
        self.ran = threading.Event()

    @property
    def kind(self) -> str:
        return "echo"

    def run(self, attempt: object) -> int:
        self.ran.set()
        return 0

    def cancel(self, attempt: object) -> None:
        pass

    def describe(self) -> str:
        return "echo"

    def retryable(self, exc: BaseException, on: tuple[str, ...]) -> bool:
        return False

    def retry_after(self, exc: BaseException) -> float | None:
        return None


@pytest.mark.parametrize("make", [_FieldKind, _KindProperty], ids=["slots-field", "property"])
def test_a_work_whose_kind_is_on_the_object_is_taken_and_runs(make_tree, make) -> None:
    """Refused once the check read kind from the class: it had run before."""
    work = make()
    tree = make_tree(SupervisorSpec(children=(JobSpec(name="e", work=work),)))
    assert work.ran.wait(10)
    assert tree.status()["children"][0]["name"] == "e"


def test_a_work_class_given_for_an_instance_is_refused_saying_what_a_work_is() -> None:
    with pytest.raises(SpecError) as caught:
        JobSpec(name="a", work=PythonWork)  # type: ignore[arg-type]
    assert "a Work (an object with a str kind and a run())" in str(caught.value)
    assert str(caught.value).endswith(
        "got <class 'actors._python.PythonWork'> (the class PythonWork)"
    )


def test_tree_update_group_of_a_path_that_is_no_string_is_a_spec_error(make_tree) -> None:
    """update_group(spec, 5) raised AttributeError: 'int' object has no attribute 'strip'."""
    spec = tree_of(python_job("j", "jobfuncs:block", "j", schedule=Schedule(service=True)))
    tree = make_tree(spec)
    assert tree.started(10)
    with pytest.raises(SpecError) as caught:
        tree.update_group(spec, 5)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "Tree.update_group: path: expected a child path like 'etl/load' (a string), got 5 "
        "(an integer)"
    )
    tree.update_group(spec, "/")  # the root, as ""
    assert tree.status()["children"][0]["state"] == "running"


def test_a_mapping_hint_is_left_out_when_long_nested_or_it_would_not_build() -> None:
    cases = [
        (lambda: RestartPolicy(backoff={f"k{i}": i for i in range(20)}), "a Backoff"),
        (lambda: SupervisorSpec(policy={"backoff": {"initial": 1}}), "a RestartPolicy"),
        (lambda: RestartPolicy(backoff={"initial": "1s"}), "a Backoff"),
        (lambda: RestartPolicy(backoff={"initial": 1, "max": 0.5}), "a Backoff"),
    ]
    for build, expected in cases:
        with pytest.raises(SpecError) as caught:
            build()
        message = str(caught.value)
        assert "write" not in message, message
        assert f"expected {expected}, got {{" in message, message
        assert message.endswith(" (a mapping)"), message
        assert len(message) < 300, message
    with pytest.raises(SpecError) as caught:
        SupervisorSpec(policy={"backoff": {"initial": 1}})
    assert str(caught.value) == (
        "SupervisorSpec.policy: expected a RestartPolicy, got {'backoff': ...} (a mapping)"
    )


@pytest.mark.parametrize(
    ("build", "secret"),
    [
        (
            lambda: JobSpec(
                name="a", work=_WORK, notify=[{"url": "https://hooks.example/T0/s3cr3t"}]
            ),
            "s3cr3t",
        ),
        (lambda: JobSpec(name="a", work=_WORK, ready={"http": "https://u:s3cr3t@h/"}), "s3cr3t"),
        (
            lambda: JobSpec(
                name="a",
                work={"url": "http://h/", "headers": {"Authorization": "Bearer s3cr3t"}},
            ),
            "s3cr3t",
        ),
        (lambda: SupervisorSpec(notify={"token": "s3cr3t"}), "s3cr3t"),
    ],
)
def test_a_mapping_refused_shows_its_keys_never_its_values(build, secret: str) -> None:
    """A webhook URL or an Authorization header landed verbatim in the SpecError text."""
    with pytest.raises(SpecError) as caught:
        build()
    message = str(caught.value)
    assert secret not in message, message
    assert secret not in (caught.value.shown or ""), caught.value.shown
    assert "'" in message  # the keys are shown


def test_the_mapping_keys_are_shown_as_written_with_the_values_left_out() -> None:
    with pytest.raises(SpecError) as caught:
        JobSpec(name="a", work=_WORK, notify=[{"url": "https://h/x", "on": ["failed"]}])
    assert str(caught.value) == (
        "JobSpec.notify: expected a tuple of NotifySpec, got [{'url': ..., 'on': ...}] (a list)"
    )


def test_a_spec_error_of_a_value_that_does_not_pickle_pickles() -> None:
    """work=lambda: 0 gave a SpecError that could not be pickled (to a Ray worker, a pool)."""
    with pytest.raises(SpecError) as caught:
        JobSpec(name="a", work=lambda: 0)  # type: ignore[arg-type]
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value)
    assert copy.got.startswith("<function ")  # its repr, as the message shows it
    with pytest.raises(SpecError) as caught:
        supervision._spec.child_path(lambda: 0, "restart")
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)
