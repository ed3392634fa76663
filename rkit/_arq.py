"""The one module that knows arq (the queue transport), so it could be swapped.

- Jobs are JSON (no pickle): ``json_serializer``/``json_deserializer``.
- arq's worker logs ``INFO`` at start, which fakeredis lacks: ``_log_redis_info``
  replaces arq's helper with one that tolerates the missing command.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import arq.worker
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job, JobStatus
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from .app import App

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


arq.worker.log_redis_info = _log_redis_info  # type: ignore[attr-defined]


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
        import fakeredis

        fake = fakeredis.FakeAsyncRedis(server=app._fake_server)
        return ArqRedis(connection_pool=fake.connection_pool, **kw)
    assert app.queue_url is not None
    settings = RedisSettings.from_dsn(app.queue_url)
    from arq.connections import create_pool

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
    from .codec import dumps
    from .errors import ActionNotFound

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


async def enqueue_jobs(
    pool: ArqRedis, queue_name: str, function: str, jobs: list[tuple[str, list[Any]]]
) -> int:
    """Enqueue many jobs with fixed ids in one round trip (a script that writes arq's
    own job format and de-duplicates like ``enqueue_job``: an existing job or result
    key means "already queued"). Returns how many were new."""
    import time

    from arq.constants import job_key_prefix, result_key_prefix

    from . import scripts

    now = int(time.time() * 1000)
    keys = [queue_name]
    payloads: list[bytes] = []
    for job_id, args in jobs:
        keys += [job_key_prefix + job_id, result_key_prefix + job_id]
        payloads.append(json_serializer({"t": None, "f": function, "a": args, "k": {}, "et": now}))
    script = scripts.load("arq", "enqueue")
    return int(await script(pool, keys, [now, _ENQUEUE_EXPIRES_MS, *payloads]))


async def run_workpool_job(
    ctx: dict[str, Any], component: str, pool: str, work_id: str, token: str
) -> None:
    """The arq job of one workpool attempt (``rkit_wp_run``): fenced by ``token``."""
    from .workpool import run_job

    await run_job(ctx["rkit_app"], component, pool, work_id, token)


async def reannounce_jobs(
    pool: ArqRedis, queue_name: str, function: str, jobs: list[tuple[str, list[Any]]]
) -> list[str]:
    """Look at jobs that should be waiting in the queue (one round trip): per job
    ``"Q"`` still queued (left alone), ``"E"`` lost and enqueued again under its id,
    ``"H"`` taken by a worker (in progress) that never began its attempt."""
    import time

    from arq.constants import in_progress_key_prefix, job_key_prefix

    from . import scripts

    now = int(time.time() * 1000)
    keys = [queue_name]
    payloads: list[bytes] = []
    for job_id, args in jobs:
        keys += [job_key_prefix + job_id, in_progress_key_prefix + job_id]
        payloads.append(json_serializer({"t": None, "f": function, "a": args, "k": {}, "et": now}))
    script = scripts.load("arq", "reannounce")
    marks = await script(pool, keys, [now, _ENQUEUE_EXPIRES_MS, *payloads])
    return [m.decode() if isinstance(m, bytes) else str(m) for m in marks]
