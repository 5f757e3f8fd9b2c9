"""Ray placement without a cluster: what is refused, how it reads, and that Ray stays unloaded.

These run under both runtimes and without the ray extra; the placed work
itself is tested on a real cluster in ``test_ray.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from faultkit import ENV, ROOT
from treekit import tree_of

from actors import PythonWork, SpecError
from actors._placement import RayPlacement, ray_installed
from supervision import ActorSpec, JobSpec, ManifestError, load_manifest, start_tree


class Plain:
    pass


def job(placement: object) -> JobSpec:
    return JobSpec(name="j", work=PythonWork(target="jobfuncs:ok"), placement=placement)


def test_placement_reads_words_mappings_and_settings() -> None:
    assert job("local").placement == "local"
    assert job("ray").placement == RayPlacement()
    assert job({"ray": None}).placement == RayPlacement()
    settings = {"num_cpus": 2, "memory": 2**30, "resources": {"slot": 1}, "node": "10.0.0.2"}
    spec = job({"ray": settings}).placement
    assert spec == RayPlacement(num_cpus=2, memory=2**30, resources={"slot": 1}, node="10.0.0.2")
    assert isinstance(spec, RayPlacement)
    assert (
        spec.describe()
        == "ray {num_cpus: 2, memory: 1073741824, resources: {slot: 1}, node: 10.0.0.2}"
    )


def test_a_node_is_a_ray_node_id_or_an_ip_address() -> None:
    node_id = "0123456789abcdef" * 3 + "01234567"  # 56 hex digits, as `ray list nodes` shows
    for node in (node_id, node_id.upper(), "10.0.0.2", "::1"):
        assert RayPlacement(node=node).node == node


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        (
            "cloud",
            "placement: expected local, ray, or {ray: {num_cpus, num_gpus, memory, resources, node}}, got 'cloud'",
        ),
        ({"ray": {"num_cpus": -1}}, "placement.ray.num_cpus: expected a number >= 0, got -1"),
        ({"ray": {"memory": 0.5}}, "placement.ray.memory: expected a size in bytes > 0, got 0.5"),
        (
            {"ray": {"colour": "red"}},
            "placement.ray.colour: expected one of num_cpus, num_gpus, memory, resources, node, got 'colour'",
        ),
        (
            {"ray": {"resources": {"slot": 0}}},
            "placement.ray.resources.slot: expected an amount > 0, got 0",
        ),
        (
            {"ray": {"node": ""}},
            "placement.ray.node: expected a Ray node id (56 hex digits) or a node's IP address, got ''",
        ),
        (  # Ray refused it only at each start: a ValueError at every restart
            {"ray": {"node": "abc"}},
            "placement.ray.node: expected a Ray node id (56 hex digits) or a node's IP address, got 'abc'",
        ),
        (  # Ray's nil id: the right form, never a node
            {"ray": {"node": "f" * 56}},
            "placement.ray.node: expected a Ray node id (56 hex digits) or a node's IP address, got '"
            + "f" * 56
            + "'",
        ),
        ({"ray": 3}, "placement.ray: expected a mapping of Ray settings, got 3"),
    ],
)
def test_a_bad_placement_is_a_spec_error_naming_its_field(placement: object, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        job(placement)
    assert str(caught.value) == message


def test_a_manifests_bad_ray_setting_is_placed_at_its_line() -> None:
    text = textwrap.dedent("""\
        version: 1
        cluster: {address: auto, namespace: jv}
        jobs:
          - name: a
            python: 'm:f'
            placement:
              ray: {num_gpus: -2}
        """)
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    # Without the ray extra, a placement on Ray is an issue of its own too.
    issues = [i for i in caught.value.issues if i.path != "jobs[0].placement"]
    assert len(caught.value.issues) == (1 if ray_installed() else 2)
    (issue,) = issues
    assert (issue.path, issue.line) == ("jobs[0].placement.ray.num_gpus", 7)
    assert issue.message == "expected a number >= 0, got -2"


def test_explain_shows_the_cluster_and_each_placement() -> None:
    if not ray_installed():
        pytest.skip("the ray extra is not installed")
    text = textwrap.dedent("""\
        version: 1
        cluster: {address: 'head:6379', namespace: jv}
        jobs:
          - {name: a, python: 'm:f', placement: {ray: {num_cpus: 0.5, node: 10.0.0.2}}}
          - {name: b, python: 'm:f'}
        """)
    shown = load_manifest(text, env={}).explain()
    assert "cluster: head:6379, namespace jv" in shown
    assert "placement: ray {num_cpus: 0.5, node: 10.0.0.2}" in shown
    assert "placement: local" in shown


def test_without_the_extra_placement_ray_names_the_pip_command(runtime, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # how Python spells "not installed"
    text = "version: 1\njobs:\n  - {name: a, python: 'm:f', placement: {ray: {num_cpus: 1}}}\n"
    with pytest.raises(ManifestError) as caught:
        load_manifest(text, env={})
    assert "pip install 'jobvisor[ray]'" in str(caught.value)
    # Under gevent the runtime is refused first: Ray could not run there either way.
    refusal = (
        "cannot run with runtime gevent"
        if runtime == "gevent"
        else "needs Ray, which is not installed; install the 'ray' extra: pip install 'jobvisor\\[ray\\]'"
    )
    for spec in (job("ray"), ActorSpec(name="a", actor_class=_actor_class(), placement="ray")):
        with pytest.raises(SpecError, match=refusal):
            start_tree(tree_of(spec), runtime)


def test_ray_placement_under_gevent_is_refused(runtime) -> None:
    text = "version: 1\nruntime: gevent\njobs:\n  - {name: a, python: 'm:f', placement: ray}\n"
    with pytest.raises(
        ManifestError, match=r"jobs\[0\].placement: expected placement local with runtime gevent"
    ):
        load_manifest(text, env={})
    if runtime == "gevent":  # a tree under gevent needs a patched process: the gevent run
        with pytest.raises(SpecError, match="job j: placement ray cannot run with runtime gevent"):
            start_tree(tree_of(job("ray")), runtime)


def _actor_class() -> type:
    import pykka

    return type("Echo", (pykka.ThreadingActor,), {})


def test_a_tree_without_ray_placement_never_imports_ray(tmp_path) -> None:
    (tmp_path / "m.yaml").write_text(
        "version: 1\njobs:\n  - {name: a, python: 'os:getpid'}\n  - {name: b, command: ['true']}\n"
    )
    script = textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from supervision import load_manifest, start_tree
        tree = start_tree(load_manifest({str(tmp_path / "m.yaml")!r}))
        assert tree.wait(timeout=30)
        tree.stop()
        loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
        print(loaded)
        """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr


def test_ray_prints_no_colour_codes_off_a_terminal(tmp_path) -> None:
    """A placed python job's print reached a log file as ``\\x1b[36m(Boot pid=...)``."""
    from actors._ray import driver_env

    with (tmp_path / "log").open("w") as file:
        assert driver_env(file) == {"RAY_COLOR_PREFIX": "0"}
    assert driver_env(None) == {"RAY_COLOR_PREFIX": "0"}
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w") as tty:
            assert driver_env(tty) == {}
    finally:
        os.close(leader)


def test_what_only_its_owner_can_read_is_not_shipped_to_the_clusters_nodes(tmp_path) -> None:
    """The manifest's folder goes to every node (Ray's working_dir), and with it went its
    secret files, env files and the state dir's journal, there readable by any user of the
    node (h265): those only its owner can read stay, and so does the state dir."""
    from actors._ray import kept_home

    (tmp_path / "jobs.py").write_text("")
    (tmp_path / "jobs.py").chmod(0o644)
    (tmp_path / "tok.txt").write_text("s3cret")
    (tmp_path / "tok.txt").chmod(0o600)
    (tmp_path / "lib").mkdir(mode=0o755)
    (tmp_path / "lib" / "app.env").write_text("K=v")
    (tmp_path / "lib" / "app.env").chmod(0o640)
    (tmp_path / "lib" / "mod.py").write_text("")
    (tmp_path / "lib" / "mod.py").chmod(0o644)
    (tmp_path / "private").mkdir(mode=0o700)
    (tmp_path / "private" / "x.py").write_text("")
    state = tmp_path / "st#1"
    state.mkdir(mode=0o755)  # however it is made: never shipped
    (state / "journal.sqlite3").write_text("")
    (tmp_path / "we[ird]*.py").write_text("")
    (tmp_path / "we[ird]*.py").chmod(0o600)
    assert kept_home(str(tmp_path), str(state)) == [
        "/lib/app.env",
        "/private",
        "/st#1",
        "/tok.txt",
        "/we\\[ird\\]\\*.py",  # a pattern of Ray's, as .gitignore's: its own characters escaped
    ]
    # A state dir elsewhere is not looked for here; this one's files are then shipped.
    assert "/st#1" not in kept_home(str(tmp_path), str(tmp_path.parent / "elsewhere"))
