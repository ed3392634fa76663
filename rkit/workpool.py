"""Workpool: named, durable queues of async calls with a global parallelism cap,
retries with backoff and jitter, leases, cancel, and a durable ``on_complete``.

Design (spec workpool.md §7, with the choices below):

* **State** lives under one hash tag per pool (``app.keys.tag("workpool", name)``):
  ``cfg``, ``seq``, ``pending`` (ZSET by due time, FIFO members ``<seq>:<id>``),
  ``running`` (ZSET of slot holders scored by lease deadline), ``live``, ``outbox``
  (callbacks to deliver), ``dlq``, ``stats``, ``events`` (capped stream), ``done``
  (retention index) and one hash per work item. Every change is one script in
  ``lua/workpool/``; the slot counter is ``ZCARD running`` checked inside the
  script that claims, so ``max_parallelism`` holds across every process.
* **Execution**: arq is the transport. A dispatch (inside enqueue, complete or the
  pump script) takes a slot and gives the attempt a fresh *fencing token*; Python
  then puts one arq job ``rkit_wp_run(component, pool, id, token)`` on the App's
  queue (job id tagged like the pool). The worker's ``begin`` only succeeds for the
  current token, so a re-delivered job is a harmless ``STALE``.
* **Continuation**: the ``complete`` script that frees a slot claims the next due
  item *for the same worker* (state running at once), so a busy pool runs back to
  back without waiting for arq's poll — this is what keeps throughput near bare
  arq even with a small cap. Other claimed items go to arq.
* **Leases**: a per-process heartbeat renews running leases (``lease_ms`` default
  5 s, renewed every second). The pump (every worker, at most 1 s apart) reaps
  expired leases: the attempt counts as failed (``"Worker lost: lease expired"``)
  and normal retry rules apply; a late report from the dead attempt is ``STALE``.
  A worker that cannot renew self-fences (cancels its task) before the lease ends.
* **Retries** for any exception: ``initial_backoff_ms * base**(attempts-1)`` times
  a jitter factor in [0.5, 1.5); waiting work sits in ``pending`` and holds no
  slot. ``NonRetryableError`` (or ``__rkit_non_retryable__``) stops at once.
* **on_complete**: the final transition and the callback obligation are one
  script (the id enters ``outbox``). The worker that completed delivers it right
  away and acknowledges; a crash or a raising handler leaves it in ``outbox``
  where the pump redelivers with backoff (``on_complete_retry``) and finally
  dead-letters it. The work itself never re-runs for a callback. Delivery is
  at least once; handlers are idempotent by ``work_id`` (exactly once in effect).
* **Retention** (bounded memory): finished work is deleted once its callback is
  acknowledged, or kept ``keep_result_ms`` (logical expiry in the hash + relative
  PEXPIRE + the ``done`` index swept by :meth:`Workpool.expire`). A dead-lettered
  callback keeps its work item for ``max(keep_result_ms, dlq_retention_ms)``
  (default 7 days; PEXPIRE + the same sweep), and the ``dlq`` holds at most
  ``dlq_max_len`` entries (default 1,000; the oldest are dropped with their items).
  ``events`` is a stream capped at ~10,000 entries; every worker's pump runs the
  sweep hourly over every pool it knows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, NewType

from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError, ResponseError

from . import codec, scripts
from .clock import argv_now
from .errors import (
    ActionNotFound,
    ConfigError,
    FunctionNotRegistered,
    NonRetryableError,
    PayloadTooLarge,
    SerializationError,
    is_non_retryable_error,
)

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "DEFAULT_RETRY_BEHAVIOR",
    "Canceled",
    "DeadLetter",
    "Diagnostics",
    "Failed",
    "Finished",
    "LogLevel",
    "NonRetryableError",
    "OnCompleteArgs",
    "Pending",
    "PoolConfig",
    "PumpReport",
    "RetryBehavior",
    "RunResult",
    "Running",
    "RunningInfo",
    "Status",
    "Success",
    "WorkId",
    "Workpool",
    "is_non_retryable_error",
    "pool_names",
]

logger = logging.getLogger("rkit.workpool")

LogLevel = Literal["DEBUG", "TRACE", "INFO", "REPORT", "WARN", "ERROR"]
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "TRACE", "INFO", "REPORT", "WARN", "ERROR")
WorkKind = Literal["action", "mutation", "query"]
WorkId = NewType("WorkId", str)
Rng = Callable[[], float]

DAY = 86_400_000.0
_POOL_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PY_LEVEL = {
    "DEBUG": logging.DEBUG,
    "TRACE": logging.DEBUG,
    "INFO": logging.INFO,
    "REPORT": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
}
CLAIM_LIMIT = 64
BATCH_CHUNK = 256
BATCH_BYTES = 8_000_000
MAX_TIMEOUT_MS = 600_000.0
"""Largest per-item timeout (the reference's 10-minute action limit). The arq
wrapper's timeout sits just above it plus the chaining window; arq derives its
in-progress key TTL (its own crash re-delivery delay) from the largest timeout."""
DLQ_MAX_LEN = 1_000
"""Dead letters kept per pool; beyond it the oldest are dropped (with their work)."""
DLQ_RETENTION_MS = 7 * DAY
"""How long a dead letter (and its work item) is kept for inspection and replay."""
CHAIN_SECONDS = 60.0
"""A worker keeps running freed-slot continuations inside one arq job this long."""
JOB_FUNCTION = "rkit_wp_run"


class RetryBehavior(BaseModel):
    """``max_attempts`` counts all attempts; the first retry waits about
    ``initial_backoff_ms`` and each further one ``base`` times longer."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_attempts: int = Field(ge=0)
    initial_backoff_ms: float = Field(ge=0, allow_inf_nan=False)
    base: float = Field(gt=0, allow_inf_nan=False)


DEFAULT_RETRY_BEHAVIOR = RetryBehavior(max_attempts=5, initial_backoff_ms=250, base=2)
DEFAULT_ON_COMPLETE_RETRY = RetryBehavior(max_attempts=3, initial_backoff_ms=250, base=2)


class _AsDict:
    """``to_dict()``: the JSON shape of a result or status (field names as keys)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True, slots=True)
class Success(_AsDict):
    return_value: Any
    kind: Literal["success"] = "success"


@dataclass(frozen=True, slots=True)
class Failed(_AsDict):
    error: str
    kind: Literal["failed"] = "failed"


@dataclass(frozen=True, slots=True)
class Canceled(_AsDict):
    kind: Literal["canceled"] = "canceled"


RunResult = Success | Failed | Canceled


@dataclass(frozen=True, slots=True)
class Pending(_AsDict):
    previous_attempts: int
    state: Literal["pending"] = "pending"


@dataclass(frozen=True, slots=True)
class Running(_AsDict):
    previous_attempts: int
    state: Literal["running"] = "running"


@dataclass(frozen=True, slots=True)
class Finished(_AsDict):
    state: Literal["finished"] = "finished"


Status = Pending | Running | Finished


@dataclass(frozen=True, slots=True)
class OnCompleteArgs:
    """What an ``on_complete`` handler receives (``work_id`` is its idempotency key)."""

    work_id: WorkId
    context: Any
    result: RunResult


@dataclass(frozen=True, slots=True)
class PoolConfig:
    max_parallelism: int
    log_level: str


@dataclass(frozen=True, slots=True)
class RunningInfo:
    work_id: WorkId
    fn_name: str
    state: str
    started_at: float | None
    attempts: int
    worker: str | None
    lease_until: float


@dataclass(frozen=True, slots=True)
class Diagnostics:
    waiting: int
    due: int
    running: int
    completing: int
    spare_capacity: int
    dlq: int
    live: int
    oldest_pending_age_ms: float | None
    stats: dict[str, int]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    work_id: WorkId
    fn_name: str
    on_complete: str
    error: str
    dead_at: float


@dataclass(frozen=True, slots=True)
class PumpReport:
    dispatched: int
    reannounced: int
    callbacks: int
    next_wake_ms: float | None

    @property
    def did_work(self) -> bool:
        return bool(self.dispatched or self.reannounced or self.callbacks)


@dataclass(frozen=True)
class _Flavor:
    """What differs between a plain workpool and the pools other components run on."""

    component: str = "workpool"
    lost_error: str = "Worker lost: lease expired"
    cancel_mode: Literal["flag", "finish"] = "flag"
    logger: str = "rkit.workpool"
    bad_result_retryable: bool = False
    default_max_parallelism: int = 10
    cancel_writes_log_level: bool = True
    item_log_levels: bool = False


def _default_id() -> str:
    """Opaque, time-ordered ids (ms timestamp + randomness)."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(7)}"


def error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _num(x: Any) -> float | None:
    return None if x in (None, "", False) else float(x)


def _fields(flat: Sequence[Any]) -> dict[str, str]:
    it = iter(flat)
    return {_s(k): _s(v) for k, v in zip(it, it, strict=True)}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _result_of(kind: str, result: str, error: str) -> RunResult:
    if kind == "success":
        return Success(codec.loads(result) if result else None)
    if kind == "failed":
        return Failed(error)
    return Canceled()


def _check_log_level(level: str | None) -> None:
    if level is not None and level not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")


def check_parallelism(value: Any, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("max_parallelism must be >= 0")
    if value > limit:
        raise ConfigError(f"max_parallelism must be <= {limit}")


def _script_error(exc: ResponseError) -> ConfigError | None:
    msg = str(exc)
    for marker in ("max_parallelism must", "log_level must"):
        if marker in msg:
            return ConfigError(msg[msg.index(marker) :].split(" script:")[0].strip())
    return None


def _log_events(lines: Sequence[Any], log: logging.Logger = logger) -> None:
    for raw in lines:
        line = _s(raw)
        level = "INFO"
        try:
            level = json.loads(line).get("level", "INFO")
        except ValueError:  # pragma: no cover - scripts only emit JSON
            pass
        log.log(_PY_LEVEL.get(level, logging.INFO), line)


async def pool_names(app: App) -> list[str]:
    """Names of every workpool used in ``app``'s namespace (admin listing)."""
    members = await app.redis.smembers(_index_key(app))
    return sorted(_s(m) for m in members)


def _index_key(app: App) -> str:
    return app.keys.tag("workpool") + ":pools"


class Workpool:
    """A named pool; instances over the same name share the stored config."""

    def __init__(
        self,
        app: App,
        name: str,
        *,
        max_parallelism: int | None = None,
        log_level: LogLevel | None = None,
        retry_actions_by_default: bool = False,
        default_retry_behavior: RetryBehavior | None = None,
        timeout_ms: float = 600_000,
        lease_ms: float = 5_000,
        keep_result_ms: float = 0,
        on_complete_retry: RetryBehavior = DEFAULT_ON_COMPLETE_RETRY,
        dlq_max_len: int = DLQ_MAX_LEN,
        dlq_retention_ms: float = DLQ_RETENTION_MS,
        max_args_bytes: int = 1_000_000,
        max_result_bytes: int = 16 * 2**20,
        parallelism_limit: int = 10_000,
        rng: Rng | None = None,
        id_factory: Callable[[], str] | None = None,
        _flavor: _Flavor | None = None,
    ) -> None:
        if not isinstance(name, str) or not _POOL_RE.match(name):
            raise ConfigError(f"pool name must match {_POOL_RE.pattern}, got {name!r}")
        if max_parallelism is not None:
            check_parallelism(max_parallelism, parallelism_limit)
        _check_log_level(log_level)
        for opt, val in (("timeout_ms", timeout_ms), ("lease_ms", lease_ms)):
            if not isinstance(val, int | float) or not 0 < val <= MAX_TIMEOUT_MS:
                raise ConfigError(f"{opt} must be a number in (0, {MAX_TIMEOUT_MS:.0f}]")
        if not isinstance(keep_result_ms, int | float) or not 0 <= keep_result_ms < math.inf:
            raise ConfigError("keep_result_ms must be a finite number >= 0")
        if isinstance(dlq_max_len, bool) or not isinstance(dlq_max_len, int) or dlq_max_len < 1:
            raise ConfigError("dlq_max_len must be an int >= 1")
        if not isinstance(dlq_retention_ms, int | float) or not 0 < dlq_retention_ms < math.inf:
            raise ConfigError("dlq_retention_ms must be a positive finite number")
        self.app = app
        self.name = name
        self.flavor = _flavor or _Flavor()
        self.max_parallelism = max_parallelism
        self.log_level = log_level
        self.retry_actions_by_default = retry_actions_by_default
        self.default_retry_behavior = default_retry_behavior
        self.timeout_ms = float(timeout_ms)
        self.lease_ms = float(lease_ms)
        self.keep_result_ms = float(keep_result_ms)
        self.on_complete_retry = on_complete_retry
        self.dlq_max_len = dlq_max_len
        self.dlq_retention_ms = float(dlq_retention_ms)
        self.max_args_bytes = max_args_bytes
        self.max_result_bytes = max_result_bytes
        self.parallelism_limit = parallelism_limit
        self.rng: Rng = rng or random.random
        self.id_factory = id_factory or _default_id
        tag = app.keys.tag(self.flavor.component, name)
        self.tag = tag
        self.keys = [
            f"{tag}:{k}"
            for k in (
                "cfg",
                "seq",
                "pending",
                "running",
                "live",
                "outbox",
                "dlq",
                "stats",
                "events",
                "done",
            )
        ]
        self._job_tag = tag[tag.index("{") :]
        self._opts = codec.dumps(
            {
                "component": self.flavor.component,
                "pool": name,
                "lease_ms": self.lease_ms,
                "dispatch_lease_ms": 2 * self.lease_ms,
                "oc_lease_ms": 30_000,
                "keep_result_ms": self.keep_result_ms,
                "default_max_parallelism": self.flavor.default_max_parallelism,
                "default_log_level": "REPORT",
                "parallelism_limit": parallelism_limit,
                "lost_error": self.flavor.lost_error,
                "report_ms": 60_000,
                "oc_retry": on_complete_retry.model_dump(),
                "item_levels": self.flavor.item_log_levels,
                "dlq_max_len": dlq_max_len,
                "dlq_retention_ms": self.dlq_retention_ms,
            }
        )
        self._registered = False
        self._logger = logging.getLogger(self.flavor.logger)
        self._s = {
            op: scripts.load("workpool", op)
            for op in (
                "enqueue",
                "begin",
                "heartbeat",
                "complete",
                "release",
                "redispatch",
                "cancel",
                "cancel_page",
                "pump",
                "oc_ack",
                "oc_fail",
                "replay",
                "config",
                "get",
                "list",
                "info",
                "expire",
                "delete",
            )
        }
        app.components[f"{self.flavor.component}:{name}"] = self

    def __repr__(self) -> str:
        return f"Workpool({self.name!r})"

    # -- plumbing ---------------------------------------------------------------------

    async def _call(self, op: str, *args: Any, extra_keys: Sequence[str] = ()) -> Any:
        argv = [argv_now(self.app.clock), self._opts, *args]
        try:
            return await self._s[op](self.app.redis, [*self.keys, *extra_keys], argv)
        except ResponseError as exc:
            err = _script_error(exc)
            if err is not None:
                raise err from None
            raise

    async def _register(self) -> None:
        if not self._registered and self.flavor.component == "workpool":
            await scripts.load("workpool_index", "register")(
                self.app.redis, [_index_key(self.app)], [self.name]
            )
            self._registered = True

    def _log(self, lines: Sequence[Any]) -> None:
        _log_events(lines, self._logger)

    def job_id(self, work_id: str, token: str) -> str:
        return f"{self._job_tag}:{work_id}:{token}"

    async def _announce(self, entries: Sequence[tuple[str, str]]) -> None:
        """Put one arq job per dispatched attempt on the queue."""
        if not entries:
            return
        from . import _arq

        pool = await self.app.queue_pool()
        jobs = [
            (self.job_id(wid, tok), [self.flavor.component, self.name, wid, tok])
            for wid, tok in entries
        ]
        await _arq.enqueue_jobs(pool, self.app.queue_name, JOB_FUNCTION, jobs)

    async def _reannounce(self, entries: Sequence[tuple[str, str]]) -> None:
        """Attempts dispatched a dispatch lease ago and not begun: leave a job that is
        still queued alone, enqueue a lost one again (same job id), and give a new
        token only to one whose job a worker took and never began (it died)."""
        if not entries:
            return
        from . import _arq

        pool = await self.app.queue_pool()
        jobs = [
            (self.job_id(wid, tok), [self.flavor.component, self.name, wid, tok])
            for wid, tok in entries
        ]
        marks = await _arq.reannounce_jobs(pool, self.app.queue_name, JOB_FUNCTION, jobs)
        held = [
            x for (wid, tok), m in zip(entries, marks, strict=True) if m == "H" for x in (wid, tok)
        ]
        if held:
            fresh, events = await self._call("redispatch", *held)
            self._log(events)
            await self._announce([(_s(f[0]), _s(f[1])) for f in fresh])

    def _resolve(self, fn: Callable[..., Any] | str, what: str = "fn") -> str:
        try:
            return self.app.action_name(fn)
        except ActionNotFound as exc:
            raise FunctionNotRegistered(exc.name) from None

    # -- enqueue ----------------------------------------------------------------------

    async def enqueue(
        self,
        fn: Callable[..., Any] | str,
        args: Mapping[str, Any] | None = None,
        *,
        retry: bool | RetryBehavior | None = None,
        on_complete: Callable[..., Any] | str | None = None,
        context: Any = None,
        run_at: float | None = None,
        run_after: float | None = None,
        name: str | None = None,
        timeout_ms: float | None = None,
        kind: WorkKind = "action",
        retry_behavior: RetryBehavior | None = None,
    ) -> WorkId:
        """Queue one call ``await fn(**args)``; returns its id."""
        ids = await self.enqueue_batch(
            fn,
            [args or {}],
            retry=retry,
            on_complete=on_complete,
            context=context,
            run_at=run_at,
            run_after=run_after,
            name=name,
            timeout_ms=timeout_ms,
            kind=kind,
            retry_behavior=retry_behavior,
        )
        return ids[0]

    enqueue_action = enqueue

    async def enqueue_mutation(
        self, fn: Callable[..., Any] | str, args: Mapping[str, Any] | None = None, **opts: Any
    ) -> WorkId:
        """Like :meth:`enqueue` for work that is never retried by the class."""
        if "retry" in opts:
            raise TypeError("enqueue_mutation() takes no retry option (mutations never retry)")
        return await self.enqueue(fn, args, kind="mutation", **opts)

    async def enqueue_query(
        self, fn: Callable[..., Any] | str, args: Mapping[str, Any] | None = None, **opts: Any
    ) -> WorkId:
        if "retry" in opts:
            raise TypeError("enqueue_query() takes no retry option (queries never retry)")
        return await self.enqueue(fn, args, kind="query", **opts)

    def _retry_json(
        self, kind: str, retry: bool | RetryBehavior | None, retry_behavior: RetryBehavior | None
    ) -> str:
        if retry is not None and retry_behavior is not None:
            raise ConfigError("use either retry or retry_behavior, not both")
        behavior: RetryBehavior | None = retry_behavior
        if retry_behavior is None and kind == "action":
            if retry is None:
                retry = self.retry_actions_by_default
            if retry is True:
                behavior = self.default_retry_behavior or DEFAULT_RETRY_BEHAVIOR
            elif isinstance(retry, RetryBehavior):
                behavior = retry
            elif retry is not False:
                raise ConfigError("retry must be a bool or a RetryBehavior")
        return self._encode_retry(behavior)

    def _encode_retry(self, behavior: Any) -> str:
        if behavior is None:
            return ""
        if isinstance(behavior, RetryBehavior):
            behavior = behavior.model_dump()
        return codec.dumps({k: v for k, v in behavior.items() if v is not None})

    async def enqueue_batch(
        self,
        fn: Callable[..., Any] | str,
        args_list: Sequence[Mapping[str, Any]],
        *,
        retry: bool | RetryBehavior | None = None,
        on_complete: Callable[..., Any] | str | None = None,
        context: Any = None,
        run_at: float | None = None,
        run_after: float | None = None,
        name: str | None = None,
        timeout_ms: float | None = None,
        kind: WorkKind = "action",
        retry_behavior: RetryBehavior | None = None,
        _retry_json: str | None = None,
        _ids: Sequence[str] | None = None,
        _log_level: str = "",
    ) -> list[WorkId]:
        """Queue many calls of ``fn`` with one set of options; ids in input order.

        Everything is validated before anything is written; chunks of up to 256
        items are each atomic."""
        fn_name = self._resolve(fn)
        label = name or fn_name
        oc_name = self._resolve(on_complete, "on_complete") if on_complete is not None else ""
        if kind not in ("action", "mutation", "query"):
            raise ConfigError(f"kind must be action, mutation or query, got {kind!r}")
        if run_at is not None and run_after is not None:
            raise ConfigError("use either run_at or run_after, not both")
        due = ""
        for opt, val in (("run_at", run_at), ("run_after", run_after)):
            if val is not None and (
                isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val)
            ):
                raise ConfigError(f"{opt} must be a finite number of ms")
        if run_at is not None:
            due = codec.fmt_num(run_at)
        elif run_after is not None:
            due = "+" + codec.fmt_num(max(0.0, float(run_after)))
        tmo = self.timeout_ms if timeout_ms is None else timeout_ms
        if (
            isinstance(tmo, bool)
            or not isinstance(tmo, int | float)
            or not 0 < tmo <= MAX_TIMEOUT_MS
        ):
            raise ConfigError(f"timeout_ms must be a number in (0, {MAX_TIMEOUT_MS:.0f}]")
        retry_s = (
            _retry_json
            if _retry_json is not None
            else self._retry_json(kind, retry, retry_behavior)
        )
        ctx_s = ""
        if oc_name:
            ctx_s = codec.dumps(context, what=f"on_complete context for function {label}")
            size = len(ctx_s.encode("utf-8"))
            if size > self.max_args_bytes:
                raise PayloadTooLarge(
                    f"OnComplete context for function {label} too large: {size} bytes "
                    f"(max: {self.max_args_bytes} bytes)"
                )
        if isinstance(args_list, Mapping | str | bytes):
            raise TypeError("args_list must be a sequence of argument mappings")
        encoded: list[str] = []
        for args in args_list:
            if not isinstance(args, Mapping):
                raise TypeError(f"arguments of function {label} must be a mapping of keyword args")
            if not all(isinstance(k, str) for k in args):
                raise TypeError(f"arguments of function {label} must have str keys")
            a = codec.dumps(dict(args), what=f"arguments of function {label}")
            size = len(a.encode("utf-8"))
            if size > self.max_args_bytes:
                raise PayloadTooLarge(
                    f"Function arguments for function {label} too large: {size} bytes "
                    f"(max: {self.max_args_bytes} bytes)"
                )
            encoded.append(a)
        ids = list(_ids) if _ids is not None else [self.id_factory() for _ in encoded]
        for wid in ids:
            if not isinstance(wid, str) or not wid:
                raise ConfigError("work ids must be non-empty strings")
        maxp = "" if self.max_parallelism is None else str(self.max_parallelism)
        level = self.log_level or ""
        tmo_s = codec.fmt_num(tmo)
        await self._register()
        i = 0
        while i < len(encoded):
            chunk: list[str] = []
            nbytes = 0
            j = i
            while j < len(encoded) and j - i < BATCH_CHUNK:
                nbytes += len(encoded[j]) + len(ctx_s)
                if j > i and nbytes > BATCH_BYTES:
                    break
                chunk += [ids[j], due, fn_name, label, kind, encoded[j], retry_s, oc_name]
                chunk += [ctx_s, tmo_s, _log_level]
                j += 1
            reply = await self._call("enqueue", maxp, level, CLAIM_LIMIT, j - i, *chunk)
            self._log(reply[1])
            await self._announce([(_s(c[0]), _s(c[2])) for c in reply[0]])
            i = j
        return [WorkId(w) for w in ids]

    enqueue_action_batch = enqueue_batch

    async def enqueue_mutation_batch(
        self, fn: Callable[..., Any] | str, args_list: Sequence[Mapping[str, Any]], **opts: Any
    ) -> list[WorkId]:
        if "retry" in opts:
            raise TypeError("enqueue_mutation_batch() takes no retry option")
        return await self.enqueue_batch(fn, args_list, kind="mutation", **opts)

    async def enqueue_query_batch(
        self, fn: Callable[..., Any] | str, args_list: Sequence[Mapping[str, Any]], **opts: Any
    ) -> list[WorkId]:
        if "retry" in opts:
            raise TypeError("enqueue_query_batch() takes no retry option")
        return await self.enqueue_batch(fn, args_list, kind="query", **opts)

    # -- control ------------------------------------------------------------------------

    async def cancel(self, work_id: str) -> None:
        """Pending or backing-off work never (re)starts and its callback gets
        ``Canceled()``; running work finishes but gets no further attempts.
        Unknown, finished or already-canceled work: a no-op. A class-level
        ``log_level`` is written to the stored config (``max_parallelism`` is not)."""
        await self._cancel([work_id])

    def _cancel_level(self) -> str:
        """The class-level log level, which cancel writes to the stored config (spec
        §3.1: enqueue writes both class-level values, cancel only the log level)."""
        return (self.log_level or "") if self.flavor.cancel_writes_log_level else ""

    async def _cancel(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        if self._cancel_level():
            await self._register()
        reply = await self._call("cancel", self.flavor.cancel_mode, self._cancel_level(), *ids)
        self._log(reply[1])
        out = [_s(r) for r in reply[0]]
        for wid, r in zip(ids, out, strict=True):
            if r == "NOOP":
                logger.debug("cancel of %s in pool %s: nothing to cancel", wid, self.name)
        return out

    async def cancel_all(self, *, limit: int = 64, before: float | None = None) -> int:
        """Cancel every live item enqueued up to ``before`` (default now), newest first,
        in pages of ``limit``; returns how many were canceled or flagged."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError("limit must be a positive int")
        before_s = "" if before is None else codec.fmt_num(before)
        if self._cancel_level():
            await self._register()
        total, offset = 0, 0
        while True:
            acted, seen, kept, events = await self._call(
                "cancel_page",
                self.flavor.cancel_mode,
                self._cancel_level(),
                before_s,
                offset,
                limit,
            )
            self._log(events)
            total += int(acted)
            offset += int(kept)
            if int(seen) < limit:
                return total

    async def set_config(
        self, *, max_parallelism: int | None = None, log_level: LogLevel | None = None
    ) -> PoolConfig:
        """Store the pool's config (validated); a raised cap takes effect at once."""
        if max_parallelism is not None:
            check_parallelism(max_parallelism, self.parallelism_limit)
        _check_log_level(log_level)
        await self._register()
        m, lvl = await self._call(
            "config",
            "" if max_parallelism is None else str(max_parallelism),
            log_level or "",
        )
        if max_parallelism:
            await self.pump(callback_limit=0)  # start what the new cap allows
        return PoolConfig(int(m), _s(lvl))

    async def get_config(self) -> PoolConfig:
        m, lvl = await self._call("config", "", "")
        return PoolConfig(int(m), _s(lvl))

    # -- reads ------------------------------------------------------------------------

    async def _get(self, ids: Sequence[str]) -> tuple[float, list[dict[str, str]]]:
        reply = await self._call("get", *ids)
        return float(reply[0]), [_fields(h) for h in reply[1:]]

    async def status(self, work_id: str) -> Status:
        return (await self.status_batch([work_id]))[0]

    async def status_batch(self, work_ids: Sequence[str]) -> list[Status]:
        if not work_ids:
            return []
        _, rows = await self._get(list(work_ids))
        return [self._status_of(h) for h in rows]

    @staticmethod
    def _status_of(h: Mapping[str, str]) -> Status:
        state = h.get("state")
        if state == "pending":
            return Pending(int(h["attempts"]))
        if state in ("dispatched", "running"):
            return Running(int(h["attempts"]))
        return Finished()

    async def item(self, work_id: str) -> dict[str, Any] | None:
        """The raw work hash (admin/debugging), or ``None`` when gone."""
        _, rows = await self._get([work_id])
        return dict(rows[0]) if rows[0] else None

    async def get_result(self, work_id: str) -> RunResult | None:
        """The final result while it is kept (``keep_result_ms``), else ``None``."""
        h = await self.item(work_id)
        if not h or h.get("state") != "finished":
            return None
        return _result_of(h.get("result_kind", ""), h.get("result", ""), h.get("error", ""))

    async def _list(
        self, index: str, limit: int
    ) -> tuple[float, list[tuple[str, float, dict[str, str]]]]:
        reply = await self._call("list", index, limit)
        return float(reply[0]), [(_s(r[0]), float(r[1]), _fields(r[2])) for r in reply[1:]]

    async def running(self, *, limit: int = 1000) -> list[RunningInfo]:
        _, rows = await self._list("running", limit)
        return [
            RunningInfo(
                work_id=WorkId(wid),
                fn_name=h.get("label", ""),
                state=h.get("state", ""),
                started_at=_num(h.get("started_at")),
                attempts=int(h.get("attempts", 0)),
                worker=h.get("worker"),
                lease_until=score,
            )
            for wid, score, h in rows
        ]

    async def pending(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        _, rows = await self._list("pending", limit)
        return [
            {
                "work_id": wid,
                "fn_name": h.get("label", ""),
                "due": score,
                "previous_attempts": int(h.get("attempts", 0)),
                "last_error": h.get("last_error"),
            }
            for wid, score, h in rows
        ]

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """Callbacks that exhausted ``on_complete_retry``, oldest first (at most
        ``dlq_max_len`` are kept, each for ``dlq_retention_ms``)."""
        _, rows = await self._list("dlq", limit)
        return [
            DeadLetter(
                WorkId(wid), h.get("label", ""), h.get("on_complete", ""), h.get("oc_error", ""), t
            )
            for wid, t, h in rows
            if h
        ]

    async def replay_dead_letter(self, work_id: str) -> bool:
        """Give a dead-lettered callback a fresh budget; the pump redelivers it."""
        return bool(await self._call("replay", work_id))

    async def diagnostics(self) -> Diagnostics:
        r = await self._call("info")
        now, maxp = float(r[0]), int(r[1])
        stats = {k: int(v) for k, v in _fields(r[10]).items() if k != "last_report_ts"}
        running = int(r[5])
        return Diagnostics(
            waiting=int(r[3]),
            due=int(r[4]),
            running=running,
            completing=int(r[6]),
            spare_capacity=max(0, maxp - running),
            dlq=int(r[7]),
            live=int(r[8]),
            oldest_pending_age_ms=(max(0.0, now - float(r[9])) if _s(r[9]) else None),
            stats=stats,
        )

    async def expire(self, *, limit: int = 1024) -> int:
        """The retention sweep (all batches): delete finished work past
        ``keep_result_ms`` and drop dead letters older than ``dlq_retention_ms``;
        returns how many work items were deleted."""
        total = 0
        while True:
            done, dead, deleted = (int(x) for x in await self._call("expire", limit))
            total += deleted
            if done < limit and dead < limit:
                return total

    # -- background round (every worker runs it; tests call it) -------------------------

    async def pump(self, *, claim_limit: int = CLAIM_LIMIT, callback_limit: int = 64) -> PumpReport:
        """Reap expired leases, dispatch due work, deliver due callbacks, report."""
        if self.app.clock.now_ms() is not None:
            # a test clock may have jumped past this process's own leases: renew them
            # first, as heartbeats on that clock would have (never reap a live attempt)
            await _runtime(self.app).renew(self)
        rands = [repr(self.rng()) for _ in range(64)]
        reann, claimed, callbacks, wake, events = await self._call(
            "pump", claim_limit, callback_limit, *rands
        )
        self._log(events)
        await self._reannounce([(_s(c[0]), _s(c[1])) for c in reann])
        await self._announce([(_s(c[0]), _s(c[2])) for c in claimed])
        for cb in callbacks:
            wid, oc, ctx, kind, result, error = (_s(x) for x in cb)
            await self._deliver(wid, oc, ctx, _result_of(kind, result, error))
        return PumpReport(len(claimed), len(reann), len(callbacks), _num(_s(wake)))

    # -- execution (worker side) --------------------------------------------------------

    async def _run_dispatched(self, work_id: str, token: str) -> None:
        """The arq job: begin the dispatched attempt (fenced), run it, and run the
        items its completion hands to this worker (no queue poll between them)."""
        rt = _runtime(self.app)
        t0 = time.monotonic()
        item: tuple[str, str] | None = (work_id, token)
        while item is not None:
            wid, tok = item
            # begin is the fence a cancel races against: a canceled attempt never starts
            reply = await self._call("begin", wid, tok, rt.worker_id)
            if _s(reply[0]) != "OK":
                logger.debug(
                    "stale delivery of %s token %s in pool %s (%s)",
                    wid,
                    tok,
                    self.name,
                    _s(reply[1]),
                )
                return
            fn_name, args_s, tmo = (_s(x) for x in reply[1:4])
            outcome = await self._execute(wid, tok, fn_name, args_s, float(tmo))
            if outcome is None:
                return  # fenced: the lease was lost, the reaper accounts for it
            kind, payload, non_retryable, value = outcome
            chain = rt.worker_id if time.monotonic() - t0 < CHAIN_SECONDS else ""
            reply = await self._call(
                "complete",
                wid,
                tok,
                kind,
                payload,
                "1" if non_retryable else "0",
                repr(self.rng()),
                chain,
                CLAIM_LIMIT,
            )
            result, claimed, events = reply
            self._log(events)
            head = _s(result[0])
            if head == "STALE":
                logger.warning(
                    "late report for work %s (token %s) in pool %s dropped", wid, tok, self.name
                )
            elif head == "RETRY":
                rt.wake_in(float(_s(result[2])))  # start the retry on time, not at the next poll
            item = None
            rest: list[tuple[str, str]] = []
            for c in claimed:
                if _s(c[3]) == "1" and item is None:
                    item = (_s(c[0]), _s(c[2]))
                else:
                    rest.append((_s(c[0]), _s(c[2])))
            await self._announce(rest)
            if head == "DONE" and len(result) == 4:
                final = _s(result[3])  # canceled when a cancel stopped the retry
                res: RunResult = (
                    Success(value)
                    if final == "success"
                    else Failed(payload)
                    if final == "failed"
                    else Canceled()
                )
                await self._deliver(wid, _s(result[1]), _s(result[2]), res)

    async def _execute(
        self, work_id: str, token: str, fn_name: str, args_s: str, tmo_ms: float
    ) -> tuple[str, str, bool, Any] | None:
        """Run one attempt. Returns (kind, payload, non_retryable, value), or ``None``
        when the attempt was fenced off (lease lost) and must not report."""
        action = self.app.actions.get(fn_name)
        if action is None:
            return ("failed", f"No action registered under the name {fn_name!r}.", True, None)
        try:
            args = codec.loads(args_s)
        except ValueError as exc:  # pragma: no cover - enqueue only stores JSON
            return ("failed", f"bad arguments: {exc}", True, None)
        rt = _runtime(self.app)
        try:  # a call that cannot even start (bad keywords) is this attempt's failure
            coro = action.fn(**args)
        except Exception as exc:
            return ("failed", error_text(exc), is_non_retryable_error(exc), None)
        task = asyncio.ensure_future(coro)
        lease = rt.track(self, work_id, token, task)
        try:
            done, _ = await asyncio.wait({task}, timeout=tmo_ms / 1000.0)
        except asyncio.CancelledError:
            # shutdown: hand the attempt back (no attempt used); it is re-delivered
            task.cancel()
            await asyncio.shield(self._release(work_id, token))
            raise
        finally:
            rt.untrack(lease)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if lease.fenced:
                return None
            return ("failed", f"Timed out after {tmo_ms:.0f} ms", False, None)
        if lease.fenced:
            return None
        if task.cancelled():
            return ("failed", "Canceled while running", False, None)
        error = task.exception()
        if error is not None:
            return ("failed", error_text(error), is_non_retryable_error(error), None)
        value = task.result()
        try:
            payload = codec.dumps(value)
        except SerializationError as e:
            msg = f"Return value is not JSON-serializable: {e}"
            return ("failed", msg, not self.flavor.bad_result_retryable, None)
        size = len(payload.encode("utf-8"))
        if size > self.max_result_bytes:
            msg = f"Return value too large: {size} bytes (max: {self.max_result_bytes} bytes)"
            return ("failed", msg, not self.flavor.bad_result_retryable, None)
        return ("success", payload, False, value)

    async def _release(self, work_id: str, token: str) -> None:
        try:
            if _s(await self._call("release", work_id, token)) == "OK":
                await self._announce([(work_id, token)])
        except RedisError:  # pragma: no cover - the lease expires instead
            logger.warning("could not release work %s of pool %s", work_id, self.name)

    async def _deliver(self, work_id: str, oc_name: str, ctx_s: str, result: RunResult) -> None:
        """Run one on_complete handler, then acknowledge or schedule its retry."""
        context = codec.loads(ctx_s) if ctx_s else None
        action = self.app.actions.get(oc_name)
        try:
            if action is None:
                raise FunctionNotRegistered(oc_name)
            await self._call_handler(action.fn, WorkId(work_id), context, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning(
                "on_complete %s for work %s of pool %s raised: %s",
                oc_name,
                work_id,
                self.name,
                error_text(exc),
            )
            _status, events = await self._call(
                "oc_fail", work_id, error_text(exc), repr(self.rng())
            )
            self._log(events)
            return
        await self._call("oc_ack", work_id)

    async def _call_handler(
        self, fn: Callable[..., Awaitable[Any]], work_id: WorkId, context: Any, result: RunResult
    ) -> None:
        await fn(OnCompleteArgs(work_id, context, result))

    def define_on_complete(
        self, *, context_model: type[BaseModel] | None = None, name: str | None = None
    ) -> Callable[[Callable[[OnCompleteArgs], Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Register an ``on_complete`` handler as an App action; with ``context_model``
        the context is parsed by pydantic first (a validation error is a handler
        failure, retried and eventually dead-lettered)."""

        def register(
            handler: Callable[[OnCompleteArgs], Awaitable[Any]],
        ) -> Callable[..., Awaitable[Any]]:
            async def on_complete(args: OnCompleteArgs) -> Any:
                if context_model is not None:
                    args = OnCompleteArgs(
                        args.work_id, context_model.model_validate(args.context), args.result
                    )
                return await handler(args)

            on_complete.__qualname__ = handler.__qualname__
            on_complete.__module__ = handler.__module__
            return self.app.action(name=name)(on_complete)

        return register


# -- per-process runtime: leases (heartbeat, self-fencing) and the pump loop ----------


@dataclass(eq=False)
class _Lease:
    pool: Workpool
    work_id: str
    token: str
    task: asyncio.Future[Any]
    last_ok: float  # when the lease was last known renewed (runtime._now_s)
    fenced: bool = False


class _Runtime:
    """One per App per process: the worker id, the heartbeat and the pump.

    Leases are judged by the App's clock in Redis, so renewal and self-fencing follow
    that clock too: on the server clock, monotonic wall time; on a test clock, the test
    clock (and every pump round renews this process's leases first, so moving the test
    clock never makes a live attempt look lost)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leases: set[_Lease] = set()
        self._hb: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._wanted: float | None = None  # monotonic time a round was asked for

    def _now_s(self) -> float:
        now = self.app.clock.now_ms()
        return time.monotonic() if now is None else now / 1000.0

    def track(self, pool: Workpool, work_id: str, token: str, task: asyncio.Future[Any]) -> _Lease:
        lease = _Lease(pool, work_id, token, task, self._now_s())
        self.leases.add(lease)
        if self._hb is None or self._hb.done():
            self._hb = asyncio.get_running_loop().create_task(self._heartbeat())
        return lease

    def untrack(self, lease: _Lease) -> None:
        self.leases.discard(lease)

    def _fence(self, lease: _Lease, why: str) -> None:
        if not lease.fenced:
            lease.fenced = True
            lease.task.cancel()
            logger.warning(
                "abandoning work %s of pool %s (%s)", lease.work_id, lease.pool.name, why
            )

    async def _heartbeat(self) -> None:
        while self.leases:
            interval = min(lease.pool.lease_ms for lease in self.leases) / 5000.0
            await asyncio.sleep(min(1.0, interval))
            await self.renew()

    async def renew(self, only: Workpool | None = None) -> None:
        """One heartbeat round: renew the leases of this process's running attempts
        (of one pool with ``only``); fence those that are lost or cannot be renewed
        before they would expire."""
        by_pool: dict[Workpool, list[_Lease]] = {}
        for lease in list(self.leases):
            if only is None or lease.pool is only:
                by_pool.setdefault(lease.pool, []).append(lease)
        for pool, leases in by_pool.items():
            pairs = [x for lease in leases for x in (lease.work_id, lease.token)]
            try:
                replies = await pool._call("heartbeat", *pairs)
            except (RedisError, OSError) as exc:
                now = self._now_s()
                for lease in leases:
                    # self-fence before the lease could expire unseen
                    margin = min(1.5, pool.lease_ms / 3000.0)
                    if now - lease.last_ok > pool.lease_ms / 1000.0 - margin:
                        self._fence(lease, f"cannot renew lease: {exc}")
                continue
            now = self._now_s()
            for lease, r in zip(leases, replies, strict=True):
                reply = _s(r)
                if reply == "STALE":
                    self._fence(lease, "lease lost")
                elif reply == "DETACHED":
                    self.untrack(lease)  # canceled run: finishes unwatched, report dropped
                else:
                    lease.last_ok = now

    def wake_in(self, delay_ms: float) -> None:
        """Have the pump loop run a round in ``delay_ms`` (wall time) at the latest:
        a retry due then starts on time instead of after an idle sleep."""
        at = time.monotonic() + max(0.0, delay_ms) / 1000.0
        if self._wanted is None or at < self._wanted:
            self._wanted = at
            if self._kick is not None:
                self._kick.set()

    async def _idle(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when ``wake_in`` asks for an earlier round."""
        if self._kick is None:
            self._kick = asyncio.Event()
        until = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            target = until if self._wanted is None else min(until, self._wanted)
            if target <= now:
                break
            self._kick.clear()
            try:
                await asyncio.wait_for(self._kick.wait(), target - now)
            except TimeoutError:
                pass
        if self._wanted is not None and self._wanted <= time.monotonic():
            self._wanted = None

    def pools(self) -> list[Workpool]:
        return [c for c in self.app.components.values() if isinstance(c, Workpool)]

    async def pump_once(self) -> tuple[bool, float | None]:
        """One pump round over every pool this App knows; (did work, next wake ms)."""
        did, wake = False, None
        for pool in self.pools():
            rep = await pool.pump()
            did = did or rep.did_work
            if rep.next_wake_ms is not None:
                wake = rep.next_wake_ms if wake is None else min(wake, rep.next_wake_ms)
        return did, wake

    async def _discover(self) -> None:
        for name in await pool_names(self.app):
            if f"workpool:{name}" not in self.app.components:
                Workpool(self.app, name)

    async def expire_all(self) -> int:
        """The retention sweep of every pool: finished work past its retention (even
        when this process's instance does not keep results: another may) and dead
        letters past ``dlq_retention_ms``."""
        return sum([await p.expire() for p in self.pools()])

    async def _pump_forever(self, max_idle_s: float = 1.0) -> None:
        last_discover = last_expire = 0.0
        while True:
            try:
                if time.monotonic() - last_discover > 5.0:
                    await self._discover()
                    last_discover = time.monotonic()
                if time.monotonic() - last_expire > 3600.0:
                    await self.expire_all()  # retention: kept results, dead letters
                    last_expire = time.monotonic()
                did, wake = await self.pump_once()
                delay = 0.0 if did else max_idle_s if wake is None else wake / 1000.0
                await self._idle(min(max_idle_s, max(0.005, delay)))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("workpool pump round failed")
                await self._idle(max_idle_s)

    def start_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._pump_forever())

    async def stop(self) -> None:
        for task in (self._pump, self._hb):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._pump = self._hb = None
        self._kick = None


def _runtime(app: App) -> _Runtime:
    rt = app.components.get("workpool:_runtime")
    if not isinstance(rt, _Runtime):
        rt = _Runtime(app)
        app.components["workpool:_runtime"] = rt
    return rt


def _pool_for(app: App, component: str, name: str) -> Workpool:
    pool = app.components.get(f"{component}:{name}")
    if isinstance(pool, Workpool):
        return pool
    if component == "retrier":
        from .retrier import ActionRetrier

        retrier_pool: Workpool = ActionRetrier(app, namespace=name)._pool
        return retrier_pool
    return Workpool(app, name)


async def run_job(app: App, component: str, pool: str, work_id: str, token: str) -> None:
    """Body of the arq job ``rkit_wp_run``."""
    await _pool_for(app, component, pool)._run_dispatched(work_id, token)
