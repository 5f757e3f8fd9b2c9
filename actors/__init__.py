"""What runs: supervised pykka actors, the job actor and its kinds, runtimes and timers.

Only the runtime helpers and the exception tree load eagerly: everything else
(pykka, requests, logbook) loads on first use, so that
``from actors import install_runtime; install_runtime("gevent")`` can monkey-patch
the process before any of them creates a lock or imports ssl.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from actors._errors import (
    AttemptTimeout,
    ChildKilled,
    ChildUnavailableError,
    EscalationError,
    JobFailure,
    JobvisorError,
    NoSuchChildError,
    RuntimeSetupError,
    ServiceExited,
    SpecError,
    TreeStoppedError,
    describe,
)
from actors._runtime import (
    RUNTIMES,
    Scheduler,
    TimerHandle,
    active_runtime,
    check_runtime,
    current_task,
    install_runtime,
    interrupt_task,
    join_tasks,
    live_tasks,
    start_task,
)

if TYPE_CHECKING:
    from actors._attempt import (
        Attempt,
        Work,
        current_attempt,
    )
    from actors._breaker import (
        Breaker,
        BreakerState,
        BreakerStatus,
        step_allow,
        step_record,
    )
    from actors._command import CommandFailed, CommandWork
    from actors._http import (
        HttpRequestError,
        HttpStatusError,
        HttpWork,
        check_http_retry_on,
        parse_retry_after,
        redact_url,
    )
    from actors._job import (
        JobActor,
        Schedule,
        close_work,
    )
    from actors._messages import (
        AttemptDone,
        ChildExit,
        ChildStarted,
        Link,
        Outcome,
        Parent,
        Resumed,
        Waiting,
    )
    from actors._python import (
        PythonExit,
        PythonWork,
        resolve_target,
    )
    from actors._ready import (
        NotReady,
        ReadyProbe,
    )
    from actors._ref import (
        ChildRef,
    )
    from actors._retry import (
        Retryable,
        RetrySpec,
        RetryWait,
        run_with_retry,
    )
    from actors._supervised import (
        Kill,
        SupervisedActor,
        start_supervised,
        supervised_class,
    )

_LAZY: dict[str, str] = {
    "CommandFailed": "actors._command",
    "CommandWork": "actors._command",
    "Attempt": "actors._attempt",
    "AttemptDone": "actors._messages",
    "Breaker": "actors._breaker",
    "BreakerState": "actors._breaker",
    "BreakerStatus": "actors._breaker",
    "ChildExit": "actors._messages",
    "ChildRef": "actors._ref",
    "ChildStarted": "actors._messages",
    "HttpRequestError": "actors._http",
    "HttpStatusError": "actors._http",
    "HttpWork": "actors._http",
    "JobActor": "actors._job",
    "Kill": "actors._supervised",
    "Link": "actors._messages",
    "NotReady": "actors._ready",
    "Outcome": "actors._messages",
    "Parent": "actors._messages",
    "PythonExit": "actors._python",
    "PythonWork": "actors._python",
    "ReadyProbe": "actors._ready",
    "Resumed": "actors._messages",
    "RetrySpec": "actors._retry",
    "RetryWait": "actors._retry",
    "Retryable": "actors._retry",
    "Schedule": "actors._job",
    "SupervisedActor": "actors._supervised",
    "Waiting": "actors._messages",
    "Work": "actors._attempt",
    "check_http_retry_on": "actors._http",
    "close_work": "actors._job",
    "current_attempt": "actors._attempt",
    "parse_retry_after": "actors._http",
    "redact_url": "actors._http",
    "resolve_target": "actors._python",
    "run_with_retry": "actors._retry",
    "start_supervised": "actors._supervised",
    "step_allow": "actors._breaker",
    "step_record": "actors._breaker",
    "supervised_class": "actors._supervised",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "RUNTIMES",
    "Attempt",
    "AttemptDone",
    "AttemptTimeout",
    "Breaker",
    "BreakerState",
    "BreakerStatus",
    "ChildExit",
    "ChildKilled",
    "ChildRef",
    "ChildStarted",
    "ChildUnavailableError",
    "CommandFailed",
    "CommandWork",
    "EscalationError",
    "HttpRequestError",
    "HttpStatusError",
    "HttpWork",
    "JobActor",
    "JobFailure",
    "JobvisorError",
    "Kill",
    "Link",
    "NoSuchChildError",
    "NotReady",
    "Outcome",
    "Parent",
    "PythonExit",
    "PythonWork",
    "ReadyProbe",
    "Resumed",
    "RetrySpec",
    "RetryWait",
    "Retryable",
    "RuntimeSetupError",
    "Schedule",
    "Scheduler",
    "ServiceExited",
    "SpecError",
    "SupervisedActor",
    "TimerHandle",
    "TreeStoppedError",
    "Waiting",
    "Work",
    "active_runtime",
    "check_http_retry_on",
    "check_runtime",
    "close_work",
    "current_attempt",
    "current_task",
    "describe",
    "install_runtime",
    "interrupt_task",
    "join_tasks",
    "live_tasks",
    "parse_retry_after",
    "redact_url",
    "resolve_target",
    "run_with_retry",
    "start_supervised",
    "start_task",
    "step_allow",
    "step_record",
    "supervised_class",
]
