"""spec/workflow.md §8 on fakeredis, real Redis and a 3-node Cluster for the state
(arq's queue on fakeredis for Cluster), driven in-process with ``run_until_idle``
and the TestClock."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from rkit import App, ConfigError
from rkit.workflow import (
    EventNotFound,
    EventStateError,
    InvalidStepOptions,
    RetryPolicy,
    RunResult,
    StepCtx,
    StepFailed,
    WorkflowError,
    WorkflowNotFound,
    WorkflowNotRunningError,
    WorkflowSandboxError,
    WorkflowStillRunning,
    WorkpoolOptions,
)

from ._env import T0, Env


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


# 1
async def test_happy_path(env: Env) -> None:
    @env.wf.define(name="happy")
    async def happy(ctx: StepCtx) -> str:
        q = await ctx.run_query(env.get_name, {"x": 1})
        r: str = await ctx.run_action(env.greet, {"q": q})
        return r

    wid = await env.wf.start(happy)
    await env.drain()
    st = await env.wf.status(wid)
    assert st.type == "completed" and st.result == "hello name1"
    steps = (await env.wf.list_steps(wid)).page
    assert [s.step_number for s in steps] == [0, 1]
    assert [s.kind for s in steps] == ["function", "function"]
    assert [s.name for s in steps] == [
        env.app.action_name(env.get_name),
        env.app.action_name(env.greet),
    ]
    assert steps[1].result == RunResult("success", "hello name1")


# 2, 15
async def test_replay_never_reruns_steps(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    bodies = 0

    @env.wf.define(name="five")
    async def five(ctx: StepCtx) -> int:
        nonlocal bodies
        bodies += 1
        ctx.log("starting five")
        total = 0
        for i in range(5):
            total += await ctx.run_action(env.count, {"key": f"k{i}"})
        return total

    with caplog.at_level(logging.INFO, logger="rkit.workflow"):
        wid = await env.wf.start(five)
        await env.drain()
    assert (await env.wf.status(wid)).result == 5
    assert bodies == 6
    assert all(env.calls[f"k{i}"] == 1 for i in range(5))
    assert [r.message for r in caplog.records].count("starting five") == 1


# 3
async def test_inline_vs_async_start(env: Env) -> None:
    @env.wf.define(name="one")
    async def one(ctx: StepCtx) -> Any:
        return await ctx.run_action(env.greet, {"q": 1})

    wid = await env.wf.start(one)
    st = await env.wf.status(wid)
    assert st.type == "inProgress" and st.running and st.running[0].step_number == 0
    wid2 = await env.wf.start(one, start_async=True)
    st2 = await env.wf.status(wid2)
    assert st2.type == "inProgress" and st2.running == []
    assert (await env.wf.list_steps(wid2)).page == []
    await env.drain()
    assert (await env.wf.status(wid2)).result == "hello 1"


# 4
async def test_parallel_steps(env: Env) -> None:
    polls = 0

    @env.wf.define(name="par")
    async def par(ctx: StepCtx) -> list[str]:
        nonlocal polls
        polls += 1
        return list(await asyncio.gather(*(ctx.run_action(env.greet, {"q": i}) for i in range(3))))

    wid = await env.wf.start(par)
    st = await env.wf.status(wid)
    assert st.running is not None and [s.step_number for s in st.running] == [0, 1, 2]
    assert [s.args for s in st.running] == [{"q": 0}, {"q": 1}, {"q": 2}]
    await env.drain()
    assert (await env.wf.status(wid)).result == ["hello 0", "hello 1", "hello 2"]
    assert polls == 2  # one poll started all three, one more after all completed


# 5
async def test_batch_limit(env: Env) -> None:
    @env.wf.define(name="wide")
    async def wide(ctx: StepCtx) -> list[Any]:
        return list(await asyncio.gather(*(ctx.run_action(env.greet, {"q": i}) for i in range(25))))

    wid = await env.wf.start(wide)
    assert len((await env.wf.list_steps(wid)).page) == 10
    await env.drain()
    assert (await env.wf.status(wid)).result == [f"hello {i}" for i in range(25)]
    steps = (await env.wf.list_steps(wid)).page
    assert [s.args["q"] for s in steps] == list(range(25))


# 6, 7
async def test_failed_step_catchable_and_uncaught(env: Env) -> None:
    @env.wf.define(name="catches")
    async def catches(ctx: StepCtx) -> str:
        try:
            await ctx.run_action(env.boom, retry=False)
        except StepFailed as e:
            assert "boom" in str(e)
            return "recovered"
        return "no"

    @env.wf.define(name="uncaught")
    async def uncaught(ctx: StepCtx) -> None:
        await ctx.run_action(env.boom, retry=False)

    w1 = await env.wf.start(catches)
    w2 = await env.wf.start(uncaught, on_complete="on_done", context={"c": 1})
    await env.drain()
    assert (await env.wf.status(w1)).result == "recovered"
    st = await env.wf.status(w2)
    assert st.type == "failed" and st.error is not None and "boom" in st.error
    assert len(env.completions) == 1
    wid, res, ctx = env.completions[0]
    assert wid == w2 and res.kind == "failed" and ctx == {"c": 1}


# 8
@pytest.mark.parametrize("attempts", [3, 2])
async def test_retries_with_backoff(env: Env, attempts: int) -> None:
    @env.wf.define(name="retry")
    async def retry(ctx: StepCtx) -> Any:
        return await ctx.run_action(env.flaky, {"fails": 2}, retry=RetryPolicy(attempts, 100, 2))

    wid = await env.wf.start(retry)
    await env.drain()
    for _ in range(4):
        await env.advance(100)
    st = await env.wf.status(wid)
    assert env.times == [T0, T0 + 100, T0 + 300][:attempts]
    if attempts == 3:
        assert st.result == "ok after 3"
    else:
        assert st.type == "failed" and "flaky attempt 2" in (st.error or "")


# 9
async def test_retry_defaults(app: App) -> None:
    env = Env(app, workpool_options=WorkpoolOptions(retry_actions_by_default=True))

    @env.wf.define(name="noretry")
    async def noretry(ctx: StepCtx) -> None:
        await ctx.run_action(env.boom, retry=False)

    @env.wf.define(name="default")
    async def default(ctx: StepCtx) -> None:
        await ctx.run_action(env.boom)

    await env.wf.start(noretry)
    await env.drain()
    assert env.calls["boom"] == 1
    await env.wf.start(default)
    for _ in range(12):
        await env.advance(2_000)
    assert env.calls["boom"] == 1 + 5  # the default policy: 5 attempts


# 10, 12 (option errors)
async def test_step_option_errors(env: Env) -> None:
    seen: list[str] = []

    @env.wf.define(name="opts")
    async def opts(ctx: StepCtx) -> None:
        for call in (
            lambda: ctx.run_query(env.get_name, {"x": 1}, inline=True, run_after=5),
            lambda: ctx.run_action(env.greet, {"q": 1}, run_after=1, run_at=2),
            lambda: ctx.run_mutation(env.greet, {"q": 1}, inline=True, run_at=T0),
        ):
            try:
                await call()
            except InvalidStepOptions as e:
                seen.append(str(e))
        with pytest.raises(TypeError):
            await ctx.run_query(env.get_name, {"x": 1}, retry=True)  # type: ignore[call-arg]

    wid = await env.wf.start(opts)
    assert (await env.wf.status(wid)).type == "completed"
    assert len(seen) == 3 and "inline" in seen[0]


# 11
async def test_inline_steps_complete_within_the_poll(env: Env) -> None:
    @env.wf.define(name="inl")
    async def inl(ctx: StepCtx) -> list[Any]:
        a = await ctx.run_query(env.get_name, {"x": 1}, inline=True)
        b = await ctx.run_query(env.get_name, {"x": 2}, inline=True)
        c = await ctx.run_mutation(env.count, {"key": "m"}, inline=True)
        return [a, b, c]

    wid = await env.wf.start(inl)
    assert (await env.wf.status(wid)).result == ["name1", "name2", 1]
    steps = (await env.wf.list_steps(wid)).page
    assert len(steps) == 3 and all(s.result is not None for s in steps)
    assert (await env.wf.workpool.diagnostics()).stats.get("enqueued", 0) == 0
    assert await env.drain() == 0  # no job was queued


# 12
async def test_scheduling_and_sleep(env: Env) -> None:
    @env.wf.define(name="later")
    async def later(ctx: StepCtx) -> str:
        await ctx.run_action(env.count, {"key": "after"}, run_after=5_000)
        await ctx.run_action(env.count, {"key": "at"}, run_at=T0 + 60_000)
        await ctx.sleep(86_400_000)
        return "done"

    wid = await env.wf.start(later)
    await env.advance(4_999)
    assert env.calls["after"] == 0
    await env.advance(1)
    assert env.calls["after"] == 1
    await env.advance(54_999)
    assert env.calls["at"] == 0
    await env.advance(1)
    assert env.calls["at"] == 1
    await env.advance(86_400_000 - 1)
    assert (await env.wf.status(wid)).type == "inProgress"
    await env.advance(1)
    assert (await env.wf.status(wid)).result == "done"
    assert (await env.wf.list_steps(wid)).page[2].name == "sleep"


# 13
async def test_determinism_violation(env: Env) -> None:
    version = {"v": 1, "unstable": False, "name": None}

    @env.wf.define(name="det")
    async def det(ctx: StepCtx) -> Any:
        await ctx.run_action(
            env.greet,
            {"q": version["v"]},
            unstable_args=bool(version["unstable"]),
            name=version["name"],  # type: ignore[arg-type]
        )
        return await ctx.run_action(env.greet, {"q": "second"})

    w1 = await env.wf.start(det, on_complete="on_done")
    version["v"] = 2
    await env.drain()
    st = await env.wf.status(w1)
    assert st.type == "failed" and (st.error or "").startswith("Journal entry mismatch")
    assert env.completions[0][1].kind == "failed"

    version.update(v=1, unstable=True)
    w2 = await env.wf.start(det)
    version["v"] = 3
    await env.drain()
    assert (await env.wf.status(w2)).result == "hello second"

    version.update(v=1, unstable=True, name=None)
    w3 = await env.wf.start(det)
    version["name"] = "renamed"
    await env.drain()
    assert (await env.wf.status(w3)).type == "failed"


# 14
async def test_deterministic_environment(env: Env) -> None:
    seen: dict[str, list[Any]] = {}

    @env.wf.define(name="env")
    async def envwf(ctx: StepCtx) -> None:
        seen.setdefault(ctx.workflow_id, []).append(
            (ctx.random(), random.random(), time.time() * 1000, ctx.replaying)
        )
        await ctx.run_action(env.greet, {"q": 1})
        with pytest.raises(WorkflowSandboxError):
            await asyncio.sleep(1)

    outside: list[float] = []

    async def bystander() -> None:
        outside.append(time.time())

    w1 = await env.wf.start(envwf)
    await asyncio.gather(bystander(), env.drain())
    w2 = await env.wf.start(envwf)
    a, b = seen[w1][0], seen[w1][1]
    assert a[:3] == b[:3] and a[3] is False and b[3] is True
    assert a[2] == T0  # the frontier: the poll's start time (the test clock)
    assert seen[w2][0][0] != a[0]
    assert abs(outside[0] - time.time()) < 60  # the real clock outside
    assert (await env.wf.status(w1)).type == "completed"


# 16, 17
async def test_events_await_first_and_send_first(env: Env) -> None:
    @env.wf.define(name="approve")
    async def approve(ctx: StepCtx) -> Any:
        return await ctx.await_event("approval")

    @env.wf.define(name="two")
    async def two(ctx: StepCtx) -> list[Any]:
        await ctx.run_action(env.greet, {"q": 0})
        return [await ctx.await_event("e"), await ctx.await_event("e")]

    w = await env.wf.start(approve)
    st = await env.wf.status(w)
    assert st.running is not None and st.running[0].kind == "event"
    await env.wf.send_event(workflow_id=w, name="approval", value={"ok": True})
    await env.drain()
    assert (await env.wf.status(w)).result == {"ok": True}

    w2 = await env.wf.start(two)
    await env.wf.send_event(workflow_id=w2, name="e", value=1)
    await env.wf.send_event(workflow_id=w2, name="e", value=2)
    await env.drain()
    assert (await env.wf.status(w2)).result == [1, 2]


# 18
async def test_event_errors_and_states(env: Env) -> None:
    @env.wf.define(name="err")
    async def err(ctx: StepCtx) -> Any:
        try:
            await ctx.await_event("x")
        except StepFailed as e:
            return f"caught {e}"

    @env.wf.define(name="byid")
    async def byid(ctx: StepCtx, eid: str) -> Any:
        return await ctx.await_event(id=eid)

    w = await env.wf.start(err)
    eid = await env.wf.send_event(workflow_id=w, name="x", error="nope")
    await env.drain()
    assert (await env.wf.status(w)).result == "caught nope"

    w2 = await env.wf.start(byid, {"eid": "wf_aaaaaaaaaaaaaaaaaaaaaaaaaa.e9"})
    st = await env.wf.status(w2)
    assert st.type == "failed" and "Event not found" in (st.error or "")
    held = await env.wf.start(err)
    with pytest.raises(EventNotFound):
        await env.wf.send_event(id=held + ".e99", value=1)

    w3 = await env.wf.start(byid, {"eid": "x"})  # fails: unknown id
    assert (await env.wf.status(w3)).type == "failed"
    w4 = await env.wf.start(err)
    e1 = await env.wf.send_event(workflow_id=w4, name="x", value=1)  # consumes the waiter
    await env.drain()
    with pytest.raises(WorkflowNotRunningError):
        await env.wf.send_event(id=e1, value=2)
    assert eid


async def test_event_sent_twice_to_one_id(env: Env) -> None:
    @env.wf.define(name="hold")
    async def hold(ctx: StepCtx) -> Any:
        return await ctx.await_event("never")

    w = await env.wf.start(hold)
    eid = await env.wf.create_event(workflow_id=w, name="other")
    await env.wf.send_event(id=eid, value=1)
    before = await env.raw(w)
    with pytest.raises(EventStateError, match="already sent"):
        await env.wf.send_event(id=eid, value=2)
    assert await env.raw(w) == before


# 19
async def test_event_validators(env: Env) -> None:
    class Approval(BaseModel):
        ok: bool

    @env.wf.define(name="val")
    async def val(ctx: StepCtx) -> Any:
        try:
            got = await ctx.await_event("a", validator=Approval)
        except ValidationError:
            return "invalid"
        return got.ok

    w = await env.wf.start(val)
    before = await env.raw(w)
    with pytest.raises(ValidationError):
        await env.wf.send_event(workflow_id=w, name="a", validator=Approval, value={"bad": 1})
    assert await env.raw(w) == before
    await env.wf.send_event(workflow_id=w, name="a", value={"bad": 1})
    await env.drain()
    assert (await env.wf.status(w)).result == "invalid"


# 20
async def test_created_events_by_id(env: Env) -> None:
    @env.wf.define(name="signals")
    async def signals(ctx: StepCtx) -> int:
        total = 0
        for i in range(3):
            eid = await ctx.run_mutation(
                env.make_event, {"workflow_id": ctx.workflow_id, "name": f"r{i}"}
            )
            await ctx.run_action(env.send, {"event_id": eid, "value": i + 1}, run_after=1_000)
            total += await ctx.await_event(id=eid)
        return total

    wid = await env.wf.start(signals)
    for _ in range(5):
        await env.advance(1_000)
    assert (await env.wf.status(wid)).result == 6


# 21
async def test_nested_workflow(env: Env) -> None:
    @env.wf.define(name="child")
    async def child(ctx: StepCtx, foo: str) -> int:
        await ctx.run_action(env.greet, {"q": foo})
        if foo == "fail":
            raise RuntimeError("child broke")
        return len(foo)

    @env.wf.define(name="parent")
    async def parent(ctx: StepCtx, foo: str) -> Any:
        try:
            return await ctx.run_workflow(child, {"foo": foo})
        except StepFailed as e:
            return f"parent saw: {e}"

    w = await env.wf.start(parent, {"foo": "test"})
    await env.drain()
    assert (await env.wf.status(w)).result == 4
    step = (await env.wf.list_steps(w)).page[0]
    assert step.kind == "workflow" and step.nested_workflow_id
    assert (await env.wf.status(step.nested_workflow_id)).result == 4
    w2 = await env.wf.start(parent, {"foo": "fail"})
    await env.drain()
    assert "child broke" in (await env.wf.status(w2)).result


# 22, 23
async def test_cancel(env: Env) -> None:
    @env.wf.define(name="child_wait")
    async def child_wait(ctx: StepCtx) -> Any:
        return await ctx.await_event("go")

    @env.wf.define(name="blocked")
    async def blocked(ctx: StepCtx) -> Any:
        return await asyncio.gather(
            ctx.await_event("go"),
            ctx.run_action(env.greet, {"q": 1}, run_after=60_000),
            ctx.run_workflow(child_wait, {}),
        )

    w = await env.wf.start(blocked, on_complete="on_done")
    await env.drain()
    child = (await env.wf.list_steps(w)).page[2].nested_workflow_id
    assert child and (await env.wf.status(child)).type == "inProgress"
    before_steps = await env.wf.list_steps(w)
    await env.wf.cancel(w)
    assert (await env.wf.status(w)).type == "canceled"
    assert (await env.wf.status(child)).type == "canceled"
    await env.advance(60_000)
    assert env.calls["greet"] == 0  # the pending step's work item was canceled
    assert [c[1].kind for c in env.completions] == ["canceled"]
    raw = await env.raw(w)
    with pytest.raises(WorkflowNotRunningError):
        await env.wf.send_event(workflow_id=w, name="go", value=1)
    assert await env.raw(w) == raw
    with pytest.raises(WorkflowNotRunningError):
        await env.wf.cancel(w)
    assert len(before_steps.page) == 3


async def test_late_completion_after_cancel_and_cleanup(env: Env) -> None:
    @env.wf.define(name="slow")
    async def slow(ctx: StepCtx) -> Any:
        return await ctx.run_action(env.hang)

    from rkit.testing import background_worker

    w = await env.wf.start(slow)
    async with background_worker(env.app):
        await env.started.wait()
        await env.wf.cancel(w)
        assert await env.wf.cleanup(w)
        env.gate.set()
        await asyncio.sleep(0.05)
    await env.drain()
    with pytest.raises(WorkflowNotFound):
        await env.wf.status(w)


# 24
async def test_restart(env: Env) -> None:
    broken = {"c": True}

    @env.wf.define(name="abcd")
    async def abcd(ctx: StepCtx) -> str:
        await ctx.run_action(env.count, {"key": "a"}, name="a")
        await ctx.run_action(env.count, {"key": "b"}, name="b")
        if broken["c"]:
            await ctx.run_action(env.boom, name="c")
        else:
            await ctx.run_action(env.count, {"key": "c"}, name="c")
        await ctx.run_action(env.count, {"key": "d"}, name="d")
        return "ok"

    w = await env.wf.start(abcd)
    await env.drain()
    assert (await env.wf.status(w)).type == "failed"
    raw = await env.raw(w)
    with pytest.raises(WorkflowError, match="not found"):
        await env.wf.restart(w, from_="nope")
    with pytest.raises(ValueError):
        await env.wf.restart(w, from_=-1)
    assert await env.raw(w) == raw
    gen = int(raw[env.wf._keys(w)[0]]["gen"])
    broken["c"] = False
    await env.wf.restart(w, from_="c")
    with pytest.raises(WorkflowStillRunning):
        await env.wf.restart(w)
    await env.drain()
    assert (await env.wf.status(w)).result == "ok"
    assert (env.calls["a"], env.calls["b"], env.calls["c"], env.calls["d"]) == (1, 1, 1, 1)
    assert int((await env.raw(w))[env.wf._keys(w)[0]]["gen"]) == gen + 1
    await env.wf.restart(w, from_=0)
    await env.drain()
    assert (env.calls["a"], env.calls["d"]) == (2, 2)


# 25, 26
async def test_callback_failure_and_return_validation(env: Env) -> None:
    @env.wf.define(name="ret", returns=int)
    async def ret(ctx: StepCtx, v: Any) -> Any:
        return v

    env.oc_raises = True
    w = await env.wf.start(ret, {"v": 1}, on_complete="on_done")
    assert (await env.wf.status(w)).result == 1
    fails = await env.wf.failures()
    assert (
        len(fails) == 1 and fails[0]["workflow_id"] == w and "callback broke" in fails[0]["error"]
    )
    w2 = await env.wf.start(ret, {"v": "x"})
    st = await env.wf.status(w2)
    assert st.type == "failed" and (st.error or "").startswith("Invalid return value")


# 27
async def test_oversized_values(env: Env) -> None:
    @env.wf.define(name="big")
    async def big(ctx: StepCtx) -> list[str]:
        out = []
        try:
            await ctx.run_action(env.big, {"n": 900_000})
        except StepFailed as e:
            out.append(str(e))
        try:
            await ctx.await_event("huge")
        except StepFailed as e:
            out.append(str(e))
        return out

    w = await env.wf.start(big)
    await env.drain()
    await env.wf.send_event(workflow_id=w, name="huge", value="y" * 900_000)
    await env.drain()
    errs = (await env.wf.status(w)).result
    assert len(errs) == 2
    for e in errs:
        assert e.startswith("Step return value too large (")
        assert len(e.split("): ", 1)[1]) <= 16 * 1024 + 3


# 28
async def test_journal_limit(app: App) -> None:
    env = Env(app, max_journal_bytes=64_000)

    @env.wf.define(name="grow")
    async def grow(ctx: StepCtx) -> int:
        for i in range(10):
            await ctx.run_action(env.greet, {"q": "z" * 10_000}, name=f"s{i}")
        return 10

    w = await env.wf.start(grow)
    await env.drain()
    st = await env.wf.status(w)
    assert st.type == "failed" and "JournalTooLarge" in (st.error or "")


# 29
async def test_listing(env: Env) -> None:
    @env.wf.define(name="n1")
    async def n1(ctx: StepCtx) -> int:
        await ctx.run_action(env.greet, {"q": 1})
        await ctx.run_action(env.greet, {"q": 2})
        return 1

    @env.wf.define(name="n2")
    async def n2(ctx: StepCtx) -> int:
        return 2

    ids = [await env.wf.start(n1), await env.wf.start(n2), await env.wf.start(n1)]
    await env.drain()
    assert [i.workflow_id for i in (await env.wf.list()).page] == ids
    assert [i.workflow_id for i in (await env.wf.list(order="desc")).page] == ids[::-1]
    p1 = await env.wf.list(num_items=2)
    assert not p1.is_done and len(p1.page) == 2
    p2 = await env.wf.list(num_items=2, cursor=p1.continue_cursor)
    assert p2.is_done and [i.workflow_id for i in p2.page] == ids[2:]
    assert [i.workflow_id for i in (await env.wf.list_by_name("n1")).page] == [ids[0], ids[2]]
    last = await env.wf.list_steps(ids[0], order="desc", num_items=1)
    assert [s.step_number for s in last.page] == [1] and not last.is_done
    with pytest.raises(WorkflowNotFound):
        await env.wf.status("wf_aaaaaaaaaaaaaaaaaaaaaaaaaa")
    with pytest.raises(WorkflowNotFound):
        await env.wf.status("nonsense")
    with pytest.raises(ConfigError):
        await env.wf.list(num_items=0)


# 30
async def test_cleanup(env: Env) -> None:
    @env.wf.define(name="kid")
    async def kid(ctx: StepCtx) -> int:
        return 1

    @env.wf.define(name="tidy")
    async def tidy(ctx: StepCtx) -> Any:
        await ctx.await_event("go")
        return await ctx.run_workflow(kid, {})

    w = await env.wf.start(tidy)
    assert await env.wf.cleanup(w) is False
    await env.wf.send_event(workflow_id=w, name="go")
    await env.drain()
    child = (await env.wf.list_steps(w)).page[1].nested_workflow_id
    assert child
    assert await env.wf.cleanup(w) is True
    assert await env.wf.cleanup(w) is False
    stem = env.wf._keys(w)[0]
    assert [k async for k in env.app.redis.scan_iter(match=stem + "*")] == []
    with pytest.raises(WorkflowNotFound):
        await env.wf.status(child)
    assert (await env.wf.list()).page == []
    w2 = await env.wf.start(tidy)
    assert await env.wf.cleanup(w2, force=True) is True
    with pytest.raises(ConfigError):
        await env.wf.cleanup("bad id")


# 33
async def test_duplicate_deliveries_are_harmless(env: Env) -> None:
    polls = 0

    @env.wf.define(name="dup")
    async def dup(ctx: StepCtx) -> Any:
        nonlocal polls
        polls += 1
        a = await ctx.run_action(env.greet, {"q": 1})
        return [a, await ctx.run_action(env.greet, {"q": 2})]

    from rkit.workpool import Success

    w = await env.wf.start(dup)
    ctx = {"m": "default", "w": w, "g": 0, "n": 0, "t": "step"}
    await env.wf._item_done(f"{w}.s0.g0", ctx, Success("first"))
    await env.wf._item_done(f"{w}.s0.g0", ctx, Success("second"))
    assert polls == 2
    steps = (await env.wf.list_steps(w)).page
    assert steps[0].result == RunResult("success", "first") and len(steps) == 2
    await env.wf._poll(w, 7)  # a stale generation: nothing
    assert polls == 2
    await env.drain()
    assert (await env.wf.status(w)).result == ["first", "hello 2"]


# bad input: nothing written
async def test_bad_input_writes_nothing(env: Env) -> None:
    class Args(BaseModel):
        n: int

    @env.wf.define(name="typed", args=Args)
    async def typed(ctx: StepCtx, n: int) -> int:
        return n

    snapshot = await env.app.redis.dbsize() if not env.app.is_cluster else None
    with pytest.raises(ValidationError):
        await env.wf.start(typed, {"n": "many"})
    with pytest.raises(ConfigError):
        await env.wf.start("typed", {"n": 1, "extra": object()})  # type: ignore[dict-item]
    with pytest.raises(ConfigError):
        await env.wf.start("undefined")
    with pytest.raises(ConfigError):
        await env.wf.send_event(workflow_id="wf_aaaaaaaaaaaaaaaaaaaaaaaaaa")
    if snapshot is not None:
        assert await env.app.redis.dbsize() == snapshot
    assert (await env.wf.list()).page == []
    assert (await env.wf.status(await env.wf.start(typed, {"n": 3}))).result == 3


# per-definition workpool options: its own pool, its own cap
async def test_definition_pool_caps_its_steps(env: Env) -> None:
    @env.wf.define(name="capped", workpool_options=WorkpoolOptions(max_parallelism=2))
    async def capped(ctx: StepCtx, i: int) -> Any:
        return await ctx.run_action(env.greet, {"q": i})

    ids = [await env.wf.start(capped, {"i": i}) for i in range(3)]
    pool = env.wf.pool_for("capped")
    assert pool is not env.wf.workpool
    d = await pool.diagnostics()
    assert (d.running, d.waiting) == (2, 1)
    assert (await env.wf.workpool.diagnostics()).running == 0
    await env.drain()
    assert [(await env.wf.status(w)).result for w in ids] == ["hello 0", "hello 1", "hello 2"]


# retention: finished workflows go (journal, events, index entries)
async def test_retention(app: App) -> None:
    env = Env(app, retention_ms=60_000)

    @env.wf.define(name="short")
    async def short(ctx: StepCtx) -> Any:
        return await ctx.run_action(env.greet, {"q": 1})

    done = await env.wf.start(short)
    await env.drain()
    running = await env.wf.start(short)
    await env.advance(59_999)
    assert await env.wf.expire() == 0
    await env.advance(1)
    assert await env.wf.expire() == 1
    with pytest.raises(WorkflowNotFound):
        await env.wf.status(done)
    assert [w.workflow_id for w in (await env.wf.list()).page] == [running]
    assert [k async for k in app.redis.scan_iter(match=env.wf._keys(done)[0] + "*")] == []


# 35 (numbers): payloads are opaque to Lua, so values round-trip exactly
async def test_values_round_trip_exactly(env: Env) -> None:
    @env.wf.define(name="nums")
    async def nums(ctx: StepCtx, v: list[float]) -> Any:
        return await ctx.run_action(env.count, {"key": "x"}), v, await ctx.await_event("e")

    v = [0.1 + 0.2, 1 / 3, 1e300, -0.0, 2**53 + 1]
    w = await env.wf.start(nums, {"v": v})
    await env.wf.send_event(workflow_id=w, name="e", value={"ü": "\u2603", "n": 1 / 7})
    await env.drain()
    got = (await env.wf.status(w)).result
    assert got == [1, v, {"ü": "\u2603", "n": 1 / 7}]
    assert repr(got[1]) == repr(v)


# a handler that drops trailing steps is a determinism error too; with_options
async def test_dropped_steps_and_with_options(env: Env) -> None:
    keep = {"second": True}

    @env.wf.define(name="drop")
    async def drop(ctx: StepCtx) -> str:
        loose = ctx.with_options(unstable_args=True, retry=False)
        await loose.run_action(env.greet, {"q": keep["second"]})
        if keep["second"]:
            await ctx.run_action(env.greet, {"q": 2})
        return "ok"

    w = await env.wf.start(drop)
    await env.drain()
    assert (await env.wf.status(w)).result == "ok"
    await env.wf.restart(w, from_=2)  # keeps both steps, re-runs the handler
    assert (await env.wf.status(w)).result == "ok"
    keep["second"] = False  # step 0's args change too: unstable_args from with_options
    await env.wf.restart(w, from_=2)
    st = await env.wf.status(w)
    assert st.type == "failed" and "1 more step(s)" in (st.error or "")


# a waiting event whose step a restart deletes is free again (never completes the
# wrong step of the new journal)
async def test_restart_frees_a_waiting_event(env: Env) -> None:
    first = {"run": True}

    @env.wf.define(name="gate")
    async def gate(ctx: StepCtx) -> Any:
        if not first["run"]:
            await ctx.run_action(env.greet, {"q": 1})  # the wait moves to step 1
        return await ctx.await_event("go")

    w = await env.wf.start(gate)
    await env.wf.cancel(w)
    first["run"] = False
    await env.wf.restart(w, from_=0)
    await env.drain()
    st = await env.wf.status(w)
    assert st.running is not None and [s.step_number for s in st.running] == [1]
    await env.wf.send_event(workflow_id=w, name="go", value="now")
    await env.drain()
    assert (await env.wf.status(w)).result == "now"
