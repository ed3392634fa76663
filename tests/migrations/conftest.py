"""The §8 world: 10 hashes ``item:0`` … ``item:9`` (field ``opt`` on odd ids only),
indexed by the lex ZSET ``items:idx`` and walked with ``HashIndexSource``; the
migration ``set_default`` sets ``opt`` where it is missing and counts its calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from rkit import App, TestClock
from rkit.migrations import HashIndexSource, Migration, MigrationCtx, Migrations

from ..conftest import make_app

T0 = 1_700_000_000_000


@dataclass
class World:
    app: App
    m: Migrations
    set_default: Migration[Any]
    calls: list[str] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)

    @property
    def clock(self) -> TestClock:
        assert isinstance(self.app.clock, TestClock)
        return self.app.clock

    async def opts(self) -> list[str | None]:
        r = self.app.redis
        return [await r.hget(f"item:{i}", "opt") for i in range(10)]


async def seed(app: App, n: int = 10) -> None:
    """The §8 data on an empty database (the shared test Cluster is not flushed
    between tests)."""
    r = app.redis
    await r.flushall()
    for i in range(n):
        mapping = {"id": str(i), **({"opt": "x"} if i % 2 else {})}
        await r.hset(f"item:{i}", mapping=mapping)
        await r.zadd("items:idx", {f"item:{i}": 0})


def make_world(app: App, **options: Any) -> World:
    m = Migrations(app, **options)
    world: World

    def set_default(ctx: MigrationCtx, item: tuple[str, dict[str, str]]) -> Any:
        key, h = item
        world.calls.append(key)
        if key in world.fail_on:
            raise RuntimeError(f"boom on {key}")
        return None if "opt" in h else {"opt": "default"}

    mig = m.define(source=HashIndexSource(app.redis, "items:idx"), migrate_one=set_default)
    world = World(app, m, mig)
    return world


@pytest.fixture
def clock() -> TestClock:
    return TestClock(T0)


@pytest.fixture
async def world(app: App) -> World:
    await seed(app)
    return make_world(app)


@pytest.fixture
async def fake_app(clock: TestClock, request: pytest.FixtureRequest) -> AsyncIterator[App]:
    a = await make_app("fake", request, clock)
    yield a
    await a.aclose()


async def snapshot(app: App) -> dict[str, Any]:
    """Every key of the database(s) with its type and value (Cluster: every node)."""
    r = app.redis
    out: dict[str, Any] = {}
    async for k in r.scan_iter(match="*"):
        t = await r.type(k)
        if t == "hash":
            v: Any = await r.hgetall(k)
        elif t == "zset":
            v = await r.zrange(k, 0, -1, withscores=True)
        elif t == "string":
            v = await r.get(k)
        elif t == "stream":
            v = await r.xrange(k)
        elif t == "list":
            v = await r.lrange(k, 0, -1)
        elif t == "set":
            v = sorted(await r.smembers(k))
        else:
            v = t
        out[k] = (t, v)
    return out


async def queue_len(app: App) -> int:
    q = await app.queue_pool()
    return int(await q.zcard(app.queue_name))
