"""Migrations benchmark: items/s of a migration over N hashes (default 10**6) vs a
hand-written SCAN + pipelined HSET loop on the same redis-server, in one run.

    hand SCAN + HSET        SCAN COUNT 1000, one pipeline of HSETs per reply
    rkit scan (here)        RedisScanSource + patch shorthand, run_to_completion in
                            this process: the same Redis work plus claim + commit
                            scripts per batch and migrate_one per item
    hand SCAN+HGETALL+HSET  reads every hash first (what HashKeySource does)
    rkit hashes (here)      HashKeySource, run_to_completion
    rkit scan (worker)      RedisScanSource through the workpool: run_one here, the
                            rest on one `rkit worker` process (the production path)

Batch size 1,000; every variant writes each hash once per round (a new value per
round). Medians of interleaved rounds; target rkit scan / hand >= 0.8.

    python bench/migrations.py [--n 1000000] [--rounds 3] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratelimit import start_redis

from rkit import App
from rkit.migrations import HashKeySource, Migrations, MigrationStatus, RedisScanSource

ROOT = Path(__file__).resolve().parents[1]
BATCH = 1_000
SERVICE = """
from rkit import App
from rkit.migrations import Migrations, RedisScanSource

app = App(namespace="bench")
migrations = Migrations(app, job_budget_ms=60_000)


def bump(ctx, key):
    return {"v": "w"}


migrations.define(source=RedisScanSource(app.redis, "bh:*"), migrate_one=bump, name="worker")
"""


async def seed(r: aioredis.Redis, n: int) -> None:
    for lo in range(0, n, 20_000):
        pipe = r.pipeline(transaction=False)
        for i in range(lo, min(n, lo + 20_000)):
            pipe.hset(f"bh:{i}", mapping={"i": str(i), "v": "0"})
        await pipe.execute()


async def hand_scan_hset(r: aioredis.Redis, value: str) -> int:
    cursor, n = 0, 0
    while True:
        cursor, keys = await r.scan(cursor, match="bh:*", count=BATCH)
        if keys:
            pipe = r.pipeline(transaction=False)
            for k in keys:
                pipe.hset(k, "v", value)
            await pipe.execute()
            n += len(keys)
        if cursor == 0:
            return n


async def hand_scan_read_hset(r: aioredis.Redis, value: str) -> int:
    cursor, n = 0, 0
    while True:
        cursor, keys = await r.scan(cursor, match="bh:*", count=BATCH)
        if keys:
            pipe = r.pipeline(transaction=False)
            for k in keys:
                pipe.hgetall(k)
            rows = await pipe.execute()
            pipe = r.pipeline(transaction=False)
            for k, row in zip(keys, rows, strict=True):
                if row:
                    pipe.hset(k, "v", value)
            await pipe.execute()
            n += len(keys)
        if cursor == 0:
            return n


def start_worker(url: str) -> subprocess.Popen[bytes]:
    """One `rkit worker` process for the service above."""
    tmp = tempfile.mkdtemp()
    Path(tmp, "benchsvc.py").write_text(SERVICE)
    env = {**os.environ, "RKIT_REDIS_URL": url, "PYTHONPATH": os.pathsep.join([tmp, str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, "-m", "rkit.cli", "worker", "benchsvc:app"],
        cwd=tmp,
        env=env,
        stderr=subprocess.DEVNULL,
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis-url", default=None)
    args = ap.parse_args()
    proc = None
    url = args.redis_url
    if url is None:
        url, proc = start_redis()
    r = aioredis.from_url(url, decode_responses=True)
    await r.flushall()
    t = time.perf_counter()
    await seed(r, args.n)
    print(f"seeded {args.n:,} hashes in {time.perf_counter() - t:.1f} s ({url})")
    app = App(url, namespace="bench")
    m = Migrations(app)
    scan = m.define(
        source=RedisScanSource(app.redis, "bh:*"),
        migrate_one=lambda ctx, key: {"v": ctx.name},
        name="scan",
    )
    hashes = m.define(
        source=HashKeySource(app.redis, "bh:*"),
        migrate_one=lambda ctx, item: {"v": ctx.name},
        name="hashes",
    )
    worker = start_worker(url)
    wm = Migrations(App(url, namespace="bench"), "default")
    wm.define(
        source=RedisScanSource(wm.app.redis, "bh:*"),
        migrate_one=lambda ctx, key: {"v": "w"},
        name="worker",
    )

    async def rkit_here(mig: Any) -> int:
        st = await m.run_to_completion(mig, cursor=None, batch_size=BATCH)
        assert st.state == "success", st
        return st.processed

    async def rkit_worker() -> int:
        st = await wm.run_one("worker", reset=True, batch_size=BATCH)
        assert isinstance(st, MigrationStatus)
        while st.state == "inProgress":
            await asyncio.sleep(0.1)  # a light poll: this process shares a core with the worker
            st = await wm.status("worker")
        assert st.state == "success", st
        return st.processed

    variants: dict[str, Callable[[int], Awaitable[int]]] = {
        "hand SCAN + pipelined HSET": lambda k: hand_scan_hset(r, str(k)),
        "rkit RedisScanSource (here)": lambda k: rkit_here(scan),
        "hand SCAN + HGETALL + HSET": lambda k: hand_scan_read_hset(r, str(k)),
        "rkit HashKeySource (here)": lambda k: rkit_here(hashes),
        "rkit RedisScanSource (1 worker)": lambda k: rkit_worker(),
    }
    rates: dict[str, list[float]] = {v: [] for v in variants}
    try:
        await asyncio.sleep(2)  # the worker process starts
        for k in range(args.rounds):
            for name, fn in variants.items():
                t = time.perf_counter()
                n = await fn(k)
                dt = time.perf_counter() - t
                rates[name].append(n / dt)
                print(f"round {k + 1} {name:34} {n:>9,} items {dt:6.2f} s {n / dt:>10,.0f}/s")
    finally:
        worker.terminate()
        worker.wait(15)
    med = {v: statistics.median(x) for v, x in rates.items()}
    hand, hand_read = med["hand SCAN + pipelined HSET"], med["hand SCAN + HGETALL + HSET"]
    print()
    print(f"| variant | items/s (median of {args.rounds}) | vs hand-written peer |")
    print("|---|---|---|")
    for name, rate in med.items():
        peer = hand_read if "HGETALL" in name or "HashKey" in name else hand
        print(f"| {name} | {rate:,.0f} | {rate / peer:.2f} |")
    await r.aclose()
    await app.aclose()
    await wm.app.aclose()
    if proc is not None:
        proc.terminate()


if __name__ == "__main__":
    asyncio.run(main())
