"""Admin routes of the action cache, behind the bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from rkit.api import create_api

from rkit import App, TestClock
from rkit.action_cache import ActionCache, Hit, Miss

AUTH = {"Authorization": "Bearer tok"}


async def square(x: int) -> int:
    return x * x


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(app, admin_token="tok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_names_with_counts_and_hit_rate(app: App, client: httpx.AsyncClient) -> None:
    c = ActionCache(app, square, name="sq")
    await c.fetch({"x": 2})
    await c.fetch({"x": 2})
    await c.fetch({"x": 3})
    r = await client.get("/action-cache/names", headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {
        "names": [
            {
                "name": "sq",
                "entries": 2,
                "hits": 1,
                "misses": 2,
                "coalesced": 0,
                "hit_rate": 1 / 3,
            }
        ]
    }


async def test_remove_entry_and_name(app: App, client: httpx.AsyncClient) -> None:
    c = ActionCache(app, square, name="sq")
    for x in range(3):
        await c.fetch({"x": x})
    r = await client.request(
        "DELETE", "/action-cache/sq/entry", json={"args": {"x": 1.0}}, headers=AUTH
    )
    assert r.json() == {"deleted": True}
    assert isinstance(await c.get({"x": 1}), Miss) and isinstance(await c.get({"x": 2}), Hit)
    r = await client.request(
        "DELETE", "/action-cache/sq/entry", json={"args": {"x": 1}}, headers=AUTH
    )
    assert r.json() == {"deleted": False}
    r = await client.delete("/action-cache/sq", headers=AUTH)
    assert r.json() == {"deleted": 2}
    assert (await client.delete("/action-cache/nope", headers=AUTH)).status_code == 404


async def test_remove_all_and_purge(app: App, client: httpx.AsyncClient, clock: TestClock) -> None:
    a = ActionCache(app, square, name="a", ttl=1000)
    b = ActionCache(app, square, name="b")
    await a.fetch({"x": 1})
    clock.advance(1000)
    await b.fetch({"x": 1})
    r = await client.post("/action-cache/purge", headers=AUTH)
    assert r.json() == {"deleted": 1}
    r = await client.post(
        "/action-cache/remove-all", json={"before": clock.now_ms() - 1}, headers=AUTH
    )
    assert r.json() == {"deleted": 0}
    r = await client.post("/action-cache/remove-all", headers=AUTH)
    assert r.json() == {"deleted": 1}


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/action-cache/names"),
        ("DELETE", "/action-cache/x"),
        ("POST", "/action-cache/purge"),
        ("POST", "/action-cache/remove-all"),
        ("DELETE", "/action-cache/x/entry"),
    ],
)
async def test_routes_need_the_token(client: httpx.AsyncClient, method: str, path: str) -> None:
    assert (await client.request(method, path)).status_code == 401


async def test_bad_bodies(app: App, client: httpx.AsyncClient) -> None:
    await ActionCache(app, square, name="sq").fetch({"x": 1})
    r = await client.request("DELETE", "/action-cache/sq/entry", json={"args": [1]}, headers=AUTH)
    assert r.status_code == 422
    r = await client.post("/action-cache/remove-all", json={"before": "x"}, headers=AUTH)
    assert r.status_code == 422


def test_worker_schedules_the_daily_purge() -> None:
    """The first cache of an App registers the daily purge cron (03:00 UTC) with the
    App's registry; a worker runs it (on one worker: arq's cron de-duplication)."""
    from rkit.workers import worker_settings

    app = App()
    assert worker_settings(app)["cron_jobs"] == []

    async def sq(x: int) -> int:
        return x * x

    ActionCache(app, sq, name="sq")
    ActionCache(app, sq, name="sq2")
    (job,) = worker_settings(app)["cron_jobs"]
    assert job.name == "rkit_action_cache_purge"
    assert (job.hour, job.minute, job.second) == ({3}, {0}, {0})
