"""Workers for an rkit App.

``rkit worker myservice.tasks:app`` (or :func:`run_worker`) starts an arq worker
that runs what the App's components registered in ``app.components``: their job
kinds (e.g. the workpool's attempts), crons (e.g. the presence sweep) and services
(e.g. the workpool pump), plus the App's plain actions. Everything arq-specific
lives in :mod:`rkit._arq`; this module names no component.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rkit import _arq
from rkit.errors import ConfigError

if TYPE_CHECKING:
    from arq.worker import Worker

    from rkit.app import App

__all__ = ["create_worker", "run_worker", "worker_settings", "worker_settings_class"]


def worker_settings(app: App, *, pump: bool = True, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for :class:`arq.worker.Worker` that run ``app``'s work; with
    ``pump=False`` the components' services (the workpool pump) are not started."""
    return _arq.worker_settings(app, services=pump, **overrides)


def worker_settings_class(app: App, **overrides: Any) -> type:
    """An arq ``WorkerSettings`` class for ``app``, for running arq's own CLI:

        # tasks.py
        WorkerSettings = worker_settings_class(app)
        # shell
        arq tasks.WorkerSettings

    Needs a real queue Redis (``queue_url``): arq's CLI connects by itself.
    """
    if app.queue_url is None:
        raise ConfigError("arq's CLI needs a queue Redis URL (App(queue_url=...), RKIT_REDIS_URL)")
    settings = worker_settings(app, **overrides)
    settings.setdefault("redis_settings", _arq.redis_settings(app.queue_url))
    return type("WorkerSettings", (), settings)


async def create_worker(app: App, *, pump: bool = True, **overrides: Any) -> Worker:
    """An arq ``Worker`` bound to ``app`` (its queue connection created here)."""
    return await _arq.create_worker(app, services=pump, **overrides)


async def run_worker(app: App, **overrides: Any) -> None:
    """Run a worker until cancelled or stopped by SIGINT/SIGTERM (then it returns
    normally), or with ``burst=True`` until the queue is empty."""
    worker = await create_worker(app, **overrides)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        # arq's signal handler stops the worker by cancelling its main task: that is
        # a graceful stop (running attempts are handed back), not an error, unless
        # this task itself is being cancelled
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    finally:
        await worker.close()  # closes the queue connection too
        app._queue_pool = None


def run_worker_blocking(app: App, **overrides: Any) -> None:
    """Entry point of ``rkit worker``: SIGINT/SIGTERM stop it gracefully."""
    asyncio.run(run_worker(app, **overrides))
