"""What decides: specs, policies, the supervisor actor and the tree handle.

from supervision import start_tree, SupervisorSpec, python_job

with start_tree(SupervisorSpec(children=(python_job("etl", "etl:main"),))) as tree:
    tree.wait()

``__all__`` is the embedded API (README, SPEC §7): specs and policies, the
tree, the manifest loader, logging, typed events, the journal and the exception tree.
Each name loads its module on first use (PEP 562), so ``jobvisor status``,
which imports ``supervision._client`` only, loads neither pykka nor logbook.
The CLI's plumbing (composition, daemon, tables, decisions) lives in the
private modules, which is where the CLI, tests and benchmarks import it from.
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing is a tenth of a control command's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from actors._attempt import current_attempt
    from actors._breaker import Breaker
    from actors._command import (
        CommandFailed,
        CommandWork,
    )
    from actors._confine import Limits, RunAs
    from actors._errors import (
        ActionTimeoutError,
        AttemptTimeout,
        ChildKilled,
        ChildrenChangedError,
        ChildUnavailableError,
        DependencyDownError,
        EscalationError,
        GroupDownError,
        InHubError,
        JobFailure,
        JobvisorError,
        NoSuchChildError,
        NoThreadError,
        NotSignalledError,
        RuntimeSetupError,
        ServiceExited,
        SpecError,
        TreeStoppedError,
    )
    from actors._http import (
        HttpRequestError,
        HttpStatusError,
        HttpWork,
    )
    from actors._job import Schedule
    from actors._messages import (
        Outcome,
    )
    from actors._placement import RayPlacement
    from actors._python import (
        PythonWork,
    )
    from actors._ready import (
        NotReady,
        ReadyProbe,
    )
    from actors._ref import (
        ChildRef,
        ReplyTimeoutError,
    )
    from actors._retry import (
        RetrySpec,
        RetryWait,
    )
    from supervision._events import (
        AttemptFinished,
        BreakerChanged,
        ChildExited,
        Commanded,
        CooldownStarted,
        Escalated,
        Event,
        FailedFinally,
        GaveUp,
        NotStarted,
        ProbationPassed,
        Reloaded,
        RestartScheduled,
        StateChanged,
        Subscription,
        ThreadAbandoned,
    )
    from supervision._exits import GiveUpOn
    from supervision._history import (
        JournalError,
    )
    from supervision._journal import (
        Journal,
    )
    from supervision._logging import (
        LoggingSetup,
        LoggingSetupError,
        configure_logging,
    )
    from supervision._manifest import (
        Issue,
        Manifest,
        ManifestError,
        load_manifest,
    )
    from supervision._notify import HttpTarget, NotifyEvent, NotifySpec
    from supervision._policy import (
        Backoff,
        Budget,
        CooldownPolicy,
        Intensity,
        OnExhausted,
        RestartPolicy,
        RestartType,
        Strategy,
    )
    from supervision._secrets import SecretMasker
    from supervision._spec import (
        ActorSpec,
        BreakerSpec,
        ChildSpec,
        JobSpec,
        LoggingSpec,
        OutputSpec,
        RotateSpec,
        SupervisorSpec,
        python_job,
    )
    from supervision._state import (
        State,
    )
    from supervision._tree import (
        RunResult,
        Tree,
        start_tree,
    )

_PUBLIC: dict[str, str] = {
    "ActorSpec": "supervision._spec",
    "AttemptFinished": "supervision._events",
    "AttemptTimeout": "actors._errors",
    "Backoff": "supervision._policy",
    "Breaker": "actors._breaker",
    "BreakerChanged": "supervision._events",
    "BreakerSpec": "supervision._spec",
    "Budget": "supervision._policy",
    "ChildExited": "supervision._events",
    "ChildKilled": "actors._errors",
    "ChildRef": "actors._ref",
    "ReplyTimeoutError": "actors._ref",
    "ChildSpec": "supervision._spec",
    "ChildUnavailableError": "actors._errors",
    "ChildrenChangedError": "actors._errors",
    "CommandFailed": "actors._command",
    "CommandWork": "actors._command",
    "Commanded": "supervision._events",
    "CooldownPolicy": "supervision._policy",
    "CooldownStarted": "supervision._events",
    "DependencyDownError": "actors._errors",
    "Escalated": "supervision._events",
    "EscalationError": "actors._errors",
    "Event": "supervision._events",
    "FailedFinally": "supervision._events",
    "GaveUp": "supervision._events",
    "GiveUpOn": "supervision._exits",
    "GroupDownError": "actors._errors",
    "InHubError": "actors._errors",
    "HttpRequestError": "actors._http",
    "HttpStatusError": "actors._http",
    "HttpTarget": "supervision._notify",
    "HttpWork": "actors._http",
    "Intensity": "supervision._policy",
    "Issue": "supervision._manifest",
    "JobFailure": "actors._errors",
    "JobSpec": "supervision._spec",
    "JobvisorError": "actors._errors",
    "Journal": "supervision._journal",
    "JournalError": "supervision._history",
    "Limits": "actors._confine",
    "LoggingSetup": "supervision._logging",
    "LoggingSetupError": "supervision._logging",
    "LoggingSpec": "supervision._spec",
    "Manifest": "supervision._manifest",
    "ManifestError": "supervision._manifest",
    "NoSuchChildError": "actors._errors",
    "NoThreadError": "actors._errors",
    "NotReady": "actors._ready",
    "NotSignalledError": "actors._errors",
    "NotStarted": "supervision._events",
    "NotifyEvent": "supervision._notify",
    "NotifySpec": "supervision._notify",
    "OnExhausted": "supervision._policy",
    "Outcome": "actors._messages",
    "OutputSpec": "supervision._spec",
    "ProbationPassed": "supervision._events",
    "PythonWork": "actors._python",
    "RayPlacement": "actors._placement",
    "ReadyProbe": "actors._ready",
    "Reloaded": "supervision._events",
    "RestartPolicy": "supervision._policy",
    "RestartScheduled": "supervision._events",
    "RestartType": "supervision._policy",
    "RetrySpec": "actors._retry",
    "RetryWait": "actors._retry",
    "RotateSpec": "supervision._spec",
    "RunAs": "actors._confine",
    "RunResult": "supervision._tree",
    "RuntimeSetupError": "actors._errors",
    "Schedule": "actors._job",
    "SecretMasker": "supervision._secrets",
    "ServiceExited": "actors._errors",
    "SpecError": "actors._errors",
    "State": "supervision._state",
    "StateChanged": "supervision._events",
    "Strategy": "supervision._policy",
    "Subscription": "supervision._events",
    "SupervisorSpec": "supervision._spec",
    "ThreadAbandoned": "supervision._events",
    "Tree": "supervision._tree",
    "TreeStoppedError": "actors._errors",
    "ActionTimeoutError": "actors._errors",
    "configure_logging": "supervision._logging",
    "current_attempt": "actors._attempt",
    "load_manifest": "supervision._manifest",
    "python_job": "supervision._spec",
    "start_tree": "supervision._tree",
}

# Formerly exported here; now private. Named so that an old import says where it went.
_MOVED: dict[str, str] = {
    "BreakerState": "actors",
    "Composition": "supervision._app",
    "ControlServer": "supervision._daemon",
    "Cooldown": "supervision._policy",
    "Daemon": "supervision._daemon",
    "DaemonError": "supervision._daemon",
    "Decision": "supervision._policy",
    "Escalate": "supervision._policy",
    "FINAL": "supervision._state",
    "GiveUp": "supervision._policy",
    "Window": "supervision._policy",
    "NoDaemonError": "supervision._client",
    "Restart": "supervision._policy",
    "RunReport": "supervision._app",
    "TRANSITIONS": "supervision._state",
    "build_breakers": "supervision._tree",
    "can_transition": "supervision._state",
    "compose": "supervision._app",
    "decide": "supervision._policy",
    "decide_probation_failure": "supervision._policy",
    "diff_specs": "supervision._daemon",
    "flatten_status": "supervision._table",
    "install_runtime": "actors",
    "parse": "supervision._manifest",
    "parse_duration": "supervision._manifest",
    "parse_size": "supervision._manifest",
    "read_history": "supervision._history",
    "read_succeeded": "supervision._history",
    "read_successes": "supervision._history",
    "request": "supervision._client",
    "run_batch": "supervision._app",
    "sd_notify": "supervision._daemon",
    "spec_hash": "supervision._journal",
    "succeeded_before": "supervision._journal",
    "summary_table": "supervision._table",
    "walk": "supervision._spec",
    "wants_restart": "supervision._policy",
    "write_progress": "supervision._app",
}


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        where = _MOVED.get(name)
        hint = f": it is private now, import it from {where}" if where else ""
        raise AttributeError(f"module 'supervision' has no attribute {name!r}{hint}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ActionTimeoutError",
    "ActorSpec",
    "AttemptFinished",
    "AttemptTimeout",
    "Backoff",
    "Breaker",
    "BreakerChanged",
    "BreakerSpec",
    "Budget",
    "ChildExited",
    "ChildKilled",
    "ChildRef",
    "ChildSpec",
    "ChildUnavailableError",
    "ChildrenChangedError",
    "CommandFailed",
    "CommandWork",
    "Commanded",
    "CooldownPolicy",
    "CooldownStarted",
    "DependencyDownError",
    "Escalated",
    "EscalationError",
    "Event",
    "FailedFinally",
    "GaveUp",
    "GiveUpOn",
    "GroupDownError",
    "HttpRequestError",
    "HttpStatusError",
    "HttpTarget",
    "HttpWork",
    "InHubError",
    "Intensity",
    "Issue",
    "JobFailure",
    "JobSpec",
    "JobvisorError",
    "Journal",
    "JournalError",
    "Limits",
    "LoggingSetup",
    "LoggingSetupError",
    "LoggingSpec",
    "Manifest",
    "ManifestError",
    "NoSuchChildError",
    "NoThreadError",
    "NotReady",
    "NotSignalledError",
    "NotStarted",
    "NotifyEvent",
    "NotifySpec",
    "OnExhausted",
    "Outcome",
    "OutputSpec",
    "ProbationPassed",
    "PythonWork",
    "RayPlacement",
    "ReadyProbe",
    "Reloaded",
    "ReplyTimeoutError",
    "RestartPolicy",
    "RestartScheduled",
    "RestartType",
    "RetrySpec",
    "RetryWait",
    "RotateSpec",
    "RunAs",
    "RunResult",
    "RuntimeSetupError",
    "Schedule",
    "SecretMasker",
    "ServiceExited",
    "SpecError",
    "State",
    "StateChanged",
    "Strategy",
    "Subscription",
    "SupervisorSpec",
    "ThreadAbandoned",
    "Tree",
    "TreeStoppedError",
    "configure_logging",
    "current_attempt",
    "load_manifest",
    "python_job",
    "start_tree",
]
