"""The harness of spec crons.md §8: an App with a TestClock, a ``record`` action and
``advance(ms)``, which moves the clock from due time to due time, running a
scheduler round and the queued executions at each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from rkit import App, TestClock
from rkit.crons import Crons, CronScheduler, current_tick
from rkit.testing import run_until_idle

T0 = 1_700_000_040_000
DAY = 86_400_000


class Env:
    def __init__(self, app: App, **options: Any) -> None:
        self.app = app
        clock = app.clock
        assert isinstance(clock, TestClock)
        self.clock = clock
        self.crons = Crons(app, **options)
        self.scheduler = CronScheduler(self.crons)
        self.calls: list[tuple[float, dict[str, Any]]] = []
        self.ticks: list[tuple[str, int]] = []
        self.failures = 0

        @app.action(name="record")
        async def record(**kwargs: Any) -> None:
            self.calls.append((self.now(), kwargs))
            tick = current_tick()
            assert tick is not None
            self.ticks.append(tick)

        @app.action(name="boom")
        async def boom() -> None:
            self.calls.append((self.now(), {}))
            raise RuntimeError("boom")

    def now(self) -> float:
        now = self.clock.now_ms()
        assert now is not None
        return now

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.calls]

    async def step(self) -> None:
        """One scheduler round and every execution it queued (at the current time)."""
        await self.scheduler.tick()
        await run_until_idle(self.app)

    async def advance(self, ms: float) -> None:
        """Move the clock by ``ms``, stopping at every due time on the way."""
        target = self.now() + ms
        while True:
            report = await self.scheduler.tick()
            await run_until_idle(self.app)
            due = report.next_due_ms
            if report.claimed:
                continue  # a catch-up tick may be due at once
            if due is None or due > target:
                break
            self.clock.set(max(due, self.now()))
        self.clock.set(target)
        await self.step()


async def settle(cond: Any, timeout: float = 5.0) -> None:
    """Wait (real time, bounded) until background work reached ``cond``."""
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "condition not reached"
        await asyncio.sleep(0.005)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait (real time, bounded) until the async ``check`` holds."""
    end = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < end, "condition not reached"
        await asyncio.sleep(0.005)


def utc_ms(text: str) -> int:
    """``"2023-11-15T00:00:00"`` (UTC) in ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


async def snapshot(app: App) -> dict[str, Any]:
    """Every key of the App's namespace with its type and value (to show that a
    refused call wrote nothing)."""
    out: dict[str, Any] = {}
    async for key in app.redis.scan_iter(match=f"*{app.namespace}*"):
        kind = await app.redis.type(key)
        if kind == "hash":
            value: Any = await app.redis.hgetall(key)
        elif kind == "zset":
            value = await app.redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = await app.redis.lrange(key, 0, -1)
        elif kind == "stream":
            value = await app.redis.xlen(key)
        else:
            value = await app.redis.get(key)
        out[key] = (kind, value)
    return out
