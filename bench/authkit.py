"""WorkOS AuthKit benchmark: signed ``user.created`` webhooks applied per second on a
real redis-server (started here on a free port unless --redis-url).

Variants, interleaved round by round (fresh event and user ids each round; medians):

* ``rkit handle_webhook``: signature check (HMAC over the raw bytes), JSON parse,
  claim (dedupe + lease), ordered apply with the external-id index and event record,
  the app handler (a no-op), done: three EVALSHAs;
* ``rkit via the route``: the same through ``create_api``'s public route (FastAPI,
  httpx ASGI transport, no network);
* ``hand-written``: what one writes without rkit: the official SDK's
  ``webhooks.verify_header``, ``json.loads``, ``SET evt NX PX`` for dedupe, then one
  ``HSET`` of the user (no ordering, no tombstones, no claim/lease: a handler crash
  after the SET loses the event);
* ``bare EVALSHA``: HMAC check + one script doing SET NX + HSET (the ceiling).

Besides events/s (wall clock, sensitive to other load on the machine) it prints the
client CPU µs per event (this process's CPU time) and the Redis-side µs per event
(``INFO commandstats``), which other processes disturb much less.

    python bench/authkit.py
    python bench/authkit.py --events 4000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratelimit import start_redis
from rkit.api import create_api
from workos import AsyncWorkOSClient  # the bench dir is on sys.path: no bench/workos.py

from rkit import App
from rkit.integrations.workos import AuthKit, AuthKitEvent

SECRET = "wh_bench_secret"
BARE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('HSET', KEYS[2], 'json', ARGV[1])
  return 1
end
return 0
"""

Delivery = tuple[bytes, dict[str, str]]


def deliveries(tag: str, n: int) -> list[Delivery]:
    out = []
    t = str(int(time.time() * 1000))
    for i in range(n):
        event = {
            "id": f"event_{tag}_{i}",
            "event": "user.created",
            "created_at": "2024-01-01T00:00:00.000Z",
            "data": {
                "object": "user",
                "id": f"user_{tag}_{i}",
                "email": f"u{i}@example.com",
                "email_verified": True,
                "first_name": "Ann",
                "last_name": "Lee",
                "external_id": f"ext_{tag}_{i}",
                "metadata": {},
                "created_at": "2024-01-01T00:00:00.000Z",
                "updated_at": "2024-01-01T00:00:00.000Z",
            },
        }
        body = json.dumps(event).encode()
        mac = hmac.new(SECRET.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        out.append((body, {"WorkOS-Signature": f"t={t}, v1={mac}"}))
    return out


async def throughput(
    op: Callable[[Delivery], Awaitable[object]], plan: list[Delivery], conc: int
) -> tuple[float, float]:
    """Events/s (wall clock) and this process's CPU µs per event (robust to other
    processes' load on the machine)."""
    chunks = [plan[i::conc] for i in range(conc)]

    async def task(items: list[Delivery]) -> None:
        for d in items:
            await op(d)

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(task(c) for c in chunks))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return len(plan) / wall, cpu / len(plan) * 1e6


async def redis_us(r: Any) -> float:
    """Redis-side µs of every command since the last CONFIG RESETSTAT."""
    stats = await r.info("commandstats")
    return float(sum(v["usec"] for k, v in stats.items() if k.startswith("cmdstat_")))


async def main(args: argparse.Namespace) -> None:
    url, proc = (args.redis_url, None) if args.redis_url else start_redis()
    try:
        app = App(url, namespace="bench")
        app.redis = aioredis.from_url(url, decode_responses=True, max_connections=64)
        await app.redis.flushall()
        ak = AuthKit(app, client_id="client_bench", api_key="sk_bench", webhook_secret=SECRET)

        @ak.on("user.created")
        async def created(event: AuthKitEvent) -> None:
            return None

        sdk = AsyncWorkOSClient(api_key="sk_bench", client_id="client_bench")
        r = app.redis
        bare = r.register_script(BARE_LUA)

        async def rkit_op(d: Delivery) -> object:
            answer = await ak.handle_webhook(*d)
            assert answer.status_code == 200, answer
            return answer

        api = create_api(app, admin_token="t")
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bench")

        async def route_op(d: Delivery) -> object:
            answer = await client.post(
                "/workos/webhook",
                content=d[0],
                headers={**d[1], "content-type": "application/json"},
            )
            assert answer.status_code == 200, answer.text
            return answer

        async def peer_op(d: Delivery) -> object:
            body, headers = d
            sdk.webhooks.verify_header(
                event_body=body, event_signature=headers["WorkOS-Signature"], secret=SECRET
            )
            event = json.loads(body)
            if await r.set(f"peer:evt:{event['id']}", "1", nx=True, px=604_800_000):
                data = {k: v for k, v in event["data"].items() if k != "object"}
                await r.hset(f"peer:u:{data['id']}", mapping={"json": json.dumps(data)})
            return None

        async def bare_op(d: Delivery) -> object:
            body, headers = d
            t, mac = headers["WorkOS-Signature"].split(", ")
            want = hmac.new(SECRET.encode(), t[2:].encode() + b"." + body, hashlib.sha256)
            assert hmac.compare_digest(mac[3:], want.hexdigest())
            event = json.loads(body)
            return await bare(
                keys=[f"bare:evt:{event['id']}", f"bare:u:{event['data']['id']}"],
                args=[json.dumps(event["data"]), 604_800_000],
            )

        variants: dict[str, Callable[[Delivery], Awaitable[object]]] = {
            "rkit handle_webhook": rkit_op,
            "rkit via the route": route_op,
            "hand-written (SDK verify + SET NX + HSET)": peer_op,
            "bare EVALSHA": bare_op,
        }
        for conc in args.concurrency:
            results: dict[str, list[float]] = {name: [] for name in variants}
            cpu: dict[str, list[float]] = {name: [] for name in variants}
            server: dict[str, list[float]] = {name: [] for name in variants}
            await rkit_op(deliveries(f"warm{conc}", 1)[0])
            for rnd in range(args.rounds):
                for v, (name, op) in enumerate(variants.items()):
                    plan = deliveries(f"c{conc}r{rnd}v{v}", args.events)  # fresh ids
                    await r.config_resetstat()
                    rate, us = await throughput(op, plan, conc)
                    server[name].append(await redis_us(r) / args.events)
                    results[name].append(rate)
                    cpu[name].append(us)
            med = {name: statistics.median(v) for name, v in results.items()}
            print(
                f"\nconcurrency {conc}: {args.events} events per variant per round, "
                f"medians of {args.rounds} rounds"
            )
            print(f"  {'variant':45s} {'events/s':>9s}  client CPU µs/event  Redis µs/event")
            for name, v in med.items():
                c, sv = statistics.median(cpu[name]), statistics.median(server[name])
                print(f"  {name:45s} {v:9,.0f}  {c:19.0f}  {sv:14.1f}")
            peer = med["hand-written (SDK verify + SET NX + HSET)"]
            print(f"  rkit / hand-written: {med['rkit handle_webhook'] / peer:.2f}")
            print(f"  rkit / bare EVALSHA: {med['rkit handle_webhook'] / med['bare EVALSHA']:.2f}")
            route = med["rkit via the route"] / med["rkit handle_webhook"]
            print(f"  route / handle_webhook: {route:.2f}")
        pattern = "rkit:{bench:workos:*:ak:u:*"
        users = len([k async for k in r.scan_iter(match=pattern, count=1000)])
        print(f"\nusers synced by rkit: {users:,} (every delivery a new user)")
        await client.aclose()
        await sdk.close()
        await ak.aclose()
        await app.aclose()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    main_args: Any = parser.parse_args()
    asyncio.run(main(main_args))
