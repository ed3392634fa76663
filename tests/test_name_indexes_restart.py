"""A redis-server restarted without persistence under a running ``rkit worker``
(real processes, a real restart): the worker reconnects and lists the pool it runs
again (``GET /workpools/<pool>`` is not a 404 for a live pool), work enqueued after
the restart runs, a client that registered its names before the restart lists them
again with its next writes (the cache's ``remove_all`` and ``purge_all`` find the
name, the aggregate is listed), and an item from before the restart is
``NotFound()``, not ``Finished()``."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from rkit.api import create_api

from rkit import HOUR, App, DirectAggregate, NotFound, Workpool
from rkit.action_cache import ActionCache, cache_names, remove_all
from rkit.aggregate import aggregate_names
from rkit.workpool import pool_names

from ._servers import (
    Server,
    child_pythonpath,
    spawn,
    start_server,
    stderr_of,
    stop_server,
    stop_workers,
)
from .conftest import _need_redis_server

pytestmark = pytest.mark.slow

SERVICE = """
from rkit import App, OnCompleteArgs, Workpool

app = App(namespace="rs")
pool = Workpool(app, "rs", max_parallelism=5)


@app.action(name="job")
async def job(i: int) -> int:
    return i


@app.action(name="done")
async def done(args: OnCompleteArgs) -> None:
    await app.redis.sadd("rs:done", args.work_id)
"""


@pytest.fixture
def server() -> Iterator[list[Server]]:
    """A redis-server of this test's own (it gets restarted); the list holds the
    current process."""
    _need_redis_server()
    servers = [start_server()]
    yield servers
    stop_server(servers[-1])


def wait_for(what: str, cond: Any, timeout: float) -> float:
    """Poll ``cond()`` until true; returns how long it took."""
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.time() - t0


async def geocode(address: str) -> str:
    return address.upper()


def test_restart_without_persistence_under_a_running_worker(
    server: list[Server], tmp_path: Path
) -> None:
    url = server[0].url
    r = sync_redis.Redis.from_url(url, decode_responses=True)
    (tmp_path / "rssvc.py").write_text(SERVICE)
    env = {**os.environ, "RKIT_REDIS_URL": url, "PYTHONPATH": child_pythonpath(tmp_path)}
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "rssvc:app"]
    worker = spawn(cmd, tmp_path, env)
    loop = asyncio.new_event_loop()
    client = App(url, namespace="rs")  # one process across the restart
    for name in ("job", "done"):

        async def stub(*args: object, **kw: object) -> None:
            raise AssertionError

        client.action(name=name)(stub)
    pool = Workpool(client, "rs", max_parallelism=5)
    cache: ActionCache[Any] = ActionCache(client, geocode, name="geo", ttl=HOUR)
    agg: DirectAggregate[int] = DirectAggregate(client, "scores")

    async def write(i: int) -> str:
        await cache.fetch({"address": f"a{i}"})
        await agg.insert(i, f"id{i}")
        return await pool.enqueue("job", {"i": i}, on_complete="done")

    async def names() -> tuple[list[str], list[str], list[str]]:
        return await pool_names(client), await cache_names(client), await aggregate_names(client)

    async def admin_get(path: str) -> int:
        admin = App(url, namespace="rs")
        transport = httpx.ASGITransport(app=create_api(admin, admin_token="tok"))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                got = await c.get(path, headers={"Authorization": "Bearer tok"})
                return got.status_code
        finally:
            await admin.aclose()

    try:
        before = loop.run_until_complete(write(1))
        wait_for("the first item's callback", lambda: r.sismember("rs:done", before), 30)
        assert loop.run_until_complete(names()) == (["rs"], ["geo"], ["scores"])

        stop_server(server[0])  # restart on the same port, without persistence
        server.append(start_server(port=server[0].port))
        gone = [client.keys.tag(k) + ":names" for k in ("ac", "agg")]
        assert r.exists(*gone) == 0  # the data is gone (the worker may list its pool)
        took = wait_for(
            "the worker lists its pool again",
            lambda: r.sismember("rkit:{rs:workpool}:pools", "rs"),
            15,
        )
        print(f"\npool listed again {took:.2f} s after the restart (by the running worker)")
        assert loop.run_until_complete(admin_get("/workpools/rs")) == 200
        assert worker.poll() is None, stderr_of(worker)

        after = loop.run_until_complete(write(2))  # the same client, names registered before
        wait_for("work enqueued after the restart", lambda: r.sismember("rs:done", after), 30)
        assert loop.run_until_complete(names()) == (["rs"], ["geo"], ["scores"])
        assert loop.run_until_complete(pool.status(before)) == NotFound()
        assert loop.run_until_complete(admin_get(f"/workpools/rs/work/{before}")) == 404
        assert loop.run_until_complete(remove_all(client)) == 1  # found through the index
    except BaseException:
        print(stderr_of(worker))
        raise
    finally:
        stop_workers([worker])
        loop.run_until_complete(client.aclose())
        loop.close()
