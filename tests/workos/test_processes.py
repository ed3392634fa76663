"""What only processes show: a real ``rkit worker`` running the user backfill is
SIGKILLed mid-batch and a second worker finishes it, against the loopback fake
WorkOS API: every user is inserted exactly once and every ``user.created`` handler
effect happens (at most the one call in flight at the kill is repeated)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import redis as sync_redis

from rkit import App, AuthKit

from .._servers import child_pythonpath, spawn, stderr_of, stop_workers
from .fake import API_KEY, CLIENT_ID, FakeWorkOS, user

pytestmark = pytest.mark.slow

SERVICE = """
import os

from rkit import App, AuthKit

app = App(namespace="wo")
authkit = AuthKit(
    app,
    client_id="client_test",
    api_key="sk_test",
    webhook_secret="wh",
    base_url=os.environ["FAKE_WORKOS_URL"],
    reconcile_cron=False,
)


@authkit.on("user.created")
async def created(event):
    await app.redis.incr("wo:calls")
    await app.redis.sadd("wo:handled", event.data["id"])
"""

N = 600


def _wait(check: object, what: str, procs: list[object], timeout: float = 45) -> None:
    end = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        for p in procs:
            assert p.poll() is None, stderr_of(p)  # type: ignore[attr-defined]
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_backfill_worker_killed_mid_batch_loses_and_duplicates_nothing(
    redis_url: str, tmp_path: Path, workos_server: FakeWorkOS
) -> None:
    fake = workos_server
    fake.reset()
    fake.users = [user(f"user_{i:04d}", "2024-01-01T00:00:00.000Z") for i in range(N)]
    fake.page_size = 20  # many small pages: the kill lands mid-batch
    (tmp_path / "wosvc.py").write_text(SERVICE)
    env = {
        **os.environ,
        "RKIT_REDIS_URL": redis_url,
        "FAKE_WORKOS_URL": fake.url,
        "PYTHONPATH": child_pythonpath(tmp_path),
    }
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "wosvc:app"]
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    app = App(redis_url, namespace="wo")
    ak = AuthKit(app, client_id=CLIENT_ID, api_key=API_KEY, webhook_secret="wh", base_url=fake.url)

    async def start() -> str:
        return await ak.start_backfill()

    first = spawn(cmd, tmp_path, env)
    second = None
    try:
        assert asyncio.run(start()) == "started"
        _wait(lambda: int(r.get("wo:calls") or 0) >= N // 3, "a third of the calls", [first])
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert int(r.get("wo:calls") or 0) < N  # killed mid-backfill
        second = spawn(cmd, tmp_path, env)
        key = f"{ak.prefix}:backfill"
        _wait(lambda: not r.exists(key), "the backfill to finish", [second], timeout=50)
    finally:
        stop_workers([p for p in (first, second) if p is not None])
    assert r.scard("wo:handled") == N
    assert r.get(f"{ak.prefix}:seq") == str(N)  # each user inserted exactly once
    calls = int(r.get("wo:calls") or 0)
    assert N <= calls <= N + 1, calls
    pages = len(fake.requests_to("/user_management/users"))
    assert N // 20 <= pages <= N // 20 + 2  # at most the page in flight at the kill is refetched
