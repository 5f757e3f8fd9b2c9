"""Finding a manifest's state dir without loading the manifest (`supervision._client`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervision._client import StateDirError, find_state_dir

HEAD = "version: 1\njobs:\n  - name: a\n    command: [sh, -c, 'true']\n"


def manifest(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    return path


def test_without_a_declared_one_it_is_dot_jobvisor_beside_the_manifest(tmp_path: Path) -> None:
    assert find_state_dir(manifest(tmp_path, HEAD)) == str(tmp_path / ".jobvisor")


def test_an_override_wins_and_needs_no_manifest(tmp_path: Path) -> None:
    assert find_state_dir(tmp_path / "none.yaml", str(tmp_path / "s")) == str(tmp_path / "s")


def test_a_declared_one_is_relative_to_the_manifest(tmp_path: Path) -> None:
    path = manifest(tmp_path, HEAD + "state_dir: run/state\n")
    assert find_state_dir(path) == str(tmp_path / "run" / "state")


@pytest.mark.parametrize(
    "broken",
    [
        "jobs: [unclosed\n",  # a YAML error after the line
        "  - name: b\n    command: [sh, -c\n",
        "\t- tab\n",
    ],
)
def test_a_manifest_being_edited_still_gives_its_declared_state_dir(
    tmp_path: Path, broken: str
) -> None:
    for line in (
        "state_dir: elsewhere",
        "state_dir: 'elsewhere'  # the daemon's",
        'state_dir: "elsewhere"',
    ):
        path = manifest(tmp_path, f"version: 1\n{line}\n" + HEAD.split("\n", 1)[1] + broken)
        assert find_state_dir(path) == str(tmp_path / "elsewhere"), (line, broken)


def test_a_null_state_dir_under_a_yaml_error_is_the_default(tmp_path: Path) -> None:
    for line in (
        "state_dir: ~",
        "state_dir: null  # the default",
        "state_dir:",
        "state_dir: x\t# c",
    ):
        path = manifest(tmp_path, f"version: 1\n{line}\n" + HEAD.split("\n", 1)[1] + "[broken\n")
        want = tmp_path / ("x" if line.endswith("# c") else ".jobvisor")
        assert find_state_dir(path) == str(want), line


def test_a_nested_or_commented_state_dir_is_not_the_manifest_s(tmp_path: Path) -> None:
    path = manifest(tmp_path, HEAD + "  # state_dir: no\nx:\n  state_dir: no\n[broken\n")
    assert find_state_dir(path) == str(tmp_path / ".jobvisor")


def test_an_interpolated_state_dir_is_read_from_the_environment(tmp_path: Path) -> None:
    path = manifest(tmp_path, HEAD + "state_dir: ${JV_TEST_STATE}/s\n")
    assert find_state_dir(path, env={"JV_TEST_STATE": "/srv/x"}) == "/srv/x/s"
    path = manifest(tmp_path, HEAD + "state_dir: ${JV_TEST_STATE:-here}\n")
    assert find_state_dir(path, env={}) == str(tmp_path / "here")
    assert find_state_dir(path, env={"JV_TEST_STATE": "there"}) == str(tmp_path / "there")
    path = manifest(tmp_path, HEAD + "state_dir: a$${b}\n")
    assert find_state_dir(path, env={}) == str(tmp_path / "a${b}")
    path = manifest(tmp_path, HEAD + "state_dir: s-${secret:JV_TEST_STATE}\n")
    assert find_state_dir(path, env={"JV_TEST_STATE": "x"}) == str(tmp_path / "s-x")
    path = manifest(tmp_path, HEAD + "state_dir: s-${JV TEST}\n")
    with pytest.raises(StateDirError, match="which the loader refuses"):
        find_state_dir(path, env={})


def test_an_unset_variable_in_the_state_dir_says_what_to_set(tmp_path: Path) -> None:
    path = manifest(tmp_path, HEAD + "state_dir: ${JV_TEST_STATE}\n")
    with pytest.raises(StateDirError) as caught:
        find_state_dir(path, env={})
    message = str(caught.value)
    assert "JV_TEST_STATE" in message
    assert str(path) in message
    assert "--state-dir" in message


def test_a_missing_manifest_is_an_error_unless_its_state_dir_is_there(tmp_path: Path) -> None:
    with pytest.raises(StateDirError) as caught:
        find_state_dir(tmp_path / "gone.yaml")
    assert f"no manifest at {tmp_path / 'gone.yaml'}" in str(caught.value)
    assert "--state-dir" in str(caught.value)
    with pytest.raises(StateDirError):
        find_state_dir(tmp_path)  # a directory is no manifest either
    (tmp_path / ".jobvisor").mkdir()
    # A daemon whose manifest was moved away stays reachable where it is.
    assert find_state_dir(tmp_path / "gone.yaml") == str(tmp_path / ".jobvisor")
