"""Spec migrations.md §8 scenarios 1-25 and 28 on fakeredis, real Redis and the
3-node Cluster (the state scripts, the sources and the workpool path)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rkit import App
from rkit.migrations import (
    RESUME,
    CursorMismatch,
    DryRunReport,
    HashKeySource,
    InvalidBatchSize,
    IterableSource,
    MigrationBatchFailed,
    MigrationCtx,
    MigrationError,
    MigrationInProgress,
    MigrationNotFound,
    Migrations,
    MigrationStatus,
    SortedSetSource,
    UnknownMigration,
)
from rkit.testing import run_until_idle

from .conftest import T0, World, make_world, queue_len, seed, snapshot


async def status(w: World, name: str | None = None) -> MigrationStatus:
    return await w.m.status(name or w.set_default.name)


async def run(w: World, **kw: Any) -> MigrationStatus:
    got = await w.m.run_one(w.set_default, **kw)
    assert isinstance(got, MigrationStatus)
    return got


# 1
async def test_runs_to_completion_in_the_background(world: World) -> None:
    st = await run(world, batch_size=2)
    assert (st.state, st.processed, st.batch_size) == ("inProgress", 2, 2)
    await run_until_idle(world.app)
    st = await status(world)
    assert (st.state, st.processed, st.cursor, st.is_done) == ("success", 10, None, True)
    assert st.latest_end == T0 and st.error is None
    assert await world.opts() == ["default", "x"] * 5
    assert sorted(world.calls) == sorted(f"item:{i}" for i in range(10))


# 2
async def test_batch_size_precedence(app: App) -> None:
    await app.redis.flushall()
    for i in range(150):
        await app.redis.zadd("z", {f"m{i:03}": 0})
    counted: list[str] = []

    def count(ctx: MigrationCtx, item: str) -> None:
        counted.append(item)

    plain = Migrations(app, "plain")
    a = plain.define(source=SortedSetSource(app.redis, "z"), migrate_one=count, name="a")
    assert (await plain.run_one(a)).processed == 100  # type: ignore[union-attr]
    sized = Migrations(app, "sized", default_batch_size=50)
    b = sized.define(source=SortedSetSource(app.redis, "z"), migrate_one=count, batch_size=3)
    assert (await sized.run_one(b)).processed == 3  # type: ignore[union-attr]
    c = sized.define(source=SortedSetSource(app.redis, "z"), migrate_one=count, name="c")
    assert (await sized.run_one(c, batch_size=1)).processed == 1  # type: ignore[union-attr]
    assert (await sized.run_one(c)).state == "inProgress"  # type: ignore[union-attr]


# 3
@pytest.mark.parametrize("size", [0, -1, 1.5, True])
async def test_invalid_batch_size_writes_nothing(world: World, size: Any) -> None:
    before = await snapshot(world.app)
    with pytest.raises(InvalidBatchSize, match="Batch size must be greater than 0"):
        await world.m.run_one(world.set_default, batch_size=size)
    with pytest.raises(InvalidBatchSize):
        await world.m.run_to_completion(world.set_default, batch_size=size)
    with pytest.raises(InvalidBatchSize):
        await world.m.run(world.set_default, batch_size=size, dry_run=True)
    assert await snapshot(world.app) == before
    assert (await status(world)).state == "unknown"


# 4
async def test_patch_shorthand(app: App) -> None:
    await seed(app)
    m = Migrations(app)
    src = HashKeySource(app.redis, "item:*")
    drop = m.define(source=src, migrate_one=lambda c, i: {"opt": None}, name="drop")
    noop = m.define(source=src, migrate_one=lambda c, i: {} if i[0] < "item:5" else None, name="n")
    before = {f"item:{i}": await app.redis.hgetall(f"item:{i}") for i in range(10)}
    assert (await m.run_to_completion(noop)).processed == 10
    assert {k: await app.redis.hgetall(k) for k in before} == before
    assert (await m.run_to_completion(drop)).processed == 10
    for i in range(10):
        assert await app.redis.hgetall(f"item:{i}") == {"id": str(i)}


# 5
async def test_already_done_runs_no_batch(world: World) -> None:
    await world.m.run_to_completion(world.set_default)
    n = len(world.calls)
    st = await run(world)
    assert st.state == "success" and len(world.calls) == n
    assert (await world.m.run_to_completion(world.set_default)).state == "success"
    assert len(world.calls) == n


# 6
async def test_failure_keeps_the_cursor_and_resumes(world: World) -> None:
    world.fail_on = {"item:4"}
    await run(world, batch_size=2)
    await run_until_idle(world.app)
    st = await status(world)
    assert (st.state, st.error, st.cursor, st.processed) == (
        "failed",
        "boom on item:4",
        "item:3",
        4,
    )
    assert await world.opts() == ["default", "x", "default", "x", None, "x", None, "x", None, "x"]
    world.fail_on = set()
    world.calls.clear()
    st = await run(world, batch_size=2)
    assert st.state == "inProgress" and world.calls == ["item:4", "item:5"]
    await run_until_idle(world.app)
    st = await status(world)
    assert (st.state, st.processed, st.error) == ("success", 10, None)
    assert await world.opts() == ["default", "x"] * 5


# 7
async def test_first_batch_failure_is_persisted(world: World) -> None:
    world.fail_on = {"item:0"}
    st = await run(world)
    assert (st.state, st.error, st.processed) == ("failed", "boom on item:0", 0)
    [listed] = await world.m.get_status([world.set_default])
    assert listed.state == "failed" and listed.error == "boom on item:0"
    with pytest.raises(MigrationBatchFailed, match="boom on item:0"):
        await world.m.run_to_completion(world.set_default)


# 8
async def test_a_second_start_is_a_noop_while_in_progress(world: World) -> None:
    other = world.m.define(source=world.set_default.source, migrate_one=lambda c, i: None, name="o")
    await run(world, batch_size=2)
    n = len(world.calls)
    st = await run(world, batch_size=2)
    assert (st.state, st.processed) == ("inProgress", 2) and len(world.calls) == n
    got = await world.m.run_serially([other, world.set_default])
    assert got is not None and got.name == world.set_default.name and got.state == "inProgress"
    assert (await status(world, "o")).state == "unknown"  # the series did not start
    with pytest.raises(MigrationInProgress):
        await world.m.run_to_completion(world.set_default)


async def test_two_runners_of_one_batch_commit_once(world: World) -> None:
    m, mig = world.m, world.set_default
    await m._begin(mig, "tok", RESUME, 3, [], None, False)
    a, b = await asyncio.gather(m._batch(mig, "tok"), m._batch(mig, "tok"))
    assert sorted([a.kind, b.kind]) == ["continue", "stale"]
    st = await status(world)
    assert (st.processed, st.cursor) == (3, "item:2")


# 9
async def test_explicit_cursor_and_reset_restart_a_done_migration(world: World) -> None:
    await world.m.run_to_completion(world.set_default)
    world.clock.advance(1000)
    st = await run(world, cursor=None, batch_size=4)
    assert (st.state, st.processed, st.latest_start, st.latest_end) == (
        "inProgress",
        4,
        T0 + 1000,
        None,
    )
    n = len(world.calls)
    assert (await run(world, reset=True)).processed == 4  # a live lease: still a no-op
    assert len(world.calls) == n
    await run_until_idle(world.app)
    world.clock.advance(1000)
    st = await run(world, reset=True)
    assert (st.state, st.processed, st.latest_start) == ("success", 10, T0 + 2000)
    st = await run(world, cursor="item:7")
    assert (st.state, st.processed) == ("success", 2)  # item:8, item:9


# 10, 11
def series(w: World) -> dict[str, Any]:
    src = w.set_default.source
    log: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    broken = {"on": True}

    def step(name: str) -> Any:
        def fn(ctx: MigrationCtx, item: Any) -> Any:
            if name == "b" and item[0] == "item:5" and broken["on"]:
                raise RuntimeError("b broke")
            log[name].append(item[0])
            return {name: "1"}

        return fn

    for n in "abc":
        w.m.define(source=src, migrate_one=step(n), name=n, batch_size=4)
    return {"log": log, "broken": broken}


async def test_series_stops_at_a_failure_and_resumes(world: World) -> None:
    s = series(world)
    st = await world.m.run_serially(["a", "b", "c"])
    assert st is not None and (st.name, st.state) == ("a", "inProgress")
    await run_until_idle(world.app)
    states = [x.state for x in await world.m.get_status(["a", "b", "c"])]
    assert states == ["success", "failed", "unknown"]
    assert s["log"]["c"] == []
    s["broken"]["on"] = False
    na = len(s["log"]["a"])
    await world.m.run_serially(["a", "b", "c"])
    await run_until_idle(world.app)
    statuses = await world.m.get_status(["a", "b", "c"])
    assert [x.state for x in statuses] == ["success"] * 3
    assert len(s["log"]["a"]) == na  # skipped: done
    assert s["log"]["b"][5:] == [f"item:{i}" for i in range(4, 10)]  # resumed at its batch
    assert s["log"]["c"] == [f"item:{i}" for i in range(10)]


async def test_reset_propagates_down_the_series(world: World) -> None:
    s = series(world)
    s["broken"]["on"] = False
    await world.m.run_to_completion("a")
    await world.m.run_to_completion("b")
    nb = len(s["log"]["b"])
    report = await world.m.run("a", next=["b"])
    await run_until_idle(world.app)
    assert report["Status"] == "Migration already done." and len(s["log"]["b"]) == nb
    world.clock.advance(5)
    await world.m.run("a", next=["b"], reset=True)
    await run_until_idle(world.app)
    b = await status(world, "b")
    assert (b.state, b.processed, b.latest_start) == ("success", 10, T0 + 5)
    assert len(s["log"]["b"]) == nb + 10


# 12
async def test_cancel_stops_after_the_executing_batch_and_resumes(world: World) -> None:
    s = series(world)
    s["broken"]["on"] = False
    m = world.m

    cancels: list[asyncio.Task[Any]] = []

    def cancel_inside(ctx: MigrationCtx, item: Any) -> Any:
        world.calls.append(item[0])
        if item[0] == "item:4":  # the third batch is executing: it still commits
            cancels.append(asyncio.get_running_loop().create_task(m.cancel(ctx.name)))
        return {"opt": "default"} if "opt" not in item[1] else None

    m.define(
        source=world.set_default.source,
        migrate_one=cancel_inside,
        name="set_default",
        batch_size=2,
    )

    apply = world.set_default.source.apply_patches

    async def slow_patches(patches: Any) -> None:
        await asyncio.gather(*cancels)  # the cancel lands while the batch executes
        await apply(patches)

    world.set_default.source.apply_patches = slow_patches  # type: ignore[method-assign]
    await m.run_serially(["set_default", "b"])
    await run_until_idle(world.app)
    st = await status(world)
    assert (st.state, st.processed, st.cursor) == ("canceled", 6, "item:5")
    assert world.calls == [f"item:{i}" for i in range(6)]
    assert (await status(world, "b")).state == "unknown"  # the series stopped
    st = await run(world)
    await run_until_idle(world.app)
    assert (await status(world)).state == "success" and (await status(world)).processed == 10
    assert (await status(world, "b")).state == "unknown"


async def test_cancel_of_a_queued_continuation_stops_at_once(world: World) -> None:
    await run(world, batch_size=2)
    st = await world.m.cancel(world.set_default)
    assert (st.state, st.processed) == ("canceled", 2)
    await run_until_idle(world.app)
    assert (await status(world)).processed == 2 and len(world.calls) == 2


# 13
async def test_cancel_edge_cases(world: World) -> None:
    with pytest.raises(MigrationNotFound, match="Migration nope not found"):
        await world.m.cancel("nope")
    s = series(world)
    s["broken"]["on"] = False
    await world.m.run_to_completion("a")
    assert (await world.m.cancel("a")).state == "success"
    await world.m.run_one("b")
    await world.m.run_one("c")
    canceled = await world.m.cancel_all()
    assert sorted((x.name, x.state) for x in canceled) == [("b", "canceled"), ("c", "canceled")]
    assert await world.m.cancel_all() == []


# 14
async def test_dry_run_of_a_fresh_migration_writes_nothing(world: World) -> None:
    before = await snapshot(world.app)
    got = await world.m.run_one(world.set_default, dry_run=True, batch_size=4)
    assert isinstance(got, DryRunReport)
    assert (got.status.processed, got.status.state, got.status.cursor) == (
        4,
        "inProgress",
        "item:3",
    )
    assert got.changes == [
        ("item:0", {"id": "0"}, {"id": "0", "opt": "default"}),
        ("item:2", {"id": "2"}, {"id": "2", "opt": "default"}),
    ]
    full = await world.m.run_one(world.set_default, dry_run=True)
    assert isinstance(full, DryRunReport) and full.status.processed == 10
    assert full.status.state == "success" and len(full.changes) == 5
    assert await snapshot(world.app) == before
    assert await queue_len(world.app) == 0


async def test_dry_run_captures_writes_through_ctx_redis(world: World) -> None:
    async def writes(ctx: MigrationCtx, item: Any) -> None:
        assert ctx.dry_run
        await ctx.redis.hset(item[0], "w", "1")
        assert await ctx.redis.hget(item[0], "id") == item[1]["id"]  # reads pass through
        pipe = ctx.redis.pipeline()
        pipe.hget(item[0], "id").incr("counter")
        assert await pipe.execute() == [item[1]["id"], None]

    m = world.m.define(source=world.set_default.source, migrate_one=writes, name="w")
    before = await snapshot(world.app)
    got = await world.m.run_one(m, dry_run=True, batch_size=2)
    assert isinstance(got, DryRunReport)
    assert got.writes == [
        ("HSET", "item:0", "w", "1"),
        ("INCR", "counter"),
        ("HSET", "item:1", "w", "1"),
        ("INCR", "counter"),
    ]
    assert await snapshot(world.app) == before


# 15, 16
async def test_dry_run_of_a_failing_batch_and_of_a_done_migration(world: World) -> None:
    world.fail_on = {"item:1"}
    before = await snapshot(world.app)
    got = await world.m.run_one(world.set_default, dry_run=True)
    assert isinstance(got, DryRunReport)
    assert (got.status.state, got.status.error) == ("failed", "boom on item:1")
    assert await snapshot(world.app) == before
    world.fail_on = set()
    await world.m.run_to_completion(world.set_default)
    n = len(world.calls)
    got = await world.m.run_one(world.set_default, dry_run=True)
    assert isinstance(got, DryRunReport) and got.status.state == "success"
    assert len(world.calls) == n and got.changes == []


# 17
async def test_status_listing(world: World) -> None:
    series(world)["broken"]["on"] = False
    for n in ("a", "b", "c"):
        await world.m.run_to_completion(n)
    got = await world.m.get_status(["b", "a", "zzz"])
    assert [(s.name, s.state) for s in got] == [
        ("b", "success"),
        ("a", "success"),
        ("zzz", "unknown"),
    ]
    assert (got[2].processed, got[2].cursor, got[2].latest_start) == (0, None, 0)
    assert [s.name for s in await world.m.get_status()] == ["a", "b", "c"]
    assert [s.name for s in await world.m.get_status(limit=2)] == ["b", "c"]


# 18
async def test_state_derivation(world: World) -> None:
    m, mig = world.m, world.set_default
    seen: list[str] = []

    async def hook(st: MigrationStatus) -> None:
        seen.append(st.state)
        n = len(world.calls)
        refused = await m.run_one(mig)
        assert isinstance(refused, MigrationStatus) and refused.state == "inProgress"
        assert len(world.calls) == n

    await m.run_to_completion(mig, batch_size=4, on_batch=hook)
    assert seen == ["inProgress", "inProgress"]
    # a runner that died: its lease expires, the state is unknown, a resume takes over
    await m._begin(mig, "dead", None, 4, [], None, False)
    await m._call("claim", m._keys(mig.name), "dead", "1000")
    assert (await status(world)).state == "inProgress"
    world.clock.advance(m.lease_ms + 1)
    assert (await status(world)).state == "unknown"
    st = await run(world, batch_size=4)
    assert (st.state, st.processed) == ("inProgress", 4)
    assert await m.app.redis.hget(m._keys(mig.name)[0], "token") not in (None, "dead")


# 19
class Killed(BaseException):
    """Stands in for SIGKILL: escapes every ``except Exception``."""


async def test_a_worker_dying_mid_batch_replays_the_batch(world: World) -> None:
    m, mig = world.m, world.set_default
    await m._begin(mig, "t1", RESUME, 3, [], None, False)
    world.fail_on = set()

    def dies(ctx: MigrationCtx, item: Any) -> Any:
        world.calls.append(item[0])
        if item[0] == "item:2":
            raise Killed
        return {"opt": "default"} if "opt" not in item[1] else None

    m.define(source=mig.source, migrate_one=dies, name=mig.name)
    with pytest.raises(Killed):
        await m._batch(m.get(mig.name), "t1")
    st = await status(world)
    assert (st.processed, st.cursor) == (0, None)
    world.clock.advance(m.lease_ms + 1)
    m.define(source=mig.source, migrate_one=mig.migrate_one, name=mig.name)
    world.calls.clear()
    st = await run(world)  # the saved batch size (3) is the resumed run's default: 100 here
    assert st.processed == 10 and world.calls[:3] == ["item:0", "item:1", "item:2"]
    late = await m._call(
        "commit", m._keys(mig.name), "t1", "0", "", "1", "item:2", "0", "3", "1000", "10"
    )
    assert [str(x) for x in late] == ["stale"]
    assert (await status(world)).processed == 10


# 20
async def test_run_to_completion(world: World) -> None:
    st = await world.m.run_to_completion(world.set_default, batch_size=3)
    assert (st.state, st.processed) == ("success", 10)
    assert await queue_len(world.app) == 0
    world.fail_on = {"item:9"}
    with pytest.raises(MigrationBatchFailed, match="boom on item:9"):
        await world.m.run_to_completion(world.set_default, cursor=None)

    async def stuck(cursor: str | None, limit: int) -> Any:
        return [1], "same", False

    m = world.m.define(
        source=IterableSource(stuck, "stuck"), migrate_one=lambda c, i: None, name="stuck"
    )
    with pytest.raises(MigrationBatchFailed, match="invariant"):
        await world.m.run_to_completion(m, cursor="same")


# 21
async def test_location_prefix(app: App) -> None:
    await seed(app)
    w = make_world(app, location_prefix="migrations:")
    assert w.set_default.name == "migrations:set_default"
    report = await w.m.run("set_default", batch_size=2)
    assert report["Name"] == "migrations:set_default"
    [st] = await w.m.get_status(["set_default"])
    assert st.name == "migrations:set_default" and st.state == "inProgress"
    assert (await w.m.cancel("set_default")).state == "canceled"
    assert w.m.full_name("other:x") == "other:x"


# 22
async def test_runner_validation(world: World) -> None:
    with pytest.raises(MigrationError, match="Specify the migration to run"):
        await world.m.run()
    with pytest.raises(UnknownMigration, match="Can't find function does_not_exist"):
        await world.m.run("does_not_exist")
    with pytest.raises(UnknownMigration):
        await world.m.run_one("does_not_exist")
    with pytest.raises(ValueError, match="cursor must be"):
        await world.m.run_one(world.set_default, cursor=5)  # type: ignore[arg-type]


# 23
async def test_a_changed_range_is_a_cursor_mismatch(app: App) -> None:
    await seed(app)
    m = Migrations(app)
    m.define(source=HashKeySource(app.redis, "item:*"), migrate_one=lambda c, i: None, name="h")
    st = await m.run_one("h", batch_size=2)
    assert isinstance(st, MigrationStatus) and st.state == "inProgress"
    await m.cancel("h")
    m.define(source=HashKeySource(app.redis, "item:1*"), migrate_one=lambda c, i: None, name="h")
    with pytest.raises(CursorMismatch, match="reset=True"):
        await m.run_one("h")
    with pytest.raises(CursorMismatch):
        await m.run_one("h", dry_run=True)
    st = await m.run_one("h", reset=True)
    assert isinstance(st, MigrationStatus) and (st.state, st.processed) == ("success", 1)


# 24
async def test_parallelize_overlaps_the_items_of_a_batch(world: World) -> None:
    barrier = asyncio.Barrier(5)

    async def together(ctx: MigrationCtx, item: Any) -> None:
        await asyncio.wait_for(barrier.wait(), 5)

    m = world.m.define(
        source=world.set_default.source, migrate_one=together, name="p", parallelize=True
    )
    st = await world.m.run_one(m, batch_size=5)
    assert isinstance(st, MigrationStatus) and st.processed == 5
    seq = await world.app.redis.hget(world.m._keys("p")[0], "seq")
    assert int(seq) == 2  # begin + one commit

    async def one_fails(ctx: MigrationCtx, item: Any) -> Any:
        await asyncio.sleep(0 if item[0] == "item:2" else 0.01)
        if item[0] == "item:2":
            raise RuntimeError("parallel boom")
        return {"p": "1"}

    f = world.m.define(
        source=world.set_default.source, migrate_one=one_fails, name="pf", parallelize=True
    )
    st = await world.m.run_one(f, batch_size=5)
    assert isinstance(st, MigrationStatus)
    assert (st.state, st.error, st.processed) == ("failed", "parallel boom", 0)
    assert [await world.app.redis.hget(f"item:{i}", "p") for i in range(5)] == [None] * 5


# 25
async def test_record_and_continue(world: World) -> None:
    def picky(ctx: MigrationCtx, item: Any) -> None:
        if item[0] in ("item:3", "item:6"):
            raise ValueError(f"bad {item[0]}")

    m = world.m.define(
        source=world.set_default.source, migrate_one=picky, name="r", on_item_error="record"
    )
    st = await world.m.run_to_completion(m, batch_size=4)
    assert (st.state, st.failed_items, st.processed) == ("success", 2, 10)
    assert await world.m.failed_items(m) == {"item:3": "bad item:3", "item:6": "bad item:6"}


# 28
async def test_progress_reports(world: World) -> None:
    r = await world.m.run(world.set_default, batch_size=4)
    assert r["Status"] == "Migration started." and r["Name"] == "set_default"
    assert r["lastStarted"] == "2023-11-14T22:13:20Z" and r["processed"] == 4
    assert "toCancel" in r and "toStartOver" not in r
    r = await world.m.run(world.set_default)
    assert r["Status"] == "Migration is running."
    await run_until_idle(world.app)
    r = await world.m.run(world.set_default)
    assert r["Status"] == "Migration already done." and r["toStartOver"]["run"]["reset"]
    r = await world.m.run(world.set_default, reset=True)
    assert r["Status"] == "Migration was started and finished in one batch."
    r = await world.m.run(world.set_default, dry_run=True, reset=True)
    assert r["Status"].startswith("DRY RUN: ") and r["DryRun"]
    world.fail_on = {"item:1"}
    r = await world.m.run(world.set_default, reset=True)
    assert r["Status"] == "Migration failed: boom on item:1"
    world.fail_on = set()
    await world.m.run(world.set_default, batch_size=2)
    await world.m.cancel(world.set_default)
    world.m.define(source=world.set_default.source, migrate_one=lambda c, i: None, name="x")
    r = await world.m.run(world.set_default, next=["x"], cursor=None, dry_run=True, batch_size=2)
    assert r["nowUp"] == ["x"]
    with pytest.raises(UnknownMigration):
        await world.m.run(world.set_default, next=["y"])
    r = await world.m.run(world.set_default, batch_size=2)
    assert r["Status"] == "Migration started."
    st = await world.m.progress(world.set_default)
    assert (st["processed"], st["estimate"]) == (4, 10)
