"""Admin API routes of the rate limiter, behind the bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from rkit.api import create_api

from rkit import MINUTE, App, FixedWindow, RateLimiter, TestClock, TokenBucket

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    api = create_api(app, admin_token=TOKEN)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
def limiter(app: App) -> RateLimiter:
    return RateLimiter(
        app,
        {
            "send": TokenBucket(rate=10, period=MINUTE),
            "win": FixedWindow(rate=5, period=MINUTE, start=0),
        },
        rng=lambda: 0.0,
    )


async def test_health_is_open(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_health_reports_redis_down() -> None:
    import redis.asyncio as aioredis

    from tests._servers import free_port

    app = App(
        redis=aioredis.Redis(port=free_port(), socket_connect_timeout=0.5, decode_responses=True)
    )
    transport = httpx.ASGITransport(app=create_api(app, admin_token=TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "error"
    await app.aclose()


async def test_no_token_configured_refuses(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RKIT_ADMIN_TOKEN", raising=False)
    RateLimiter(app, {"send": TokenBucket(rate=1, period=1000)})
    transport = httpx.ASGITransport(app=create_api(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
            r = await c.get("/rate-limits", headers=headers)
            assert r.status_code == 403
            assert "no admin token" in r.json()["detail"]


async def test_token_from_environment(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKIT_ADMIN_TOKEN", "from-env")
    transport = httpx.ASGITransport(app=create_api(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (
            await c.get("/rate-limits", headers={"Authorization": "Bearer from-env"})
        ).status_code == 200
        assert (await c.get("/rate-limits", headers=AUTH)).status_code == 401


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/rate-limits"),
        ("GET", "/rate-limits/send/value"),
        ("POST", "/rate-limits/send/reset"),
        ("POST", "/rate-limits/clear-all"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic czNjcmV0LXRva2Vu", TOKEN])
async def test_every_admin_route_needs_the_token(
    client: httpx.AsyncClient, limiter: RateLimiter, method: str, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = await client.request(method, path, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


async def test_list_limits(client: httpx.AsyncClient, limiter: RateLimiter) -> None:
    r = await client.get("/rate-limits", headers=AUTH)
    assert r.status_code == 200
    limits = r.json()["limits"]
    assert limits["send"]["kind"] == "token bucket" and limits["send"]["capacity"] == 10
    assert limits["win"]["start"] == 0


async def test_value_and_reset(client: httpx.AsyncClient, limiter: RateLimiter, app: App) -> None:
    assert (await limiter.limit("send", key="u1", count=4)).ok
    r = await client.get("/rate-limits/send/value", params={"key": "u1"}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["value"] == 6 and body["key"] == "u1" and body["shard"] == 0
    # the singleton bucket is untouched
    r = await client.get("/rate-limits/send/value", headers=AUTH)
    assert r.json()["value"] == 10 and r.json()["key"] is None
    r = await client.post("/rate-limits/send/reset", json={"key": "u1"}, headers=AUTH)
    assert r.status_code == 204
    assert not await app.redis.exists(limiter.key_for("send", "u1"))


async def test_unknown_name_is_404_and_writes_nothing(
    client: httpx.AsyncClient, limiter: RateLimiter, app: App
) -> None:
    assert (await client.get("/rate-limits/nope/value", headers=AUTH)).status_code == 404
    assert (await client.post("/rate-limits/nope/reset", json={}, headers=AUTH)).status_code == 404
    assert [k async for k in app.redis.scan_iter(match=app.keys.pattern("rl"))] == []


async def test_bad_bodies_are_rejected(client: httpx.AsyncClient, limiter: RateLimiter) -> None:
    r = await client.post("/rate-limits/send/reset", json={"key": 5}, headers=AUTH)
    assert r.status_code == 422
    r = await client.post("/rate-limits/clear-all", json={"before": "soon"}, headers=AUTH)
    assert r.status_code == 422
    r = await client.get("/rate-limits/send/value", params={"sample_shards": 0}, headers=AUTH)
    assert r.status_code == 422


async def test_clear_all(
    client: httpx.AsyncClient, limiter: RateLimiter, clock: TestClock, app: App
) -> None:
    assert (await limiter.limit("send", key="a")).ok
    clock.advance(10_000)
    assert (await limiter.limit("send", key="b")).ok
    r = await client.post(
        "/rate-limits/clear-all", json={"before": clock.now_ms() - 5_000}, headers=AUTH
    )
    assert r.json() == {"deleted": 1}
    r = await client.post("/rate-limits/clear-all", headers=AUTH)
    assert r.json() == {"deleted": 1}
    assert [k async for k in app.redis.scan_iter(match=app.keys.pattern("rl"))] == []
