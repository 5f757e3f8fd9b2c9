"""What runs: supervised pykka actors, the job actor and its kinds, runtimes and timers."""

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
from actors._job import Attempt, JobActor, Schedule, Work, current_attempt
from actors._messages import AttemptDone, ChildExit, ChildStarted, Link, Outcome, Parent
from actors._python import PythonWork, resolve_target
from actors._ref import ChildRef
from actors._retry import Retryable, RetrySpec, RetryWait, run_with_retry
from actors._runtime import (
    RUNTIMES,
    Scheduler,
    TimerHandle,
    active_runtime,
    check_runtime,
    current_task,
    install_runtime,
    interrupt_task,
)
from actors._supervised import Kill, SupervisedActor, start_supervised, supervised_class

__all__ = [
    "RUNTIMES",
    "Attempt",
    "AttemptDone",
    "AttemptTimeout",
    "ChildExit",
    "ChildKilled",
    "ChildRef",
    "ChildStarted",
    "ChildUnavailableError",
    "EscalationError",
    "JobActor",
    "JobFailure",
    "JobvisorError",
    "Kill",
    "Link",
    "NoSuchChildError",
    "Outcome",
    "Parent",
    "PythonWork",
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
    "Work",
    "active_runtime",
    "check_runtime",
    "current_attempt",
    "current_task",
    "describe",
    "install_runtime",
    "interrupt_task",
    "resolve_target",
    "run_with_retry",
    "start_supervised",
    "supervised_class",
]
