"""Aggregate benchmark: rkit's Lua B-tree vs the nearest sorted-set command on the
same redis-server, at n = 10**5 and 10**6 items, in one run.

    insert          vs ZADD
    count(range)    vs ZCOUNT
    sum(range)      vs ZCOUNT (the O(log n) ceiling) and vs ZRANGEBYSCORE + summing
                    the range client-side (what a sorted set makes you do)
    at(offset)      vs ZRANGE offset offset (by index)
    index_of(key)   vs ZRANK

Ranges span n/100 items, so a client-side sum reads 1 000 then 10 000 members.
Prints p50 latency at concurrency 1 and throughput at concurrency 50 (medians of
interleaved rounds), the ratios, bulk-load rate, and Redis memory per item
(MEMORY USAGE of the tree's keys vs the sorted set). Also checks the tree
at each size (count, sum, at(n/2), index_of(n-1), height <= 6, validate, a single insert
afterwards < 5 ms). Targets: reads <= 3x, writes <= 6x, sum(range) flat from 10**5 to 10**6.

    python bench/aggregate.py [--sizes 100000,1000000] [--rounds 3]
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

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratelimit import start_redis

from rkit import App
from rkit.aggregate import Bound, DirectAggregate, Range

Op = Callable[[random.Random], Awaitable[Any]]


async def p50_us(op: Op, n: int, seed: int) -> float:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await op(rnd)
        out.append((time.perf_counter() - t) * 1e6)
    return statistics.median(out)


async def ops_per_s(op: Op, n: int, conc: int, seed: int) -> float:
    per = max(1, n // conc)

    async def task(s: int) -> None:
        rnd = random.Random(seed * 1000 + s)
        for _ in range(per):
            await op(rnd)

    t = time.perf_counter()
    await asyncio.gather(*(task(s) for s in range(conc)))
    return per * conc / (time.perf_counter() - t)


async def memory(r: Any, *keys: str) -> int:
    total = 0
    for k in keys:
        total += int(await r.memory_usage(k, samples=0) or 0)
    return total


async def one_size(url: str, n: int, rounds: int, lat_ops: int, tput_ops: int) -> dict[str, Any]:
    app = App(url, namespace="bench")
    app.redis = aioredis.from_url(url, decode_responses=True, max_connections=64)
    r = app.redis
    await r.flushall()
    agg: DirectAggregate[float] = DirectAggregate(app, "bench")
    items = [(float(i), str(i), 1.0) for i in range(n)]
    random.Random(n).shuffle(items)

    t0 = time.perf_counter()
    await agg.insert_many(items)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, n, 10_000):
        await r.zadd("z", {str(int(k)): k for k, _, _ in items[i : i + 10_000]})
    zload_s = time.perf_counter() - t0
    tree = agg._tree(None)
    mem_tree = await memory(r, tree.m, tree.n) / n
    mem_z = await memory(r, "z") / n

    stats = await agg.stats()
    checks = {
        "count": await agg.count() == n,
        "sum": await agg.sum() == float(n),
        "at(n/2)": (await agg.at(n // 2)).key == n // 2,
        "index_of(n-1)": await agg.index_of(float(n - 1)) == n - 1,
        "height<=6": stats["height"] <= 6,
    }
    t0 = time.perf_counter()
    await agg.validate()
    validate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await agg.insert(0.5, "single")
    single_ms = (time.perf_counter() - t0) * 1e3
    checks["single insert < 5 ms"] = single_ms < 5

    w = max(1, n // 100)
    fresh = iter(range(10**9))

    def lo(rnd: random.Random) -> int:
        return rnd.randrange(n - w)

    async def client_sum(rnd: random.Random) -> float:
        a = lo(rnd)
        rows = await r.zrangebyscore("z", a, a + w - 1, withscores=True)
        return sum(s for _, s in rows)

    pairs: dict[str, tuple[Op, Op]] = {
        "insert / ZADD": (
            lambda rnd: agg.insert(rnd.random() * n, f"n{next(fresh)}", 1.0),
            lambda rnd: r.zadd("z", {f"n{next(fresh)}": rnd.random() * n}),
        ),
        "count(range) / ZCOUNT": (
            lambda rnd: agg.count(bounds=Range(Bound(a := lo(rnd)), Bound(a + w, False))),
            lambda rnd: r.zcount("z", a := lo(rnd), f"({a + w}"),
        ),
        "sum(range) / ZCOUNT": (
            lambda rnd: agg.sum(bounds=Range(Bound(a := lo(rnd)), Bound(a + w, False))),
            lambda rnd: r.zcount("z", a := lo(rnd), f"({a + w}"),
        ),
        "sum(range) / client-side sum": (
            lambda rnd: agg.sum(bounds=Range(Bound(a := lo(rnd)), Bound(a + w, False))),
            client_sum,
        ),
        "at(offset) / ZRANGE by index": (
            lambda rnd: agg.at(rnd.randrange(n)),
            lambda rnd: r.zrange("z", i := rnd.randrange(n), i),
        ),
        "index_of / ZRANK": (
            lambda rnd: agg.index_of(float(rnd.randrange(n))),
            lambda rnd: r.zrank("z", str(rnd.randrange(n))),
        ),
    }
    for ours, theirs in pairs.values():  # warm up
        for s in range(20):
            await ours(random.Random(s))
            await theirs(random.Random(s))
    res: dict[str, dict[str, list[float]]] = {
        k: {"p50": [], "zp50": [], "tput": [], "ztput": []} for k in pairs
    }
    for rd in range(rounds):
        order = list(pairs)
        random.Random(rd).shuffle(order)
        for name in order:
            ours, theirs = pairs[name]
            slow = name.endswith("client-side sum")
            lat_n = lat_ops // 4 if slow and n >= 10**6 else lat_ops
            tput_n = tput_ops // 4 if slow and n >= 10**6 else tput_ops
            res[name]["p50"].append(await p50_us(ours, lat_n, rd))
            res[name]["zp50"].append(await p50_us(theirs, lat_n, rd))
            res[name]["tput"].append(await ops_per_s(ours, tput_n, 50, rd))
            res[name]["ztput"].append(await ops_per_s(theirs, tput_n, 50, rd))
    await app.aclose()
    return {
        "n": n,
        "load_s": load_s,
        "zload_s": zload_s,
        "mem_tree": mem_tree,
        "mem_z": mem_z,
        "stats": stats,
        "checks": checks,
        "validate_s": validate_s,
        "single_ms": single_ms,
        "res": {k: {m: statistics.median(v) for m, v in d.items()} for k, d in res.items()},
    }


def report(out: dict[str, Any]) -> None:
    n = out["n"]
    s = out["stats"]
    shape = f"M = {s['max_node_size']}, height {s['height']}, {s['nodes']:,} nodes"
    print(f"\n== n = {n:,} items ({shape})")
    print(
        f"bulk load: insert_many {n / out['load_s']:,.0f} items/s ({out['load_s']:.1f} s); "
        f"pipelined ZADD {n / out['zload_s']:,.0f} items/s"
    )
    print(
        f"memory per item: tree {out['mem_tree']:.1f} B, sorted set {out['mem_z']:.1f} B, "
        f"ratio {out['mem_tree'] / out['mem_z']:.2f}"
    )
    ok = ", ".join(f"{k} {'ok' if v else 'FAIL'}" for k, v in out["checks"].items())
    print(f"checks: {ok}; validate {out['validate_s']:.2f} s")
    print(f"single insert after load: {out['single_ms']:.2f} ms")
    print(
        f"  {'op / peer':<30}{'p50 us':>9}{'peer us':>9}{'ratio':>7}"
        f"{'ops/s@50':>10}{'peer':>9}{'ratio':>7}"
    )
    for name, m in out["res"].items():
        print(
            f"  {name:<30}{m['p50']:>9.1f}{m['zp50']:>9.1f}{m['p50'] / m['zp50']:>7.2f}"
            f"{m['tput']:>10.0f}{m['ztput']:>9.0f}{m['ztput'] / m['tput']:>7.2f}"
        )


async def main(args: argparse.Namespace) -> None:
    url, proc = (args.redis_url, None) if args.redis_url else start_redis()
    try:
        outs = []
        for n in (int(x) for x in args.sizes.split(",")):
            out = await one_size(url, n, args.rounds, args.lat_ops, args.tput_ops)
            report(out)
            outs.append(out)
        print(f"\nredis-server at {url}; {args.rounds} interleaved rounds, medians;")
        print("ratio = rkit / peer for latency, peer / rkit for throughput (lower is better)")
        if len(outs) >= 2:
            a, b = outs[0], outs[-1]
            name = "sum(range) / client-side sum"
            print(
                f"sum(range) p50 {a['res'][name]['p50']:.1f} us at {a['n']:,} -> "
                f"{b['res'][name]['p50']:.1f} us at {b['n']:,} "
                f"(x{b['res'][name]['p50'] / a['res'][name]['p50']:.2f}); client-side sum "
                f"x{b['res'][name]['zp50'] / a['res'][name]['zp50']:.2f}"
            )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--redis-url", default=None)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--lat-ops", type=int, default=2000)
    p.add_argument("--tput-ops", type=int, default=5000)
    asyncio.run(main(p.parse_args()))
