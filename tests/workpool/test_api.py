"""Admin routes of the workpool and the action retrier, behind the bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from rkit.api import create_api

from rkit import App, Workpool
from rkit.retrier import ActionRetrier
from rkit.testing import run_until_idle

AUTH = {"Authorization": "Bearer tok"}


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(app, admin_token="tok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def register(app: App) -> None:
    @app.action(name="add")
    async def add(x: int) -> int:
        return x + 1

    @app.action(name="fail")
    async def fail() -> None:
        raise RuntimeError("nope")


async def test_pools_config_and_work(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    assert (await client.get("/workpools")).status_code == 401
    p = Workpool(app, "emails", max_parallelism=0)
    ids = [await p.enqueue("add", {"x": i}) for i in range(3)]
    r = await client.get("/workpools", headers=AUTH)
    assert r.status_code == 200
    (pool,) = r.json()["pools"]
    assert pool["name"] == "emails" and pool["config"]["max_parallelism"] == 0
    assert pool["diagnostics"]["waiting"] == 3
    assert (await client.get("/workpools/nope", headers=AUTH)).status_code == 404
    r = await client.get("/workpools/emails/pending", headers=AUTH)
    assert [x["work_id"] for x in r.json()["pending"]] == ids
    r = await client.get(f"/workpools/emails/work/{ids[0]}", headers=AUTH)
    assert r.json()["status"] == {"state": "pending", "previous_attempts": 0}
    r = await client.post(f"/workpools/emails/work/{ids[0]}/cancel", headers=AUTH)
    assert r.json() == {"work_id": ids[0], "outcome": "canceled"}
    bad = await client.patch("/workpools/emails/config", json={"max_parallelism": -1}, headers=AUTH)
    assert bad.status_code == 422
    r = await client.patch("/workpools/emails/config", json={"max_parallelism": 1}, headers=AUTH)
    assert r.json()["max_parallelism"] == 1
    r = await client.get("/workpools/emails/running", headers=AUTH)
    assert [x["work_id"] for x in r.json()["running"]] == [ids[1]]
    r = await client.post("/workpools/emails/cancel-all", headers=AUTH)
    assert r.json() == {"canceled": 2}
    await run_until_idle(app)
    r = await client.get(f"/workpools/emails/work/{ids[1]}", headers=AUTH)
    assert r.json()["status"] == {"state": "finished"}
    r = await client.get("/workpools/emails/dlq", headers=AUTH)
    assert r.json() == {"dead_letters": []}


async def test_retrier_routes(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    r = ActionRetrier(app, rng=lambda: 0.5, max_failures=0)
    done = await r.run("add", {"x": 1})
    failed = await r.run("fail")
    later = await r.run_after(60_000, "add", {"x": 2})
    await run_until_idle(app)
    got = await client.get(f"/retriers/default/runs/{done}", headers=AUTH)
    assert got.json()["result"] == {"type": "success", "returnValue": 2}
    got = await client.get(f"/retriers/default/runs/{failed}", headers=AUTH)
    assert got.json()["result"] == {"type": "failed", "error": "nope"}
    assert (await client.get("/retriers/default/runs/x", headers=AUTH)).status_code == 404
    runs = (await client.get("/retriers/default/runs?state=completed", headers=AUTH)).json()
    assert {x["run_id"] for x in runs["runs"]} == {done, failed}
    assert (await client.delete(f"/retriers/default/runs/{later}", headers=AUTH)).status_code == 409
    c = await client.post(f"/retriers/default/runs/{later}/cancel", headers=AUTH)
    assert c.json() == {"canceled": True}
    assert (await client.delete(f"/retriers/default/runs/{later}", headers=AUTH)).json() == {
        "deleted": True
    }
    stats = (await client.get("/retriers/default/stats", headers=AUTH)).json()
    assert stats["succeeded"] == 1 and stats["failed"] == 1
    assert (await client.get("/retriers/default/dlq", headers=AUTH)).json() == {"dead_letters": []}
