"""One poll's replay: the step context handed to a handler and the executor that
matches its step calls to the journal by position, and journals new steps at the
frontier in batches (spec §4.2-4.4, §7.6)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import TypeAdapter

from .. import codec
from ..errors import SerializationError
from .types import (
    EventSpec,
    InvalidStepOptions,
    JournalMismatch,
    RetryPolicy,
    StepCanceled,
    StepFailed,
    WorkflowDef,
    WorkpoolOptions,
)

if TYPE_CHECKING:
    from .manager import WorkflowManager

T = TypeVar("T")
logger = logging.getLogger("rkit.workflow")

CURRENT: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "rkit_workflow_executor", default=None
)
"""The executor of the poll whose handler code is running (the sandbox's switch)."""


def canonical(value: Any, what: str = "step arguments") -> str:
    """The canonical JSON of a value (sorted keys): stored and compared on replay."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} must be JSON-serialisable: {exc}") from None


@dataclass(eq=False)
class Request:
    """One step call of the handler."""

    kind: str  # function | workflow | event | sleep
    name: str
    args: Any
    args_s: str
    unstable: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    inline: Callable[..., Awaitable[Any]] | None = None
    validator: Any = None
    fut: asyncio.Future[dict[str, Any]] | None = None


class Executor:
    """Replays the journal for one poll and starts the steps at the frontier."""

    def __init__(
        self,
        manager: WorkflowManager,
        workflow_id: str,
        gen: int,
        journal: list[dict[str, Any]],
        batch: int,
        now: float,
        journal_bytes: int,
    ) -> None:
        self.manager = manager
        self.workflow_id = workflow_id
        self.gen = gen
        self.journal = journal
        self.pos = 0
        self.batch = max(1, batch)
        self.poll_now = now
        self.journal_bytes = journal_bytes
        self.waiting: list[Request] = []
        self.flushing = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.fatal: BaseException | None = None
        self.rand = random.Random(workflow_id)
        self.started: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.wf_name = ""
        self.options: WorkpoolOptions | None = None

    @property
    def replaying(self) -> bool:
        return self.pos < len(self.journal)

    def now(self) -> float:
        """The replayed clock: the next entry's start while replaying, else the time
        the poll started (constant during the poll)."""
        if self.replaying:
            return float(self.journal[self.pos].get("started") or self.poll_now)
        return self.poll_now

    def _fail(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
        if not self.done.done():
            self.done.set_result(None)

    def _block(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    async def call(self, req: Request) -> Any:
        if self.fatal is not None:
            raise self.fatal
        if self.pos < len(self.journal):
            e = self.journal[self.pos]
            self.pos += 1
            if (
                e["name"] != req.name
                or e["kind"] != req.kind
                or (not req.unstable and e["args"] != req.args_s)
            ):
                exc = JournalMismatch(
                    f"Journal entry mismatch at step {self.pos - 1}: the handler asked for "
                    f"{canonical({'name': req.name, 'kind': req.kind, 'args': req.args_s})} but "
                    f"the journal has "
                    f"{canonical({'name': e['name'], 'kind': e['kind'], 'args': e['args']})}"
                )
                self._fail(exc)
                raise exc
            return self._outcome(e, req)
        loop = asyncio.get_running_loop()
        req.fut = loop.create_future()
        self.waiting.append(req)
        if not self.flushing:
            self.flushing = True
            self._flusher = loop.create_task(self._flush(), context=contextvars.Context())
        entry = await req.fut
        return self._outcome(entry, req)

    @staticmethod
    def _outcome(e: dict[str, Any], req: Request) -> Any:
        kind = e.get("rkind")
        if kind == "success":
            raw = e.get("result") or ""
            value = codec.loads(raw) if raw else None
            if req.validator is not None:
                value = TypeAdapter(req.validator).validate_python(value)
            return value
        if kind == "canceled":
            raise StepCanceled()
        raise StepFailed(e.get("error") or "failed")

    async def _flush(self) -> None:
        try:
            while self.waiting and not self.done.done():
                n = -1  # gather(...) issues its calls over loop turns: wait until quiet
                while n != len(self.waiting) and len(self.waiting) < self.batch:
                    n = len(self.waiting)
                    await asyncio.sleep(0)
                batch = self.waiting[: self.batch]
                del self.waiting[: self.batch]
                entries = await self.manager._start_batch(self, batch)
                if entries is None:  # a stale poll: another one owns the frontier
                    self._block()
                    return
                self.journal.extend(entries)
                self.pos = len(self.journal)
                if any(e["state"] != "done" for e in entries):
                    self._block()
                    return
                for req, e in zip(batch, entries, strict=True):
                    assert req.fut is not None
                    if not req.fut.done():
                        req.fut.set_result(e)
                await asyncio.sleep(0)
        except Exception as exc:
            self._fail(exc)
        finally:
            self.flushing = False

    async def stop(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)


def _check_delay(run_after: float | None, run_at: float | None) -> None:
    if run_after is not None and run_at is not None:
        raise InvalidStepOptions("Cannot pass both run_after and run_at")
    for what, v in (("run_after", run_after), ("run_at", run_at)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise InvalidStepOptions(f"{what} must be a number of ms")


class StepCtx:
    """What a workflow handler receives: every call is a durable, journaled step."""

    def __init__(
        self,
        ex: Executor,
        *,
        unstable_args: bool = False,
        retry: bool | RetryPolicy | None = None,
    ) -> None:
        self._ex = ex
        self.workflow_id = ex.workflow_id
        self._unstable = unstable_args
        self._retry = retry

    def with_options(
        self, *, unstable_args: bool | None = None, retry: bool | RetryPolicy | None = None
    ) -> StepCtx:
        """A context whose steps default to these options (an explicit option on a
        call still wins)."""
        return StepCtx(
            self._ex,
            unstable_args=self._unstable if unstable_args is None else unstable_args,
            retry=self._retry if retry is None else retry,
        )

    # -- function steps ------------------------------------------------------------

    async def _function(
        self,
        ftype: str,
        fn: Callable[..., Awaitable[Any]] | str,
        args: dict[str, Any] | None,
        name: str | None,
        run_after: float | None,
        run_at: float | None,
        inline: bool,
        unstable_args: bool,
        retry: bool | RetryPolicy | None = None,
    ) -> Any:
        _check_delay(run_after, run_at)
        if inline and (run_after is not None or run_at is not None):
            raise InvalidStepOptions("Cannot combine inline with run_at or run_after")
        if args is not None and not isinstance(args, dict):
            raise InvalidStepOptions("step arguments must be a dict of keyword arguments")
        mgr = self._ex.manager
        fn_name = mgr._fn_name(fn)
        args = args or {}
        meta: dict[str, Any] = {"fn": fn_name, "ft": ftype}
        if ftype == "action":
            policy = mgr._retry_for(retry, self._ex.options)
            if policy is not None:
                meta["retry"] = [policy.max_attempts, policy.initial_backoff_ms, policy.base]
        if run_at is not None:
            meta["at"] = float(run_at)
        elif run_after is not None:
            meta["after"] = float(run_after)
        req = Request(
            "function",
            name or fn_name,
            args,
            canonical(args),
            unstable_args or self._unstable,
            meta,
            inline=mgr.app.get_action(fn_name).fn if inline else None,
        )
        return await self._ex.call(req)

    async def run_query(
        self,
        fn: Callable[..., Awaitable[T]] | str,
        args: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        run_after: float | None = None,
        run_at: float | None = None,
        inline: bool = False,
        unstable_args: bool = False,
    ) -> Any:
        """A read step (never retried by policy); ``inline`` runs it inside the poll."""
        return await self._function(
            "query", fn, args, name, run_after, run_at, inline, unstable_args
        )

    async def run_mutation(
        self,
        fn: Callable[..., Awaitable[T]] | str,
        args: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        run_after: float | None = None,
        run_at: float | None = None,
        inline: bool = False,
        unstable_args: bool = False,
    ) -> Any:
        """A short write step (never retried by policy); ``inline`` runs it inside the
        poll (one journaled outcome, no workpool item)."""
        return await self._function(
            "mutation", fn, args, name, run_after, run_at, inline, unstable_args
        )

    async def run_action(
        self,
        fn: Callable[..., Awaitable[T]] | str,
        args: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        run_after: float | None = None,
        run_at: float | None = None,
        retry: bool | RetryPolicy | None = None,
        unstable_args: bool = False,
    ) -> Any:
        """A side-effecting step on the workpool, retried per ``retry`` (``True``: the
        default policy, ``False``: once, ``None``: the manager's default)."""
        if retry is not None and not isinstance(retry, bool | RetryPolicy):
            raise InvalidStepOptions("retry must be a bool or a RetryPolicy")
        if retry is None:
            retry = self._retry
        return await self._function(
            "action", fn, args, name, run_after, run_at, False, unstable_args, retry
        )

    async def run_workflow(
        self,
        wf: WorkflowDef[T],
        args: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        run_after: float | None = None,
        run_at: float | None = None,
        unstable_args: bool = False,
    ) -> T:
        """Run a child workflow as one step; returns its value (its failure raises)."""
        _check_delay(run_after, run_at)
        if not isinstance(wf, WorkflowDef):
            raise InvalidStepOptions("run_workflow takes a WorkflowDef (from define)")
        args = args or {}
        self._ex.manager._check_args(wf, args)
        meta: dict[str, Any] = {"wf": wf.name}
        if run_at is not None:
            meta["at"] = float(run_at)
        elif run_after is not None:
            meta["after"] = float(run_after)
        req = Request(
            "workflow",
            name or wf.name,
            args,
            canonical(args),
            unstable_args or self._unstable,
            meta,
        )
        value: T = await self._ex.call(req)
        return value

    async def await_event(
        self,
        name: str | None = None,
        *,
        id: str | None = None,
        validator: Any = None,
        spec: EventSpec[Any] | None = None,
    ) -> Any:
        """Block until a matching event is sent (at once when it was sent earlier)."""
        if spec is not None:
            name = name or spec.name
            validator = validator or spec.validator
        if name is None and id is None:
            raise InvalidStepOptions("await_event needs a name or an id")
        args: dict[str, Any] = {} if id is None else {"id": id}
        ev_name = name or ""
        meta = {"ev_id": id or "", "ev_name": ev_name}
        req = Request("event", name or id or "Event", args, canonical(args), False, meta)
        req.validator = validator
        return await self._ex.call(req)

    async def sleep(self, ms: float, *, name: str = "sleep") -> None:
        """A durable timer step: resumes after ``ms`` on the App's clock."""
        if isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0:
            raise InvalidStepOptions("sleep takes a number of ms >= 0")
        args = {"ms": ms}
        await self._ex.call(Request("sleep", name, args, canonical(args), False, {"ms": ms}))

    # -- determinism helpers ----------------------------------------------------------

    def now(self) -> float:
        """Epoch ms, replayed: the same value on every replay of this point."""
        return self._ex.now()

    def random(self) -> float:
        """A float in [0, 1) from a PRNG seeded by the workflow id (same on replay)."""
        return self._ex.rand.random()

    @property
    def replaying(self) -> bool:
        return self._ex.replaying

    def log(self, msg: str, *args: Any, level: int = logging.INFO) -> None:
        """Log only at the frontier (not again on every replay)."""
        if not self._ex.replaying:
            logger.log(level, msg, *args, extra={"workflow_id": self.workflow_id})
