"""The workflow manager: definitions, start/status/cancel/restart/cleanup/list,
events, the poll loop and the glue to the workpool (spec workflow.md §3, §4, §7)."""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import inspect
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter
from redis.exceptions import RedisError, ResponseError

from .. import codec, scripts
from ..clock import argv_now
from ..errors import ActionNotFound, ConfigError, SerializationError
from ..keys import BoundedCache, encode
from ..operator import Panel, Sample, Section, operator_hooks
from ..registry import Cron
from ..workpool import (
    Failed,
    NotFound,
    PoolKind,
    RetryBehavior,
    Success,
    WorkId,
    Workpool,
)
from ..workpool import RunResult as PoolResult
from . import sandbox
from .executor import CURRENT, Executor, Request, StepCtx, canonical
from .types import (
    DEFAULT_BATCH,
    DEFAULT_MAX_PARALLELISM,
    MAX_JOURNAL_BYTES,
    MAX_VALUE_BYTES,
    PREVIEW_BYTES,
    EventNotFound,
    EventStateError,
    JournalTooLarge,
    ListPage,
    RetryPolicy,
    RunResult,
    StepFailed,
    StepInfo,
    WorkflowDef,
    WorkflowError,
    WorkflowInfo,
    WorkflowNotFound,
    WorkflowNotRunningError,
    WorkflowStatus,
    WorkflowStillRunning,
    WorkpoolOptions,
)

if TYPE_CHECKING:
    from ..app import App

__all__ = ["WORKFLOW", "WorkflowKind", "WorkflowManager"]

logger = logging.getLogger("rkit.workflow")
R = TypeVar("R")
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])

LOST_ERROR = "worker lost during attempt"
PAGE = 1000
_ID_RE = re.compile(r"^wf_[a-z2-7]{26}$")
_POLL = "rkit.workflow.poll"
_DONE = "rkit.workflow.item_done"
_SLEEP = "rkit.workflow.sleep_done"
_INTERNAL_RETRY = RetryBehavior(max_attempts=8, initial_backoff_ms=200, base=2, max_backoff_ms=5000)
"""Polls and sleep timers are replayable and fenced: a lost or failed attempt (its
worker died, Redis was away) runs again instead of failing the workflow."""


class WorkflowKind(PoolKind):
    """The pool kind workflow steps run on: a lost attempt is ``worker lost during
    attempt``, cancel ends an item at once, and completions reach the manager as
    ``(work_id, context, result)``."""

    async def deliver(
        self,
        handler: Callable[..., Awaitable[Any]],
        work_id: WorkId,
        context: Any,
        result: PoolResult,
    ) -> None:
        await handler(work_id, context, result)


WORKFLOW = WorkflowKind(
    kind="workflow",
    lost_error=LOST_ERROR,
    cancel_mode="finish",
    logger="rkit.workflow",
    default_max_parallelism=DEFAULT_MAX_PARALLELISM,
)


def _new_id() -> str:
    return "wf_" + base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def _child_id(parent: str, n: int, gen: int) -> str:
    digest = hashlib.sha256(f"{parent}:{n}:{gen}".encode()).digest()[:16]
    return "wf_" + base64.b32encode(digest).decode().rstrip("=").lower()


def _fields(flat: Sequence[Any]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _preview(raw: str) -> str:
    if len(raw) <= 2 * PREVIEW_BYTES:
        return raw
    return raw[:PREVIEW_BYTES] + "..." + raw[-PREVIEW_BYTES:]


def _run_result(kind: str, result: str, error: str) -> RunResult:
    if kind == "success":
        return RunResult("success", codec.loads(result) if result else None)
    if kind == "canceled":
        return RunResult("canceled")
    return RunResult("failed", error=error)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, WorkflowError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WorkflowManager:
    """Durable workflows on an App: handlers replayed from a Redis journal, steps run
    on a workpool of kind ``workflow`` (named ``name``)."""

    def __init__(
        self,
        app: App,
        *,
        name: str = "default",
        workpool_options: WorkpoolOptions | None = None,
        max_journal_bytes: int = MAX_JOURNAL_BYTES,
        max_value_bytes: int = MAX_VALUE_BYTES,
        lease_ms: float = 5_000,
        reconcile_after_ms: float = 60_000,
        retention_ms: float | None = 7 * 86_400_000.0,
        rng: Callable[[], float] | None = None,
    ) -> None:
        opts = workpool_options or WorkpoolOptions()
        for what, v in (
            ("max_journal_bytes", max_journal_bytes),
            ("max_value_bytes", max_value_bytes),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{what} must be an int >= 1")
        self.app = app
        self.name = name
        self.options = opts
        self.max_journal_bytes = max_journal_bytes
        self.max_value_bytes = max_value_bytes
        self.reconcile_after_ms = float(reconcile_after_ms)
        if retention_ms is not None and (
            isinstance(retention_ms, bool)
            or not isinstance(retention_ms, int | float)
            or not 0 < retention_ms < 1e12
        ):
            raise ConfigError("retention_ms must be a positive number of ms (or None: keep)")
        self.retention_ms = retention_ms
        self.lease_ms = float(lease_ms)
        self._rng = rng
        self._pools: dict[str, Workpool] = {}
        self.defs: dict[str, WorkflowDef[Any]] = {}
        self.entries_fetched = 0
        """Journal entries this process read from Redis for polls (the journal cache
        makes it one per entry, not one per entry per poll)."""
        self.workpool = Workpool(
            app,
            name,
            max_parallelism=opts.max_parallelism,
            log_level=opts.log_level,  # type: ignore[arg-type]
            lease_ms=lease_ms,
            max_result_bytes=1 << 29,
            rng=rng,
            kind=WORKFLOW,
        )
        self._cache: BoundedCache[str, tuple[int, list[dict[str, Any]]]] = BoundedCache(
            4096, 64 << 20
        )
        ix = app.keys.tag("wfidx", name)
        self._ix = [f"{ix}:seq", f"{ix}:all", f"{ix}:running", f"{ix}:finished"]
        self._ix_stem = ix
        self._failures = f"{ix}:failures"
        self._s = {
            op: scripts.load("workflow", op)
            for op in (
                "create",
                "load",
                "start_steps",
                "complete_step",
                "finish",
                "oc_done",
                "restart",
                "send_event",
                "create_event",
                "cleanup",
                "index",
                "failure",
            )
        }
        app.components.add(WORKFLOW.kind, name, self)
        app.components.add_router("/workflows", "rkit.api.workflows:router")
        hooks = operator_hooks(app)
        hooks.add_panel(Panel("workflow", "Workflows", _workflows_panel, order=80))
        hooks.add_metrics("workflow", _workflows_metrics)
        app.components.add_cron(Cron("workflow:reconcile", _reconcile_all, second=frozenset({17})))
        _register_actions(app)
        sandbox.install()

    def __repr__(self) -> str:
        return f"WorkflowManager({self.name!r})"

    # -- definitions -------------------------------------------------------------------

    def define(
        self,
        *,
        name: str | None = None,
        args: type | None = None,
        returns: type | None = None,
        workpool_options: WorkpoolOptions | None = None,
    ) -> Callable[[Callable[..., Awaitable[R]]], WorkflowDef[R]]:
        """Decorate ``async def handler(ctx, **args)`` as a workflow."""

        def register(handler: Callable[..., Awaitable[R]]) -> WorkflowDef[R]:
            if not inspect.iscoroutinefunction(handler):
                raise ConfigError("a workflow handler must be an async def function")
            wf_name = name or f"{handler.__module__}:{handler.__qualname__}"
            if wf_name in self.defs and self.defs[wf_name].handler is not handler:
                raise ConfigError(f"workflow {wf_name!r} is already defined")
            defn = WorkflowDef(wf_name, handler, args, returns, workpool_options)
            self.defs[wf_name] = defn
            if workpool_options is not None and wf_name not in self._pools:
                self._pools[wf_name] = self._own_pool(wf_name, workpool_options)
            return defn

        return register

    def _own_pool(self, wf_name: str, opts: WorkpoolOptions) -> Workpool:
        """A definition with its own ``workpool_options`` runs its steps on its own pool
        (its own cap), ``<manager>.<definition>`` (registered so workers route to it)."""
        pool_name = re.sub(r"[^A-Za-z0-9_.:-]", "_", f"{self.name}.{wf_name}")[:64]
        pool = Workpool(
            self.app,
            pool_name,
            max_parallelism=opts.max_parallelism,
            log_level=opts.log_level,  # type: ignore[arg-type]
            lease_ms=self.lease_ms,
            max_result_bytes=1 << 29,
            rng=self._rng,
            kind=WORKFLOW,
        )
        self.app.components.add(WORKFLOW.kind, pool_name, _PoolOf(pool))
        return pool

    def pool_for(self, wf_name: str) -> Workpool:
        """The pool a workflow's steps run on."""
        return self._pools.get(wf_name, self.workpool)

    def options_for(self, wf_name: str) -> WorkpoolOptions:
        defn = self.defs.get(wf_name)
        return (defn.workpool_options if defn else None) or self.options

    def function(self, fn: H, *, name: str | None = None) -> H:
        """Register a step function (an App action) under a stable name."""
        self.app.action(name=name)(fn)
        return fn

    def _fn_name(self, fn: Callable[..., Any] | str) -> str:
        if isinstance(fn, str):
            self.app.get_action(fn)
            return fn
        try:
            return self.app.action_name(fn)
        except ActionNotFound:
            self.app.action(fn)
            return self.app.action_name(fn)

    def _retry_for(
        self, retry: bool | RetryPolicy | None, opts: WorkpoolOptions | None = None
    ) -> RetryPolicy | None:
        opts = opts or self.options
        if retry is None:
            retry = opts.retry_actions_by_default
        if retry is True:
            return opts.default_retry
        if retry is False:
            return None
        return retry

    def _check_args(self, defn: WorkflowDef[Any], args: Any) -> str:
        if not isinstance(args, dict):
            raise ConfigError("workflow arguments must be a dict of keyword arguments")
        if defn.args is not None:
            model: Any = defn.args
            if isinstance(model, type) and issubclass(model, BaseModel):
                model.model_validate(args)
            else:
                TypeAdapter(model).validate_python(args)
        return codec.dumps(args, what=f"arguments of workflow {defn.name}")

    def _def(self, wf: WorkflowDef[Any] | str) -> WorkflowDef[Any]:
        name = wf.name if isinstance(wf, WorkflowDef) else wf
        found = self.defs.get(name)
        if found is None:
            raise ConfigError(f"no workflow named {name!r} is defined on {self!r}")
        return found

    # -- keys and scripts --------------------------------------------------------------

    def _keys(self, wid: str) -> list[str]:
        w = self.app.keys.tag("wf", wid)
        return [w, w + ":ip"]

    async def _call(self, op: str, keys: list[str], *args: Any) -> Any:
        return await self._s[op](self.app.redis, keys, list(args))

    async def _index(self, op: str, wid: str, name: str = "") -> Any:
        keys = [*self._ix[:3], f"{self._ix_stem}:name:{encode(name)}", self._ix[3]]
        return await self._call("index", keys, op, wid, argv_now(self.app.clock))

    async def _load(
        self, wid: str, start: int = 0, count: int = 0, pick: Sequence[int] = ()
    ) -> tuple[dict[str, str], list[int], list[dict[str, str]], list[dict[str, str]]] | None:
        r = await self._call("load", self._keys(wid), start, count, *pick)
        if not r:
            return None
        return (
            _fields(r[0]),
            sorted(int(x) for x in r[1]),
            [_fields(e) for e in r[2]],
            [_fields(e) for e in r[3]],
        )

    async def _meta(self, wid: str) -> dict[str, str]:
        _check_id(wid)
        loaded = await self._load(wid)
        if loaded is None:
            raise WorkflowNotFound(wid)
        return loaded[0]

    # -- start -----------------------------------------------------------------------

    async def start(
        self,
        wf: WorkflowDef[Any] | str,
        args: dict[str, Any] | None = None,
        *,
        on_complete: Callable[..., Any] | str | None = None,
        context: Any = None,
        start_async: bool = False,
    ) -> str:
        """Create a workflow and return its id. By default its first poll runs here
        (the first steps are journaled when this returns); ``start_async`` leaves it
        to a worker. ``on_complete(workflow_id=, result=, context=)`` (a registered
        action) runs once the workflow ends (at least once: make it idempotent)."""
        defn = self._def(wf)
        args = args or {}
        args_s = self._check_args(defn, args)
        oc = ""
        if on_complete is not None:
            oc = (
                self.app.action_name(on_complete)
                if not isinstance(on_complete, str)
                else on_complete
            )
            self.app.get_action(oc)
        ctx_s = codec.dumps(context, what="on_complete context")
        wid = _new_id()
        await self._create(wid, defn, args_s, ctx_s, oc)
        if start_async:
            await self._enqueue_poll(wid, 0, 0)
        else:
            await self._poll(wid, 0)
        return wid

    async def _create(
        self,
        wid: str,
        defn: WorkflowDef[Any],
        args_s: str,
        ctx_s: str,
        oc: str,
        parent: tuple[str, int, int] | None = None,
    ) -> bool:
        # listed first: a crash in between leaves an index entry listing skips and
        # the reconciler drops, never an unlisted workflow
        seq = await self._index("add", wid, defn.name)
        p = parent or ("", "", "")
        r = await self._call(
            "create",
            self._keys(wid)[:1],
            argv_now(self.app.clock),
            defn.name,
            args_s,
            ctx_s,
            oc,
            p[0],
            str(p[1]),
            str(p[2]),
            str(self._batch(defn)),
            str(seq),
        )
        return bool(r[0] == "ok")

    def _batch(self, defn: WorkflowDef[Any]) -> int:
        o = defn.workpool_options or self.options
        return o.max_parallelism or DEFAULT_BATCH

    async def _enqueue_poll(
        self, wid: str, gen: int, steps: int, run_at: float | None = None
    ) -> None:
        ctx = {"m": self.name, "w": wid, "g": gen, "t": "poll"}
        try:
            await self.workpool.enqueue_batch(
                _POLL,
                [{"m": self.name, "w": wid, "g": gen}],
                on_complete=_DONE,
                context=ctx,
                ids=[f"{wid}.p{gen}.{steps}"],
                kind="mutation",
                run_at=run_at,
                retry_behavior=_INTERNAL_RETRY,
            )
        except ResponseError as exc:
            if "already exists" not in str(exc):
                raise

    # -- the poll ------------------------------------------------------------------

    async def _journal(
        self, wid: str
    ) -> tuple[dict[str, str], list[int], list[dict[str, Any]]] | None:
        """The workflow and its journal. Entries never change once done and a restart
        bumps the generation, so this process keeps each workflow's done prefix per
        generation and reads only the entries after it (with the meta, in one script)."""
        hit = self._cache.get(wid)
        start = len(hit[1]) if hit else 0
        loaded = await self._load(wid, start, PAGE)
        if loaded is None:
            return None
        meta, ip, entries, _ = loaded
        gen, steps = int(meta["gen"]), int(meta["steps"])
        if meta["state"] != "running" or ip:
            return meta, ip, []
        if hit is not None and hit[0] == gen:
            journal = list(hit[1]) + entries
        elif start == 0:
            journal = entries
        else:  # the cached prefix is of another generation
            journal, entries = [], []
        self.entries_fetched += len(entries)
        while len(journal) < steps:
            page = await self._load(wid, len(journal), PAGE)
            if page is None or int(page[0]["gen"]) != gen:
                return None
            journal += page[2]
            self.entries_fetched += len(page[2])
            if not page[2]:
                break
        return meta, ip, journal

    def _remember(self, wid: str, gen: int, journal: list[dict[str, Any]]) -> None:
        done: list[dict[str, Any]] = []
        for e in journal:
            if e.get("state") != "done":
                break
            done.append(e)
        size = sum(len(e.get("args", "")) + len(e.get("result", "")) + 200 for e in done)
        self._cache.put(wid, (gen, done), size)

    async def _poll(self, wid: str, gen: int) -> None:
        """One poll: replay the handler until it blocks or finishes (spec §4.2)."""
        loaded = await self._journal(wid)
        if loaded is None:
            return
        meta, ip, journal = loaded
        if int(meta["gen"]) != gen or meta["state"] != "running" or ip:
            logger.debug("poll of %s gen %s: nothing to do", wid, gen)
            # a retried poll whose first attempt died mid-way: finish what it left
            if meta["state"] != "running":
                await self._owed_on_complete(wid, meta)
            elif ip and int(meta["gen"]) == gen:
                await self._heal(wid, (meta, ip))
            return
        steps = len(journal)
        defn = self.defs.get(meta["name"])
        if defn is None:
            await self._finish(
                wid, gen, steps, RunResult("failed", error=f"Unknown workflow {meta['name']!r}")
            )
            return
        size = sum(len(e.get("args", "")) + len(e.get("result", "")) for e in journal)
        if size > self.max_journal_bytes:
            err = (
                f"Failed to load journal: JournalTooLarge: {size} bytes > {self.max_journal_bytes}"
            )
            await self._finish(wid, gen, steps, RunResult("failed", error=err))
            return
        now = await self.app.server_time()
        ex = Executor(self, wid, gen, journal, int(meta.get("batch") or DEFAULT_BATCH), now, size)
        ex.wf_name = defn.name
        ex.options = self.options_for(defn.name)
        args = codec.loads(meta["args"]) if meta.get("args") else {}
        ctx = StepCtx(ex)

        async def run() -> Any:
            CURRENT.set(ex)
            return await defn.handler(ctx, **args)

        task = asyncio.get_running_loop().create_task(run())
        try:
            await asyncio.wait({task, ex.done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await ex.stop()
        self._remember(wid, gen, ex.journal)
        end = len(ex.journal)
        if isinstance(ex.fatal, RedisError | OSError):
            # Redis went away mid-poll: not the workflow's failure. The poll (or the
            # completion that ran it) fails and is delivered again; a step journaled
            # but not enqueued is started by that repeat (_heal).
            raise ex.fatal
        if ex.fatal is not None:
            await self._finish(wid, gen, end, RunResult("failed", error=_error_text(ex.fatal)))
            return
        if task.cancelled():
            return  # blocked: the steps started will poll again when they complete
        exc = task.exception()
        if exc is not None:
            if isinstance(exc, StepFailed):
                err = exc.error
            else:
                err = _error_text(exc)
            await self._finish(wid, gen, end, RunResult("failed", error=err))
            return
        value = task.result()
        if ex.pos < len(ex.journal):
            e = ex.journal[ex.pos]
            err = (
                f"Journal entry mismatch at step {ex.pos}: the handler returned, but the "
                f"journal has {len(ex.journal) - ex.pos} more step(s), next "
                f"{canonical({'name': e['name'], 'kind': e['kind']})}"
            )
            await self._finish(wid, gen, end, RunResult("failed", error=err))
            return
        if defn.returns is not None:
            try:
                value = TypeAdapter(defn.returns).validate_python(value, strict=True)
            except Exception as e:
                await self._finish(
                    wid, gen, end, RunResult("failed", error=f"Invalid return value: {e}")
                )
                return
        try:
            codec.dumps(value)
        except SerializationError as e:
            await self._finish(
                wid, gen, end, RunResult("failed", error=f"Invalid return value: {e}")
            )
            return
        await self._finish(wid, gen, end, RunResult("success", value))

    async def _start_batch(self, ex: Executor, batch: list[Request]) -> list[dict[str, Any]] | None:
        """Journal a batch of new steps (one script), then start their work."""
        wid, gen = ex.workflow_id, ex.gen
        n0 = len(ex.journal)
        add = sum(len(r.args_s) for r in batch)
        if ex.journal_bytes + add > self.max_journal_bytes:
            raise JournalTooLarge(
                f"JournalTooLarge: the journal would be {ex.journal_bytes + add} bytes, "
                f"above max_journal_bytes={self.max_journal_bytes}"
            )
        ex.journal_bytes += add
        argv: list[Any] = []
        for i, req in enumerate(batch):
            state, rkind, result, error = "pending", "", "", ""
            if req.inline is not None:
                state = "done"
                try:
                    value = await req.inline(**req.args)
                    result = codec.dumps(value, what=f"result of step {req.name}")
                    rkind = "success"
                    if len(result) > self.max_value_bytes:
                        rkind, error = "failed", self._too_large(result)
                        result = ""
                except Exception as exc:
                    rkind, error = "failed", _error_text(exc)
            meta = dict(req.meta)
            if req.kind == "workflow":
                meta["child"] = _child_id(wid, n0 + i, gen)
            if "after" in meta:
                meta["at"] = ex.poll_now + meta.pop("after")
            req.meta = meta
            argv += [
                req.kind,
                req.name,
                req.args_s,
                canonical(meta),
                state,
                rkind,
                result,
                error,
                meta.get("ev_id", "") if req.kind == "event" else meta.get("child", ""),
                encode(meta.get("ev_name", "")),
            ]
        r = await self._call(
            "start_steps",
            self._keys(wid),
            argv_now(self.app.clock),
            gen,
            n0,
            wid,
            len(batch),
            *argv,
        )
        if r[0] != "ok":
            logger.debug("start_steps of %s: stale (%s)", wid, r[1])
            return None
        entries: list[dict[str, Any]] = []
        for req, row in zip(batch, r[1:], strict=True):
            n, state, rkind, result, error, eid = row
            e = {
                "n": int(n),
                "kind": req.kind,
                "name": req.name,
                "args": req.args_s,
                "meta": canonical(req.meta),
                "state": state,
                "rkind": rkind,
                "result": result,
                "error": error,
                "event": eid,
                "started": repr(ex.poll_now),
            }
            entries.append(e)
            ex.journal_bytes += len(result)
        pending = [
            (req, e) for req, e in zip(batch, entries, strict=True) if e["state"] == "pending"
        ]
        await self._start_work(
            wid, gen, [(e["n"], req.kind, req.meta, req.args) for req, e in pending], ex.wf_name
        )
        return entries

    def _too_large(self, raw: str) -> str:
        return (
            f"Step return value too large ({len(raw)} bytes > {self.max_value_bytes} bytes): "
            f"{_preview(raw)}"
        )

    async def _start_work(
        self, wid: str, gen: int, steps: list[tuple[int, str, dict[str, Any], Any]], wf_name: str
    ) -> None:
        """Workpool items for pending function and sleep steps, children for workflow
        steps (idempotent: deterministic ids)."""
        pool = self.pool_for(wf_name)
        for n, kind, meta, args in steps:
            ctx = {"m": self.name, "w": wid, "g": gen, "n": n, "t": "step"}
            wid_s = f"{wid}.s{n}.g{gen}"
            try:
                if kind == "function":
                    retry = meta.get("retry")
                    behavior = (
                        RetryBehavior(
                            max_attempts=retry[0], initial_backoff_ms=retry[1], base=retry[2]
                        )
                        if retry
                        else None
                    )
                    ft = meta["ft"]
                    await pool.enqueue_batch(
                        meta["fn"],
                        [args],
                        on_complete=_DONE,
                        context=ctx,
                        ids=[wid_s],
                        kind=ft,
                        run_at=meta.get("at"),
                        retry=False if ft == "action" and behavior is None else None,
                        retry_behavior=behavior,
                    )
                elif kind == "sleep":
                    await pool.enqueue_batch(
                        _SLEEP,
                        [{}],
                        on_complete=_DONE,
                        context=ctx,
                        ids=[wid_s],
                        kind="mutation",
                        run_after=float(meta["ms"]),
                        retry_behavior=_INTERNAL_RETRY,
                    )
                elif kind == "workflow":
                    child = meta["child"]
                    defn = self._def(meta["wf"])
                    if await self._create(
                        child, defn, codec.dumps(args), "null", "", parent=(wid, n, gen)
                    ):
                        await self._enqueue_poll(child, 0, 0, run_at=meta.get("at"))
            except ResponseError as exc:
                if "already exists" not in str(exc):
                    raise

    # -- completions -------------------------------------------------------------------

    async def _item_done(self, work_id: str, context: dict[str, Any], result: PoolResult) -> None:
        """A workpool item of this manager ended (its on_complete)."""
        wid, gen = context["w"], int(context["g"])
        if context["t"] == "poll":
            if isinstance(result, Failed):
                await self._finish(wid, gen, None, RunResult("failed", error=result.error))
            return
        if isinstance(result, Success):
            raw = codec.dumps(result.return_value)
            if len(raw) > self.max_value_bytes:
                outcome = ("failed", "", self._too_large(raw))
            else:
                outcome = ("success", raw, "")
        elif isinstance(result, Failed):
            outcome = ("failed", "", result.error)
        else:
            outcome = ("canceled", "", "")
        reply = await self._complete_step(wid, gen, int(context["n"]), *outcome)
        # A repeated completion (the callback was redelivered: the process delivering it
        # died, perhaps inside the poll it ran) finishes at once what that poll left
        # undone, instead of waiting for the reconciler's idle threshold.
        if reply == "ignored:done":
            await self._heal(wid)
        elif reply == "ignored:finished":
            loaded = await self._load(wid)
            if loaded is not None:
                await self._owed_on_complete(wid, loaded[0])

    async def _complete_step(
        self, wid: str, gen: int, n: int, rkind: str, result: str, error: str
    ) -> str:
        reply = await self._call(
            "complete_step",
            self._keys(wid),
            argv_now(self.app.clock),
            n,
            gen,
            rkind,
            result,
            error,
        )
        if reply == "poll":
            await self._poll(wid, gen)
        elif reply.startswith("ignored"):
            logger.debug("completion of %s step %d %s", wid, n, reply)
        return str(reply)

    async def _finish(
        self, wid: str, gen: int | None, steps: int | None, res: RunResult
    ) -> list[Any] | None:
        result_s = codec.dumps(res.value) if res.kind == "success" else ""
        r = await self._call(
            "finish",
            self._keys(wid),
            argv_now(self.app.clock),
            "" if gen is None else gen,
            "" if steps is None else steps,
            res.kind,
            result_s,
            res.error or "",
        )
        if r[0] != "ok":
            logger.debug("finish of %s: %s", wid, r[0])
            return None
        self._cache.pop(wid)
        if r[2] == "1":
            await self._after_finish(wid)
        else:
            await self._index("done", wid)
        return list(r[3:])

    async def _after_finish(self, wid: str) -> None:
        """Meet a finished workflow's on_complete obligation: notify the parent's step
        and call the callback, then mark it met (a crash before that leaves it to the
        reconciler: delivery is at least once)."""
        loaded = await self._load(wid)
        if loaded is None:
            return
        meta = loaded[0]
        if meta.get("ocs") != "pending":
            await self._index("done", wid)
            return
        res = _run_result(meta["state"], meta.get("result", ""), meta.get("error", ""))
        if meta.get("parent"):
            await self._complete_step(
                meta["parent"],
                int(meta["pgen"]),
                int(meta["pstep"]),
                res.kind,
                meta.get("result", "") if res.kind == "success" else "",
                meta.get("error", ""),
            )
        status = "done"
        if meta.get("oc"):
            context = codec.loads(meta["ctx"]) if meta.get("ctx") else None
            try:
                fn = self.app.get_action(meta["oc"]).fn
                await fn(workflow_id=wid, result=res, context=context)
            except Exception as exc:
                status = "failed"
                logger.warning("on_complete of workflow %s raised: %s", wid, exc)
                await self._call(
                    "failure",
                    [self._failures],
                    repr(await self.app.server_time()),
                    wid,
                    meta["gen"],
                    res.kind,
                    _error_text(exc),
                )
        await self._call("oc_done", self._keys(wid)[:1], status)
        await self._index("done", wid)

    async def _owed_on_complete(self, wid: str, meta: dict[str, str]) -> None:
        """Deliver the on_complete of a workflow that finished at least a lease ago and
        still owes it (its finisher died before delivering it). Younger ones are left to
        their finisher, which may be delivering right now."""
        if meta.get("ocs") != "pending" or not meta.get("finished"):
            return
        now = await self.app.server_time()
        if float(meta["finished"]) <= now - self.lease_ms:
            await self._after_finish(wid)

    async def _heal(self, wid: str, known: tuple[dict[str, str], list[int]] | None = None) -> int:
        """Start again the work of in-progress steps that have none: a poll that died
        (or lost Redis) between journaling its steps and enqueuing their work (spec
        §7.5). A step's work is missing when the pool does not know its item *and* the
        step is still in progress afterwards: an item keeps its record until its
        completion has been delivered, so a step whose item just ended is no longer in
        progress by then. Re-enqueueing uses the step's deterministic item id, so a poll
        enqueuing at the same time and this start one item. Returns how many steps got
        their work again. ``known``: the workflow's meta and in-progress steps when the
        caller has just read them."""
        if known is None:
            loaded = await self._load(wid)
            if loaded is None:
                return 0
            known = loaded[0], loaded[1]
        meta, ip = known
        if meta["state"] != "running" or not ip:
            return 0
        gen = int(meta["gen"])
        picked = (await self._load(wid, 0, 0, ip))[3]  # type: ignore[index]
        todo: builtins.list[tuple[int, str, dict[str, Any], Any]] = []
        for n, e in zip(ip, picked, strict=True):
            kind = e.get("kind", "")
            if kind not in ("function", "sleep", "workflow"):
                continue
            meta_e = codec.loads(e["meta"]) if e.get("meta") else {}
            if kind == "workflow":
                missing = not await self.app.redis.exists(self._keys(meta_e["child"])[0])
            else:
                status = await self.pool_for(meta["name"]).status(f"{wid}.s{n}.g{gen}")
                missing = isinstance(status, NotFound)
            if missing:
                todo.append((n, kind, meta_e, codec.loads(e["args"])))
        if not todo:
            return 0
        again = await self._load(wid)  # still in progress, same generation?
        if again is None or again[0]["state"] != "running" or int(again[0]["gen"]) != gen:
            return 0
        todo = [t for t in todo if t[0] in set(again[1])]
        if todo:
            logger.warning(
                "workflow %s: starting again the work of step(s) %s (it was never enqueued)",
                wid,
                ", ".join(str(t[0]) for t in todo),
            )
            await self._start_work(wid, gen, todo, meta["name"])
        return len(todo)

    # -- control -----------------------------------------------------------------------

    async def status(self, workflow_id: str) -> WorkflowStatus:
        _check_id(workflow_id)
        loaded = await self._load(workflow_id)
        if loaded is None:
            raise WorkflowNotFound(workflow_id)
        meta, ip, _, _ = loaded
        state = meta["state"]
        if state == "running":
            picked = (await self._load(workflow_id, 0, 0, ip))[3] if ip else []  # type: ignore[index]
            running = [
                self._step_info(workflow_id, n, e) for n, e in zip(ip, picked, strict=True) if e
            ]
            return WorkflowStatus("inProgress", running=running)
        if state == "success":
            return WorkflowStatus(
                "completed", result=codec.loads(meta["result"]) if meta.get("result") else None
            )
        if state == "canceled":
            return WorkflowStatus("canceled")
        return WorkflowStatus("failed", error=meta.get("error", ""))

    async def cancel(self, workflow_id: str) -> None:
        """End a running workflow as canceled: its pending steps' work items are
        canceled, running children too; ``on_complete`` gets ``canceled``."""
        _check_id(workflow_id)
        r = await self._call(
            "finish",
            self._keys(workflow_id),
            argv_now(self.app.clock),
            "",
            "",
            "canceled",
            "",
            "",
        )
        if r[0] == "missing":
            raise WorkflowNotFound(workflow_id)
        if r[0] != "ok":
            raise WorkflowNotRunningError(f"Workflow not running: {workflow_id}")
        old_gen = int(r[1]) - 1
        jobs: list[str] = []
        children: list[str] = []
        for n, kind, _meta, child in r[3:]:
            if kind in ("function", "sleep"):
                jobs.append(f"{workflow_id}.s{n}.g{old_gen}")
            elif kind == "workflow" and child:
                children.append(child)
            elif kind == "workflow":
                children.append(_child_id(workflow_id, int(n), old_gen))
        if jobs:
            redis: Any = self.app.redis
            name = await redis.hget(self._keys(workflow_id)[0], "name")
            await self.pool_for(name or "").cancel_many(jobs)
        for child in children:
            try:
                await self.cancel(child)
            except WorkflowError:
                pass
        await self._after_finish(workflow_id)

    async def restart(
        self,
        workflow_id: str,
        *,
        from_: int | str | Callable[..., Any] | None = None,
        start_async: bool = False,
    ) -> None:
        """Re-run a finished workflow from a step (number, or name: that entry and
        everything after it are dropped; ``None`` keeps the whole journal)."""
        _check_id(workflow_id)
        if from_ is None:
            mode, value = "all", ""
        elif isinstance(from_, bool):
            raise ConfigError("from_ must be a step number, a step name or a function")
        elif isinstance(from_, int):
            if from_ < 0:
                raise ConfigError("from_ must be a step number >= 0")
            mode, value = "num", str(from_)
        elif isinstance(from_, str):
            mode, value = "name", from_
        else:
            mode, value = "name", self.app.action_name(from_)
        r = await self._call(
            "restart", self._keys(workflow_id), argv_now(self.app.clock), mode, value
        )
        if r[0] == "missing":
            raise WorkflowNotFound(workflow_id)
        if r[0] == "running":
            raise WorkflowStillRunning(f"Workflow is still running: {workflow_id}")
        if r[0] == "noname":
            raise WorkflowError(f'Step "{value}" not found in workflow {workflow_id}')
        gen, steps = int(r[1]), int(r[2])
        await self._index("run", workflow_id)
        if start_async:
            await self._enqueue_poll(workflow_id, gen, steps)
        else:
            await self._poll(workflow_id, gen)

    async def cleanup(self, workflow_id: str, *, force: bool = False) -> bool:
        """Delete a finished workflow (``force``: also a running one) with its
        journal, events and children. False when unknown or still running."""
        if not isinstance(workflow_id, str) or not _ID_RE.match(workflow_id):
            raise ConfigError("Invalid workflow ID")
        r = await self._call("cleanup", self._keys(workflow_id), "1" if force else "")
        if r[0] != "ok":
            return False
        await self._index("remove", workflow_id, r[1])
        for child in r[2:]:
            await self.cleanup(child, force=True)
        return True

    # -- events ------------------------------------------------------------------------

    async def send_event(
        self,
        *,
        workflow_id: str | None = None,
        name: str | None = None,
        id: str | None = None,
        value: Any = None,
        validator: Any = None,
        error: str | None = None,
    ) -> str:
        """Send a value (or an error) to a workflow's event; a waiting step resumes.
        Returns the event id."""
        if id is not None:
            if not isinstance(id, str) or ".e" not in id:
                raise EventNotFound(str(id))
            wid = id.rsplit(".e", 1)[0]
            if not _ID_RE.match(wid):
                raise EventNotFound(id)
        else:
            if workflow_id is None or name is None:
                raise ConfigError("send_event needs id=, or workflow_id= and name=")
            if not isinstance(name, str) or not name:
                raise ConfigError("event name must be a non-empty str")
            wid = workflow_id
            _check_id(wid)
        if error is not None:
            rkind, raw, err = "failed", "", str(error)
        else:
            if validator is not None:
                value = TypeAdapter(validator).validate_python(value)
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            raw = codec.dumps(value, what="event value")
            rkind, err = "success", ""
            if len(raw) > self.max_value_bytes:
                rkind, raw, err = "failed", "", self._too_large(raw)
        r = await self._call(
            "send_event",
            self._keys(wid),
            argv_now(self.app.clock),
            wid,
            "id" if id is not None else "name",
            id if id is not None else name,
            "" if id is not None else encode(name),
            rkind,
            raw,
            err,
        )
        head = r[0]
        if head == "missing":
            raise WorkflowNotFound(wid)
        if head == "notrunning":
            raise WorkflowNotRunningError(f"Workflow not running: {wid}")
        if head == "noevent":
            raise EventNotFound(str(id))
        if head == "state":
            raise EventStateError(f"Event already {r[1]}")
        if head == "poll":
            await self._enqueue_poll(wid, int(r[2]), int(r[3]))
        return str(r[1])

    async def create_event(self, *, workflow_id: str, name: str) -> str:
        """An event row ahead of time (await it by id); returns its id."""
        _check_id(workflow_id)
        if not isinstance(name, str) or not name:
            raise ConfigError("event name must be a non-empty str")
        r = await self._call(
            "create_event",
            self._keys(workflow_id)[:1],
            argv_now(self.app.clock),
            workflow_id,
            name,
            encode(name),
        )
        if r[0] == "missing":
            raise WorkflowNotFound(workflow_id)
        if r[0] == "notrunning":
            raise WorkflowNotRunningError(f"Workflow not running: {workflow_id}")
        return str(r[1])

    # -- reads -------------------------------------------------------------------------

    def _step_info(self, wid: str, n: int, e: dict[str, str]) -> StepInfo:
        kind: Any = e.get("kind", "function")
        meta = codec.loads(e["meta"]) if e.get("meta") else {}
        result = None
        if e.get("state") == "done":
            result = _run_result(e.get("rkind", ""), e.get("result", ""), e.get("error", ""))
        return StepInfo(
            workflow_id=wid,
            step_id=f"{wid}.s{n}",
            step_number=n,
            name=e.get("name", ""),
            kind=kind,
            args=codec.loads(e["args"]) if e.get("args") else None,
            result=result,
            started_at=float(e.get("started") or 0),
            completed_at=float(e["completed"]) if e.get("completed") else None,
            job_id=None if kind not in ("function", "sleep") else f"{wid}.s{n}",
            nested_workflow_id=meta.get("child"),
            event_id=e.get("event") or None,
        )

    async def list_steps(
        self,
        workflow_id: str,
        *,
        order: Literal["asc", "desc"] = "asc",
        cursor: str | None = None,
        num_items: int = 100,
    ) -> ListPage[StepInfo]:
        """A page of the journal in step order."""
        _check_page(order, num_items)
        steps = int((await self._meta(workflow_id))["steps"])
        pos = int(cursor) if cursor else (0 if order == "asc" else steps)
        if order == "asc":
            start, count = pos, min(num_items, max(0, steps - pos))
        else:
            start = max(0, pos - num_items)
            count = pos - start
        loaded = await self._load(workflow_id, start, count) if count else None
        rows = loaded[2] if loaded else []
        page = [self._step_info(workflow_id, start + i, e) for i, e in enumerate(rows)]
        if order == "desc":
            page.reverse()
            nxt, done = start, start == 0
        else:
            nxt, done = start + len(page), start + len(page) >= steps
        return ListPage(page, str(nxt), done)

    async def list(
        self,
        *,
        order: Literal["asc", "desc"] = "asc",
        cursor: str | None = None,
        num_items: int = 100,
    ) -> ListPage[WorkflowInfo]:
        """Workflows in creation order, a page at a time."""
        return await self._list(self._ix[1], order, cursor, num_items)

    async def list_by_name(
        self,
        name: str,
        *,
        order: Literal["asc", "desc"] = "asc",
        cursor: str | None = None,
        num_items: int = 100,
    ) -> ListPage[WorkflowInfo]:
        return await self._list(f"{self._ix_stem}:name:{encode(name)}", order, cursor, num_items)

    async def _list(
        self, key: str, order: str, cursor: str | None, num_items: int
    ) -> ListPage[WorkflowInfo]:
        _check_page(order, num_items)
        if cursor:
            lo, hi = (f"({cursor}", "+inf") if order == "asc" else ("-inf", f"({cursor}")
        else:
            lo, hi = "-inf", "+inf"
        r: Any = self.app.redis
        if order == "asc":
            rows = await r.zrangebyscore(key, lo, hi, start=0, num=num_items + 1, withscores=True)
        else:
            rows = await r.zrevrangebyscore(
                key, hi, lo, start=0, num=num_items + 1, withscores=True
            )
        more = len(rows) > num_items
        rows = rows[:num_items]
        page: list[WorkflowInfo] = []
        metas = await asyncio.gather(
            *(
                r.hmget(self._keys(w)[0], "name", "args", "ctx", "state", "result", "error")
                for w, _ in rows
            )
        )
        for (w, _), m in zip(rows, metas, strict=True):
            if m[0] is None:
                continue  # listed, but gone (or never created)
            res = None if m[3] == "running" else _run_result(m[3], m[4] or "", m[5] or "")
            page.append(
                WorkflowInfo(
                    w,
                    m[0],
                    codec.loads(m[1]) if m[1] else None,
                    codec.loads(m[2]) if m[2] else None,
                    res,
                )
            )
        last = repr(rows[-1][1]) if rows else (cursor or "")
        if rows and float(rows[-1][1]).is_integer():
            last = str(int(rows[-1][1]))
        return ListPage(page, last, not more)

    async def failures(self, *, count: int = 100) -> builtins.list[dict[str, Any]]:
        """Failed on_complete callbacks, newest first."""
        rows = await self.app.redis.xrevrange(self._failures, count=count)
        return [{"id": i, **f} for i, f in rows]

    async def update_config(self, *, max_parallelism: int | None = None) -> None:
        """Change the stored cap of this manager's pool (all processes)."""
        await self.workpool.set_config(max_parallelism=max_parallelism)

    # -- retention and repair ----------------------------------------------------------

    async def expire(self, *, limit: int = 1000) -> int:
        """Delete finished workflows older than ``retention_ms`` (journal, events,
        children) whose ``on_complete`` was delivered; returns how many."""
        if self.retention_ms is None:
            return 0
        now = await self.app.server_time()
        ids = await self.app.redis.zrangebyscore(
            self._ix[3], "-inf", now - self.retention_ms, start=0, num=limit
        )
        n = 0
        for wid in ids:
            if await self.cleanup(wid):
                n += 1
            else:  # gone already, or restarted since: forget the stale index entry
                await self.app.redis.zrem(self._ix[3], wid)
        return n

    async def reconcile(self, *, older_than_ms: float | None = None, limit: int = 1000) -> int:
        """Heal what a crash between two writes can leave (spec §7.5): a running
        workflow with nothing in progress gets a poll, a pending step whose work item
        is missing gets it again, a finished one whose on_complete is owed gets it.
        Looks at running workflows idle ``older_than_ms``; returns how many it touched."""
        age = self.reconcile_after_ms if older_than_ms is None else older_than_ms
        now = await self.app.server_time()
        ids = await self.app.redis.zrangebyscore(self._ix[2], "-inf", now - age, start=0, num=limit)
        touched = 0
        for wid in ids:
            loaded = await self._load(wid)
            if loaded is None:
                await self._index("remove", wid)
                continue
            meta, ip, _, _ = loaded
            gen = int(meta["gen"])
            if meta["state"] != "running":
                touched += 1
                await self._after_finish(wid)
                continue
            if not ip:
                touched += 1
                await self._enqueue_poll(wid, gen, int(meta["steps"]))
                continue
            if await self._heal(wid, (meta, ip)):
                touched += 1
        return touched


def _check_id(wid: Any) -> None:
    if not isinstance(wid, str) or not _ID_RE.match(wid):
        raise WorkflowNotFound(str(wid)[:80])


def _check_page(order: str, num_items: int) -> None:
    if order not in ("asc", "desc"):
        raise ConfigError("order must be 'asc' or 'desc'")
    if (
        isinstance(num_items, bool)
        or not isinstance(num_items, int)
        or not 1 <= num_items <= 10_000
    ):
        raise ConfigError("num_items must be an int in [1, 10000]")


class _PoolOf:
    """The registry entry of a definition's own pool (workers route its jobs here)."""

    def __init__(self, pool: Workpool) -> None:
        self.workpool = pool


def _manager(app: App, name: str) -> WorkflowManager:
    found = app.components.get(WORKFLOW.kind, name)
    if not isinstance(found, WorkflowManager):
        raise ConfigError(f"this App has no WorkflowManager named {name!r}")
    return found


def _register_actions(app: App) -> None:
    """The internal actions every manager of an App shares (routed by manager name)."""
    if _POLL in app.actions:
        return

    async def poll(m: str, w: str, g: int) -> None:
        await _manager(app, m)._poll(w, g)

    async def item_done(work_id: str, context: dict[str, Any], result: PoolResult) -> None:
        await _manager(app, context["m"])._item_done(work_id, context, result)

    async def sleep_done() -> None:
        return None

    app.action(name=_POLL)(poll)
    app.action(name=_DONE)(item_done)
    app.action(name=_SLEEP)(sleep_done)


async def _reconcile_all(app: App) -> None:
    for m in app.components.of_kind(WORKFLOW.kind, WorkflowManager):
        await m.reconcile()
        await m.expire()


async def _workflows_panel(app: App) -> list[Section]:
    """Dashboard panel: per manager the 20 newest workflows, their status and steps."""
    out = []
    for wf in app.components.of_kind(WORKFLOW.kind, WorkflowManager):
        page = (await wf.list(order="desc", num_items=20)).page
        journals = await asyncio.gather(
            *(wf.list_steps(info.workflow_id, num_items=100) for info in page)
        )
        rows = []
        for info, journal in zip(page, journals, strict=True):
            steps = journal.page
            done = sum(1 for st in steps if st.result is not None)
            rows.append(
                {
                    "workflow_id": info.workflow_id,
                    "name": info.name,
                    "status": "running" if info.result is None else info.result.kind,
                    "steps done": f"{done} / {len(steps)}",
                    "current step": next((st.name for st in steps if st.result is None), None),
                }
            )
        running = sum(1 for r in rows if r["status"] == "running")
        out.append(
            Section(
                f"manager {wf.name}",
                stats={"shown": len(rows), "running (shown)": running},
                columns=["workflow_id", "name", "status", "steps done", "current step"],
                rows=rows,
            )
        )
    return out


async def _workflows_metrics(app: App) -> list[Sample]:
    """/metrics: workflows by state per manager (their steps are the jobs of the
    manager's workpools, counted under ``rkit_workpool_*``)."""
    out = []
    for wf in app.components.of_kind(WORKFLOW.kind, WorkflowManager):
        redis: Any = wf.app.redis
        running, finished = await redis.zcard(wf._ix[2]), await redis.zcard(wf._ix[3])
        for state, n in (("running", running), ("finished", finished)):
            out.append(
                Sample(
                    "rkit_workflows",
                    "gauge",
                    "Workflows by state",
                    {"manager": wf.name, "state": state},
                    int(n),
                )
            )
    return out
