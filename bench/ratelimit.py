"""Rate limiter benchmark: rkit ``limit()`` vs the ``limits`` package (moving and
fixed window, async redis-py storage) vs a bare one-EVALSHA token bucket.

Same redis-server (started here from PATH unless --redis-url), same redis-py
client library, same concurrency; variants are interleaved round by round and the
median throughput per variant is reported with ratios.

    python bench/ratelimit.py                # concurrency 1 and 50, 5 rounds
    python bench/ratelimit.py --ops 20000 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rkit import App, RateLimiter, TokenBucket

# The ceiling: one EVALSHA of the smallest correct token bucket (no sharding,
# reservation, TTL policy or config handling).
BARE_LUA = """
local r = redis.call('HMGET', KEYS[1], 'v', 'ts')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate, period, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v, ts = tonumber(r[1]) or cap, tonumber(r[2]) or now
v = math.min(v + math.max(0, now - ts) * rate / period, cap) - 1
if v < 0 then return 0 end
redis.call('HSET', KEYS[1], 'v', string.format('%.17g', v), 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], period)
return 1
"""

RATE = 10**9  # never limited: we measure the cost of a decision, not rejections
KEYS = [f"user-{i}" for i in range(1000)]


def start_redis() -> tuple[str, subprocess.Popen[bytes] | None]:
    exe = shutil.which("redis-server")
    if not exe:
        raise SystemExit(
            "redis-server not on PATH (apt-get install redis-server) or pass --redis-url"
        )
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "1", *cmd]  # server on core 1, client on core 0
        os.sched_setaffinity(0, {0})
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    for _ in range(200):
        try:
            redis.Redis(port=port).ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.025)
    return f"redis://127.0.0.1:{port}/0", proc


async def run(op: Callable[[str], Awaitable[object]], ops: int, concurrency: int) -> float:
    """ops/s of ``op`` over ``ops`` calls by ``concurrency`` tasks (random keys)."""
    per = ops // concurrency
    rnd = random.Random(42)
    plan = [[rnd.choice(KEYS) for _ in range(per)] for _ in range(concurrency)]

    async def task(keys: list[str]) -> None:
        for k in keys:
            await op(k)

    t0 = time.perf_counter()
    await asyncio.gather(*(task(p) for p in plan))
    return per * concurrency / (time.perf_counter() - t0)


async def main(args: argparse.Namespace) -> None:
    from limits import RateLimitItemPerMinute
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    url, proc = (args.redis_url, None) if args.redis_url else start_redis()
    try:
        max_conn = 64
        app = App(url, namespace="bench")
        app.redis = aioredis.from_url(url, decode_responses=True, max_connections=max_conn)
        limiter = RateLimiter(app, {"api": TokenBucket(rate=RATE, period=60_000)})
        bare_client = aioredis.from_url(url, decode_responses=True, max_connections=max_conn)
        bare_sha = await bare_client.script_load(BARE_LUA)
        storage = RedisStorage(
            url.replace("redis://", "async+redis://"),
            implementation="redispy",
            max_connections=max_conn,
        )
        item = RateLimitItemPerMinute(RATE)
        moving = MovingWindowRateLimiter(storage)
        fixed = FixedWindowRateLimiter(storage)

        async def rkit_op(k: str) -> object:
            return await limiter.limit("api", key=k)

        async def bare_op(k: str) -> object:
            return await bare_client.evalsha(bare_sha, 1, f"bare:{{{k}}}", RATE, 60_000, RATE)

        async def moving_op(k: str) -> object:
            return await moving.hit(item, "moving", k)

        async def fixed_op(k: str) -> object:
            return await fixed.hit(item, "fixed", k)

        variants = {
            "rkit limit()": rkit_op,
            "bare EVALSHA": bare_op,
            "limits fixed window": fixed_op,
            "limits moving window": moving_op,
        }
        # warm up every variant (connections, script caches)
        for op in variants.values():
            await run(op, 200, 10)

        print(
            f"redis-server at {url}; {args.ops} ops per variant per round, {args.rounds} rounds, "
            f"{len(KEYS)} keys, medians"
        )
        for conc in args.concurrency:
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for rnd in range(args.rounds):
                order = list(variants)
                random.Random(rnd).shuffle(order)
                for name in order:
                    ops = args.ops if conc > 1 else max(args.ops // 4, 1000)
                    samples[name].append(await run(variants[name], ops, conc))
            med = {name: statistics.median(v) for name, v in samples.items()}
            rk = med["rkit limit()"]
            print(f"\nconcurrency {conc}")
            print(f"  {'variant':<22}{'ops/s':>10}{'rkit / variant':>16}")
            for name, v in med.items():
                print(f"  {name:<22}{v:>10.0f}{rk / v:>16.2f}")
            print(f"  bare / rkit = {med['bare EVALSHA'] / rk:.2f}  (target <= 1.3)")
            print(f"  rkit / limits fixed = {rk / med['limits fixed window']:.2f}  (target >= 1.0)")
        await app.aclose()
        await bare_client.aclose()
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
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    asyncio.run(main(p.parse_args()))
