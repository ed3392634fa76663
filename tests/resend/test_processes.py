"""What only processes show: a sending worker SIGKILLed mid-batch (the fake Resend API
has accepted the batch, the worker never recorded it). A second worker retries the
batch under the same Idempotency-Key, so every email is sent exactly once at the fake
server (counted there) and none is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from rkit import App
from rkit.integrations.resend import Resend

from .._servers import child_pythonpath, spawn, stderr_of
from ._fake import FakeResend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SERVICE = """
import os
from rkit import App
from rkit.integrations.resend import Resend

app = App(namespace="rsp")
resend = Resend(app, **{opts})
"""

N = 1000


def options(url: str) -> dict[str, object]:
    return {
        "api_key": "re_test",
        "api_base": url,
        "api_interval_ms": None,
        "batch_delay_ms": 200,
        "settle_ms": 50,
        "initial_backoff_ms": 200,
        "retry_attempts": 10,
        "lease_ms": 2000,
    }


def test_worker_killed_mid_batch_every_email_sent_exactly_once(
    redis_url: str, fake: FakeResend, tmp_path: Path
) -> None:
    opts = options(fake.url)
    (tmp_path / "rssvc.py").write_text(SERVICE.format(opts=repr(opts)))
    env = {**os.environ, "RKIT_REDIS_URL": redis_url, "PYTHONPATH": child_pythonpath(tmp_path)}
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "rssvc:app"]

    async def enqueue() -> list[str]:
        app = App(redis_url, namespace="rsp")
        r = Resend(app, **opts)  # type: ignore[arg-type]
        ids = [
            await r.send_email(
                from_="me@x.io", to="delivered@resend.dev", subject=f"n{i}", text="t"
            )
            for i in range(N)
        ]
        await r.aclose()
        await app.aclose()
        return ids

    async def by_status() -> dict[str, int]:
        app = App(redis_url, namespace="rsp")
        r = Resend(app, **opts)  # type: ignore[arg-type]
        try:
            return (await r.queue_info()).by_status
        finally:
            await r.aclose()
            await app.aclose()

    # three batches go through, the next ones are held at the server: then kill -9
    fake.gate = gate = threading.Event()
    fake.hold_after = 3
    ids = asyncio.run(enqueue())
    first = spawn(cmd, tmp_path, env)
    second = None
    try:
        assert fake.arrived.wait(30), stderr_of(first)
        time.sleep(0.2)  # let the other send jobs (parallelism 4) reach the server too
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        held = len(fake.requests) - 3
        assert held >= 1
        gate.set()  # the server accepts the held batches: the dead worker never records them
        second = spawn(cmd, tmp_path, env)
        end = time.time() + 120  # generous: a loaded 2-core CI machine
        while (counts := asyncio.run(by_status())).get("sent", 0) < N:
            assert second.poll() is None, stderr_of(second)
            assert time.time() < end, (counts, len(fake.sent))
            time.sleep(0.2)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
    subjects = [e["subject"] for e in fake.sent]
    assert len(subjects) == N and set(subjects) == {f"n{i}" for i in range(N)}
    assert counts == {**counts, "sent": N, "queued": 0, "waiting": 0, "failed": 0}
    assert len(ids) == N
    # the retried batches were answered from the server's idempotency record
    keys = [r.headers["idempotency-key"] for r in fake.batch_requests]
    assert len(keys) > len(set(keys))


CALLBACK_SERVICE = """
import asyncio
from rkit import App
from rkit.integrations.resend import Resend

app = App(namespace="rsc")


async def handler(email_id, event):
    if await app.redis.incr("rsc:started") == 1:
        await asyncio.sleep(60)  # the first worker is killed here
    await app.redis.rpush("rsc:done", email_id + " " + event.type)


resend = Resend(app, on_email_event=handler, **{opts})
"""


def test_worker_killed_inside_on_email_event_the_call_is_retried(
    redis_url: str, fake: FakeResend, tmp_path: Path
) -> None:
    import redis as sync_redis

    from .conftest import SECRET, event, signed

    opts = {**options(fake.url), "webhook_secret": SECRET}
    (tmp_path / "rscsvc.py").write_text(CALLBACK_SERVICE.format(opts=repr(opts)))
    env = {**os.environ, "RKIT_REDIS_URL": redis_url, "PYTHONPATH": child_pythonpath(tmp_path)}
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "rscsvc:app"]

    async def receive() -> str:
        app = App(redis_url, namespace="rsc")

        async def queued_only(email_id: str, ev: object) -> None:  # runs in the workers
            raise AssertionError("not here")

        r = Resend(app, on_email_event=queued_only, **opts)  # type: ignore[arg-type]

        async def sent(email_id: str) -> str:
            return "re_cb"

        eid = await r.send_email_manually(from_="a@x.io", to="b@x.io", subject="S", send=sent)
        body, headers = signed(event("email.delivered", "re_cb"), "m1", time.time() * 1000)
        assert (await r.handle_webhook(body.encode(), headers)).status_code == 201
        await r.aclose()
        await app.aclose()
        return eid

    eid = asyncio.run(receive())
    db = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    first = spawn(cmd, tmp_path, env)
    second = None
    try:
        end = time.time() + 60
        while db.get("rsc:started") != "1":
            assert first.poll() is None and time.time() < end, stderr_of(first)
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = spawn(cmd, tmp_path, env)
        end = time.time() + 90
        while db.llen("rsc:done") < 1:
            assert second.poll() is None and time.time() < end, stderr_of(second)
            time.sleep(0.1)
        time.sleep(0.5)  # nothing more arrives
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
    assert db.lrange("rsc:done", 0, -1) == [f"{eid} email.delivered"]
    assert db.get("rsc:started") == "2"
