"""Test helpers for code built on rkit.

``create_test_app()`` gives an App on a private in-process fakeredis with a frozen
:class:`~rkit.clock.TestClock`; ``run_until_idle(app)`` runs every queued action
in-process (an arq worker in burst mode) and returns when the queue is empty.

    app = create_test_app()
    limiter = RateLimiter(app, {"send": TokenBucket(rate=1, period=SECOND)})
    assert await limiter.limit("send")
    app.clock.advance(1000)
"""

from __future__ import annotations

from typing import Any

from .app import App
from .clock import TestClock

__all__ = ["TestClock", "create_test_app", "run_until_idle"]


def create_test_app(
    *,
    namespace: str = "test",
    start_ms: float = 1_700_000_040_000,
    redis_url: str | None = None,
    **kwargs: Any,
) -> App:
    """An App with a frozen test clock (``app.clock``), on embedded fakeredis by default."""
    return App(redis_url, namespace=namespace, clock=TestClock(start_ms), **kwargs)


async def run_until_idle(app: App, **worker_overrides: Any) -> int:
    """Run queued actions in this process until the queue is empty.

    Returns how many jobs ran (completed or failed).
    """
    from rkit.workers import create_worker

    settings: dict[str, Any] = {"burst": True, "handle_signals": False, "poll_delay": 0}
    settings.update(worker_overrides)
    worker = await create_worker(app, **settings)
    try:
        await worker.main()
        return int(worker.jobs_complete + worker.jobs_failed)
    finally:
        await worker.close()
        app._queue_pool = None
