"""Pool kinds: what differs between a plain workpool and a component that runs its
work on one (the action retrier today; crons, workflow steps and integrations next).

A component subclasses :class:`PoolKind` (or instantiates it with other values),
passes it to ``Workpool(app, name, kind=...)``, registers itself in
``app.components`` under ``kind.kind`` with a ``workpool`` attribute (its pool) and a
factory, and the worker runs its jobs with no code of the component in the
execution path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from .types import OnCompleteArgs, RunResult, WorkId

__all__ = ["PoolKind", "RunsOnWorkpool"]


@dataclass(frozen=True)
class PoolKind:
    """The knobs and hooks of one kind of pool.

    ``kind`` is also the key tag (``app.keys.tag(kind, name)``), the registry kind and
    the job's routing key. ``lost_error`` is the failure text of an attempt whose
    worker died; ``cancel_mode`` "flag" lets a running attempt finish (no further
    attempts), "finish" ends the item as canceled at once (its late report is
    dropped); ``bad_result_retryable`` retries a result that is not JSON or too
    large; ``item_log_levels`` lets each item's own log level gate its events."""

    kind: str = "workpool"
    lost_error: str = "Worker lost: lease expired"
    cancel_mode: Literal["flag", "finish"] = "flag"
    logger: str = "rkit.workpool"
    bad_result_retryable: bool = False
    default_max_parallelism: int = 10
    cancel_writes_log_level: bool = True
    item_log_levels: bool = False
    keep_failures_ms: float = 7 * 86_400_000.0
    """How long a failure recorded for a job this worker cannot run is kept."""

    async def deliver(
        self,
        handler: Callable[..., Awaitable[Any]],
        work_id: WorkId,
        context: Any,
        result: RunResult,
    ) -> None:
        """Call an ``on_complete`` handler (the workpool's shape: one argument)."""
        await handler(OnCompleteArgs(work_id, context, result))


WORKPOOL = PoolKind()


@runtime_checkable
class RunsOnWorkpool(Protocol):
    """A registered component whose work runs on a workpool of its own kind."""

    @property
    def workpool(self) -> Any: ...
