"""Issue 16 item 8: items by id. ``insert_or_replace(id, key, sum_value)`` moves the
id's item in one script (a best-score board without read-replace-write races),
``get_by_id`` / ``delete_by_id`` find it; the by-id index shares the tree's hash tag."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from redis.crc import key_slot

from rkit import App, ConfigError
from rkit.aggregate import DirectAggregate, Item, Upserted


@pytest.fixture
def board(app: App) -> DirectAggregate[Any]:
    return DirectAggregate(app, "board", default_max_node_size=4)


async def test_insert_or_replace_moves_the_ids_item(board: DirectAggregate[Any]) -> None:
    first = await board.insert_or_replace("ada", -10, 10.0)
    assert first == Upserted(Item(-10.0, "ada", 10.0), None, True)
    second = await board.insert_or_replace("ada", -35, 35.0)
    assert second == Upserted(Item(-35.0, "ada", 35.0), Item(-10.0, "ada", 10.0), True)
    assert await board.count() == 1 and await board.sum() == 35.0
    assert await board.get(-10, "ada") is None
    assert await board.get_by_id("ada") == Item(-35.0, "ada", 35.0)
    assert await board.get_by_id("bob") is None
    await board.validate()


async def test_keep_best_writes_only_a_better_key(board: DirectAggregate[Any]) -> None:
    await board.insert_or_replace("ada", 20, 20.0, keep="max")
    kept = await board.insert_or_replace("ada", 15, 15.0, keep="max")
    assert kept == Upserted(Item(20.0, "ada", 20.0), Item(20.0, "ada", 20.0), False)
    same = await board.insert_or_replace("ada", 20, 99.0, keep="max")
    assert not same.written  # an equal key is not better
    better = await board.insert_or_replace("ada", 30, 30.0, keep="max")
    assert better.written and better.previous == Item(20.0, "ada", 20.0)
    assert (await board.insert_or_replace("ada", 40, 40.0, keep="min")).written is False
    assert (await board.insert_or_replace("ada", 5, 5.0, keep="min")).written is True
    assert [(i.key, i.id) async for i in board.iter()] == [(5.0, "ada")]
    with pytest.raises(ConfigError, match="keep"):
        await board.insert_or_replace("ada", 1, keep="best")  # type: ignore[arg-type]


async def test_a_plain_item_at_the_same_position_is_taken_over(
    board: DirectAggregate[Any],
) -> None:
    await board.insert(7, "cy", 1.0)
    up = await board.insert_or_replace("cy", 7, 2.0)
    assert up.previous == Item(7.0, "cy", 1.0) and await board.count() == 1
    assert await board.get_by_id("cy") == Item(7.0, "cy", 2.0)


async def test_delete_by_id_and_the_other_writes_keep_the_index_exact(
    app: App, board: DirectAggregate[Any]
) -> None:
    await board.insert_or_replace("a", 1, 1.0)
    await board.insert_or_replace("b", 2, 2.0)
    await board.insert_or_replace("c", 3, 3.0)
    assert await board.delete_by_id("a") == Item(1.0, "a", 1.0)
    assert await board.delete_by_id("a") is None
    await board.delete(2, "b")  # by key: the id is forgotten too
    assert await board.get_by_id("b") is None
    await board.replace(3, "c", 30, sum_value=30.0)  # the index follows the move
    assert await board.get_by_id("c") == Item(30.0, "c", 30.0)
    # across namespaces (on Cluster across slots: delete, then upsert in the new tree)
    slots = {key_slot(board._tree(ns).m.encode()) for ns in (None, "other")}
    assert len(slots) == 2 or not app.is_cluster
    await board.replace(30, "c", 31, sum_value=31.0, new_namespace="other")
    assert await board.get_by_id("c") is None
    assert await board.get_by_id("c", namespace="other") == Item(31.0, "c", 31.0)
    assert (await board.insert_or_replace("c", 32, namespace="other")).previous == Item(
        31.0, "c", 31.0
    )
    await board.clear(namespace="other")
    assert await board.get_by_id("c", namespace="other") is None
    await board.insert_or_replace("d", 4, 4.0)
    assert await app.redis.hkeys(board._tree(None).i) == ["d"]


async def test_the_index_shares_the_trees_hash_tag(board: DirectAggregate[Any]) -> None:
    for ns in (None, "g1", ("game", 2)):
        tree = board._tree(ns)
        assert key_slot(tree.i.encode()) == key_slot(tree.m.encode()) == key_slot(tree.n.encode())
    pinned: DirectAggregate[Any] = DirectAggregate(board.app, "pinned", hash_tag="t")
    assert key_slot(pinned._tree("x").i.encode()) == key_slot(pinned._tree("y").m.encode())


async def test_concurrent_upserts_of_one_id_keep_the_best(board: DirectAggregate[Any]) -> None:
    scores = random.Random(7).sample(range(10_000), 300)
    results = await asyncio.gather(
        *(board.insert_or_replace("ada", s, float(s), keep="max") for s in scores)
    )
    assert [(i.key, i.id) async for i in board.iter()] == [(float(max(scores)), "ada")]
    assert await board.get_by_id("ada") == Item(float(max(scores)), "ada", float(max(scores)))
    assert sum(r.written for r in results) >= 1
    # every write replaced the item the previous write left: a chain, never a fork
    written = [r for r in results if r.written]
    previous = [r.previous.key for r in written if r.previous is not None]
    assert len(previous) == len(set(previous)) == len(written) - 1
    await board.validate()


async def test_concurrent_upserts_of_one_id_leave_the_last(board: DirectAggregate[Any]) -> None:
    """keep="last": 300 concurrent upserts leave exactly one item, the one written by
    the script that ran last: each upsert replaced exactly the one before it."""
    keys = list(range(300))
    results = await asyncio.gather(
        *(board.insert_or_replace("bob", k, float(k), namespace="g") for k in keys)
    )
    items = [(i.key, i.id) async for i in board.iter(namespace="g")]
    assert len(items) == 1 and await board.count(namespace="g") == 1
    last = items[0][0]
    previous = [r.previous.key for r in results if r.previous is not None]
    assert sum(r.previous is None for r in results) == 1  # the first one
    assert sorted([*previous, last]) == [float(k) for k in keys]  # each replaced once
    assert await board.get_by_id("bob", namespace="g") == Item(last, "bob", last)
    await board.validate(namespace="g")


async def test_many_ids_concurrently_like_a_leaderboard(board: DirectAggregate[Any]) -> None:
    rnd = random.Random(11)
    plays = [(f"u{rnd.randrange(40)}", rnd.randrange(1_000)) for _ in range(600)]
    await asyncio.gather(*(board.insert_or_replace(u, -s, float(s), keep="min") for u, s in plays))
    best: dict[str, int] = {}
    for u, s in plays:
        best[u] = max(best.get(u, -1), s)
    assert await board.count() == len(best)
    top = [(i.id, i.sum_value) async for i in board.iter()]
    want = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [u for u, _ in top] == [u for u, _ in want]
    assert [s for _, s in top] == [float(s) for _, s in want]
    await board.validate()
