"""spec/workpool.md §8: the acceptance scenarios on fakeredis, real Redis and a
3-node Cluster (state; the arq queue of the Cluster variant is fakeredis, arq
cannot run on Cluster). Scenario 6 (three processes) is in test_processes.py."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from rkit import App, ConfigError, FunctionNotRegistered, NonRetryableError, PayloadTooLarge
from rkit.testing import background_worker, run_until_idle
from rkit.workpool import (
    Canceled,
    Failed,
    Finished,
    NotFound,
    OnCompleteArgs,
    Pending,
    RetryBehavior,
    Running,
    Success,
    Workpool,
    _runtime,
)

T0 = 1_700_000_040_000.0
YEAR = 365 * 24 * 3600 * 1000


class Env:
    """Test functions registered on the App, with call records."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.calls: list[tuple[str, Any]] = []
        self.starts: list[tuple[str, float]] = []
        self.callbacks: list[OnCompleteArgs] = []
        self.gate = asyncio.Event()
        self.running = 0
        self.max_running = 0
        self.n = 0
        self.cb_failures = 0

        @app.action(name="add")
        async def add(x: int) -> int:
            self.calls.append(("add", x))
            return x + 1

        @app.action(name="blocked")
        async def blocked(i: int = 0) -> int:
            self.calls.append(("blocked", i))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            try:
                await self.gate.wait()
            finally:
                self.running -= 1
            return i

        @app.action(name="record")
        async def record(name: str) -> str:
            self.starts.append((name, self.app.clock.now_ms() or 0.0))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            await asyncio.sleep(0)
            self.running -= 1
            return name

        @app.action(name="flaky")
        async def flaky(fail_times: int = 2) -> str:
            self.n += 1
            self.starts.append(("flaky", self.app.clock.now_ms() or 0.0))
            if self.n <= fail_times:
                raise RuntimeError(f"boom {self.n}")
            return "ok"

        @app.action(name="nonretry")
        async def nonretry(how: str) -> None:
            self.n += 1
            if how == "instance":
                raise NonRetryableError("invalid email")
            if how == "subclass":

                class Sub(NonRetryableError):
                    pass

                raise Sub("invalid email")
            exc = RuntimeError("invalid email")
            exc.__rkit_non_retryable__ = True  # type: ignore[attr-defined]
            raise exc

        @app.action(name="cb")
        async def cb(args: OnCompleteArgs) -> None:
            self.callbacks.append(args)

        @app.action(name="bad_cb")
        async def bad_cb(args: OnCompleteArgs) -> None:
            self.callbacks.append(args)
            if self.cb_failures > 0:
                self.cb_failures -= 1
                raise RuntimeError("callback down")

        @app.action(name="sleepy")
        async def sleepy(s: float) -> None:
            self.n += 1
            await asyncio.sleep(s)


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


def pool(app: App, name: str = "p", **kw: Any) -> Workpool:
    """The App's pool ``name``; a further instance of a name stands for another
    process's instance (unregistered: one instance per name per App)."""
    kw.setdefault("rng", lambda: 0.5)
    kw.setdefault("register", app.components.get("workpool", name) is None)
    return Workpool(app, name, **kw)


async def settle(cond: Any, timeout: float = 5.0) -> None:
    """Wait (real time) until ``cond()`` is true: for work running in a background worker."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def pool_keys(app: App, p: Workpool) -> list[str]:
    if isinstance(app.redis, RedisCluster):
        keys: list[str] = []
        async for k in app.redis.scan_iter(match=p.tag + "*", target_nodes=RedisCluster.ALL_NODES):
            keys.append(k)
        return keys
    return [k async for k in app.redis.scan_iter(match=p.tag + "*")]


# 1 (DEVIATION: enqueue dispatches into a free slot at once, so with capacity the
# item reads Running(0) -- dispatched, not begun -- before any worker ran it)
async def test_enqueue_returns_id_and_pending(app: App, env: Env) -> None:
    wid = await pool(app, "paused", max_parallelism=0).enqueue("add", {"x": 1})
    assert isinstance(wid, str) and wid
    assert await pool(app, "paused").status(wid) == Pending(previous_attempts=0)
    wid = await pool(app).enqueue("add", {"x": 1})
    assert await pool(app).status(wid) == Running(previous_attempts=0)
    assert env.calls == []


# 2
async def test_default_config(app: App, env: Env) -> None:
    p = pool(app)
    ids = [await p.enqueue("blocked", {"i": i}) for i in range(12)]
    async with background_worker(app):
        await settle(lambda: env.running == 10)
        await asyncio.sleep(0.05)
        statuses = await p.status_batch(ids)
        assert sum(isinstance(s, Running) for s in statuses) == 10
        assert sum(isinstance(s, Pending) for s in statuses) == 2
        cfg = await p.get_config()
        assert (cfg.max_parallelism, cfg.log_level) == (10, "REPORT")
        env.gate.set()
        await settle(lambda: len(env.calls) == 12)
    assert env.max_running == 10


# 3
async def test_bad_parallelism(app: App, env: Env) -> None:
    with pytest.raises(ConfigError, match=r"max_parallelism must be >= 0"):
        await pool(app, max_parallelism=-1).enqueue("add", {"x": 1})
    p = pool(app)
    assert await pool_keys(app, p) == []
    with pytest.raises(ConfigError, match=r"<= 10000"):
        await p.set_config(max_parallelism=10_001)
    assert await pool_keys(app, p) == []


# 4
async def test_runs_and_finishes(app: App, env: Env) -> None:
    p = pool(app)
    wid = await p.enqueue("add", {"x": 1}, on_complete="cb")
    await run_until_idle(app)
    assert env.calls == [("add", 1)]
    assert env.callbacks == [OnCompleteArgs(wid, None, Success(2))]
    # DEVIATION: finished and its callback acknowledged, the item is forgotten
    # (keep_result_ms=0): NotFound(), not Finished() (test_not_found.py)
    assert await p.status(wid) == NotFound()


# 5
async def test_fifo_with_parallelism_1(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=1, id_factory=iter(f"w{i}" for i in range(1, 20)).__next__)
    for name in "abcde":
        await p.enqueue("record", {"name": name})
    await run_until_idle(app)
    assert [n for n, _ in env.starts] == list("abcde")
    assert env.max_running == 1


# 7
async def test_pause_and_resume(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=0)
    ids = [await p.enqueue("blocked", {"i": i}) for i in range(3)]
    await run_until_idle(app)
    assert env.calls == []
    assert await p.status_batch(ids) == [Pending(0)] * 3
    p.max_parallelism = None
    async with background_worker(app):
        await p.set_config(max_parallelism=2)
        await settle(lambda: env.running == 2)
        await asyncio.sleep(0.05)
        assert len(env.calls) == 2
        env.gate.set()
        await settle(lambda: len(env.calls) == 3)
    assert env.max_running == 2


# 8
async def test_lowering_the_cap_while_running(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=4)
    [await p.enqueue("blocked", {"i": i}) for i in range(4)]
    async with background_worker(app):
        await settle(lambda: env.running == 4)
        p.max_parallelism = None
        await p.set_config(max_parallelism=2)
        late = [await p.enqueue("record", {"name": n}) for n in "xy"]
        await p.pump()
        await asyncio.sleep(0.1)
        assert env.starts == []
        assert (await p.diagnostics()).running == 4
        assert await p.status_batch(late) == [Pending(0)] * 2
    # finish the four one by one (in-process): only below 2 does new work start
    env.gate.set()
    await run_until_idle(app)
    # both start once below the cap (dispatched FIFO; two workers' bodies may interleave)
    assert sorted(n for n, _ in env.starts) == ["x", "y"]


# 9
async def test_run_after(app: App, env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "rkit.workpool")
    p = pool(app, log_level="INFO")
    wid = await p.enqueue("add", {"x": 1}, run_after=5_000)
    app.clock.advance(4_999)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert env.calls == []
    assert await p.status(wid) == Pending(0)
    app.clock.advance(1)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert env.calls == [("add", 1)]
    started = [e for e in events(caplog) if e["event"] == "started"]
    assert started and started[0]["start_lag"] >= 0


# 10
async def test_run_at_run_after_exclusive(app: App, env: Env) -> None:
    p = pool(app)
    with pytest.raises(ValueError, match="either run_at or run_after"):
        await p.enqueue("add", {"x": 1}, run_at=T0, run_after=1)
    assert await pool_keys(app, p) == []


# 11
async def test_run_at_bounds(app: App, env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "rkit.workpool")
    p = pool(app, max_parallelism=0)
    old = await p.enqueue("add", {"x": 1}, run_at=T0 - 2 * YEAR)
    far = await p.enqueue("add", {"x": 2}, run_at=T0 + 5 * YEAR)
    assert float((await p.item(old))["due"]) == T0  # type: ignore[index]
    assert float((await p.item(far))["due"]) == T0 + 365 * 24 * 3600 * 1000  # type: ignore[index]
    assert [e["event"] for e in events(caplog)] == ["run_at_bounded", "run_at_bounded"]
    p.max_parallelism = None
    await p.set_config(max_parallelism=10)
    await run_until_idle(app)
    assert env.calls == [("add", 1)]


# 12
async def test_retry_with_backoff(app: App, env: Env) -> None:
    p = pool(app)
    rb = RetryBehavior(max_attempts=3, initial_backoff_ms=1_000, base=2)
    wid = await p.enqueue("flaky", {}, retry=rb, on_complete="cb")
    await run_until_idle(app)
    assert await p.status(wid) == Pending(1)
    app.clock.advance(1_000)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert await p.status(wid) == Pending(2)
    app.clock.advance(2_000)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert [t - T0 for _, t in env.starts] == [0, 1_000, 3_000]
    assert [c.result for c in env.callbacks] == [Success("ok")]


# 13
async def test_retries_exhausted(app: App, env: Env) -> None:
    p = pool(app)
    rb = RetryBehavior(max_attempts=3, initial_backoff_ms=10, base=2)
    await p.enqueue("flaky", {"fail_times": 99}, retry=rb, on_complete="cb")
    for _ in range(5):
        await run_until_idle(app)
        app.clock.advance(1_000)  # type: ignore[attr-defined]
    assert env.n == 3
    assert [c.result for c in env.callbacks] == [Failed("boom 3")]


# 14
async def test_retry_false_wins(app: App, env: Env) -> None:
    p = pool(app, retry_actions_by_default=True)
    await p.enqueue("flaky", {}, retry=False, on_complete="cb")
    await run_until_idle(app)
    assert env.n == 1 and [c.result for c in env.callbacks] == [Failed("boom 1")]


# 15
async def test_retry_true_uses_defaults(app: App, env: Env) -> None:
    p = pool(app)
    await p.enqueue("flaky", {"fail_times": 99}, retry=True, on_complete="cb")
    for _ in range(20):
        await run_until_idle(app)
        app.clock.advance(250)  # type: ignore[attr-defined]
    times = [t - T0 for _, t in env.starts]
    assert env.n == 5
    assert [b - a for a, b in itertools.pairwise(times)] == [250, 500, 1_000, 2_000]


# 16
async def test_mutations_are_not_retried(app: App, env: Env) -> None:
    p = pool(app, retry_actions_by_default=True)
    await p.enqueue_mutation("flaky", {})
    await run_until_idle(app)
    app.clock.advance(10_000)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert env.n == 1
    with pytest.raises(TypeError):
        await p.enqueue_mutation("flaky", {}, retry=True)


# 17
@pytest.mark.parametrize("how", ["instance", "subclass", "attribute"])
async def test_non_retryable(app: App, env: Env, how: str) -> None:
    p = pool(app)
    await p.enqueue("nonretry", {"how": how}, retry=True, on_complete="cb")
    await run_until_idle(app)
    app.clock.advance(60_000)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert env.n == 1
    assert [c.result for c in env.callbacks] == [Failed("invalid email")]


# 18
@pytest.mark.parametrize(("r", "due"), [(0.0, 500), (0.999, 1_499)])
async def test_jitter_bounds(app: App, env: Env, r: float, due: float) -> None:
    p = pool(app, rng=lambda: r)
    rb = RetryBehavior(max_attempts=2, initial_backoff_ms=1_000, base=2)
    wid = await p.enqueue("flaky", {}, retry=rb)
    await run_until_idle(app)
    assert float((await p.item(wid))["due"]) - T0 == pytest.approx(due)  # type: ignore[index]


# 19
async def test_backing_off_holds_no_slot(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=1)
    rb = RetryBehavior(max_attempts=2, initial_backoff_ms=60_000, base=2)
    a = await p.enqueue("flaky", {}, retry=rb)
    b = await p.enqueue("add", {"x": 5})
    await run_until_idle(app)
    assert env.calls == [("add", 5)]
    assert await p.status(a) == Pending(1)
    assert await p.status(b) == NotFound()  # finished and forgotten


# 20
async def test_cancel_pending(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=0)
    wid = await p.enqueue("add", {"x": 1}, on_complete="cb")
    await p.cancel(wid)
    assert await p.status(wid) == Finished()
    p.max_parallelism = None
    await p.set_config(max_parallelism=5)
    await run_until_idle(app)
    assert env.calls == []
    assert [c.result for c in env.callbacks] == [Canceled()]


# 21
async def test_cancel_running_success(app: App, env: Env) -> None:
    p = pool(app)
    wid = await p.enqueue("blocked", {"i": 7}, on_complete="cb")
    async with background_worker(app):
        await settle(lambda: env.running == 1)
        await p.cancel(wid)
        assert await p.status(wid) == Running(0)
        env.gate.set()
        await settle(lambda: len(env.callbacks) == 1)
    assert env.callbacks[0].result == Success(7)


# 22
async def test_cancel_running_failure_with_attempts_left(app: App, env: Env) -> None:
    p = pool(app)
    gate = asyncio.Event()
    started = asyncio.Event()

    @app.action(name="fail_later")
    async def fail_later() -> None:
        env.n += 1
        started.set()
        await gate.wait()
        raise RuntimeError("late failure")

    wid = await p.enqueue(
        "fail_later",
        {},
        retry=RetryBehavior(max_attempts=5, initial_backoff_ms=1, base=1),
        on_complete="cb",
    )
    async with background_worker(app):
        await started.wait()
        await p.cancel(wid)
        gate.set()
        await settle(lambda: len(env.callbacks) == 1)
    app.clock.advance(10_000)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert env.n == 1
    assert [c.result for c in env.callbacks] == [Canceled()]


# 23
async def test_cancel_during_backoff(app: App, env: Env) -> None:
    p = pool(app)
    rb = RetryBehavior(max_attempts=3, initial_backoff_ms=1_000, base=2)
    wid = await p.enqueue("flaky", {}, retry=rb, on_complete="cb")
    await run_until_idle(app)
    assert await p.status(wid) == Pending(1)
    await p.cancel(wid)
    app.clock.advance(5_000)  # type: ignore[attr-defined]
    await run_until_idle(app)
    assert env.n == 1
    assert [c.result for c in env.callbacks] == [Canceled()]


# 24
async def test_cancel_no_ops(app: App, env: Env) -> None:
    p = pool(app)
    await p.cancel("unknown")
    done = await p.enqueue("add", {"x": 1}, on_complete="cb")
    await run_until_idle(app)
    await p.cancel(done)
    wid = await p.enqueue("blocked", {"i": 3}, on_complete="cb")
    async with background_worker(app):
        await settle(lambda: env.running == 1)
        await p.cancel(wid)
        before = await p.item(wid)
        await p.cancel(wid)
        assert await p.item(wid) == before
        env.gate.set()
        await settle(lambda: len(env.callbacks) == 2)
    await run_until_idle(app)
    assert [c.result for c in env.callbacks] == [Success(2), Success(3)]


# 25
async def test_cancel_all(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=2)
    running = [await p.enqueue("blocked", {"i": i}, on_complete="cb") for i in (100, 101)]
    async with background_worker(app):
        await settle(lambda: env.running == 2)
        await p.enqueue_batch("add", [{"x": i} for i in range(150)], on_complete="cb")
        assert await p.cancel_all() == 152
        while (await p.pump()).callbacks:
            pass
        assert sum(c.result == Canceled() for c in env.callbacks) == 150
        env.gate.set()
        await settle(lambda: len(env.callbacks) == 152)
    await run_until_idle(app)
    assert env.calls.count(("add", 0)) == 0 and len(env.calls) == 2
    results = {c.work_id: c.result for c in env.callbacks}
    assert [results[w] for w in running] == [Success(100), Success(101)]


# 26
async def test_context_round_trip(app: App, env: Env) -> None:
    p = pool(app)
    ctx = {"user": "u1", "blob": "x" * 800_000}
    await p.enqueue("add", {"x": 1}, on_complete="cb", context=ctx)
    await run_until_idle(app)
    assert env.callbacks[0].context == ctx


# 27
async def test_oversized_args(app: App, env: Env) -> None:
    p = pool(app)
    blob = "x" * (1_000_001 - len('{"x":""}'))
    with pytest.raises(PayloadTooLarge, match=r"too large: 1000001 bytes \(max: 1000000 bytes\)"):
        await p.enqueue("add", {"x": blob})
    assert await pool_keys(app, p) == []


# 28
async def test_batch_order(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=1)
    ids = await p.enqueue_batch("record", [{"name": str(i)} for i in range(10)])
    assert len(ids) == 10 and len(set(ids)) == 10
    statuses = await p.status_batch(ids)
    assert statuses[0] == Running(0) and statuses[1:] == [Pending(0)] * 9
    await run_until_idle(app)
    assert [n for n, _ in env.starts] == [str(i) for i in range(10)]


# 29
async def test_failing_callback(app: App, env: Env) -> None:
    p = pool(app)
    env.cb_failures = 2
    wid = await p.enqueue("add", {"x": 1}, on_complete="bad_cb")
    for _ in range(4):
        await run_until_idle(app)
        app.clock.advance(1_000)  # type: ignore[attr-defined]
    assert len(env.callbacks) == 3 and env.calls == [("add", 1)]
    assert await p.item(wid) is None
    env.callbacks.clear()
    env.cb_failures = 99
    wid = await p.enqueue("add", {"x": 2}, on_complete="bad_cb")
    for _ in range(4):
        await run_until_idle(app)
        app.clock.advance(1_000)  # type: ignore[attr-defined]
    assert len(env.callbacks) == 3
    dead = await p.dead_letters()
    assert [(d.work_id, d.error) for d in dead] == [(wid, "callback down")]
    assert (await p.diagnostics()).stats["oc_dead"] == 1


async def _lose_running_attempt(app: App, p: Workpool, env: Env) -> None:
    """Stop the heartbeat of the attempt running in the background worker, move the
    clock past its lease and pump: the reaper declares it lost."""
    rt = _runtime(app)
    assert rt._hb is not None
    rt._hb.cancel()
    rt.leases.clear()  # this process forgets them, as a dead worker would
    app.clock.advance(p.lease_ms + 1)  # type: ignore[attr-defined]
    await p.pump()


# 30
@pytest.mark.parametrize("retry", [True, False])
async def test_worker_lost_mid_job(
    app: App, env: Env, retry: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "rkit.workpool")
    p = pool(app)
    calls = []
    gate = asyncio.Event()

    @app.action(name="hang_once")
    async def hang_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            await gate.wait()
        return "second"

    rb = RetryBehavior(max_attempts=2, initial_backoff_ms=0, base=1) if retry else None
    wid = await p.enqueue("hang_once", {}, retry=rb or False, on_complete="cb")
    async with background_worker(app):
        await settle(lambda: len(calls) == 1)
        await _lose_running_attempt(app, p, env)
        assert (await p.diagnostics()).stats["lost"] == 1
        if retry:
            await p.pump()
            await settle(lambda: len(env.callbacks) == 1)
            assert env.callbacks[0].result == Success("second")
        else:
            await settle(lambda: len(env.callbacks) == 1)
            assert env.callbacks[0].result == Failed("Worker lost: lease expired")
        gate.set()  # the lost attempt reports late: STALE (scenario 32)
        await settle(lambda: any("late report" in r.getMessage() for r in caplog.records))
    assert any(e["event"] == "lost" for e in events(caplog))
    assert [r for r in caplog.records if "late report" in r.getMessage() and wid in r.getMessage()]
    assert len(env.callbacks) == 1


# 31
async def test_no_double_execution_after_redelivery(app: App, env: Env) -> None:
    p = pool(app)
    gate = asyncio.Event()
    calls: list[int] = []

    @app.action(name="hang")
    async def hang() -> None:
        calls.append(1)
        await gate.wait()

    wid = await p.enqueue(
        "hang", {}, retry=RetryBehavior(max_attempts=2, initial_backoff_ms=60_000, base=1)
    )
    async with background_worker(app):
        await settle(lambda: len(calls) == 1)
        await _lose_running_attempt(app, p, env)
        # arq re-delivers the dead attempt's job (same id, token 1): fenced off
        await p._run_dispatched(wid, "1")
        assert calls == [1]
        assert await p.status(wid) == Pending(1)
        gate.set()


# 33
async def test_timeout(app: App, env: Env) -> None:
    p = pool(app)
    rb = RetryBehavior(max_attempts=2, initial_backoff_ms=0, base=1)
    await p.enqueue("sleepy", {"s": 5}, timeout_ms=200, retry=rb, on_complete="cb")
    await run_until_idle(app)
    assert env.n == 2
    assert [c.result for c in env.callbacks] == [Failed("Timed out after 200 ms")]


# 34
async def test_graceful_shutdown_releases(app: App, env: Env) -> None:
    p = pool(app)
    wid = await p.enqueue("blocked", {"i": 4}, on_complete="cb")
    async with background_worker(app, job_completion_wait=0):
        await settle(lambda: env.running == 1)
    # the worker stopped: the attempt was handed back, nothing consumed
    assert await p.status(wid) == Running(0)
    assert (await p.item(wid))["state"] == "dispatched"  # type: ignore[index]
    env.gate.set()
    await run_until_idle(app)
    assert [c.result for c in env.callbacks] == [Success(4)]
    assert env.calls == [("blocked", 4), ("blocked", 4)]


# 35 (DEVIATION: the reference reports finished for ids it does not know)
async def test_unknown_id_status(app: App, env: Env) -> None:
    assert await pool(app).status("nope") == NotFound()


# 36
async def test_config_inheritance_and_override(app: App, env: Env) -> None:
    await pool(app).set_config(max_parallelism=3)
    await pool(app).enqueue("add", {"x": 1})
    assert (await pool(app).get_config()).max_parallelism == 3
    await pool(app, max_parallelism=7).enqueue("add", {"x": 1})
    assert (await pool(app).get_config()).max_parallelism == 7


_RECORD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def fields(r: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a log record carries (its ``extra``)."""
    return {k: v for k, v in vars(r).items() if k not in _RECORD_ATTRS}


def events(caplog: pytest.LogCaptureFixture, logger: str = "rkit.workpool") -> list[dict[str, Any]]:
    """The pool events logged: each record's fields (``event``, ``work_id``, ...)."""
    return [fields(r) for r in caplog.records if r.name == logger and hasattr(r, "event")]


# 37
@pytest.mark.parametrize("level", ["REPORT", "WARN"])
async def test_report_math(
    app: App, env: Env, level: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "rkit.workpool")
    p = pool(app, log_level=level)  # type: ignore[arg-type]
    await p.pump()  # starts the report period at T0
    await app.redis.hset(
        p.keys[7],
        mapping={"r_completed": 10, "r_succeeded": 6, "r_failed": 2, "r_retries": 2},
    )
    await p.enqueue("add", {"x": 1}, run_at=T0 + 10**9)  # writes the log level
    app.clock.advance(60_000)  # type: ignore[attr-defined]
    await p.pump()
    reports = [e for e in events(caplog) if e["event"] == "report"]
    if level == "WARN":
        assert reports == []
        return
    assert len(reports) == 1
    assert reports[0]["failure_rate"] == 0.4 and reports[0]["permanent_failure_rate"] == 0.25
    stats = await app.redis.hgetall(p.keys[7])
    assert stats["r_completed"] == "0"


# 38
@pytest.mark.parametrize("level", ["INFO", "REPORT"])
async def test_event_levels(
    app: App, env: Env, level: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "rkit.workpool")
    p = pool(app, log_level=level)  # type: ignore[arg-type]
    await p.enqueue("add", {"x": 1})
    await run_until_idle(app)
    evs = events(caplog)
    assert all(e["component"] == "workpool" for e in evs)
    if level == "INFO":
        assert [e["event"] for e in evs] == ["enqueued", "started", "completed"]
        assert "start_lag" in evs[1]
        assert evs[2]["status"] == "success" and evs[2]["attempts"] == 1
    else:
        assert [e["event"] for e in evs if e["event"] != "report"] == []


# 39
async def test_one_slot_per_pool(app: App, env: Env) -> None:
    from redis.crc import key_slot

    p, q = pool(app, "p", max_parallelism=1), pool(app, "q")
    await p.enqueue("blocked", {"i": 1}, on_complete="cb")
    await p.enqueue("add", {"x": 1}, on_complete="cb")
    await q.enqueue("add", {"x": 1})
    pk, qk = await pool_keys(app, p), await pool_keys(app, q)
    assert len(pk) >= 6
    slots = {key_slot(k.encode()) for k in pk}
    # arq job keys of this pool's attempts carry the same tag
    queue = await app.queue_pool()
    jobs = [k.decode() async for k in queue.scan_iter(match="arq:job:*")]
    mine = [j for j in jobs if p.tag[p.tag.index("{") :] in j]
    assert mine
    slots |= {key_slot(j.encode()) for j in mine}
    assert len(slots) == 1
    assert not set(pk) & set(qk)
    env.gate.set()


# 40
async def test_unregistered_function(app: App, env: Env) -> None:
    p = pool(app)
    with pytest.raises(FunctionNotRegistered):
        await p.enqueue("no.such:fn", {})
    with pytest.raises(FunctionNotRegistered):
        await p.enqueue("add", {"x": 1}, on_complete="no.such:cb")
    assert await pool_keys(app, p) == []
