"""The component registry: one instance per (kind, name) on an App, a job dispatched
by kind to whatever registered it, a clear recorded failure for a component the
worker's App lacks, and a component defined outside rkit (``tests/_tally.py``) that
runs through ``run_until_idle`` and through a real ``rkit worker`` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
from rkit.api import create_api

from rkit import App, ConfigError, Presence, RateLimiter, TokenBucket, Workpool
from rkit.retrier import ActionRetrier
from rkit.testing import peer_app, run_until_idle
from rkit.workpool import Failed, Finished

from ._tally import Tally

ROOT = Path(__file__).resolve().parents[1]


def test_registry_keys_instances_by_kind_and_name() -> None:
    app = App()
    p = Workpool(app, "emails")
    r = ActionRetrier(app, namespace="emails")  # another kind: same name is fine
    pr = Presence(app)
    a, b = RateLimiter(app, {"x": TokenBucket(rate=1, period=1000)}), RateLimiter(app)
    assert app.components.get("workpool", "emails") is p
    assert app.components.get("retrier", "emails") is r
    assert app.components.get("presence", "default") is pr
    assert app.components.of_kind("rate_limit") == [a, b]
    assert app.components.kinds() == ["presence", "rate_limit", "retrier", "workpool"]
    assert {(k, n) for k, n, _ in app.components} >= {("workpool", "emails")}


@pytest.mark.parametrize(
    "make",
    [
        lambda app: Workpool(app, "dup"),
        lambda app: ActionRetrier(app, namespace="dup"),
        lambda app: Presence(app, "dup"),
        lambda app: Tally(app, "dup"),
        lambda app: RateLimiter(app, name="dup"),
    ],
)
def test_two_instances_of_one_kind_and_name_are_an_error(make: object) -> None:
    app = App()
    make(app)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"already has a .* named 'dup'"):
        make(app)  # type: ignore[operator]
    make(peer_app(app))  # another process (App) may have its own  # type: ignore[operator]


async def test_a_component_defined_outside_rkit_runs_through_run_until_idle(
    queue_app: App,
) -> None:
    t = Tally(queue_app, "clicks")
    ids = [await t.add("a"), await t.add("b", 5), await t.add("a")]
    await run_until_idle(queue_app)
    assert await t.counts() == {"a": 2, "b": 5}
    assert [await t.workpool.status(i) for i in ids] == [Finished()] * 3


async def test_a_job_for_a_component_the_worker_lacks_is_a_recorded_failure(
    queue_app: App,
) -> None:
    t = Tally(queue_app, "clicks")
    wid = await t.add("a")
    worker = peer_app(queue_app)  # a worker process whose App has a pool but no Tally
    Workpool(worker, "other")
    try:
        await run_until_idle(worker)
    finally:
        await worker.aclose()
    result = await t.workpool.get_result(wid)
    assert isinstance(result, Failed)
    assert "no tally component named 'clicks'" in result.error
    assert await t.counts() == {}
    assert (await t.workpool.diagnostics()).running == 0  # the slot is free


async def test_a_component_registers_its_admin_router(queue_app: App) -> None:
    t = Tally(queue_app, "clicks")
    await t.add("a", 3)
    await run_until_idle(queue_app)
    api = create_api(queue_app, admin_token="tok")
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/tallies/clicks", headers={"Authorization": "Bearer tok"})
        assert r.json() == {"a": 3}
        assert (await client.get("/tallies/clicks")).status_code in (401, 403)


async def test_a_public_router_needs_no_admin_token_but_keeps_the_body_limits(
    queue_app: App,
) -> None:
    t = Tally(queue_app, "hooks")
    api = create_api(queue_app, admin_token="tok", max_body_bytes=1_000)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ok = await client.post(
            "/hooks/tally/hooks", json={"what": "x"}, headers={"x-secret": "s3cret"}
        )
        assert ok.status_code == 200, ok.text
        forged = await client.post("/hooks/tally/hooks", json={"what": "x"})
        assert forged.status_code == 400
        big = await client.post(
            "/hooks/tally/hooks", json={"what": "x" * 2_000}, headers={"x-secret": "s3cret"}
        )
        assert big.status_code == 413
        bad = await client.post(
            "/hooks/tally/hooks", content=b"{nope", headers={"x-secret": "s3cret"}
        )
        assert bad.status_code == 422
        # the prefix opens only the public router: admin routes still need the token
        assert (await client.get("/tallies/hooks")).status_code in (401, 403)
    await run_until_idle(queue_app)
    assert await t.counts() == {"x": 1}


SERVICE = """
from rkit import App
from tests._tally import Tally

app = App(namespace="tl")
tally = Tally(app, "clicks")
"""


@pytest.mark.slow
def test_a_component_defined_outside_rkit_runs_on_a_real_worker(
    redis_url: str, tmp_path: Path
) -> None:
    import asyncio

    (tmp_path / "tlsvc.py").write_text(SERVICE)
    env = {
        **os.environ,
        "RKIT_REDIS_URL": redis_url,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "tlsvc:app"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE)

    async def add() -> None:
        app = App(redis_url, namespace="tl")
        t = Tally(app, "clicks")
        for i in range(20):
            await t.add("a" if i % 2 else "b", 2)
        await app.aclose()

    try:
        asyncio.run(add())
        r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
        key = App(namespace="tl").keys.tag("tally", "clicks") + ":counts"
        end = time.time() + 30
        while r.hgetall(key) != {"a": "20", "b": "20"}:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.time() < end, r.hgetall(key)
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
