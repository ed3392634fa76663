"""Beyond §8: limit_all variants, hash_tag, sharded inspection and credit, TTLs,
multi-process concurrency on a real redis-server."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random

import pytest
from redis.cluster import key_slot

from rkit import (
    MINUTE,
    SECOND,
    App,
    FixedWindow,
    LimitRequest,
    RateLimited,
    RateLimiter,
    TestClock,
    TokenBucket,
)

T0 = 1_700_000_040_000.0


async def test_limit_all_success_consumes_everything(app: App) -> None:
    rl = RateLimiter(
        app, {"a": TokenBucket(rate=5, period=MINUTE), "b": TokenBucket(rate=2, period=MINUTE)}
    )
    r = await rl.limit_all([LimitRequest("a", key="u", count=2), LimitRequest("b", count=2)])
    assert r.ok and r.retry_after is None
    assert (await rl.get_value("a", key="u")).value == 3
    assert (await rl.get_value("b")).value == 0


async def test_limit_all_same_key_twice_sees_its_own_consumption(app: App) -> None:
    rl = RateLimiter(app, {"a": TokenBucket(rate=5, period=MINUTE)}, rng=lambda: 0.0)
    r = await rl.limit_all([LimitRequest("a", count=3), LimitRequest("a", count=3)])
    assert not r.ok
    assert (await rl.get_value("a")).value == 5
    r = await rl.limit_all([LimitRequest("a", count=3), LimitRequest("a", count=2)])
    assert r.ok and (await rl.get_value("a")).value == 0


async def test_limit_all_throws_and_inline_configs(app: App) -> None:
    rl = RateLimiter(app, rng=lambda: 0.0)
    one = TokenBucket(rate=1, period=SECOND)
    assert (await rl.limit_all([LimitRequest("x", config=one)])).ok
    with pytest.raises(RateLimited) as info:
        await rl.limit_all(
            [LimitRequest("y", config=one), LimitRequest("x", config=one)], throws=True
        )
    assert info.value.retry_after == 1000
    # nothing of "y" is held (on Cluster across slots it was taken and credited back)
    assert (await rl.get_value("y", config=one)).value == 1
    if not app.is_cluster:
        assert not await app.redis.exists(rl.key_for("y"))
    assert (await rl.limit_all([])).ok


async def test_hash_tag_puts_every_limit_in_one_slot(app: App) -> None:
    rl = RateLimiter(
        app,
        {"a": TokenBucket(rate=5, period=MINUTE), "b": TokenBucket(rate=1, period=MINUTE)},
        hash_tag="tenant-7",
    )
    slots = {
        key_slot(rl.key_for(n, k).encode()) for n in ("a", "b") for k in (None, "", "x", "{y}")
    }
    assert len(slots) == 1
    assert rl.key_for("a", "b:c") != rl.key_for("a:b", "c")
    assert (await rl.limit("b")).ok
    r = await rl.limit_all([LimitRequest("a", count=2), LimitRequest("b")])
    assert not r.ok and (await rl.get_value("a")).value == 5
    # clear_all covers hash-tagged keys too
    assert await rl.clear_all() == 1


async def test_limit_all_across_slots_compensates(app: App) -> None:
    """On Cluster without hash_tag the requests run one by one and are credited back."""
    rl = RateLimiter(
        app, {"a": TokenBucket(rate=5, period=MINUTE), "b": TokenBucket(rate=1, period=MINUTE)}
    )
    assert (await rl.limit("b", key="k")).ok
    r = await rl.limit_all([LimitRequest("a", key="k", count=2), LimitRequest("b", key="k")])
    assert not r.ok and r.retry_after == 60000.0
    assert (await rl.get_value("a", key="k")).value == 5
    with pytest.raises(RateLimited):
        await rl.limit_all(
            [LimitRequest("a", key="k", count=2), LimitRequest("b", key="k")], throws=True
        )
    assert (await rl.get_value("a", key="k")).value == 5


async def test_get_value_samples_distinct_shards(app: App) -> None:
    rl = RateLimiter(app, {"s": TokenBucket(rate=4, period=SECOND, shards=4)}, rng=lambda: 0.0)
    key = rl.key_for("s")
    await app.redis.hset(key, mapping={"0:v": 0.25, "0:ts": T0, "1:v": 0.75, "1:ts": T0 - 500})
    one = await rl.get_value("s")
    assert (one.shard, one.value) == (0, 0.25)
    assert one.config.shards == 4 and one.shard_config.capacity == 1 and one.shard_config.rate == 1
    # shard 1 projected to T0 holds 0.75 + 0.5 refill, capped at 1 -> fullest; stored value returned
    two = await rl.get_value("s", sample_shards=2)
    assert (two.shard, two.value, two.ts) == (1, 0.75, T0 - 500)
    # all four: the unused shards read as full at now (DEVIATION Q5) -> later sampled wins ties
    four = await rl.get_value("s", sample_shards=10)
    assert four.value == 1 and four.shard in (2, 3)


async def test_fixed_window_random_phase_and_reset(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"w": FixedWindow(rate=2, period=MINUTE)}, rng=lambda: 0.5)
    assert (await rl.limit("w", count=2)).ok
    v = await rl.get_value("w")
    assert v.config.start == T0 - 30_000  # phase drawn from rng: now - floor(0.5 * period)
    r = await rl.limit("w")
    assert not r.ok and r.retry_after == 30_000
    clock.advance(30_000)
    assert (await rl.limit("w")).ok


async def test_credit_sharded_and_missing(app: App) -> None:
    rl = RateLimiter(app, {"s": TokenBucket(rate=30, period=MINUTE, shards=3)}, rng=lambda: 0.0)
    fresh = await rl.credit("s", count=5)
    assert fresh.value == 10 and not await app.redis.exists(rl.key_for("s"))
    key = rl.key_for("s")
    await app.redis.hset(key, mapping={"0:v": 9, "0:ts": T0, "2:v": 1, "2:ts": T0})
    got = await rl.credit("s", count=4)
    assert (got.shard, got.value) == (2, 5)
    got = await rl.credit("s", count=4, shard=0)
    assert (got.shard, got.value) == (0, 10)


async def test_ttl_for_fixed_window_and_sharded(app: App) -> None:
    rl = RateLimiter(
        app,
        {
            "w": FixedWindow(rate=1, period=MINUTE, start=0),
            "s": TokenBucket(rate=2, period=SECOND, shards=2),
        },
        rng=lambda: 0.0,
    )
    assert (await rl.limit("w", count=1, reserve=True)).ok
    assert (await rl.limit("w", count=3, reserve=True)).ok  # value -3: full after 4 windows
    pttl = await app.redis.pttl(rl.key_for("w"))
    assert 4 * MINUTE < pttl <= 5 * MINUTE + MINUTE
    assert (await rl.limit("s")).ok
    assert 0 < await app.redis.pttl(rl.key_for("s")) <= 1000 + 1000


async def test_many_keys_concurrently(app: App) -> None:
    rl = RateLimiter(app, {"k": TokenBucket(rate=3, period=MINUTE)})
    keys = [f"user-{i}" for i in range(40)]
    calls = [rl.limit("k", key=k) for k in keys for _ in range(5)]
    random.Random(1).shuffle(calls)
    results = await asyncio.gather(*calls)
    assert sum(r.ok for r in results) == 3 * 40


def _worker(url: str, ns: str, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def go() -> int:
        app = App(url, namespace=ns, clock=TestClock())
        rl = RateLimiter(app, {"shared": TokenBucket(rate=150, period=MINUTE)})
        try:
            res = await asyncio.gather(*(rl.limit("shared") for _ in range(n)))
            return sum(r.ok for r in res)
        finally:
            await app.aclose()

    out.put(asyncio.run(go()))


@pytest.mark.slow
def test_processes_never_over_admit(redis_url: str) -> None:
    """4 processes x 100 concurrent callers on one bucket of 150: exactly 150 admitted."""
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_worker, args=(redis_url, "mp", 100, out)) for _ in range(4)]
    for p in procs:
        p.start()
    counts = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sum(counts) == 150


async def test_state_survives_a_client_restart(app: App, clock: TestClock) -> None:
    """A new process (new App, new limiter, cold script cache) sees the same buckets."""
    rl = RateLimiter(app, {"r": TokenBucket(rate=3, period=MINUTE)}, rng=lambda: 0.0)
    assert (await rl.limit("r", key="u", count=3)).ok
    if app.embedded:
        import fakeredis

        client = fakeredis.FakeAsyncRedis(server=app._fake_server, decode_responses=True)
        again = App(redis=client, namespace=app.namespace, clock=clock)
    else:
        again = App(
            redis=type(app.redis).from_url(_url_of(app), decode_responses=True),
            namespace=app.namespace,
            clock=clock,
            queue_redis=app.redis,
        )
    await again.redis.script_flush()
    rl2 = RateLimiter(again, {"r": TokenBucket(rate=3, period=MINUTE)}, rng=lambda: 0.0)
    r = await rl2.limit("r", key="u")
    assert not r.ok and r.retry_after == 20_000
    await again.redis.aclose()


def _url_of(app: App) -> str:
    from redis.asyncio.cluster import RedisCluster

    if isinstance(app.redis, RedisCluster):
        node = app.redis.get_nodes()[0]
        return f"redis://{node.host}:{node.port}"
    kw = app.redis.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"
