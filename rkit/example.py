"""The example app ``rkit dev`` loads when no app is given.

A signup endpoint limited per IP; welcome emails sent through a work pool whose
retries (with backoff) wait out a per-user email limit; a leaderboard on the
aggregate; who is online in a room with presence; a durable signup workflow
(welcome email step, then a wait for the user's confirmation event) whose steps the
admin API shows at ``/workflows/<id>/steps``.
"""

from __future__ import annotations

import asyncio

from rkit import (
    SECOND,
    App,
    DirectAggregate,
    Failed,
    Presence,
    RateLimiter,
    RetryBehavior,
    Success,
    TokenBucket,
    Workpool,
)
from rkit.workflow import StepCtx, WorkflowManager

app = App(namespace="example")

limiter = RateLimiter(
    app,
    {
        # 3 signups per 10 s per IP, bursts of up to 3
        "signup": TokenBucket(rate=3, period=10 * SECOND),
        # at most 2 emails per user per second
        "email": TokenBucket(rate=2, period=SECOND),
    },
)
emails = Workpool(app, "emails", max_parallelism=2, keep_result_ms=60 * SECOND)
scores: DirectAggregate[float] = DirectAggregate(app, "scores")
presence = Presence(app)
workflows = WorkflowManager(app)


@app.action(name="example.send_welcome")
async def send_welcome(user: str) -> str:
    """Pretend to send a welcome email (the worker runs this); over the limit it
    raises, and the pool retries it with exponential backoff."""
    res = await limiter.limit("email", key=user)
    if not res.ok:
        raise RuntimeError(f"email limit for {user}: retry in {res.retry_after:.0f} ms")
    return f"welcome email sent to {user}"


@workflows.define(name="example.signup")
async def signup_flow(ctx: StepCtx, user: str) -> str:
    """Signup -> welcome email (a step on the workflow's pool, retried) -> wait for
    the confirmation event (sent by the demo below, or POST /workflows/<id>/events)."""
    await ctx.run_action(send_welcome, {"user": user}, retry=True)
    confirmation = await ctx.await_event("confirmed")
    return f"{user} confirmed via {confirmation['via']}"


async def _workflow_demo() -> list[str]:
    wid = await workflows.start(signup_flow, {"user": "grace@example.com"})
    for _ in range(600):  # the welcome step runs on the worker
        st = await workflows.status(wid)
        if st.running and st.running[0].kind == "event":
            break
        await asyncio.sleep(0.05)
    await workflows.send_event(workflow_id=wid, name="confirmed", value={"via": "email link"})
    for _ in range(600):
        st = await workflows.status(wid)
        if st.type != "inProgress":
            break
        await asyncio.sleep(0.05)
    steps = (await workflows.list_steps(wid)).page
    lines = [f"workflow {wid} ({len(steps)} steps, GET /workflows/{wid}/steps):"]
    for step in steps:
        outcome = step.result.kind if step.result else "running"
        lines.append(f"  step {step.step_number} {step.kind} {step.name!r}: {outcome}")
    lines.append(f"workflow {st.type}: {st.result if st.type == 'completed' else st.error}")
    return lines


async def _outcome(work_id: str, timeout_s: float = 30) -> str:
    for _ in range(int(timeout_s / 0.05)):
        result = await emails.get_result(work_id)
        attempts = int((await emails.item(work_id) or {}).get("attempts", 0))
        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        if isinstance(result, Success):
            return f"{tries} -> {result.return_value}"
        if isinstance(result, Failed):
            return f"{tries} failed -> {result.error}"
        if result is not None:
            return "canceled"
        await asyncio.sleep(0.05)
    return "still running"


async def demo(app: App = app) -> list[str]:
    """What ``rkit dev`` shows at start: limited calls, pooled work with retries, a
    leaderboard and a presence list."""
    lines: list[str] = []
    for attempt in range(1, 5):
        res = await limiter.limit("signup", key="203.0.113.7")
        verdict = "allowed" if res.ok else f"limited (retry in {res.retry_after:.0f} ms)"
        lines.append(f"signup attempt {attempt} from 203.0.113.7: {verdict}")
    await limiter.reset("signup", key="203.0.113.7")

    retry = RetryBehavior(max_attempts=6, initial_backoff_ms=300, base=2)
    work = [
        await emails.enqueue(send_welcome, {"user": "ada@example.com"}, retry=retry)
        for _ in range(3)
    ]
    for i, work_id in enumerate(work, 1):
        lines.append(f"welcome email {i} (pool 'emails') {await _outcome(work_id)}")

    for user, score in [("ada", 35.0), ("bob", 20.0), ("cy", 25.0)]:
        await scores.insert(-score, user, sum_value=score)  # -score: best first
    top = await scores.at(0)
    rank = await scores.index_of(-25.0, id="cy")
    lines.append(
        f"leaderboard: {await scores.count()} players, {await scores.sum():g} points; "
        f"top {top.id}, cy ranks #{rank + 1}"
    )

    ada = await presence.heartbeat("lobby", "ada", "tab-1")
    await presence.heartbeat("lobby", "bob", "tab-2")
    online = [e.user_id for e in await presence.list(ada.room_token) if e.online]
    lines.append(f"online in lobby: {', '.join(online)}")
    await presence.disconnect(ada.session_token)
    lines += await _workflow_demo()
    return lines
