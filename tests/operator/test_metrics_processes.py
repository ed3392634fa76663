"""``/metrics`` scraped while two ``rkit worker`` processes run a workpool: the
counters live in Redis, so the scrape (from a third process's API) shows the exact
job counts of both workers, during the run (never more finished than started) and
after it (every job once)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rkit.api import create_api

from rkit import App, Workpool
from rkit.workpool import RetryBehavior

from .._servers import child_pythonpath, spawn, stderr_of, stop_workers

pytestmark = pytest.mark.slow

N = 120
FLAKY = 10

SERVICE = """
import asyncio
import os

from rkit import App, Workpool

app = App(namespace="mpm")
pool = Workpool(app, "mpm", max_parallelism=12)


@app.action(name="job")
async def job(i: int) -> int:
    await app.redis.sadd("mpm:pids", os.getpid())
    # the first 12 jobs wait until both workers run one: a worker takes at most 10
    # at once (--max-jobs), so the other must take some
    for _ in range(1000):
        if i >= 12 or await app.redis.scard("mpm:pids") >= 2:
            break
        await asyncio.sleep(0.02)
    # jobs 6..11 also wait until the test has scraped the run midway
    for _ in range(1500):
        if not 6 <= i < 12 or await app.redis.exists("mpm:go"):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.005)
    return i


@app.action(name="flaky")
async def flaky(i: int) -> int:
    if await app.redis.hincrby("mpm:execs", str(i), 1) == 1:
        raise RuntimeError("first attempt fails")
    return i
"""


def counts(text: str) -> dict[str, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.labels.get("pool") == "mpm":
                out[s.name] = s.value
    return out


async def test_scrape_counts_two_workers_exactly(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "mpmsvc.py").write_text(SERVICE)
    env = {**os.environ, "RKIT_REDIS_URL": redis_url, "PYTHONPATH": child_pythonpath(tmp_path)}
    app = App(redis_url, namespace="mpm")
    for name in ("job", "flaky"):

        async def stub(i: int) -> None:
            raise AssertionError("runs in the workers")

        app.action(name=name)(stub)
    pool = Workpool(app, "mpm", max_parallelism=12)
    await pool.enqueue_batch("job", [{"i": i} for i in range(N)])
    retry = RetryBehavior(max_attempts=3, initial_backoff_ms=20, base=2)
    await pool.enqueue_batch("flaky", [{"i": i} for i in range(FLAKY)], retry=retry)
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "mpmsvc:app", "--max-jobs", "10"]
    procs = [spawn(cmd, tmp_path, env) for _ in range(2)]
    transport = httpx.ASGITransport(app=create_api(app, admin_token="tok"))
    total = N + FLAKY
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            deadline = time.monotonic() + 60
            seen_midway = False
            while True:
                r = await c.get("/metrics", headers={"Authorization": "Bearer tok"})
                assert r.status_code == 200
                m = counts(r.text)
                done = m["rkit_workpool_jobs_succeeded_total"]
                started = m["rkit_workpool_jobs_started_total"]
                assert done + m["rkit_workpool_jobs_retried_total"] <= started
                assert m["rkit_workpool_running"] <= 12
                if 0 < done < total and not seen_midway:
                    seen_midway = True  # the held jobs (6..11) may finish now
                    await app.redis.set("mpm:go", 1)
                if done == total:
                    break
                for p in procs:
                    assert p.poll() is None, stderr_of(p)
                assert time.monotonic() < deadline, f"stuck at {m}"
                await asyncio.sleep(0.05)
        assert m["rkit_workpool_jobs_enqueued_total"] == total
        assert m["rkit_workpool_jobs_started_total"] == total + FLAKY  # one retry each
        assert m["rkit_workpool_jobs_retried_total"] == FLAKY
        assert m["rkit_workpool_jobs_failed_total"] == 0
        assert m["rkit_workpool_lease_reaps_total"] == 0
        assert m["rkit_workpool_queue_depth"] == 0
        assert seen_midway
        pids = await app.redis.smembers("mpm:pids")
        assert {int(p) for p in pids} == {p.pid for p in procs}  # both workers ran jobs
    finally:
        stop_workers(procs)
        await app.aclose()
