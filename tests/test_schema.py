"""``jobvisor schema``: the manifest's JSON Schema agrees with the loader.

Every manifest the loader accepts validates against the schema (the repo's
manifests, and manifests generated over every field of the schema's own
shapes), and a value of a wrong type, which the loader refuses, the schema
refuses too. The check is ``jsonschema``'s draft 2020-12 validator.
"""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervision._defaults import FOR_KINDS, KINDS
from supervision._fields import (
    DEFAULTS,
    GROUP,
    JOB,
    MANIFEST,
    AnyOf,
    Choice,
    Const,
    Count,
    Fields,
    Leaf,
    ListOf,
    MapOf,
    Named,
    Shape,
    fields_of,
    json_schema,
)
from supervision._manifest import ManifestError, load_manifest
from supervision._yaml import read_yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
ENV = {"D": "5s", "N": "3", "B": "true", "T": "text", "S": "10MiB", "K": "k3y-value"}
GENERATED = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def schema_errors(data: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in VALIDATOR.iter_errors(data)
    ]


def loads(data: Any) -> bool:
    """Whether the loader accepts ``data``, read from YAML text as a user's file would be."""
    text = yaml.safe_dump(data, sort_keys=False)
    try:
        load_manifest(text if "\n" in text else text + "\n", env=ENV)
    except ManifestError:
        return False
    return True


# -- the schema itself ----------------------------------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(SCHEMA["properties"]) == set(MANIFEST.types)
    assert SCHEMA["required"] == ["version", "jobs"]


def test_jobvisor_schema_prints_it() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert json.loads(out.stdout) == json.loads(json.dumps(SCHEMA))


def test_a_field_without_a_type_fails_at_import() -> None:
    with pytest.raises(RuntimeError, match=r"untyped \['b'\], unknown \['c'\]"):
        fields_of(("a", "b"), {"a": Leaf("count"), "c": Leaf("count")})


def test_the_schema_knows_every_field_the_loader_reads() -> None:
    # The loader's own key tuples are the schema's: a job, a group and defaults.
    job = SCHEMA["$defs"]["job"]
    assert set(job["properties"]) == set(JOB.types)
    assert set(SCHEMA["$defs"]["group"]["properties"]) == set(GROUP.types)
    defaults = SCHEMA["properties"]["defaults"]["anyOf"][0]["properties"]
    assert set(defaults) == set(DEFAULTS.types)
    assert {"name", "depends_on"}.isdisjoint(defaults)


# -- accepted manifests validate ------------------------------------------------------------------


def _repo_manifests() -> list[Path]:
    found = [ROOT / "jobs.yaml", *sorted((ROOT / "examples").glob("**/*.yaml"))]
    found += sorted((ROOT / "tests" / "manifests").glob("**/*.yaml"))
    found += sorted((ROOT / "bench").glob("*.yaml"))
    return [path for path in found if path.is_file()]


@pytest.mark.parametrize("path", _repo_manifests(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_in_the_repo_that_loads_validates(path: Path) -> None:
    env = {"API_TOKEN": "tok-123", "PGDATA": "/var/pg", "PORT": "8080", "CHAOS_PORT": "1"}
    try:
        load_manifest(path, env=env)
    except ManifestError:
        pytest.skip("the loader refuses it (a fixture of a bad manifest)")
    data = read_yaml(path.read_text(encoding="utf-8"), str(path))
    assert schema_errors(data) == []


def test_the_readme_examples_that_load_validate() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    checked = 0
    for fragment in blocks:
        # Most examples are fragments: completed as the README says to use them.
        block = fragment if "version:" in fragment else "version: 1\n" + fragment
        if "jobs:" not in block:
            block += 'jobs:\n  - {name: z, command: ["true"]}\n'
        try:
            load_manifest(block, env={**ENV, "API_TOKEN": "x", "PORT": "1"})
        except ManifestError:
            continue
        assert schema_errors(read_yaml(block, "README.md")) == [], block
        checked += 1
    assert checked >= 3


# -- generated manifests --------------------------------------------------------------------------

_NAMES = st.sampled_from(["a", "b", "web-1", "x.y", "job_2"])
_LEAF_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "duration": st.one_of(
        st.integers(0, 100),
        st.floats(0, 100, allow_nan=False),
        st.sampled_from(["250ms", "30s", "1h30m", "5m", "2", "0.5", " 1D ", "${D}"]),
    ),
    "size": st.one_of(
        st.integers(0, 10**9), st.sampled_from(["10MiB", "512KiB", "1GB", "100", "${S}"])
    ),
    "count": st.one_of(st.integers(0, 4), st.just("${N}")),
    "number": st.one_of(st.floats(0, 3, allow_nan=False), st.integers(0, 3), st.just("${N}")),
    "flag": st.one_of(st.booleans(), st.just("${B}")),
    "text": st.sampled_from(["x", "echo hi", "jobfuncs:ok", "http://127.0.0.1:9/", "${T}"]),
    "scalar": st.one_of(
        st.sampled_from(["x", "TERM", "${T}"]),
        st.integers(0, 20),
        st.just({"secret": {"env": "K"}}),
    ),
    "name": st.one_of(_NAMES, st.just("${T}")),
    "any": st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
        lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=4,
    ),
}


def values(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:  # noqa: PLR0911
    """Values of ``shape``, mostly of the kinds the loader accepts there."""
    if isinstance(shape, Leaf):
        return _LEAF_VALUES[shape.kind]
    if isinstance(shape, Choice):
        return st.sampled_from(shape.values)
    if isinstance(shape, Count):
        top = shape.low + 4 if shape.high is None else min(shape.high, shape.low + 4)
        return st.one_of(st.integers(shape.low, top), st.just("${N}"))
    if isinstance(shape, Const):
        return st.just(shape.value)
    if isinstance(shape, ListOf):
        many = st.lists(values(shape.item, depth), min_size=shape.min_items, max_size=2)
        return many | values(shape.item, depth) if shape.single else many
    if isinstance(shape, AnyOf):
        return st.one_of(*(values(option, depth) for option in shape.options))
    if isinstance(shape, MapOf):
        return st.dictionaries(_NAMES, values(shape.value, depth), max_size=2)
    if isinstance(shape, Named):
        return children(depth + 1)
    if isinstance(shape, Fields):
        return mapping(shape, depth)
    raise AssertionError(shape)


# Fields whose values the specs limit beyond their type: mostly drawn inside the limits, so
# that the loader accepts enough manifests for the test to mean something.
_WITHIN = {
    "umask": st.sampled_from(["027", "077", "0022"]),
    "jitter": st.sampled_from([0, 0.1, 1]),
    "multiplier": st.sampled_from([1, 1.5, 2, "${N}"]),
    "exceptions": st.sampled_from(["ValueError", ["builtins.KeyError", "OSError"]]),
    "http_status": st.sampled_from([404, [500, 503]]),
    "exit_codes": st.sampled_from([3, [0, 78, 255]]),
    "success_exit_codes": st.sampled_from([0, [0, 2]]),
    "expect_status": st.sampled_from([200, [200, 204]]),
    "method": st.sampled_from(["GET", "POST"]),
    "on": st.sampled_from(["5xx", ["timeout", "connection", 503]]),
    "listen": st.sampled_from(["127.0.0.1:0", ":0"]),
    "kwargs": st.dictionaries(st.sampled_from(["a", "b_c"]), _LEAF_VALUES["any"], max_size=2),
    "replicas": st.integers(1, 3),
    "cron": st.just("*/5 * * * *"),
    "signal": st.sampled_from(["TERM", "SIGINT", 15]),
    "nofile": st.sampled_from([64, "unlimited"]),
    "nproc": st.sampled_from([100, "unlimited"]),
    "attempts": st.integers(1, 3),
    "max_restarts": st.integers(0, 5),
}


def mapping(shape: Fields, depth: int, skip: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    keys = [k for k in shape.types if k not in skip]

    def of(key: str) -> st.SearchStrategy[Any]:
        return _WITHIN[key] if key in _WITHIN else values(shape.types[key], depth)

    required = {k: of(k) for k in shape.required if k in keys}
    optional = {k: of(k) for k in keys if k not in shape.required}
    return st.fixed_dictionaries(required, optional=optional)


# Fields whose value must name something else of the manifest, or this machine: given one.
_CROSS: dict[str, st.SearchStrategy[Any]] = {
    "breaker": st.just("b1"),
    "user": st.just(getpass.getuser()),
    "depends_on": st.just([]),
    "placement": st.just("local"),
    "python": st.just("jobfuncs:ok"),
    "ready": st.just({"tcp": "127.0.0.1:9", "timeout": "1s"}),
    "notify": st.just([{"on": ["gave_up"], "command": ["true"]}]),
}


@st.composite
def job(draw: st.DrawFn) -> dict[str, Any]:
    """A job of one kind with some of its kind's fields, mostly typed as the loader wants."""
    kind = draw(st.sampled_from(KINDS))
    others = [k for k in KINDS if k != kind]
    unfit = [k for k, kinds in FOR_KINDS.items() if kind not in kinds]
    modes = ("service", "every", "cron", "times", "persistent", "jitter")
    skip = (*others, *unfit, "name", *_CROSS, *modes, kind)
    fields = draw(mapping(JOB, 9, skip=skip))
    cross = {k: v for k, v in _CROSS.items() if k not in (*others, *unfit, kind)}
    own = {key: draw(strategy) for key, strategy in cross.items() if draw(st.booleans())}
    mode = draw(st.sampled_from(["once", "service", "every", "cron"]))
    if kind == "http":
        own.pop("ready", None)  # only a service has readiness, and an http job is no service
    if (mode == "service" and kind != "http") or "ready" in own:
        own["service"] = True
    elif mode == "every":
        own["every"] = draw(_LEAF_VALUES["duration"].filter(lambda d: d not in (0, 0.0)))
        if draw(st.booleans()):
            own["times"] = draw(st.integers(1, 3))
    elif mode == "cron":
        own["cron"] = "*/5 * * * *"
    if mode in ("every", "cron"):  # a timer's settings, a periodic job's only
        if draw(st.booleans()):
            own["persistent"] = draw(_LEAF_VALUES["flag"])
        if draw(st.booleans()):
            own["jitter"] = draw(st.sampled_from([0, "0s", "0ms", 0.0]))  # below any every
    if kind != "command" and "stop" in fields and isinstance(fields["stop"], dict):
        fields["stop"].pop("signal", None)
    work = {
        "command": ["true"],
        "http": {"url": "http://127.0.0.1:9/", "timeout": "1s"},
        "python": "jobfuncs:ok",
    }[kind]
    return {"name": draw(_NAMES), kind: work, **fields, **own}


def children(depth: int) -> st.SearchStrategy[list[Any]]:
    def name(child: dict[str, Any]) -> Any:
        return child.get("name", child.get("group"))

    if depth > 1:
        return st.lists(job(), min_size=1, max_size=2, unique_by=name)
    group = st.fixed_dictionaries(
        {"group": _NAMES, "jobs": st.deferred(lambda: children(depth + 1))},
        optional={k: values(GROUP.types[k]) for k in GROUP.types if k not in ("group", "jobs")},
    )
    return st.lists(job() | group, min_size=1, max_size=3, unique_by=name)


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    top = draw(mapping(MANIFEST, 0, skip=("jobs", "defaults", "notify", "cluster", "runtime")))
    top["version"] = 1
    top["breakers"] = {"b1": {"failure_threshold": 2}}
    top["jobs"] = draw(children(0))
    if draw(st.booleans()):
        top["defaults"] = draw(mapping(DEFAULTS, 9, skip=tuple(_CROSS)))
    return top


# 200 manifests loaded take 20-45 s on a loaded 2-core machine: the default 60 s cut it short
# mid-example, which Hypothesis then reported as an inconsistent result.
@pytest.mark.timeout(180)
def test_manifests_the_loader_accepts_validate() -> None:
    accepted: list[int] = []

    @GENERATED
    @given(manifests())
    def check(data: dict[str, Any]) -> None:
        if loads(data):
            accepted.append(1)
            assert schema_errors(data) == [], yaml.safe_dump(data)

    check()
    assert len(accepted) >= 40  # the generator is not a stream of refused manifests


# -- wrong types are refused by both --------------------------------------------------------------

# For each kind of value, values of another type: the loader refuses them, and so must the schema.
_WRONG: dict[str, list[Any]] = {
    "duration": [True, [1], {"x": 1}, "soon", "5 parsecs"],
    "size": [False, [1], {"x": 1}, "big", 1.5],
    "count": [True, [1], {"x": 1}, "many"],
    "number": [True, [1], {"x": 1}, "lots"],
    "flag": [[1], {"x": 1}, "maybe", 3],
    "text": [[1], {"x": 1}, True, 3],
    "scalar": [[1], {"x": 1}],
    "name": [[1], {"x": 1}, True, "has space"],
}


def wrong_values(shape: Shape) -> list[Any]:
    if isinstance(shape, Leaf):
        return _WRONG.get(shape.kind, [])
    if isinstance(shape, Choice):
        return ["no-such-choice", [shape.values[0]], True]
    if isinstance(shape, Fields):
        return [[1], "text", 5]
    if isinstance(shape, MapOf):
        return [[1], "text"]
    if isinstance(shape, ListOf):
        return [{"x": 1}, True] if not shape.single else [{"x": 1}]
    return []


# One valid manifest per kind, and the field paths whose value is replaced.
_BASE = {
    "command": {"name": "c", "command": ["true"]},
    "http": {"name": "h", "http": {"url": "http://127.0.0.1:9/"}},
    "python": {"name": "p", "python": "jobfuncs:ok"},
}
_CASES = [
    (("runtime",), MANIFEST.types["runtime"]),
    (("state_dir",), MANIFEST.types["state_dir"]),
    (("logging",), MANIFEST.types["logging"]),
    (("logging", "level"), Choice(("x",))),
    (("supervisor", "intensity", "within"), Leaf("duration")),
    (("supervisor", "budget", "max_restarts"), Leaf("count")),
    (("supervisor", "backoff", "multiplier"), Leaf("number")),
    (("supervisor", "strategy"), Choice(("x",))),
    (("supervisor", "cooldown"), Fields({})),
    (("jobs",), ListOf(Leaf("any"))),
]
_JOB_CASES = [
    ("every", Leaf("duration")),
    ("timeout", Leaf("duration")),
    ("times", Leaf("count")),
    ("service", Leaf("flag")),
    ("autostart", Leaf("flag")),
    ("persistent", Leaf("flag")),
    ("jitter", Leaf("duration")),
    ("restart", Choice(("x",))),
    ("retry", Fields({})),
    ("replicas", Leaf("count")),
    ("stop", Fields({})),
    ("output", Leaf("flag")),
    ("name", Leaf("name")),
    ("env", MapOf(Leaf("scalar"))),
    ("limits", Fields({})),
    ("umask", Leaf("text")),
    ("success_exit_codes", ListOf(Leaf("count"), single=True)),
    ("give_up_on", Fields({})),
    ("args", ListOf(Leaf("any"))),
    ("kwargs", MapOf(Leaf("any"))),
    ("isolation", Choice(("x",))),
]


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _wrong_cases() -> list[Any]:
    cases = [
        pytest.param(path, value, "python", id=f"{'.'.join(path)}={value!r}")
        for path, shape in _CASES
        for value in wrong_values(shape)
    ]
    for key, shape in _JOB_CASES:
        kind = next(k for k in KINDS if k in FOR_KINDS.get(key, KINDS))
        for value in wrong_values(shape):
            path = ("jobs", "0", key)
            cases.append(pytest.param(path, value, kind, id=f"job.{key}={value!r}"))
    return cases


@pytest.mark.parametrize(("path", "value", "kind"), _wrong_cases())
def test_a_wrong_type_is_refused_by_the_loader_and_the_schema(
    path: tuple[str, ...], value: Any, kind: str
) -> None:
    data: dict[str, Any] = {"version": 1, "jobs": [dict(_BASE[kind])]}
    assert loads(data)
    assert schema_errors(data) == []
    if path[0] == "jobs" and len(path) == 3:
        data["jobs"][0][path[2]] = value
    else:
        _set(data, path, value)
    assert not loads(data)
    assert schema_errors(data) != []


def test_a_job_inside_a_group_is_checked_as_a_job() -> None:
    data = {"version": 1, "jobs": [{"group": "g", "jobs": [{"name": "a", "every": "soon"}]}]}
    assert not loads(data)
    assert schema_errors(data) != []
    group = {"version": 1, "jobs": [{"group": "g", "jobs": [_BASE["command"]], "backoff": [1]}]}
    assert not loads(group)
    assert schema_errors(group) != []


def test_an_unknown_key_is_refused_by_both() -> None:
    for data in (
        {"version": 1, "jobs": [_BASE["command"]], "job": []},
        {"version": 1, "jobs": [{**_BASE["command"], "evry": "5s"}]},
        {"version": 1, "jobs": [_BASE["command"]], "supervisor": {"stratgy": "one_for_one"}},
    ):
        assert not loads(data)
        assert schema_errors(data) != []


def test_a_top_level_x_key_is_an_extension_both_leave_out_and_only_there() -> None:
    # docker compose's habit: a block of anchors under x-..., merged into jobs with <<: it was
    # refused as an unknown key (operator trial h232)
    text = (
        "version: 1\n"
        "x-base: &base {command: 'echo hi', restart: permanent}\n"
        "x-notes: [anything, {at: all}]\n"
        "jobs:\n"
        "  - {name: a, <<: *base}\n"
    )
    manifest = load_manifest(text, env=ENV)
    assert [c.name for c in manifest.root.children] == ["a"]
    data = {"version": 1, "x-base": {"any": [1]}, "jobs": [_BASE["command"]]}
    assert loads(data)
    assert schema_errors(data) == []
    for data in (
        {"version": 1, "jobs": [{**_BASE["command"], "x-note": "a job's is refused"}]},
        {"version": 1, "jobs": [_BASE["command"]], "xbase": {}},
    ):
        assert not loads(data)
        assert schema_errors(data) != []


def test_autostart_is_a_jobs_flag_and_a_defaults_one_but_not_a_groups() -> None:
    job = {**_BASE["command"], "autostart": False}
    for data in (
        {"version": 1, "jobs": [job]},
        {"version": 1, "defaults": {"autostart": "${B}"}, "jobs": [_BASE["command"]]},
    ):
        assert loads(data)
        assert schema_errors(data) == []
    group = {"version": 1, "jobs": [{"group": "g", "autostart": False, "jobs": [job]}]}
    assert not loads(group)
    assert schema_errors(group) != []


def _bounded(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """Manifests that each put ``value`` in one field the schema bounds (see ``Count``)."""
    command, http = _BASE["command"], _BASE["http"]
    return [
        ("intensity.max_restarts", {"supervisor": {"intensity": {"max_restarts": value}}}),
        ("budget.max_restarts", {"supervisor": {"budget": {"max_restarts": value, "within": 60}}}),
        ("cooldown.max_cycles", {"supervisor": {"cooldown": {"max_cycles": value}}}),
        ("times", {"jobs": [{**command, "every": 1, "times": value}]}),
        ("retry.attempts", {"jobs": [{**command, "retry": {"attempts": value}}]}),
        ("replicas", {"jobs": [{**command, "replicas": value}]}),
        ("success_exit_codes", {"jobs": [{**command, "success_exit_codes": [value]}]}),
        ("give_up_on.exit_codes", {"jobs": [{**command, "give_up_on": {"exit_codes": [value]}}]}),
        ("give_up_on.http_status", {"jobs": [{**http, "give_up_on": {"http_status": [value]}}]}),
        ("expect_status", {"jobs": [{**http, "http": {**http["http"], "expect_status": value}}]}),
        ("failure_threshold", {"breakers": {"b": {"failure_threshold": value}}}),
        ("half_open_max_calls", {"breakers": {"b": {"half_open_max_calls": value}}}),
        ("backoff.multiplier", {"supervisor": {"backoff": {"multiplier": value}}}),
        ("backoff.jitter", {"supervisor": {"backoff": {"jitter": value}}}),
        ("cooldown.multiplier", {"supervisor": {"cooldown": {"multiplier": value}}}),
        (
            "retry.wait.multiplier",
            {"jobs": [{**command, "retry": _retry_wait("multiplier", value)}]},
        ),
        ("retry.wait.jitter", {"jobs": [{**command, "retry": _retry_wait("jitter", value)}]}),
    ]


def _retry_wait(key: str, value: Any) -> dict[str, Any]:
    return {"attempts": 2, "wait": {key: value}}


# Each bounded field's range, as the loader's checks take it: the schema's bounds must agree.
_BOUNDS = {
    "intensity.max_restarts": (0, None),
    "budget.max_restarts": (0, None),
    "cooldown.max_cycles": (1, None),
    "times": (1, None),
    "retry.attempts": (1, None),
    "replicas": (1, 10_000),
    "success_exit_codes": (0, 255),
    "give_up_on.exit_codes": (0, 255),
    "give_up_on.http_status": (100, 599),
    "expect_status": (100, 599),
    "failure_threshold": (1, None),
    "half_open_max_calls": (1, None),
    "backoff.multiplier": (1, None),
    "backoff.jitter": (0, 1),
    "cooldown.multiplier": (1, None),
    "retry.wait.multiplier": (1, None),
    "retry.wait.jitter": (0, 1),
}


@pytest.mark.parametrize("field", list(_BOUNDS))
def test_a_bound_out_of_its_range_is_refused_by_both_and_its_ends_pass_both(field: str) -> None:
    low, high = _BOUNDS[field]
    inside = [low] if high is None else [low, high]
    outside = [low - 1] if high is None else [low - 1, high + 1]
    for value in inside:
        data = {"version": 1, "jobs": [_BASE["command"]], **dict(_bounded(value))[field]}
        assert loads(data), f"{field}={value}: the loader refused it"
        assert schema_errors(data) == [], f"{field}={value}"
    for value in outside:
        data = {"version": 1, "jobs": [_BASE["command"]], **dict(_bounded(value))[field]}
        assert not loads(data), f"{field}={value}: the loader took it"
        assert schema_errors(data) != [], f"{field}={value}: the schema took it"


def test_a_number_in_exponent_form_that_yaml_reads_as_text_validates_as_it_loads() -> None:
    # The loader took 1.5e1 (text to YAML 1.1) as a number, and the schema refused it (r51).
    text = (
        "version: 1\n"
        "supervisor: {backoff: {multiplier: 1.5e1}}\n"
        "jobs:\n"
        "  - {name: a, command: 'true', retry: {wait: {multiplier: 2e0}}}\n"
    )
    data = read_yaml(text, "m.yaml")
    assert isinstance(data["supervisor"]["backoff"]["multiplier"], str)  # as YAML reads it
    load_manifest(text, env=ENV)
    assert schema_errors(data) == []
    refused = dict(data, supervisor={"backoff": {"multiplier": "fast"}})
    assert schema_errors(refused)
