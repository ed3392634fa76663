"""Operator surface benchmark.

1. ``rkit.fastapi.limit`` as a FastAPI dependency vs the same route limited with the
   ``limits`` package (fixed window, async redis-py storage) in a dependency of the
   same shape, vs a dependency calling ``RateLimiter.limit`` directly (no headers:
   the integration's own cost), vs the route without a limit (the stack's ceiling). Requests go
   through httpx's in-process ASGI transport (no sockets), 1,000 client keys.
2. A ``/metrics`` scrape of an App with 10 workpools, 5 cache names and a limiter vs
   a hand-written scrape reading the same Redis hashes in one pipeline and rendering
   them with prometheus-client (no per-pool scripts).

Same redis-server (started here from PATH unless --redis-url; pinned to another
core), variants interleaved round by round, medians reported with ratios.

    python bench/operator_surface.py                 # 5 rounds
    python bench/operator_surface.py --requests 3000 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratelimit import start_redis

from rkit import ActionCache, App, RateLimiter, TokenBucket, Workpool
from rkit import api as admin_api
from rkit.fastapi import add_exception_handlers, limit

RATE = 10**9  # never limited: the cost of a decision, not of refusals
KEYS = [f"client-{i}" for i in range(1000)]


def client_key(request: Request) -> str:
    return request.headers["x-client"]


def services(app: App, url: str) -> dict[str, FastAPI]:
    from limits import RateLimitItemPerMinute
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import FixedWindowRateLimiter

    limiter = RateLimiter(app, {"search": TokenBucket(rate=RATE, period=60_000)}, name="web")
    storage = RedisStorage(url.replace("redis://", "async+redis://"), implementation="redispy")
    fixed = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(RATE)

    async def limits_dep(request: Request) -> None:
        if not await fixed.hit(item, "search", client_key(request)):
            raise HTTPException(429, headers={"Retry-After": "1"})

    async def direct_dep(request: Request) -> None:  # the limiter alone, no headers
        await limiter.limit("search", key=client_key(request), throws=True)

    out = {}
    for name, deps in (
        ("rkit limit()", [Depends(limit("search", key=client_key))]),
        ("rkit direct call", [Depends(direct_dep)]),
        ("limits fixed window", [Depends(limits_dep)]),
        ("no limit", []),
    ):
        api = FastAPI()
        api.state.rkit = app
        add_exception_handlers(api)

        @api.get("/search", dependencies=deps)
        async def search(q: str = "") -> dict[str, str]:
            return {"q": q}

        out[name] = api
    return out


async def requests_per_s(api: FastAPI, n: int, concurrency: int) -> float:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
        per = n // concurrency

        async def worker() -> None:
            for _ in range(per):
                r = await c.get("/search", headers={"x-client": random.choice(KEYS)})
                assert r.status_code == 200, r.status_code

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return per * concurrency / (time.perf_counter() - t0)


async def scrape_ms(op: Callable[[], Awaitable[Any]], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await op()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def main(args: argparse.Namespace) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily

    url, proc = (args.redis_url, None) if args.redis_url else start_redis()
    try:
        app = App(url, namespace="bench-op")
        await app.redis.flushdb()
        apis = services(app, url)
        # an App worth scraping: 10 pools with work, 5 cache names, the limiter above
        pools = [Workpool(app, f"pool-{i}", max_parallelism=0) for i in range(10)]

        @app.action(name="noop")
        async def noop() -> None:
            return None

        for p in pools:
            await p.enqueue_batch("noop", [{} for _ in range(20)])
        for i in range(5):

            async def value(x: int) -> int:
                return x

            cache = ActionCache(app, value, name=f"cache-{i}")
            for x in range(10):
                await cache.fetch({"x": x})
        admin = admin_api.create_api(app, admin_token="tok")
        scrape_client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=admin), base_url="http://b"
        )

        async def rkit_scrape() -> Any:
            r = await scrape_client.get("/metrics", headers={"Authorization": "Bearer tok"})
            assert r.status_code == 200

        async def bare_scrape() -> Any:
            async with app.redis.pipeline(transaction=False) as pipe:
                for p in pools:
                    pipe.hgetall(p.keys[7])  # the pool's stats hash
                rows = await pipe.execute()
            fam = CounterMetricFamily("bare_jobs", "h", labels=["pool", "field"])
            for p, row in zip(pools, rows, strict=True):
                for k, v in row.items():
                    fam.add_metric([p.name, k], float(v))
            reg = CollectorRegistry(auto_describe=False)

            class C:
                def collect(self) -> Any:
                    yield fam

            reg.register(C())  # type: ignore[arg-type]
            return generate_latest(reg)

        for conc in (1, 20):
            results: dict[str, list[float]] = {k: [] for k in apis}
            for _ in range(args.rounds):
                names = list(apis)
                random.shuffle(names)
                for name in names:
                    results[name].append(await requests_per_s(apis[name], args.requests, conc))
            med = {k: statistics.median(v) for k, v in results.items()}
            print(f"\nFastAPI route, concurrency {conc}, {args.requests} requests x {args.rounds}:")
            for k, v in med.items():
                print(f"  {k:22s} {v:10,.0f} req/s")
            rk, li, no = med["rkit limit()"], med["limits fixed window"], med["no limit"]
            di = med["rkit direct call"]
            print(
                f"  rkit / limits = {rk / li:.2f}   rkit / direct call = {rk / di:.2f}"
                f"   rkit / no limit = {rk / no:.2f}"
            )
        rk_ms: list[float] = []
        bare: list[float] = []
        for _ in range(args.rounds):
            rk_ms.append(await scrape_ms(rkit_scrape, 30))
            bare.append(await scrape_ms(bare_scrape, 30))
        a, b = statistics.median(rk_ms), statistics.median(bare)
        size = len(
            (await scrape_client.get("/metrics", headers={"Authorization": "Bearer tok"})).text
        )
        print(f"\n/metrics (10 pools, 5 caches, 1 limiter; {size:,} bytes):")
        print(f"  rkit scrape p50 {a:.2f} ms   bare pipelined HGETALL + render p50 {b:.2f} ms")
        print(f"  rkit / bare = {a / b:.2f}")
        await scrape_client.aclose()
        await app.aclose()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--redis-url")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(p.parse_args()))
