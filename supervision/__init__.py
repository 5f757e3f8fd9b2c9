"""What decides: specs, policies, the supervisor actor and the tree handle.

from supervision import start_tree, SupervisorSpec, python_job

with start_tree(SupervisorSpec(children=(python_job("etl", "etl:main"),))) as tree:
    tree.wait()
"""

from typing import TYPE_CHECKING, Any

from actors import (
    AttemptTimeout,
    Breaker,
    BreakerState,
    ChildKilled,
    ChildRef,
    ChildUnavailableError,
    EscalationError,
    JobFailure,
    JobvisorError,
    NoSuchChildError,
    Outcome,
    PythonWork,
    RetrySpec,
    RetryWait,
    RuntimeSetupError,
    Schedule,
    ServiceExited,
    SpecError,
    TreeStoppedError,
    current_attempt,
    install_runtime,
)
from supervision._app import (
    Composition,
    RunReport,
    compose,
    flatten_status,
    run_batch,
    summary_table,
    write_progress,
)
from supervision._daemon import (
    ControlServer,
    Daemon,
    DaemonError,
    NoDaemonError,
    diff_specs,
    request,
    sd_notify,
)
from supervision._events import (
    AttemptFinished,
    BreakerChanged,
    ChildExited,
    CooldownStarted,
    Escalated,
    Event,
    GaveUp,
    ProbationPassed,
    RestartScheduled,
    StateChanged,
    Subscription,
    ThreadAbandoned,
)
from supervision._journal import (
    Journal,
    JournalError,
    read_history,
    read_succeeded,
    skip_succeeded,
    spec_hash,
)
from supervision._logging import (
    LoggingSetup,
    LoggingSetupError,
    SecretMasker,
    configure_logging,
)
from supervision._manifest import (
    Issue,
    Manifest,
    ManifestError,
    load_manifest,
    parse,
    parse_duration,
    parse_size,
)
from supervision._policy import (
    Backoff,
    Cooldown,
    CooldownPolicy,
    Decision,
    Escalate,
    GiveUp,
    Intensity,
    OnExhausted,
    Restart,
    RestartPolicy,
    RestartType,
    Strategy,
    decide,
    decide_probation_failure,
    wants_restart,
)
from supervision._spec import (
    ActorSpec,
    BreakerSpec,
    ChildSpec,
    JobSpec,
    LoggingSpec,
    RotateSpec,
    SupervisorSpec,
    python_job,
    walk,
)
from supervision._state import FINAL, TRANSITIONS, State, can_transition
from supervision._tree import RunResult, Tree, build_breakers, start_tree

# Job kinds that pull in requests or subprocess machinery load on first use, so that
# `import supervision` (and `jobvisor validate`) stays quick.
_FROM_ACTORS = frozenset(
    {
        "CommandFailed",
        "CommandWork",
        "HttpRequestError",
        "HttpStatusError",
        "HttpWork",
        "NotReady",
        "ReadyProbe",
    }
)

if TYPE_CHECKING:
    from actors import (
        CommandFailed,
        CommandWork,
        HttpRequestError,
        HttpStatusError,
        HttpWork,
        NotReady,
        ReadyProbe,
    )


def __getattr__(name: str) -> Any:
    if name in _FROM_ACTORS:
        import actors  # noqa: PLC0415

        value = getattr(actors, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'supervision' has no attribute {name!r}")


__all__ = [
    "FINAL",
    "TRANSITIONS",
    "ActorSpec",
    "AttemptFinished",
    "AttemptTimeout",
    "Backoff",
    "Breaker",
    "BreakerChanged",
    "BreakerSpec",
    "BreakerState",
    "ChildExited",
    "ChildKilled",
    "ChildRef",
    "ChildSpec",
    "ChildUnavailableError",
    "CommandFailed",
    "CommandWork",
    "Composition",
    "ControlServer",
    "Cooldown",
    "CooldownPolicy",
    "CooldownStarted",
    "Daemon",
    "DaemonError",
    "Decision",
    "Escalate",
    "Escalated",
    "EscalationError",
    "Event",
    "GaveUp",
    "GiveUp",
    "HttpRequestError",
    "HttpStatusError",
    "HttpWork",
    "Intensity",
    "Issue",
    "JobFailure",
    "JobSpec",
    "JobvisorError",
    "Journal",
    "JournalError",
    "LoggingSetup",
    "LoggingSetupError",
    "LoggingSpec",
    "Manifest",
    "ManifestError",
    "NoDaemonError",
    "NoSuchChildError",
    "NotReady",
    "OnExhausted",
    "Outcome",
    "ProbationPassed",
    "PythonWork",
    "ReadyProbe",
    "Restart",
    "RestartPolicy",
    "RestartScheduled",
    "RestartType",
    "RetrySpec",
    "RetryWait",
    "RotateSpec",
    "RunReport",
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
    "build_breakers",
    "can_transition",
    "compose",
    "configure_logging",
    "current_attempt",
    "decide",
    "decide_probation_failure",
    "diff_specs",
    "flatten_status",
    "install_runtime",
    "load_manifest",
    "parse",
    "parse_duration",
    "parse_size",
    "python_job",
    "read_history",
    "read_succeeded",
    "request",
    "run_batch",
    "sd_notify",
    "skip_succeeded",
    "spec_hash",
    "start_tree",
    "summary_table",
    "walk",
    "wants_restart",
    "write_progress",
]
