"""Bad input to any public entry point of the aggregate raises ``ConfigError`` (or its
subclasses ``KeyEncodingError`` / ``InvalidNodeSize``) before Redis is touched: every key
and value in Redis is the same afterwards. Non-finite sums, keys nested too deep (or
cyclic), malformed namespaces, cursors, batch queries and settings are all covered.
NaN and ±inf stay ordinary *keys* (they have a place in the keys' order), never sums.

The checks run in Python, so fakeredis and a real redis-server suffice (no Cluster)."""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from rkit import App
from rkit.aggregate import (
    AtQuery,
    Bound,
    Change,
    DirectAggregate,
    Eq,
    Prefix,
    Query,
    Range,
    TableAggregate,
)
from rkit.aggregate.keys import MAX_KEY_DEPTH
from rkit.errors import ConfigError, KeyEncodingError

BACKENDS = pytest.mark.parametrize("backend", ["fake", "redis"], indirect=True)

Doc = dict[str, Any]
Table = TableAggregate[Any, Doc]


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` lists around ``leaf``."""
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def nested_dict(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


DEEP = nested(MAX_KEY_DEPTH + 1)
VERY_DEEP = nested(5000)  # far beyond Python's recursion limit
DEEP_DICT = nested_dict(MAX_KEY_DEPTH + 1)
CYCLE: list[Any] = []
CYCLE.append(CYCLE)
FORGED_CURSOR = base64.urlsafe_b64encode(b"\x0a" * 5000).decode().rstrip("=")

OLD = {"_id": "t1", "score": 1, "w": 1.0}


def doc(score: Any = 2, w: Any = 1.0, id: str = "t2") -> Doc:
    return {"_id": id, "score": score, "w": w}


async def docs(*items: Doc) -> AsyncIterator[Doc]:
    for item in items:
        yield item


async def snapshot(app: App) -> dict[str, Any]:
    """Every key of the App's namespace with its type and full value."""
    r = app.redis
    out: dict[str, Any] = {}
    async for key in r.scan_iter(match=f"rkit:{{{app.keys.namespace}:*"):
        kind = await r.type(key)
        if kind == "hash":
            value: Any = await r.hgetall(key)
        elif kind == "zset":
            value = await r.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(await r.smembers(key))
        else:
            value = await r.get(key)
        out[key] = (kind, value)
    return out


@pytest.fixture
async def fronts(app: App) -> tuple[DirectAggregate[Any], Table]:
    """Both front ends with items in the default partition and in namespace "n"."""
    direct: DirectAggregate[Any] = DirectAggregate(app, "d")
    await direct.insert_many([(1, "a", 1.0), (2, "b", 2.0)])
    await direct.insert(3, "c", 3.0, namespace="n")
    table: Table = TableAggregate(
        app,
        "t",
        sort_key=lambda d: d["score"],
        sum_value=lambda d: d["w"],
        namespace=lambda d: d.get("ns"),
    )
    await table.insert(OLD)
    return direct, table


Call = Callable[[DirectAggregate[Any], Table], Awaitable[Any]]

BAD_CALLS: dict[str, Call] = {
    # non-finite (or unrepresentable) sums, on every write path
    "insert sum nan": lambda d, t: d.insert(5, "x", math.nan),
    "insert sum inf": lambda d, t: d.insert(5, "x", math.inf),
    "insert sum -inf": lambda d, t: d.insert(5, "x", -math.inf),
    "insert sum int beyond float": lambda d, t: d.insert(5, "x", 10**400),
    "insert_if_does_not_exist sum nan": lambda d, t: d.insert_if_does_not_exist(1, "a", math.nan),
    "replace sum inf": lambda d, t: d.replace(1, "a", 5, sum_value=math.inf),
    "replace_or_insert sum nan": lambda d, t: d.replace_or_insert(1, "a", 5, sum_value=math.nan),
    "insert_many sum nan in 2nd": lambda d, t: d.insert_many([(5, "x", 1.0), (6, "y", math.nan)]),
    "table insert sum nan": lambda d, t: t.insert(doc(w=math.nan)),
    "table replace sum inf": lambda d, t: t.replace(OLD, doc(w=math.inf)),
    "table insert_if_does_not_exist sum nan": lambda d, t: t.insert_if_does_not_exist(
        doc(w=math.nan)
    ),
    "trigger insert sum nan": lambda d, t: t.trigger()(
        Change("insert", "t2", None, doc(w=math.nan))
    ),
    "idempotent_trigger update sum inf": lambda d, t: t.idempotent_trigger()(
        Change("update", "t1", OLD, doc(w=math.inf, id="t1"))
    ),
    "rebuild sum nan (nothing cleared)": lambda d, t: t.rebuild(docs(doc(), doc(w=math.nan))),
    "rebuild chunk 0 (nothing cleared)": lambda d, t: t.rebuild(docs(doc()), chunk=0),
    "insert_many chunk 0": lambda d, t: d.insert_many([(5, "x")], chunk=0),
    # keys nested too deep, or cyclic
    "insert deep list": lambda d, t: d.insert(DEEP, "x"),
    "insert very deep list": lambda d, t: d.insert(VERY_DEEP, "x"),
    "insert deep dict": lambda d, t: d.insert(DEEP_DICT, "x"),
    "insert cyclic list": lambda d, t: d.insert(CYCLE, "x"),
    "insert deep namespace": lambda d, t: d.insert(5, "x", namespace=DEEP),
    "delete deep": lambda d, t: d.delete(DEEP, "a"),
    "delete_if_exists deep": lambda d, t: d.delete_if_exists(VERY_DEEP, "a"),
    "replace to deep key": lambda d, t: d.replace(1, "a", DEEP),
    "replace to deep namespace": lambda d, t: d.replace(1, "a", 1, new_namespace=DEEP),
    "insert_many deep in 2nd": lambda d, t: d.insert_many([(5, "x"), (DEEP, "y")]),
    "table insert deep sort key": lambda d, t: t.insert(doc(score=DEEP)),
    "table insert deep namespace": lambda d, t: t.insert({**doc(), "ns": VERY_DEEP}),
    "table replace to cyclic key": lambda d, t: t.replace(OLD, doc(score=CYCLE, id="t1")),
    "clear deep namespace": lambda d, t: d.clear(namespace=DEEP),
    "init deep namespace": lambda d, t: d.init(namespace=DEEP),
    "make_root_lazy deep namespace": lambda d, t: d.make_root_lazy(DEEP),
    # reads: a clear error instead of RecursionError / a raw exception
    "count eq deep": lambda d, t: d.count(bounds=Eq(DEEP)),
    "sum range deep": lambda d, t: d.sum(bounds=Range(Bound(VERY_DEEP))),
    "count mapping bound deep": lambda d, t: d.count(bounds={"upper": {"key": DEEP}}),
    "count prefix deep": lambda d, t: d.count(bounds=Prefix([nested(MAX_KEY_DEPTH)])),
    "count deep namespace": lambda d, t: d.count(namespace=DEEP),
    "at eq deep": lambda d, t: d.at(0, bounds=Eq(DEEP)),
    "index_of deep": lambda d, t: d.index_of(DEEP),
    "index_of_doc deep": lambda d, t: t.index_of_doc(doc(score=DEEP)),
    "get deep": lambda d, t: d.get(DEEP, "a"),
    "paginate eq deep": lambda d, t: d.paginate(bounds=Eq(DEEP)),
    "paginate forged deep cursor": lambda d, t: d.paginate(cursor=FORGED_CURSOR),
    "min eq cyclic": lambda d, t: d.min(bounds=Eq(CYCLE)),
    "random eq deep": lambda d, t: d.random(bounds=Eq(DEEP)),
    "random rng nan": lambda d, t: DirectAggregate(d.app, "d", rng=lambda: math.nan).random(),
    "random rng not a number": lambda d, t: DirectAggregate(
        d.app,
        "d",
        rng=lambda: "0.5",  # type: ignore[arg-type, return-value]
    ).random(),
    "count_batch deep": lambda d, t: d.count_batch([Query(), Query(Eq(DEEP))]),
    "sum_batch deep namespace": lambda d, t: d.sum_batch([Query(namespace=DEEP)]),
    "at_batch deep": lambda d, t: d.at_batch([AtQuery(0, Eq(DEEP))]),
    "count_batch not a query": lambda d, t: d.count_batch([5]),  # type: ignore[list-item]
    "at_batch query without offset": lambda d, t: d.at_batch([Query()]),  # type: ignore[list-item]
    "insert_many item too short": lambda d, t: d.insert_many([(5,)]),  # type: ignore[list-item]
    "insert_many item a str": lambda d, t: d.insert_many(["ab"]),  # type: ignore[list-item]
    # a bad namespace for the inspection and maintenance calls
    "stats deep namespace": lambda d, t: d.stats(DEEP),
    "stats object namespace": lambda d, t: d.stats(object()),
    "shape deep namespace": lambda d, t: d.shape(VERY_DEEP),
    "shape set namespace": lambda d, t: d.shape({1}),
    "dump cyclic namespace": lambda d, t: d.dump(CYCLE),
    "dump deep namespace": lambda d, t: d.dump(DEEP),
    "validate deep namespace": lambda d, t: d.validate(DEEP),
    "validate object namespace": lambda d, t: d.validate(object()),
    "version deep namespace": lambda d, t: d.version(DEEP),
    # settings and cursors
    "shape max_nodes 0": lambda d, t: d.shape(max_nodes=0),
    "shape max_nodes inf": lambda d, t: d.shape(max_nodes=math.inf),  # type: ignore[arg-type]
    "shape max_nodes nan": lambda d, t: d.shape(max_nodes=math.nan),  # type: ignore[arg-type]
    "shape max_nodes str": lambda d, t: d.shape(max_nodes="10"),  # type: ignore[arg-type]
    "paginate_namespaces cursor nan": lambda d, t: d.paginate_namespaces("nan"),
    "paginate_namespaces cursor negative": lambda d, t: d.paginate_namespaces("-1"),
}


@BACKENDS
@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
async def test_bad_input_raises_config_error_and_changes_nothing(
    app: App, fronts: tuple[DirectAggregate[Any], Table], call: Call
) -> None:
    before = await snapshot(app)
    assert len(before) >= 4  # both trees (meta + nodes), namespace registries, names
    with pytest.raises(ConfigError):
        await call(*fronts)
    after = await snapshot(app)
    assert len(after) == len(before)
    assert after == before


@BACKENDS
async def test_channel_of_a_bad_namespace_is_a_key_encoding_error(
    fronts: tuple[DirectAggregate[Any], Table],
) -> None:
    direct, _ = fronts
    with pytest.raises(KeyEncodingError, match="nest more than"):
        direct.channel(DEEP)


@BACKENDS
async def test_keys_nest_up_to_the_limit(app: App) -> None:
    agg: DirectAggregate[Any] = DirectAggregate(app, "deep")
    key = nested(MAX_KEY_DEPTH, "leaf")
    await agg.insert(key, "x", 1.0)
    await agg.insert(nested_dict(MAX_KEY_DEPTH), "y", 2.0, namespace=nested(MAX_KEY_DEPTH - 1))
    assert (await agg.at(0)).key == key
    assert await agg.count(bounds=Eq(key)) == 1
    page = await agg.paginate(page_size=1)
    assert (await agg.paginate(cursor=page.cursor)).is_done
    with pytest.raises(
        KeyEncodingError, match=f"key: lists, tuples and dicts nest more than {MAX_KEY_DEPTH} deep"
    ):
        await agg.insert(nested(MAX_KEY_DEPTH + 1, "leaf"), "z")


@BACKENDS
async def test_nan_and_infinite_keys_are_ordinary_keys(app: App) -> None:
    """Only sums must be finite: NaN sorts after every number (all NaNs equal), ±inf at
    the ends of the numbers, in keys and in bounds alike."""
    agg: DirectAggregate[Any] = DirectAggregate(app, "nonfinite")
    for i, k in enumerate([math.nan, math.inf, 0.0, -math.inf, False]):
        await agg.insert(k, str(i), 1.0)
    assert await agg.count(bounds=Eq(math.nan)) == 1
    assert await agg.count(bounds=Range(Bound(math.inf))) == 3  # inf, nan, False
    assert await agg.count(bounds=Range(upper=Bound(-math.inf))) == 1
    assert await agg.index_of(math.nan) == 3
    assert math.isnan((await agg.at(3)).key)
