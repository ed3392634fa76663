"""What only processes show (real redis-server, `rkit worker` subprocesses, real
time): three workers, each running the cron scheduler, 50 crons firing every second;
one worker is SIGKILLed mid-run. Each due time fires exactly once (one ``fired``
event per cron and tick, none missing between the first and the last), and every
fired tick is executed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import redis as sync_redis

from rkit import App, Crons, Interval, RetryBehavior

from .._servers import child_pythonpath, spawn, stderr_of, stop_workers

pytestmark = pytest.mark.slow

SERVICE = """
from rkit import App, Crons
from rkit.crons import current_tick

app = App(namespace="mpc")
# the scheduler's options; each cron's own (overlap, misfire, retry) are given by
# the process that registers it
crons = Crons(app, claim_lease_ms=1_500)


@app.action(name="fire")
async def fire() -> None:
    tick = current_tick()
    assert tick is not None
    await app.redis.hincrby("mpc:execs", f"{tick[0]}:{tick[1]}", 1)
"""

CRONS = 50
RETRY = RetryBehavior(max_attempts=3, initial_backoff_ms=50, base=1)
RUN_S = 12.0
KILL_AT_S = 4.0


def test_three_schedulers_fifty_crons_one_killed(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "mpcsvc.py").write_text(SERVICE)
    env = {**os.environ, "RKIT_REDIS_URL": redis_url, "PYTHONPATH": child_pythonpath(tmp_path)}
    cmd = [sys.executable, "-m", "rkit.cli", "worker", "mpcsvc:app", "--max-jobs", "20"]
    procs = [spawn(cmd, tmp_path, env) for _ in range(3)]
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        firsts = asyncio.run(_register(redis_url))
        start = time.time()
        time.sleep(KILL_AT_S)
        procs[0].kill()  # SIGKILL: its claims and executions are left behind
        procs[0].wait()
        time.sleep(RUN_S - KILL_AT_S)
        for p in procs[1:]:
            assert p.poll() is None, stderr_of(p)
        paused_at = asyncio.run(_pause_all(redis_url)) - start
        _drain(r, procs[1:])
    finally:
        stop_workers(procs)

    tag = App(namespace="mpc").keys.tag("cron", "default")
    fired: dict[str, list[int]] = defaultdict(list)
    trail: dict[str, list[str]] = defaultdict(list)  # events per cron and tick (diagnosis)
    for _, fields in r.xrange(f"{tag}:cr:events"):
        e = json.loads(fields["e"])
        if "tick" in e:
            trail[f"{e['id']}:{e['tick']}"].append(json.dumps(e))
        if e["event"] == "fired":
            fired[e["id"]].append(int(e["tick"]))
    assert set(fired) == set(firsts)
    execs = Counter({k: int(v) for k, v in r.hgetall("mpc:execs").items()})
    repeated = 0
    for cid, ticks in fired.items():
        assert len(ticks) == len(set(ticks)), f"a tick of {cid} fired twice"
        ticks.sort()
        assert ticks[0] == firsts[cid]
        # every due time from the first to the last fired, none lost (the killed
        # scheduler's claims were taken over after their lease, missed ticks caught up)
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000)), cid
        assert len(ticks) >= paused_at - 3, (cid, len(ticks), paused_at)
        for t in ticks:
            key = f"{cid}:{t}"
            assert execs[key] >= 1, (key, trail[key], r.lrange(f"{tag}:cr:h:{cid}", 0, -1))
            repeated += execs[f"{cid}:{t}"] - 1
    # an execution the killed worker ran but could not report is retried (at least
    # once): only those few may have run twice
    assert repeated <= 20, repeated
    stats = r.hgetall(f"{tag}:cr:stats")
    assert int(stats["fired"]) == sum(len(t) for t in fired.values())


async def _register(url: str) -> dict[str, int]:
    app = App(url, namespace="mpc")

    @app.action(name="fire")
    async def fire() -> None:  # runs in the workers only
        raise AssertionError

    crons = Crons(app, register=False)
    await asyncio.sleep(1.5)  # the workers start
    firsts: dict[str, int] = {}
    for i in range(CRONS):
        cid = await crons.register(
            Interval(1000),
            "fire",
            name=f"c{i}",
            overlap="allow",
            misfire="catch_up",
            retry=RETRY,  # an execution lost with the killed worker runs again
        )
        details = await crons.details(id=cid)
        assert details is not None and details.next_run_ms is not None
        firsts[cid] = int(details.next_run_ms)
    await app.aclose()
    return firsts


async def _pause_all(url: str) -> float:
    app = App(url, namespace="mpc")
    crons = Crons(app, register=False)
    for info in await crons.list():
        await crons.pause(id=info.id)
    now = time.time()
    await app.aclose()
    return now


def _drain(r: sync_redis.Redis, procs: list[subprocess.Popen[bytes]]) -> None:
    """Wait until the pool has no live work (the killed worker's work recovered)."""
    tag = App(namespace="mpc").keys.tag("cron", "default")
    end = time.time() + 30
    while r.zcard(f"{tag}:live") > 0:
        for p in procs:
            assert p.poll() is None, stderr_of(p)
        assert time.time() < end, r.zrange(f"{tag}:live", 0, 5)
        time.sleep(0.1)
