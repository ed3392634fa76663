"""The example app ``rkit dev`` loads when no app is given.

A signup endpoint limited per IP, and a welcome-email action run by the worker
that respects a per-user email limit.
"""

from __future__ import annotations

from rkit import MINUTE, SECOND, App, FixedWindow, RateLimiter, TokenBucket

app = App(namespace="example")

limiter = RateLimiter(
    app,
    {
        # 3 signups per 10 s per IP, bursts of up to 3
        "signup": TokenBucket(rate=3, period=10 * SECOND),
        # at most 2 emails per user per minute, windows aligned to the minute
        "email": FixedWindow(rate=2, period=MINUTE, start=0),
    },
)


@app.action(name="example.send_welcome")
async def send_welcome(user: str) -> str:
    """Pretend to send a welcome email (the worker runs this)."""
    res = await limiter.limit("email", key=user)
    if not res.ok:
        raise RuntimeError(f"email limit for {user}: retry in {res.retry_after:.0f} ms")
    return f"welcome email sent to {user}"


async def demo(app: App = app) -> list[str]:
    """What ``rkit dev`` shows at start: a few limited calls and two actions."""
    lines: list[str] = []
    for attempt in range(1, 5):
        res = await limiter.limit("signup", key="203.0.113.7")
        verdict = "allowed" if res.ok else f"limited (retry in {res.retry_after:.0f} ms)"
        lines.append(f"signup attempt {attempt} from 203.0.113.7: {verdict}")
    await limiter.reset("signup", key="203.0.113.7")
    jobs = [await app.enqueue(send_welcome, "ada@example.com") for _ in range(3)]
    for job in jobs:
        outcome = await app.job_result(job, timeout=30)
        if outcome["ok"]:
            lines.append(f"action example.send_welcome -> {outcome['result']}")
        else:
            lines.append(f"action example.send_welcome failed -> {outcome['error']['message']}")
    value = await limiter.get_value("email", key="ada@example.com")
    lines.append(f"email bucket of ada@example.com: {value.value:g} left")
    return lines
