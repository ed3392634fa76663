"""spec/action-cache.md §8: every acceptance scenario on fakeredis, real Redis and a
3-node Cluster (the ``app`` fixture is parametrised over the three)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from rkit import App, CacheValueTooLarge, TestClock
from rkit.action_cache import ActionCache, Hit, Miss, PutResult, remove_all

T0 = 1_700_000_040_000.0
YEAR = 365 * 24 * 3600 * 1000


class Double:
    """double(x) -> {"y": 2x}, counting calls; ``factor``/``fail`` change behaviour."""

    def __init__(self) -> None:
        self.calls = 0
        self.factor = 2
        self.fail: BaseException | None = None
        self.__qualname__ = "double"
        self.__module__ = __name__

    async def __call__(self, x: int) -> dict[str, int]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return {"y": self.factor * x}


@pytest.fixture
def double() -> Double:
    return Double()


@pytest.fixture
def cache(app: App, double: Double) -> ActionCache[dict[str, int]]:
    return ActionCache(app, double, name="double")


def log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "rkit.action_cache"]


async def entry_key(cache: ActionCache[Any], args: dict[str, Any]) -> str:
    from rkit.action_cache import _digest, canonical_args

    return cache._store.entry(_digest(canonical_args(args)))


# 1
async def test_miss_then_hit(cache: ActionCache[Any], double: Double) -> None:
    assert await cache.fetch({"x": 2}) == {"y": 4}
    assert await cache.fetch({"x": 2}) == {"y": 4}
    assert double.calls == 1


# 2
async def test_args_distinguish_entries(cache: ActionCache[Any], double: Double) -> None:
    await cache.fetch({"x": 2})
    await cache.fetch({"x": 3})
    assert double.calls == 2
    await cache.fetch({"x": 2})
    assert double.calls == 2


# 3
async def test_key_order_irrelevant(app: App) -> None:
    calls = 0

    async def add(a: int, b: int) -> int:
        nonlocal calls
        calls += 1
        return a + b

    c = ActionCache(app, add, name="add")
    assert await c.fetch({"a": 1, "b": 2}) == 3
    assert await c.fetch({"b": 2, "a": 1}) == 3
    assert await c.fetch({"b": 2.0, "a": 1}) == 3  # 1.0 == 1 as in the reference
    assert calls == 1


# 4
async def test_name_is_part_of_the_key(app: App, double: Double) -> None:
    v1 = ActionCache(app, double, name="v1")
    v2 = ActionCache(app, double, name="v2")
    await v1.fetch({"x": 2})
    await v2.fetch({"x": 2})
    assert double.calls == 2
    assert await v1.remove_all_for_name() == 1
    assert isinstance(await v2.get({"x": 2}), Hit)
    assert isinstance(await v1.get({"x": 2}), Miss)


# 5
async def test_ttl_boundary(app: App, double: Double, clock: TestClock) -> None:
    c = ActionCache(app, double, name="double", ttl=1000)
    await c.fetch({"x": 1})
    clock.set(T0 + 999)
    await c.fetch({"x": 1})
    assert double.calls == 1
    clock.set(T0 + 1000)
    await c.fetch({"x": 1})
    assert double.calls == 2
    assert isinstance(await c.get({"x": 1}), Hit)


# 6
async def test_no_ttl_never_expires(
    cache: ActionCache[Any], double: Double, clock: TestClock
) -> None:
    await cache.fetch({"x": 1})
    clock.advance(10 * YEAR)
    await cache.fetch({"x": 1})
    assert double.calls == 1


# 7
async def test_read_ttl_shorter_than_write_ttl(
    cache: ActionCache[Any], double: Double, clock: TestClock
) -> None:
    await cache.fetch({"x": 1})
    clock.set(T0 + 600)
    await cache.fetch({"x": 1}, ttl=500)
    assert double.calls == 2
    clock.set(T0 + 600 + 500)
    assert isinstance(await cache.get({"x": 1}, ttl=None), Miss)


# 8
async def test_read_ttl_does_not_touch_the_entry(
    app: App, cache: ActionCache[Any], clock: TestClock
) -> None:
    await cache.fetch({"x": 1})
    clock.set(T0 + 10)
    assert isinstance(await cache.get({"x": 1}, ttl=1000), Hit)
    key = await entry_key(cache, {"x": 1})
    assert await app.redis.hget(key, "x") is None
    assert await app.redis.pttl(key) == -1


# 9
async def test_per_call_ttl_zero_is_always_stale(app: App, double: Double) -> None:
    c = ActionCache(app, double, name="double", ttl=10_000)
    for _ in range(3):
        await c.fetch({"x": 1}, ttl=0)
    assert double.calls == 3


# 10
async def test_force_refreshes(cache: ActionCache[Any], double: Double) -> None:
    await cache.fetch({"x": 2})
    double.factor = 2.5  # type: ignore[assignment]
    assert await cache.fetch({"x": 2}, force=True) == {"y": 5}
    assert double.calls == 2
    assert await cache.fetch({"x": 2}) == {"y": 5}
    assert double.calls == 2


# 11
async def test_action_failure(cache: ActionCache[Any], double: Double) -> None:
    double.fail = RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        await cache.fetch({"x": 1})
    assert await cache.get({"x": 1}) == Miss(None)


# 12
async def test_failure_keeps_the_stale_entry(app: App, double: Double, clock: TestClock) -> None:
    c = ActionCache(app, double, name="double", ttl=1000)
    await c.fetch({"x": 1})
    entry_id = await app.redis.hget(await entry_key(c, {"x": 1}), "id")
    clock.advance(1000)
    double.fail = RuntimeError("down")
    with pytest.raises(RuntimeError):
        await c.fetch({"x": 1})
    assert await c.get({"x": 1}) == Miss(entry_id)


# 13
async def test_remove(cache: ActionCache[Any]) -> None:
    await cache.fetch({"x": 1})
    await cache.fetch({"x": 2})
    assert await cache.remove({"x": 1}) is True
    assert isinstance(await cache.get({"x": 1}), Miss)
    assert isinstance(await cache.get({"x": 2}), Hit)
    assert await cache.remove({"x": 1}) is False


# 14
async def test_remove_all_for_name_paging(
    app: App, cache: ActionCache[Any], double: Double
) -> None:
    other = ActionCache(app, double, name="other")
    for x in range(5):
        await cache.fetch({"x": x})
    await other.fetch({"x": 0})
    assert await cache.remove_all_for_name(batch_size=2) == 5
    assert isinstance(await other.get({"x": 0}), Hit)
    assert await app.redis.zcard(cache._store.idx) == 0


# 15
async def test_remove_all_before(app: App, double: Double, clock: TestClock) -> None:
    a = ActionCache(app, double, name="A")
    b = ActionCache(app, double, name="B")
    await a.fetch({"x": 1})
    await b.fetch({"x": 1})
    clock.set(T0 + 10_000)
    await a.fetch({"x": 2})
    assert await remove_all(app, before=T0 + 5_000) == 2
    assert isinstance(await a.get({"x": 2}), Hit)
    assert isinstance(await a.get({"x": 1}), Miss) and isinstance(await b.get({"x": 1}), Miss)


# 16
async def test_low_level_get_put(cache: ActionCache[Any]) -> None:
    assert await cache.get({"x": 1}) == Miss(None)
    assert await cache.put({"x": 1}, {"v": 1}, ttl=1000) == PutResult(False, False)
    assert await cache.get({"x": 1}) == Hit({"v": 1})


# 17
async def test_put_reuses_a_matching_fresh_entry(cache: ActionCache[Any]) -> None:
    await cache.put({"x": 1}, "old", ttl=1000)
    assert await cache.put({"x": 1}, "other", ttl=2000) == PutResult(True, False)
    assert await cache.get({"x": 1}) == Hit("old")


# 18
async def test_put_replaces_the_observed_stale_entry(
    app: App, cache: ActionCache[Any], clock: TestClock
) -> None:
    await cache.put({"x": 1}, "old", ttl=1000)
    clock.advance(1000)
    miss = await cache.get({"x": 1})
    assert isinstance(miss, Miss) and miss.expired_entry is not None
    assert await cache.put(
        {"x": 1}, "new", ttl=1000, expired_entry=miss.expired_entry
    ) == PutResult(False, True)
    assert await app.redis.hget(await entry_key(cache, {"x": 1}), "id") != miss.expired_entry
    assert await cache.get({"x": 1}) == Hit("new")


# 19
async def test_ttl_ness_switch_replaces(app: App, cache: ActionCache[Any]) -> None:
    await cache.put({"x": 1}, "a", ttl=1000)
    assert await cache.put({"x": 1}, "b", ttl=None) == PutResult(False, True)
    key = await entry_key(cache, {"x": 1})
    assert await app.redis.hget(key, "x") is None
    assert await app.redis.zcard(cache._store.exp) == 0
    assert await app.redis.pttl(key) == -1
    assert await cache.put({"x": 1}, "c", ttl=1000) == PutResult(False, True)
    assert await app.redis.zcard(cache._store.exp) == 1


# 20
async def test_concurrent_cold_misses(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rkit.action_cache")
    started = 0
    all_in = asyncio.Event()

    async def slow(x: int) -> int:
        nonlocal started
        started += 1
        me = started
        if started == 20:
            all_in.set()
        await all_in.wait()  # every caller is inside the action at once
        return me

    c = ActionCache(app, slow, name="slow", log=True)
    puts: list[tuple[str, PutResult]] = []
    real_put = c._store.put

    async def recording_put(*args: Any) -> PutResult:
        res = await real_put(*args)
        puts.append((args[2], res))  # (encoded value, outcome)
        return res

    c._store.put = recording_put  # type: ignore[method-assign]
    results = await asyncio.gather(*(c.fetch({"x": 1}) for _ in range(20)))
    assert sorted(results) == list(range(1, 21))
    outcomes = [ln["put"] for ln in log_lines(caplog) if ln["get"] == "miss"]
    assert outcomes.count("created") == 1 and outcomes.count("hit") == 19
    assert await app.redis.zcard(c._store.idx) == 1
    (created_value,) = [json.loads(v) for v, res in puts if not res.cache_hit]
    assert await c.get({"x": 1}) == Hit(created_value)


# 21
async def test_concurrent_stale_misses(
    app: App, clock: TestClock, caplog: pytest.LogCaptureFixture
) -> None:
    inside = 0
    all_in = asyncio.Event()
    gate = False

    async def slow(x: int) -> int:
        nonlocal inside
        if gate:
            inside += 1
            if inside == 10:
                all_in.set()
            await all_in.wait()  # all ten saw the stale entry before any fills
        return x

    c = ActionCache(app, slow, name="slow", ttl=1000, log=True)
    await c.fetch({"x": 1})
    clock.advance(1000)
    gate = True
    caplog.set_level(logging.INFO, logger="rkit.action_cache")
    caplog.clear()
    await asyncio.gather(*(c.fetch({"x": 1}) for _ in range(10)))
    puts = [ln["put"] for ln in log_lines(caplog)]
    assert puts.count("replaced") == 1 and puts.count("hit") == 9


# 22
async def test_single_flight(app: App) -> None:
    calls = 0

    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # a slow action, so the other callers must wait
        return calls

    c = ActionCache(app, slow, name="slow", single_flight=True, poll_ms=5)
    results = await asyncio.gather(*(c.fetch({"x": 1}) for _ in range(20)))
    assert calls == 1 and results == [1] * 20
    assert not await app.redis.exists(c._store.lock(_member({"x": 1})))


async def test_single_flight_late_claimer_rechecks(app: App) -> None:
    """A caller whose miss came just before the winner stored its value and whose
    claim comes just after the winner's release must take the stored value."""
    calls = 0

    async def act(x: int) -> int:
        nonlocal calls
        calls += 1
        return calls

    c = ActionCache(app, act, name="late", single_flight=True, poll_ms=5)
    assert await c.fetch({"x": 1}) == 1  # the winner: stored, lease released
    from rkit.action_cache import canonical_args

    canon = canonical_args({"x": 1})
    # the late caller resumes after its (stale) miss, straight into the claim
    assert await c._fill_single_flight({"x": 1}, canon, _member({"x": 1}), None, None) == 1
    assert calls == 1
    assert await c.fetch({"x": 1}, force=True) == 2  # force still recomputes
    assert calls == 2 and await c.fetch({"x": 1}) == 2


def _member(args: dict[str, Any]) -> str:
    from rkit.action_cache import _digest, canonical_args

    return _digest(canonical_args(args))


# 23 (issue 18: a failure is shared with the callers that waited for it)
async def test_single_flight_failure(app: App) -> None:
    calls = 0

    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        if calls == 1:
            raise RuntimeError("first call fails")
        return 42

    c = ActionCache(app, flaky, name="flaky", single_flight=True, poll_ms=5)
    results = await asyncio.gather(*(c.fetch({"x": 1}) for _ in range(5)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, RuntimeError) for r in results)
    assert len({id(r) for r in results}) == 1  # the winner's own exception, shared
    assert not await app.redis.exists(c._store.lock(_member({"x": 1})))
    assert await c.fetch({"x": 1}) == 42 and calls == 2  # a new caller tries again
    s = await c.stats()
    assert (s.hits, s.misses, s.coalesced) == (0, 6, 0)


# 24
async def test_bad_args(cache: ActionCache[Any], double: Double, app: App) -> None:
    with pytest.raises(TypeError):
        await cache.fetch({"x": {1, 2}})
    with pytest.raises(ValueError):
        await cache.fetch({"x": float("nan")})
    with pytest.raises(TypeError):
        await cache.fetch({"x": b"bytes"})
    with pytest.raises(TypeError):
        await cache.fetch({1: 2})  # type: ignore[dict-item]
    assert double.calls == 0
    assert [k async for k in app.redis.scan_iter(match=f"rkit:{{{app.namespace}:*")] == []


# 25
def test_bad_construction(double: Double) -> None:
    app = App()
    with pytest.raises(ValueError):
        ActionCache(app, lambda x: x)
    with pytest.raises(ValueError):
        ActionCache(app, double, name="")
    with pytest.raises(ValueError):
        ActionCache(app, double, ttl=float("inf"))


# 26
async def embed(text: str) -> list[float]:
    return [float(len(text))]


def test_default_name() -> None:
    cache = ActionCache(App(), embed)
    assert cache.name == f"{__name__}:embed"


# 27
async def test_value_round_trip(app: App) -> None:
    value = {"s": "ünï😀", "f": 0.1, "n": None, "b": True, "l": [1, [2, 3]], "t": (4, 5)}

    async def produce() -> dict[str, Any]:
        return value

    c = ActionCache(app, produce, name="rt")
    assert await c.fetch() == value
    assert await c.fetch() == {**value, "t": [4, 5]}


# 28
async def test_oversized_value(app: App) -> None:
    calls = 0

    async def big() -> str:
        nonlocal calls
        calls += 1
        return "x" * 2048

    c = ActionCache(app, big, name="big", max_value_bytes=1024)
    with pytest.raises(CacheValueTooLarge):
        await c.fetch()
    assert calls == 1 and isinstance(await c.get(), Miss)
    skip = ActionCache(app, big, name="big-skip", max_value_bytes=1024, on_oversize="skip")
    assert await skip.fetch() == "x" * 2048
    assert isinstance(await skip.get(), Miss)


# 29
async def test_logging(cache: ActionCache[Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rkit.action_cache")
    cache.log = True
    await cache.fetch({"x": 2})
    await cache.fetch({"x": 2})
    assert [r.getMessage() for r in caplog.records if r.name == "rkit.action_cache"] == [
        '{"type":"action-cache-stats","name":"double","get":"miss","put":"created"}',
        '{"type":"action-cache-stats","name":"double","get":"hit"}',
    ]


# 30
async def test_physical_ttl(app: App, double: Double) -> None:
    c = ActionCache(app, double, name="double", ttl=1000)
    await c.fetch({"x": 1})
    pttl = await app.redis.pttl(await entry_key(c, {"x": 1}))
    assert 0 < pttl <= 1000 + c.gc_grace_ms
    plain = ActionCache(app, double, name="plain")
    await plain.fetch({"x": 1})
    assert await app.redis.pttl(await entry_key(plain, {"x": 1})) == -1


# 31
async def test_purge(app: App, double: Double, clock: TestClock) -> None:
    c = ActionCache(app, double, name="double", ttl=1000)
    for x in range(3):
        await c.fetch({"x": x})
    await c.fetch({"x": 9}, ttl=None)
    clock.set(T0 + 1000)
    assert await c.purge() == 3
    assert await app.redis.zcard(c._store.exp) == 0
    assert isinstance(await c.get({"x": 9}), Hit)


# 32
async def test_collision_guard(app: App, cache: ActionCache[Any], double: Double) -> None:
    await cache.fetch({"x": 1})
    await app.redis.hset(await entry_key(cache, {"x": 1}), "a", '{"x":"other"}')
    assert await cache.fetch({"x": 1}) == {"y": 2}
    assert double.calls == 2
    assert isinstance(await cache.get({"x": 1}), Hit)  # the fill overwrote it


# 33
async def test_redis_down(double: Double) -> None:
    from tests._servers import free_port

    app = App(
        redis=aioredis.Redis(port=free_port(), socket_connect_timeout=0.5, decode_responses=True)
    )
    c = ActionCache(app, double, name="double")
    with pytest.raises(redis.exceptions.ConnectionError):
        await c.fetch({"x": 1})
    assert double.calls == 0
    await app.aclose()


async def test_fail_open_runs_the_action_uncached(double: Double) -> None:
    from tests._servers import free_port

    app = App(
        redis=aioredis.Redis(port=free_port(), socket_connect_timeout=0.5, decode_responses=True)
    )
    c = ActionCache(app, double, name="double", fail_open=True)
    assert await c.fetch({"x": 1}) == {"y": 2}
    assert double.calls == 1
    await app.aclose()
