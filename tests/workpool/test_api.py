"""Admin routes of the workpool and the action retrier, behind the bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from rkit.api import create_api

from rkit import App, Workpool
from rkit.retrier import ActionRetrier
from rkit.testing import peer_app, run_until_idle

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
    assert r.status_code == 404  # finished and forgotten (keep_result_ms=0)
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
    c = await client.post(f"/retriers/default/runs/{later}/cancel", headers=AUTH)
    assert c.json() == {"canceled": False}  # completed (canceled) already
    c = await client.post("/retriers/default/runs/nope/cancel", headers=AUTH)
    assert c.status_code == 404  # unknown: not found, not "not canceled"
    assert (await client.delete(f"/retriers/default/runs/{later}", headers=AUTH)).json() == {
        "deleted": True
    }
    stats = (await client.get("/retriers/default/stats", headers=AUTH)).json()
    assert stats["succeeded"] == 1 and stats["failed"] == 1
    assert (await client.get("/retriers/default/dlq", headers=AUTH)).json() == {"dead_letters": []}


async def test_unknown_work_is_404(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    p = Workpool(app, "emails", max_parallelism=0)
    wid = await p.enqueue("add", {"x": 1})
    for method, path in [("GET", "nope"), ("POST", "nope/cancel")]:
        r = await client.request(method, f"/workpools/emails/work/{path}", headers=AUTH)
        assert r.status_code == 404, (path, r.text)
        assert "nope" in r.json()["detail"]
    await app.redis.delete(f"{p.tag}:w:{wid}")  # lost with Redis's data: not "finished"
    assert (await client.get(f"/workpools/emails/work/{wid}", headers=AUTH)).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/workpools/emails/cancel-all", {"before": False}),
        ("POST", "/workpools/emails/cancel-all", {"before": "0"}),
        ("POST", "/workpools/emails/cancel-all", {"limit": True}),
        ("PATCH", "/workpools/emails/config", {"max_parallelism": True}),
        ("PATCH", "/workpools/emails/config", {"max_parallelism": 2.0}),
    ],
)
async def test_bodies_are_strict(
    app: App, client: httpx.AsyncClient, method: str, path: str, body: dict[str, object]
) -> None:
    """``false`` is not 0 and ``true`` is not 1: a 422, nothing canceled or changed."""
    register(app)
    p = Workpool(app, "emails", max_parallelism=0)
    wid = await p.enqueue("add", {"x": 1})
    r = await client.request(method, path, json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert (await p.status(wid)).state == "pending"
    assert (await p.get_config()).max_parallelism == 0


async def test_admin_api_never_registers_or_pumps(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin process reads and controls pools and retriers it does not run: no
    component is created or registered in its App, nothing is pumped there (a raised
    cap is dispatched by the config script itself), for known and unknown names."""
    register(app)
    pool = Workpool(app, "emails", max_parallelism=0)
    wid = await pool.enqueue("add", {"x": 1})
    retrier = ActionRetrier(app, rng=lambda: 0.5)
    run = await retrier.run("add", {"x": 1})
    admin = peer_app(app)  # the API's own process

    def no_pump(*args: object, **kw: object) -> None:
        raise AssertionError("the admin API pumped a pool")

    monkeypatch.setattr(Workpool, "pump", no_pump)
    transport = httpx.ASGITransport(app=create_api(admin, admin_token="tok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for method, path, body in [
            ("GET", "/workpools", None),
            ("GET", "/workpools/emails", None),
            ("GET", "/workpools/ghost", None),
            ("GET", "/workpools/emails/running", None),
            ("GET", "/workpools/emails/pending", None),
            ("GET", f"/workpools/emails/work/{wid}", None),
            ("GET", "/workpools/emails/dlq", None),
            ("PATCH", "/workpools/emails/config", {"max_parallelism": 1}),
            ("POST", "/workpools/emails/cancel-all", {}),
            ("GET", "/retriers/default/runs", None),
            ("GET", f"/retriers/default/runs/{run}", None),
            ("GET", "/retriers/default/stats", None),
            ("GET", "/retriers/ghost/runs", None),
            ("GET", "/retriers/ghost/runs/x", None),
            ("POST", "/retriers/ghost/runs/x/cancel", None),
            ("GET", "/retriers/ghost/stats", None),
            ("GET", "/retriers/ghost/dlq", None),
        ]:
            r = await c.request(method, path, json=body, headers=AUTH)
            assert r.status_code in (200, 404), (path, r.text)
    assert list(admin.components) == []
    assert admin.components.services() == [] and admin.components.jobs() == []
    ghost = ActionRetrier(admin, namespace="ghost", register=False).workpool
    assert await app.redis.exists(*ghost.keys) == 0  # reading a namespace writes nothing
    await admin.aclose()
