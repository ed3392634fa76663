"""Resend benchmark: queued emails/s from ``send_email`` to a fake Resend API (on
loopback, in its own process) at an unlimited API rate, against a hand-written loop
posting the same emails in batches of 100 with httpx (no durability, no Redis); and
webhook events/s through the public route (Svix signature verified, event applied),
against svix's own ``Webhook.verify`` of the same messages (verification only). A
second peer, the "durable loop", is the same loop writing each batch's emails to Redis
before posting and marking them sent after (the least an outbox that survives a crash
must write): it shows what durability itself costs.

rkit: ``send_email`` from ``--concurrency`` tasks; an in-process arq worker with the
workpool pump runs the batcher and the send jobs (parallelism 4); done when every
email is ``sent`` in Redis (the fake has answered every batch). ``batch_delay_ms`` is
100 (the default 1,000 only adds a fixed second before the first batch). Variants
interleaved, medians of ``--rounds``.

    python bench/resend.py [--emails 20000] [--events 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratelimit import start_redis  # noqa: E402
from rkit.api import create_api  # noqa: E402
from svix.webhooks import Webhook  # noqa: E402

from rkit import App  # noqa: E402
from rkit.integrations.resend import Resend  # noqa: E402
from rkit.testing import background_worker  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"bench-secret-0123456789").decode()


def start_fake() -> tuple[str, subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "resend" / "_fake.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    assert proc.stdout is not None
    return proc.stdout.readline().strip(), proc


def email(i: int) -> dict[str, Any]:
    return {
        "from_": "Bench <bench@x.io>",
        "to": "delivered@resend.dev",
        "subject": f"Hello {i}",
        "html": f"<p>Message number {i}</p>",
    }


async def rkit_round(url: str, fake: str, n: int, conc: int, ns: str) -> tuple[float, float]:
    app = App(url, namespace=ns)
    r = Resend(
        app,
        api_key="re_bench",
        api_base=fake,
        api_interval_ms=None,
        batch_delay_ms=100,
        settle_ms=25,
        cleanup_cron=False,
    )
    async with background_worker(app, pump=True, poll_delay=0.01):
        t0 = time.perf_counter()
        nxt = 0

        async def sender() -> None:
            nonlocal nxt
            while nxt < n:
                i = nxt
                nxt += 1
                await r.send_email(**email(i))

        await asyncio.gather(*(sender() for _ in range(conc)))
        t_enqueued = time.perf_counter() - t0
        # done when Redis says so: poll the component's own counts
        while (await r.queue_info()).by_status["sent"] < n:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        dt = time.perf_counter() - t0
    await r.aclose()
    await app.aclose()
    return n / dt, n / t_enqueued


async def loop_round(fake: str, n: int) -> float:
    async with httpx.AsyncClient(timeout=30) as client:
        t0 = time.perf_counter()
        for start in range(0, n, 100):
            batch = []
            for i in range(start, min(n, start + 100)):
                e = email(i)
                batch.append(
                    {
                        "from": e["from_"],
                        "to": [e["to"]],
                        "subject": e["subject"],
                        "html": e["html"],
                    }
                )
            resp = await client.post(
                f"{fake}/emails/batch",
                json=batch,
                headers={"Authorization": "Bearer re_bench", "Idempotency-Key": f"l{t0}-{start}"},
            )
            resp.raise_for_status()
            assert len(resp.json()["data"]) == len(batch)
        return n / (time.perf_counter() - t0)


async def durable_loop_round(url: str, fake: str, n: int, ns: str) -> float:
    """The same loop with the least a durable outbox needs, by hand: each batch's
    emails written to Redis first (one hash each, pipelined, as the record an enqueue
    must leave before it returns), then posted, then marked sent with the Resend id
    (pipelined). No status indexes, no retries, no batcher, no jobs."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            t0 = time.perf_counter()
            for start in range(0, n, 100):
                ids = [f"{ns}:{i}" for i in range(start, min(n, start + 100))]
                batch = []
                pipe = r.pipeline(transaction=False)
                for k, i in enumerate(range(start, min(n, start + 100))):
                    e = email(i)
                    p = {"from": e["from_"], "to": [e["to"]], "subject": e["subject"]}
                    p["html"] = e["html"]
                    batch.append(p)
                    pipe.hset(f"dl:{ids[k]}", mapping={"p": json.dumps(p), "status": "waiting"})
                await pipe.execute()
                resp = await client.post(
                    f"{fake}/emails/batch",
                    json=batch,
                    headers={"Authorization": "Bearer re_bench", "Idempotency-Key": ids[0]},
                )
                resp.raise_for_status()
                pipe = r.pipeline(transaction=False)
                for eid, d in zip(ids, resp.json()["data"], strict=True):
                    pipe.hset(f"dl:{eid}", mapping={"status": "sent", "resend_id": d["id"]})
                await pipe.execute()
            return n / (time.perf_counter() - t0)
    finally:
        await r.aclose()


def signed(ev: dict[str, Any], msg_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(ev)
    now = datetime.now(tz=UTC)
    return body.encode(), {
        "svix-id": msg_id,
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": Webhook(SECRET).sign(msg_id, now, body),
        "content-type": "application/json",
    }


async def webhook_round(url: str, fake: str, n: int, conc: int, ns: str) -> tuple[float, float]:
    app = App(url, namespace=ns)
    r = Resend(app, api_key="re_bench", api_base=fake, webhook_secret=SECRET, cleanup_cron=False)

    async def sent(email_id: str) -> str:
        return f"re_{ns}_{email_id}"

    rids = []
    for i in range(50):
        eid = await r.send_email_manually(
            from_="a@x.io", to="delivered@resend.dev", subject=f"s{i}", send=sent
        )
        rids.append(f"re_{ns}_{eid}")
    kinds = ["email.delivered", "email.opened", "email.clicked", "email.delivery_delayed"]
    msgs = [
        signed(
            {
                "type": kinds[i % 4],
                "created_at": "2024-01-01T00:00:00Z",
                "data": {"email_id": rids[i % 50], "to": ["delivered@resend.dev"]},
            },
            f"msg_{ns}_{i}",
        )
        for i in range(n)
    ]
    api = create_api(app, admin_token="tok")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://b"
    ) as client:
        nxt = 0
        t0 = time.perf_counter()

        async def poster() -> None:
            nonlocal nxt
            while nxt < n:
                body, headers = msgs[nxt]
                nxt += 1
                resp = await client.post("/resend/webhook", content=body, headers=headers)
                assert resp.status_code == 201, resp.text

        await asyncio.gather(*(poster() for _ in range(conc)))
        route = n / (time.perf_counter() - t0)
    wh = Webhook(SECRET)
    t0 = time.perf_counter()
    for body, headers in msgs:
        wh.verify(body, headers)
    verify = n / (time.perf_counter() - t0)
    await r.aclose()
    await app.aclose()
    return route, verify


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--emails", type=int, default=20_000)
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    fake, fake_proc = start_fake()
    url, redis_proc = start_redis()
    try:
        rk: list[float] = []
        enq: list[float] = []
        lp: list[float] = []
        dl: list[float] = []
        for k in range(args.rounds):
            lp.append(await loop_round(fake, args.emails))
            dl.append(await durable_loop_round(url, fake, args.emails, f"d{k}"))
            e2e, e1 = await rkit_round(url, fake, args.emails, args.concurrency, f"b{k}")
            rk.append(e2e)
            enq.append(e1)
            print(
                f"round {k + 1}: rkit {rk[-1]:,.0f} emails/s (send_email calls alone "
                f"{enq[-1]:,.0f}/s), httpx loop {lp[-1]:,.0f}, durable loop {dl[-1]:,.0f}"
            )
        r_med, l_med = statistics.median(rk), statistics.median(lp)
        print(f"\nqueued emails/s, send_email -> fake server ({args.emails} emails, median):")
        print(f"  rkit Resend   {r_med:10,.0f}")
        print(f"  (send_email)  {statistics.median(enq):10,.0f}   durable in Redis, returned")
        print(f"  httpx loop    {l_med:10,.0f}")
        print(f"  rkit / loop   {r_med / l_med:10.2f}   (target >= 0.7)")
        d_med = statistics.median(dl)
        print(f"  durable loop  {d_med:10,.0f}   (a record per email in Redis, by hand)")
        print(f"  rkit / durable{r_med / d_med:10.2f}")
        routes, verifies = [], []
        for conc in (1, 20):
            rr, vv = [], []
            for k in range(args.rounds):
                a, b = await webhook_round(url, fake, args.events, conc, f"w{conc}_{k}")
                rr.append(a)
                vv.append(b)
            routes.append(statistics.median(rr))
            verifies.append(statistics.median(vv))
            print(
                f"webhook events/s through the route, concurrency {conc}: "
                f"{routes[-1]:,.0f} (svix Webhook.verify alone: {verifies[-1]:,.0f}/s)"
            )
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
        fake_proc.terminate()


if __name__ == "__main__":
    asyncio.run(main())
