"""The rkit command."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from rkit import App
from rkit.cli import build_parser, load_app, start_embedded_redis


@pytest.mark.slow
def test_rkit_dev_runs_the_example_on_embedded_redis() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RKIT_REDIS_URL", "RKIT_QUEUE_URL")}
    proc = subprocess.run(
        [sys.executable, "-m", "rkit.cli", "dev", "--port", "0", "--exit-after-demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "serving embedded fakeredis" in out
    assert "signup attempt 4 from 203.0.113.7: limited" in out
    # 3 emails against a 2-per-second limit: the third is retried by the pool
    assert out.count("-> welcome email sent to ada@example.com") == 3
    assert "after 1 attempt -> welcome" in out
    assert re.search(r"after [2-6] attempts -> welcome", out)  # retried by the pool
    assert "leaderboard: 3 players, 80 points; top ada, cy ranks #2" in out
    assert "online in lobby: ada, bob" in out
    assert "step 1 event 'confirmed': success" in out  # the signup workflow's steps
    assert "workflow completed: grace@example.com confirmed via email link" in out


def test_load_app_errors() -> None:
    with pytest.raises(SystemExit, match="must look like"):
        load_app("no_colon")
    with pytest.raises(SystemExit, match="cannot import"):
        load_app("surely_not_a_module_xyz:app")
    with pytest.raises(SystemExit, match=r"is not an rkit\.App"):
        load_app("rkit.cli:main")
    assert isinstance(load_app("rkit.example:app"), App)


def test_parser() -> None:
    args = build_parser().parse_args(["worker", "svc:app", "--burst"])
    assert args.app == "svc:app" and args.burst
    args = build_parser().parse_args(["dev"])
    assert args.app == "rkit.example:app" and args.port == 8000


async def test_embedded_server_keeps_connections_after_errors() -> None:
    import redis.asyncio as aioredis
    import redis.exceptions

    url, server = start_embedded_redis()
    try:
        client = aioredis.from_url(url, single_connection_client=True)
        with pytest.raises(redis.exceptions.NoScriptError):
            await client.evalsha("0" * 40, 0)
        await client.set("s", "x")
        with pytest.raises(redis.exceptions.ResponseError):
            await client.lpush("s", 1)
        assert await client.ping()
        await client.aclose()
    finally:
        server.shutdown()
        server.server_close()
