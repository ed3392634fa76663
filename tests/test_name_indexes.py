"""Name indexes survive Redis losing its data (a restart without persistence, a
flush): the workpool's pool index, the action cache's name index and the
aggregate's name registry are written again by the writes that recreate state, even
in a process that registered the name before; a running worker lists the pools it
runs again on its own. Real processes and a real restart: test_name_indexes_restart.py.

On Cluster an index key is in another slot than the component's keys, so no script
can write both: the script that (re)creates state says so in its reply and the
client adds the name with a second, idempotent command (``SADD``)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from rkit import HOUR, App, DirectAggregate, Workpool
from rkit.action_cache import ActionCache, cache_names, purge_all, remove_all
from rkit.aggregate import aggregate_names
from rkit.workpool import _runtime, pool_names


async def lose_everything(app: App) -> None:
    """What a restart without persistence does to this App's keys."""
    match = f"rkit:{{{app.namespace}:*"
    if isinstance(app.redis, RedisCluster):
        keys = [
            k async for k in app.redis.scan_iter(match=match, target_nodes=RedisCluster.ALL_NODES)
        ]
    else:
        keys = [k async for k in app.redis.scan_iter(match=match)]
    for k in keys:
        await app.redis.delete(k)
    assert keys


@pytest.fixture
def add(app: App) -> None:
    @app.action(name="add")
    async def add(x: int) -> int:
        return x + 1


async def test_workpool_lists_itself_again_on_its_next_write(app: App, add: None) -> None:
    p = Workpool(app, "p", max_parallelism=0)
    await p.enqueue("add", {"x": 1})
    assert await pool_names(app) == ["p"]
    await lose_everything(app)
    assert await pool_names(app) == []
    await p.enqueue("add", {"x": 2})  # this process registered "p" before the loss
    assert await pool_names(app) == ["p"]
    await lose_everything(app)
    await p.set_config(max_parallelism=1)
    assert await pool_names(app) == ["p"]
    await lose_everything(app)
    await Workpool(app, "q", register=False, log_level="INFO").cancel("x")  # writes cfg
    assert await pool_names(app) == ["q"]


async def test_a_worker_lists_the_pools_it_runs_again(app: App, add: None) -> None:
    p = Workpool(app, "p")
    await p.enqueue("add", {"x": 1})
    await lose_everything(app)
    await _runtime(app)._discover()  # the worker's discovery round (every 5 s)
    assert await pool_names(app) == ["p"]


async def test_action_cache_lists_its_name_again(app: App) -> None:
    async def geocode(address: str) -> str:
        return address.upper()

    cache: ActionCache[Any] = ActionCache(app, geocode, name="geo", ttl=HOUR)
    await cache.fetch({"address": "a"})
    assert await cache_names(app) == ["geo"]
    await lose_everything(app)
    assert await cache_names(app) == []
    await cache.fetch({"address": "b"})  # a miss stores a new entry
    assert await cache_names(app) == ["geo"]
    assert await remove_all(app) == 1  # the entry is found through the name index
    await cache.fetch({"address": "c"})
    app.clock.advance(HOUR + 1)  # type: ignore[attr-defined]
    assert await purge_all(app) == 1


async def test_aggregate_lists_its_name_again(app: App) -> None:
    agg: DirectAggregate[int] = DirectAggregate(app, "scores")
    await agg.insert(1, "a")
    assert await aggregate_names(app) == ["scores"]
    await lose_everything(app)
    assert await aggregate_names(app) == []
    await agg.insert(2, "b")  # recreates the tree
    assert await aggregate_names(app) == ["scores"]
    assert await agg.namespaces() == [None]
