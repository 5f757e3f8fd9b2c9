"""What runs: supervised pykka actors, the job actor and its kinds, runtimes and timers.

Nothing loads eagerly: each name loads its module on first use (PEP 562), so
that ``from actors import install_runtime; install_runtime("gevent")`` can
monkey-patch the process before pykka, requests or logbook create a lock or
import ssl, and so that a control command that only needs the exception tree
loads nothing else. ``__all__`` is the public surface; the other names are what
``supervision`` builds on (messages, the job actor, the scheduler), reachable
here for it but not part of the API.
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing is a tenth of a control command's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from actors._attempt import Attempt, current_attempt
    from actors._attempt import Work as Work
    from actors._breaker import Breaker as Breaker
    from actors._breaker import BreakerState as BreakerState
    from actors._breaker import BreakerStatus as BreakerStatus
    from actors._breaker import Permit as Permit
    from actors._breaker import step_allow as step_allow
    from actors._breaker import step_record as step_record
    from actors._breaker import step_release as step_release
    from actors._command import (
        CommandFailed,
        CommandWork,
    )
    from actors._confine import Limits, RunAs
    from actors._errors import (
        ActionTimeoutError,
        AttemptTimeout,
        ChildKilled,
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
    from actors._errors import describe as describe
    from actors._http import (
        HttpRequestError,
        HttpStatusError,
        HttpWork,
    )
    from actors._http import check_http_retry_on as check_http_retry_on
    from actors._http import parse_retry_after as parse_retry_after
    from actors._http import redact_url as redact_url
    from actors._job import JobActor as JobActor
    from actors._job import Schedule
    from actors._job import close_work as close_work
    from actors._messages import AttemptDone as AttemptDone
    from actors._messages import ChildExit as ChildExit
    from actors._messages import ChildExits as ChildExits
    from actors._messages import ChildStarted as ChildStarted
    from actors._messages import Link as Link
    from actors._messages import Outcome
    from actors._messages import Parent as Parent
    from actors._messages import Resumed as Resumed
    from actors._messages import Waiting as Waiting
    from actors._python import PythonExit as PythonExit
    from actors._python import PythonWork
    from actors._python import resolve_target as resolve_target
    from actors._ready import (
        NotReady,
        ReadyProbe,
    )
    from actors._ref import ChildRef, ReplyTimeoutError
    from actors._retry import Retryable as Retryable
    from actors._retry import (
        RetrySpec,
        RetryWait,
    )
    from actors._retry import run_with_retry as run_with_retry
    from actors._runtime import (
        RUNTIMES,
        active_runtime,
        install_runtime,
    )
    from actors._runtime import Scheduler as Scheduler
    from actors._runtime import TimerHandle as TimerHandle
    from actors._runtime import check_runtime as check_runtime
    from actors._runtime import current_task as current_task
    from actors._runtime import interrupt_task as interrupt_task
    from actors._runtime import join_tasks as join_tasks
    from actors._runtime import live_tasks as live_tasks
    from actors._runtime import os_lock_type as os_lock_type
    from actors._runtime import start_task as start_task
    from actors._supervised import Kill as Kill
    from actors._supervised import SupervisedActor as SupervisedActor
    from actors._supervised import start_supervised as start_supervised
    from actors._supervised import supervised_class as supervised_class

_PUBLIC: dict[str, str] = {
    "Attempt": "actors._attempt",
    "AttemptTimeout": "actors._errors",
    "ChildKilled": "actors._errors",
    "ChildRef": "actors._ref",
    "ReplyTimeoutError": "actors._ref",
    "ChildUnavailableError": "actors._errors",
    "CommandFailed": "actors._command",
    "CommandWork": "actors._command",
    "EscalationError": "actors._errors",
    "HttpRequestError": "actors._http",
    "HttpStatusError": "actors._http",
    "HttpWork": "actors._http",
    "JobFailure": "actors._errors",
    "JobvisorError": "actors._errors",
    "Limits": "actors._confine",
    "GroupDownError": "actors._errors",
    "InHubError": "actors._errors",
    "DependencyDownError": "actors._errors",
    "NotSignalledError": "actors._errors",
    "NoThreadError": "actors._errors",
    "NoSuchChildError": "actors._errors",
    "NotReady": "actors._ready",
    "Outcome": "actors._messages",
    "PythonWork": "actors._python",
    "RUNTIMES": "actors._runtime",
    "ReadyProbe": "actors._ready",
    "RetrySpec": "actors._retry",
    "RetryWait": "actors._retry",
    "RunAs": "actors._confine",
    "RuntimeSetupError": "actors._errors",
    "Schedule": "actors._job",
    "ServiceExited": "actors._errors",
    "SpecError": "actors._errors",
    "TreeStoppedError": "actors._errors",
    "ActionTimeoutError": "actors._errors",
    "active_runtime": "actors._runtime",
    "current_attempt": "actors._attempt",
    "install_runtime": "actors._runtime",
}

# For ``supervision`` and the tests, not the API.
_INTERNAL: dict[str, str] = {
    "AttemptDone": "actors._messages",
    "Breaker": "actors._breaker",
    "BreakerState": "actors._breaker",
    "BreakerStatus": "actors._breaker",
    "Permit": "actors._breaker",
    "ChildExit": "actors._messages",
    "ChildExits": "actors._messages",
    "ChildStarted": "actors._messages",
    "JobActor": "actors._job",
    "Kill": "actors._supervised",
    "Link": "actors._messages",
    "Parent": "actors._messages",
    "PythonExit": "actors._python",
    "Resumed": "actors._messages",
    "Retryable": "actors._retry",
    "Scheduler": "actors._runtime",
    "os_lock_type": "actors._runtime",
    "SupervisedActor": "actors._supervised",
    "TimerHandle": "actors._runtime",
    "Waiting": "actors._messages",
    "Work": "actors._attempt",
    "check_http_retry_on": "actors._http",
    "check_runtime": "actors._runtime",
    "close_work": "actors._job",
    "current_task": "actors._runtime",
    "describe": "actors._errors",
    "interrupt_task": "actors._runtime",
    "join_tasks": "actors._runtime",
    "live_tasks": "actors._runtime",
    "parse_retry_after": "actors._http",
    "redact_url": "actors._http",
    "resolve_target": "actors._python",
    "run_with_retry": "actors._retry",
    "start_supervised": "actors._supervised",
    "start_task": "actors._runtime",
    "step_allow": "actors._breaker",
    "step_record": "actors._breaker",
    "step_release": "actors._breaker",
    "supervised_class": "actors._supervised",
}


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name) or _INTERNAL.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "RUNTIMES",
    "ActionTimeoutError",
    "Attempt",
    "AttemptTimeout",
    "ChildKilled",
    "ChildRef",
    "ChildUnavailableError",
    "CommandFailed",
    "CommandWork",
    "DependencyDownError",
    "EscalationError",
    "GroupDownError",
    "HttpRequestError",
    "HttpStatusError",
    "HttpWork",
    "InHubError",
    "JobFailure",
    "JobvisorError",
    "Limits",
    "NoSuchChildError",
    "NoThreadError",
    "NotReady",
    "NotSignalledError",
    "Outcome",
    "PythonWork",
    "ReadyProbe",
    "ReplyTimeoutError",
    "RetrySpec",
    "RetryWait",
    "RunAs",
    "RuntimeSetupError",
    "Schedule",
    "ServiceExited",
    "SpecError",
    "TreeStoppedError",
    "active_runtime",
    "current_attempt",
    "install_runtime",
]
