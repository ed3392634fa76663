"""The Workpool client: enqueue, control (cancel, config), reads, the pump round and
the plumbing to the scripts and the transport. One script per state change, in
``lua/workpool/``."""

from __future__ import annotations

import inspect
import logging
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from redis.exceptions import ResponseError

from .. import _arq, codec, scripts
from ..clock import argv_now
from ..errors import ActionNotFound, ConfigError, FunctionNotRegistered, PayloadTooLarge
from ..registry import Job, Service
from .executor import deliver, run_dispatched
from .kinds import WORKPOOL, PoolKind, RunsOnWorkpool
from .runtime import _runtime, register_pools
from .types import (
    _POOL_RE,
    BATCH_BYTES,
    BATCH_CHUNK,
    CHAIN_SECONDS,
    CLAIM_LIMIT,
    DEFAULT_ON_COMPLETE_RETRY,
    DEFAULT_RETRY_BEHAVIOR,
    DLQ_MAX_LEN,
    DLQ_RETENTION_MS,
    JOB_FUNCTION,
    MAX_TIMEOUT_MS,
    CancelOutcome,
    DeadLetter,
    Diagnostics,
    Finished,
    LogLevel,
    NotFound,
    OnCompleteArgs,
    Pending,
    PoolConfig,
    PumpReport,
    RetryBehavior,
    Rng,
    Running,
    RunningInfo,
    RunResult,
    Status,
    WorkId,
    WorkKind,
    _check_log_level,
    _default_id,
    _fields,
    _log_events,
    _s,
    _script_error,
    check_parallelism,
    check_work_id,
    num_or_none,
    result_of,
)

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("rkit.workpool")

#: no pump round of a pool for this long (server clock) counts as a stall: leases that
#: expired unseen in it get one more lease (lua/workpool/pump.lua, step 0)
STALL_GAP_MS = 2_000
_TIMESTAMPS = frozenset({"last_report_ts", "pump_at"})  # stats fields that are not counts


class Workpool:
    """A named pool of async calls with a global parallelism cap, retries, leases,
    cancel and a durable ``on_complete`` (see the package docstring).

    One instance per name per App (a second is a ``ConfigError``); processes share a
    pool through its name and stored config. ``kind`` is for components that run on
    a pool of their own kind (see :class:`PoolKind`). ``register=False`` gives a
    handle for reading and controlling a pool this App does not run (admin views):
    not registered, not pumped; :meth:`view` picks the registered one if any.

    ``callback_lease_ms`` (default ``2 * lease_ms``) is how long a claimed
    ``on_complete`` delivery is hidden from redelivery: a worker that dies inside a
    handler has it redelivered that long after the claim. Claims are not renewed, so a
    handler running longer than this may be delivered again while it still runs
    (delivery is at least once: key the handler's effect on ``work_id``); raise it
    for slow handlers, at the price of a slower redelivery after a crash."""

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
        callback_lease_ms: float | None = None,
        keep_result_ms: float = 0,
        on_complete_retry: RetryBehavior = DEFAULT_ON_COMPLETE_RETRY,
        dlq_max_len: int = DLQ_MAX_LEN,
        dlq_retention_ms: float = DLQ_RETENTION_MS,
        max_args_bytes: int = 1_000_000,
        max_result_bytes: int = 16 * 2**20,
        parallelism_limit: int = 10_000,
        rng: Rng | None = None,
        id_factory: Callable[[], str] | None = None,
        kind: PoolKind | None = None,
        register: bool = True,
    ) -> None:
        if not isinstance(name, str) or not _POOL_RE.match(name):
            raise ConfigError(f"pool name must match {_POOL_RE.pattern}, got {name!r}")
        if max_parallelism is not None:
            check_parallelism(max_parallelism, parallelism_limit)
        _check_log_level(log_level)
        _check_ms("timeout_ms", timeout_ms)
        _check_ms("lease_ms", lease_ms)
        if callback_lease_ms is None:
            callback_lease_ms = 2 * lease_ms  # an unrenewed claim, like a dispatch
        _check_ms("callback_lease_ms", callback_lease_ms)
        if not isinstance(keep_result_ms, int | float) or not 0 <= keep_result_ms < math.inf:
            raise ConfigError("keep_result_ms must be a finite number >= 0")
        if isinstance(dlq_max_len, bool) or not isinstance(dlq_max_len, int) or dlq_max_len < 1:
            raise ConfigError("dlq_max_len must be an int >= 1")
        if not isinstance(dlq_retention_ms, int | float) or not 0 < dlq_retention_ms < math.inf:
            raise ConfigError("dlq_retention_ms must be a positive finite number")
        self.app = app
        self.name = name
        self.kind = kind or WORKPOOL
        self.max_parallelism = max_parallelism
        self.log_level = log_level
        self.retry_actions_by_default = retry_actions_by_default
        self.default_retry_behavior = default_retry_behavior
        self.timeout_ms = float(timeout_ms)
        self.lease_ms = float(lease_ms)
        self.callback_lease_ms = float(callback_lease_ms)
        self.keep_result_ms = float(keep_result_ms)
        self.on_complete_retry = on_complete_retry
        self.dlq_max_len = dlq_max_len
        self.dlq_retention_ms = float(dlq_retention_ms)
        self.max_args_bytes = max_args_bytes
        self.max_result_bytes = max_result_bytes
        self.parallelism_limit = parallelism_limit
        self.rng: Rng = rng or random.random
        self.id_factory = id_factory or _default_id
        tag = app.keys.tag(self.kind.kind, name)
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
                "component": self.kind.kind,
                "pool": name,
                "lease_ms": self.lease_ms,
                "dispatch_lease_ms": 2 * self.lease_ms,
                "stall_gap_ms": STALL_GAP_MS,
                "oc_lease_ms": self.callback_lease_ms,
                "keep_result_ms": self.keep_result_ms,
                "default_max_parallelism": self.kind.default_max_parallelism,
                "default_log_level": "REPORT",
                "parallelism_limit": parallelism_limit,
                "lost_error": self.kind.lost_error,
                "report_ms": 60_000,
                "oc_retry": codec.loads(on_complete_retry.to_json()),
                "item_levels": self.kind.item_log_levels,
                "dlq_max_len": dlq_max_len,
                "dlq_retention_ms": self.dlq_retention_ms,
            }
        )
        self._registered = False
        self._logger = logging.getLogger(self.kind.logger)
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
        if register:
            if self.kind.kind == "workpool":  # a component kind registers its owner
                app.components.add("workpool", name, self)
                app.components.set_factory("workpool", lambda n: Workpool(app, n))
            app.components.add_job(_JOB)
            rt = _runtime(app)
            rt.attach(self)
            app.components.add_service(Service("workpool", rt.start_service, rt.stop_service))

    @classmethod
    def view(cls, app: App, name: str) -> Workpool:
        """The App's registered pool ``name``, else an unregistered handle on it (for
        admin reads and control; never pumped, never registered)."""
        found = app.components.get("workpool", name)
        return found if isinstance(found, Workpool) else cls(app, name, register=False)

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

    async def _register(self, created: Any = None) -> None:
        """List the pool in the namespace's pool index: once per process before its
        first write (no argument), and again whenever a write reports that it
        (re)created the pool's config record (``created`` = 1: the first write, or
        Redis lost its data since). The index is in another Cluster slot than the
        pool's keys, so no script writes both: this is a second, idempotent command
        (a crash in between is healed by the workers' discovery round)."""
        skip = self._registered if created is None else not int(created)
        if skip or self.kind.kind != "workpool":
            return
        await register_pools(self.app, [self.name])
        self._registered = True

    def _log(self, lines: Sequence[Any], exc: BaseException | None = None) -> None:
        _log_events(lines, self._logger, exc)

    def job_id(self, work_id: str, token: str) -> str:
        return f"{self._job_tag}:{work_id}:{token}"

    async def _announce(self, entries: Sequence[tuple[str, str]]) -> None:
        """Put one arq job per dispatched attempt on the queue."""
        if not entries:
            return
        pool = await self.app.queue_pool()
        jobs = [
            (self.job_id(wid, tok), [self.kind.kind, self.name, wid, tok]) for wid, tok in entries
        ]
        await _arq.enqueue_jobs(pool, self.app.queue_name, JOB_FUNCTION, jobs)

    async def _reannounce(self, entries: Sequence[tuple[str, str]]) -> None:
        """Attempts dispatched a dispatch lease ago and not begun: leave a job that is
        still queued alone, enqueue a lost one again (same job id), and give a new
        token only to one whose job a worker took and never began (it died)."""
        if not entries:
            return
        pool = await self.app.queue_pool()
        jobs = [
            (self.job_id(wid, tok), [self.kind.kind, self.name, wid, tok]) for wid, tok in entries
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
        if behavior is not None and not isinstance(behavior, RetryBehavior):
            raise ConfigError("retry_behavior must be a RetryBehavior")
        return "" if behavior is None else behavior.to_json()

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
        ids: Sequence[str] | None = None,
        item_log_level: LogLevel | None = None,
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
            if val is not None and not _finite(val):
                raise ConfigError(f"{opt} must be a finite number of ms")
        if run_at is not None:
            due = codec.fmt_num(run_at)
        elif run_after is not None:
            due = "+" + codec.fmt_num(max(0.0, float(run_after)))
        tmo = self.timeout_ms if timeout_ms is None else timeout_ms
        _check_ms("timeout_ms", tmo)
        retry_s = self._retry_json(kind, retry, retry_behavior)
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
        signature = _signature(self.app.get_action(fn_name).fn)
        for args in args_list:
            if not isinstance(args, Mapping):
                raise TypeError(f"arguments of function {label} must be a mapping of keyword args")
            if not all(isinstance(k, str) for k in args):
                raise TypeError(f"arguments of function {label} must have str keys")
            if signature is not None:
                try:
                    signature.bind(**args)
                except TypeError as exc:  # the call could never start: refuse it now
                    raise ConfigError(
                        f"arguments of function {label} do not fit it: {exc}"
                    ) from None
            a = codec.dumps(dict(args), what=f"arguments of function {label}")
            size = len(a.encode("utf-8"))
            if size > self.max_args_bytes:
                raise PayloadTooLarge(
                    f"Function arguments for function {label} too large: {size} bytes "
                    f"(max: {self.max_args_bytes} bytes)"
                )
            encoded.append(a)
        _check_log_level(item_log_level)
        if ids is None:
            ids = [self.id_factory() for _ in encoded]
        elif isinstance(ids, str) or len(ids) != len(encoded):
            raise ConfigError("ids must be a sequence of one work id per item")
        ids = [check_work_id(wid) for wid in ids]
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
                chunk += [ctx_s, tmo_s, item_log_level or ""]
                j += 1
            claimed, events, created = await self._call(
                "enqueue", maxp, level, CLAIM_LIMIT, j - i, *chunk
            )
            self._log(events)
            await self._register(created)
            await self._announce([(_s(c[0]), _s(c[2])) for c in claimed])
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

    async def cancel(self, work_id: str) -> CancelOutcome:
        """Pending or backing-off work never (re)starts and its callback gets
        ``Canceled()`` (``"CANCELED"``); running work finishes but gets no further
        attempts (``"FLAGGED"``). Finished or already-flagged work: ``"NOOP"``; an id
        the pool has no record of: ``"NOT_FOUND"``. A class-level ``log_level`` is
        written to the stored config (``max_parallelism`` is not)."""
        return (await self.cancel_many([work_id]))[0]

    def _cancel_level(self) -> str:
        """The class-level log level, which cancel writes to the stored config (spec
        §3.1: enqueue writes both class-level values, cancel only the log level)."""
        return (self.log_level or "") if self.kind.cancel_writes_log_level else ""

    async def cancel_many(self, ids: Sequence[str]) -> list[CancelOutcome]:
        """Cancel each id (see :meth:`cancel`); the outcome per id, in input order."""
        ids = _check_ids(ids)
        if not ids:
            return []
        if self._cancel_level():
            await self._register()
        replies, events, created = await self._call(
            "cancel", self.kind.cancel_mode, self._cancel_level(), *ids
        )
        self._log(events)
        await self._register(created)
        out: list[CancelOutcome] = [_s(r) for r in replies]  # type: ignore[misc]
        for wid, r in zip(ids, out, strict=True):
            if r in ("NOOP", "NOT_FOUND"):
                logger.debug("cancel of %s in pool %s: %s", wid, self.name, r)
        return out

    async def cancel_all(self, *, limit: int = 64, before: float | None = None) -> int:
        """Cancel every live item enqueued up to ``before`` (default now), newest first,
        in pages of ``limit``; returns how many were canceled or flagged."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError("limit must be a positive int")
        if before is not None and not _finite(before):
            raise ConfigError(f"before must be a finite number of ms, got {before!r}")
        before_s = "" if before is None else codec.fmt_num(before)
        if self._cancel_level():
            await self._register()
        total, offset = 0, 0
        while True:
            acted, seen, kept, events, created = await self._call(
                "cancel_page",
                self.kind.cancel_mode,
                self._cancel_level(),
                before_s,
                offset,
                limit,
            )
            self._log(events)
            await self._register(created)
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
        m, lvl, claimed, events, created = await self._call(
            "config",
            "" if max_parallelism is None else str(max_parallelism),
            log_level or "",
            CLAIM_LIMIT,
        )
        self._log(events)
        await self._register(created)
        await self._announce([(_s(c[0]), _s(c[2])) for c in claimed])  # what the cap allows
        return PoolConfig(int(m), _s(lvl))

    async def get_config(self) -> PoolConfig:
        m, lvl, _, _, _ = await self._call("config", "", "", 0)
        return PoolConfig(int(m), _s(lvl))

    # -- reads ------------------------------------------------------------------------

    async def _get(self, ids: Sequence[str]) -> tuple[float, list[dict[str, str]]]:
        reply = await self._call("get", *_check_ids(ids))
        return float(reply[0]), [_fields(h) for h in reply[1:]]

    async def status(self, work_id: str) -> Status:
        """``Pending`` / ``Running`` (with the attempts made so far), ``Finished()``
        while the pool keeps the item, ``NotFound()`` when it has no record of it."""
        return (await self.status_batch([work_id]))[0]

    async def status_batch(self, work_ids: Sequence[str]) -> list[Status]:
        """:meth:`status` of each id, in input order (one consistent read)."""
        if not work_ids:
            return []
        _, rows = await self._get(work_ids)
        return [self.status_of(h) for h in rows]

    @staticmethod
    def status_of(h: Mapping[str, str]) -> Status:
        """The status an item hash (as :meth:`item` returns it, ``{}`` = gone) reads as."""
        state = h.get("state")
        if state == "pending":
            return Pending(int(h["attempts"]))
        if state in ("dispatched", "running"):
            return Running(int(h["attempts"]))
        if state == "finished":
            return Finished()
        return NotFound()

    async def item(self, work_id: str) -> dict[str, Any] | None:
        """The raw work hash (admin/debugging), or ``None`` when gone."""
        _, rows = await self._get([work_id])
        return dict(rows[0]) if rows[0] else None

    async def get_result(self, work_id: str) -> RunResult | None:
        """The final result while it is kept (``keep_result_ms``), else ``None``."""
        h = await self.item(work_id)
        if not h or h.get("state") != "finished":
            return None
        return result_of(h.get("result_kind", ""), h.get("result", ""), h.get("error", ""))

    async def list_index(
        self, index: Literal["running", "pending", "dlq", "live", "done"], limit: int
    ) -> tuple[float, list[tuple[str, float, dict[str, str]]]]:
        """Rows ``(id, score, item hash)`` of one of the pool's indexes (and the time
        read); for components that present the pool's items in their own shape."""
        reply = await self._call("list", index, limit)
        return float(reply[0]), [(_s(r[0]), float(r[1]), _fields(r[2])) for r in reply[1:]]

    async def running(self, *, limit: int = 1000) -> list[RunningInfo]:
        _, rows = await self.list_index("running", limit)
        return [
            RunningInfo(
                work_id=WorkId(wid),
                fn_name=h.get("label", ""),
                state=h.get("state", ""),
                started_at=num_or_none(h.get("started_at")),
                attempts=int(h.get("attempts", 0)),
                worker=h.get("worker"),
                lease_until=score,
            )
            for wid, score, h in rows
        ]

    async def pending(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        _, rows = await self.list_index("pending", limit)
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
        _, rows = await self.list_index("dlq", limit)
        return [
            DeadLetter(
                WorkId(wid), h.get("label", ""), h.get("on_complete", ""), h.get("oc_error", ""), t
            )
            for wid, t, h in rows
            if h
        ]

    async def replay_dead_letter(self, work_id: str) -> bool:
        """Give a dead-lettered callback a fresh budget; the pump redelivers it."""
        return bool(await self._call("replay", check_work_id(work_id)))

    async def delete(
        self, work_id: str
    ) -> Literal["OK", "NOT_FOUND", "NOT_COMPLETED", "CALLBACK_PENDING"]:
        """Delete one finished item now, unless its ``on_complete`` is still owed."""
        reply = _s(await self._call("delete", check_work_id(work_id)))
        return reply  # type: ignore[return-value]

    async def diagnostics(self) -> Diagnostics:
        r = await self._call("info")
        now, maxp = float(r[0]), int(r[1])
        stats = {k: int(v) for k, v in _fields(r[10]).items() if k not in _TIMESTAMPS}
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
            await self._deliver(wid, oc, ctx, result_of(kind, result, error))
        return PumpReport(len(claimed), len(reann), len(callbacks), num_or_none(_s(wake)))

    # -- execution (worker side; the attempt runner is rkit.workpool.executor) -----------

    async def _run_dispatched(self, work_id: str, token: str) -> None:
        await run_dispatched(self, work_id, token)

    async def _deliver(self, work_id: str, oc_name: str, ctx_s: str, result: RunResult) -> None:
        await deliver(self, work_id, oc_name, ctx_s, result)

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


def _finite(x: Any) -> bool:
    """A finite int or float (not a bool: ``False`` is not 0 ms)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_ms(opt: str, val: Any) -> None:
    if not _finite(val) or not 0 < val <= MAX_TIMEOUT_MS:
        raise ConfigError(f"{opt} must be a number in (0, {MAX_TIMEOUT_MS:.0f}]")


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str | bytes):
        raise ConfigError("ids must be a sequence of work ids, not one string")
    return [check_work_id(wid) for wid in ids]


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # builtins or callables without one: not checked
        return None


async def _job_handler(app: App, kind: str, name: str, work_id: str, token: str) -> None:
    """The transport's job ``rkit_wp_run``: run one dispatched attempt of the pool
    ``name`` of ``kind``, found in the App's registry (or built by the kind's
    factory). A job for a component this App does not have is recorded as the
    attempt's failure (never a crash loop)."""
    found = app.components.get_or_create(kind, name)
    pool = found.workpool if isinstance(found, RunsOnWorkpool) else found
    if isinstance(pool, Workpool):
        await run_dispatched(pool, work_id, token)
        return
    missing = Workpool(
        app,
        name,
        kind=PoolKind(kind=kind),
        keep_result_ms=PoolKind.keep_failures_ms,
        register=False,
    )
    await _fail_unrunnable(
        missing,
        work_id,
        token,
        f"this worker's App has no {kind} component named {name!r} (work {work_id})",
    )


async def _fail_unrunnable(pool: Workpool, work_id: str, token: str, error: str) -> None:
    """Begin the attempt (fenced) and record ``error`` as its final failure."""
    reply = await pool._call(
        "begin", work_id, token, _runtime(pool.app).worker_id, uuid.uuid4().hex
    )
    if _s(reply[0]) != "OK":
        return
    reply = await pool._call(
        "complete", work_id, token, "failed", error, "1", repr(pool.rng()), "", 0, ""
    )
    pool._log(reply[2])  # the final failure is an ERROR event


# one job = one attempt, fenced by its token: the transport's retries and results are
# not used (the workpool retries, reaps and de-duplicates itself); a job stopped by a
# worker's shutdown is delivered again and begins under the same token
_JOB = Job(
    JOB_FUNCTION,
    _job_handler,
    timeout_s=MAX_TIMEOUT_MS / 1000 + CHAIN_SECONDS + 60,
    max_tries=1000,
    keep_result_s=0,
)
