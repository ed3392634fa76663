"""Crashes and restarts (spec §8 scenarios 31, 32, 34, 36 and a second process on the
same Redis): a worker lost mid-step, a crash between journaling and enqueue, a poll
whose worker died after the step was journaled, many workflows at once, and a long
workflow whose journal is fetched once per entry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rkit import App
from rkit.testing import background_worker, peer_app, run_until_idle
from rkit.workflow import RetryPolicy, StepCtx, StepFailed, WorkflowManager
from rkit.workflow.executor import canonical
from rkit.workflow.manager import LOST_ERROR
from rkit.workpool import _runtime

from ._env import Env


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


async def lose_execution(env: Env) -> None:
    """The worker running the step dies: its lease is never renewed again."""
    rt = _runtime(env.app)
    assert rt._hb is not None
    rt._hb.cancel()
    rt.leases.clear()
    env.app.clock.advance(env.wf.workpool.lease_ms + 1)  # type: ignore[attr-defined]
    await env.wf.workpool.pump()


# 31
@pytest.mark.parametrize("retry", [True, False])
async def test_worker_lost_mid_step(env: Env, retry: bool) -> None:
    @env.wf.define(name="crash")
    async def crash(ctx: StepCtx) -> Any:
        await ctx.run_action(env.count, {"key": "before"})
        try:
            return await ctx.run_action(env.hang, retry=RetryPolicy(3, 100, 2) if retry else False)
        except StepFailed as e:
            return f"saw {e}"

    w = await env.wf.start(crash)
    async with background_worker(env.app):
        await env.started.wait()
        await lose_execution(env)
    env.gate.set()
    await env.advance(100)
    st = await env.wf.status(w)
    if retry:
        assert st.result == "hung" and env.calls["hang"] == 2
    else:
        assert st.result == f"saw {LOST_ERROR}" and env.calls["hang"] == 1
    assert env.calls["before"] == 1


# 32
async def test_crash_between_journal_and_enqueue(env: Env) -> None:
    @env.wf.define(name="lost")
    async def lost(ctx: StepCtx) -> Any:
        return await ctx.run_action(env.greet, {"q": 7})

    w = await env.wf.start(lost, start_async=True)
    # the poll journaled its step and died before the workpool enqueue: the same
    # script a poll runs, and nothing after it
    fn = env.app.action_name(env.greet)
    reply = await env.wf._call(
        "start_steps",
        env.wf._keys(w),
        "",
        0,
        0,
        w,
        1,
        "function",
        fn,
        canonical({"q": 7}),
        canonical({"fn": fn, "ft": "action"}),
        "pending",
        "",
        "",
        "",
        "",
        "",
    )
    assert reply[0] == "ok"
    await env.wf.workpool.cancel_all()  # the poll item itself is gone with the process
    await env.drain()
    assert (await env.wf.status(w)).type == "inProgress" and env.calls["greet"] == 0
    assert await env.wf.reconcile(older_than_ms=0) == 1
    assert await env.wf.reconcile(older_than_ms=0) == 0  # deterministic ids: once
    await env.drain()
    assert (await env.wf.status(w)).result == "hello 7" and env.calls["greet"] == 1


async def test_a_redelivered_completion_starts_what_its_dead_poll_never_enqueued(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll a step's completion runs journaled the next step and its process died
    before the enqueue: the completion is delivered again (its lease ran out) and
    starts the missing work at once; the minute-cadence reconciler is not needed."""

    @env.wf.define(name="two")
    async def two(ctx: StepCtx) -> Any:
        a = await ctx.run_action(env.greet, {"q": 1})
        return [a, await ctx.run_action(env.greet, {"q": 2})]

    real = env.wf._start_work
    calls = 0

    async def dies_once(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # step 1's enqueue, inside the completion of step 0
            raise ConnectionError("the process died here")
        await real(*args)

    monkeypatch.setattr(env.wf, "_start_work", dies_once)
    w = await env.wf.start(two, on_complete="on_done")
    await env.drain()
    steps = (await env.wf.list_steps(w)).page
    assert [s.result.kind if s.result else None for s in steps] == ["success", None]
    assert (await env.wf.status(w)).type == "inProgress" and env.calls["greet"] == 1
    await env.advance(env.wf.lease_ms + 1_000)  # the completion's redelivery
    assert (await env.wf.status(w)).result == ["hello 1", "hello 2"]
    assert env.calls["greet"] == 2 and [c[0] for c in env.completions] == [w]


async def test_a_redelivered_completion_delivers_an_owed_on_complete(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll finished the workflow and its process died before on_complete ran:
    the step's completion, delivered again, sees the workflow finished and, a lease
    after the finish, delivers the callback."""

    @env.wf.define(name="one")
    async def one(ctx: StepCtx) -> Any:
        return await ctx.run_action(env.greet, {"q": 3})

    real = env.wf._after_finish
    calls = 0

    async def dies_once(wid: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the process died here")
        await real(wid)

    monkeypatch.setattr(env.wf, "_after_finish", dies_once)
    w = await env.wf.start(one, on_complete="on_done")
    await env.drain()
    assert (await env.wf.status(w)).result == "hello 3" and env.completions == []
    await env.advance(env.wf.lease_ms + 1_000)
    assert [(c[0], c[1].value) for c in env.completions] == [(w, "hello 3")]
    await env.advance(env.wf.lease_ms + 1_000)
    assert len(env.completions) == 1
    assert await env.app.redis.zcard(env.wf._ix[2]) == 0


async def test_a_lost_poll_runs_again_instead_of_failing_the_workflow(env: Env) -> None:
    """A poll is replayable and fenced: its worker dying costs a re-run, not the
    workflow (steps of kind query/mutation still fail when lost, as the spec says)."""

    @env.wf.define(name="polled")
    async def polled(ctx: StepCtx) -> Any:
        env.started.set()
        await env.gate.wait()  # the first poll hangs in its worker, which then dies
        return await ctx.run_action(env.greet, {"q": 4})

    w = await env.wf.start(polled, start_async=True)
    async with background_worker(env.app):
        await env.started.wait()
        await lose_execution(env)
    env.gate.set()
    await env.advance(1_000)
    assert (await env.wf.status(w)).result == "hello 4" and env.calls["greet"] == 1


async def test_reconcile_polls_a_stuck_workflow_and_owed_callbacks(env: Env) -> None:
    @env.wf.define(name="stuck")
    async def stuck(ctx: StepCtx) -> Any:
        return await ctx.run_action(env.greet, {"q": 1})

    w = await env.wf.start(stuck, on_complete="on_done")
    # the step completed and its worker died before the next poll ran
    r = await env.wf._call("complete_step", env.wf._keys(w), "", 0, 0, "success", '"x"', "")
    assert r == "poll"
    await env.wf.workpool.cancel_all()
    assert await env.wf.reconcile(older_than_ms=0) == 1
    await env.drain()
    assert (await env.wf.status(w)).result == "x"
    assert [c[1].value for c in env.completions] == ["x"]
    # a finished workflow whose callback is owed (crash before it ran)
    w2 = await env.wf.start(stuck, on_complete="on_done")
    await env.wf._call("finish", env.wf._keys(w2), "", "", "", "success", '"y"', "")
    assert await env.wf.reconcile(older_than_ms=0) >= 1
    assert [c[1].value for c in env.completions] == ["x", "y"]
    await env.drain()
    assert await env.wf.reconcile(older_than_ms=0) == 0
    assert await env.app.redis.zcard(env.wf._ix[2]) == 0


async def test_a_second_process_finishes_the_workflow(app: App) -> None:
    env = Env(app)

    @env.wf.define(name="handoff")
    async def handoff(ctx: StepCtx) -> Any:
        a = await ctx.run_action(env.count, {"key": "one"})
        return [a, await ctx.run_action(env.count, {"key": "two"})]

    w = await env.wf.start(handoff)
    peer = peer_app(app)
    try:
        env2 = Env(peer)

        @env2.wf.define(name="handoff")
        async def handoff2(ctx: StepCtx) -> Any:
            a = await ctx.run_action(env2.count, {"key": "one"})
            return [a, await ctx.run_action(env2.count, {"key": "two"})]

        await run_until_idle(peer)
        assert (await env2.wf.status(w)).result == [1, 1]
        assert env.calls["one"] + env.calls["two"] == 0
    finally:
        await peer.aclose()


# 34
async def test_many_workflows_fanning_out(env: Env) -> None:
    @env.wf.define(name="fan")
    async def fan(ctx: StepCtx, i: int) -> int:
        parts = await asyncio.gather(
            *(ctx.run_action(env.count, {"key": f"w{i}.{j}"}) for j in range(5))
        )
        return sum(parts)

    ids = await asyncio.gather(*(env.wf.start(fan, {"i": i}) for i in range(20)))
    await run_until_idle(env.app, max_jobs=20)
    for w in ids:
        assert (await env.wf.status(w)).result == 5
        assert len((await env.wf.list_steps(w)).page) == 5
    assert all(v == 1 for v in env.calls.values()) and len(env.calls) == 100
    assert await env.wf.failures() == []
    assert await env.app.redis.zcard(env.wf._ix[2]) == 0


# 36 (scaled down): the journal is fetched once per entry, not once per poll
async def test_long_workflow_reads_each_entry_once(app: App) -> None:
    env = Env(app)
    n = 60

    @env.wf.define(name="long")
    async def long(ctx: StepCtx) -> int:
        total = 0
        for i in range(n):
            total += await ctx.run_query(env.count, {"key": f"q{i}"})
        return total

    w = await env.wf.start(long)
    await env.drain()
    assert (await env.wf.status(w)).result == n
    assert env.wf.entries_fetched <= n
    assert WorkflowManager  # the class the cache belongs to
