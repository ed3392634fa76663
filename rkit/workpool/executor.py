"""The attempt runner (worker side): begin a dispatched attempt under its fencing
token, run the action with a lease kept by the runtime's heartbeat, report the
outcome, run the items the completion hands to this worker, and deliver
``on_complete`` callbacks. Also the transport's job handler for every pool kind."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import codec
from ..errors import FunctionNotRegistered, SerializationError, is_non_retryable_error
from .runtime import _runtime
from .types import (
    CHAIN_SECONDS,
    CLAIM_LIMIT,
    Canceled,
    Failed,
    RunResult,
    Success,
    WorkId,
    _s,
    error_text,
    format_traceback,
)

if TYPE_CHECKING:
    from .client import Workpool

logger = logging.getLogger("rkit.workpool")

REPORT_RETRY_S = 30.0  # how long a worker keeps re-sending a report Redis did not answer


async def _persist(pool: Workpool, op: str, *args: Any) -> Any:
    """``pool._call(op, ...)`` for the worker's reports (begin, complete, callback
    ack/failure), re-sent with backoff while Redis is unreachable or times out (a
    restart, a stall) for up to ``REPORT_RETRY_S``: each of these scripts recognises
    its own repeat, so a report whose reply was lost is neither lost nor applied
    twice, and a body is not run again because its report could not get through."""
    deadline = time.monotonic() + REPORT_RETRY_S
    delay = 0.05
    while True:
        try:
            return await pool._call(op, *args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.info("%s of pool %s not answered (%s): sending it again", op, pool.name, exc)
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)


MAX_INFLIGHT_CALLBACKS = 16
"""Callbacks of a chain delivered concurrently with the next items (at most)."""


async def run_dispatched(pool: Workpool, work_id: str, token: str) -> None:
    """The arq job: begin the dispatched attempt (fenced), run it, and run the
    items its completion hands to this worker (no queue poll between them). Each
    finished item's ``on_complete`` is delivered concurrently with the next item, so
    a chain's critical path is complete -> begin -> body."""
    callbacks: set[asyncio.Task[None]] = set()
    try:
        await _run_chain(pool, work_id, token, callbacks)
    except BaseException:
        for task in callbacks:  # shutdown: undelivered callbacks stay in the outbox
            task.cancel()
        raise
    finally:
        if callbacks:
            await asyncio.gather(*callbacks, return_exceptions=True)


async def _run_chain(
    pool: Workpool, work_id: str, token: str, callbacks: set[asyncio.Task[None]]
) -> None:
    rt = _runtime(pool.app)
    t0 = time.monotonic()
    item: tuple[str, str] | None = (work_id, token)
    while item is not None:
        wid, tok = item
        # begin is the fence a cancel races against: a canceled attempt never starts
        # a begin id per delivery: a re-sent begin is recognised, a second delivery of
        # the same attempt (even to this worker) is stale
        reply = await _persist(pool, "begin", wid, tok, rt.worker_id, uuid.uuid4().hex)
        if _s(reply[0]) != "OK":
            logger.debug(
                "stale delivery of %s token %s in pool %s (%s)", wid, tok, pool.name, _s(reply[1])
            )
            return
        fn_name, args_s, tmo = (_s(x) for x in reply[1:4])
        outcome = await execute(pool, wid, tok, fn_name, args_s, float(tmo))
        if outcome is None:
            return  # fenced: the lease was lost, the reaper accounts for it
        chain = rt.worker_id if time.monotonic() - t0 < CHAIN_SECONDS else ""
        reply = await _persist(
            pool,
            "complete",
            wid,
            tok,
            outcome.kind,
            outcome.payload,
            "1" if outcome.non_retryable else "0",
            repr(pool.rng()),
            chain,
            CLAIM_LIMIT,
            "" if outcome.error is None else format_traceback(outcome.error),
        )
        result, claimed, events = reply
        pool._log(events, outcome.error)  # a failure's event carries its traceback
        head = _s(result[0])
        if head == "REPLAYED":
            logger.info("report of work %s in pool %s was already applied", wid, pool.name)
        elif head == "STALE":
            logger.warning(
                "late report for work %s (token %s) in pool %s dropped", wid, tok, pool.name
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
        await pool._announce(rest)
        if head == "DONE" and len(result) == 4:
            final = _s(result[3])  # canceled when a cancel stopped the retry
            res: RunResult = (
                Success(outcome.value)
                if final == "success"
                else Failed(outcome.payload)
                if final == "failed"
                else Canceled()
            )
            if len(callbacks) >= MAX_INFLIGHT_CALLBACKS:
                _, pending = await asyncio.wait(callbacks, return_when=asyncio.FIRST_COMPLETED)
                callbacks.intersection_update(pending)
            task = asyncio.ensure_future(pool._deliver(wid, _s(result[1]), _s(result[2]), res))
            callbacks.add(task)
            task.add_done_callback(callbacks.discard)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended: ``kind`` "success" (``payload`` = the JSON of
    ``value``) or "failed" (``payload`` = the error text, ``error`` = the exception
    when one was raised)."""

    kind: str
    payload: str
    non_retryable: bool = False
    value: Any = None
    error: BaseException | None = None


def _failed(exc: BaseException) -> Outcome:
    return Outcome("failed", error_text(exc), is_non_retryable_error(exc), error=exc)


async def execute(
    pool: Workpool, work_id: str, token: str, fn_name: str, args_s: str, tmo_ms: float
) -> Outcome | None:
    """Run one attempt. Returns its :class:`Outcome`, or ``None`` when the attempt
    was fenced off (lease lost) and must not report."""
    action = pool.app.actions.get(fn_name)
    if action is None:
        return Outcome("failed", f"No action registered under the name {fn_name!r}.", True)
    try:
        args = codec.loads(args_s)
    except ValueError as exc:  # pragma: no cover - enqueue only stores JSON
        return Outcome("failed", f"bad arguments: {exc}", True)
    rt = _runtime(pool.app)
    try:  # a call that cannot even start (bad keywords) is this attempt's failure
        coro = action.fn(**args)
    except Exception as exc:
        return _failed(exc)
    task = asyncio.ensure_future(coro)
    lease = rt.track(pool, work_id, token, task)
    try:
        done, _ = await asyncio.wait({task}, timeout=tmo_ms / 1000.0)
    except asyncio.CancelledError:
        # shutdown: hand the attempt back (no attempt used); it is re-delivered
        task.cancel()
        await asyncio.shield(release(pool, work_id, token))
        raise
    finally:
        rt.untrack(lease)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if lease.fenced:
        if lease.hand_back:
            rt.keep(asyncio.get_running_loop().create_task(hand_back(pool, work_id, token)))
        return None
    if not done:
        return Outcome("failed", f"Timed out after {tmo_ms:.0f} ms")
    if task.cancelled():
        return Outcome("failed", "Canceled while running")
    error = task.exception()
    if error is not None:
        return _failed(error)
    value = task.result()
    try:
        payload = codec.dumps(value)
    except SerializationError as e:
        msg = f"Return value is not JSON-serializable: {e}"
        return Outcome("failed", msg, not pool.kind.bad_result_retryable)
    size = len(payload.encode("utf-8"))
    if size > pool.max_result_bytes:
        msg = f"Return value too large: {size} bytes (max: {pool.max_result_bytes} bytes)"
        return Outcome("failed", msg, not pool.kind.bad_result_retryable)
    return Outcome("success", payload, value=value)


async def release(
    pool: Workpool, work_id: str, token: str, *, fresh: bool = False, quiet: bool = True
) -> None:
    """Hand a running attempt back (no attempt used); its job is announced again (under
    a new token with ``fresh``: for an attempt whose arq job is still finishing).
    ``quiet``: a Redis error is logged (the lease expires instead), else raised."""
    try:
        reply = await pool._call("release", work_id, token, "1" if fresh else "0")
        if _s(reply[0]) == "OK":
            await pool._announce([(work_id, _s(reply[1]))])
    except (RedisError, OSError):
        if not quiet:
            raise
        logger.warning("could not release work %s of pool %s", work_id, pool.name)


async def hand_back(pool: Workpool, work_id: str, token: str) -> None:
    """Release an attempt fenced on time once Redis answers again (no attempt used,
    under a new token: this worker's own arq job for it is still finishing); ``STALE``
    when the reaper was first, and then it is retried as lost."""
    deadline = time.monotonic() + 60.0
    delay = 0.1
    while True:
        try:
            await release(pool, work_id, token, fresh=True, quiet=False)
            return
        except (RedisError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                logger.warning(
                    "could not hand back work %s of pool %s (%s): its lease expires",
                    work_id,
                    pool.name,
                    exc,
                )
                return
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)


async def deliver(
    pool: Workpool, work_id: str, oc_name: str, ctx_s: str, result: RunResult
) -> None:
    """Run one on_complete handler, then acknowledge or schedule its retry."""
    context = codec.loads(ctx_s) if ctx_s else None
    action = pool.app.actions.get(oc_name)
    try:
        if action is None:
            raise FunctionNotRegistered(oc_name)
        await pool.kind.deliver(action.fn, WorkId(work_id), context, result)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        pool._logger.warning(
            "on_complete %s for work %s of pool %s raised: %s",
            oc_name,
            work_id,
            pool.name,
            error_text(exc),
            exc_info=exc,
            extra={
                "component": pool.kind.kind,
                "pool": pool.name,
                "work_id": work_id,
                "on_complete": oc_name,
                "error": error_text(exc),
            },
        )
        _status, events = await _persist(
            pool, "oc_fail", work_id, error_text(exc), repr(pool.rng())
        )
        pool._log(events)
        return
    await _persist(pool, "oc_ack", work_id)
