"""Fuzzing the manifest loader: for any input it returns a Manifest or raises ManifestError, nothing else.

Inputs are random YAML-like data, mutations of the valid fixture manifests
(keys dropped, values replaced by wrong types, random strings, numbers and
nesting) and random edits of their text. Deterministic and CI-sized.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervision._manifest import Issue, Manifest, ManifestError, load_manifest, parse

MANIFESTS = Path(__file__).resolve().parent / "manifests"
SECRET = "fuzz-s3cret-value"
ENV = {"API_TOKEN": SECRET, "PGDATA": "/var/pg", "PORT": "8080", "N": "2", "EMPTY": ""}
FIXTURES = {
    name: (MANIFESTS / name).read_text(encoding="utf-8")
    for name in ("python_only.yaml", "full.yaml")
}


def _names_as_written(node: Any) -> Any:
    """yaml.safe_load's data, but with the key ``on:`` as the loader reads it (not YAML 1.1's true)."""
    if isinstance(node, dict):
        return {
            ("on" if key is True else key): _names_as_written(value) for key, value in node.items()
        }
    if isinstance(node, list):
        return [_names_as_written(item) for item in node]
    return node


SEEDS = {name: _names_as_written(yaml.safe_load(text)) for name, text in FIXTURES.items()}

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)

# fmt: off
KEYS = [
    "version", "runtime", "state_dir", "logging", "defaults", "supervisor", "breakers", "cluster",
    "jobs", "group", "name", "command", "http", "python", "args", "kwargs", "cwd", "env", "service",
    "every", "times", "cron", "timeout", "retry", "breaker", "restart", "replicas", "depends_on",
    "ready", "stop", "placement", "strategy", "intensity", "backoff", "on_exhausted", "cooldown",
    "attempts", "wait", "on", "initial", "max", "multiplier", "jitter", "url", "method", "headers",
    "json", "body", "expect_status", "tcp", "signal", "grace", "secret", "file", "level", "rotate",
    "max_bytes", "within", "max_restarts", "duration", "max_cycles", "failure_threshold",
]
WORDS = [
    "", "1", "-1", "0", "30s", "250ms", "5m", "1h30m", "1e999", "10MiB", "yes", "null", "m:f",
    "tasks:run", "one_for_all", "cooldown", "escalate", "give_up", "permanent", "temporary", "ray",
    "local", "gevent", "threads", "http://h/", "ftp://x", "localhost:80", "TERM", "SIGKILL",
    "${API_TOKEN}", "${MISSING}", "${N}", "${BAD NAME}", "$${X}", "${", "* * * * *", "61 * * * *",
    "a b", "w", "w.0", "api", "db", "migrate", "etl", "GET", "post", "5xx", "\x00", "é", "../x",
]
TOKENS = [
    ":", "-", "[", "]", "{", "}", "&a", "*a", "!!", "<<: *a", "\t", "\n  ", "'", '"', "#", "? ", "|",
    ">", "%", "@", "`", "!!binary x", "!!set {a}", "--- ",
]
# fmt: on

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.binary(max_size=4),
)
keys = st.one_of(
    st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3), st.booleans(), st.none()
)
secrets = st.fixed_dictionaries(
    {
        "secret": st.one_of(
            st.fixed_dictionaries(
                {"env": st.sampled_from(["API_TOKEN", "MISSING", "EMPTY", "bad name"])}
            ),
            st.fixed_dictionaries(
                {"file": st.sampled_from(["secrets/db_password", "nope", "", "secrets"])}
            ),
            scalars,
        )
    }
)
data = st.recursive(
    st.one_of(scalars, secrets),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=6),
        st.tuples(children, children),
    ),
    max_leaves=40,
)


def check(result: Any) -> None:
    assert isinstance(result, Manifest)
    assert result.tree_spec() is result.root
    text = result.explain()
    assert isinstance(text, str)
    for secret in result.secrets:
        assert secret not in text


def check_error(error: ManifestError) -> None:
    assert error.issues
    for issue in error.issues:
        assert isinstance(issue, Issue)
        assert isinstance(issue.path, str)
        assert issue.line is None or (isinstance(issue.line, int) and issue.line >= 1)
        assert issue.message
        assert SECRET not in issue.message
    assert SECRET not in str(error)


def outcome(call: Any) -> None:
    """Run ``call``: it must give a Manifest or raise a ManifestError with well-formed issues."""
    try:
        result = call()
    except ManifestError as error:
        check_error(error)
    else:
        check(result)


# -- mutations of a valid manifest -----------------------------------------------------------------


def containers(node: Any, found: list[Any]) -> list[Any]:
    """Every dict and list in ``node``, each once (a "swap" mutation may make cycles)."""
    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, dict | list) and all(item is not seen for seen in found):
            found.append(item)
            todo.extend(item.values() if isinstance(item, dict) else item)
    return found


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(containers(doc, [])))
        if isinstance(target, dict):
            if not target:
                target[draw(keys)] = draw(data)
                continue
            key = draw(st.sampled_from(list(target)))
            action = draw(st.sampled_from(["drop", "replace", "add", "wrap", "nest", "swap"]))
            if action == "drop":
                del target[key]
            elif action == "replace":
                target[key] = draw(data)
            elif action == "add":
                target[draw(keys)] = draw(data)
            elif action == "wrap":
                target[key] = [target[key]]
            elif action == "nest":
                target[key] = {draw(keys): target[key]}
            else:
                target[key] = draw(
                    st.sampled_from(containers(doc, []) or [None])
                )  # shared structure
        elif target:
            index = draw(st.integers(0, len(target) - 1))
            action = draw(st.sampled_from(["drop", "replace", "duplicate", "insert"]))
            if action == "drop":
                del target[index]
            elif action == "replace":
                target[index] = draw(data)
            elif action == "duplicate":
                target.append(copy.deepcopy(target[index]))
            else:
                target.insert(index, draw(data))
        else:
            target.append(draw(data))
    return doc


@FUZZ
@given(mutated())
def test_mutated_manifests_give_a_manifest_or_a_manifest_error(doc: Any) -> None:
    outcome(lambda: parse(doc, env=ENV, path=MANIFESTS / "fuzz.yaml"))


@FUZZ
@given(data)
def test_random_data_gives_a_manifest_or_a_manifest_error(doc: Any) -> None:
    outcome(lambda: parse(doc, env=ENV, base_dir=MANIFESTS))
    outcome(lambda: parse({"version": 1, "jobs": [doc]}, env=ENV, base_dir=MANIFESTS))
    outcome(
        lambda: parse(
            {"version": 1, "jobs": [{"name": "j", "python": "m:f", "retry": doc}]}, env=ENV
        )
    )


@FUZZ
@given(mutated())
def test_mutated_manifests_survive_the_yaml_round_trip(doc: Any) -> None:
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except (yaml.YAMLError, RecursionError):  # a mutation made a structure yaml cannot write
        return
    outcome(lambda: load_manifest(text + "\n", env=ENV))


@st.composite
def edited_text(draw: st.DrawFn) -> str:
    text = FIXTURES[draw(st.sampled_from(sorted(FIXTURES)))]
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 12))
        insert = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)))
        text = text[:at] + insert + text[at + cut :]
    return text


@FUZZ
@given(edited_text())
def test_edited_manifest_text_gives_a_manifest_or_a_manifest_error(text: str) -> None:
    outcome(lambda: load_manifest(text + "\n", env=ENV))


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_gives_a_manifest_or_a_manifest_error(text: str) -> None:
    outcome(lambda: load_manifest(text + "\n", env=ENV))


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_the_seeds_are_valid(name: str) -> None:
    check(load_manifest(MANIFESTS / name, env=ENV))
