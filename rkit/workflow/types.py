"""Workflow value types, options and errors (spec workflow.md §7.8)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, Literal, TypeVar

from ..errors import ConfigError, RkitError

T = TypeVar("T")

MAX_JOURNAL_BYTES = 8 << 20
MAX_VALUE_BYTES = 800 << 10
PREVIEW_BYTES = 8 << 10
DEFAULT_BATCH = 10
DEFAULT_MAX_PARALLELISM = 25


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts of an action step: up to ``max_attempts``; after failed attempt ``a``
    the next waits ``initial_backoff_ms * base**(a-1)`` times a jitter in [0.5, 1.5)."""

    max_attempts: int = 5
    initial_backoff_ms: float = 500
    base: float = 2

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigError("max_attempts must be an int >= 1")
        if self.max_attempts < 1 or self.initial_backoff_ms < 0 or self.base <= 0:
            raise ConfigError("RetryPolicy needs max_attempts >= 1, backoff >= 0, base > 0")


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class WorkpoolOptions:
    """How a manager's (or one definition's) steps run on the workpool."""

    max_parallelism: int | None = None
    """The pool's cap on running steps (default 25); also the batch of parallel
    steps started per poll (default 10 when unset)."""
    retry_actions_by_default: bool = False
    default_retry: RetryPolicy = DEFAULT_RETRY
    log_level: str | None = None


@dataclass(frozen=True)
class RunResult:
    """How a step or a workflow ended."""

    kind: Literal["success", "failed", "canceled"]
    value: Any = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepInfo:
    workflow_id: str
    step_id: str
    step_number: int
    name: str
    kind: Literal["function", "workflow", "event", "sleep"]
    args: Any
    result: RunResult | None
    started_at: float
    completed_at: float | None
    job_id: str | None = None
    nested_workflow_id: str | None = None
    event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["result"] = None if self.result is None else self.result.to_dict()
        return d


@dataclass(frozen=True)
class WorkflowStatus:
    type: Literal["inProgress", "completed", "canceled", "failed"]
    running: list[StepInfo] | None = None
    result: Any = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "running": None if self.running is None else [s.to_dict() for s in self.running],
            "result": self.result,
            "error": self.error,
        }


@dataclass(frozen=True)
class WorkflowInfo:
    workflow_id: str
    name: str
    args: Any
    context: Any
    result: RunResult | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "name": self.name,
            "args": self.args,
            "context": self.context,
            "result": None if self.result is None else self.result.to_dict(),
        }


@dataclass(frozen=True)
class ListPage(Generic[T]):
    page: list[T]
    continue_cursor: str
    is_done: bool


@dataclass(frozen=True)
class EventSpec(Generic[T]):
    """A typed event name shared by sender and waiter."""

    name: str
    validator: type[T] | None = None


def define_event(name: str, validator: type[T] | None = None) -> EventSpec[T]:
    return EventSpec(name, validator)


OnComplete = Callable[..., Awaitable[Any]]


@dataclass
class WorkflowDef(Generic[T]):
    """A defined workflow: ``manager.start(defn, args)`` runs it."""

    name: str
    handler: Callable[..., Awaitable[T]]
    args: type | None = None
    returns: type | None = None
    workpool_options: WorkpoolOptions | None = None


class WorkflowError(RkitError):
    """Base class of workflow errors."""


class WorkflowNotFound(WorkflowError, KeyError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"Workflow not found: {workflow_id}")
        self.workflow_id = workflow_id

    def __str__(self) -> str:
        return str(self.args[0])


class WorkflowNotRunningError(WorkflowError):
    """Cancel, send_event or complete of a finished workflow."""


class WorkflowStillRunning(WorkflowError):
    """Restart of a running workflow."""


class JournalMismatch(WorkflowError):
    """A replayed handler asked for a different step than the journal recorded."""


class JournalTooLarge(WorkflowError):
    """The journal grew past ``max_journal_bytes``."""


class StepFailed(WorkflowError):
    """Raised inside a handler where a step failed (catchable)."""

    kind = "failed"

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class StepCanceled(StepFailed):
    kind = "canceled"

    def __init__(self) -> None:
        super().__init__("Canceled")


class EventStateError(WorkflowError):
    """An event already sent or consumed."""


class EventNotFound(WorkflowError, KeyError):
    def __init__(self, event_id: str) -> None:
        super().__init__(f"Event not found: {event_id}")

    def __str__(self) -> str:
        return str(self.args[0])


class WorkflowSandboxError(WorkflowError):
    """Non-deterministic facility used inside a handler (e.g. ``asyncio.sleep``)."""


class InvalidStepOptions(WorkflowError, ValueError):
    """Step options that cannot be combined."""
