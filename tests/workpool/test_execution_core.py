"""The execution core under backlog and cancel, on fakeredis and redis-server (the
queue is arq's, so no Cluster variant): a dispatch whose job still waits in the
queue is extended, never duplicated; a retry due in 100 ms starts on time; cleanup
never drops an owed callback; a canceled attempt that has not begun never runs; and
leases, heartbeats and fencing all follow the App's (test) clock."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix

from rkit import App, CallbackPending, ConfigError, TestClock
from rkit.retrier import ActionRetrier, RunFailed
from rkit.testing import background_worker, run_until_idle
from rkit.workpool import Canceled, Failed, OnCompleteArgs, RetryBehavior, Success, Workpool

from ..conftest import make_app


@pytest.fixture(params=["fake", "redis"])
async def live_app(request: pytest.FixtureRequest) -> AsyncIterator[App]:
    """An App on the Redis server's clock (retry timing is measured in wall time)."""
    a = await make_app(str(request.param), request)
    yield a
    await a.aclose()


async def until(cond: Any, timeout: float = 10.0) -> None:
    """Wait (real time) until ``cond()`` (a value or an awaitable of one) is truthy."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.01)


def record_work(app: App) -> list[int]:
    """Register the action ``work(i)``, which records each ``i`` it runs."""
    runs: list[int] = []

    @app.action(name="work")
    async def work(i: int) -> int:
        runs.append(i)
        return i

    return runs


async def queue_len(app: App) -> int:
    return int(await (await app.queue_pool()).zcard(app.queue_name))


# -- 1. no re-dispatch storm under backlog ----------------------------------------------


async def test_queued_dispatch_is_extended_not_duplicated(queue_app: App) -> None:
    """No worker takes the jobs for many dispatch leases: each pump round extends the
    dispatches under the same token and the queue keeps one job per attempt."""
    app = queue_app
    runs = record_work(app)
    p = Workpool(app, "backlog", max_parallelism=100, lease_ms=1_000)
    ids = await p.enqueue_batch("work", [{"i": i} for i in range(50)])
    assert await queue_len(app) == 50
    tokens = [(await p.item(w))["token"] for w in ids]  # type: ignore[index]
    for _ in range(12):  # 12 dispatch leases pass with the jobs still queued
        app.clock.advance(2_001)  # type: ignore[attr-defined]
        await p.pump()
        assert await queue_len(app) == 50
    assert [(await p.item(w))["token"] for w in ids] == tokens  # type: ignore[index]
    await run_until_idle(app)
    assert sorted(runs) == list(range(50))
    assert await queue_len(app) == 0


async def test_lost_job_is_enqueued_again_under_its_id(queue_app: App) -> None:
    app = queue_app
    runs = record_work(app)
    p = Workpool(app, "lost", lease_ms=1_000)
    wid = await p.enqueue("work", {"i": 1})
    q = await app.queue_pool()
    token = (await p.item(wid))["token"]  # type: ignore[index]
    await q.delete(job_key_prefix + p.job_id(wid, token))  # the queue Redis lost it
    app.clock.advance(2_001)  # type: ignore[attr-defined]
    await p.pump()
    assert await q.exists(job_key_prefix + p.job_id(wid, token)) == 1
    assert (await p.item(wid))["token"] == token  # type: ignore[index]
    await run_until_idle(app)
    assert runs == [1]


async def test_job_held_by_a_dead_worker_gets_a_new_token(queue_app: App) -> None:
    """A worker took the job (arq's in-progress key) and died before begin: after the
    dispatch lease the attempt is dispatched again under a new token; the old job is
    stale if it ever runs."""
    app = queue_app
    runs = record_work(app)
    p = Workpool(app, "held", lease_ms=1_000)
    wid = await p.enqueue("work", {"i": 7})
    q = await app.queue_pool()
    old = p.job_id(wid, (await p.item(wid))["token"])  # type: ignore[index]
    await q.zrem(app.queue_name, old)  # taken from the queue ...
    await q.set(in_progress_key_prefix + old, b"1", px=60_000)  # ... by a worker that died
    app.clock.advance(2_001)  # type: ignore[attr-defined]
    await p.pump()
    item = await p.item(wid)
    assert item is not None and item["token"] == "2" and item["state"] == "dispatched"
    assert await q.zscore(app.queue_name, p.job_id(wid, "2")) is not None
    assert (await p.diagnostics()).stats["redispatched"] == 1
    await run_until_idle(app)
    assert runs == [7]


# -- 2. prompt retries ----------------------------------------------------------------------


async def test_short_retry_starts_on_time(live_app: App) -> None:
    """A retry due 100 ms after a failure starts within ~100 ms of its due time (the
    worker that saw the failure wakes its pump at the due time)."""
    app = live_app
    starts: list[float] = []

    @app.action(name="fails")
    async def fails() -> None:
        starts.append(time.monotonic())
        raise RuntimeError("again")

    # jitter factor 0.5 + rng = 1: each retry is due exactly 100 ms after a failure
    p = Workpool(app, "prompt", rng=lambda: 0.5)
    rb = RetryBehavior(max_attempts=5, initial_backoff_ms=100, base=1)
    async with background_worker(app, pump=True, poll_delay=0.005):
        await asyncio.sleep(1.1)  # let the pump go idle (its longest sleep is 1 s)
        wid = await p.enqueue("fails", {}, retry=rb)
        deadline = time.monotonic() + 10
        while await p.get_result(wid) is None and len(starts) < 5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 4
    lags_ms = [(g - 0.1) * 1000 for g in gaps]
    assert max(lags_ms) < 150, lags_ms


# -- 3. cleanup never drops a pending callback -------------------------------------------


async def test_cleanup_refuses_while_callback_is_owed(app: App) -> None:
    delivered: list[str] = []
    fail = [True]

    @app.action(name="ok")
    async def ok() -> str:
        return "done"

    @app.action(name="cb")
    async def cb(run_id: str, result: Any, context: Any) -> None:
        if fail[0]:
            fail[0] = False
            raise RuntimeError("callback down")
        delivered.append(run_id)

    r = ActionRetrier(app, namespace="oc")
    rid = await r.run("ok", {}, on_complete="cb")
    await run_until_idle(app)
    assert delivered == []  # the first delivery failed: it is owed
    with pytest.raises(CallbackPending):
        await r.cleanup(rid)
    assert (await r.details(rid)).state == "completed"  # nothing deleted
    app.clock.advance(60_000)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert delivered == [rid]
    await r.cleanup(rid)  # delivered: now it may go


# -- 4. cancel wins over an attempt that has not begun --------------------------------------


async def test_cancel_of_a_dispatched_item_prevents_its_run(queue_app: App) -> None:
    app = queue_app
    runs: list[int] = []
    results: list[Any] = []

    @app.action(name="work")
    async def work(i: int) -> int:
        runs.append(i)
        return i

    @app.action(name="done")
    async def done(args: OnCompleteArgs) -> None:
        results.append(args.result)

    p = Workpool(app, "cancel-dispatched")
    wid = await p.enqueue("work", {"i": 1}, on_complete="done")
    assert (await p.item(wid))["state"] == "dispatched"  # type: ignore[index]
    await p.cancel(wid)
    await run_until_idle(app)
    assert runs == []
    assert results == [Canceled()]


async def test_cancel_of_a_chained_item_prevents_its_run(
    queue_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completion hands the next item to the same worker (no arq job); a cancel
    that lands after that claim but before the worker begins the item wins."""
    app = queue_app
    runs: list[str] = []
    results: dict[str, Any] = {}
    p = Workpool(app, "cancel-chained", max_parallelism=1)

    @app.action(name="work")
    async def work(name: str) -> str:
        runs.append(name)
        return name

    @app.action(name="done")
    async def done(args: OnCompleteArgs) -> None:
        results[args.work_id] = args.result

    first = await p.enqueue("work", {"name": "a"}, on_complete="done")
    second = await p.enqueue("work", {"name": "b"}, on_complete="done")
    assert (await p.item(second))["state"] == "pending"  # type: ignore[index]
    real = p._call

    async def cancel_before_begin(op: str, *args: Any, **kw: Any) -> Any:
        if op == "begin" and args[0] == second:
            item = await p.item(second)
            assert item is not None and item["state"] == "dispatched"  # claimed by the chain
            await p.cancel(second)
        return await real(op, *args, **kw)

    monkeypatch.setattr(p, "_call", cancel_before_begin)
    await run_until_idle(app)
    assert runs == ["a"]
    assert results == {first: Success("a"), second: Canceled()}
    assert (await p.diagnostics()).running == 0


async def test_retrier_cancel_before_begin_never_executes(queue_app: App) -> None:
    app = queue_app
    runs: list[int] = []

    @app.action(name="work")
    async def work() -> None:
        runs.append(1)

    r = ActionRetrier(app, namespace="c")
    rid = await r.run("work", {})
    assert await r.cancel(rid) is True
    await run_until_idle(app)
    assert runs == []
    assert type((await r.details(rid)).result).__name__ == "RunCanceled"


# -- 5. leases follow the App's clock -----------------------------------------------------


async def test_moving_the_test_clock_never_loses_a_live_attempt(
    queue_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app = queue_app
    assert isinstance(app.clock, TestClock)
    gate = asyncio.Event()
    runs: list[int] = []

    @app.action(name="slow")
    async def slow() -> str:
        runs.append(1)
        await gate.wait()
        return "ok"

    p = Workpool(app, "clocked", keep_result_ms=60_000)
    wid = await p.enqueue("slow", {}, retry=True)
    async with background_worker(app):
        await until(lambda: bool(runs))
        for _ in range(4):
            app.clock.advance(100_000)
            await p.pump()
            assert (await p.item(wid))["state"] == "running"  # type: ignore[index]
        gate.set()
        await until(lambda: p.get_result(wid))
    assert runs == [1]
    assert await p.get_result(wid) == Success("ok")
    assert "lost" not in (await p.diagnostics()).stats


# -- 6. small ------------------------------------------------------------------------------


async def test_num_failures_of_a_spent_run_is_max_failures(app: App) -> None:
    @app.action(name="always")
    async def always() -> None:
        raise RuntimeError("no")

    r = ActionRetrier(app, namespace="nf", initial_backoff_ms=10, max_failures=2)
    rid = await r.run("always", {})
    for _ in range(5):
        await run_until_idle(app)
        app.clock.advance(1_000)  # type: ignore[attr-defined]
    d = await r.details(rid)
    assert isinstance(d.result, RunFailed)
    assert d.num_failures == 2


# -- a call that cannot start ------------------------------------------------------------


async def test_arguments_that_do_not_fit_the_function_are_refused_at_enqueue(app: App) -> None:
    @app.action(name="send_email")
    async def send_email(to: str, subject: str = "") -> None:
        raise AssertionError("never called")

    p = Workpool(app, "fit")
    before = await app.redis.dbsize()
    with pytest.raises(ConfigError, match="do not fit"):
        await p.enqueue("send_email", {"too": "x"})
    with pytest.raises(ConfigError, match="do not fit"):
        await p.enqueue_batch("send_email", [{"to": "a"}, {"subject": "no to"}])
    assert await app.redis.dbsize() == before  # nothing written


async def test_a_call_that_raises_before_its_body_is_the_attempts_failure(app: App) -> None:
    """An action whose call itself raises (here a signature changed after enqueue)
    fails its attempt with that error and frees its slot (no lease-expiry loss)."""
    p = Workpool(app, "fit", keep_result_ms=60_000)

    @app.action(name="greet")
    async def greet(name: str) -> str:
        return name

    wid = await p.enqueue("greet", {"name": "x"})
    app.actions["greet"] = type(app.actions["greet"])("greet", _no_args)  # a new deploy
    await run_until_idle(app)
    result = await p.get_result(wid)
    assert isinstance(result, Failed) and "unexpected keyword argument" in result.error
    assert (await p.diagnostics()).running == 0


async def _no_args() -> None:
    raise AssertionError("never called")


# -- a second delivery of one attempt never runs its body twice -------------------------


async def test_a_second_delivery_of_an_attempt_to_the_same_worker_is_stale(
    queue_app: App,
) -> None:
    """begin recognises its own repeat (a re-sent begin whose reply was lost) by a
    per-delivery begin id, not by the worker: two deliveries of the same attempt to
    one worker process (e.g. a job seen twice) run the body once."""
    from rkit.workpool.executor import run_dispatched

    app = queue_app
    started = asyncio.Event()
    release = asyncio.Event()
    runs: list[int] = []

    @app.action(name="slow")
    async def slow(i: int) -> int:
        runs.append(i)
        started.set()
        await release.wait()
        return i

    p = Workpool(app, "twice")
    wid = await p.enqueue("slow", {"i": 1})
    token = (await p.item(wid))["token"]  # type: ignore[index]
    first = asyncio.create_task(run_dispatched(p, wid, token))
    await asyncio.wait_for(started.wait(), 10)
    await run_dispatched(p, wid, token)  # the same attempt delivered again: stale
    release.set()
    await first
    assert runs == [1]
    assert await p.status(wid) == Success(1) or (await p.item(wid)) is None
    # the repeat of one begin (same begin id) is answered again; another is stale
    wid2 = await p.enqueue("slow", {"i": 2})
    tok2 = (await p.item(wid2))["token"]  # type: ignore[index]
    worker = "w-test"
    assert (await p._call("begin", wid2, tok2, worker, "b1"))[0] == "OK"
    assert (await p._call("begin", wid2, tok2, worker, "b1"))[0] == "OK"
    assert (await p._call("begin", wid2, tok2, worker, "b2"))[0] == "STALE"
    assert (await p._call("begin", wid2, tok2, worker, ""))[0] == "STALE"


async def test_a_renewal_answered_after_the_attempt_ended_fences_nothing(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """A heartbeat sent while an attempt runs and answered after its report (the item
    finished: the reply is STALE) stops nothing and logs no 'abandoning work'. Seen
    under load as spurious lease-lost warnings for work that had completed; a lease
    whose attempt still runs is fenced as before."""
    from rkit.workpool import _runtime

    p = Workpool(app, "renewals")
    rt = _runtime(app)
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    ended.set_result(None)
    running: asyncio.Future[None] = loop.create_future()
    gone = rt.track(p, "no-such-item", "t1", ended)
    live = rt.track(p, "no-such-item-either", "t2", running)
    try:
        with caplog.at_level("WARNING", logger="rkit.workpool"):
            await rt.renew()
        assert not gone.fenced
        assert live.fenced and running.cancelled()
        abandoned = [r.getMessage() for r in caplog.records if "abandoning" in r.getMessage()]
        assert abandoned == ["abandoning work no-such-item-either of pool renewals (lease lost)"]
    finally:
        rt.untrack(gone)
        rt.untrack(live)
