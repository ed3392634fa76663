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

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from . import connections
from .app import App, _import_fakeredis
from .clock import Clock, TestClock
from .errors import ConfigError
from .workers import create_worker
from .workpool import _runtime

__all__ = [
    "TestApp",
    "TestClock",
    "background_worker",
    "create_test_app",
    "peer_app",
    "rebind",
    "run_until_idle",
]


class TestApp(App):
    """An App whose clock is a :class:`TestClock` (``app.clock.advance(ms)`` type-checks)."""

    __test__ = False  # not a pytest test class
    clock: TestClock

    def __init__(
        self, redis_url: str | None = None, *, clock: TestClock | None = None, **kwargs: Any
    ) -> None:
        super().__init__(redis_url, clock=clock or TestClock(), **kwargs)


def create_test_app(
    *,
    namespace: str = "test",
    start_ms: float = 1_700_000_040_000,
    redis_url: str | None = None,
    clock: TestClock | None = None,
    **kwargs: Any,
) -> TestApp:
    """An App with a frozen test clock (``app.clock``), on embedded fakeredis by default."""
    return TestApp(redis_url, namespace=namespace, clock=clock or TestClock(start_ms), **kwargs)


def rebind(app: App, *, clock: Clock | None = None) -> None:
    """Give ``app`` (e.g. your service's module-level App) new connections for the
    event loop running now, and optionally another clock: pytest-asyncio runs each
    test in its own loop, and a client used in a previous loop fails with "bound to a
    different event loop". On the embedded fakeredis the data starts empty; on a URL
    the same Redis is used. Close it (``await app.aclose()``) in the same loop; the
    ``rkit_app`` fixture of the ``rkit.pytest`` plugin does both."""
    if app.embedded:
        fakeredis = _import_fakeredis()
        app._fake_server = fakeredis.FakeServer()
        app.redis = fakeredis.FakeAsyncRedis(server=app._fake_server, decode_responses=True)
    elif app.redis_url is not None:
        app.redis = connections.state_client(app.redis_url, cluster=app.cluster)
    else:
        raise ConfigError("an App built on prebuilt clients (redis=...) cannot be rebound")
    app._queue_pool = None
    if clock is not None:
        app.clock = clock
    rt = _runtime(app)  # its tasks and events belonged to the previous loop
    rt.leases.clear()
    rt._hb = rt._pump = rt._kick = rt._wanted = None
    rt._releases.clear()


def peer_app(app: App) -> App:
    """Another App on ``app``'s Redis, namespace and clock: what a second process of
    the same service sees (its own registry, so it may construct components of the
    same names). On the embedded fakeredis it shares the in-process server; with
    prebuilt clients it shares them (close ``app`` last)."""
    if app.embedded:
        fakeredis = _import_fakeredis()
        server = app._fake_server
        return App(
            namespace=app.namespace,
            clock=app.clock,
            redis=fakeredis.FakeAsyncRedis(server=server, decode_responses=True),
            queue_redis=fakeredis.FakeAsyncRedis(server=server),
        )
    if app.redis_url is not None:
        return App(
            app.redis_url,
            queue_url=app.queue_url,
            namespace=app.namespace,
            clock=app.clock,
            cluster=app.cluster,
        )
    return App(
        namespace=app.namespace, clock=app.clock, redis=app.redis, queue_redis=app._queue_redis
    )


async def run_until_idle(app: App, *, max_rounds: int = 1000, **worker_overrides: Any) -> int:
    """Run queued work in this process until nothing is runnable at the current clock.

    Alternates a workpool pump round (due work and retries, expired leases,
    callbacks — all judged by ``app.clock``) with an arq burst worker, until a round
    finds nothing. After ``app.clock.advance(ms)``, call it again to run what became
    due. Returns how many arq jobs ran (completed or failed).
    """
    settings: dict[str, Any] = {
        "burst": True,
        "handle_signals": False,
        "poll_delay": 0,
        "pump": False,
        # crons (cache purge, presence sweep) follow the wall clock and would keep a
        # burst worker busy forever; tests call purge()/sweep() when they need them
        "cron_jobs": [],
    }
    settings.update(worker_overrides)
    total = 0
    rt = _runtime(app)
    for _ in range(max_rounds):
        did, _wake = await rt.pump_once()
        worker = await create_worker(app, **settings)
        try:
            await worker.main()
            ran = int(worker.jobs_complete + worker.jobs_failed)
        finally:
            await worker.close()
            app._queue_pool = None
        total += ran
        if not did and not ran:
            break
    return total


@contextlib.asynccontextmanager
async def background_worker(app: App, **worker_overrides: Any) -> AsyncIterator[Any]:
    """Run an arq worker for ``app`` in this process while the block runs (for work
    that blocks, e.g. on an ``asyncio.Event``). The pump is not started: drive it
    with ``pool.pump()`` or :func:`run_until_idle`. Yields the arq ``Worker``."""
    settings: dict[str, Any] = {"handle_signals": False, "poll_delay": 0.005, "pump": False}
    settings.update(worker_overrides)
    worker = await create_worker(app, **settings)
    task = asyncio.get_running_loop().create_task(worker.async_run())
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        jobs = list(worker.tasks.values())
        for job in jobs:
            job.cancel()  # running attempts are handed back (released), like SIGTERM
        await asyncio.gather(*jobs, return_exceptions=True)
        worker.tasks.clear()
        await worker.close()
        app._queue_pool = None
