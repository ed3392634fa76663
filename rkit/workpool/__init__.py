"""Workpool: named, durable queues of async calls with a global parallelism cap,
retries with backoff and jitter, leases, cancel, and a durable ``on_complete``.

Design:

* **State** lives under one hash tag per pool (``app.keys.tag("workpool", name)``):
  ``cfg``, ``seq``, ``pending`` (ZSET by due time, FIFO members ``<seq>:<id>``),
  ``running`` (ZSET of slot holders scored by lease deadline), ``live``, ``outbox``
  (callbacks to deliver), ``dlq``, ``stats``, ``events`` (capped stream), ``done``
  (retention index) and one hash per work item. Every change is one script in
  ``lua/workpool/``; the slot counter is ``ZCARD running`` checked inside the
  script that claims, so ``max_parallelism`` holds across every process.
* **Execution**: arq is the transport. A dispatch (inside enqueue, complete or the
  pump script) takes a slot and gives the attempt a fresh *fencing token*; Python
  then puts one arq job ``rkit_wp_run(kind, pool, id, token)`` on the App's queue
  (job id = pool tag + id + token). The worker's ``begin`` only succeeds for the
  current token, so a re-delivered job is a harmless ``STALE``, and a cancel that
  lands before ``begin`` always wins. A dispatch not begun within its dispatch lease
  (2 x lease) is extended under the same token while its job still waits in the
  queue (a backlog never multiplies jobs); a lost job is enqueued again under its
  id, and only a job taken by a worker that died before ``begin`` gets a new token.
* **Continuation**: the ``complete`` script that frees a slot claims the next due
  item *for the same worker* (which begins it itself, no arq job), so a busy pool
  runs back to back without waiting for arq's poll — this is what keeps throughput near bare
  arq even with a small cap. Other claimed items go to arq.
* **Leases**: a per-process heartbeat renews running leases (``lease_ms`` default
  5 s, renewed every second). The pump (every worker, at most 1 s apart) reaps
  expired leases: the attempt counts as failed (``"Worker lost: lease expired"``)
  and normal retry rules apply; a late report from the dead attempt is ``STALE``.
  A worker that cannot renew self-fences (cancels its task) before the lease ends.
* **Clock**: leases are judged by the App's clock in Redis; heartbeats and
  self-fencing follow the same clock (see :mod:`rkit.workpool.runtime`).
* **Retries** for any exception: ``initial_backoff_ms * base**(attempts-1)`` times
  a jitter factor in [0.5, 1.5); waiting work sits in ``pending`` and holds no
  slot. ``NonRetryableError`` (or ``__rkit_non_retryable__``) stops at once.
* **on_complete**: the final transition and the callback obligation are one
  script (the id enters ``outbox``). The worker that completed delivers it right
  away and acknowledges; a crash or a raising handler leaves it in ``outbox``
  where the pump redelivers with backoff (``on_complete_retry``) and finally
  dead-letters it; a claimed delivery that is never reported (its worker died) is
  redelivered ``callback_lease_ms`` (default 2 x lease) after the claim. The work
  itself never re-runs for a callback. Delivery is at least once; handlers are
  idempotent by ``work_id`` (exactly once in effect).
* **Retention** (bounded memory): finished work is deleted once its callback is
  acknowledged, or kept ``keep_result_ms`` (logical expiry in the hash + relative
  PEXPIRE + the ``done`` index swept by :meth:`Workpool.expire`). A dead-lettered
  callback keeps its work item for ``max(keep_result_ms, dlq_retention_ms)``
  (default 7 days; PEXPIRE + the same sweep), and the ``dlq`` holds at most
  ``dlq_max_len`` entries (default 1,000; the oldest are dropped with their items).
  ``events`` is a stream capped at ~10,000 entries; every worker's pump runs the
  sweep hourly over every pool it knows. A kept item's Redis TTL is its retention
  plus 60 s: the logical expiry (``expires_at``, judged on the App's clock) decides
  what reads see; the TTL only makes sure the memory goes even without a sweep.

Package layout: ``types`` (values and limits), ``kinds`` (:class:`PoolKind`, how
components run on a pool), ``client`` (:class:`Workpool`), ``executor`` (the
attempt runner), ``runtime`` (per-process leases and pump).
"""

from ..errors import NonRetryableError, is_non_retryable_error
from .client import Workpool
from .kinds import WORKPOOL, PoolKind, RunsOnWorkpool
from .runtime import _runtime, pool_names
from .types import (
    CHAIN_SECONDS,
    CLAIM_LIMIT,
    DEFAULT_ON_COMPLETE_RETRY,
    DEFAULT_RETRY_BEHAVIOR,
    DLQ_MAX_LEN,
    DLQ_RETENTION_MS,
    JOB_FUNCTION,
    LOG_LEVELS,
    MAX_TIMEOUT_MS,
    MAX_TRACEBACK_BYTES,
    AsDict,
    Canceled,
    CancelOutcome,
    DeadLetter,
    Diagnostics,
    Failed,
    Finished,
    LogLevel,
    NotFound,
    OnCompleteArgs,
    Pending,
    PoolConfig,
    PumpReport,
    RetryBehavior,
    Running,
    RunningInfo,
    RunResult,
    Status,
    Success,
    WorkId,
    WorkKind,
    check_parallelism,
    check_work_id,
    error_text,
    format_traceback,
    num_or_none,
    result_of,
)

__all__ = [
    "CHAIN_SECONDS",
    "CLAIM_LIMIT",
    "DEFAULT_ON_COMPLETE_RETRY",
    "DEFAULT_RETRY_BEHAVIOR",
    "DLQ_MAX_LEN",
    "DLQ_RETENTION_MS",
    "JOB_FUNCTION",
    "LOG_LEVELS",
    "MAX_TIMEOUT_MS",
    "MAX_TRACEBACK_BYTES",
    "WORKPOOL",
    "AsDict",
    "CancelOutcome",
    "Canceled",
    "DeadLetter",
    "Diagnostics",
    "Failed",
    "Finished",
    "LogLevel",
    "NonRetryableError",
    "NotFound",
    "OnCompleteArgs",
    "Pending",
    "PoolConfig",
    "PoolKind",
    "PumpReport",
    "RetryBehavior",
    "RunResult",
    "Running",
    "RunningInfo",
    "RunsOnWorkpool",
    "Status",
    "Success",
    "WorkId",
    "WorkKind",
    "Workpool",
    "_runtime",
    "check_parallelism",
    "check_work_id",
    "error_text",
    "format_traceback",
    "is_non_retryable_error",
    "num_or_none",
    "pool_names",
    "result_of",
]
