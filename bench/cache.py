"""Action cache benchmark: the hit path of rkit ``ActionCache.fetch`` vs the
``cashews`` package's Redis backend (``@cache(ttl=...)``) vs a bare ``GET`` (the
one-round-trip ceiling), same redis-server, same redis-py, interleaved rounds.

Prints per-call latency p50/p99 at concurrency 1 and throughput at concurrency 50,
with ratios. Also reports round trips per rkit hit (commandstats).

    python bench/cache.py
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

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratelimit import start_redis

from rkit import App
from rkit.action_cache import ActionCache

KEYS = 200
VALUE = {"user": "ada", "score": 0.75, "tags": ["a", "b", "c"], "n": 42}


async def produce(user: int) -> dict[str, object]:
    return {**VALUE, "id": user}


async def latencies(op: Callable[[int], Awaitable[object]], n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await op(i % KEYS)
        out.append((time.perf_counter() - t) * 1e6)
    return out


async def throughput(op: Callable[[int], Awaitable[object]], n: int, conc: int) -> float:
    per = n // conc

    async def task(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(per):
            await op(rnd.randrange(KEYS))

    t = time.perf_counter()
    await asyncio.gather(*(task(s) for s in range(conc)))
    return per * conc / (time.perf_counter() - t)


async def main(args: argparse.Namespace) -> None:
    from cashews import Cache

    url, proc = (args.redis_url, None) if args.redis_url else start_redis()
    try:
        app = App(url, namespace="bench")
        app.redis = aioredis.from_url(url, decode_responses=True, max_connections=64)
        rk = ActionCache(app, produce, name="bench", ttl=3_600_000)

        cashews = Cache()
        cashews.setup(url, client_side=False, max_connections=64)

        @cashews(ttl="1h", key="bench:{user}")
        async def cashews_produce(user: int) -> dict[str, object]:
            return await produce(user)

        bare = aioredis.from_url(url, decode_responses=True, max_connections=64)
        import json

        for u in range(KEYS):
            await bare.set(f"bare:{u}", json.dumps(await produce(u)))

        async def rkit_op(u: int) -> object:
            return await rk.fetch({"user": u})

        async def cashews_op(u: int) -> object:
            return await cashews_produce(u)

        async def bare_op(u: int) -> object:
            return json.loads(await bare.get(f"bare:{u}"))

        variants = {"rkit fetch (hit)": rkit_op, "cashews (hit)": cashews_op, "bare GET": bare_op}
        for op in variants.values():  # fill + warm up
            for u in range(KEYS):
                await op(u)

        # round trips per rkit hit
        await bare.config_resetstat()
        for u in range(KEYS):
            await rkit_op(u)
        stats = await bare.info("commandstats")
        # commands sent by the client (EVALSHA) vs run inside the script (TIME, HMGET, HINCRBY)
        calls = stats.get("cmdstat_evalsha", {}).get("calls", 0)
        inner = sum(
            v["calls"]
            for k, v in stats.items()
            if k not in ("cmdstat_config", "cmdstat_info", "cmdstat_evalsha")
        )

        p50: dict[str, list[float]] = {k: [] for k in variants}
        p99: dict[str, list[float]] = {k: [] for k in variants}
        tput: dict[str, list[float]] = {k: [] for k in variants}
        for rnd in range(args.rounds):
            order = list(variants)
            random.Random(rnd).shuffle(order)
            for name in order:
                lat = sorted(await latencies(variants[name], args.ops // 4))
                p50[name].append(lat[len(lat) // 2])
                p99[name].append(lat[int(len(lat) * 0.99)])
                tput[name].append(await throughput(variants[name], args.ops, 50))
        print(f"redis-server at {url}; {KEYS} keys, {args.rounds} rounds, medians")
        print(
            f"rkit round trips per hit: {calls / KEYS:.2f} (one EVALSHA running "
            f"{inner / KEYS:.0f} commands inside)"
        )
        print(
            f"  {'variant':<20}{'p50 us':>9}{'p99 us':>9}{'ops/s @50':>11}{'rkit/variant p50':>18}"
        )
        rk50 = statistics.median(p50["rkit fetch (hit)"])
        for name in variants:
            m50 = statistics.median(p50[name])
            print(
                f"  {name:<20}{m50:>9.1f}{statistics.median(p99[name]):>9.1f}"
                f"{statistics.median(tput[name]):>11.0f}{rk50 / m50:>18.2f}"
            )
        rk_t = statistics.median(tput["rkit fetch (hit)"])
        print(
            f"  throughput rkit / cashews = {rk_t / statistics.median(tput['cashews (hit)']):.2f}"
            "  (target >= 1.0)"
        )
        print(
            f"  latency cashews / rkit = {statistics.median(p50['cashews (hit)']) / rk50:.2f}"
            "  (target >= 1.0)"
        )
        await app.aclose()
        await bare.aclose()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--redis-url", default=None)
    p.add_argument("--ops", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(p.parse_args()))
