"""The issue's multi-process test on a real redis-server: a migration over 100,000
hashes, the `rkit worker` running it SIGKILLed mid-run, another worker finishes it:
every item migrated, the final counters exact (``processed`` counts each item once
although the killed batch ran twice)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import redis as sync_redis

from rkit import App
from rkit.migrations import HashIndexSource, Migrations

from .._servers import child_pythonpath, spawn, stderr_of, stop_workers

pytestmark = pytest.mark.slow

N = 100_000
SERVICE = """
import asyncio
import os

from rkit import App
from rkit.migrations import HashIndexSource, Migrations

app = App(namespace="mpm")
migrations = Migrations(app, job_budget_ms=2_000)


async def bump(ctx, item):
    key, h = item
    if key.endswith("00"):  # a little work per item, so that a kill lands mid-run
        await asyncio.sleep(0.002)
    return {"v": "2", "by": str(os.getpid())}


migrations.define(
    source=HashIndexSource(app.redis, "mp:idx"), migrate_one=bump, name="bump", batch_size=500
)
"""


def seed(r: sync_redis.Redis) -> None:
    for lo in range(0, N, 10_000):
        pipe = r.pipeline(transaction=False)
        for i in range(lo, lo + 10_000):
            pipe.hset(f"mp:h:{i:06}", mapping={"i": i, "v": "1"})
        pipe.zadd("mp:idx", {f"mp:h:{i:06}": 0 for i in range(lo, lo + 10_000)})
        pipe.execute()


def test_a_sigkilled_worker_is_finished_by_another(redis_url: str, tmp_path: Path) -> None:
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    seed(r)
    (tmp_path / "migsvc.py").write_text(SERVICE)
    env = {**os.environ, "RKIT_REDIS_URL": redis_url, "PYTHONPATH": child_pythonpath(tmp_path)}
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "migsvc:app"]
    a = spawn(cmd, tmp_path, env)
    b = None
    try:

        async def start() -> None:  # the first batch runs here, the rest on the worker
            app = App(redis_url, namespace="mpm")
            m = Migrations(app)
            m.define(
                source=HashIndexSource(app.redis, "mp:idx"),
                migrate_one=lambda ctx, item: {"v": "2", "by": "client"},
                name="bump",
                batch_size=500,
            )
            await m.run_one("bump")
            await app.aclose()

        asyncio.run(start())
        deadline = time.time() + 60
        key = Migrations(App(namespace="mpm"), register=False)._keys("bump")[0]
        while int(r.hget(key, "processed") or 0) < 20_000:
            assert a.poll() is None, stderr_of(a)
            assert time.time() < deadline, r.hgetall(key)
            time.sleep(0.005)
        a.send_signal(signal.SIGKILL)
        a.wait()
        at_kill = int(r.hget(key, "processed") or 0)
        assert at_kill < N
        b = spawn(cmd, tmp_path, env)
        while r.hget(key, "state") != "done":
            assert b.poll() is None, stderr_of(b)
            assert r.hget(key, "state") == "running", r.hgetall(key)
            assert time.time() < deadline, r.hgetall(key)
            time.sleep(0.05)
        state = r.hgetall(key)
        assert int(state["processed"]) == N
        assert "error" not in state
        pipe = r.pipeline(transaction=False)
        for i in range(N):
            pipe.hmget(f"mp:h:{i:06}", "v", "by")
        rows = pipe.execute()
        assert all(v == "2" for v, _ in rows)
        by = {p for _, p in rows}
        assert by == {"client", str(a.pid), str(b.pid)}, by  # b finished the run
    finally:
        stop_workers([p for p in (a, b) if p is not None])
        r.close()
