"""spec/action-retrier.md §8 on fakeredis, real Redis and Cluster state (arq queue
on fakeredis for Cluster). Scenario 32 (three processes) is in test_processes.py."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest

from rkit import App, FunctionNotRegistered, NonRetryableError
from rkit.retrier import (
    TRANSIENT_ERROR,
    ActionRetrier,
    Completed,
    InProgress,
    RunCanceled,
    RunFailed,
    RunNotCompleted,
    RunNotFound,
    RunSuccess,
)
from rkit.testing import background_worker, run_until_idle
from rkit.workpool import _runtime

T0 = 1_700_000_040_000.0
DAY = 86_400_000


class Env:
    def __init__(self, app: App) -> None:
        self.app = app
        self.execs: list[float] = []
        self.calls: list[dict[str, Any]] = []
        self.callbacks: list[tuple[str, Any, Any]] = []
        self.cb_failures = 0
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.seen_status: list[Any] = []
        self.retrier: ActionRetrier | None = None

        @app.action(name="ok_fn")
        async def ok_fn(a: int = 1) -> dict[str, int]:
            self.calls.append({"a": a})
            self.execs.append(self.now())
            return {"v": 3}

        @app.action(name="down")
        async def down() -> None:
            self.execs.append(self.now())
            raise RuntimeError("down")

        @app.action(name="twice_then_ok")
        async def twice_then_ok() -> str:
            self.execs.append(self.now())
            if len(self.execs) <= 2:
                raise RuntimeError("not yet")
            return "ok"

        @app.action(name="raises")
        async def raises(kind: str) -> None:
            self.execs.append(self.now())
            if kind == "value":
                raise ValueError("bad input")
            if kind == "key":
                raise KeyError("k")
            raise NonRetryableError("permanent")

        @app.action(name="hang")
        async def hang(value: int = 1) -> int:
            self.execs.append(self.now())
            self.started.set()
            if len(self.execs) == 1:
                await self.gate.wait()
            return value

        @app.action(name="sleepy")
        async def sleepy(s: float) -> None:
            self.execs.append(self.now())
            await asyncio.sleep(s)

        @app.action(name="cb")
        async def cb(run_id: str, result: Any, context: Any) -> None:
            if self.retrier is not None:
                self.seen_status.append(await self.retrier.status(run_id))
            self.callbacks.append((run_id, result, context))
            if self.cb_failures > 0:
                self.cb_failures -= 1
                raise RuntimeError("callback down")

    def now(self) -> float:
        return self.app.clock.now_ms() or 0.0


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


def retrier(app: App, env: Env, **kw: Any) -> ActionRetrier:
    kw.setdefault("rng", lambda: 0.5)
    r = ActionRetrier(app, **kw)
    env.retrier = r
    return r


async def drive(app: App, until_ms: float, step: float = 100) -> None:
    """Drain, advancing the clock in steps up to ``until_ms`` after T0."""
    await run_until_idle(app)
    while (app.clock.now_ms() or 0) - T0 < until_ms:
        app.clock.advance(step)  # type: ignore[attr-defined]
        await run_until_idle(app)


async def settle(cond: Any, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "condition not reached"
        await asyncio.sleep(0.01)


# 1
async def test_start_and_status(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("ok_fn", {"a": 1})
    assert isinstance(rid, str) and rid
    assert await r.status(rid) == InProgress()


# 2
async def test_success_on_first_try(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("ok_fn", {"a": 1}, on_complete="cb")
    await run_until_idle(app)
    assert await r.status(rid) == Completed(RunSuccess({"v": 3}))
    assert env.calls == [{"a": 1}]
    assert env.callbacks == [(rid, RunSuccess({"v": 3}), None)]


# 3
async def test_default_budget_and_delays(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("down")
    await drive(app, 10_000)
    assert [t - T0 for t in env.execs] == [0, 500, 1_500, 3_500, 7_500]
    assert await r.status(rid) == Completed(RunFailed("down"))


# 4
async def test_per_run_overrides(app: App, env: Env) -> None:
    r = retrier(app, env, max_failures=1)
    await r.run("down", max_failures=3, initial_backoff_ms=100, base=3)
    await drive(app, 5_000)
    times = [t - T0 for t in env.execs]
    assert [b - a for a, b in itertools.pairwise(times)] == [300, 900, 2_700]
    env.execs.clear()
    await r.run("down", max_failures=None)
    await drive(app, 10_000)
    assert len(env.execs) == 2


# 5
async def test_no_retries(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("down", max_failures=0)
    await drive(app, 5_000)
    assert len(env.execs) == 1 and await r.status(rid) == Completed(RunFailed("down"))


# 6
async def test_eventually_succeeds(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("twice_then_ok", on_complete="cb")
    await drive(app, 5_000)
    assert len(env.execs) == 3
    assert await r.status(rid) == Completed(RunSuccess("ok"))
    assert len(env.callbacks) == 1


# 7
async def test_run_after_and_run_at(app: App, env: Env) -> None:
    r = retrier(app, env)
    await r.run_after(5_000, "ok_fn")
    await drive(app, 4_900)
    assert env.execs == []
    await drive(app, 5_000)
    assert env.execs == [T0 + 5_000]
    await r.run_at(T0 - 60_000, "ok_fn")
    await run_until_idle(app)
    assert len(env.execs) == 2


# 8
async def test_unknown_ids(app: App, env: Env) -> None:
    r = retrier(app, env)
    with pytest.raises(RunNotFound, match=r"^Run nope not found$"):
        await r.status("nope")
    with pytest.raises(RunNotFound, match=r"^Run  not found$"):
        await r.status("")


# 9
async def test_cancel_during_backoff(app: App, env: Env) -> None:
    r = retrier(app, env, initial_backoff_ms=2_000)
    rid = await r.run("down", on_complete="cb")
    await run_until_idle(app)
    assert len(env.execs) == 1
    assert await r.cancel(rid) is True
    assert await r.status(rid) == Completed(RunCanceled())
    await run_until_idle(app)
    assert [c[1] for c in env.callbacks] == [RunCanceled()]
    app.clock.advance(10_000)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert len(env.execs) == 1


# 10
async def test_cancel_while_executing(app: App, env: Env) -> None:
    r = retrier(app, env)
    returned: list[int] = []

    @app.action(name="slow_one")
    async def slow_one() -> int:
        env.execs.append(0)
        env.started.set()
        await env.gate.wait()
        returned.append(1)
        return 1

    rid = await r.run("slow_one", on_complete="cb")
    async with background_worker(app):
        await env.started.wait()
        assert await r.cancel(rid) is True
        await asyncio.sleep(1.2)  # a heartbeat passes: the execution is not interrupted
        env.gate.set()
        await settle(lambda: returned == [1])
        await asyncio.sleep(0.05)
    await drive(app, 10_000, step=1_000)
    assert await r.status(rid) == Completed(RunCanceled())
    assert [c[1] for c in env.callbacks] == [RunCanceled()]
    assert len(env.execs) == 1


# 11
async def test_cancel_no_ops(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("ok_fn")
    await run_until_idle(app)
    before = await r.details(rid)
    assert await r.cancel(rid) is False
    assert await r.cancel("unknown") is False
    assert await r.details(rid) == before


# 12
async def test_cleanup(app: App, env: Env) -> None:
    r = retrier(app, env)
    done = await r.run("ok_fn")
    await run_until_idle(app)
    await r.cleanup(done)
    with pytest.raises(RunNotFound):
        await r.status(done)
    pending = await r.run_after(60_000, "ok_fn")
    with pytest.raises(RunNotCompleted, match=r"hasn't completed\.$"):
        await r.cleanup(pending)
    with pytest.raises(RunNotFound):
        await r.cleanup("unknown")


# 13
async def test_retention(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("ok_fn")
    await run_until_idle(app)
    t1 = app.clock.now_ms() or 0
    app.clock.set(t1 + 7 * DAY - 1)  # type: ignore[attr-defined]
    assert isinstance(await r.status(rid), Completed)
    app.clock.set(t1 + 7 * DAY + 1)  # type: ignore[attr-defined]
    with pytest.raises(RunNotFound):
        await r.status(rid)
    assert await r.expire() == 1
    assert await app.redis.zcard(r._pool.keys[9]) == 0


# 14
@pytest.mark.parametrize("backend", ["fake", "redis"], indirect=True)
async def test_expiry_batches(app: App, env: Env) -> None:
    r = retrier(app, env)
    ids = await r.run_batch("ok_fn", [{"a": i} for i in range(2_500)], _run_after=DAY)
    for i in range(0, len(ids), 500):
        await r._pool.cancel_many(ids[i : i + 500])
    app.clock.advance(8 * DAY)  # type: ignore[attr-defined]
    assert await r.expire() == 2_500
    assert await app.redis.zcard(r._pool.keys[9]) == 0
    assert await r._pool.item(ids[0]) is None


async def lose_execution(app: App, r: ActionRetrier) -> None:
    rt = _runtime(app)
    assert rt._hb is not None
    rt._hb.cancel()
    rt.leases.clear()  # this process forgets them, as a dead worker would
    app.clock.advance(r._pool.lease_ms + 1)  # type: ignore[attr-defined]
    await r.sweep()


# 15, 18, 19
async def test_worker_killed_mid_execution(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("hang", on_complete="cb")
    async with background_worker(app):
        await env.started.wait()
        await lose_execution(app, r)
        now = app.clock.now_ms() or 0
        d = await r.details(rid)
        assert d.num_failures == 1 and d.next_start_ms == now + 500
        assert d.last_error == TRANSIENT_ERROR
        # 18: arq re-delivers the lost execution's job: stale, not run again
        await r._pool._run_dispatched(rid, "1")
        assert len(env.execs) == 1
        app.clock.advance(500)  # type: ignore[attr-defined]
        await r.sweep()
        await settle(lambda: len(env.callbacks) == 1)
        assert len(env.execs) == 2
        # 19: the lost execution finishes late: dropped
        env.gate.set()
        await asyncio.sleep(0.05)
    assert env.callbacks[0][1] == RunSuccess(1)
    assert (await r.details(rid)).num_failures == 1


# 16
async def test_transient_failures_count(app: App, env: Env) -> None:
    r = retrier(app, env, max_failures=1)

    @app.action(name="always_hang")
    async def always_hang() -> None:
        env.execs.append(0)
        await env.gate.wait()

    rid = await r.run("always_hang")
    async with background_worker(app):
        await settle(lambda: len(env.execs) == 1)
        await lose_execution(app, r)
        app.clock.advance(1_000)  # type: ignore[attr-defined]
        await r.sweep()
        await settle(lambda: len(env.execs) == 2)
        await lose_execution(app, r)
        assert await r.status(rid) == Completed(RunFailed(TRANSIENT_ERROR))
        env.gate.set()


# 17
async def test_lost_enqueue_is_repaired(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("ok_fn")
    queue = await app.queue_pool()
    for key in [k async for k in queue.scan_iter(match="arq:job:*")]:
        await queue.delete(key)
    await queue.delete(app.queue_name)
    await run_until_idle(app)
    assert env.execs == []
    app.clock.advance(2 * r._pool.lease_ms + 1)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert len(env.execs) == 1
    assert (await r.details(rid)).num_failures == 0


# 20
async def test_timeout(app: App, env: Env) -> None:
    r = retrier(app, env, max_failures=1, initial_backoff_ms=0)
    rid = await r.run("sleepy", {"s": 5}, timeout_ms=200)
    await drive(app, 1_000)
    assert len(env.execs) == 2
    assert await r.status(rid) == Completed(RunFailed("Timed out after 200 ms"))


# 21, 22
async def test_callback_failure_and_final_state(app: App, env: Env) -> None:
    r = retrier(app, env)
    env.cb_failures = 1
    rid = await r.run("ok_fn", on_complete="cb")
    await drive(app, 2_000)
    assert len(env.callbacks) == 2 and len(env.execs) == 1
    assert env.seen_status == [Completed(RunSuccess({"v": 3}))] * 2
    env.cb_failures = 99
    env.callbacks.clear()
    rid = await r.run("ok_fn", on_complete="cb")
    await drive(app, 10_000)
    assert len(env.callbacks) == 3
    assert [d.work_id for d in await r.dead_letters()] == [rid]


# 23
async def test_context_passthrough(app: App, env: Env) -> None:
    r = retrier(app, env)
    await r.run("ok_fn", on_complete="cb", context={"order": 9})
    await run_until_idle(app)
    assert env.callbacks[0][2] == {"order": 9}


# 24, 25
@pytest.mark.parametrize(
    ("kind", "result", "execs"),
    [
        ("value", RunFailed("bad input"), 5),
        ("key", RunFailed("'k'"), 5),
        ("nonretry", RunFailed("permanent"), 1),
    ],
)
async def test_error_text(app: App, env: Env, kind: str, result: Any, execs: int) -> None:
    r = retrier(app, env)
    rid = await r.run("raises", {"kind": kind})
    await drive(app, 10_000, step=500)
    assert await r.status(rid) == Completed(result)
    assert len(env.execs) == execs


# 26
async def test_backoff_cap(app: App, env: Env) -> None:
    r = retrier(app, env, max_backoff_ms=1_500)
    await r.run("down")
    await drive(app, 6_000)
    times = [t - T0 for t in env.execs]
    assert [b - a for a, b in itertools.pairwise(times)] == [500, 1_000, 1_500, 1_500]


# 27
@pytest.mark.parametrize("value", ["DEBUG", "LOUD"])
async def test_env_log_level(
    app: App,
    env: Env,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "rkit.retrier")
    monkeypatch.setenv("ACTION_RETRIER_LOG_LEVEL", value)
    r = retrier(app, env)
    await r.run("ok_fn")
    await run_until_idle(app)
    records = [x for x in caplog.records if x.name == "rkit.retrier"]
    if value == "DEBUG":
        assert r.log_level == "DEBUG"
        assert any(x.levelno == logging.DEBUG for x in records)
    else:
        assert r.log_level == "INFO"
        warnings = [x for x in records if x.levelno == logging.WARNING]
        assert len(warnings) == 1 and "defaulting to" in warnings[0].getMessage()
    assert len(env.execs) == 1


# 28
async def test_concurrent_cancel_vs_finish(app: App, env: Env) -> None:
    r = retrier(app, env)
    gates: dict[int, asyncio.Event] = {}
    begun: dict[int, asyncio.Event] = {}

    @app.action(name="gated")
    async def gated(k: int) -> int:
        begun[k].set()
        await gates[k].wait()
        return 1

    async with background_worker(app):
        for k in range(50):
            gates[k], begun[k] = asyncio.Event(), asyncio.Event()
            rid = await r.run("gated", {"k": k}, on_complete="cb")
            await begun[k].wait()
            before = len(env.callbacks)
            gates[k].set()
            canceled = await r.cancel(rid)
            while len(env.callbacks) < before + 1:
                await r.sweep()  # delivers the cancel's callback (pump's job)
                await asyncio.sleep(0.005)
            status = await r.status(rid)
            assert isinstance(status, Completed)
            assert canceled == (status.result == RunCanceled())
    await run_until_idle(app)
    assert len(env.callbacks) == 50 and len({c[0] for c in env.callbacks}) == 50


# 29
async def test_graceful_shutdown(app: App, env: Env) -> None:
    r = retrier(app, env)
    rid = await r.run("hang", {"value": 2})
    async with background_worker(app, job_completion_wait=0):
        await env.started.wait()
    assert (await r.details(rid)).num_failures == 0
    env.gate.set()
    await run_until_idle(app)
    assert len(env.execs) == 2 and await r.status(rid) == Completed(RunSuccess(2))
    assert (await r.details(rid)).num_failures == 0


# 30
async def test_slot_check(app: App, env: Env) -> None:
    from redis.crc import key_slot

    r = retrier(app, env)
    await r.run("ok_fn", on_complete="cb")
    await r.run_after(1_000, "ok_fn")
    tag = r._pool.tag
    keys = [*r._pool.keys, f"{tag}:w:x"]
    queue = await app.queue_pool()
    jobs = [k.decode() async for k in queue.scan_iter(match="arq:job:*")]
    assert jobs
    assert len({key_slot(k.encode()) for k in keys + jobs}) == 1


# 31
async def test_unregistered_and_bad_options(app: App, env: Env) -> None:
    r = retrier(app, env)
    with pytest.raises(FunctionNotRegistered):
        await r.run("no.such:fn")
    with pytest.raises(ValueError, match="base"):
        await r.run("ok_fn", base=0)
    with pytest.raises(ValueError, match="max_failures"):
        await r.run("ok_fn", max_failures=-1)
    with pytest.raises(ValueError, match="initial_backoff_ms"):
        ActionRetrier(app, initial_backoff_ms=float("nan"))
    assert await app.redis.exists(*r._pool.keys) == 0
    assert await r.list_runs() == []
