"""Presence benchmark: 10,000 sessions in 1,000 rooms heartbeating on a real
redis-server (started here on a free port unless --redis-url).

Prints first-heartbeat (join) and steady heartbeat throughput at concurrency 1 and
50 next to a bare one-EVALSHA deadline refresh (the ceiling: ``ZADD`` of one
deadline, no session check, no online state), ``list_room`` / ``list`` latency
p50/p99, Redis memory per session (INFO used_memory delta and the MEMORY USAGE sum
of the component's keys), and a final check that no session was lost or wrongly
marked offline. Variants are interleaved round by round; medians are reported.

    python bench/presence.py
    python bench/presence.py --rooms 1000 --per-room 10 --rounds 5
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
from rkit.presence import HeartbeatResult, Presence

INTERVAL = 60_000  # long enough that nothing times out while the bench runs
BARE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
redis.call('ZADD', KEYS[1], string.format('%.17g', now + tonumber(ARGV[2])), ARGV[1])
return 1
"""

Session = tuple[str, str, str]


async def throughput(
    op: Callable[[Session], Awaitable[object]], plan: list[Session], conc: int
) -> float:
    chunks = [plan[i::conc] for i in range(conc)]

    async def task(items: list[Session]) -> None:
        for s in items:
            await op(s)

    t0 = time.perf_counter()
    await asyncio.gather(*(task(c) for c in chunks))
    return len(plan) / (time.perf_counter() - t0)


async def latencies(op: Callable[[int], Awaitable[object]], n: int, rooms: int) -> list[float]:
    rnd = random.Random(3)
    out = []
    for _ in range(n):
        r = rnd.randrange(rooms)
        t0 = time.perf_counter()
        await op(r)
        out.append((time.perf_counter() - t0) * 1e6)
    return sorted(out)


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * q))]


async def main(args: argparse.Namespace) -> None:
    url, proc = (args.redis_url, None) if args.redis_url else start_redis()
    try:
        app = App(url, namespace="bench")
        app.redis = aioredis.from_url(url, decode_responses=True, max_connections=64)
        raw = aioredis.from_url(url, decode_responses=True, max_connections=64)
        await raw.flushall()
        p = Presence(app)
        n = args.rooms * args.per_room
        sessions = [
            (f"room-{i % args.rooms}", f"user-{i}", f"session-{i:05d}-{'x' * 16}") for i in range(n)
        ]
        tokens: dict[int, HeartbeatResult] = {}

        async def beat(s: Session) -> object:
            return await p.heartbeat(s[0], s[1], s[2], INTERVAL)

        bare = raw.register_script(BARE_LUA)

        async def bare_beat(s: Session) -> object:
            return await bare(keys=[f"bare:{{{s[0]}}}:dl"], args=[s[2], INTERVAL * 2.5])

        # memory baseline, then every session joins (first heartbeat: claim + create)
        mem0 = int((await raw.info("memory"))["used_memory"])
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_bounded(beat, s, 50) for s in sessions))
        join_rate = n / (time.perf_counter() - t0)
        for i, r in enumerate(results):
            tokens[i % args.rooms] = r  # type: ignore[assignment]
        mem1 = int((await raw.info("memory"))["used_memory"])
        usage = 0
        families: dict[str, int] = {}
        async for key in raw.scan_iter(match="rkit:{bench:*", count=1000):
            size = int(await raw.memory_usage(key, samples=0) or 0)
            usage += size
            family = key.split("}", 1)[0].split(":")[2] + key.split("}", 1)[1]
            family = "room:events" if family.endswith(":events") else family.split(":")[0]
            families[family] = families.get(family, 0) + size
        n_events = 0
        for r in range(args.rooms):
            n_events += await raw.xlen(p.events_key(f"room-{r}"))

        rnd = random.Random(1)
        variants: dict[str, Callable[[Session], Awaitable[object]]] = {
            "rkit heartbeat": beat,
            "bare EVALSHA": bare_beat,
        }
        for s in sessions[:1000]:
            await bare_beat(s)  # warm the bare keys
        tput: dict[tuple[str, int], list[float]] = {}
        lat: dict[str, list[float]] = {"list_room": [], "list (token)": []}
        p99: dict[str, list[float]] = {"list_room": [], "list (token)": []}

        async def list_room(r: int) -> object:
            return await p.list_room(f"room-{r}")

        async def list_token(r: int) -> object:
            return await p.list(tokens[r].room_token)

        for rnd_i in range(args.rounds):
            order = list(variants)
            random.Random(rnd_i).shuffle(order)
            for name in order:
                for conc, ops in ((1, args.ops // 4), (50, args.ops)):
                    plan = [rnd.choice(sessions) for _ in range(ops)]
                    tput.setdefault((name, conc), []).append(
                        await throughput(variants[name], plan, conc)
                    )
            for name, op in (("list_room", list_room), ("list (token)", list_token)):
                xs = await latencies(op, args.ops // 8, args.rooms)
                lat[name].append(pct(xs, 0.5))
                p99[name].append(pct(xs, 0.99))

        # nobody lost, nobody wrongly offline
        online = 0
        for r in range(args.rooms):
            online += sum(e.online for e in await p.list_room(f"room-{r}", limit=1000))
        server = (await raw.info("server"))["redis_version"]

        print(
            f"redis-server {server} at {url}; {n:,} sessions in {args.rooms:,} rooms "
            f"({args.per_room} per room), {args.rounds} rounds, medians"
        )
        print(f"  first heartbeat (join) @50: {join_rate:,.0f} /s")
        print(f"  {'variant':<18}{'hb/s @1':>10}{'hb/s @50':>11}")
        for name in variants:
            m1 = statistics.median(tput[(name, 1)])
            m50 = statistics.median(tput[(name, 50)])
            print(f"  {name:<18}{m1:>10,.0f}{m50:>11,.0f}")
        r1 = statistics.median(tput[("rkit heartbeat", 1)]) / statistics.median(
            tput[("bare EVALSHA", 1)]
        )
        r50 = statistics.median(tput[("rkit heartbeat", 50)]) / statistics.median(
            tput[("bare EVALSHA", 50)]
        )
        print(f"  rkit / bare: {r1:.2f} @1, {r50:.2f} @50")
        for name in lat:
            print(
                f"  {name:<14} latency p50 {statistics.median(lat[name]):.1f} us, "
                f"p99 {statistics.median(p99[name]):.1f} us ({args.per_room} users per room)"
            )
        print(
            f"  memory per session: {(mem1 - mem0) / n:.0f} B (INFO used_memory delta), "
            f"{usage / n:.0f} B (MEMORY USAGE of the component's keys, incl. {n_events:,} "
            "join events)"
        )
        print(
            "    by key family, B per session: "
            + ", ".join(f"{k} {v / n:.0f}" for k, v in sorted(families.items()))
        )
        print(f"  online after the run: {online:,} / {n:,} (lost or wrongly offline: {n - online})")
        await app.aclose()
        await raw.aclose()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()


_sem: asyncio.Semaphore | None = None


async def _bounded(op: Callable[[Session], Awaitable[object]], s: Session, conc: int) -> object:
    global _sem
    if _sem is None:
        _sem = asyncio.Semaphore(conc)
    async with _sem:
        return await op(s)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--redis-url", default=None)
    ap.add_argument("--rooms", type=int, default=1000)
    ap.add_argument("--per-room", type=int, default=10)
    ap.add_argument("--ops", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(ap.parse_args()))
