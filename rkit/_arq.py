"""The one module that knows arq (the queue transport), so it could be swapped.

- Jobs are JSON (no pickle): ``json_serializer``/``json_deserializer``.
- The worker's functions, crons and start/stop hooks come from the App's component
  registry (:mod:`rkit.registry`): this module names no component.
- arq's worker logs ``INFO`` at start, which fakeredis lacks: ``_log_redis_info``
  replaces arq's helper with one that tolerates the missing command (applied when
  a worker is built, not at import).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import arq.worker
import fakeredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.cron import cron
from arq.jobs import Job, JobStatus
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import scripts
from .app import use_transport
from .codec import dumps
from .errors import ActionNotFound

if TYPE_CHECKING:
    from .app import App
    from .registry import Cron

logger = logging.getLogger("rkit.worker")

JOB_FUNCTION = "rkit_run_action"


def json_serializer(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=_reject).encode("utf-8")


def json_deserializer(data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(data)
    return result


def _reject(obj: Any) -> Any:
    # arq stores a failed job's exception as its result; keep it as text.
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


async def _log_redis_info(redis: Any, log_func: Any) -> None:
    """arq's start-up log line without its pipelined INFO (fakeredis has no INFO and
    its TCP server drops the connection on it)."""
    try:
        keys = await redis.dbsize()
        info = await redis.info(section="server")
        version = info.get("redis_version", "?")
    except RedisError:
        # the connection may have been dropped by the server: start clean
        await redis.connection_pool.disconnect()
        version = "? (server does not implement INFO)"
        keys = "?"
    log_func(f"redis_version={version} db_keys={keys}")


async def make_pool(app: App) -> ArqRedis:
    """An ``ArqRedis`` on the App's queue Redis (JSON serialisation)."""
    kw: dict[str, Any] = {
        "job_serializer": json_serializer,
        "job_deserializer": json_deserializer,
        "default_queue_name": app.queue_name,
    }
    if app._queue_redis is not None:
        return ArqRedis(connection_pool=app._queue_redis.connection_pool, **kw)
    if app.embedded:
        fake = fakeredis.FakeAsyncRedis(server=app._fake_server)
        return ArqRedis(connection_pool=fake.connection_pool, **kw)
    assert app.queue_url is not None
    settings = RedisSettings.from_dsn(app.queue_url)
    return await create_pool(settings, **kw)


async def enqueue_action(
    pool: ArqRedis, queue_name: str, name: str, args: list[Any], kwargs: dict[str, Any]
) -> str:
    job = await pool.enqueue_job(JOB_FUNCTION, name, args, kwargs, _queue_name=queue_name)
    assert job is not None  # only None for a duplicate _job_id, which we never pass
    return job.job_id


async def job_result(pool: ArqRedis, queue_name: str, job_id: str, timeout: float | None) -> Any:
    job = Job(job_id, pool, _queue_name=queue_name, _deserializer=json_deserializer)
    if await job.status() == JobStatus.not_found:
        raise LookupError(f"no job {job_id!r}")
    return await job.result(timeout=timeout, poll_delay=0.05)


async def run_action(
    ctx: dict[str, Any], name: str, args: list[Any], kwargs: dict[str, Any]
) -> Any:
    """The one arq job function: resolve ``name`` in the worker's App and run it.

    An unknown name or a failing action is a recorded failure (the job's result),
    never a crash loop.
    """
    app: App = ctx["rkit_app"]
    try:
        action = app.get_action(name)
    except ActionNotFound as exc:
        logger.error("unknown action %r (job %s)", name, ctx.get("job_id"))
        return {"ok": False, "error": {"type": "ActionNotFound", "message": str(exc)}}
    try:
        result = await action.fn(*args, **kwargs)
        dumps(result, what=f"result of action {name!r}")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.exception("action %r failed (job %s)", name, ctx.get("job_id"))
        return {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}}
    return {"ok": True, "result": result}


_ENQUEUE_EXPIRES_MS = 86_400_000  # arq's default job expiry (1 day)


def _job_batch(
    queue_name: str, function: str, jobs: list[tuple[str, list[Any]]], second_prefix: str
) -> tuple[list[str], list[Any]]:
    """KEYS (queue, then per job its job key and ``second_prefix + id``) and ARGV
    (score, expiry, one payload in arq's job format per job) of the job scripts."""
    now = int(time.time() * 1000)
    keys = [queue_name]
    argv: list[Any] = [now, _ENQUEUE_EXPIRES_MS]
    for job_id, args in jobs:
        keys += [job_key_prefix + job_id, second_prefix + job_id]
        argv.append(json_serializer({"t": None, "f": function, "a": args, "k": {}, "et": now}))
    return keys, argv


async def enqueue_jobs(
    pool: ArqRedis, queue_name: str, function: str, jobs: list[tuple[str, list[Any]]]
) -> int:
    """Enqueue many jobs with fixed ids in one round trip (a script that writes arq's
    own job format and de-duplicates like ``enqueue_job``: an existing job or result
    key means "already queued"). Returns how many were new."""
    keys, argv = _job_batch(queue_name, function, jobs, result_key_prefix)
    return int(await scripts.load("arq", "enqueue")(pool, keys, argv))


async def reannounce_jobs(
    pool: ArqRedis, queue_name: str, function: str, jobs: list[tuple[str, list[Any]]]
) -> list[str]:
    """Look at jobs that should be waiting in the queue (one round trip): per job
    ``"Q"`` still queued (left alone), ``"E"`` lost and enqueued again under its id,
    ``"H"`` taken by a worker (in progress) that never began its attempt."""
    keys, argv = _job_batch(queue_name, function, jobs, in_progress_key_prefix)
    marks = await scripts.load("arq", "reannounce")(pool, keys, argv)
    return [m.decode() if isinstance(m, bytes) else str(m) for m in marks]


class ArqTransport:
    """The App's queue transport on arq (see :class:`rkit.app.Transport`)."""

    async def connect(self, app: App) -> ArqRedis:
        return await make_pool(app)

    async def enqueue_action(
        self, conn: Any, queue_name: str, name: str, args: list[Any], kwargs: dict[str, Any]
    ) -> str:
        return await enqueue_action(conn, queue_name, name, args, kwargs)

    async def job_result(
        self, conn: Any, queue_name: str, job_id: str, timeout: float | None
    ) -> Any:
        return await job_result(conn, queue_name, job_id, timeout)


use_transport(ArqTransport())


# -- the worker -----------------------------------------------------------------------


def _job_function(name: str) -> Any:
    """The arq function of one registered job kind: look the handler up in the
    worker's App (a job its App does not register fails clearly, no crash loop)."""

    async def run(ctx: dict[str, Any], *args: Any) -> Any:
        app: App = ctx["rkit_app"]
        job = app.components.job(name)
        if job is None:
            logger.error(
                "no handler for job %s in this worker's App (job %s)", name, ctx.get("job_id")
            )
            return None
        return await job.handler(app, *args)

    run.__qualname__ = run.__name__ = name
    return run


def _cron_function(c: Cron) -> Any:
    async def run(ctx: dict[str, Any]) -> Any:
        return await c.run(ctx["rkit_app"])

    run.__qualname__ = run.__name__ = f"rkit_{c.name}"
    return run


def worker_settings(app: App, *, services: bool = True, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for :class:`arq.worker.Worker` that run ``app``'s work: the
    legacy action job, one function per job kind in ``app.components``, its crons
    (arq runs each on one worker only, through its job-id de-duplication) and, with
    ``services=True``, its services (e.g. the workpool pump) started and stopped with
    the worker."""
    arq.worker.log_redis_info = _log_redis_info  # type: ignore[attr-defined]
    registry = app.components

    async def on_startup(ctx: dict[str, Any]) -> None:
        if services:
            for service in registry.services():
                service.start(app)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        for service in registry.services():
            await service.stop(app)

    functions = [func(run_action, name=JOB_FUNCTION, max_tries=1)]
    for job in registry.jobs():
        functions.append(
            func(
                _job_function(job.name),
                name=job.name,
                max_tries=job.max_tries,
                timeout=job.timeout_s,
                keep_result=job.keep_result_s,
            )
        )
    crons = [
        cron(
            _cron_function(c),
            name=f"rkit_{c.name}",
            second=set(c.second) if c.second is not None else None,
            minute=set(c.minute) if c.minute is not None else None,
            hour=set(c.hour) if c.hour is not None else None,
        )
        for c in registry.crons()
    ]
    settings: dict[str, Any] = {
        "functions": functions,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "cron_jobs": crons,
        "queue_name": app.queue_name,
        "job_serializer": json_serializer,
        "job_deserializer": json_deserializer,
        "ctx": {"rkit_app": app},
        "max_jobs": 50,
        "keep_result": 3600,
        "poll_delay": 0.05,
    }
    settings.update(overrides)
    return settings


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


QUEUE_RETRY_S = 0.5
"""Pause before polling again when the queue Redis cannot be reached."""


class _Worker(Worker):
    """arq's worker, kept alive through a queue Redis outage (a restart, a failover):
    a poll round that cannot reach Redis is logged and tried again after a pause,
    where arq's own loop would let the error end the worker. Commands are never
    re-sent (arq's pipelines are not all idempotent); the next round reconnects."""

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            logger.warning(
                "queue Redis unreachable (%s); polling again in %.1f s", exc, QUEUE_RETRY_S
            )
            await asyncio.sleep(QUEUE_RETRY_S)


async def create_worker(app: App, *, services: bool = True, **overrides: Any) -> Worker:
    """An arq ``Worker`` bound to ``app`` (its queue connection created here)."""
    pool = await app.queue_pool()
    return _Worker(redis_pool=pool, **worker_settings(app, services=services, **overrides))
