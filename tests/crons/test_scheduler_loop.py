"""The scheduler as workers run it (``run_forever`` as a worker service): it sleeps
until the earliest due time, and a cron registered by another process wakes it at
once (the wake channel), not after its longest sleep."""

from __future__ import annotations

from typing import Any

from rkit import App, Crons, Interval
from rkit.testing import background_worker, peer_app

from ._env import T0, Env, settle


async def test_a_worker_runs_the_scheduler_and_another_process_wakes_it(
    queue_app: App,
) -> None:
    env = Env(queue_app, max_sleep_ms=60_000)  # without a wake-up: a minute asleep
    client = peer_app(queue_app)

    @client.action(name="record")
    async def record(**kwargs: Any) -> None:  # runs in the worker only
        raise AssertionError

    try:
        async with background_worker(queue_app, pump=True):  # services: the scheduler
            await settle(lambda: bool(queue_app.components.state("crons.schedulers", dict)))
            theirs = Crons(client, register=False)
            await theirs.register(Interval(1000), "record", {"k": 1})
            env.clock.set(T0 + 1000)
            await settle(lambda: len(env.calls) == 1, timeout=5.0)
            assert env.calls == [(T0 + 1000, {"k": 1})]
    finally:
        await client.aclose()
    assert not queue_app.components.state("crons.schedulers", dict)  # stopped with it


async def test_a_stopping_scheduler_finishes_its_round(redis_url: str) -> None:
    """A worker stopping while its scheduler is between claim and commit: the round
    completes (else the claimed crons would wait for the 30 s claim lease)."""
    import asyncio

    import redis as sync_redis

    from rkit import TestClock

    app = App(redis_url, namespace="stopping", clock=TestClock(T0))
    try:
        env = Env(app)
        cid = await env.crons.register(Interval(1000), "record")
        env.clock.set(T0 + 1000)
        # writes (scripts included) wait 300 ms: the round is stuck in its claim
        sync_redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", 300, "WRITE")
        loop = asyncio.get_running_loop().create_task(env.scheduler.run_forever())
        await asyncio.sleep(0.1)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        details = await env.crons.details(id=cid)
        assert details is not None and details.next_run_ms == T0 + 2000
        assert details.last_fired_ms == T0 + 1000
        assert await app.redis.hget(env.crons._job_key(cid), "claim_token") is None
    finally:
        await app.aclose()
