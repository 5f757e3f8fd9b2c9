"""What a user's odd exception, or a fault in jobvisor's own handling, does to a running tree.

A supervisor's handler that raised used to end that supervisor without a word: a tree whose
status had no children, `run` hung in its stop, its jobs orphaned and never stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jobfuncs
import logbook
import pytest
from faultkit import wait_until

from actors import CommandWork
from supervision import (
    Intensity,
    JobSpec,
    RestartPolicy,
    RestartType,
    Schedule,
    SupervisorSpec,
    python_job,
    start_tree,
)


@pytest.fixture(autouse=True)
def _reset() -> None:
    jobfuncs.reset()


def _nodes(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {child["path"]: child for child in status["children"]}


def test_an_exception_whose_str_raises_is_a_failure_like_any_other(
    logs: logbook.TestHandler,
) -> None:
    spec = SupervisorSpec(
        children=(
            python_job("svc", "jobfuncs:block", "svc", schedule=Schedule(service=True)),
            python_job("bad", "jobfuncs:raise_unprintable", "bad"),
        ),
        policy=RestartPolicy(intensity=Intensity(max_restarts=2, within=60.0)),
    )
    with start_tree(spec) as tree:
        wait_until(lambda: _nodes(tree.status())["bad"]["state"] == "gave_up", "bad gave up")
        nodes = _nodes(tree.status())
        assert nodes["svc"]["state"] == "running", "its sibling runs on"
        assert jobfuncs.CALLS["bad"] == 3, "its policy applied: a try and two restarts"
        error = nodes["bad"]["last_exit"]["error"]
        assert error.startswith("Unprintable"), error
        assert "unprintable" in error
        assert tree.stop(10)
    assert not tree.result().ok
    assert tree.result().failed == ("bad",)
    assert any("bad" in r.message and "Unprintable" in r.message for r in logs.records)


def test_a_supervisor_whose_own_handling_fails_says_so_and_leaves_no_job_behind(
    logs: logbook.TestHandler,
) -> None:
    """A mask that raises once stands in for a fault of jobvisor's own: it runs inline in the
    supervisor's turn, on the failure it says. (A sink that raises was one; a sink's failure
    is logged and supervision goes on now, h244.)"""
    broke: list[str] = []

    def mask(text: str) -> str:
        if "failed on call" in text and not broke:
            broke.append(text)
            raise RuntimeError("the mask broke")
        return text

    spec = SupervisorSpec(
        children=(
            JobSpec(
                name="svc",
                work=CommandWork(argv=("sleep", "100")),
                schedule=Schedule(service=True),
                restart=RestartType.PERMANENT,
            ),
            python_job("once", "jobfuncs:fail_after_release", "once"),
        ),
    )
    tree = start_tree(spec, mask=mask)
    try:
        wait_until(lambda: _nodes(tree.status())["svc"]["pid"], "svc runs")
        pid = _nodes(tree.status())["svc"]["pid"]
        jobfuncs.EVENTS["once.release"].set()  # its failure is what the mask breaks on
        assert tree.wait(30), "the tree ends"
        errors = [r for r in logs.records if r.level >= logbook.ERROR]
        said = " ".join(r.message for r in errors)
        assert "the mask broke" in said or any(
            r.exc_info and "the mask broke" in str(r.exc_info[1]) for r in errors
        ), [r.message for r in logs.records]
        assert "jobvisor bug" in said
        assert not tree.result().ok
        status = tree.status()
        assert status["state"] == "failed"
        assert _nodes(status)["svc"]["state"] == "stopped", "its last status, its jobs killed"
    finally:
        assert tree.stop(10), "its stop does not hang"
    wait_until(lambda: not _alive(pid), "the service's process was killed")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, killed and not reaped yet, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_signal_to_a_job_between_two_tries_says_so(tmp_path: Path) -> None:
    """It said 'flaky is not running (running)'."""
    import signal

    from actors._retry import RetrySpec, RetryWait
    from supervision import NotSignalledError

    mark = tmp_path / "tried"
    spec = SupervisorSpec(
        children=(
            JobSpec(
                name="flaky",
                work=CommandWork(shell=f"touch {mark}; exit 1"),
                retry=RetrySpec(attempts=3, wait=RetryWait(initial=30.0, max=30.0)),
            ),
        )
    )
    with start_tree(spec) as tree:
        wait_until(mark.exists, "its first try ran")

        # The mark is made before the try's `exit 1`: its process may still be there a moment.
        def between() -> tuple[str, int | None]:
            node = _nodes(tree.status())["flaky"]
            return node["state"], node["pid"]

        wait_until(lambda: between() == ("running", None), "between two tries")
        with pytest.raises(NotSignalledError) as caught:
            tree.signal("flaky", signal.SIGHUP)
        assert "has no process right now (between two tries" in str(caught.value)
        assert tree.stop(10)
