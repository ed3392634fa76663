"""Issue 18 for the aggregate: trees that deletes leave empty are dropped (keys and
registry member; the write counter keeps counting), namespaces, names and numeric
inputs are bounded before Redis, and the in-process tree cache is bounded by bytes."""

from __future__ import annotations

from typing import Any

import pytest

from rkit import App, ConfigError
from rkit.aggregate import DirectAggregate, TableAggregate
from rkit.errors import InvalidNodeSize


async def _keys(app: App) -> list[str]:
    return sorted([k async for k in app.redis.scan_iter(match=f"rkit:{{{app.namespace}:agg:*")])


async def test_a_tree_emptied_by_deletes_is_dropped(app: App) -> None:
    agg: DirectAggregate[Any] = DirectAggregate(app, "games")
    for game in range(20):
        await agg.insert(1, "ada", 5.0, namespace=f"game-{game}")
        await agg.insert(2, "bob", 7.0, namespace=f"game-{game}")
    assert len(await agg.namespaces()) == 20
    for game in range(20):
        await agg.delete(1, "ada", namespace=f"game-{game}")
        await agg.delete_if_exists(2, "bob", namespace=f"game-{game}")
    assert await agg.namespaces() == []
    tree = agg._tree("game-3")
    assert not await app.redis.exists(tree.n, tree.i)
    # what is left of a tree is a tombstone of its write counter, expiring by itself
    assert await app.redis.hgetall(tree.m) == {"ver": "4"}
    assert 0 < await app.redis.pttl(tree.m) <= 3_600_000
    stats = await agg.stats(namespace="game-3")
    assert (stats["exists"], stats["count"], stats["ver"]) == (False, 0, 4)
    # it comes back as new, with its version counting on (never repeating a value)
    await agg.insert(3, "cy", namespace="game-3")
    assert await agg.version(namespace="game-3") == 5
    assert await app.redis.pttl(tree.m) == -1
    assert await agg.namespaces() == ["game-3"]
    assert await agg.count(namespace="game-3") == 1
    await agg.validate(namespace="game-3")


async def test_replace_into_another_namespace_drops_the_emptied_one(app: App) -> None:
    agg: DirectAggregate[Any] = DirectAggregate(app, "moves")
    await agg.insert(1, "a", namespace="from")
    await agg.replace(1, "a", 1, namespace="from", new_namespace="to")
    assert await agg.namespaces() == ["to"]
    assert not await app.redis.exists(agg._tree("from").n)


async def test_trees_with_their_own_settings_are_kept_when_emptied(app: App) -> None:
    agg: DirectAggregate[Any] = DirectAggregate(app, "kept")
    await agg.init(namespace="six", max_node_size=6)
    await agg.insert(1, "a", namespace="six")
    await agg.delete(1, "a", namespace="six")
    assert (await agg.stats(namespace="six"))["max_node_size"] == 6
    assert await agg.namespaces() == ["six"]
    await agg.clear(namespace="empty")  # an explicitly created empty tree stays too
    assert "empty" in await agg.namespaces()


async def test_a_tree_recreated_while_unlisted_is_listed_again(app: App) -> None:
    """The registry is in another slot: a write that re-creates a dropped tree
    between the drop and the unlisting must not leave it unlisted."""
    agg: DirectAggregate[Any] = DirectAggregate(app, "race")
    await agg.insert(1, "a", namespace="n")
    await agg._unregister(agg._tree("n"))  # as if the drop's unlisting came late
    assert await agg.namespaces() == ["n"]


async def test_table_aggregate_deletes_drop_emptied_trees(app: App) -> None:
    t: TableAggregate[Any, dict[str, Any]] = TableAggregate(
        app, "table", sort_key=lambda d: d["k"], namespace=lambda d: d["g"]
    )
    doc = {"_id": "x", "k": 1, "g": "g1"}
    await t.insert(doc)
    await t.delete(doc)
    assert await t.namespaces() == []


async def test_namespaces_and_names_are_bounded(app: App) -> None:
    agg: DirectAggregate[Any] = DirectAggregate(app, "limits")
    huge = "n" * 1_000_000
    for call in (
        agg.insert(1, "a", namespace=huge),
        agg.count(namespace=huge),
        agg.clear(namespace=huge),
        agg.init(namespace=["x" * 600, "y" * 600]),
    ):
        with pytest.raises(ConfigError, match="namespace"):
            await call
    with pytest.raises(ConfigError, match="aggregate name"):
        DirectAggregate(app, "a" * 1025)
    with pytest.raises(ConfigError, match="hash_tag"):
        DirectAggregate(app, "tagged", hash_tag="t" * 1025)
    with pytest.raises(ConfigError, match="max_namespace_bytes"):
        DirectAggregate(app, "zero", max_namespace_bytes=0)
    assert await _keys(app) == []
    await agg.insert(1, "a", namespace="n" * 1000)  # within the limit
    roomy: DirectAggregate[Any] = DirectAggregate(app, "roomy", max_namespace_bytes=8192)
    await roomy.insert(1, "a", namespace="n" * 5000)
    assert await roomy.count(namespace="n" * 5000) == 1


async def test_numeric_inputs_are_bounded(app: App) -> None:
    agg: DirectAggregate[Any] = DirectAggregate(app, "nums")
    await agg.insert(1, "a")
    for call in (
        agg.at(2**60),
        agg.at(-(2**60)),
        agg.insert_many([(2, "b")], chunk=2**70),
        agg.shape(max_nodes=2**70),
    ):
        with pytest.raises(ConfigError):
            await call
    with pytest.raises(InvalidNodeSize):
        DirectAggregate(app, "wide", default_max_node_size=2**70)
    with pytest.raises(InvalidNodeSize):
        await agg.clear(namespace="x", max_node_size=2048)
    assert await agg.count() == 1


def test_the_tree_cache_is_bounded_by_bytes(app: App) -> None:
    agg: DirectAggregate[Any] = DirectAggregate(app, "cache")
    for i in range(4000):
        agg._tree(f"{i:05d}" + "n" * 1000)
    assert agg._trees.nbytes <= 4 << 20
    assert 0 < len(agg._trees) < 4000
