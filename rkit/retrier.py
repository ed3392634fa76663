"""Action retrier: run an action durably until it succeeds or its failure budget is
spent (spec action-retrier.md).

Built on the workpool (the one execution path): each retrier namespace is one
pool under the tag ``app.keys.tag("retrier", namespace)`` with no practical
parallelism cap, results kept ``retention_ms`` (7 days), cancel finishing a run at
once, and the reference's backoff formula: after the n-th failure the next
execution waits ``initial_backoff_ms * base**n`` (so 500, 1,000, 2,000, 4,000 ms by
default), capped by ``max_backoff_ms``, times a jitter factor in [0.5, 1.5). A
lost execution (its worker died: lease expired) is the failure ``"Transient error
when executing action"``; a never-started one (lost arq job) is re-dispatched
without consuming the budget. ``on_complete(run_id=, result=, context=)`` is
delivered at least once, after the final state is visible.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NewType

from .errors import CallbackPending, ConfigError, RunNotCompleted, RunNotFound
from .workpool import (
    DEFAULT_ON_COMPLETE_RETRY,
    DLQ_MAX_LEN,
    DLQ_RETENTION_MS,
    AsDict,
    Failed,
    PoolKind,
    RetryBehavior,
    RunResult,
    Success,
    WorkId,
    Workpool,
    num_or_none,
    result_of,
)

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "ActionRetrier",
    "Completed",
    "InProgress",
    "RunCanceled",
    "RunDetails",
    "RunFailed",
    "RunId",
    "RunStatus",
    "RunSuccess",
]

logger = logging.getLogger("rkit.retrier")

LogLevel = Literal["DEBUG", "INFO", "WARN", "ERROR"]
RunId = NewType("RunId", str)
ENV_LOG_LEVEL = "ACTION_RETRIER_LOG_LEVEL"
TRANSIENT_ERROR = "Transient error when executing action"
DAY = 86_400_000.0
_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
_NO_CAP = 1_000_000


@dataclass(frozen=True, slots=True)
class RunSuccess:
    return_value: Any
    type: Literal["success"] = "success"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "returnValue": self.return_value}


@dataclass(frozen=True, slots=True)
class RunFailed(AsDict):
    error: str
    type: Literal["failed"] = "failed"


@dataclass(frozen=True, slots=True)
class RunCanceled(AsDict):
    type: Literal["canceled"] = "canceled"


RetrierResult = RunSuccess | RunFailed | RunCanceled


@dataclass(frozen=True, slots=True)
class InProgress(AsDict):
    type: Literal["inProgress"] = "inProgress"


@dataclass(frozen=True, slots=True)
class Completed:
    result: RetrierResult
    type: Literal["completed"] = "completed"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "result": self.result.to_dict()}


RunStatus = InProgress | Completed


@dataclass(frozen=True, slots=True)
class RunDetails:
    run_id: RunId
    state: Literal["scheduled", "running", "completed"]
    attempt: int
    num_failures: int
    next_start_ms: float | None
    last_error: str | None
    result: RetrierResult | None
    created_at: float
    completed_at: float | None
    fn_name: str = ""
    traceback: str | None = None
    """The last failed execution's traceback (at most 8 KiB, last frames kept), when
    it raised; ``None`` for failures without one (timeout, lost worker)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "fn_name": self.fn_name,
            "state": self.state,
            "attempt": self.attempt,
            "num_failures": self.num_failures,
            "next_start_ms": self.next_start_ms,
            "last_error": self.last_error,
            "traceback": self.traceback,
            "result": self.result.to_dict() if self.result else None,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
        }


def _to_retrier(result: RunResult) -> RetrierResult:
    if isinstance(result, Success):
        return RunSuccess(result.return_value)
    if isinstance(result, Failed):
        return RunFailed(result.error)
    return RunCanceled()


def env_log_level() -> LogLevel:
    """``ACTION_RETRIER_LOG_LEVEL`` or INFO; an invalid value warns once and uses INFO."""
    raw = os.environ.get(ENV_LOG_LEVEL)
    if raw is None or raw == "":
        return "INFO"
    if raw not in _LEVELS:
        logger.warning('Invalid log level (%s), defaulting to "INFO"', raw)
        return "INFO"
    return raw  # type: ignore[return-value]


@dataclass(frozen=True)
class RetrierKind(PoolKind):
    """The pool kind a retrier runs on: no practical cap, a lost execution is the
    reference's transient error, cancel ends a run at once, a bad result is retried,
    each run's own log level gates its events, and handlers get
    ``run_id, result, context``."""

    kind: str = "retrier"
    lost_error: str = TRANSIENT_ERROR
    cancel_mode: Literal["flag", "finish"] = "finish"
    logger: str = "rkit.retrier"
    bad_result_retryable: bool = True
    default_max_parallelism: int = _NO_CAP
    cancel_writes_log_level: bool = False  # a no-op cancel changes nothing
    item_log_levels: bool = True

    async def deliver(
        self,
        handler: Callable[..., Awaitable[Any]],
        work_id: WorkId,
        context: Any,
        result: RunResult,
    ) -> None:
        await handler(run_id=RunId(work_id), result=_to_retrier(result), context=context)


RETRIER = RetrierKind()


def _check_options(
    initial_backoff_ms: float | None,
    base: float | None,
    max_failures: int | None,
    max_backoff_ms: float | None,
    timeout_ms: float | None,
    log_level: str | None,
) -> None:
    def number(name: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f"{name} must be a finite number, got {v!r}")
        return float(v)

    if initial_backoff_ms is not None and number("initial_backoff_ms", initial_backoff_ms) < 0:
        raise ConfigError("initial_backoff_ms must be >= 0")
    if base is not None and number("base", base) <= 0:
        raise ConfigError("base must be > 0")
    if max_failures is not None and (
        isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0
    ):
        raise ConfigError("max_failures must be an int >= 0")
    if max_backoff_ms is not None and number("max_backoff_ms", max_backoff_ms) < 0:
        raise ConfigError("max_backoff_ms must be >= 0")
    if timeout_ms is not None and number("timeout_ms", timeout_ms) <= 0:
        raise ConfigError("timeout_ms must be > 0")
    if log_level is not None and log_level not in _LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(_LEVELS)}, got {log_level!r}")


class ActionRetrier:
    """Runs actions until success or ``max_failures`` failures (at most
    ``max_failures + 1`` executions). One namespace = one set of runs."""

    def __init__(
        self,
        app: App,
        *,
        namespace: str = "default",
        initial_backoff_ms: float | None = None,
        base: float | None = None,
        max_failures: int | None = None,
        log_level: LogLevel | None = None,
        max_backoff_ms: float | None = None,
        timeout_ms: float = 600_000,
        lease_ms: float = 5_000,
        callback_lease_ms: float | None = None,
        retention_ms: float = 7 * DAY,
        max_result_bytes: int = 16 * 2**20,
        on_complete_retry: RetryBehavior = DEFAULT_ON_COMPLETE_RETRY,
        dlq_max_len: int = DLQ_MAX_LEN,
        dlq_retention_ms: float = DLQ_RETENTION_MS,
        rng: Callable[[], float] | None = None,
        id_factory: Callable[[], str] | None = None,
        register: bool = True,
    ) -> None:
        """``register=False``: a handle on the namespace for reads and control (admin
        views), not registered in ``app.components`` and never pumped."""
        _check_options(
            initial_backoff_ms, base, max_failures, max_backoff_ms, timeout_ms, log_level
        )
        if not isinstance(retention_ms, int | float) or not 0 < retention_ms < math.inf:
            raise ConfigError("retention_ms must be a positive finite number")
        self.app = app
        self.namespace = namespace
        self.initial_backoff_ms = 250.0 if initial_backoff_ms is None else float(initial_backoff_ms)
        self.base = 2.0 if base is None else float(base)
        self.max_failures = 4 if max_failures is None else max_failures
        self.max_backoff_ms = max_backoff_ms
        self.log_level: LogLevel = log_level or env_log_level()
        self.retention_ms = float(retention_ms)
        self.workpool = Workpool(
            app,
            namespace,
            log_level=self.log_level,
            timeout_ms=timeout_ms,
            lease_ms=lease_ms,
            callback_lease_ms=callback_lease_ms,
            keep_result_ms=retention_ms,
            on_complete_retry=on_complete_retry,
            dlq_max_len=dlq_max_len,
            dlq_retention_ms=dlq_retention_ms,
            max_result_bytes=max_result_bytes,
            parallelism_limit=_NO_CAP,
            rng=rng,
            id_factory=id_factory,
            kind=RETRIER,
            register=register,
        )
        self._pool = self.workpool
        if register:
            app.components.add(RETRIER.kind, namespace, self)
            app.components.set_factory(RETRIER.kind, lambda ns: ActionRetrier(app, namespace=ns))

    @classmethod
    def view(cls, app: App, namespace: str) -> ActionRetrier:
        """The App's registered retrier of ``namespace``, else an unregistered handle."""
        found = app.components.get(RETRIER.kind, namespace)
        if isinstance(found, ActionRetrier):
            return found
        return cls(app, namespace=namespace, register=False)

    def __repr__(self) -> str:
        return f"ActionRetrier(namespace={self.namespace!r})"

    # -- starting runs ------------------------------------------------------------------

    def _retry(
        self,
        initial_backoff_ms: float | None,
        base: float | None,
        max_failures: int | None,
        max_backoff_ms: float | None,
    ) -> RetryBehavior:
        return RetryBehavior(
            max_attempts=(self.max_failures if max_failures is None else max_failures) + 1,
            initial_backoff_ms=(
                self.initial_backoff_ms if initial_backoff_ms is None else initial_backoff_ms
            ),
            base=self.base if base is None else base,
            exponent_offset=1,  # the reference's formula: the first retry waits initial * base
            max_backoff_ms=self.max_backoff_ms if max_backoff_ms is None else max_backoff_ms,
        )

    async def run(
        self,
        fn: Callable[..., Any] | str,
        args: Mapping[str, Any] | None = None,
        *,
        initial_backoff_ms: float | None = None,
        base: float | None = None,
        max_failures: int | None = None,
        log_level: LogLevel | None = None,
        on_complete: Callable[..., Any] | str | None = None,
        context: Any = None,
        max_backoff_ms: float | None = None,
        timeout_ms: float | None = None,
        _run_at: float | None = None,
        _run_after: float | None = None,
    ) -> RunId:
        """Start a run of ``await fn(**args)``; returns its id. Options left ``None``
        take the retrier's values; ``log_level`` gates this run's events only."""
        ids = await self.run_batch(
            fn,
            [args or {}],
            initial_backoff_ms=initial_backoff_ms,
            base=base,
            max_failures=max_failures,
            log_level=log_level,
            on_complete=on_complete,
            context=context,
            max_backoff_ms=max_backoff_ms,
            timeout_ms=timeout_ms,
            _run_at=_run_at,
            _run_after=_run_after,
        )
        return ids[0]

    async def run_batch(
        self,
        fn: Callable[..., Any] | str,
        args_list: Sequence[Mapping[str, Any]],
        *,
        initial_backoff_ms: float | None = None,
        base: float | None = None,
        max_failures: int | None = None,
        log_level: LogLevel | None = None,
        on_complete: Callable[..., Any] | str | None = None,
        context: Any = None,
        max_backoff_ms: float | None = None,
        timeout_ms: float | None = None,
        _run_at: float | None = None,
        _run_after: float | None = None,
    ) -> list[RunId]:
        """Start many runs of ``fn`` with one set of options (ids in input order)."""
        _check_options(
            initial_backoff_ms, base, max_failures, max_backoff_ms, timeout_ms, log_level
        )
        if _run_at is not None and not (
            isinstance(_run_at, int | float) and math.isfinite(_run_at)
        ):
            raise ConfigError("timestamp_ms must be a finite number")
        if _run_after is not None and not (
            isinstance(_run_after, int | float) and math.isfinite(_run_after)
        ):
            raise ConfigError("delay_ms must be a finite number")
        ids = await self._pool.enqueue_batch(
            fn,
            args_list,
            on_complete=on_complete,
            context=context,
            run_at=_run_at,
            run_after=None if _run_after is None else max(0.0, float(_run_after)),
            timeout_ms=timeout_ms,
            retry_behavior=self._retry(initial_backoff_ms, base, max_failures, max_backoff_ms),
            item_log_level=log_level,
        )
        if (log_level or self.log_level) == "DEBUG":
            logger.debug("started %d run(s) of %s", len(ids), fn)
        return [RunId(i) for i in ids]

    async def run_at(
        self,
        timestamp_ms: float,
        fn: Callable[..., Any] | str,
        args: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> RunId:
        """Like :meth:`run`, first execution no earlier than ``timestamp_ms``."""
        return await self.run(fn, args, _run_at=timestamp_ms, **options)

    async def run_after(
        self,
        delay_ms: float,
        fn: Callable[..., Any] | str,
        args: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> RunId:
        """Like :meth:`run`, first execution no earlier than now + ``delay_ms``."""
        return await self.run(fn, args, _run_after=delay_ms, **options)

    # -- reading and controlling runs -------------------------------------------------

    async def _hash(self, run_id: str) -> dict[str, str]:
        if not isinstance(run_id, str) or not run_id:
            raise RunNotFound(str(run_id) if isinstance(run_id, str) else repr(run_id))
        h = await self._pool.item(run_id)
        if not h:
            raise RunNotFound(run_id)
        return h

    async def status(self, run_id: str) -> RunStatus:
        """``InProgress()`` or ``Completed(result)``; unknown ids raise ``RunNotFound``."""
        h = await self._hash(run_id)
        if h.get("state") != "finished":
            return InProgress()
        return Completed(
            _to_retrier(result_of(h["result_kind"], h.get("result", ""), h.get("error", "")))
        )

    @staticmethod
    def _details(run_id: str, h: Mapping[str, str]) -> RunDetails:
        state = h.get("state", "")
        attempts = int(h.get("attempts", 0))
        result = None
        if state == "finished":
            result = _to_retrier(
                result_of(h["result_kind"], h.get("result", ""), h.get("error", ""))
            )
        # like the reference's counter: a failure that led to a retry counts; the
        # final execution (success, or the failure that ended the run) does not
        failures = attempts - 1 if isinstance(result, RunSuccess | RunFailed) else attempts
        return RunDetails(
            run_id=RunId(run_id),
            fn_name=h.get("label", ""),
            state="completed"
            if state == "finished"
            else "running"
            if state == "running"
            else "scheduled",
            attempt=failures,
            num_failures=failures,
            next_start_ms=num_or_none(h.get("due")) if state == "pending" else None,
            last_error=h.get("last_error"),
            traceback=h.get("traceback"),
            result=result,
            created_at=float(h.get("enqueued_at", 0)),
            completed_at=num_or_none(h.get("finished_at")),
        )

    async def details(self, run_id: str) -> RunDetails:
        return self._details(run_id, await self._hash(run_id))

    async def list_runs(self, *, state: str | None = None, limit: int = 100) -> list[RunDetails]:
        """Runs in progress (``state`` scheduled/running) or completed, newest first."""
        if state not in (None, "scheduled", "running", "completed"):
            raise ConfigError("state must be scheduled, running or completed")
        index: Literal["done", "live"] = "done" if state == "completed" else "live"
        rows = await self._pool.list_index(index, limit)
        out = [self._details(rid, h) for rid, _, h in rows[1] if h]
        return [d for d in out if state is None or d.state == state]

    async def cancel(self, run_id: str) -> bool:
        """Finish an in-progress run as canceled now (its callback gets
        ``RunCanceled()``; a running execution's later result is dropped).
        ``False`` when the run is unknown or already completed."""
        if not isinstance(run_id, str) or not run_id:
            return False
        return (await self._pool.cancel_many([run_id])) == ["CANCELED"]

    async def cleanup(self, run_id: str) -> None:
        """Delete a completed run (``RunNotFound`` / ``RunNotCompleted`` otherwise;
        ``CallbackPending``, a ``RunNotCompleted``, while its on_complete is owed)."""
        if not isinstance(run_id, str) or not run_id:
            raise RunNotFound(str(run_id))
        reply = await self._pool.delete(run_id)
        if reply == "NOT_FOUND":
            raise RunNotFound(run_id)
        if reply == "NOT_COMPLETED":
            raise RunNotCompleted(run_id)
        if reply == "CALLBACK_PENDING":
            raise CallbackPending(run_id)

    async def expire(self) -> int:
        """Delete completed runs past retention (batches of 1,024); returns count."""
        n = await self._pool.expire(limit=1024)
        if n:
            logger.info("Cleaned up %d expired runs", n)
        return n

    async def sweep(self) -> Any:
        """One sweeper round (lost executions, due retries, callbacks)."""
        return await self._pool.pump()

    async def stats(self) -> dict[str, Any]:
        d = await self._pool.diagnostics()
        return {"in_progress": d.live, "running": d.running, "scheduled": d.waiting, **d.stats}

    async def dead_letters(self, *, limit: int = 100) -> list[Any]:
        return await self._pool.dead_letters(limit=limit)

    async def replay_dead_letter(self, run_id: str) -> bool:
        return await self._pool.replay_dead_letter(run_id)
