"""Shared setup of the workflow tests: a manager with counted step functions."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from rkit import App
from rkit.testing import run_until_idle
from rkit.workflow import RunResult, WorkflowManager, WorkpoolOptions

T0 = 1_700_000_040_000.0


class Env:
    def __init__(self, app: App, **kw: Any) -> None:
        self.app = app
        kw.setdefault("rng", lambda: 0.5)
        self.wf = WorkflowManager(app, **kw)
        self.calls: Counter[str] = Counter()
        self.times: list[float] = []
        self.completions: list[tuple[str, RunResult, Any]] = []
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.oc_raises = False
        wf = self.wf

        @wf.function
        async def get_name(x: int) -> str:
            self.calls["get_name"] += 1
            return f"name{x}"

        @wf.function
        async def greet(q: Any) -> str:
            self.calls["greet"] += 1
            return f"hello {q}"

        @wf.function
        async def count(key: str) -> int:
            self.calls[key] += 1
            return self.calls[key]

        @wf.function
        async def boom() -> None:
            self.calls["boom"] += 1
            self.times.append(self.now())
            raise ValueError("boom")

        @wf.function
        async def flaky(fails: int) -> str:
            self.calls["flaky"] += 1
            self.times.append(self.now())
            if self.calls["flaky"] <= fails:
                raise RuntimeError(f"flaky attempt {self.calls['flaky']}")
            return f"ok after {self.calls['flaky']}"

        @wf.function
        async def hang() -> str:
            self.calls["hang"] += 1
            self.started.set()
            if self.calls["hang"] == 1:
                await self.gate.wait()
            return "hung"

        @wf.function
        async def big(n: int) -> str:
            return "x" * n

        @wf.function
        async def make_event(workflow_id: str, name: str) -> str:
            return await wf.create_event(workflow_id=workflow_id, name=name)

        @wf.function
        async def send(event_id: str, value: Any) -> None:
            await wf.send_event(id=event_id, value=value)

        @app.action(name="on_done")
        async def on_done(workflow_id: str, result: RunResult, context: Any) -> None:
            self.completions.append((workflow_id, result, context))
            if self.oc_raises:
                raise RuntimeError("callback broke")

        self.get_name, self.greet, self.count, self.boom = get_name, greet, count, boom
        self.flaky, self.hang, self.big = flaky, hang, big
        self.make_event, self.send = make_event, send

    def now(self) -> float:
        return self.app.clock.now_ms() or 0.0

    async def drain(self) -> int:
        return await run_until_idle(self.app)

    async def advance(self, ms: float) -> None:
        self.app.clock.advance(ms)  # type: ignore[attr-defined]
        await self.drain()

    async def raw(self, wid: str) -> dict[str, dict[str, str]]:
        """Every key of a workflow (for 'nothing written' / cleanup checks)."""
        stem = self.wf._keys(wid)[0]
        r = self.app.redis
        out: dict[str, dict[str, str]] = {}
        keys = [stem] + [f"{stem}:s:{n}" for n in range(int(await r.hget(stem, "steps") or 0))]
        for k in keys:
            if await r.type(k) == "hash":
                out[k] = await r.hgetall(k)
        return out


__all__ = ["T0", "Env", "WorkpoolOptions"]
