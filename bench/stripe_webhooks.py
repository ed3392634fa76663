"""Stripe webhook benchmark: verified events applied per second, end to end through
the FastAPI route, against a bare handler measured in the same run.

* **rkit**: ``create_api(app)`` with a ``StripeSync`` — the body guard, the SDK's
  signature check, the event claim (dedupe record + log), the watermarked
  ``customer.subscription.updated`` upsert with its indexes, the done mark: four
  EVALSHAs per event.
* **bare**: the hand-written handler a team would write first — a FastAPI route that
  reads the raw body, verifies it with ``stripe.WebhookSignature.verify_header``,
  dedupes with ``SET evt:<id> NX EX`` and ``HSET``s the object's JSON under its id
  (no indexes, no ordering, no handler-retry state).

Both run on one redis-server (started here; pinned to another core when possible),
through httpx's ASGI transport in-process and through a real uvicorn server (a
subprocess) over loopback. Every event is a distinct, freshly signed
``customer.subscription.updated``; variants are interleaved round by round and
medians are reported.

    python bench/stripe_webhooks.py
    python bench/stripe_webhooks.py --events 2000 --rounds 3 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis.asyncio as aioredis
import stripe
from fastapi import FastAPI, Request, Response

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ratelimit import start_redis  # noqa: E402

from rkit import App  # noqa: E402
from rkit.integrations.stripe import StripeSync  # noqa: E402

SECRET = "whsec_bench"
CPU: dict[int, list[float]] = {}
SERVER_CPU: dict[str, list[float]] = {}
"""The uvicorn server process's CPU µs per event (from /proc): its capacity per core,
which a loaded machine disturbs much less than events/s."""
"""This process's CPU µs per event, per client: for the ASGI variants the whole
route (client, middleware, handler) runs here, so this is the route's CPU cost,
which a loaded machine disturbs much less than events/s."""
_ids = itertools.count(1)


def bare_app(redis_url: str) -> FastAPI:
    """The peer: verify + dedupe + HSET."""
    api = FastAPI()
    r = aioredis.from_url(redis_url, decode_responses=True)

    @api.post("/stripe/webhook")
    async def webhook(request: Request) -> Response:
        body = await request.body()
        try:
            stripe.WebhookSignature.verify_header(
                body.decode(), request.headers.get("stripe-signature"), SECRET, tolerance=300
            )
            event = json.loads(body)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            return Response(f"bad signature: {exc}", 400)
        if await r.set(f"bare:evt:{event['id']}", "1", nx=True, ex=7 * 86400):
            obj = event["data"]["object"]
            await r.hset(f"bare:sub:{obj['id']}", mapping={"json": json.dumps(obj)})
        return Response(b'{"received":true}', media_type="application/json")

    return api


def rkit_app(redis_url: str, namespace: str) -> FastAPI:
    # imported here: with or without the rkit/api symlink of a checkout, one import
    # alone in its block sorts the same
    from rkit.api import create_api

    app = App(redis_url, namespace=namespace)
    StripeSync(app, secret_key="sk_bench", webhook_secret=SECRET)
    return create_api(app, admin_token="bench")


def rkit_router_app(redis_url: str, namespace: str) -> FastAPI:
    """StripeSync's route mounted in the application's own FastAPI app."""
    from rkit.api.webhooks.stripe import webhook_router

    app = App(redis_url, namespace=namespace)
    sync = StripeSync(app, secret_key="sk_bench", webhook_secret=SECRET)
    api = FastAPI()
    api.include_router(webhook_router(sync))
    return api


def deliveries(n: int) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    now = int(time.time())
    for _ in range(n):
        i = next(_ids)
        sub = {
            "id": f"sub_{i % 500}",
            "object": "subscription",
            "customer": f"cus_{i % 500}",
            "status": "active",
            "cancel_at_period_end": False,
            "cancel_at": None,
            "items": {"data": [{"id": f"si_{i}", "quantity": 1 + i % 7,
                                "price": {"id": "price_A"}, "current_period_end": now + 86400}]},
            "metadata": {"userId": f"u{i % 500}", "orgId": f"o{i % 50}"},
        }  # fmt: skip
        ev = {"id": f"evt_{i}", "object": "event", "type": "customer.subscription.updated",
              "created": now, "data": {"object": sub}}  # fmt: skip
        body = json.dumps(ev).encode()
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET)
        out.append((body, {"Stripe-Signature": header, "Content-Type": "application/json"}))
    return out


async def blast(client: httpx.AsyncClient, plan: list[tuple[bytes, dict[str, str]]],
                conc: int) -> float:  # fmt: skip
    chunks = [plan[i::conc] for i in range(conc)]

    async def task(items: list[tuple[bytes, dict[str, str]]]) -> None:
        for body, headers in items:
            r = await client.post("/stripe/webhook", content=body, headers=headers)
            if r.status_code != 200:
                raise SystemExit(f"unexpected {r.status_code}: {r.text}")

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(task(c) for c in chunks))
    CPU.setdefault(id(client), []).append((time.process_time() - c0) / len(plan) * 1e6)
    return len(plan) / (time.perf_counter() - t0)


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(kind: str, redis_url: str, port: int) -> None:
    import uvicorn

    if hasattr(os, "sched_setaffinity"):  # not pinned with the client (start_redis pins it)
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    api = bare_app(redis_url) if kind == "bare" else rkit_app(redis_url, "benchsrv")
    uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server(kind: str, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, __file__, "--serve", kind, "--redis-url", redis_url,
           "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            httpx.get(url + "/health", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.025)
    return proc, url


async def main(args: argparse.Namespace) -> None:
    redis_url, redis_proc = (args.redis_url, None) if args.redis_url else start_redis()
    results: dict[str, list[float]] = {}
    try:
        asgi = {
            "rkit (ASGI)": rkit_app(redis_url, "bench"),
            "rkit webhook_router (ASGI)": rkit_router_app(redis_url, "bench2"),
            "bare (ASGI)": bare_app(redis_url),
        }
        clients = {
            k: httpx.AsyncClient(transport=httpx.ASGITransport(app=v), base_url="http://b")
            for k, v in asgi.items()
        }
        servers = {k: start_server(k, redis_url) for k in ("rkit", "bare")}
        limits = httpx.Limits(max_connections=args.concurrency)
        for k, (_p, url) in servers.items():
            clients[f"{k} (uvicorn)"] = httpx.AsyncClient(base_url=url, limits=limits)
        for client in clients.values():  # warm up
            await blast(client, deliveries(200), args.concurrency)
        pids = {f"{k} (uvicorn)": p.pid for k, (p, _u) in servers.items()}
        for _ in range(args.rounds):
            for name, client in clients.items():
                plan = deliveries(args.events)
                c0 = proc_cpu_s(pids[name]) if name in pids else 0.0
                results.setdefault(name, []).append(await blast(client, plan, args.concurrency))
                if name in pids:
                    used = proc_cpu_s(pids[name]) - c0
                    SERVER_CPU.setdefault(name, []).append(used / len(plan) * 1e6)
        for client in clients.values():
            await client.aclose()
        for proc, _url in servers.values():
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
    med = {k: statistics.median(v) for k, v in results.items()}
    cpu = {k: statistics.median(CPU[id(c)][1:]) for k, c in clients.items()}
    print(f"{args.events} events per round, {args.rounds} rounds, concurrency {args.concurrency}")
    scpu = {k: statistics.median(v) for k, v in SERVER_CPU.items()}
    print("| variant | events/s (median) | rounds | route CPU µs/event |")
    print("|---|---|---|---|")
    for k, v in med.items():
        rounds = ", ".join(f"{x:,.0f}" for x in results[k])
        route = scpu.get(k, cpu[k])  # uvicorn: the server process; ASGI: this process
        print(f"| {k} | {v:,.0f} | {rounds} | {route:,.0f} |")
    for where in ("ASGI", "uvicorn"):
        ratio = med[f"rkit ({where})"] / med[f"bare ({where})"]
        print(f"rkit / bare ({where}): {ratio:.2f}")
    print(f"CPU bare / rkit (ASGI, whole process): {cpu['bare (ASGI)'] / cpu['rkit (ASGI)']:.2f}")
    ratio = scpu["bare (uvicorn)"] / scpu["rkit (uvicorn)"]
    print(f"CPU bare / rkit (uvicorn server, = events per core ratio): {ratio:.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--redis-url")
    p.add_argument("--serve", choices=["rkit", "bare"])
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    if a.serve:
        serve(a.serve, a.redis_url, a.port)
    else:
        asyncio.run(main(a))
