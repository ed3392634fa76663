"""Bad input (a clear error, nothing written), concurrency (many runners of one
migration, many migrations at once) and restarts (a worker stopped mid-batch, a
second App on the same Redis continuing the run)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rkit import App, ConfigError, KeyTooLong
from rkit.migrations import (
    HashIndexSource,
    Migrations,
    MigrationStatus,
    SortedSetSource,
)
from rkit.testing import background_worker, peer_app, run_until_idle

from .conftest import World, make_world, seed, snapshot


async def test_bad_input_is_refused_before_redis(world: World) -> None:
    app, m = world.app, world.m
    before = await snapshot(app)
    src = world.set_default.source
    bad_defs: list[dict[str, Any]] = [
        {"source": src, "migrate_one": 5, "name": "x"},
        {"source": object(), "migrate_one": lambda c, i: None, "name": "x"},
        {"source": src, "migrate_one": lambda c, i: None},  # a lambda needs a name
        {"source": src, "migrate_one": lambda c, i: None, "name": ""},
        {"source": src, "migrate_one": lambda c, i: None, "name": "x", "batch_size": 0},
        {"source": src, "migrate_one": lambda c, i: None, "name": "x", "max_concurrency": -2},
        {"source": src, "migrate_one": lambda c, i: None, "name": "x", "on_item_error": "skip"},
    ]
    for kw in bad_defs:
        with pytest.raises(ConfigError):
            m.define(**kw)
    with pytest.raises(KeyTooLong):
        m.define(source=src, migrate_one=lambda c, i: None, name="n" * 2000)
    for opts in ({"default_batch_size": 0}, {"lease_ms": 0}, {"job_budget_ms": float("inf")}):
        with pytest.raises(ConfigError):
            Migrations(app, "other", **opts)
    with pytest.raises(ConfigError):
        Migrations(app, "bad name!")
    with pytest.raises(ConfigError):
        await m.run_one(world.set_default, cursor=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        await m.get_status("set_default")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        await m.get_status(limit=-1)
    with pytest.raises(ConfigError):
        HashIndexSource(app.redis, "")
    with pytest.raises(ConfigError):
        await SortedSetSource(app.redis, "z").page(None, 0)
    assert await snapshot(app) == before
    assert "x" not in m.defined()


async def test_a_migrate_one_returning_garbage_fails_the_batch(world: World) -> None:
    mig = world.m.define(source=world.set_default.source, migrate_one=lambda c, i: 5, name="g")
    st = await world.m.run_one(mig)
    assert isinstance(st, MigrationStatus) and st.state == "failed"
    assert "must return a mapping" in (st.error or "")


async def test_many_concurrent_starts_make_one_run(world: World) -> None:
    got = await asyncio.gather(
        *(world.m.run_one(world.set_default, batch_size=2) for _ in range(20))
    )
    assert all(isinstance(s, MigrationStatus) and s.state == "inProgress" for s in got)
    await run_until_idle(world.app)
    st = await world.m.status(world.set_default)
    assert (st.state, st.processed) == ("success", 10)
    assert sorted(world.calls) == sorted(f"item:{i}" for i in range(10))  # each once


async def test_many_migrations_at_once(app: App) -> None:
    await app.redis.flushall()
    for i in range(40):
        await app.redis.zadd("zz", {f"m{i:02}": 0})
    m = Migrations(app)
    seen: dict[str, list[str]] = {}
    for k in range(12):
        seen[f"mig{k}"] = []
        m.define(
            source=SortedSetSource(app.redis, "zz"),
            migrate_one=lambda c, i, k=k: seen[f"mig{k}"].append(i),
            name=f"mig{k}",
            batch_size=7,
        )
    await asyncio.gather(*(m.run_one(n) for n in seen))
    await run_until_idle(app)
    statuses = await m.get_status()
    assert [s.state for s in statuses] == ["success"] * 12
    assert all(s.processed == 40 for s in statuses)
    assert all(v == [f"m{i:02}" for i in range(40)] for v in seen.values())


async def test_a_stopped_worker_hands_the_batch_to_another_app(queue_app: App) -> None:
    """A worker stopped mid-batch (its attempt handed back, like SIGTERM) leaves the
    cursor at that batch's start; a second App (another process) continues."""
    await seed(queue_app)
    w = make_world(queue_app)
    entered = asyncio.Event()
    never = asyncio.Event()

    async def blocks(ctx: Any, item: Any) -> Any:
        w.calls.append(item[0])
        if item[0] == "item:6":
            entered.set()
            await never.wait()
        return None if "opt" in item[1] else {"opt": "default"}

    w.m.define(source=w.set_default.source, migrate_one=blocks, name="set_default")
    await w.m.run_one("set_default", batch_size=2)
    async with background_worker(queue_app):
        await asyncio.wait_for(entered.wait(), 10)
    st = await w.m.status("set_default")
    assert (st.state, st.processed, st.cursor) == ("inProgress", 6, "item:5")
    peer = peer_app(queue_app)
    try:
        w2 = make_world(peer)
        await run_until_idle(peer)
        st = await w2.m.status("set_default")
        assert (st.state, st.processed) == ("success", 10)
        assert w2.calls == [f"item:{i}" for i in range(6, 10)]  # item:6's batch re-ran
        assert await w.opts() == ["default", "x"] * 5
    finally:
        await peer.aclose()


async def test_a_worker_without_the_definition_fails_the_run_clearly(queue_app: App) -> None:
    await seed(queue_app)
    w = make_world(queue_app)
    await w.m.run_one(w.set_default, batch_size=2)
    peer = peer_app(queue_app)
    try:
        Migrations(peer)  # the same instance, but this process defines no migrations
        await run_until_idle(peer)
    finally:
        await peer.aclose()
    st = await w.m.status(w.set_default)
    assert (st.state, st.processed) == ("failed", 2)
    assert "Can't find function set_default" in (st.error or "")
    st = await w.m.run_one(w.set_default, batch_size=2)  # fixed by running where it is defined
    await run_until_idle(queue_app)
    assert (await w.m.status(w.set_default)).state == "success"


async def test_a_batch_job_that_gives_up_fails_the_run(world: World) -> None:
    """The workpool's final failure of a batch item (e.g. its workers kept dying)
    reaches the migration through the item's on_complete."""
    from rkit.migrations.component import DONE_JOB
    from rkit.workpool import Failed

    m = world.m
    await m._begin(world.set_default, "tok", None, 2, [], None, False)
    ctx = {"instance": m.name, "name": world.set_default.name, "token": "tok"}
    await world.app.actions[DONE_JOB].fn(context=ctx, result=Failed("Worker lost"))
    st = await m.status(world.set_default)
    assert (st.state, st.error) == ("failed", "batch job failed: Worker lost")
    stale = {**ctx, "token": "other"}
    await world.app.actions[DONE_JOB].fn(context=stale, result=Failed("late"))
    assert (await m.status(world.set_default)).error == "batch job failed: Worker lost"
