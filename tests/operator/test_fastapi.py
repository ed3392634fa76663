"""rkit.fastapi: the rate-limit dependency (429 with Retry-After and RateLimit-*
headers), the RateLimited exception handler and the lifespan that opens and closes
the App."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from rkit import MINUTE, App, ConfigError, FixedWindow, RateLimiter, TokenBucket
from rkit.fastapi import add_exception_handlers, client_ip, lifespan, limit

from .._state import snapshot


def service(app: App, **limit_kw: object) -> FastAPI:
    api = FastAPI()
    api.state.rkit = app
    add_exception_handlers(api)

    @api.get("/search", dependencies=[Depends(limit("search", **limit_kw))])  # type: ignore[arg-type]
    async def search(q: str = "") -> dict[str, str]:
        return {"q": q}

    @api.get("/manual")
    async def manual() -> dict[str, bool]:
        limiter = app.components.get("rate_limit", "web")
        assert isinstance(limiter, RateLimiter)
        await limiter.limit("search", key="manual", throws=True)
        return {"ok": True}

    return api


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    RateLimiter(app, {"search": TokenBucket(rate=10, period=MINUTE)}, name="web")
    transport = httpx.ASGITransport(app=service(app, key=client_ip))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_twenty_requests_at_ten_per_minute(app: App, client: httpx.AsyncClient) -> None:
    """The issue's test: 10 x 200 and 10 x 429 with an integer Retry-After >= 1."""
    codes = []
    for i in range(20):
        r = await client.get("/search", params={"q": str(i)})
        codes.append(r.status_code)
        if r.status_code == 200:
            assert r.headers["RateLimit-Limit"] == "10"
            assert r.headers["RateLimit-Policy"] == "10;w=60"
            # from the same script call (detail=True): 9, 8, ... 0 left; full again
            # after (i + 1) tokens at one per 6 s
            assert r.headers["RateLimit-Remaining"] == str(9 - i)
            assert r.headers["RateLimit-Reset"] == str(6 * (i + 1))
        else:
            retry = r.headers["Retry-After"]
            assert retry.isdigit() and int(retry) >= 1
            assert int(retry) == 6  # one token per 6 s at 10/min
            assert r.headers["RateLimit-Remaining"] == "0"
            assert r.headers["RateLimit-Reset"] == retry
            assert r.json() == {"detail": "rate limited", "limit": "search", "retry_after": 6}
    assert codes == [200] * 10 + [429] * 10
    app.clock.advance(6_000)  # one token back
    assert (await client.get("/search")).status_code == 200
    assert (await client.get("/search")).status_code == 429


async def test_concurrent_requests_spend_exactly_the_capacity(
    app: App, client: httpx.AsyncClient
) -> None:
    rs = await asyncio.gather(*(client.get("/search") for _ in range(40)))
    codes = sorted(r.status_code for r in rs)
    assert codes == [200] * 10 + [429] * 30


async def test_keys_split_buckets(app: App) -> None:
    RateLimiter(app, {"search": FixedWindow(rate=2, period=MINUTE, start=0)}, name="web")

    def user(request: Request) -> str:
        return request.headers.get("x-user", "anon")

    transport = httpx.ASGITransport(app=service(app, key=user))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        a = [(await c.get("/search", headers={"x-user": "a"})).status_code for _ in range(3)]
        b = [(await c.get("/search", headers={"x-user": "b"})).status_code for _ in range(3)]
        r = await c.get("/search", headers={"x-user": "a"})
    assert a == b == [200, 200, 429]
    # a fixed window refills at the window's end: Retry-After is the time left
    assert 1 <= int(r.headers["Retry-After"]) <= 60


async def test_handler_maps_raised_rate_limited(app: App, client: httpx.AsyncClient) -> None:
    """``RateLimited`` raised by the service's own code is a 429 too."""
    for _ in range(10):
        assert (await client.get("/manual")).status_code == 200
    r = await client.get("/manual")
    assert r.status_code == 429 and r.headers["Retry-After"] == "6"
    assert r.headers["RateLimit-Limit"] == "10"


async def test_bad_input_is_refused_before_redis(app: App) -> None:
    RateLimiter(app, {"search": TokenBucket(rate=10, period=MINUTE)}, name="web")
    before = await snapshot(app)
    with pytest.raises(ConfigError):
        limit("")
    with pytest.raises(ConfigError):
        limit("search", key=42)  # type: ignore[arg-type]
    # a limit no limiter defines: a server error naming it, nothing written
    api = FastAPI()
    api.state.rkit = app

    @api.get("/x", dependencies=[Depends(limit("nope"))])
    async def x() -> None:
        return None

    transport = httpx.ASGITransport(app=api, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        with pytest.raises(RuntimeError, match="'nope'"):
            await c.get("/x")
    assert await snapshot(app) == before


async def test_lifespan_opens_and_closes_the_app(app: App) -> None:
    """The lifespan checks Redis at startup, serves ``api.state.rkit`` to the
    dependency, and closes the App at shutdown."""
    made: list[App] = []

    def factory() -> App:
        from rkit.testing import peer_app

        a = peer_app(app)
        RateLimiter(a, {"search": TokenBucket(rate=1, period=MINUTE)}, name="web")
        made.append(a)
        return a

    shares_client = not app.embedded and app.redis_url is None  # cluster: a prebuilt client
    api = FastAPI(lifespan=lifespan(factory, close=not shares_client))
    add_exception_handlers(api)

    @api.get("/s", dependencies=[Depends(limit("search"))])
    async def s() -> dict[str, bool]:
        return {"ok": True}

    async with api.router.lifespan_context(api):
        assert api.state.rkit is made[0]
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/s")).status_code == 200
            assert (await c.get("/s")).status_code == 429
        if app.redis_url is not None:
            await made[0].redis.client_setname("lifespan-peer")
    if app.redis_url is not None:  # the server no longer sees the closed App's connection
        names = [c.get("name") for c in await app.redis.client_list()]
        assert "lifespan-peer" not in names


async def test_lifespan_fails_at_startup_without_redis() -> None:
    dead = App("redis://127.0.0.1:1/0", namespace="dead")
    api = FastAPI(lifespan=lifespan(dead))
    with pytest.raises(Exception, match=r"(?i)connect"):
        async with api.router.lifespan_context(api):
            pass  # pragma: no cover
