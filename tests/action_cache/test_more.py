"""Beyond §8: canonical keys, single-flight at 100 callers, stats, purge_all / the
daily cron, sync actions, restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rkit import App, TestClock
from rkit.action_cache import (
    ActionCache,
    Hit,
    Miss,
    cache_names,
    cache_stats,
    canonical_args,
    purge_all,
    purge_all_job,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=4), json_values, max_size=5), st.randoms())
def test_canonical_args_ignore_key_order(args: dict[str, Any], rnd: Any) -> None:
    items = list(args.items())
    rnd.shuffle(items)
    assert canonical_args(dict(items)) == canonical_args(args)


def test_canonical_args_rules() -> None:
    assert canonical_args({"x": 1}) == canonical_args({"x": 1.0}) == '{"x":1}'
    assert canonical_args({"x": -0.0}) == '{"x":0}'
    assert canonical_args({"x": True}) != canonical_args({"x": 1})
    assert canonical_args({"a": None}) != canonical_args({})
    assert canonical_args({"t": (1, 2)}) == canonical_args({"t": [1, 2]})
    assert canonical_args({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert canonical_args({"big": 2**64 + 1}) == '{"big":18446744073709551617}'
    assert canonical_args(None) == "{}"
    with pytest.raises(TypeError):
        canonical_args([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        canonical_args({"x": float("inf")})


async def test_hundred_concurrent_misses_run_the_action_once(app: App) -> None:
    calls = 0

    async def slow(q: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # a slow paid API: the others must wait for it
        return q.upper()

    c = ActionCache(app, slow, name="slow", single_flight=True, poll_ms=5)
    results = await asyncio.gather(*(c.fetch({"q": "hi"}) for _ in range(100)))
    assert calls == 1 and set(results) == {"HI"}


async def test_single_flight_lease_expiry_lets_waiters_take_over(app: App) -> None:
    """A winner that dies without releasing (lease runs out) does not block forever."""
    c = ActionCache(app, _const, name="const", single_flight=True, poll_ms=5, lease_ms=50)
    from rkit.action_cache import _digest

    member = _digest(canonical_args({}))
    await app.redis.set(c._store.lock(member), "dead-worker", px=50)
    assert await c.fetch() == 7


async def _const() -> int:
    return 7


async def test_stats_count_fetches(app: App, clock: TestClock) -> None:
    c = ActionCache(app, _const, name="const")
    await c.fetch()
    await c.fetch()
    await c.fetch()
    await c.get()  # low-level reads are not counted
    s = await c.stats()
    assert (s.entries, s.hits, s.misses) == (1, 2, 1) and s.hit_rate == pytest.approx(2 / 3)
    assert await cache_names(app) == ["const"]
    assert (await cache_stats(app, "nope")).hit_rate is None


async def test_purge_all_and_the_cron_job(app: App, clock: TestClock) -> None:
    a = ActionCache(app, _const, name="a", ttl=1000)
    b = ActionCache(app, _const, name="b", ttl=5000)
    await a.fetch()
    await b.fetch()
    clock.advance(1000)
    assert await purge_all(app) == 1
    clock.advance(4000)
    assert await purge_all_job({"rkit_app": app}) == 1
    assert isinstance(await a.get(), Miss) and isinstance(await b.get(), Miss)


async def test_purge_cleans_index_members_of_vanished_entries(app: App, clock: TestClock) -> None:
    c = ActionCache(app, _const, name="c", ttl=1000)
    await c.fetch()
    from rkit.action_cache import _digest

    await app.redis.delete(c._store.entry(_digest(canonical_args({}))))  # physical expiry
    clock.advance(1000)
    assert await c.purge() == 0
    assert await app.redis.zcard(c._store.idx) == 0 and await app.redis.zcard(c._store.exp) == 0


async def test_sync_actions_run_in_a_thread(app: App) -> None:
    def add(a: int, b: int) -> int:
        return a + b

    c = ActionCache(app, add, name="add")
    assert await c.fetch({"a": 1, "b": 2}) == 3
    assert await c.get({"a": 1, "b": 2}) == Hit(3)


async def test_falsy_values_are_hits(app: App) -> None:
    for i, value in enumerate([None, 0, "", [], False]):
        calls = 0

        async def produce(v: Any = value) -> Any:
            nonlocal calls
            calls += 1
            return v

        c = ActionCache(app, produce, name=f"falsy{i}")
        assert await c.fetch() == value
        assert await c.fetch() == value
        assert calls == 1


async def test_instance_remove_all_is_deprecated_and_global(app: App) -> None:
    a = ActionCache(app, _const, name="a")
    b = ActionCache(app, _const, name="b")
    await a.fetch()
    await b.fetch()
    with pytest.warns(DeprecationWarning, match="every cache name"):
        assert await a.remove_all() == 2


async def test_entries_survive_a_client_restart(app: App, clock: TestClock) -> None:
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        return 1

    await ActionCache(app, work, name="w").fetch()
    if app.embedded:
        import fakeredis

        client: Any = fakeredis.FakeAsyncRedis(server=app._fake_server, decode_responses=True)
    else:
        client = app.redis  # a new App over the same connection pool/cluster
    again = App(redis=client, namespace=app.namespace, clock=clock, queue_redis=client)
    await again.redis.script_flush()
    assert await ActionCache(again, work, name="w").fetch() == 1
    assert calls == 1


async def test_bad_options(app: App) -> None:
    c = ActionCache(app, _const, name="c")
    with pytest.raises(ValueError):
        await c.fetch(ttl="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await c.remove_all_for_name(batch_size=0)
    with pytest.raises(ValueError):
        ActionCache(app, _const, name="c", on_oversize="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ActionCache(app, _const, name="c", lease_ms=-1)
    with pytest.raises(TypeError):
        await c.put({}, {1, 2})
    assert [k async for k in app.redis.scan_iter(match=f"rkit:{{{app.namespace}:*")] == []
