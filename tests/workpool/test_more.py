"""Bad input (clear error, nothing written), run-time failures, concurrency, and the
smaller API surface of the workpool."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from rkit import (
    App,
    ConfigError,
    FunctionNotRegistered,
    PayloadTooLarge,
    SerializationError,
)
from rkit.testing import background_worker, run_until_idle
from rkit.workpool import (
    Failed,
    Finished,
    NotFound,
    OnCompleteArgs,
    Pending,
    RetryBehavior,
    Success,
    Workpool,
    pool_names,
)

from .test_scenarios import Env, pool, pool_keys, settle


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda p: p.enqueue("add", {"x": object()}),
            SerializationError,
            "arguments of function add",
        ),
        (lambda p: p.enqueue("add", {"x": float("nan")}), SerializationError, "JSON"),
        (lambda p: p.enqueue("add", [1]), TypeError, "mapping"),
        (lambda p: p.enqueue("add", {1: 2}), TypeError, "str keys"),
        (lambda p: p.enqueue("add", {"x": 1}, kind="job"), ConfigError, "kind"),
        (lambda p: p.enqueue("add", {"x": 1}, run_at=float("inf")), ConfigError, "run_at"),
        (lambda p: p.enqueue("add", {"x": 1}, timeout_ms=0), ConfigError, "timeout_ms"),
        (lambda p: p.enqueue("add", {"x": 1}, retry="yes"), ConfigError, "retry"),
        (
            lambda p: p.enqueue(
                "add",
                {"x": 1},
                retry=True,
                retry_behavior=RetryBehavior(max_attempts=1, initial_backoff_ms=1, base=1),
            ),
            ConfigError,
            "retry_behavior",
        ),
        (
            lambda p: p.enqueue("add", {"x": 1}, on_complete="cb", context={1}),
            SerializationError,
            "context",
        ),
        (
            lambda p: p.enqueue("add", {"x": 1}, on_complete="cb", context="x" * 1_000_001),
            PayloadTooLarge,
            "OnComplete context for function add too large",
        ),
        (lambda p: p.enqueue_batch("add", [{"x": 1}, {"x": object()}]), SerializationError, "add"),
        (lambda p: p.enqueue_batch("add", {"x": 1}), TypeError, "sequence"),
        (lambda p: p.enqueue(lambda: None, {}), FunctionNotRegistered, "registered"),
        (lambda p: p.set_config(log_level="LOUD"), ConfigError, "log_level"),
        (lambda p: p.set_config(max_parallelism=True), ConfigError, ">= 0"),
        (lambda p: p.cancel_all(limit=0), ConfigError, "limit"),
    ],
)
async def test_bad_input_writes_nothing(
    app: App, env: Env, call: Any, error: type[Exception], match: str
) -> None:
    p = pool(app)
    with pytest.raises(error, match=match):
        await call(p)
    assert await pool_keys(app, p) == []
    assert await pool_names(app) == []


def test_bad_constructor_arguments(app: App) -> None:
    for name in ("", "a{b}", "x" * 65, "sp ace"):
        with pytest.raises(ConfigError, match="pool name"):
            Workpool(app, name)
    with pytest.raises(ConfigError, match="log_level"):
        Workpool(app, "p", log_level="LOUD")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="<= 5"):
        Workpool(app, "p", max_parallelism=6, parallelism_limit=5)
    with pytest.raises(ConfigError, match="lease_ms"):
        Workpool(app, "p", lease_ms=0)
    with pytest.raises(ConfigError, match="keep_result_ms"):
        Workpool(app, "p", keep_result_ms=-1)


async def test_run_time_failures_are_recorded(app: App, env: Env) -> None:
    p = pool(app)

    @app.action(name="returns_set")
    async def returns_set() -> object:
        return {1}

    @app.action(name="returns_big")
    async def returns_big() -> str:
        return "x" * 100

    small = pool(app, "small", max_result_bytes=50)
    a = await p.enqueue("returns_set", {}, retry=True, on_complete="cb")
    b = await small.enqueue("returns_big", {}, on_complete="cb")
    c = await p.enqueue("add", {"x": 1}, retry=True, on_complete="cb")
    app.actions.pop("add")  # the worker no longer knows it: a recorded failure
    await run_until_idle(app)
    results = {x.work_id: x.result for x in env.callbacks}
    assert isinstance(results[a], Failed) and "not JSON-serializable" in results[a].error
    assert results[b] == Failed("Return value too large: 102 bytes (max: 50 bytes)")
    assert results[c] == Failed("No action registered under the name 'add'.")


async def test_keep_result_and_expire(app: App, env: Env) -> None:
    p = pool(app, keep_result_ms=10_000)
    wid = await p.enqueue("add", {"x": 41})
    await run_until_idle(app)
    assert await p.get_result(wid) == Success(42)
    assert await p.status(wid) == Finished()
    app.clock.advance(10_001)  # type: ignore[attr-defined]
    assert await p.get_result(wid) is None
    assert await p.expire() == 1
    assert await p.item(wid) is None


async def test_define_on_complete_with_context_model(app: App, env: Env) -> None:
    p = pool(app)
    seen: list[Any] = []

    class Ctx(BaseModel):
        order: int

    @p.define_on_complete(context_model=Ctx, name="typed_cb")
    async def typed(args: OnCompleteArgs) -> None:
        seen.append(args.context)

    await p.enqueue("add", {"x": 1}, on_complete=typed, context={"order": 7})
    bad = await p.enqueue("add", {"x": 1}, on_complete="typed_cb", context={"order": "x"})
    for _ in range(4):
        await run_until_idle(app)
        app.clock.advance(2_000)  # type: ignore[attr-defined]
    assert seen == [Ctx(order=7)]
    assert [d.work_id for d in await p.dead_letters()] == [bad]
    assert await p.replay_dead_letter(bad) is True
    assert await p.replay_dead_letter(bad) is False


async def test_cancel_all_before(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=0)
    old = await p.enqueue("add", {"x": 1})
    app.clock.advance(1_000)  # type: ignore[attr-defined]
    new = await p.enqueue("add", {"x": 2})
    assert await p.cancel_all(before=(app.clock.now_ms() or 0) - 500) == 1
    assert await p.status_batch([old, new]) == [NotFound(), Pending(0)]  # old: forgotten
    assert await p.status_batch([]) == []


async def test_cap_holds_with_two_workers_in_one_process(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=3)

    @app.action(name="short")
    async def short(i: int) -> int:
        env.running += 1
        env.max_running = max(env.max_running, env.running)
        await asyncio.sleep(0.002)
        env.running -= 1
        return i

    await asyncio.gather(*(p.enqueue("short", {"i": i}, on_complete="cb") for i in range(60)))
    async with background_worker(app), background_worker(app):
        await settle(lambda: len(env.callbacks) == 60, timeout=20)
    assert env.max_running <= 3
    assert sorted(c.result.return_value for c in env.callbacks) == list(range(60))  # type: ignore[union-attr]
    assert (await p.diagnostics()).running == 0


async def test_diagnostics_and_listings(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=1)
    first = await p.enqueue("blocked", {"i": 1})
    second = await p.enqueue("add", {"x": 1}, run_after=5_000)
    d = await p.diagnostics()
    assert (d.running, d.waiting, d.due, d.spare_capacity, d.live) == (1, 1, 0, 0, 2)
    assert [r.work_id for r in await p.running()] == [first]
    assert [x["work_id"] for x in await p.pending()] == [second]
    assert "p" in await pool_names(app)
    env.gate.set()


async def test_worker_self_fences_when_it_cannot_renew(
    app: App, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut off from Redis, a worker cancels its attempt before the lease could expire
    unseen (so no second copy can run beside it), does not report it, and hands it
    back once Redis answers (here at once: only heartbeats fail) under a new token,
    no attempt used; the reaper never sees it as lost."""
    from redis.exceptions import ConnectionError

    p = pool(app, lease_ms=1_500)
    cancelled = asyncio.Event()

    @app.action(name="until_cancelled")
    async def until_cancelled() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    wid = await p.enqueue("until_cancelled", {})
    real = p._call

    async def no_heartbeat(op: str, *args: Any, **kw: Any) -> Any:
        if op == "heartbeat":
            raise ConnectionError("partitioned")
        return await real(op, *args, **kw)

    monkeypatch.setattr(p, "_call", no_heartbeat)
    async with background_worker(app):
        for _ in range(500):
            first = (await p.item(wid)) or {}
            if first.get("state") == "running":
                break
            await asyncio.sleep(0.01)
        # fencing follows the App's clock (here the test clock): time passes on it
        app.clock.advance(900)  # type: ignore[attr-defined]
        await p.pump()  # renews nothing (partitioned), reaps nothing (not yet expired)
        assert not cancelled.is_set()  # 900 ms < lease - margin (1,500 - 500)
        app.clock.advance(200)  # type: ignore[attr-defined]
        await asyncio.wait_for(cancelled.wait(), timeout=5)
        for _ in range(500):
            item = (await p.item(wid)) or {}
            if item.get("token") != first["token"]:
                break
            await asyncio.sleep(0.01)
        assert item["attempts"] == first["attempts"]  # handed back: no attempt used
    app.clock.advance(10_000)  # type: ignore[attr-defined]
    await p.pump()
    assert "lost" not in (await p.diagnostics()).stats
