"""Ray placement: a job's work, or a user's actor, runs in a Ray actor; jobvisor decides the rest.

Imported only when a child is placed on Ray, and it imports ``ray`` itself
only then: a tree without Ray placement never loads it.

One job incarnation owns at most one remote ``Runner`` (a Ray actor, so a
process on some node) and runs its attempts there: ``RayWork`` wraps the
job's own work (python, command, http), which runs remotely exactly as it
would here. Ray restarts and retries nothing (``max_restarts=0``,
``max_task_retries=0``): a remote exception, a dead worker or a lost node
ends the attempt with an error, and the supervisor's policy decides. Before
a runner for a path is created, any older runner of that path is fenced
with ``ray.kill``, and a failed attempt kills its runner at once, so two
incarnations never run side by side. Every runner this process created is
killed at exit; a Ray instance this process started is shut down.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import re
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import logbook
import pykka

from actors._attempt import Attempt, current_attempt_var
from actors._checks import MAX_DURATION
from actors._errors import JobFailure, SpecError
from actors._placement import RAY_EXTRA, RayPlacement, ray_installed
from actors._python_call import failure_names
from actors._supervised import OwnActor
from actors._warden import WARDEN

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from actors._attempt import OutputSink, Work

__all__ = [
    "ClusterUnreachable",
    "PlacementCancelled",
    "PlacementLost",
    "RayActorProxy",
    "RayWork",
    "RemoteError",
    "configure_cluster",
    "live_runners",
    "placed_work",
    "shutdown",
]

log = logbook.Logger("actors.ray")

_POLL: Final = 0.25  # seconds between checks of a cancel while waiting on Ray
_CONNECT_TIMEOUT_ENV: Final = "JOBVISOR_RAY_CONNECT_TIMEOUT"
_CONNECT_TIMEOUT: Final = 15.0  # seconds to connect to a cluster's address (Ray retries ~14 min)
_START_TIMEOUT: Final = 120.0  # seconds to start a local Ray instance on a busy machine
_RECONNECT_ENV: Final = "RAY_gcs_rpc_server_reconnect_timeout_s"
_RECONNECT_TIMEOUT: Final = 10 * 365 * 86400  # Ray's C++ client exits the process after it
_HEALTH_PERIOD: Final = 1.0  # seconds between checks that the cluster's head answers
_HEALTH_WAIT: Final = 2.0  # seconds one check waits for the head's answer
_HEALTH_FAILURES: Final = 3  # checks in a row without an answer: the cluster is lost
_PENDING_WARN: Final = 15.0  # seconds waiting to be placed before a warning says so
_RAY_PRINTS: Final = "ray_print_logs"  # Ray's handler of what workers print, in this process
# Seconds without the head before Ray's print threads are stopped; the variable is the tests'.
_QUIET_AFTER_ENV: Final = "JOBVISOR_RAY_QUIET_AFTER"
_QUIET_AFTER: Final = 15.0
_KILL_WAIT: Final = 2.0  # seconds a ray.kill is waited for (it waits for the head)
_LOCAL_ADDRESSES: Final = (None, "", "local")
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")


class RemoteError(JobFailure):
    """An exception the work raised on its Ray node; its text ends with the remote traceback.

    Made on the node from the work's exception, whatever it holds (a lock, an
    ``__init__`` Ray could not call again): only names and text travel.
    ``failure_names`` are the names of its classes, its cause chain's and its
    group's (``_python_call.failure_names``), so ``give_up_on.exceptions``
    and ``retry.on`` match it as they match a local python job's.
    ``traceback`` is the remote one.
    """

    def __init__(
        self, message: str, failure_names: tuple[Any, ...] = (), traceback: str = ""
    ) -> None:
        super().__init__(message)
        self.failure_names = failure_names
        self.traceback = traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.failure_names, self.traceback))

    @classmethod
    def of(cls, exc: BaseException) -> RemoteError:
        """The ``RemoteError`` of ``exc``, as raised on the node (jobvisor's frames left out)."""
        import traceback  # noqa: PLC0415 - only when a placed call fails

        shown = traceback.TracebackException.from_exception(exc)
        ours = str(Path(__file__).parent)
        shown.stack = traceback.StackSummary.from_list(
            [frame for frame in shown.stack if not frame.filename.startswith(ours)]
        )
        text = _ANSI.sub("", "".join(shown.format()).rstrip("\n"))
        try:
            message = str(exc)
        except Exception:  # an exception whose __str__ fails still fails the attempt
            message = f"<unprintable {type(exc).__name__}>"
        return cls(_ANSI.sub("", f"{type(exc).__name__}: {message}"), failure_names(exc), text)


class PlacementLost(JobFailure):
    """The Ray actor running the work is gone: its worker died, or its node was lost."""


class PlacementCancelled(JobFailure):
    """A stop or timeout came before the attempt's work started on its node: it never did."""


# -- the cluster connection ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cluster:
    address: str | None = None
    namespace: str | None = None
    working_dir: str | None = None
    state_dir: str | None = None  # never shipped with working_dir (``kept_home``)


_lock = threading.RLock()
_cluster = _Cluster()
_closed = False
_runners: dict[str, Any] = {}  # path -> the live runner handle of that path
_unfenced: list[Any] = []  # runners let go while the cluster was lost: killed once it answers


def configure_cluster(
    address: str | None,
    namespace: str | None = None,
    working_dir: str | None = None,
    state_dir: str | None = None,
) -> None:
    """Where to connect on first use: the manifest's ``cluster`` (None: a local Ray instance).

    ``working_dir`` (the manifest's folder) is shipped to the cluster's nodes
    with Ray's ``runtime_env`` when the cluster is remote, but for what only its owner
    can read and ``state_dir`` (see ``kept_home``).
    """
    global _cluster  # noqa: PLW0603 - one connection per process, as Ray has
    with _lock:
        _cluster = _Cluster(address or None, namespace or None, working_dir, state_dir)


_connected: Any = None  # the ray module once connected: every attempt asks for it
_connecting: _Connecting | None = None  # the ray.init under way or last failed, if any
_lost: ClusterUnreachable | None = None  # set by the health watch while the head is gone


class ClusterUnreachable(PlacementLost):
    """Jobvisor cannot reach its Ray cluster: a wrong or dead ``cluster.address``, or a lost head.

    The attempt fails (the policy decides, as for a lost node); nothing about
    the cluster is decided for good: the next attempt tries again.
    """


class _Connecting:
    """One ``ray.init`` under way in its keeper thread; any number of attempts wait on it."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.reported = False  # its "cannot connect" was logged (once per connect)


def _ray(cancel: threading.Event | None = None) -> Any:
    """The ``ray`` module, connected: an existing ``ray.init()`` is reused, else we start one.

    The wait for a connection is bounded (``ClusterUnreachable`` after
    ``_CONNECT_TIMEOUT``, with what to check) and ends when ``cancel`` is set
    (returns None then): a stop, timeout or kill never waits on Ray's own
    retries, and neither does ``shutdown``.
    """
    global _connected, _connecting  # noqa: PLW0603
    connected = _connected
    if connected is not None and not _closed and connected.is_initialized():
        return connected
    if not ray_installed():
        raise SpecError(f"placement ray needs Ray: {RAY_EXTRA}")
    # Ray's crash handler in this process would take SIGTERM, our graceful stop, for a crash
    # and abort the process in the middle of stopping the tree.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    for name, value in driver_env(sys.stderr).items():
        os.environ.setdefault(name, value)
    with _lock:
        try:  # one thread at a time: beside another's failed import, a half-made module
            import ray  # noqa: PLC0415 - loaded only when something is placed on Ray
        except ImportError as exc:  # installed but broken (a library of its own is missing)
            raise SpecError(
                f"placement ray needs Ray, which is installed but does not import: {exc}; "
                f"{RAY_EXTRA}"
            ) from None
        if _closed:
            raise PlacementLost("jobvisor is exiting: nothing more is placed on Ray")
        connecting = None
        if not ray.is_initialized():
            connecting = _connecting
            if connecting is None or connecting.error is not None:
                connecting = _connecting = _start_connect(ray, _cluster)
    if connecting is not None and not _wait_connected(connecting, cancel):
        return None
    with _lock:
        if _closed:
            raise PlacementLost("jobvisor is exiting: nothing more is placed on Ray")
        # Ray's own exit hook would run before the trees stop (it was registered later):
        # its jobs would see their actors die first. ``shutdown`` runs after them instead.
        atexit.unregister(ray._private.worker.shutdown)
        _connected = ray
    return ray


def _start_connect(ray: Any, cluster: _Cluster) -> _Connecting:
    """Start ``ray.init`` for ``cluster`` in its keeper thread (with ``_lock`` held)."""
    kwargs: dict[str, Any] = {
        "address": cluster.address,
        "namespace": cluster.namespace,
        "log_to_driver": True,
        "configure_logging": False,
    }
    local = cluster.address in _LOCAL_ADDRESSES
    if local:
        # Not None, which Ray takes for "find one": RAY_ADDRESS, or the cluster any `ray
        # start` on this machine left its address for, would be joined (trial h265).
        kwargs["address"] = "local"
        kwargs["include_dashboard"] = False
    else:
        # Ray's client in this process ends the whole process (exit 1, no orderly stop, its
        # local jobs with it) once the head has been away this long (default 60 s). Jobvisor
        # outlives its cluster instead: the health watch fails the placed attempts.
        os.environ.setdefault(_RECONNECT_ENV, str(_RECONNECT_TIMEOUT))
        if cluster.address != "auto" and cluster.working_dir is not None:
            kept = kept_home(cluster.working_dir, cluster.state_dir)
            kwargs["runtime_env"] = {"working_dir": cluster.working_dir, "excludes": kept}
            if kept:
                log.info(
                    "not shipped to the cluster's nodes with {}: {} (not every user may read "
                    "them, or the state dir; make a module a placed job imports readable by "
                    "all, chmod 644)",
                    cluster.working_dir,
                    ", ".join(p.lstrip("/") for p in kept[:_KEPT_SAID])
                    + (f" and {len(kept) - _KEPT_SAID} more" if len(kept) > _KEPT_SAID else ""),
                )
    connecting = _Connecting(None if local else cluster.address)
    _init_in_keeper(ray, kwargs, connecting)
    return connecting


_KEPT_SAID: Final = 5  # of the paths kept home, those a log line names
_KEPT_LOOK: Final = 20_000  # entries of the manifest's folder looked at, at most
_GLOB: Final = re.compile(r"([*?\[\]\\])")


def kept_home(working_dir: str, state_dir: str | None) -> list[str]:
    """What of ``working_dir`` stays off the cluster's nodes, as Ray's ``excludes`` patterns
    (gitignore's, anchored ``/a/b``): the state dir (its journal, logs, output) and every file
    or folder that not every user can read (no read bit for others), which secret files and
    env files are; on a node they would be readable by any of its users (trial h265).
    Symlinks are not followed; at most ``_KEPT_LOOK`` entries are looked at."""
    root = os.path.realpath(working_dir)
    state = None if state_dir is None else os.path.realpath(state_dir)
    kept: list[str] = []
    looked = 0
    for here, dirs, files in os.walk(root):
        pruned = set()
        for name in sorted([*dirs, *files]):
            looked += 1
            if looked > _KEPT_LOOK:
                # What is past it is not looked at, so it may ship what it should not: said.
                log.warning(
                    "{} has more than {} files and folders: those past them are shipped to the "
                    "cluster's nodes unlooked at, readable by all there or not; keep the "
                    "manifest in a folder of its own",
                    working_dir,
                    _KEPT_LOOK,
                )
                return sorted(kept)
            path = os.path.join(here, name)  # noqa: PTH118 - os.walk's strings
            try:
                st = os.lstat(path)
            except OSError:
                continue
            private = not stat.S_ISLNK(st.st_mode) and not st.st_mode & 0o004
            if private or path == state:
                kept.append("/" + _GLOB.sub(r"\\\1", os.path.relpath(path, root)))
                pruned.add(name)
        dirs[:] = [name for name in dirs if name not in pruned]  # nothing below is shipped
    return sorted(kept)


def _wait_connected(connecting: _Connecting, cancel: threading.Event | None) -> bool:
    """Wait for ``connecting``, at most ``_connect_timeout()`` (a cluster's address) or
    ``_START_TIMEOUT`` (a local instance); False if ``cancel`` came first."""
    local = connecting.address is None
    limit = _START_TIMEOUT if local else _connect_timeout()
    deadline = time.monotonic() + limit
    while not connecting.done.wait(_POLL):
        if cancel is not None and cancel.is_set():
            return False
        if time.monotonic() >= deadline:
            raise _unreachable(connecting, "did not answer", limit)
    if connecting.error is not None:
        if local:
            raise connecting.error
        raise _unreachable(connecting, f"failed ({type(connecting.error).__name__})", limit)
    return True


def _connect_timeout() -> float:
    return _seconds_from_env(_CONNECT_TIMEOUT_ENV, _CONNECT_TIMEOUT)


def _seconds_from_env(name: str, default: float) -> float:
    """A number of seconds from the variable ``name``, else ``default``: one that is not a
    positive number is said once a use (a WARNING) and the default taken."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < MAX_DURATION:
        log.warning(
            "{}={!r} is not a positive number of seconds: {:g}s is used", name, text, default
        )
        return default
    return seconds


def _unreachable(connecting: _Connecting, what: str, limit: float) -> ClusterUnreachable:
    address = connecting.address or "local"
    message = (
        f"cannot connect to the Ray cluster at {address}: it {what} within {limit:g}s; "
        f"check cluster.address in the manifest, that the cluster's head is up there "
        f"(ray status --address {address}) and reachable from here"
    )
    if address.startswith("127.") and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        message += (
            ", and for a cluster on 127.0.0.1 set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
            "in jobvisor's environment"
        )
    if connecting.address is not None:
        message += f"; for a cluster slower to answer, set {_CONNECT_TIMEOUT_ENV}=SECONDS"
    with _lock:
        first, connecting.reported = not connecting.reported, True
    if first:
        log.error("{}", message)
    return ClusterUnreachable(message)


def driver_env(stream: Any) -> dict[str, str]:
    """Ray's settings for what it prints in this process from placed work (``log_to_driver``).

    Off a terminal (a log file, a pipe, ``journalctl``), no colour codes around each line's
    ``(pid=...)`` prefix: they reached logs as ``\x1b[36m``.
    """
    try:
        terminal = stream is not None and stream.isatty()
    except (AttributeError, OSError, ValueError):
        terminal = False
    return {} if terminal else {"RAY_COLOR_PREFIX": "0"}


def _init_in_keeper(ray: Any, kwargs: dict[str, Any], connecting: _Connecting) -> None:
    """``ray.init`` in a thread that lives as long as the process, once it has connected.

    A local Ray instance's processes die with the *thread* that started them
    (Linux's parent-death signal follows the thread): started from a job's
    thread, they would die when that job ends. Nobody holds a lock while it
    connects, and nobody waits for it longer than ``_wait_connected`` does.
    """

    def keep() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # handed to the waiters; the next attempt starts anew
            connecting.error = exc
            connecting.done.set()
            return
        _prints_to_stderr()
        connecting.done.set()
        if _closed:  # jobvisor stopped while this connected: nothing will use it
            with contextlib.suppress(Exception):
                ray.shutdown()
            return
        if kwargs["address"] is not None:
            _watch_health(ray, connecting.address or "auto")
        threading.Event().wait()  # never set: this thread is the Ray processes' parent

    threading.Thread(target=keep, name="ray-keeper", daemon=True).start()


def _prints_to_stderr() -> None:
    """What placed work prints goes to jobvisor's stderr, what it prints on stdout too.

    Ray shows a worker's stdout on the driver's stdout, which is the CLI's own
    (``--json`` documents). Off a terminal, Ray's ``[repeated Nx across
    cluster]`` summaries lose their colour codes too.
    """
    from ray._private import ray_logging  # noqa: PLC0415

    dispatcher = ray_logging.global_worker_stdstream_dispatcher
    shown = [handler for name, handler in dispatcher.handlers if name == _RAY_PRINTS]
    if not shown:
        return  # log_to_driver off: nothing is shown here
    show = shown[0]

    def to_stderr(data: dict[str, Any]) -> None:
        show({**data, "is_err": True})

    dispatcher.remove_handler(_RAY_PRINTS)
    dispatcher.add_handler(_RAY_PRINTS, to_stderr)
    if driver_env(sys.stderr):  # not a terminal: Ray colours those summaries regardless
        ray_logging._color = _plain  # type: ignore[assignment] # Ray's own function, replaced


def _plain(text: str) -> str:
    return text


def _watch_health(ray: Any, address: str) -> None:
    """Start the thread that asks the cluster's head, with a bounded wait, whether it lives.

    After ``_HEALTH_FAILURES`` checks in a row without an answer the cluster is
    lost: every placed attempt fails with ``ClusterUnreachable`` (local jobs
    never notice); an answer again makes placement possible again.
    """

    def watch() -> None:
        global _lost  # noqa: PLW0603
        misses = 0
        since = time.monotonic()
        quiet = False  # Ray's print threads were stopped
        quiet_after = _seconds_from_env(_QUIET_AFTER_ENV, _QUIET_AFTER)
        while not _closed:
            started = time.monotonic()
            try:
                check = ray._private.worker.global_worker.gcs_client.check_alive
            except AttributeError:  # another Ray 2.x: no such check, so no watch
                log.warning("cannot watch the Ray cluster at {}: this Ray has no check", address)
                return
            try:
                check([], timeout=_HEALTH_WAIT)
            except Exception:
                misses += 1
                if misses == 1:
                    since = started
            else:
                if _lost is not None:
                    log.warning(
                        "the Ray cluster at {} answers again{}",
                        address,
                        "; what placed work prints is no longer shown here until jobvisor restarts"
                        if quiet
                        else "",
                    )
                    _lost = None
                    _fence_later()
                misses = 0
            if misses >= _HEALTH_FAILURES and _lost is None:
                seconds = time.monotonic() - since
                message = (
                    f"lost the Ray cluster at {address}: its head has not answered for "
                    f"{seconds:.0f}s"
                )
                log.error(
                    "{}; placed jobs fail until it answers again (a new head at that address "
                    "is a new cluster, which this process cannot join: restart jobvisor)",
                    message,
                )
                _lost = ClusterUnreachable(message)
            if _lost is not None and not quiet and started - since >= quiet_after:
                # Ray's threads that print the nodes' output and errors here poll the head
                # in a busy loop while it is gone (a core of CPU): they stop, for good.
                ray._private.worker.global_worker.threads_stopped.set()
                quiet = True
            time.sleep(max(0.0, _HEALTH_PERIOD - (time.monotonic() - started)))

    threading.Thread(target=watch, name="ray-health", daemon=True).start()


def live_runners() -> dict[str, Any]:
    """The runner handles alive now, by path (a copy)."""
    with _lock:
        return dict(_runners)


def shutdown() -> None:
    """Kill every remote actor this process created, then disconnect from Ray (at exit).

    A local Ray instance this process started stops with it.
    """
    global _closed  # noqa: PLW0603
    with _lock:
        _closed = True
        handles = list(_runners.values())
        _runners.clear()
    ray = sys.modules.get("ray")
    if ray is None:
        return
    for handle in handles:
        _kill(ray, handle)
    if ray.is_initialized():
        ray.shutdown()


def _kill(ray: Any, handle: Any) -> None:
    """``ray.kill(handle)``, waited for at most ``_KILL_WAIT``.

    It waits for the cluster's head to take the kill, and for ever while the head is
    gone: then it goes on in the background, and the job's thread goes on. While the
    cluster is known lost, the kill waits for its head to answer again (``_fence_later``).
    """
    if _lost is not None:
        with _lock:
            _unfenced.append(handle)
        return

    def kill() -> None:
        with contextlib.suppress(Exception):  # already dead, or Ray already gone: nothing to fence
            ray.kill(handle, no_restart=True)

    killer = threading.Thread(target=kill, name="ray-kill", daemon=True)
    killer.start()
    killer.join(_KILL_WAIT)


def _fence_later() -> None:
    """Kill the runners let go while the cluster was lost: its head answers again."""
    ray = sys.modules.get("ray")
    with _lock:
        handles = list(_unfenced)
        _unfenced.clear()
    if ray is not None:
        for handle in handles:
            _kill(ray, handle)


def _worker_paths() -> list[str]:
    """This process's import path, put first on a placed actor's: the same modules there."""
    entries = [p for p in sys.path if isinstance(p, str) and p and Path(p).is_dir()]
    entries.append(str(Path.cwd()))
    return list(dict.fromkeys(entries))


def ray_options(placement: RayPlacement, max_concurrency: int) -> dict[str, Any]:
    """The ``.options()`` of a runner: restarts and retries off, the placement's resources."""
    options: dict[str, Any] = {
        "max_restarts": 0,
        "max_task_retries": 0,
        "max_concurrency": max_concurrency,
    }
    if placement.num_cpus is not None:
        options["num_cpus"] = placement.num_cpus
    if placement.num_gpus is not None:
        options["num_gpus"] = placement.num_gpus
    if placement.memory is not None:
        options["memory"] = placement.memory
    resources = dict(placement.resources)
    node = placement.node
    if node is not None:
        if _looks_like_ip(node):
            resources[f"node:{node}"] = 0.001
        else:
            from ray.util.scheduling_strategies import (  # noqa: PLC0415
                NodeAffinitySchedulingStrategy,
            )

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    if resources:
        options["resources"] = resources
    return options


def _looks_like_ip(node: str) -> bool:
    import ipaddress  # noqa: PLC0415

    try:
        ipaddress.ip_address(node)
    except ValueError:
        return False
    return True


def create_actor(
    ray: Any,
    path: str,
    placement: RayPlacement,
    target: type | None = None,
    *args: Any,
    concurrency: int = 4,
) -> Any:
    """Start the Ray actor of ``path``, fencing any older one of that path first.

    A job's runner, or (``target``) a user's actor class built with ``args``.
    ``concurrency`` 1 makes each call cheaper (no thread pool), but then no
    call reaches the actor while another runs.
    """
    with _lock:
        old = _runners.pop(path, None)
    if old is not None:
        _kill(ray, old)
    boot = _boot_class(ray)
    pickled = None if target is None else ray.cloudpickle.dumps(target)
    options = ray_options(placement, concurrency)
    handle = boot.options(**options).remote(_worker_paths(), pickled, args)
    with _lock:
        if _closed:
            _kill(ray, handle)
            raise PlacementLost("jobvisor is exiting: nothing more is placed on Ray")
        _runners[path] = handle
    return handle


_boot: Any = None


def _boot_class(ray: Any) -> Any:
    global _boot  # noqa: PLW0603 - made once: ray.remote exports the class per instance
    with _lock:
        if _boot is None:
            from actors import _ray_boot  # noqa: PLC0415

            ray.cloudpickle.register_pickle_by_value(_ray_boot)
            _boot = ray.remote(_ray_boot.Boot)
        return _boot


def forget_actor(ray: Any, path: str, handle: Any) -> None:
    """Kill ``handle`` and drop it, if it is still the live actor of ``path``."""
    with _lock:
        if _runners.get(path) is handle:
            del _runners[path]
    _kill(ray, handle)


def wait_ref(
    ray: Any,
    ref: Any,
    stop: threading.Event | None,
    slow: Callable[[float], None] | None = None,
) -> bool:
    """Wait until ``ref`` is ready; False if ``stop`` was set first.

    ``ClusterUnreachable`` once the health watch finds the cluster's head gone:
    then nothing says whether, or when, ``ref`` would ever be ready. ``slow``
    is called once, with the seconds waited, after ``_PENDING_WARN``.
    """
    warn_at = time.monotonic() + _PENDING_WARN if slow is not None else None
    while True:
        done, _ = ray.wait([ref], timeout=_POLL)
        if done:
            return True
        if stop is not None and stop.is_set():
            return False
        if warn_at is not None and slow is not None and time.monotonic() >= warn_at:
            warn_at = None
            slow(_PENDING_WARN)
        lost_cluster = _lost
        if lost_cluster is not None:
            raise lost_cluster


def _get(ray: Any, ref: Any) -> Any:
    """``ray.get(ref)``: it returns, or raises once a stop's ``ray.kill`` ended the runner.

    It waits with ``ray.wait`` first, a second at a time: a lost cluster's head
    (``_lost``) would never let a plain ``ray.get`` return.
    """
    while True:
        done, _ = ray.wait([ref], timeout=_HEALTH_PERIOD)
        if done:
            return ray.get(ref)
        lost_cluster = _lost
        if lost_cluster is not None:
            raise lost_cluster


def lost(ray: Any, exc: BaseException) -> bool:
    """Whether ``exc`` says the remote actor, its worker or its node is gone."""
    errors = ray.exceptions
    gone = tuple(
        getattr(errors, name)
        for name in (
            "RayActorError",
            "ActorDiedError",
            "ActorUnavailableError",
            "WorkerCrashedError",
            "NodeDiedError",
            "ObjectLostError",
            "OwnerDiedError",
            "LocalRayletDiedError",
        )
        if hasattr(errors, name)
    )
    return isinstance(exc, gone)


def remote_failure(ray: Any, exc: BaseException, where: str) -> BaseException:
    """The attempt's failure for what ``ray.get`` raised."""
    if isinstance(exc, ClusterUnreachable):
        return exc
    if lost(ray, exc):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return PlacementLost(f"its Ray actor on {where} is gone ({type(exc).__name__}): {first}")
    cause = getattr(exc, "cause", None)
    if isinstance(cause, RemoteError):  # the work's own exception, as the node saw it
        return _on_node(cause, where)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, JobFailure):
        return cause  # ours (a command's exit code, an http status) keep their meaning
    if isinstance(exc, ray.exceptions.RayError):  # Ray's own trouble: its text, uncoloured
        shown = cause if isinstance(exc, ray.exceptions.RayTaskError) and cause else exc
        text = "" if shown is exc else f"\n{exc}"
        return RemoteError(
            _ANSI.sub("", f"{type(shown).__name__}: {shown} (on {where}){text}"),
            failure_names(shown),
        )
    return exc


def _on_node(cause: RemoteError, where: str) -> RemoteError:
    """``cause``, the work's own exception as its node saw it, said with where it ran."""
    return RemoteError(
        f"{cause} (on {where})\n{cause.traceback}", cause.failure_names, cause.traceback
    )


# -- the remote side -------------------------------------------------------------------------------


class _Capture(logbook.Handler):  # type: ignore[misc]
    """Collects the work's log records (a command's output lines) to send back to jobvisor."""

    def __init__(self, sink: queue.SimpleQueue[tuple[Any, ...]]) -> None:
        super().__init__(level=logbook.DEBUG, bubble=False)
        self.sink = sink

    def should_handle(self, record: Any) -> bool:
        return bool(record.extra.get("path")) and bool(super().should_handle(record))

    def emit(self, record: Any) -> None:
        extra = {k: v for k, v in record.extra.items() if isinstance(v, str | int | float)}
        self.sink.put((record.channel, record.level, record.msg, tuple(record.args), extra))


_OUTPUT: Final = "jobvisor.output"  # the channel of a record that is output bytes for the file


class _RemoteOutput:
    """A placed command's ``OutputSink`` on its node: its bytes go back to jobvisor's file."""

    def __init__(self, sink: queue.SimpleQueue[tuple[Any, ...]], *, logged: bool) -> None:
        self.sink = sink
        self.logged = logged

    def write(self, stream: str, lines: bytes) -> None:
        self.sink.put((_OUTPUT, 0, "", (stream, lines), {}))

    def close(self) -> None:
        pass


class Runner:
    """The Ray actor of one job incarnation: runs its attempts of ``work`` on its node."""

    def __init__(self) -> None:
        self.lines: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.attempt: Attempt | None = None
        self.work: Any = None
        # The last attempt number a cancel named: its calls run on several threads in no
        # fixed order, and a cancel that comes before its attempt must still stop it.
        self.cancelled = 0
        self.lock = threading.Lock()
        _Capture(self.lines).push_application()
        # Ray SIGKILLs a worker's children as it ends (its node lost): a warden among them
        # would leave what the commands started in their groups running there.
        WARDEN.detach()

    def where(self) -> tuple[str, str, int]:
        import ray  # noqa: PLC0415

        return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address(), os.getpid()  # type: ignore[no-untyped-call]

    def run(
        self,
        work: Work | None,
        path: str,
        number: int,
        started_at: float,
        logged: bool | None = None,
    ) -> int | None:
        """One attempt of ``work``; None: the work of the runner's previous call (sent once).

        ``logged`` not None: the job has an output file (on jobvisor's side), and its lines
        go to the log too when True. Its bytes are sent back with the records.
        """
        attempt = Attempt(path, number, started_at)
        if logged is not None:
            sink = _RemoteOutput(self.lines, logged=logged)
            attempt.output = lambda _attempt: sink
        with self.lock:
            if work is not None:
                self.work = work
            if number <= self.cancelled:
                raise _never_started(attempt)
            self.attempt = attempt
        work = self.work
        token = current_attempt_var.set(attempt)
        try:
            return work.run(attempt)
        except JobFailure:
            raise  # ours (a command's exit code, an http status): they travel as they are
        except Exception as exc:
            # The user's exception may not pickle, or not unpickle: its names and text do.
            raise RemoteError.of(exc) from None
        finally:
            current_attempt_var.reset(token)

    def drain(self, wait: float) -> list[tuple[Any, ...]]:
        """The records logged since the last drain; waits up to ``wait`` seconds for one."""
        out: list[tuple[Any, ...]] = []
        with contextlib.suppress(queue.Empty):
            out.append(self.lines.get(timeout=wait) if wait > 0 else self.lines.get_nowait())
            while True:
                out.append(self.lines.get_nowait())
        return out

    def cancel(self, number: int, *, kill: bool) -> None:
        with self.lock:
            self.cancelled = max(self.cancelled, number)
            attempt, work = self.attempt, self.work
        if attempt is None or attempt.number != number:
            return  # its run, when it comes, sees the number and starts nothing
        attempt.cancelled.set()
        stop = getattr(work, "kill", None) if kill else work.cancel
        if stop is not None:
            stop(attempt)


# -- the local side --------------------------------------------------------------------------------


class RayWork:
    """One incarnation's placed work: ``inner`` runs in this incarnation's Ray runner.

    Not a spec: built per incarnation (``placed_work``), it holds the runner.
    A job actor reads its ``kill`` as "stops itself": a stop or timeout asks
    the remote work to stop (a command's group gets its stop signal, SIGKILL
    after the grace, on its node) and kills the runner after ``grace``. One
    that comes before the work has started there (while the runner is being
    placed) keeps it from starting: the attempt fails with ``PlacementCancelled``.
    """

    kind: ClassVar[str] = "ray"

    def __init__(self, inner: Work, placement: RayPlacement, grace: float) -> None:
        self.inner = inner
        self.kind = inner.kind  # type: ignore[misc] # as the job's, for logs and classification
        self.placement = placement
        self.grace = grace
        self.node: dict[str, str] | None = None  # {id, ip} while the runner lives
        self.placed_on: str | None = None  # "ID (IP)" of the last runner: attempts name it
        self.pid: int | None = None  # the runner's process, for tests and benchmarks
        self._handle: Any = None
        self._sent = False  # the current runner holds ``inner`` (reset with each new runner)
        self._path = ""
        self._timers: list[threading.Timer] = []
        self._streams = inner.kind == "command"
        # Held while an attempt is sent, and by a cancel: a cancel either comes before the
        # send (which then sends nothing) or knows the runner has the attempt to stop.
        self._lock = threading.Lock()
        self._sent_attempt: Attempt | None = None

    # -- the Work protocol -------------------------------------------------------------------------

    def run(self, attempt: Attempt) -> int | None:
        if attempt.cancelled.is_set():
            raise _never_started(attempt)  # a stop that came as the attempt was made
        ray = _ray(attempt.cancelled)
        if ray is None:
            raise _never_started(attempt)  # stopped while jobvisor was connecting to Ray
        lost_cluster = _lost
        if lost_cluster is not None and self._handle is None:
            raise lost_cluster  # nothing can be placed until its head answers again
        handle = self._runner(ray, attempt)
        if handle is None:
            raise _never_started(attempt)  # cancelled while it was being placed
        where = self.where()
        with self._lock:
            # Placing took a while: a stop that came meanwhile (its cancel found no attempt
            # on the runner to stop) must not see the work start now.
            if attempt.cancelled.is_set():
                raise _never_started(attempt)
            # The work goes to a runner once: a periodic job's later attempts pickle no spec.
            work, self._sent = (None if self._sent else self.inner), True
            # A command's output file is written here, from the lines its runner sends back.
            output = attempt.output if self._streams else None
            sink = output(attempt) if output is not None else None
            logged = None if sink is None else sink.logged
            ref = handle.run.remote(work, attempt.path, attempt.number, attempt.started_at, logged)
            self._sent_attempt = attempt
        try:
            if self._streams:
                self._stream(ray, handle, ref, sink)
            return _get(ray, ref)  # type: ignore[no-any-return]
        except Exception as exc:
            # Fenced before anything else happens: the next incarnation gets a new runner.
            self.release()
            raise remote_failure(ray, exc, where) from None
        finally:
            if sink is not None:
                sink.close()

    def _runner(self, ray: Any, attempt: Attempt) -> Any:
        if self._handle is not None:
            return self._handle
        self._path = attempt.path
        # Only a command's runner is called during an attempt (its output, its stop signal);
        # python and http work is stopped by ending the runner, after the grace.
        concurrency = 4 if self._streams else 1
        handle = create_actor(ray, attempt.path, self.placement, concurrency=concurrency)
        self._handle, self._sent = handle, False
        ref = handle.where.remote()

        def slow(waited: float) -> None:
            # No timeout would end this wait: a placement no node can take waits for ever.
            log.warning(
                "{}: not placed on Ray after {:g}s: no node can take {} now; it waits until "
                "one can (check the cluster's nodes and free resources: ray status), "
                "a stop, or its timeout",
                attempt.path,
                waited,
                self.placement.describe(),
                extra={"path": attempt.path, "attempt": attempt.number},
            )

        try:
            if not wait_ref(ray, ref, attempt.cancelled, slow):
                self.release()
                return None
            node_id, ip, pid = ray.get(ref)
        except Exception as exc:
            self.release()
            raise remote_failure(ray, exc, "a node not known yet") from None
        self.node, self.pid = {"id": node_id, "ip": ip}, pid
        self.placed_on = f"{node_id} ({ip})"
        log.info(
            "{}: placed on Ray node {} ({}), pid {}",
            attempt.path,
            node_id,
            ip,
            pid,
            extra={"path": attempt.path, "attempt": attempt.number, "node": node_id},
        )
        return handle

    def _stream(self, ray: Any, handle: Any, ref: Any, sink: OutputSink | None) -> None:
        """Log the remote work's records here as they come, until the attempt ends.

        Its output's bytes (``_OUTPUT`` records) go to ``sink``, the job's output file.
        """
        while True:
            done, _ = ray.wait([ref], timeout=0)
            try:
                records = _get(ray, handle.drain.remote(0.0 if done else _POLL))
            except ClusterUnreachable:
                raise
            except Exception:
                if done:
                    return
                wait_ref(ray, ref, None)  # the runner died: ray.get(ref) says how
                return
            for channel, level, msg, args, extra in records:
                if channel == _OUTPUT:
                    if sink is not None:
                        sink.write(*args)
                    continue
                logbook.Logger(channel).log(level, msg, *args, extra=extra)
            if done:
                return

    def where(self) -> str:
        node = self.node
        return f"node {node['id']} ({node['ip']})" if node else "a node not known yet"

    def cancel(self, attempt: Attempt) -> None:
        with self._lock:
            attempt.cancelled.set()
            handle, sent = self._handle, self._sent_attempt is attempt
        if handle is None:
            return
        if self._streams and sent:
            with contextlib.suppress(Exception):
                handle.cancel.remote(attempt.number, kill=False)
        # Python code cannot be stopped from outside but by ending its process: after the
        # grace, the runner is killed (a command's group has had its SIGKILL on the node).
        timer = threading.Timer(self.grace, self._kill_handle, args=(handle,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def kill(self, attempt: Attempt) -> None:
        with self._lock:
            attempt.cancelled.set()
            handle = self._handle
        if handle is not None:
            self._kill_handle(handle)

    def release(self) -> None:
        """The incarnation is over (or its runner failed): kill the runner."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        handle, self._handle = self._handle, None
        self.node = None
        if handle is not None:
            import ray  # noqa: PLC0415

            forget_actor(ray, self._path, handle)

    def _kill_handle(self, handle: Any) -> None:
        import ray  # noqa: PLC0415

        _kill(ray, handle)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def describe(self) -> str:
        return self.inner.describe()

    def retryable(self, exc: BaseException, on: tuple[str, ...]) -> bool:
        if isinstance(exc, PlacementLost):
            return not on
        return self.inner.retryable(exc, on)

    def retry_after(self, exc: BaseException) -> float | None:
        return self.inner.retry_after(exc)


def _never_started(attempt: Attempt) -> PlacementCancelled:
    return PlacementCancelled(
        f"{attempt.path} attempt {attempt.number} was stopped before it started on Ray"
    )


def placed_work(work: Work, placement: RayPlacement, grace: float) -> RayWork:
    """The work of one incarnation of a job placed on Ray."""
    return RayWork(work, placement, grace)


# -- embedded actors on Ray ------------------------------------------------------------------------


class RemoteActor:
    """The Ray actor holding a user's pykka actor object: its messages, one at a time."""

    def __init__(self, pickled: bytes, args: tuple[Any, ...]) -> None:
        import pickle  # noqa: PLC0415

        cls = pickle.loads(pickled)  # noqa: S301 - jobvisor's own bytes, from its driver
        self.lock = threading.Lock()
        # Raised in Ray's creation task, the user's error reached the driver as the actor's
        # death, "gone", its type and traceback lost: kept, and told by where(), the start's
        # first call, with the node it ran on.
        self.failed: RemoteError | None = None
        try:
            self.actor = cls(*args[0], **args[1])
            self.actor.on_start()
        except Exception as exc:
            self.failed = RemoteError.of(exc)

    def where(self) -> tuple[str, str, int, RemoteError | None]:
        return (*Runner.where(self), self.failed)  # type: ignore[arg-type]

    def receive(self, message: Any) -> Any:
        with self.lock:  # a pykka actor handles one message at a time
            return self.actor.on_receive(message)

    def watch(self) -> None:
        """Never returns: its caller learns from the error that this actor is gone."""
        threading.Event().wait()


class RayActorProxy(OwnActor):
    """The local incarnation of a user's actor placed on Ray: forwards every message to it.

    The stable reference (``Tree.ref``) reaches this proxy, which hands each
    message to the remote actor and answers with its reply. When the remote
    actor dies (its worker or node lost) the proxy fails with an error naming
    the node, so the supervisor restarts it: a new remote actor, the same
    reference. Its end, whatever the cause, kills the remote actor.
    """

    def __init__(
        self,
        actor_class: type,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        placement: RayPlacement,
        path: str,
    ) -> None:
        super().__init__()
        self.actor_class = actor_class
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.placement = placement
        self.path = path
        self.placed_node: dict[str, str] | None = None
        self._handle: Any = None
        self._where = "a node not known yet"

    def on_start(self) -> None:
        ray = _ray()
        handle = create_actor(
            ray, self.path, self.placement, self.actor_class, self.args, self.kwargs
        )
        self._handle = handle
        try:
            node_id, ip, _, failed = ray.get(handle.where.remote())
        except Exception as exc:
            raise remote_failure(ray, exc, self._where) from None
        self.placed_node = {"id": node_id, "ip": ip}
        self._where = f"node {node_id} ({ip})"
        if failed is not None:  # its own __init__ or on_start raised, on the node
            raise _on_node(failed, self._where)
        watch = handle.watch.remote()
        threading.Thread(
            target=self._watch, args=(ray, watch), name=f"jv-{self._jv_thread_name}-watch"
        ).start()

    def _watch(self, ray: Any, ref: Any) -> None:
        """Fail this incarnation once the remote actor is gone (nobody may be talking to it)."""
        while not self.actor_stopped.is_set():
            done, _ = ray.wait([ref], timeout=_POLL)
            if done:
                if not self.actor_stopped.is_set():
                    with contextlib.suppress(pykka.ActorDeadError):
                        self.actor_ref.tell(_Gone())
                return

    def on_receive(self, message: Any) -> Any:
        ray = _ray()
        if isinstance(message, _Gone):
            raise PlacementLost(f"{self.path}: its Ray actor on {self._where} is gone")
        try:
            return ray.get(self._handle.receive.remote(message))
        except Exception as exc:
            error = remote_failure(ray, exc, self._where)
            if isinstance(error, PlacementLost):
                self._jv_finish(error)  # a lost actor ends this incarnation, ask or tell
            cause = getattr(exc, "cause", None)
            raise (
                cause if isinstance(cause, Exception) and error is not cause else error
            ) from None

    def _actor_loop_teardown(self) -> None:
        try:
            self._release()
        finally:
            super()._actor_loop_teardown()

    def _jv_kill(self) -> None:
        self._release()
        super()._jv_kill()

    def _release(self) -> None:
        handle, self._handle = self._handle, None
        self.placed_node = None
        if handle is not None:
            import ray  # noqa: PLC0415

            forget_actor(ray, self.path, handle)


class _Gone:
    """Told to the proxy by its watcher: the remote actor died."""
