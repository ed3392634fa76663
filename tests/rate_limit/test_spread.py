"""Spread mode (spec §7.5): one key per shard, each in its own Cluster slot;
power of two choices client-side, fallback, split with credit back."""

from __future__ import annotations

import asyncio
import random

import pytest
from redis.cluster import key_slot

from rkit import (
    MINUTE,
    SECOND,
    App,
    ConfigError,
    LimitRequest,
    RateLimited,
    RateLimiter,
    TestClock,
    TokenBucket,
)

T0 = 1_700_000_040_000.0


def limiter(app: App, cfg: TokenBucket, rng: object = None) -> RateLimiter:
    return RateLimiter(app, {"s": cfg}, rng=rng or (lambda: 0.0), spread_shards=True)  # type: ignore[arg-type]


async def shard_value(rl: RateLimiter, shard: int, key: str | None = None) -> float | None:
    v = await rl.app.redis.hget(rl.shard_key_for("s", key, shard), "0:v")
    return None if v is None else float(v)


async def preset(rl: RateLimiter, values: dict[int, float], ts: float = T0) -> None:
    for shard, v in values.items():
        await rl.app.redis.hset(rl.shard_key_for("s", None, shard), mapping={"0:v": v, "0:ts": ts})


async def test_each_shard_has_its_own_slot(app: App) -> None:
    rl = limiter(app, TokenBucket(rate=40, period=MINUTE, shards=4))
    slots = {key_slot(rl.shard_key_for("s", "user", i).encode()) for i in range(4)}
    assert len(slots) == 4
    assert (await rl.limit("s", key="user")).ok
    assert not await app.redis.exists(rl.key_for("s", "user"))  # co-located key unused
    assert await shard_value(rl, 0, "user") == 9


async def test_never_over_admits_and_uses_every_unit(app: App) -> None:
    rl = limiter(app, TokenBucket(rate=10, period=MINUTE, shards=2), rng=random.Random(3).random)
    results = [await rl.limit("s") for _ in range(12)]
    assert sum(r.ok for r in results) == 10  # fallback + split reach every unit
    assert not results[-1].ok and results[-1].retry_after is not None
    for shard in range(2):
        v = await shard_value(rl, shard)
        assert v is not None and v >= -1e-9


async def test_falls_back_to_the_other_shard(app: App) -> None:
    rl = limiter(app, TokenBucket(rate=4, period=SECOND, shards=4))  # 1 per shard
    # rng 0.0: first pick shard 0, second pick shard 1
    await preset(rl, {0: 0.0, 1: 1.0})
    assert (await rl.limit("s")).ok
    assert await shard_value(rl, 0) == 0 and await shard_value(rl, 1) == 0


async def test_split_across_two_shards_and_credit_back(app: App) -> None:
    rl = limiter(app, TokenBucket(rate=4, period=SECOND, shards=4))
    await preset(rl, {0: 0.5, 1: 0.5})
    assert (await rl.limit("s")).ok  # 0.5 + 0.5
    assert await shard_value(rl, 0) == 0 and await shard_value(rl, 1) == 0
    await preset(rl, {0: 0.5, 1: 0.25})
    r = await rl.limit("s")
    assert not r.ok and r.retry_after is not None and r.retry_after > 0
    # the part taken from shard 0 was credited back
    assert await shard_value(rl, 0) == pytest.approx(0.5)
    assert await shard_value(rl, 1) == 0.25


async def test_check_and_throws_write_nothing(app: App) -> None:
    rl = limiter(app, TokenBucket(rate=2, period=SECOND, shards=2))
    assert (await rl.check("s")).ok
    assert not await app.redis.exists(rl.shard_key_for("s", None, 0))
    await preset(rl, {0: 0.0, 1: 0.0})
    with pytest.raises(RateLimited) as info:
        await rl.limit("s", throws=True)
    assert info.value.retry_after > 0
    assert await shard_value(rl, 0) == 0 and await shard_value(rl, 1) == 0


async def test_reserve_books_debt_on_one_shard(app: App) -> None:
    rl = limiter(app, TokenBucket(rate=2, period=SECOND, shards=2))
    r = await rl.limit("s", count=2, reserve=True)
    assert r.ok and r.retry_after == 1000
    values = sorted([await shard_value(rl, 0) or 0.0, await shard_value(rl, 1) or 1.0])
    assert values == [-1, 1]


async def test_reset_get_value_credit(app: App, clock: TestClock) -> None:
    rl = limiter(app, TokenBucket(rate=30, period=MINUTE, shards=3))
    await preset(rl, {0: 2, 1: 9, 2: 5})
    v = await rl.get_value("s", sample_shards=3)
    assert (v.shard, v.value) == (1, 9) and v.shard_config.capacity == 10
    got = await rl.credit("s", count=4)  # lowest projected: shard 0
    assert (got.shard, got.value) == (0, 6)
    got = await rl.credit("s", count=4, shard=2)
    assert (got.shard, got.value) == (2, 9)
    await rl.reset("s")
    for shard in range(3):
        assert not await app.redis.exists(rl.shard_key_for("s", None, shard))
    assert await rl.clear_all() == 0


async def test_concurrent_spread(app: App) -> None:
    rl = limiter(app, TokenBucket(rate=100, period=MINUTE, shards=10), rng=random.Random(11).random)
    results = await asyncio.gather(*(rl.limit("s") for _ in range(500)))
    ok = sum(r.ok for r in results)
    assert 80 <= ok <= 100
    for shard in range(10):
        v = await shard_value(rl, shard)
        assert v is None or v >= -1e-9


async def test_limit_all_with_spread_limits_compensates(app: App) -> None:
    rl = RateLimiter(
        app,
        {
            "s": TokenBucket(rate=4, period=MINUTE, shards=2),
            "one": TokenBucket(rate=1, period=MINUTE),
        },
        rng=lambda: 0.0,
        spread_shards=True,
    )
    assert (await rl.limit("one")).ok
    r = await rl.limit_all([LimitRequest("s", count=2), LimitRequest("one")])
    assert not r.ok
    values = [await shard_value(rl, i) for i in range(2)]
    assert sum(2.0 if v is None else v for v in values) == 4  # what was taken came back
    assert (await rl.limit_all([LimitRequest("s", count=2)])).ok


def test_spread_and_hash_tag_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="spread_shards and hash_tag"):
        RateLimiter(App(), spread_shards=True, hash_tag="t")


async def test_reset_clears_every_shard_whatever_the_shard_count(app: App) -> None:
    """An inline config's shards, and shard keys beyond a lowered shard count, all go."""
    inline = TokenBucket(rate=40, period=MINUTE, shards=4)
    rl = RateLimiter(app, {}, rng=lambda: 0.0, spread_shards=True)
    for _ in range(40):
        await rl.limit("inline", key="u", config=inline)
    used = [i for i in range(4) if await app.redis.exists(rl.shard_key_for("inline", "u", i))]
    assert used
    await rl.reset("inline", key="u", config=inline)
    assert [i for i in range(4) if await app.redis.exists(rl.shard_key_for("inline", "u", i))] == []
    # a config that used 8 shards, now lowered to 2: reset finds shards 2..7 too
    wide = RateLimiter(
        app, {"s": TokenBucket(rate=80, period=MINUTE, shards=8)}, spread_shards=True
    )
    await preset(wide, {i: 1.0 for i in range(8)})
    other = await app.redis.hset(wide.shard_key_for("s", "someone", 5), "0:v", 1)
    narrow = RateLimiter(
        app, {"s": TokenBucket(rate=80, period=MINUTE, shards=2)}, spread_shards=True
    )
    await narrow.reset("s")
    assert [i for i in range(8) if await app.redis.exists(wide.shard_key_for("s", None, i))] == []
    assert other and await app.redis.exists(wide.shard_key_for("s", "someone", 5))  # other key kept
    await narrow.reset("s")  # and again: nothing left, no error
