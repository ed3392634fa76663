"""Issues 16 and 18 for the action cache: single-flight waiters are woken on release
and counted as coalesced, a failure is shared with the callers that waited for it
(in this process and in others), the indexes are purged as the cache is used and
``entries`` counts live entries only, and bad or oversized input is refused before
Redis is touched."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from rkit import App, ConfigError, TestClock
from rkit.action_cache import ActionCache, Hit, _digest, canonical_args, purge_all
from rkit.errors import KeyTooLong, SingleFlightFailed
from rkit.testing import peer_app


async def _nkeys(app: App) -> int:
    """Keys of the App's namespace (on every Cluster node)."""
    return len([k async for k in app.redis.scan_iter(match=f"rkit:{{{app.namespace}:*")])


async def _leased(app: App, cache: ActionCache[Any], args: dict[str, Any]) -> None:
    """Wait until a winner holds the lease of ``args``."""
    for _ in range(1000):
        if await app.redis.exists(cache._store.lock(_member(args))):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("no winner took the lease")


def _member(args: dict[str, Any]) -> str:
    return _digest(canonical_args(args))


async def test_waiters_are_woken_by_the_release_not_by_polling(app: App) -> None:
    """poll_ms is 10 s: a waiter that polled would sleep that long before looking."""
    calls = 0

    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return x * 2

    c = ActionCache(app, slow, name="slow", single_flight=True, poll_ms=10_000)
    started = time.monotonic()
    results = await asyncio.gather(*(c.fetch({"x": 21}) for _ in range(50)))
    assert results == [42] * 50 and calls == 1
    assert time.monotonic() - started < 3.0
    s = await c.stats()
    assert (s.hits, s.misses, s.coalesced) == (0, 1, 49)
    assert s.hit_rate == pytest.approx(49 / 50)
    assert await c.fetch({"x": 21}) == 42
    assert (await c.stats()).hits == 1


async def test_waiters_in_another_process_are_woken_and_counted(app: App) -> None:
    """A second App on the same Redis (another process): its callers block on the
    outcome stream, wake when the winner releases, and count as coalesced."""
    calls = 0
    release = asyncio.Event()

    async def gated(x: int) -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return x + 1

    other = peer_app(app)
    try:
        a = ActionCache(app, gated, name="gated", single_flight=True, poll_ms=10_000)
        b = ActionCache(other, gated, name="gated", single_flight=True, poll_ms=10_000)
        winner = asyncio.create_task(a.fetch({"x": 1}))
        await _leased(app, a, {"x": 1})
        waiters = [asyncio.create_task(b.fetch({"x": 1})) for _ in range(20)]
        # all blocked on the winner's flight (the peer's Cluster client opens its
        # connections first: 0.1 s was not always enough on a loaded host)
        await asyncio.sleep(1.0)
        assert not any(w.done() for w in waiters)
        started = time.monotonic()
        release.set()
        assert await winner == 2 and await asyncio.gather(*waiters) == [2] * 20
        assert time.monotonic() - started < 3.0 and calls == 1
        s = await a.stats()
        assert (s.hits, s.misses, s.coalesced) == (0, 1, 20)
    finally:
        await other.aclose()


async def test_a_failure_is_shared_with_another_process_as_single_flight_failed(
    app: App,
) -> None:
    calls = 0
    release = asyncio.Event()

    async def failing(x: int) -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        raise ValueError(f"upstream said no to {x}")

    other = peer_app(app)
    try:
        a = ActionCache(app, failing, name="failing", single_flight=True)
        b = ActionCache(other, failing, name="failing", single_flight=True)
        winner = asyncio.create_task(a.fetch({"x": 3}))
        await _leased(app, a, {"x": 3})
        waiters = [asyncio.create_task(b.fetch({"x": 3})) for _ in range(5)]
        await asyncio.sleep(0.05)
        release.set()
        with pytest.raises(ValueError, match="upstream said no to 3"):
            await winner
        for w in waiters:
            with pytest.raises(SingleFlightFailed) as info:
                await w
            assert (info.value.error_type, info.value.message) == (
                "ValueError",
                "upstream said no to 3",
            )
        assert calls == 1
        assert (await a.stats()).misses == 6
    finally:
        await other.aclose()


async def test_two_hundred_waiters_on_a_failing_action_run_it_once(app: App) -> None:
    """Issue 18: 200 waiters on a 100 ms failing action made 200 runs over 21 s."""
    calls = 0

    async def broken(q: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        raise RuntimeError("backend down")

    c = ActionCache(app, broken, name="broken", single_flight=True)
    started = time.monotonic()
    results = await asyncio.gather(
        *(c.fetch({"q": "a"}) for _ in range(200)), return_exceptions=True
    )
    assert calls == 1 and time.monotonic() - started < 5.0
    assert all(isinstance(r, RuntimeError) and str(r) == "backend down" for r in results)
    # only new callers try again
    with pytest.raises(RuntimeError):
        await c.fetch({"q": "a"})
    assert calls == 2


async def test_many_tasks_many_keys_single_flight(app: App) -> None:
    """1,000 tasks over 10 keys: one run per key; every caller gets its key's value."""
    runs: dict[int, int] = {}

    async def compute(k: int) -> int:
        runs[k] = runs.get(k, 0) + 1
        await asyncio.sleep(0.02)
        return k * k

    c = ActionCache(app, compute, name="compute", single_flight=True)
    keys = [i % 10 for i in range(1000)]
    results = await asyncio.gather(*(c.fetch({"k": k}) for k in keys))
    assert results == [k * k for k in keys]
    assert runs == dict.fromkeys(range(10), 1)
    s = await c.stats()
    assert (s.entries, s.misses, s.hits + s.coalesced) == (10, 10, 990)
    assert c._flights == {}


async def test_a_cancelled_caller_does_not_cancel_the_flight(app: App) -> None:
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 5

    c = ActionCache(app, slow, name="cancel", single_flight=True)
    first = asyncio.create_task(c.fetch())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(c.fetch())
    await asyncio.sleep(0.005)
    first.cancel()
    assert await second == 5 and calls == 1
    assert first.cancelled()


async def test_a_winner_that_dies_lets_the_waiters_compete(app: App) -> None:
    """A lease that runs out without an outcome (a killed winner) is not a failure to
    share: the waiters take over and run the action."""
    c = ActionCache(app, _seven, name="seven", single_flight=True, lease_ms=100)
    await app.redis.set(c._store.lock(_member({})), "killed-worker", px=100)
    started = time.monotonic()
    assert await asyncio.gather(*(c.fetch() for _ in range(10))) == [7] * 10
    assert time.monotonic() - started < 3.0


async def _seven() -> int:
    return 7


async def test_entries_count_live_entries_only(app: App, clock: TestClock) -> None:
    c = ActionCache(app, _double, name="live", ttl=1_000)
    for x in range(3):
        await c.fetch({"x": x})
    await c.fetch({"x": 99}, ttl=None)  # never expires
    assert (await c.stats()).entries == 4
    clock.advance(999)
    assert (await c.stats()).entries == 4
    clock.advance(1)  # expiry == now is stale, as in get
    assert (await c.stats()).entries == 1


async def _double(x: int) -> int:
    return 2 * x


async def test_fills_purge_expired_entries_as_they_go(app: App, clock: TestClock) -> None:
    c = ActionCache(app, _double, name="purge-as-you-go", ttl=1_000)
    for x in range(40):
        await c.fetch({"x": x})
    clock.advance(1_000)
    assert await app.redis.zcard(c._store.idx) == 40
    await c.fetch({"x": 1000})  # one fill removes up to 16 expired entries
    assert await app.redis.zcard(c._store.idx) == 41 - 16
    assert await app.redis.zcard(c._store.exp) == 41 - 16
    for x in range(1001, 1003):
        await c.fetch({"x": x})
    assert await app.redis.zcard(c._store.idx) == 3  # only the live ones are left
    assert await app.redis.zcard(c._store.exp) == 3
    assert not await app.redis.exists(c._store.entry(_member({"x": 0})))
    assert (await c.stats()).entries == 3
    assert await purge_all(app) == 0


async def test_negative_and_oversized_ttls_are_refused(app: App) -> None:
    calls = 0

    async def act() -> int:
        nonlocal calls
        calls += 1
        return 1

    c = ActionCache(app, act, name="ttl")
    for bad in (-5, -0.001, 1e13, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="ttl"):
            await c.fetch(ttl=bad)
        with pytest.raises(ConfigError, match="ttl"):
            await c.get(ttl=bad)
        with pytest.raises(ConfigError, match="ttl"):
            await c.put({}, 1, ttl=bad)
        with pytest.raises(ConfigError, match="ttl"):
            ActionCache(app, act, name=f"ttl-{bad}", ttl=bad)
    with pytest.raises(ConfigError, match="lease_ms"):
        ActionCache(app, act, name="lease", lease_ms=1e300)
    assert calls == 0 and await _nkeys(app) == 0
    assert await c.fetch(ttl=0) == 1 and await c.fetch(ttl=1e12) == 1  # bounds included


async def test_cache_names_are_limited(app: App) -> None:
    long = "n" * 1025
    with pytest.raises(KeyTooLong, match="cache name is 1025 bytes"):
        ActionCache(app, _seven, name=long)
    with pytest.raises(KeyTooLong):
        ActionCache(app, _seven, name="é" * 513)  # 1,026 UTF-8 bytes
    with pytest.raises(KeyTooLong):
        from rkit.action_cache import cache_stats

        await cache_stats(app, "x" * 1_000_000)
    assert await _nkeys(app) == 0
    ActionCache(app, _seven, name="n" * 1024)  # the limit itself is fine
    c = ActionCache(app, _seven, name=long, max_name_bytes=2048)  # configurable
    assert await c.fetch() == 7
    assert (await c.stats()).entries == 1
    assert await purge_all(app) == 0  # registered names are never refused
    with pytest.raises(ConfigError, match="max_name_bytes"):
        ActionCache(app, _seven, name="m", max_name_bytes=0)


async def test_batch_sizes_are_bounded(app: App) -> None:
    c = ActionCache(app, _seven, name="batch")
    await c.fetch()
    with pytest.raises(ConfigError, match="batch_size"):
        await c.remove_all_for_name(batch_size=2**70)
    assert isinstance(await c.get(), Hit)  # nothing was removed
