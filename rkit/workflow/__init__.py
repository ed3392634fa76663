"""Durable workflows (spec workflow.md): ``async def handler(ctx, **args)`` whose
steps are journaled in Redis, one Lua script per transition with a generation
fence, and replayed after every step so finished steps never run again.

* **State**: one hash tag per workflow (``app.keys.tag("wf", id)``): the workflow
  hash, one hash per journal entry (``:s:<n>``), the in-progress set, events and
  their FIFO lists by name. Listing indexes live under ``app.keys.tag("wfidx",
  manager)`` and are written after the authoritative script (idempotently).
* **Execution**: every non-inline step is a workpool item of kind ``workflow``
  (retries with backoff, leases, cancel); its completion journals the outcome and,
  when nothing else is in progress, runs the next poll in the same worker.
* **Replay**: a poll loads the journal (a per-process cache keyed by workflow and
  generation fetches only new entries, in pages) and re-runs the handler; each step
  call is matched to the next entry by position and compared on name, kind and args
  (``JournalMismatch`` otherwise). New calls issued together (``asyncio.gather``)
  are journaled as one batch of at most ``max_parallelism or 10`` steps.
"""

from .executor import StepCtx
from .manager import WORKFLOW, WorkflowKind, WorkflowManager
from .types import (
    DEFAULT_RETRY,
    EventNotFound,
    EventSpec,
    EventStateError,
    InvalidStepOptions,
    JournalMismatch,
    JournalTooLarge,
    ListPage,
    RetryPolicy,
    RunResult,
    StepCanceled,
    StepFailed,
    StepInfo,
    WorkflowDef,
    WorkflowError,
    WorkflowInfo,
    WorkflowNotFound,
    WorkflowNotRunningError,
    WorkflowSandboxError,
    WorkflowStatus,
    WorkflowStillRunning,
    WorkpoolOptions,
    define_event,
)

__all__ = [
    "DEFAULT_RETRY",
    "WORKFLOW",
    "EventNotFound",
    "EventSpec",
    "EventStateError",
    "InvalidStepOptions",
    "JournalMismatch",
    "JournalTooLarge",
    "ListPage",
    "RetryPolicy",
    "RunResult",
    "StepCanceled",
    "StepCtx",
    "StepFailed",
    "StepInfo",
    "WorkflowDef",
    "WorkflowError",
    "WorkflowInfo",
    "WorkflowKind",
    "WorkflowManager",
    "WorkflowNotFound",
    "WorkflowNotRunningError",
    "WorkflowSandboxError",
    "WorkflowStatus",
    "WorkflowStillRunning",
    "WorkpoolOptions",
    "define_event",
]
