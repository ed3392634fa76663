"""The sources (spec §7.5, scenarios 26 and 27): sorted-set exactness under
concurrent inserts, SCAN at-least-once under churn (every Cluster primary), stream
and score ranges, and a SQL table through the user's own keyset paging
(SQLAlchemy on SQLite)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rkit import App, ConfigError
from rkit.migrations import (
    HashKeySource,
    IterableSource,
    MigrationBatchFailed,
    MigrationCtx,
    Migrations,
    MigrationStatus,
    RedisScanSource,
    SortedSetSource,
    SourcePage,
    StreamSource,
)
from rkit.testing import run_until_idle


# 26
async def test_sorted_set_source_visits_each_member_once_in_order(app: App) -> None:
    r = app.redis
    await r.flushall()
    originals = [f"m{i:04}" for i in range(1000)]
    await r.zadd("zs", dict.fromkeys(originals, 0))
    seen: list[str] = []
    m = Migrations(app)
    mig = m.define(
        source=SortedSetSource(r, "zs"), migrate_one=lambda c, i: seen.append(i), name="z"
    )
    k = 0

    async def churn(st: MigrationStatus) -> None:
        nonlocal k
        k += 1
        await r.zadd("zs", {f"a{k:03}": 0, f"z{k:03}": 0})  # behind and ahead of the cursor

    st = await m.run_to_completion(mig, batch_size=7, on_batch=churn)
    ahead = [f"z{i:03}" for i in range(1, k + 1)]
    assert seen == originals + ahead
    assert max(Counter(seen).values()) == 1
    assert st.processed == len(seen) and st.state == "success"


# 27
@pytest.mark.parametrize("n", [1500])
async def test_scan_source_sees_every_stable_key_at_least_once(app: App, n: int) -> None:
    r = app.redis
    await r.flushall()
    stable = {f"k:{i}" for i in range(n)}
    for chunk in range(0, n, 500):
        pipe = r.pipeline()
        for i in range(chunk, min(n, chunk + 500)):
            pipe.hset(f"k:{i}", "v", "1")
        await pipe.execute()
    seen: Counter[str] = Counter()
    m = Migrations(app)

    def visit(ctx: MigrationCtx, item: Any) -> Any:
        seen[item[0]] += 1
        return {"v": "2"}

    mig = m.define(source=HashKeySource(r, "k:*"), migrate_one=visit, name="scan")
    k = 0

    async def churn(st: MigrationStatus) -> None:
        nonlocal k
        k += 1
        await r.hset(f"k:new:{k}", "v", "1")  # may or may not be seen
        await r.hset(f"k:tmp:{k}", "v", "1")
        if k > 1:
            await r.delete(f"k:tmp:{k - 1}")

    st = await m.run_to_completion(mig, batch_size=50, on_batch=churn)
    assert st.state == "success" and k > 5
    assert stable <= set(seen)
    assert st.processed >= n
    for key in list(stable)[:50]:
        assert await r.hget(key, "v") == "2"


async def test_scan_cursor_walks_every_node_and_rejects_garbage(app: App) -> None:
    r = app.redis
    await r.flushall()
    for i in range(60):
        await r.set(f"s:{{{i}}}", "1")  # spread over every Cluster slot range
    src = RedisScanSource(r, "s:*")
    keys: set[str] = set()
    cursor: str | None = None
    pages = 0
    while True:
        page = await src.page(cursor, 10)
        keys |= set(page.items)
        pages += 1
        cursor = page.next_cursor
        if page.is_done:
            break
    assert keys == {f"s:{{{i}}}" for i in range(60)} and pages >= 2
    assert src.fingerprint() == "scan::s:*"
    assert await src.estimate_total() == 60
    with pytest.raises(ConfigError, match="not a scan cursor"):
        await src.page("nope", 10)
    with pytest.raises(ConfigError):
        RedisScanSource(r, "")


async def test_stream_source_once_in_id_order(app: App) -> None:
    r = app.redis
    await r.flushall()
    ids = [await r.xadd("st", {"n": str(i)}) for i in range(25)]
    seen: list[str] = []
    m = Migrations(app)
    mig = m.define(
        source=StreamSource(r, "st"), migrate_one=lambda c, i: seen.append(i[0]), name="s"
    )
    st = await m.run_to_completion(mig, batch_size=7)
    assert seen == ids and st.processed == 25
    await r.xadd("st", {"n": "late"})
    bad = m.define(source=StreamSource(r, "st"), migrate_one=lambda c, i: {"x": 1}, name="p")
    with pytest.raises(MigrationBatchFailed, match="no patch shorthand"):
        await m.run_to_completion(bad)
    assert (await m.status(bad)).processed == 0


async def test_sorted_set_by_score_with_ties(app: App) -> None:
    r = app.redis
    await r.flushall()
    members = {f"m{i:02}": float(i // 4) for i in range(30)}  # runs of 4 equal scores
    await r.zadd("sc", members)
    seen: list[tuple[str, float]] = []
    m = Migrations(app)
    mig = m.define(
        source=SortedSetSource(r, "sc", by="score"),
        migrate_one=lambda c, i: seen.append(i),
        name="sc",
    )
    st = await m.run_to_completion(mig, batch_size=3)
    assert seen == sorted(members.items(), key=lambda kv: (kv[1], kv[0]))
    assert st.processed == 30
    with pytest.raises(ConfigError):
        SortedSetSource(r, "sc", by="rank")  # type: ignore[arg-type]


async def test_iterator_source(app: App) -> None:
    data = list(range(23))

    async def iterate(cursor: str | None) -> AsyncIterator[tuple[str, int]]:
        start = 0 if cursor is None else int(cursor) + 1
        for i in data[start:]:
            yield str(i), i

    seen: list[int] = []
    m = Migrations(app)
    src = IterableSource.from_iterator(iterate, "numbers")
    mig = m.define(source=src, migrate_one=lambda c, i: seen.append(i), name="it")
    st = await m.run_to_completion(mig, batch_size=5)
    assert seen == data and st.processed == 23
    page = await src.page(None, 100)
    assert page == SourcePage(data, "22", True)


SCHEMA = "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, email_lower TEXT)"


async def test_a_sql_table_through_sqlalchemy_keyset_paging(app: App, tmp_path: Path) -> None:
    """The issue's example: the user's own query pages a SQL table (SQLAlchemy 2 on
    SQLite via aiosqlite); each batch's updates are one transaction; the migration
    state (cursor, progress) lives in Redis."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    async with engine.begin() as conn:
        await conn.execute(text(SCHEMA))
        await conn.execute(
            text("INSERT INTO users (id, email) VALUES (:id, :email)"),
            [{"id": i, "email": f"User{i}@Example.COM"} for i in range(1, 48)],
        )

    async def page(cursor: str | None, limit: int) -> SourcePage[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT id, email FROM users WHERE id > :c ORDER BY id LIMIT :n"),
                    {"c": int(cursor or 0), "n": limit + 1},
                )
            ).mappings()
            items = [dict(row) for row in rows]
        more = len(items) > limit
        items = items[:limit]
        return SourcePage(items, str(items[-1]["id"]) if items else cursor or "0", not more)

    async def apply(patches: list[tuple[dict[str, Any], Any]]) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE users SET email_lower = :v WHERE id = :id"),
                [{"id": row["id"], "v": p["email_lower"]} for row, p in patches],
            )

    async def count() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM users"))).scalar_one())

    source = IterableSource(
        page,
        "sql:users:id",
        item_id=lambda row: str(row["id"]),
        apply_patches=apply,
        estimate=count,
    )
    m = Migrations(app)
    lower = m.define(
        source=source,
        migrate_one=lambda ctx, row: {"email_lower": row["email"].lower()},
        name="lower_emails",
        batch_size=10,
    )
    dry = await m.run_one(lower, dry_run=True)
    assert dry.status.processed == 10 and len(dry.changes) == 10  # type: ignore[union-attr]
    st = await m.run_one(lower)
    assert isinstance(st, MigrationStatus) and st.processed == 10
    await run_until_idle(app)
    st = await m.status(lower)
    assert (st.state, st.processed) == ("success", 47)
    assert (await m.progress(lower))["estimate"] == 47
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, email_lower FROM users"))).all()
    assert all(v == f"user{i}@example.com" for i, v in rows)
    await engine.dispose()
