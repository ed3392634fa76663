"""Admin routes at /migrations (spec §7.10), behind the admin token: the runner
report, statuses, progress, failed items, cancel, cancel-all, clear-all and the
HTTP errors (404 unknown, 400 invalid batch size, 409 cursor mismatch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rkit import App
from rkit.migrations import HashKeySource
from rkit.testing import run_until_idle

from .conftest import World, make_world, seed, snapshot

AUTH = {"Authorization": "Bearer tok"}


@pytest.fixture
async def client(queue_app: App) -> AsyncIterator[tuple[World, httpx.AsyncClient]]:
    from rkit.api import create_api

    await seed(queue_app)
    w = make_world(queue_app)
    transport = httpx.ASGITransport(app=create_api(queue_app, admin_token="tok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH) as c:
        yield w, c


async def test_run_status_progress_cancel(client: tuple[World, httpx.AsyncClient]) -> None:
    w, c = client
    assert (await c.get("/migrations")).json() == []
    r = await c.post("/migrations/set_default/run", json={"batch_size": 2})
    assert r.status_code == 200, r.text
    assert r.json()["Status"] == "Migration started." and r.json()["processed"] == 2
    listed = (await c.get("/migrations", params={"names": ["set_default", "zzz"]})).json()
    assert [(s["name"], s["state"]) for s in listed] == [
        ("set_default", "inProgress"),
        ("zzz", "unknown"),
    ]
    p = (await c.get("/migrations/set_default/progress")).json()
    assert (p["processed"], p["estimate"], p["state"]) == (2, 10, "inProgress")
    r = await c.post("/migrations/set_default/cancel")
    assert r.json()["state"] == "canceled"
    r = await c.post("/migrations/set_default/run", json={"from_start": True, "batch_size": 4})
    assert r.json()["processed"] == 4
    await run_until_idle(w.app)
    assert (await c.get("/migrations")).json()[0]["state"] == "success"
    assert (await c.get("/migrations/set_default/failed")).json() == {"count": 0, "items": {}}


async def test_dry_run_cancel_all_and_clear_all(client: tuple[World, httpx.AsyncClient]) -> None:
    w, c = client
    before = await snapshot(w.app)
    r = await c.post("/migrations/set_default/run", json={"dry_run": True})
    assert r.json()["Status"].startswith("DRY RUN") and len(r.json()["changes"]) == 5
    assert await snapshot(w.app) == before
    await c.post("/migrations/set_default/run", json={"batch_size": 2})
    r = await c.post("/migrations/cancel-all", json={})
    assert [s["state"] for s in r.json()] == ["canceled"]
    assert (await c.post("/migrations/clear-all")).json() == {"cleared": 1}
    assert (await c.get("/migrations")).json() == []


async def test_http_errors(client: tuple[World, httpx.AsyncClient]) -> None:
    w, c = client
    before = await snapshot(w.app)
    cases: list[tuple[str, str, Any, int]] = [
        ("post", "/migrations/nope/run", {}, 404),
        ("post", "/migrations/nope/cancel", None, 404),
        ("get", "/migrations/nope/progress", None, 404),
        ("get", "/migrations/nope/failed", None, 404),
        ("post", "/migrations/set_default/run", {"batch_size": 0}, 400),
        ("post", "/migrations/set_default/run", {"batch_size": "2"}, 422),
        ("post", "/migrations/set_default/run", {"bogus": 1}, 422),
        ("get", "/migrations?instance=other", None, 404),
        ("get", "/migrations?limit=0", None, 422),
    ]
    for method, url, body, code in cases:
        kw = {} if body is None else {"json": body}
        r = await getattr(c, method)(url, **kw)
        assert r.status_code == code, (url, body, r.text)
    assert await snapshot(w.app) == before
    assert (await c.get("/migrations", headers={"Authorization": "Bearer no"})).status_code in (
        401,
        403,
    )
    w.m.define(source=HashKeySource(w.app.redis, "item:*"), migrate_one=lambda c, i: None, name="h")
    await c.post("/migrations/h/run", json={"batch_size": 2})
    await c.post("/migrations/h/cancel")
    w.m.define(source=HashKeySource(w.app.redis, "x:*"), migrate_one=lambda c, i: None, name="h")
    r = await c.post("/migrations/h/run", json={})
    assert r.status_code == 409 and "reset=True" in r.json()["detail"]
