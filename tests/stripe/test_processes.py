"""Deliveries spread over four uvicorn processes on one redis-server, as behind a
load balancer: every event's default sync once, its handler once, the newest state
of every object; and a process killed mid-stream (SIGKILL) loses nothing — its
claimed events are taken over when their lease ends."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
import stripe

from rkit import App

from .._servers import child_pythonpath, free_port, spawn, stderr_of
from .conftest import sub_obj

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def _event(eid: str, type_: str, obj: dict[str, Any], created: int) -> bytes:
    return json.dumps(
        {"id": eid, "type": type_, "created": created, "data": {"object": obj}}
    ).encode()


def _plan(now: int, tag: str) -> tuple[list[bytes], dict[str, int]]:
    """50 events (10 subscriptions x 5 updates), each delivered 1-4 times, shuffled."""
    rnd = random.Random(7)
    bodies, want = [], {}
    for i in range(10):
        meta = {"userId": f"u{i}"}
        for k in range(5):
            obj = sub_obj(f"sub_{tag}{i}", quantity=10 * i + k, metadata=meta)
            bodies += [_event(f"evt_{tag}{i}_{k}", "customer.subscription.updated", obj,
                              now - 50 + k)] * rnd.randint(1, 4)  # fmt: skip
        want[f"sub_{tag}{i}"] = 10 * i + 4
    rnd.shuffle(bodies)
    return bodies, want


def _start(
    tmp: Path, redis_url: str, ns: str, lease_ms: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "RKIT_REDIS_URL": redis_url, "STRIPE_TEST_NS": ns,
           "STRIPE_TEST_LEASE_MS": str(lease_ms), "PYTHONPATH": child_pythonpath()}  # fmt: skip
    cmd = [sys.executable, "-m", "uvicorn", "tests.stripe._service:api", "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    return spawn(cmd, tmp, env), f"http://127.0.0.1:{port}"


@pytest.fixture
def servers(
    redis_url: str, tmp_path: Path
) -> Iterator[tuple[list[tuple[subprocess.Popen[bytes], str]], str]]:
    lease_ms = 3_000
    procs = [_start(tmp_path, redis_url, "sp", lease_ms) for _ in range(4)]
    end = time.time() + 30
    for proc, url in procs:
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, stderr_of(proc)
                assert time.time() < end, "uvicorn did not start"
                time.sleep(0.05)
    yield procs, redis_url
    for proc, _ in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc, _ in procs:
        proc.wait(timeout=15)


async def _deliver(urls: list[str], bodies: list[bytes], kill: Any = None) -> dict[int, int]:
    statuses: dict[int, int] = {}
    alive = list(urls)
    async with httpx.AsyncClient(timeout=10) as client:

        async def one(i: int, body: bytes) -> None:
            attempt = 0
            while True:  # Stripe retries until a 2xx; a dead host is a failed delivery
                url = alive[(i + attempt) % len(alive)]
                attempt += 1
                header = stripe.WebhookSignature.generate_signature_header(
                    body.decode(), "whsec_test"
                )
                try:
                    r = await client.post(url + "/stripe/webhook", content=body,
                                          headers={"Stripe-Signature": header})  # fmt: skip
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
                    continue
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    return
                assert r.status_code in (409, 500), r.text
                await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(one(i, b)) for i, b in enumerate(bodies)]
        if kill is not None:
            await asyncio.sleep(0.3)
            alive.remove(kill())
        await asyncio.gather(*tasks)
    return statuses


def _check(redis_url: str, want: dict[str, int], tag: str, once: bool) -> None:
    app = App(namespace="sp")
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = app.keys.tag("stripe", "default") + ":s"
    for sid, qty in want.items():
        assert r.hget(f"{prefix}:sub:{sid}", "quantity") == str(qty)
    runs = {k: v for k, v in r.hgetall(app.keys.tag("stripe_test", "runs")).items()
            if k.startswith(f"evt_{tag}")}  # fmt: skip
    assert sorted(runs) == sorted(f"evt_{tag}{i}_{k}" for i in range(10) for k in range(5))
    if once:
        assert set(runs.values()) == {"1"}
    for i in range(10):
        assert r.hget(f"{prefix}:evt:evt_{tag}{i}_0", "state") == "done"


def test_four_processes_apply_each_event_once_and_survive_a_kill(servers: Any) -> None:
    procs, redis_url = servers
    bodies, want = _plan(int(time.time()), "a")
    statuses = asyncio.run(_deliver([u for _, u in procs], bodies))
    assert statuses[200] == len(bodies)
    _check(redis_url, want, "a", once=True)
    # SIGKILL one process while deliveries are in flight: the events it had claimed
    # are answered 409 until their lease (3 s here) ends, then processed elsewhere
    bodies, want = _plan(int(time.time()), "b")
    victim, victim_url = procs[0]

    def kill() -> str:
        os.kill(victim.pid, signal.SIGKILL)
        return victim_url

    asyncio.run(_deliver([u for _, u in procs], bodies * 3, kill))
    _check(redis_url, want, "b", once=False)  # a handler cut off mid-run may run again
