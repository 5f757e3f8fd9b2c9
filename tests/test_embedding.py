"""The embedded API picks the runtime the process already installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter: installing gevent patches the whole process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "tests")))},
        check=False,
    )


@pytest.mark.parametrize("installed", ["gevent", "threads"])
def test_start_tree_defaults_to_the_installed_runtime(installed: str) -> None:
    out = python(f"""
        import actors
        actors.install_runtime({installed!r})
        from supervision import SupervisorSpec, python_job, start_tree

        spec = SupervisorSpec(children=(python_job("j", "jobfuncs:ok"),))
        with start_tree(spec) as tree:
            assert tree.wait(10)
            print(tree.runtime, tree.result().ok)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [installed, "True"]


def test_an_explicit_runtime_that_conflicts_stays_an_error() -> None:
    out = python("""
        import actors
        actors.install_runtime("gevent")
        from supervision import RuntimeSetupError, SupervisorSpec, start_tree

        try:
            start_tree(SupervisorSpec(children=()), "threads")
        except RuntimeSetupError as exc:
            print("refused:", exc)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused: runtime 'threads' was asked for")
