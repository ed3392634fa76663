"""arq workers for an rkit App.

``rkit worker myservice.tasks:app`` (or :func:`run_worker`) starts an arq worker
whose one job function runs the App's registered actions. Everything arq-specific
lives in :mod:`rkit._arq`; this module only assembles the settings.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from arq.cron import cron
from arq.worker import Worker, func

from rkit import _arq

if TYPE_CHECKING:
    from rkit.app import App

__all__ = ["create_worker", "run_worker", "worker_settings", "worker_settings_class"]


def worker_settings(
    app: App, *, purge_hour: int = 3, pump: bool = True, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments for :class:`arq.worker.Worker` that run ``app``'s actions.

    Includes the daily action-cache purge (at ``purge_hour`` UTC; arq's cron runs it
    on one worker only, via its job-id de-duplication), the workpool attempt job,
    with ``pump=True`` the workpool pump (reaps expired leases, dispatches due work,
    redelivers callbacks) started and stopped with the worker and, when the App has
    a Presence, its sweep every second.
    """
    from rkit.action_cache import purge_all_job
    from rkit.presence import sweep_all_job
    from rkit.workpool import CHAIN_SECONDS, JOB_FUNCTION, MAX_TIMEOUT_MS, _runtime

    async def on_startup(ctx: dict[str, Any]) -> None:
        if pump:
            _runtime(app).start_pump()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await _runtime(app).stop()

    settings: dict[str, Any] = {
        "functions": [
            func(_arq.run_action, name=_arq.JOB_FUNCTION, max_tries=1),
            # one job = one attempt, fenced by its token: arq retries and results
            # are not used (rkit retries, reaps and de-duplicates itself)
            func(
                _arq.run_workpool_job,
                name=JOB_FUNCTION,
                max_tries=1000,
                keep_result=0,
                timeout=MAX_TIMEOUT_MS / 1000 + CHAIN_SECONDS + 60,
            ),
        ],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "cron_jobs": [
            cron(purge_all_job, name="rkit_action_cache_purge", hour={purge_hour}, minute={0})
        ],
        "queue_name": app.queue_name,
        "job_serializer": _arq.json_serializer,
        "job_deserializer": _arq.json_deserializer,
        "ctx": {"rkit_app": app},
        "max_jobs": 50,
        "keep_result": 3600,
        "poll_delay": 0.05,
    }
    if app.components.get("presence"):
        settings["cron_jobs"].append(
            cron(sweep_all_job, name="rkit_presence_sweep", second=set(range(60)))
        )
    settings.update(overrides)
    return settings


def worker_settings_class(app: App, **overrides: Any) -> type:
    """An arq ``WorkerSettings`` class for ``app``, for running arq's own CLI:

        # tasks.py
        WorkerSettings = worker_settings_class(app)
        # shell
        arq tasks.WorkerSettings

    Needs a real queue Redis (``queue_url``): arq's CLI connects by itself.
    """
    from arq.connections import RedisSettings

    if app.queue_url is None:
        from rkit.errors import ConfigError

        raise ConfigError("arq's CLI needs a queue Redis URL (App(queue_url=...), RKIT_REDIS_URL)")
    settings = worker_settings(app, **overrides)
    settings.setdefault("redis_settings", RedisSettings.from_dsn(app.queue_url))
    return type("WorkerSettings", (), settings)


async def create_worker(app: App, **overrides: Any) -> Worker:
    """An arq ``Worker`` bound to ``app`` (its queue connection created here)."""
    pool = await app.queue_pool()
    return Worker(redis_pool=pool, **worker_settings(app, **overrides))


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
