"""``/metrics``: Prometheus text read from Redis at scrape time, parsed with
``prometheus_client.parser``; the counters equal what the components did, and a
second App (another process of the service) scrapes the same numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rkit.api import create_api
from rkit.api.metrics import collect_samples, render

from rkit import (
    MINUTE,
    ActionCache,
    App,
    ConfigError,
    DirectAggregate,
    Presence,
    RateLimiter,
    Sample,
    TokenBucket,
    Workpool,
    operator_hooks,
)
from rkit.retrier import ActionRetrier
from rkit.testing import peer_app, run_until_idle
from rkit.workpool import RetryBehavior

AUTH = {"Authorization": "Bearer tok"}


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(app, admin_token="tok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of an exposition."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def pool_metric(m: dict[Any, float], name: str, pool: str, kind: str = "workpool") -> float:
    return m[name, (("kind", kind), ("pool", pool))]


async def scrape(client: httpx.AsyncClient) -> dict[Any, float]:
    r = await client.get("/metrics", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


def register(app: App) -> None:
    @app.action(name="ok")
    async def ok(i: int) -> int:
        return i

    @app.action(name="boom")
    async def boom() -> None:
        raise RuntimeError("boom")


async def test_workpool_counts_are_exact(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    pool = Workpool(app, "emails", max_parallelism=3)
    m = await scrape(client)
    assert not any(k[0].startswith("rkit_workpool") for k in m)  # no pool yet
    for i in range(7):
        await pool.enqueue("ok", {"i": i})
    await pool.enqueue(
        "boom", {}, retry=RetryBehavior(max_attempts=2, initial_backoff_ms=10, base=2)
    )
    canceled = await pool.enqueue("ok", {"i": 99}, run_after=60_000)
    await pool.cancel(canceled)
    m = await scrape(client)
    assert pool_metric(m, "rkit_workpool_jobs_enqueued_total", "emails") == 9
    assert pool_metric(m, "rkit_workpool_running", "emails") == 3  # dispatched at enqueue
    assert pool_metric(m, "rkit_workpool_slots", "emails") == 3
    assert pool_metric(m, "rkit_workpool_queue_depth", "emails") == 5
    await run_until_idle(app)
    app.clock.advance(1000)  # the retry's backoff
    await run_until_idle(app)
    m = await scrape(client)
    assert pool_metric(m, "rkit_workpool_jobs_started_total", "emails") == 9  # 8 + 1 retry
    assert pool_metric(m, "rkit_workpool_jobs_succeeded_total", "emails") == 7
    assert pool_metric(m, "rkit_workpool_jobs_failed_total", "emails") == 1
    assert pool_metric(m, "rkit_workpool_jobs_retried_total", "emails") == 1
    assert pool_metric(m, "rkit_workpool_jobs_canceled_total", "emails") == 1
    assert pool_metric(m, "rkit_workpool_lease_reaps_total", "emails") == 0
    assert pool_metric(m, "rkit_workpool_running", "emails") == 0
    assert pool_metric(m, "rkit_workpool_queue_depth", "emails") == 0
    # another process of the service (no Workpool constructed) scrapes the same totals
    peer = peer_app(app)
    try:
        transport = httpx.ASGITransport(app=create_api(peer, admin_token="tok"))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c2:
            m2 = await scrape(c2)
        for k, v in m.items():
            if k[0].startswith("rkit_workpool"):
                assert m2[k] == v, k
    finally:
        if app.embedded:
            await peer.aclose()


async def test_components_metrics(app: App, client: httpx.AsyncClient) -> None:
    async def double(x: int) -> int:
        return x * 2

    cache = ActionCache(app, double, name="dbl")
    assert (await cache.fetch({"x": 1})) == 2
    assert (await cache.fetch({"x": 1})) == 2
    assert (await cache.fetch({"x": 2})) == 4
    presence = Presence(app)
    await presence.heartbeat("room-1", "ann", "s1", 10_000)
    await presence.heartbeat("room-1", "bob", "s2", 10_000)
    await presence.heartbeat("room-2", "ann", "s3", 10_000)
    agg: DirectAggregate[int] = DirectAggregate(app, "scores")
    for i in range(5):
        await agg.insert(i, f"id{i}", sum_value=i * 1.5)
    RateLimiter(app, {"search": TokenBucket(rate=10, period=MINUTE)}, name="web")
    m = await scrape(client)
    assert m["rkit_cache_hits_total", (("cache", "dbl"),)] == 1
    assert m["rkit_cache_misses_total", (("cache", "dbl"),)] == 2
    assert m["rkit_cache_entries", (("cache", "dbl"),)] == 2
    inst = (("instance", "default"),)
    assert m["rkit_presence_rooms", inst] == 2
    assert m["rkit_presence_sessions", inst] == 3
    assert m["rkit_presence_users_online", inst] == 3
    lab = (("aggregate", "scores"), ("ns", "~"))
    assert m["rkit_aggregate_items", lab] == 5
    assert m["rkit_aggregate_sum", lab] == 15.0
    assert m["rkit_rate_limit_capacity", (("limiter", "web"), ("name", "search"))] == 10
    assert m["rkit_metrics_collector_errors", ()] == 0


async def test_retrier_metrics(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    retrier = ActionRetrier(app, namespace="billing", initial_backoff_ms=10, max_failures=1)
    await retrier.run("ok", {"i": 1})
    await retrier.run("boom", {})
    await run_until_idle(app)
    app.clock.advance(1_000)
    await run_until_idle(app)
    m = await scrape(client)
    assert pool_metric(m, "rkit_workpool_jobs_succeeded_total", "billing", "retrier") == 1
    assert pool_metric(m, "rkit_workpool_jobs_failed_total", "billing", "retrier") == 1
    assert pool_metric(m, "rkit_workpool_jobs_retried_total", "billing", "retrier") == 1


async def test_registered_collectors_plug_in(app: App, client: httpx.AsyncClient) -> None:
    """A component landing later adds its metrics through the hook; a broken
    collector is counted and logged, and the others still answer."""

    async def crons(a: App) -> Sequence[Sample]:
        n = int(await a.redis.get(a.keys.tag("crons") + ":fired") or 0)
        return [Sample("rkit_cron_fires", "counter", "Cron fires", {"cron": "nightly"}, n)]

    async def broken(a: App) -> Sequence[Sample]:
        raise RuntimeError("down")

    operator_hooks(app).add_metrics("crons", crons)
    operator_hooks(app).add_metrics("broken", broken)
    await app.redis.set(app.keys.tag("crons") + ":fired", 4)
    m = await scrape(client)
    assert m["rkit_cron_fires_total", (("cron", "nightly"),)] == 4
    assert m["rkit_metrics_collector_errors", ()] == 1


async def test_metrics_need_the_token(app: App, client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 401
    r = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "rkit_" not in r.text


def test_samples_are_checked() -> None:
    with pytest.raises(ConfigError, match="Prometheus name"):
        Sample("bad name", "gauge", "h", {}, 1)
    with pytest.raises(ConfigError, match="without _total"):
        Sample("x_total", "counter", "h", {}, 1)
    with pytest.raises(ConfigError, match="label"):
        Sample("x", "gauge", "h", {"__x": "1"}, 1)
    with pytest.raises(ConfigError, match=">= 0"):
        Sample("x", "counter", "h", {}, -1)
    with pytest.raises(ConfigError, match="number"):
        Sample("x", "gauge", "h", {}, True)


async def test_render_escapes_label_values(app: App) -> None:
    samples = [*await collect_samples(app)]
    samples.append(Sample("rkit_t", "gauge", "h", {"q": 'a"b\\c\nd'}, 2))
    m = parse(render(samples).decode())
    assert m["rkit_t", (("q", 'a"b\\c\nd'),)] == 2
