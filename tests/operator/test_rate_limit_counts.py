"""Rate-limit outcome counters for ``/metrics``: each limiter sums its ``limit``
outcomes per name in-process and adds them to Redis by one script (at most a second
later, at a scrape, or on ``flush_counts``), so every process's calls count once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rkit.api import create_api

from rkit import MINUTE, App, RateLimited, RateLimiter, TokenBucket
from rkit.rate_limit import read_counts
from rkit.testing import peer_app

from .._state import snapshot

LIMITS = {
    "search": TokenBucket(rate=10, period=MINUTE),
    "login": TokenBucket(rate=3, period=MINUTE),
}


async def test_scrape_counts_allowed_and_limited(app: App) -> None:
    limiter = RateLimiter(app, LIMITS, name="web")
    for _ in range(12):
        await limiter.limit("search")
    for _ in range(3):
        assert await limiter.limit("login", throws=True)
    for _ in range(4):
        with pytest.raises(RateLimited):
            await limiter.limit("login", throws=True)
        await limiter.check("login")  # checks are not counted
    transport = httpx.ASGITransport(app=create_api(app, admin_token="tok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/metrics", headers={"Authorization": "Bearer tok"})
    m = {
        (s.name, s.labels.get("name")): s.value
        for f in text_string_to_metric_families(r.text)
        for s in f.samples
    }
    assert m["rkit_rate_limit_allowed_total", "search"] == 10
    assert m["rkit_rate_limit_limited_total", "search"] == 2
    assert m["rkit_rate_limit_allowed_total", "login"] == 3
    assert m["rkit_rate_limit_limited_total", "login"] == 4


async def test_processes_count_once_each(app: App) -> None:
    """Two processes (Apps) of the service, each with its limiter of the same names,
    many concurrent calls: the totals are exact."""
    peer = peer_app(app)
    try:
        a = RateLimiter(app, {"search": TokenBucket(rate=30, period=MINUTE)}, name="web")
        b = RateLimiter(peer, {"search": TokenBucket(rate=30, period=MINUTE)}, name="web")
        results = await asyncio.gather(
            *(lim.limit("search") for lim in [a, b] * 25)  # 50 calls, 30 tokens
        )
        assert sum(r.ok for r in results) == 30
        await b.flush_counts()
        assert await a.counts() == {"search": (30, 20)}
        assert await read_counts(peer) == {"search": (30, 20)}
    finally:
        if app.embedded:
            await peer.aclose()


async def test_counts_are_added_within_a_second(app: App) -> None:
    limiter = RateLimiter(app, LIMITS, name="web")
    await limiter.limit("search")
    assert await read_counts(app) in ({}, {"search": (1, 0)})  # maybe due already
    limiter._counted_at -= 2  # a second has passed since the last add (monotonic time)
    await limiter.limit("search")
    assert await read_counts(app) == {"search": (2, 0)}


async def test_bad_input_is_not_counted(app: App) -> None:
    limiter = RateLimiter(app, LIMITS, name="web")
    before = await snapshot(app)
    for bad in (lambda: limiter.limit("nope"), lambda: limiter.limit("search", count=-1)):
        with pytest.raises(ValueError):
            await bad()
    await limiter.flush_counts()
    assert await snapshot(app) == before


async def test_names_beyond_the_cap_are_summed(app: App) -> None:
    """The script keeps at most ``cap`` names; the others count under ""."""
    limiter = RateLimiter(app, LIMITS, name="web")
    script = limiter._count_script
    await script(app.redis, limiter.counts_keys, [2, "a", 1, 0, "b", 2, 1])
    await script(app.redis, limiter.counts_keys, [2, "c", 1, 1, "a", 1, 0, "d", 0, 3])
    assert await read_counts(app) == {"": (1, 4), "a": (2, 0), "b": (2, 1)}


async def test_counts_survive_a_failed_add(app: App) -> None:
    """Redis unreachable while adding: the counts stay in memory and are added by the
    next flush; the limit calls themselves are not failed by counting."""
    limiter = RateLimiter(app, LIMITS, name="web")
    for _ in range(3):
        await limiter.limit("search")
    state = app.redis
    app.redis = App("redis://127.0.0.1:1/0", namespace=app.namespace).redis  # nobody there
    try:
        with pytest.raises(Exception, match=r"(?i)connect"):
            await limiter.flush_counts()
    finally:
        await app.redis.aclose()
        app.redis = state
    await limiter.limit("search")
    await limiter.flush_counts()
    assert await read_counts(app) == {"search": (4, 0)}
