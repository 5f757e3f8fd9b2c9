"""``jobvisor validate --explain``: the resolved tree, every effective policy and default shown.

As text for people (``explain``) or as data for scripts (``explain_data``, ``--json``): the
same values, the data's durations in seconds and sizes in bytes. Secrets are masked;
environment variables and headers are shown by name only.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from actors._checks import fmt_duration
from actors._failnames import qualified_name
from actors._placement import RayPlacement
from supervision._issues import TEXT_NAME, mask
from supervision._notify import DAMPED
from supervision._policy import OnExhausted
from supervision._spec import JobSpec, SupervisorSpec
from supervision._units import fmt_size

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from actors import RetrySpec, Schedule
    from actors._confine import Limits
    from supervision._exits import GiveUpOn
    from supervision._manifest import Manifest
    from supervision._notify import NotifySpec
    from supervision._policy import RestartPolicy
    from supervision._spec import BreakerSpec, LoggingSpec

__all__ = ["explain", "explain_data"]


def explain(manifest: Manifest) -> str:
    """The resolved tree with every effective policy, defaults filled in; secrets masked."""
    out = [
        f"manifest: {manifest.path or TEXT_NAME} (version {manifest.version})",
        f"runtime: {manifest.runtime}",
        f"state_dir: {manifest.state_dir}",
        _explain_logging(manifest.logging),
        _explain_cluster(manifest),
        _explain_http(manifest),
    ]
    if manifest.breakers:
        out.append("breakers:")
        out.extend(
            f"  {name}: {_explain_breaker(spec)}" for name, spec in manifest.breakers.items()
        )
    else:
        out.append("breakers: none")
    out.extend(_explain_notify(manifest.notify, "") or ["notify: none"])
    _explain_supervisor(manifest.root, out, "", manifest.breakers)
    return mask("\n".join(out), manifest.secrets)


def _explain_http(manifest: Manifest) -> str:
    spec = manifest.http
    if spec is None:
        return "http: off (--http HOST:PORT turns it on)"
    token = "token=*** (actions allowed)" if spec.token else "no token (reads only)"
    reads = ", reads need the token too" if spec.reads == "token" else ""
    return f"http: listen={spec.listen} {token}{reads}"


def _explain_logging(spec: LoggingSpec) -> str:
    text = f"logging: level={spec.level} format={spec.format} file={spec.file or '(stderr)'}"
    if spec.rotate is not None:
        rotate = spec.rotate
        size = fmt_size(rotate.max_bytes) if rotate.max_bytes is not None else "none"
        text += f" rotate=(max_bytes={size} backups={rotate.backups} when={rotate.when or 'none'})"
    return text


def _explain_breaker(spec: BreakerSpec) -> str:
    return (
        f"failure_threshold={spec.failure_threshold} "
        f"reset_timeout={fmt_duration(spec.reset_timeout)} "
        f"half_open_max_calls={spec.half_open_max_calls}"
    )


def _explain_notify(specs: tuple[NotifySpec, ...], pad: str) -> list[str]:
    lines = []
    for spec in specs:
        events = ", ".join(e.value for e in spec.on)
        if spec.command is not None:
            how = "command " + " ".join(spec.command)
        else:
            assert spec.http is not None
            names = ", ".join(spec.http.headers)
            how = f"POST {spec.http.url}" + (f" headers: {names}" if names else "")
        damp = f" damp={fmt_duration(spec.damp)}" if DAMPED.intersection(spec.on) else ""
        retry = f"(timeout={fmt_duration(spec.timeout)} retry={spec.retry}{damp})"
        lines.append(f"{pad}notify: {spec.label} on {events}: {how} {retry}")
    return lines


def explain_policy(policy: RestartPolicy, out: list[str], pad: str) -> None:
    b, i, c = policy.backoff, policy.intensity, policy.cooldown
    out.append(f"{pad}intensity: max_restarts={i.max_restarts} within={fmt_duration(i.within)}")
    out.append(
        f"{pad}backoff: initial={fmt_duration(b.initial)} max={fmt_duration(b.max)} "
        f"multiplier={b.multiplier:g} jitter={b.jitter:g}"
    )
    out.append(f"{pad}on_exhausted: {policy.on_exhausted.value}")
    if policy.on_exhausted is OnExhausted.COOLDOWN:
        cycles = c.max_cycles if c.max_cycles is not None else "unlimited"
        out.append(
            f"{pad}cooldown: duration={fmt_duration(c.duration)} "
            f"probation={fmt_duration(c.probation)} multiplier={c.multiplier:g} "
            f"max={fmt_duration(c.max)} max_cycles={cycles}"
        )


def _explain_supervisor(
    spec: SupervisorSpec, out: list[str], pad: str, breakers: Mapping[str, BreakerSpec]
) -> None:
    kind = "supervisor" if not pad else "group"
    out.append(f"{pad}{kind} {spec.name}")
    inner = pad + "  "
    if pad:
        out.append(f"{inner}restart: {spec.restart.value}")
    out.append(f"{inner}strategy: {spec.strategy.value}")
    explain_policy(spec.policy, out, inner)
    out.extend(
        f"{line} (the group and every job in it)" for line in _explain_notify(spec.notify, inner)
    )
    if not pad:
        budget = spec.policy.budget
        out.append(
            f"{inner}budget: none (only each child's and group's intensity)"
            if budget is None
            else f"{inner}budget: max_restarts={budget.max_restarts} "
            f"within={fmt_duration(budget.within)} (every restart in the tree; "
            f"on_exhausted {spec.policy.on_exhausted.value} applies to the whole tree)"
        )
    deps = any(isinstance(c, JobSpec) and c.depends_on for c in spec.children)
    order = (
        "start in order, a dependant after what it depends on; stop in reverse, a dependant "
        "before what it depends on"
        if deps
        else "start in order, stop in reverse"
    )
    out.append(f"{inner}children ({order}):")
    for child in spec.children:
        if isinstance(child, SupervisorSpec):
            _explain_supervisor(child, out, inner + "  ", breakers)
        elif isinstance(child, JobSpec):
            _explain_job(child, out, inner + "  ", breakers)
        else:
            out.append(f"{inner}  actor {child.name} ({child.actor_class.__name__})")


def _explain_job(
    spec: JobSpec, out: list[str], pad: str, breakers: Mapping[str, BreakerSpec]
) -> None:
    inner = pad + "  "
    line = f"{pad}job {spec.name}"
    if not spec.autostart:  # said only when false: true is every job's default
        line += " autostart=false (not started with its tree: a person starts it)"
    out.append(line)
    out.extend(f"{inner}{line}" for line in _explain_work(spec))
    timeout = fmt_duration(spec.schedule.timeout) if spec.schedule.timeout else "none"
    if spec.schedule.timeout and spec.schedule.service:
        timeout += " (each run is stopped after it, then restarted)"
    mode = _explain_mode(spec.schedule)
    out.append(f"{inner}run: {mode}; timeout={timeout}; restart={spec.restart.value}")
    out.append(f"{inner}stop: {_explain_stop(spec)}")
    out.extend(_explain_notify(spec.notify, inner))
    out.append(f"{inner}retry: {_explain_retry(spec.retry)}")
    if spec.breaker is not None:
        settings = breakers.get(spec.breaker)
        detail = f" ({_explain_breaker(settings)})" if settings is not None else ""
        out.append(f"{inner}breaker: {spec.breaker}{detail}")
    if spec.depends_on:
        out.append(f"{inner}depends_on: {', '.join(spec.depends_on)}")
    if spec.ready is not None:
        out.append(f"{inner}ready: {_explain_ready(spec.ready, spec.work)}")
    out.append(f"{inner}placement: {_explain_placement(spec.placement)}")
    if spec.kind in ("command", "python"):
        out.append(f"{inner}output: {_explain_output(spec)}")


def _explain_placement(placement: object) -> str:
    """``local``, or ``ray {...}`` with what is set, as the manifest writes it (memory as a
    size, not in bytes)."""
    if not isinstance(placement, RayPlacement):
        return str(placement)
    parts = []
    for name, value in _placement_data(placement).items():
        if name == "type" or value is None or value == {}:
            continue
        if name == "memory":
            shown = fmt_size(value)
        elif name == "resources":
            shown = "{" + ", ".join(f"{k}: {n:g}" for k, n in value.items()) + "}"
        else:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{name}: {shown}")
    return "ray {" + ", ".join(parts) + "}" if parts else "ray"


def _explain_cluster(manifest: Manifest) -> str:
    address = manifest.cluster_address or "local (started when a job uses placement ray)"
    namespace = manifest.cluster_namespace
    return f"cluster: {address}" + (f", namespace {namespace}" if namespace else "")


def _describe(obj: object) -> str:
    describe = getattr(obj, "describe", None)
    text = str(describe()) if callable(describe) else repr(obj)
    return text.replace("\n", "\\n")


def _explain_work(spec: JobSpec) -> list[str]:
    work = spec.work
    lines = [f"work: {spec.kind} {_describe(work)}"]
    extras = []
    if cwd := getattr(work, "cwd", None):
        extras.append(f"cwd={cwd}")
    if env := getattr(work, "env", None):
        extras.append("env=" + ",".join(sorted(env)))  # names only: values may be secret
    extras.extend(_explain_confinement(work))
    if headers := getattr(work, "headers", None):
        extras.append("headers=" + ",".join(sorted(headers)))
    if spec.kind == "python":
        extras.append(f"isolation={getattr(work, 'isolation', 'thread')}")
    if spec.kind == "http":
        statuses = getattr(work, "expect_status", ())
        expect = ",".join(str(code) for code in statuses) if statuses else "2xx"
        extras.append(f"timeout={fmt_duration(getattr(work, 'timeout', 0.0))}")
        extras.append(f"expect_status={expect}")
    if extras:
        lines.append(" ".join(extras))
    exits = []
    if spec.kind == "command":
        codes = getattr(work, "success_exit_codes", (0,))
        exits.append("success_exit_codes=" + ",".join(str(code) for code in codes))
    rules = spec.give_up_on.describe() if spec.give_up_on else ""
    exits.append(f"give_up_on=({rules})" if rules else "give_up_on=none")  # {} sets no rule
    lines.append("exits: " + " ".join(exits))
    return lines


def _explain_confinement(work: object) -> list[str]:
    """A command's effective user, umask and limits; each left out when it is jobvisor's own."""
    out = []
    if (user := getattr(work, "user", None)) is not None:
        out.append(f"user={user.describe()}")
    if (umask := getattr(work, "umask", None)) is not None:
        out.append(f"umask={umask:03o}")
    if (limits := getattr(work, "limits", None)) is not None:
        out.append(f"limits=({limits.describe()})")
    return out


def _explain_mode(schedule: Schedule) -> str:
    if schedule.service:
        mode = "service"
    elif schedule.every is not None:
        mode = f"every {fmt_duration(schedule.every)}"
    elif schedule.cron is not None:
        mode = f"cron {schedule.cron!r}"
    else:
        mode = "once"
    if schedule.times is not None:
        mode += f", times={schedule.times}"
    if schedule.persistent:
        mode += ", persistent"
    if schedule.jitter is not None:
        mode += f", jitter={fmt_duration(schedule.jitter)}"
    return mode


def _explain_stop(spec: JobSpec) -> str:
    stop = f"grace={fmt_duration(spec.grace)}"
    signum = getattr(spec.work, "stop_signal", None)
    if signum is None:
        return stop
    try:
        return f"signal={signal.Signals(signum).name} {stop}"
    except ValueError:
        return f"signal={signum} {stop}"


def _explain_retry(retry: RetrySpec | None) -> str:
    if retry is None or retry.attempts == 1:
        return "none (attempts=1)"
    w = retry.wait
    on = ",".join(retry.on) if retry.on else "the kind's defaults"
    return (
        f"attempts={retry.attempts} wait=(initial={fmt_duration(w.initial)} "
        f"max={fmt_duration(w.max)} multiplier={w.multiplier:g} jitter={w.jitter:g}) on={on}"
    )


def _explain_output(spec: JobSpec) -> str:
    if spec.output is None:
        return "off"
    if getattr(spec.work, "isolation", "process") != "process":
        return "none (isolation thread: a python job's prints are not captured)"
    unlogged = "" if spec.output.log else " log=false"  # the file only: none in the log
    return (
        f"STATE_DIR/output/PATH.log max_bytes={fmt_size(spec.output.max_bytes)} "
        f"backups={spec.output.backups}{unlogged}"
    )


def _explain_ready(probe: object, work: object) -> str:
    timeout = getattr(probe, "timeout", None)
    interval = getattr(probe, "interval", None)
    tail = ""
    if isinstance(timeout, int | float) and isinstance(interval, int | float):
        tail = f" timeout={fmt_duration(timeout)} interval={fmt_duration(interval)}"
    beside = getattr(probe, "beside", None)
    if beside is not None and getattr(beside(work), "job", None) is not None:
        tail += " (run as the job's command: its cwd, env, user, umask and limits)"
    return _describe(probe) + tail


# -- as data (validate --explain --json) ----------------------------------------------------------


def explain_data(manifest: Manifest) -> dict[str, Any]:
    """What ``explain`` says, as a JSON-able document; every string with its secrets masked.

    Each job has the restart policy it follows, its parent's, and ``policy.from``, that
    parent's path ("" the root): a job's restarts are its group's to decide.
    """
    http = manifest.http
    document = {
        "manifest": str(manifest.path) if manifest.path is not None else TEXT_NAME,
        "version": manifest.version,
        "runtime": manifest.runtime,
        "state_dir": str(manifest.state_dir),
        "logging": _logging_data(manifest.logging),
        "cluster": {
            "address": manifest.cluster_address or None,  # None: local, started when needed
            "namespace": manifest.cluster_namespace or None,
        },
        "http": None
        if http is None
        else {"listen": http.listen, "token": bool(http.token), "reads": http.reads},
        "breakers": {name: _breaker_data(spec) for name, spec in manifest.breakers.items()},
        "notify": [_notify_data(spec) for spec in manifest.notify],
        "root": _supervisor_data(manifest.root, "", manifest),
    }
    masked: dict[str, Any] = _masked(document, manifest.secrets)
    return masked


def _masked(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, str):
        return mask(value, secrets) if secrets else value
    if isinstance(value, dict):
        return {key: _masked(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, secrets) for item in value]
    return value


def _logging_data(spec: LoggingSpec) -> dict[str, Any]:
    rotate = spec.rotate
    return {
        "level": spec.level,
        "format": spec.format,
        "file": spec.file,  # None: stderr
        "rotate": None
        if rotate is None
        else {"max_bytes": rotate.max_bytes, "backups": rotate.backups, "when": rotate.when},
    }


def _breaker_data(spec: BreakerSpec) -> dict[str, Any]:
    return {
        "failure_threshold": spec.failure_threshold,
        "reset_timeout": spec.reset_timeout,
        "half_open_max_calls": spec.half_open_max_calls,
    }


def _notify_data(spec: NotifySpec) -> dict[str, Any]:
    http = spec.http
    return {
        "label": spec.label,
        "on": [event.value for event in spec.on],
        "command": list(spec.command) if spec.command is not None else None,
        "http": None if http is None else {"url": http.url, "headers": sorted(http.headers)},
        "timeout": spec.timeout,
        "retry": spec.retry,
        "damp": spec.damp,
    }


def policy_data(policy: RestartPolicy) -> dict[str, Any]:
    """``explain_policy``'s values as data (the cooldown's only when on_exhausted is cooldown)."""
    b, i, c = policy.backoff, policy.intensity, policy.cooldown
    cooling = policy.on_exhausted is OnExhausted.COOLDOWN
    return {
        "intensity": {"max_restarts": i.max_restarts, "within": i.within},
        "backoff": {
            "initial": b.initial,
            "max": b.max,
            "multiplier": b.multiplier,
            "jitter": b.jitter,
        },
        "on_exhausted": policy.on_exhausted.value,
        "cooldown": {
            "duration": c.duration,
            "probation": c.probation,
            "multiplier": c.multiplier,
            "max": c.max,
            "max_cycles": c.max_cycles,  # None: unlimited
        }
        if cooling
        else None,
    }


def _supervisor_data(spec: SupervisorSpec, path: str, manifest: Manifest) -> dict[str, Any]:
    root = not path and spec is manifest.root
    node: dict[str, Any] = {
        "type": "supervisor" if root else "group",
        "name": spec.name,
        "path": path,
    }
    if not root:
        node["restart"] = spec.restart.value
    node["strategy"] = spec.strategy.value
    node["policy"] = policy_data(spec.policy)
    node["notify"] = [_notify_data(one) for one in spec.notify]  # the group and its jobs
    if root:
        budget = spec.policy.budget
        node["budget"] = (
            None
            if budget is None
            else {"max_restarts": budget.max_restarts, "within": budget.within}
        )
    children = []
    for child in spec.children:
        where = f"{path}/{child.name}" if path else child.name
        if isinstance(child, SupervisorSpec):
            children.append(_supervisor_data(child, where, manifest))
        elif isinstance(child, JobSpec):
            job = _job_data(child, where, manifest)
            job["policy"] = {**node["policy"], "from": path}
            children.append(job)
        else:
            children.append(
                {
                    "type": "actor",
                    "name": child.name,
                    "path": where,
                    "class": child.actor_class.__name__,
                }
            )
    node["children"] = children
    return node


def _job_data(spec: JobSpec, path: str, manifest: Manifest) -> dict[str, Any]:
    breaker = None
    if spec.breaker is not None:
        settings = manifest.breakers.get(spec.breaker)
        breaker = {"name": spec.breaker, **(_breaker_data(settings) if settings else {})}
    return {
        "type": "job",
        "name": spec.name,
        "path": path,
        "autostart": spec.autostart,
        "work": _work_data(spec),
        "give_up_on": _give_up_on_data(spec.give_up_on),
        "run": _run_data(spec.schedule),
        "restart": spec.restart.value,
        "stop": {"signal": _stop_signal(spec), "grace": spec.grace},
        "notify": [_notify_data(one) for one in spec.notify],
        "retry": _retry_data(spec.retry),
        "breaker": breaker,
        "depends_on": list(spec.depends_on),
        "ready": None if spec.ready is None else _ready_data(spec.ready, spec.work),
        "placement": _placement_data(spec.placement),
        "output": _output_data(spec, path, manifest),
    }


def _work_data(spec: JobSpec) -> dict[str, Any]:
    work = spec.work
    data: dict[str, Any] = {"kind": spec.kind, "describe": _describe(work)}
    data["cwd"] = str(cwd) if (cwd := getattr(work, "cwd", None)) else None
    data["env"] = sorted(getattr(work, "env", None) or ())  # names only: values may be secret
    user, umask = getattr(work, "user", None), getattr(work, "umask", None)
    limits = getattr(work, "limits", None)
    data["user"] = user.describe() if user is not None else None
    data["umask"] = f"{umask:03o}" if umask is not None else None
    data["limits"] = _limits_data(limits) if limits is not None else None
    if spec.kind == "command":
        data["success_exit_codes"] = list(getattr(work, "success_exit_codes", (0,)))
    if spec.kind == "python":
        data["isolation"] = getattr(work, "isolation", "thread")
    if spec.kind == "http":
        data["headers"] = sorted(getattr(work, "headers", None) or ())
        data["timeout"] = getattr(work, "timeout", 0.0)
        statuses = getattr(work, "expect_status", ())
        data["expect_status"] = list(statuses) if statuses else None  # None: any 2xx
    return data


def _limits_data(limits: Limits) -> dict[str, Any]:
    """Each limit in bytes, seconds or a count; "unlimited" lifted, None jobvisor's own."""
    return {name: getattr(limits, name) for name in ("nofile", "nproc", "memory", "cpu", "core")}


def _give_up_on_data(rules: GiveUpOn | None) -> dict[str, Any] | None:
    """None when no rule is set (``give_up_on: {}`` too), as the text's ``give_up_on=none``."""
    if rules is None or not (rules.exit_codes or rules.exceptions or rules.http_status):
        return None
    return {
        "exit_codes": list(rules.exit_codes),
        "exceptions": [qualified_name(cls) for cls in rules.exceptions],
        "http_status": list(rules.http_status),
    }


def _placement_data(placement: object) -> dict[str, Any]:
    """``{"type": "local"}``, or ``"ray"`` with its resources (memory in bytes; None: Ray's
    default)."""
    if not isinstance(placement, RayPlacement):
        return {"type": str(placement)}
    return {
        "type": "ray",
        "num_cpus": placement.num_cpus,
        "num_gpus": placement.num_gpus,
        "memory": placement.memory,
        "resources": dict(placement.resources),
        "node": placement.node,
    }


def _run_data(schedule: Schedule) -> dict[str, Any]:
    if schedule.service:
        mode = "service"
    elif schedule.every is not None:
        mode = "every"
    elif schedule.cron is not None:
        mode = "cron"
    else:
        mode = "once"
    return {
        "mode": mode,
        "every": schedule.every,
        "cron": schedule.cron,
        "times": schedule.times,
        "persistent": schedule.persistent,
        "jitter": schedule.jitter,
        "timeout": schedule.timeout or None,  # None: none
    }


def _stop_signal(spec: JobSpec) -> str | int | None:
    signum = getattr(spec.work, "stop_signal", None)
    if signum is None:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return int(signum)


def _retry_data(retry: RetrySpec | None) -> dict[str, Any] | None:
    if retry is None or retry.attempts == 1:
        return None
    w = retry.wait
    return {
        "attempts": retry.attempts,
        "wait": {
            "initial": w.initial,
            "max": w.max,
            "multiplier": w.multiplier,
            "jitter": w.jitter,
        },
        "on": list(retry.on),  # empty: the kind's defaults
    }


def _ready_data(probe: object, work: object) -> dict[str, Any]:
    timeout = getattr(probe, "timeout", None)
    interval = getattr(probe, "interval", None)
    beside = getattr(probe, "beside", None)
    return {
        "describe": _describe(probe),
        "timeout": timeout if isinstance(timeout, int | float) else None,
        "interval": interval if isinstance(interval, int | float) else None,
        # Its command runs as the job's does: its cwd, env, user, umask and limits.
        "as_job": beside is not None and getattr(beside(work), "job", None) is not None,
    }


def _output_data(spec: JobSpec, path: str, manifest: Manifest) -> dict[str, Any] | None:
    """None where no output file is kept: off, or a thread's python job (its prints are not
    captured)."""
    if spec.kind not in ("command", "python") or spec.output is None:
        return None
    if getattr(spec.work, "isolation", "process") != "process":
        return None
    # Not supervision._output's output_dir: that module brings logging in, which validate
    # never needs; _logs (standard library only) names the file as the daemon does.
    from supervision._logs import output_file  # noqa: PLC0415 - only the data needs the path

    return {
        "file": output_file(str(manifest.state_dir / "output"), path),
        "max_bytes": spec.output.max_bytes,
        "backups": spec.output.backups,
        "log": spec.output.log,
    }
