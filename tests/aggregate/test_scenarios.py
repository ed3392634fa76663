"""The aggregate's acceptance scenarios (numbered as test_<n>_...) on fakeredis, real
Redis and a 3-node Cluster: the ``app`` fixture is parametrised over the three, so every
scenario must pass unchanged on each."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from rkit import App
from rkit.aggregate import (
    AtQuery,
    Bound,
    Change,
    DirectAggregate,
    Eq,
    Int64,
    Item,
    Page,
    Prefix,
    Query,
    Range,
    TableAggregate,
)
from rkit.errors import (
    InvalidNodeSize,
    KeyEncodingError,
    KeyExistsError,
    KeyNotFoundError,
    OffsetOutOfRange,
)
from rkit.testing import peer_app


@pytest.fixture
def agg(app: App) -> DirectAggregate[object]:
    return DirectAggregate(app, "t")


async def fill(agg: DirectAggregate[object], keys: list[object], ns: object = None) -> None:
    for i, k in enumerate(keys):
        await agg.insert(k, f"id{i}", float(k) if isinstance(k, int) else 0.0, namespace=ns)


def rng(lo: object, hi: object, lo_inc: bool = True, hi_inc: bool = True) -> Range:
    return Range(Bound(lo, lo_inc), Bound(hi, hi_inc))


async def all_items(agg: DirectAggregate[object], **kw: object) -> list[Item[object]]:
    return [i async for i in agg.iter(**kw)]  # type: ignore[arg-type]


async def test_1_empty(agg: DirectAggregate[object]) -> None:
    assert await agg.count() == 0
    assert await agg.sum() == 0.0
    assert await agg.min() is None
    assert await agg.max() is None
    assert await agg.random() is None
    assert await agg.paginate() == Page([], "", True)
    with pytest.raises(OffsetOutOfRange):
        await agg.at(0)


async def test_2_basic_stats(agg: DirectAggregate[object]) -> None:
    for k in (10, 20, 30):
        await agg.insert(k, f"id{k}", k)
    assert await agg.count() == 3
    assert await agg.sum() == 60
    assert (await agg.at(0)).key == 10
    assert (await agg.at(-1)).key == 30
    assert (await agg.min()).id == "id10"  # type: ignore[union-attr]
    assert (await agg.max()).sum_value == 30  # type: ignore[union-attr]


async def test_3_inclusive_exclusive(app: App) -> None:
    agg: DirectAggregate[int] = DirectAggregate(app, "a")
    await fill(agg, [10, 20, 30, 40])  # type: ignore[arg-type]
    assert await agg.count(bounds=rng(20, 30)) == 2
    assert await agg.count(bounds=rng(20, 30, False, False)) == 0
    assert await agg.count(bounds=rng(20, 30, True, False)) == 1
    assert await agg.count(bounds=rng(20, 30, False, True)) == 1
    b: DirectAggregate[int] = DirectAggregate(app, "b")
    await fill(b, [15, 20, 20, 25])  # type: ignore[arg-type]
    assert await b.count(bounds=Range(lower=Bound(20, True))) == 3
    assert await b.count(bounds=Range(lower=Bound(20, False))) == 1


async def test_4_eq(agg: DirectAggregate[object]) -> None:
    await fill(agg, [10, 20, 20, 30])
    assert await agg.count(bounds=Eq(20)) == 2
    assert await agg.sum(bounds=Eq(20)) == 40
    assert await agg.count(bounds=Eq(40)) == 0
    qs = [Query(Eq(k)) for k in (10, 20, 30, 40)]
    assert await agg.count_batch(qs) == [1, 2, 1, 0]


async def test_5_prefix(agg: DirectAggregate[object]) -> None:
    for i, (a, b) in enumerate([(10, "a"), (10, "b"), (20, "c"), (20, "d"), (30, "e")]):
        await agg.insert([a, b], str(i), a)
    assert await agg.count(bounds=Prefix([10])) == 2
    assert await agg.count(bounds=Prefix([20])) == 2
    assert await agg.count(bounds=Prefix([])) == 5
    assert await agg.count(bounds=Prefix([10, "a"])) == 1
    assert await agg.sum(bounds=Prefix([10])) == 20
    await agg.insert(5, "scalar")
    assert await agg.count(bounds=Prefix([])) == 5  # scalars are not arrays
    assert await agg.count(bounds=Eq([20, "c"])) == 1


async def test_6_bounds_with_ids(agg: DirectAggregate[object]) -> None:
    await agg.insert(1, "A", 1.0)
    await agg.insert(2, "B", 2.0)
    b = Range(lower=Bound(1, False, id="A"), upper=Bound(2, True))
    assert await agg.count(bounds=b) == 1
    assert await agg.sum(bounds=b) == 2.0


async def test_7_duplicate_insert(agg: DirectAggregate[object]) -> None:
    await agg.insert(5, "a")
    with pytest.raises(KeyExistsError, match="already exists"):
        await agg.insert(5, "a", 1.0)
    assert await agg.count() == 1


async def test_8_delete_missing(agg: DirectAggregate[object]) -> None:
    with pytest.raises(KeyNotFoundError) as info:
        await agg.delete(99, "x")
    assert info.value.code == "DELETE_MISSING_KEY"
    assert await agg.delete_if_exists(99, "x") is None  # type: ignore[func-returns-value]


async def test_9_replace(agg: DirectAggregate[object]) -> None:
    await agg.insert(1, "a", 1.0)
    await agg.replace(1, "a", 5, sum_value=7.0)
    assert await agg.get(1, "a") is None
    assert (await agg.get(5, "a")).sum_value == 7.0  # type: ignore[union-attr]
    assert await agg.count() == 1
    assert await agg.sum() == 7.0
    ver = await agg.version()
    with pytest.raises(KeyNotFoundError):
        await agg.replace(9, "zz", 10)
    assert await agg.count() == 1 and await agg.version() == ver
    await agg.insert(6, "a")
    with pytest.raises(KeyExistsError):  # insert half fails: delete half rolled back
        await agg.replace(5, "a", 6, sum_value=0.0)
    assert await agg.get(5, "a") is not None and await agg.count() == 2


async def test_10_replace_across_namespaces(agg: DirectAggregate[object]) -> None:
    await agg.insert(1, "a", namespace="x")
    await agg.replace(1, "a", 1, namespace="x", new_namespace="y")
    assert await agg.count(namespace="x") == 0
    assert await agg.count(namespace="y") == 1
    await agg.replace(1, "a", 2, namespace="y")
    assert await agg.count(namespace="y") == 1 and await agg.count() == 0
    await agg.insert(3, "a", namespace="x")
    with pytest.raises(KeyExistsError):  # failure leaves both trees unchanged
        await agg.replace(2, "a", 3, namespace="y", new_namespace="x")
    assert await agg.count(namespace="y") == 1 and await agg.count(namespace="x") == 1


async def test_11_namespaces_isolated(agg: DirectAggregate[object]) -> None:
    await fill(agg, [1, 2, 3, 4, 5], "a")
    await fill(agg, [6, 7, 10, 0], "b")
    assert await agg.count(namespace="a") == 5
    assert await agg.count(namespace="b") == 4
    assert await agg.count() == 0
    assert await agg.count(bounds=rng(0, 10), namespace="a") == 5


async def test_12_ranks(app: App) -> None:
    agg: DirectAggregate[int] = DirectAggregate(app, "r", default_max_node_size=4)
    keys = list(range(-1, 11))
    random.Random(12).shuffle(keys)
    for k in keys:
        await agg.insert(k, str(k))
    assert await agg.index_of(-1) == 0
    assert await agg.index_of(5) == 6
    assert await agg.index_of(10) == 11
    assert await agg.index_of(10.5) == 12  # type: ignore[arg-type]
    for k in keys:
        assert (await agg.at(await agg.index_of(k))).key == k


async def test_13_leaderboard(app: App) -> None:
    scores = [10, 20, 15, 25, 30, 35, 5]
    neg: DirectAggregate[int] = DirectAggregate(app, "neg")
    raw: DirectAggregate[int] = DirectAggregate(app, "raw")
    for s in scores:
        await neg.insert(-s, f"u{s}")
        await raw.insert(s, f"u{s}")
    assert (await neg.at(0)).key == -35
    assert (await neg.at(1)).key == -30
    assert (await neg.at(5)).key == -10
    assert await neg.index_of(-35) == 0
    assert await neg.index_of(-30) == 1
    assert await neg.index_of(-10) == 5
    assert await neg.index_of(-33) == 1
    assert await raw.index_of(20, order="desc") == 3


async def test_14_negative_offsets_and_batches(agg: DirectAggregate[object]) -> None:
    await fill(agg, [5, 1, 4, 2, 3])
    assert await agg.at(-1) == await agg.max()
    assert await agg.at(-5) == await agg.min()
    with pytest.raises(OffsetOutOfRange):
        await agg.at(-6)
    with pytest.raises(OffsetOutOfRange):
        await agg.at(5)
    assert await agg.at_batch([AtQuery(0), AtQuery(-1)]) == [await agg.min(), await agg.max()]


async def test_15_offset_validation(agg: DirectAggregate[object]) -> None:
    for bad in (1.5, True):
        with pytest.raises((TypeError, ValueError)):
            await agg.at(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await agg.paginate(page_size=0)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_16_pagination_covers_once(agg: DirectAggregate[object], order: str) -> None:
    rnd = random.Random(16)
    items = [(rnd.randrange(50), f"i{i}") for i in range(250)]
    await agg.insert_many([(k, i, 1.0) for k, i in items])
    expect = sorted(items, reverse=order == "desc")
    got: list[tuple[object, str]] = []
    cursor = None
    while True:
        page = await agg.paginate(cursor=cursor, page_size=7, order=order)  # type: ignore[arg-type]
        got.extend((it.key, it.id) for it in page.items)
        if page.is_done:
            assert page.cursor == ""
            break
        cursor = page.cursor
    assert got == expect
    last = await agg.paginate(page_size=250, order=order)  # type: ignore[arg-type]
    assert last.is_done and last.cursor == "" and len(last.items) == 250
    assert await agg.paginate(cursor="") == Page([], "", True)


async def test_17_pagination_stable_under_writes(agg: DirectAggregate[object]) -> None:
    await agg.insert_many([(k, f"id{k}", 0.0) for k in range(0, 100, 2)])
    p1 = await agg.paginate(page_size=10)
    last = p1.items[-1].key
    await agg.insert(1, "new")  # smaller than page 1's last key
    await agg.delete(50, "id50")  # on page 3
    rest = [i async for i in _iter_from(agg, p1.cursor)]
    seen = {(i.key, i.id) for i in p1.items}
    assert not seen & {(i.key, i.id) for i in rest}
    assert all(i.key > last for i in rest)  # type: ignore[operator]
    assert (50, "id50") not in {(i.key, i.id) for i in rest}
    assert len(rest) == 50 - 10 - 1


async def _iter_from(agg: DirectAggregate[object], cursor: str):  # type: ignore[no-untyped-def]
    while True:
        page = await agg.paginate(cursor=cursor, page_size=10)
        for i in page.items:
            yield i
        if page.is_done:
            return
        cursor = page.cursor


ORDERED_KEYS: list[object] = [
    None,
    Int64(5),
    -1e300,
    0.0,
    float("inf"),
    float("nan"),
    False,
    True,
    "",
    "a",
    b"\x00",
    [],
    [1],
    [1, None],
    {},
    {"a": 1},
]


async def test_18_key_order_across_types(agg: DirectAggregate[object]) -> None:
    shuffled = list(enumerate(ORDERED_KEYS))
    random.Random(18).shuffle(shuffled)
    for i, k in shuffled:
        await agg.insert(k, f"k{i}")
    got = [it.key for it in (await agg.paginate()).items]
    assert len(got) == len(ORDERED_KEYS)
    for g, want in zip(got, ORDERED_KEYS, strict=True):
        if isinstance(want, float) and math.isnan(want):
            assert isinstance(g, float) and math.isnan(g)
        else:
            assert g == want
            assert type(g) is type(want) or isinstance(want, int)


async def test_19_number_bool_typing(agg: DirectAggregate[object]) -> None:
    await agg.insert(True, "x")
    await agg.insert(1, "y")
    assert await agg.count() == 2
    assert await agg.count(bounds=Eq(1)) == 1
    with pytest.raises(KeyEncodingError):
        await agg.insert(2**60, "z")
    await agg.insert(Int64(2**60), "z")
    await agg.insert(-1e300, "w")
    assert (await agg.at(0)).key == Int64(2**60)
    assert (await agg.at(1)).key == -1e300


async def test_20_negative_zero(agg: DirectAggregate[object]) -> None:
    await agg.insert(-0.0, "a")
    with pytest.raises(KeyExistsError):
        await agg.insert(0.0, "a")
    assert await agg.count(bounds=Eq(0.0)) == 1


async def test_21_idempotent_twins(agg: DirectAggregate[object]) -> None:
    await agg.insert(5, "a", 10)
    await agg.insert_if_does_not_exist(5, "a", 20)
    assert await agg.count() == 1 and await agg.sum() == 20
    await agg.replace_or_insert(7, "b", 8)
    assert await agg.get(8, "b") is not None and await agg.count() == 2


async def test_22_table_aggregate_triggers(app: App) -> None:
    def make(name: str) -> TableAggregate[float, dict[str, object]]:
        return TableAggregate(
            app,
            name,
            sort_key=lambda d: d["score"],  # type: ignore[arg-type, return-value]
            sum_value=lambda d: d["score"],  # type: ignore[arg-type, return-value]
            namespace=lambda d: d["album"],
        )

    a = {"_id": "A", "score": 10, "album": "v"}
    b = {"_id": "B", "score": 20, "album": "v"}
    b2 = {"_id": "B", "score": 25, "album": "f"}
    changes = [
        Change("insert", "A", None, a),
        Change("insert", "B", None, b),
        Change("update", "B", b, b2),
        Change("delete", "A", a, None),
    ]
    plain = make("plain")
    on_change = plain.trigger()
    for c in changes:
        await on_change(c)  # type: ignore[arg-type]
    idem = make("idem")
    replay = idem.idempotent_trigger()
    for c in changes + changes:
        await replay(c)  # type: ignore[arg-type]
    for t in (plain, idem):
        assert await t.count(namespace="v") == 0
        assert await t.count(namespace="f") == 1
        assert await t.sum(namespace="f") == 25
    assert await plain.index_of_doc(b2) == 0  # type: ignore[arg-type]


async def test_23_clear_keeps_settings(agg: DirectAggregate[object]) -> None:
    await agg.insert(1, "a")
    await agg.clear(max_node_size=4, root_lazy=False)
    await agg.clear()
    s = await agg.stats()
    assert s["max_node_size"] == 4 and s["root_lazy"] is False and s["count"] == 0
    await agg.insert(1, "a")
    with pytest.raises(InvalidNodeSize):
        await agg.clear(max_node_size=5)
    assert await agg.count() == 1 and (await agg.stats())["max_node_size"] == 4


async def test_24_clear_all(agg: DirectAggregate[object]) -> None:
    for ns in ("a", "b", None):
        await agg.insert(1, "x", namespace=ns)
    await agg.clear_all()
    for ns in ("a", "b", None):
        assert await agg.count(namespace=ns) == 0
    assert None in [ns async for ns in agg.iter_namespaces()]
    empty = DirectAggregate(agg.app, "empty")
    await empty.clear_all()
    await empty.clear_all()


async def test_25_namespace_listing(agg: DirectAggregate[object]) -> None:
    for ns in ("b", "a", None):
        await agg.insert(1, "x", namespace=ns)
    page, cursor, done = await agg.paginate_namespaces(page_size=2)
    assert page == ["b", "a"] and not done
    page, cursor, done = await agg.paginate_namespaces(cursor, page_size=2)
    assert page == [None] and done and cursor == "endcursor"


@pytest.mark.slow
async def test_26_invariants_under_churn(app: App) -> None:
    agg: DirectAggregate[float] = DirectAggregate(app, "churn", default_max_node_size=4)
    rnd = random.Random(26)
    keys = rnd.sample(range(100_000), 1000)
    for i, k in enumerate(keys):
        await agg.insert(k, "i")
        if i % 50 == 49:
            await agg.validate()
            n = i + 1
            assert (await agg.stats())["height"] <= 1 + math.floor(math.log((n + 1) / 2, 3))
    for i, k in enumerate(rnd.sample(keys, 600)):
        await agg.delete(k, "i")
        if i % 50 == 49:
            await agg.validate()
    assert await agg.count() == 400
    n = 400
    assert (await agg.stats())["height"] <= 1 + math.floor(math.log((n + 1) / 2, 3))


async def test_28_batch_equals_single(agg: DirectAggregate[object]) -> None:
    rnd = random.Random(28)
    for ns in ("p", "q", None):
        await agg.insert_many(
            [(rnd.randrange(100), f"{ns}{i}", i) for i in range(60)], namespace=ns
        )
    queries = []
    for _ in range(30):
        a, b = sorted(rnd.sample(range(-5, 105), 2))
        queries.append(Query(rng(a, b, rnd.random() < 0.5, rnd.random() < 0.5), rnd.choice("pq")))
    queries.append(Query(None, None))
    counts = [await agg.count(bounds=q.bounds, namespace=q.namespace) for q in queries]
    sums = [await agg.sum(bounds=q.bounds, namespace=q.namespace) for q in queries]
    assert await agg.count_batch(queries) == counts
    assert await agg.sum_batch(queries) == sums
    ats = [AtQuery(rnd.randrange(-30, 30), None, rnd.choice("pq")) for _ in range(20)]
    assert await agg.at_batch(ats) == [await agg.at(q.offset, namespace=q.namespace) for q in ats]
    with pytest.raises(ValueError, match="You must pass bounds and/or namespace"):
        await agg.count_batch([None])  # type: ignore[list-item]


async def test_29_concurrency(agg: DirectAggregate[object]) -> None:
    sem = asyncio.Semaphore(50)

    async def ins(i: int) -> None:
        async with sem:
            await agg.insert(i % 97, f"id{i}", 1.0)

    async def dele(i: int) -> None:
        async with sem:
            await agg.delete(i % 97, f"id{i}")

    await asyncio.gather(*(ins(i) for i in range(500)))
    await asyncio.gather(*(ins(i) for i in range(500, 2000)), *(dele(i) for i in range(500)))
    assert await agg.count() == 2000 - 500
    assert await agg.sum() == 1500.0
    await agg.validate()


async def test_30_random(app: App) -> None:
    draws = iter([0.0, 0.5, 0.999999])
    agg: DirectAggregate[int] = DirectAggregate(app, "rnd", rng=lambda: next(draws))
    n = 10
    for k in range(n):
        await agg.insert(k, str(k))
    assert await agg.random() == await agg.at(0)
    assert await agg.random() == await agg.at(n // 2)
    assert await agg.random() == await agg.at(n - 1)
    # the same tree seen from another process with its own rng
    real: DirectAggregate[int] = DirectAggregate(peer_app(app), "rnd", rng=random.Random(30).random)
    counts = [0] * n
    for _ in range(2000 if app.is_cluster else 20_000 if not app.embedded else 5000):
        counts[int((await real.random()).key)] += 1  # type: ignore[union-attr]
    total = sum(counts)
    assert all(
        abs(c - total / n) <= 0.1 * total / n * (1 if total == 20_000 else 2.5) for c in counts
    )


async def test_31_root_collapse_keeps_laziness(agg: DirectAggregate[object]) -> None:
    await agg.clear(max_node_size=4)
    for k in range(20):
        await agg.insert(k, "x")
    for k in range(19):
        await agg.delete(k, "x")
    await agg.validate()
    s = await agg.stats()
    assert s["height"] == 1 and s["root_lazy"] is True and await agg.count() == 1


async def test_32_odd_bytes(agg: DirectAggregate[object]) -> None:
    keys = ["a:b|c", "\x00", "\uffff", "😀", "\x01\x02", "{x}"]
    ids = ["i:d", "i|d", "{", "}", "\x00", ""]
    for k, i in zip(keys, ids, strict=True):
        await agg.insert(k, i)
    items = (await agg.paginate()).items
    assert [(it.key, it.id) for it in items] == sorted(zip(keys, ids, strict=True))
    for j in range(len(keys)):
        it = await agg.at(j)
        assert (it.key, it.id) == (items[j].key, items[j].id)
    assert await agg.index_of("\uffff") < await agg.index_of("😀")


async def test_33_sum_precision(agg: DirectAggregate[object]) -> None:
    sums = [0.1, 0.2, 1 / 3, 2.5]
    for k, s in zip(range(1, 5), sums, strict=True):
        await agg.insert(k, f"id{k}", s)
    assert (await agg.get(3, "id3")).sum_value == 1 / 3  # type: ignore[union-attr]
    assert (await agg.at(0)).sum_value == 0.1
    assert await agg.sum() == pytest.approx(math.fsum(sums), abs=1e-12)
    assert await agg.sum(bounds=Eq(3)) == 1 / 3


async def test_34_version(agg: DirectAggregate[object]) -> None:
    assert await agg.version() == 0
    await agg.insert(1, "a")
    await agg.insert(2, "a")
    assert await agg.version() == 2
    with pytest.raises(KeyExistsError):
        await agg.insert(1, "a")
    assert await agg.version() == 2
    await agg.delete(1, "a")
    assert await agg.version() == 3
