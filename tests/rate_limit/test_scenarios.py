"""spec/rate-limiter.md §8: every acceptance scenario, on fakeredis, real Redis and
a 3-node Cluster (the ``app`` fixture is parametrised over the three)."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from pydantic import ValidationError

from rkit import (
    HOUR,
    MINUTE,
    SECOND,
    App,
    FixedWindow,
    LimitRequest,
    RateLimitCountTooLarge,
    RateLimited,
    RateLimiter,
    RateLimitNotDefined,
    TestClock,
    TokenBucket,
    calculate_rate_limit,
    is_rate_limit_error,
)

T0 = 1_700_000_040_000.0


def TB(rate: float, period: float, **kw: object) -> TokenBucket:
    return TokenBucket(rate=rate, period=period, **kw)  # type: ignore[arg-type]


def FW(rate: float, period: float, **kw: object) -> FixedWindow:
    return FixedWindow(rate=rate, period=period, **kw)  # type: ignore[arg-type]


def zero() -> float:
    return 0.0


def seq(*values: float) -> Callable[[], float]:
    it: Iterator[float] = iter(values)
    return lambda: next(it, 0.0)


async def stored(
    rl: RateLimiter, name: str, key: str | None = None, shard: int = 0
) -> float | None:
    v = await rl.app.redis.hget(rl.key_for(name, key), f"{shard}:v")
    return None if v is None else float(v)


async def exists(rl: RateLimiter, name: str, key: str | None = None) -> bool:
    return bool(await rl.app.redis.exists(rl.key_for(name, key)))


# 1
async def test_first_consume(app: App) -> None:
    rl = RateLimiter(app, {"send": TB(10, MINUTE)}, rng=zero)
    r = await rl.limit("send")
    assert r.ok and r.retry_after is None and bool(r)
    assert (await rl.get_value("send")).value == 9


# 2
async def test_exhaustion(app: App) -> None:
    rl = RateLimiter(app, {"send": TB(10, MINUTE)}, rng=zero)
    for _ in range(10):
        assert (await rl.limit("send")).ok
    r = await rl.limit("send")
    assert not r.ok and r.retry_after == 6000.0
    assert await stored(rl, "send") == 0


# 3
async def test_exact_refill(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"send": TB(10, MINUTE)}, rng=zero)
    assert (await rl.limit("send", count=5)).ok
    clock.set(T0 + 6_000)
    assert (await rl.limit("send", count=6)).ok
    assert await stored(rl, "send") == 0.0
    r = await rl.limit("send", count=10)
    assert not r.ok and r.retry_after == 60000.0


# 4
async def test_burst_capacity(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"b": TB(1, SECOND, capacity=3)}, rng=zero)
    assert (await rl.limit("b", count=3)).ok
    assert not (await rl.limit("b")).ok
    clock.set(T0 + 1_000)
    assert (await rl.limit("b")).ok


# 5
async def test_capacity_cap_after_idling(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"c": TB(10, MINUTE, capacity=3)}, rng=zero)
    assert (await rl.limit("c")).ok
    clock.advance(HOUR)
    assert (await rl.limit("c", count=3)).ok
    assert not (await rl.limit("c")).ok


# 6
async def test_fixed_window_mid_window_retry(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"fw": FW(10, MINUTE, start=0)}, rng=zero)
    clock.set(T0 + 45_000)
    assert (await rl.limit("fw", count=10)).ok
    r = await rl.limit("fw")
    assert not r.ok and r.retry_after == 15000


# 7
async def test_fixed_window_boundary(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"fw": FW(10, MINUTE, start=0)}, rng=zero)
    assert (await rl.limit("fw", count=10)).ok
    clock.set(T0 + 59_999)
    assert not (await rl.limit("fw")).ok
    clock.set(T0 + 60_000)
    assert (await rl.limit("fw")).ok


# 8
async def test_fixed_window_accumulation(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"fw": FW(10, MINUTE, capacity=25, start=0)}, rng=zero)
    assert (await rl.limit("fw", count=25)).ok
    clock.set(T0 + 180_000)
    assert (await rl.limit("fw", count=25)).ok
    assert not (await rl.limit("fw")).ok


# 9
async def test_token_bucket_reservation(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"r": TB(10, MINUTE)}, rng=zero)
    assert (await rl.limit("r", count=5)).ok
    clock.set(T0 + 6_000)
    r = await rl.limit("r", count=16, reserve=True)
    assert r.ok and r.retry_after == 60000.0
    assert await stored(rl, "r") == -10
    clock.set(T0 + 36_000)
    r = await rl.limit("r", count=5, reserve=True)
    assert r.ok and r.retry_after == 60000.0
    assert await stored(rl, "r") == -10


# 10
async def test_fixed_window_reservation(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"r": FW(10, MINUTE, start=0)}, rng=zero)
    assert (await rl.limit("r", count=5)).ok
    clock.set(T0 + 60_000)
    r = await rl.limit("r", count=16, reserve=True)
    assert r.ok and r.retry_after == 60000
    assert await stored(rl, "r") == -6
    clock.set(T0 + 90_000)
    r = await rl.limit("r", count=5, reserve=True)
    assert r.ok and r.retry_after == 90000
    assert await stored(rl, "r") == -11


# 11
async def test_debt_delays_plain_requests(app: App) -> None:
    rl = RateLimiter(app, {"d": TB(1, HOUR)}, rng=zero)
    res = await rl.limit("d", count=100, reserve=True)
    assert res.ok and res.retry_after is not None and res.retry_after > 0
    chk = await rl.check("d")
    assert not chk.ok and chk.retry_after is not None and chk.retry_after > res.retry_after


# 12
async def test_max_reserved_caps_debt(app: App) -> None:
    rl = RateLimiter(app, {"m": TB(1, HOUR, max_reserved=1)}, rng=zero)
    first = await rl.limit("m", count=2, reserve=True)
    assert first.ok and first.retry_after is not None and first.retry_after > 0
    before = await app.redis.hgetall(rl.key_for("m"))
    second = await rl.limit("m", count=1, reserve=True)
    assert not second.ok
    assert await app.redis.hgetall(rl.key_for("m")) == before


# 13
async def test_count_beyond_capacity(app: App) -> None:
    rl = RateLimiter(app, {"simple": FW(1, SECOND)}, rng=zero)
    with pytest.raises(RateLimitCountTooLarge) as info:
        await rl.limit("simple", count=2)
    assert "Rate limit simple count 2 exceeds 1" in str(info.value)
    assert not await exists(rl, "simple")


# 14
async def test_count_beyond_capacity_plus_max_reserved(app: App) -> None:
    rl = RateLimiter(app, {"x": FW(1, SECOND, max_reserved=2)}, rng=zero)
    with pytest.raises(RateLimitCountTooLarge) as info:
        await rl.limit("x", count=4, reserve=True)
    assert "count 4 exceeds 3.00" in str(info.value)
    assert not await exists(rl, "x")


# 15
async def test_reserve_without_max_allows_any_count(app: App) -> None:
    rl = RateLimiter(app, {"h": TB(1, HOUR)}, rng=zero)
    r = await rl.limit("h", count=1000, reserve=True)
    assert r.ok and r.retry_after == pytest.approx(999 * HOUR)


# 16
async def test_throws(app: App) -> None:
    rl = RateLimiter(app, {"t": TB(1, SECOND)}, rng=zero)
    assert (await rl.limit("t")).ok
    with pytest.raises(RateLimited) as info:
        await rl.limit("t", throws=True)
    exc = info.value
    assert exc.name == "t" and exc.retry_after > 0
    assert exc.to_dict()["kind"] == "RateLimited"
    assert exc.to_dict() == {"kind": "RateLimited", "name": "t", "retry_after": exc.retry_after}
    assert is_rate_limit_error(exc)
    assert not is_rate_limit_error(ValueError("x"))


# 17
async def test_throws_with_delayed_reservation(app: App) -> None:
    rl = RateLimiter(app, {"t": TB(1, SECOND)}, rng=zero)
    assert (await rl.limit("t")).ok
    before = await app.redis.hgetall(rl.key_for("t"))
    with pytest.raises(RateLimited):
        await rl.limit("t", reserve=True, throws=True)
    assert await app.redis.hgetall(rl.key_for("t")) == before
    assert await stored(rl, "t") == 0


# 18
async def test_check_never_writes(app: App) -> None:
    rl = RateLimiter(app, {"c": TB(1, SECOND)}, rng=zero)
    assert (await rl.check("c")).ok
    assert (await rl.check("c")).ok
    assert not await exists(rl, "c")


# 19
async def test_keys_are_independent(app: App) -> None:
    rl = RateLimiter(app, {"k": TB(1, SECOND)}, rng=zero)
    assert (await rl.limit("k", key="a")).ok
    assert not (await rl.limit("k", key="a")).ok
    assert (await rl.limit("k", key="b")).ok
    assert (await rl.limit("k")).ok


# 20
async def test_none_vs_empty_key(app: App) -> None:
    rl = RateLimiter(app, {"k": TB(1, SECOND)}, rng=zero)
    assert (await rl.limit("k", key=None)).ok
    assert (await rl.limit("k", key="")).ok
    assert rl.key_for("k", None) != rl.key_for("k", "")


# 21
async def test_reset_scope(app: App) -> None:
    rl = RateLimiter(app, {"r": TB(1, SECOND)}, rng=zero)
    assert (await rl.limit("r", key="k")).ok
    assert (await rl.limit("r")).ok
    await rl.reset("r")
    assert (await rl.check("r")).ok
    assert not (await rl.check("r", key="k")).ok
    await rl.reset("r", key="k")
    assert (await rl.check("r", key="k")).ok


# 22
async def test_unknown_name(app: App) -> None:
    rl = RateLimiter(app, {"send": TB(1, SECOND)}, rng=zero)
    with pytest.raises(RateLimitNotDefined) as info:
        await rl.limit("other")
    assert str(info.value).startswith("Rate limit other not defined.")
    assert (await rl.limit("other", config=TB(1, SECOND))).ok


# 23
@pytest.mark.parametrize(
    "make",
    [
        lambda: TB(0, SECOND),
        lambda: TB(1, 0),
        lambda: TB(1, SECOND, capacity=0),
        lambda: FW(1, SECOND, max_reserved=-1),
        lambda: TB(1, SECOND, start=5),
        lambda: TB(1, SECOND, shards=0.4),
        lambda: {"kind": "token bucket", "rate": float("nan"), "period": 1000},
        lambda: {"kind": "leaky bucket", "rate": 1, "period": 1000},
    ],
    ids=["rate0", "period0", "capacity0", "max_reserved-1", "tb-start", "shards0.4", "nan", "kind"],
)
async def test_config_validation(app: App, make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        cfg = make()
        rl = RateLimiter(app, rng=zero)
        await rl.limit("bad", config=cfg)  # type: ignore[arg-type]
    assert await app.redis.exists(RateLimiter(app).key_for("bad")) == 0


async def test_config_validation_error_types(app: App) -> None:
    with pytest.raises(ValidationError, match="Shards must be a positive number"):
        TB(1, SECOND, shards=0.4)
    assert TB(1, SECOND, shards=0).n_shards == 1
    assert TB(1, SECOND, shards=None).n_shards == 1
    assert TB(1, SECOND, shards=2.6).n_shards == 3
    rl = RateLimiter(app, {"ok": TB(1, SECOND)}, rng=zero)
    for bad in (-1, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError):
            await rl.limit("ok", count=bad)  # type: ignore[arg-type]
    assert not await exists(rl, "ok")


# 24
async def test_get_value_of_unused_limit(app: App) -> None:
    rl = RateLimiter(app, {"fw": FW(10, SECOND), "tb": TB(10, SECOND)}, rng=zero)
    v = await rl.get_value("fw")
    assert v.value == 10
    assert v.config.capacity == 10 and v.config.shards == 1
    assert isinstance(v.config.start, float)
    t = await rl.get_value("tb")
    assert t.value == 10 and t.config.start is None
    assert not await exists(rl, "fw") and not await exists(rl, "tb")


# 25
async def test_get_value_after_consumption(app: App) -> None:
    rl = RateLimiter(app, {"tb": TB(10, SECOND)}, rng=zero)
    assert (await rl.limit("tb", count=4)).ok
    assert (await rl.get_value("tb")).value == 6


# 26 (pure; backend-independent but cheap)
def test_pure_calculator() -> None:
    r = calculate_rate_limit((5, T0 - 30_000), TB(10, MINUTE), T0, 15)
    assert (r.value, r.ts, r.retry_after) == (-5, T0, 30000)
    w = T0 - 120_000
    f = calculate_rate_limit((5, w), FW(10, MINUTE), w + 45_000, 8)
    assert (f.value, f.ts, f.retry_after, f.window_start) == (-3, w, 15000, w)


# 27
async def test_concurrency_single_bucket(app: App) -> None:
    rl = RateLimiter(app, {"c": TB(50, MINUTE)}, rng=zero)
    results = await asyncio.gather(*(rl.limit("c") for _ in range(200)))
    assert sum(r.ok for r in results) == 50
    assert await stored(rl, "c") == 0


# 28
async def test_concurrency_sharded(app: App) -> None:
    rl = RateLimiter(app, {"s": TB(100, MINUTE, shards=10)}, rng=random.Random(7).random)
    results = await asyncio.gather(*(rl.limit("s") for _ in range(500)))
    ok = sum(r.ok for r in results)
    assert 90 <= ok <= 100
    for shard in range(10):
        v = await stored(rl, "s", shard=shard)
        assert v is None or v >= 0


# 29
async def test_power_of_two_one_shard_enough(app: App) -> None:
    rl = RateLimiter(app, {"p": TB(1, SECOND, shards=4, capacity=40)}, rng=seq(0.5, 0.0, 0.0, 0.0))
    key = rl.key_for("p")
    values = [1, 1, -1, 1]
    await app.redis.hset(
        key,
        mapping={f: v for i, x in enumerate(values) for f, v in ((f"{i}:v", x), (f"{i}:ts", T0))},
    )
    r = await rl.limit("p")
    assert r.ok
    assert [await stored(rl, "p", shard=i) for i in range(4)] == [1, 1, -1, 0]


# 30
async def test_power_of_two_combined_capacity(app: App) -> None:
    rl = RateLimiter(app, {"p": TB(1, SECOND, shards=3, capacity=30)}, rng=zero)
    key = rl.key_for("p")
    await app.redis.hset(
        key, mapping={f: v for i in range(3) for f, v in ((f"{i}:v", 0.5), (f"{i}:ts", T0))}
    )
    r = await rl.limit("p")
    assert r.ok and r.retry_after is None
    vals = sorted([await stored(rl, "p", shard=i) for i in range(3)])  # type: ignore[type-var]
    assert vals == [0.0, 0.0, 0.5]


# 31
async def test_backward_clock(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"b": TB(10, MINUTE)}, rng=zero)
    assert (await rl.limit("b", count=5)).ok
    clock.set(T0 - 10_000)
    assert (await rl.limit("b")).ok
    assert await stored(rl, "b") == 4
    assert float(await app.redis.hget(rl.key_for("b"), "0:ts")) == T0


# 32
async def test_server_clock_default(backend: str, request: pytest.FixtureRequest) -> None:
    from tests.conftest import make_app

    app = await make_app(backend, request, clock=None)
    try:
        rl = RateLimiter(app, {"s": TB(10, SECOND)}, rng=zero)
        assert (await rl.limit("s")).ok
        await asyncio.sleep(0.01)  # real time must pass: this test is about the real clock
        assert (await rl.limit("s")).ok
        assert abs(await rl.server_time() - time.time() * 1000) < 5000
        ts = float(await app.redis.hget(rl.key_for("s"), "0:ts"))
        assert abs(ts - time.time() * 1000) < 5000
    finally:
        await app.aclose()


# 33
async def test_ttl_follows_the_deficit(app: App) -> None:
    rl = RateLimiter(app, {"t": TB(10, MINUTE)}, rng=zero)
    assert (await rl.limit("t", count=10)).ok
    pttl = await app.redis.pttl(rl.key_for("t"))
    assert 0 < pttl <= 60_000 + MINUTE
    assert (await rl.limit("t", count=50, reserve=True)).ok
    assert await app.redis.pttl(rl.key_for("t")) > 5 * 60_000


# 34
async def test_clear_all_before(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"a": TB(10, MINUTE), "b": TB(10, MINUTE)}, rng=zero)
    assert (await rl.limit("a")).ok
    clock.set(T0 + 10_000)
    assert (await rl.limit("b")).ok
    assert await rl.clear_all(before=T0 + 5_000) == 1
    assert not await exists(rl, "a") and await exists(rl, "b")


# 35
async def test_credit(app: App) -> None:
    rl = RateLimiter(app, {"c": TB(10, MINUTE)}, rng=zero)
    assert (await rl.limit("c", count=5)).ok
    assert (await rl.credit("c", count=3)).value == 8
    assert (await rl.credit("c", count=100)).value == 10
    assert await stored(rl, "c") == 10


# 36
async def test_limit_all_is_all_or_nothing(app: App) -> None:
    rl = RateLimiter(app, {"a": TB(5, MINUTE), "b": TB(1, MINUTE)}, rng=zero)
    assert (await rl.limit("b")).ok
    r = await rl.limit_all([LimitRequest("a", count=2), LimitRequest("b", count=1)])
    assert not r.ok and r.retry_after == 60000.0
    assert (await rl.get_value("a")).value == 5


# 37
async def test_fail_closed() -> None:
    from tests._servers import free_port

    client = aioredis.Redis(port=free_port(), socket_connect_timeout=1, decode_responses=True)
    app = App(redis=client, clock=TestClock())
    rl = RateLimiter(app, {"x": TB(1, SECOND)})
    with pytest.raises(redis.exceptions.ConnectionError):
        await rl.limit("x")
    await app.aclose()


# 38
async def test_script_cache_flush(app: App) -> None:
    rl = RateLimiter(app, {"f": TB(10, SECOND)}, rng=zero)
    assert (await rl.limit("f")).ok
    await app.redis.script_flush()
    assert (await rl.limit("f")).ok
    assert await stored(rl, "f") == 8
    assert math.isfinite((await rl.get_value("f")).value)
