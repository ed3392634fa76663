"""The one module that knows arq (the queue transport), so it could be swapped.

- Jobs are JSON (no pickle): ``json_serializer``/``json_deserializer``.
- The worker's functions, crons and start/stop hooks come from the App's component
  registry (:mod:`rkit.registry`): this module names no component.
- arq's worker logs ``INFO`` at start, which fakeredis lacks: ``_log_redis_info``
  replaces arq's helper with one that tolerates the missing command (applied when
  a worker is built, not at import).
- :class:`RkitWorker` keeps running through a queue Redis outage (a restart, a
  stall): its poll loop backs off and reconnects instead of exiting, and arq's
  bookkeeping never leaks a job slot on a failed call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import time
from typing import TYPE_CHECKING, Any

import arq.worker
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.cron import cron
from arq.jobs import Job, JobStatus
from arq.utils import timestamp_ms
from arq.worker import Worker, func
from redis.exceptions import RedisError, ResponseError, WatchError

from . import connections, scripts
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
        import fakeredis  # the embedded default implies it is installed

        fake = fakeredis.FakeAsyncRedis(server=app._fake_server)
        return ArqRedis(connection_pool=fake.connection_pool, **kw)
    assert app.queue_url is not None
    # parsed like the state URL (TLS options, timeouts), not by arq's from_dsn
    return ArqRedis(connection_pool=connections.queue_connection_pool(app.queue_url), **kw)


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
        # arq's queue poll: a job enqueued while the worker sleeps waits for the next
        # poll, so this is the start latency of every step, retry and cron fire
        # (50 ms made each workflow step start ~50 ms late). An idle worker polls
        # 100 times a second (one ZRANGEBYSCORE each).
        "poll_delay": 0.01,
    }
    settings.update(overrides)
    return settings


def redis_settings(url: str) -> RedisSettings:
    """arq's ``RedisSettings`` for arq's own CLI, from the URL parsed as rkit parses it
    (arq's ``from_dsn`` drops the query: a ``rediss://`` CA file would be lost)."""
    from redis.asyncio.connection import parse_url

    opts = connections.client_options(url)
    parsed: dict[str, Any] = dict(parse_url(url))
    fields: dict[str, Any] = {
        "host": parsed.get("host", "localhost"),
        "port": int(parsed.get("port", 6379)),
        "unix_socket_path": parsed.get("path"),
        "database": int(parsed.get("db", 0)),
        "username": parsed.get("username"),
        "password": parsed.get("password"),
        "ssl": url.lower().startswith("rediss://"),
        "conn_timeout": parsed.get("socket_connect_timeout", opts["socket_connect_timeout"]),
        "retry": opts["retry"],
        "retry_on_error": opts["retry_on_error"],
    }
    for name in (
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_check_hostname",
        "max_connections",
    ):
        if name in parsed:
            fields[name] = parsed[name]
    return RedisSettings(**fields)


_OUTAGE = (RedisError, OSError)  # a refused, dropped, timed-out or LOADING connection
_FINISH_RETRY_S = 20.0


class RkitWorker(Worker):
    """arq's ``Worker`` that survives queue Redis outages.

    arq exits with a traceback when a poll call fails (a Redis restart, a stall past
    the socket timeout), and a failure inside ``start_jobs`` leaks a job slot for
    good. Here a failed poll round is logged and retried with exponential backoff
    (0.1 s doubling to 5 s, jittered) until Redis answers again; running jobs carry
    on meanwhile; claiming a job releases its slot when a call fails; arq's
    end-of-job bookkeeping is retried for up to 20 s so a finished job is not
    picked up again; ``close()`` avoids redis-py's deprecated ``close()``.
    """

    _backoff_s = 0.0
    _down_since: float | None = None

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except _OUTAGE as exc:
            await self._outage(exc)
            return
        if self._down_since is not None:
            logger.warning(
                "queue Redis is back after %.1f s: worker resumes polling",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        self._backoff_s = 0.0

    async def _outage(self, exc: BaseException) -> None:
        self._backoff_s = min(5.0, max(0.1, self._backoff_s * 2))
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning(
                "queue Redis unavailable (%s: %s): worker keeps running, retrying with backoff",
                type(exc).__name__,
                exc,
            )
        else:
            logger.info("queue Redis still unavailable (%s: %s)", type(exc).__name__, exc)
        await asyncio.sleep(self._backoff_s * random.uniform(0.8, 1.2))

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's ``start_jobs``, except that a failed call gives the slot back."""
        for job_id_b in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return None
            self.job_counter += 1
            job_id = job_id_b.decode()
            try:
                score = await self._claim(job_id)
            except BaseException:
                self.job_counter -= 1
                self.sem.release()
                raise
            if score is None:
                self.job_counter -= 1
                self.sem.release()
                continue
            t = self.loop.create_task(self._run_job(job_id, int(score)))
            t.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = t
        return None

    async def _claim(self, job_id: str) -> float | None:
        """Mark ``job_id`` in progress (arq's WATCH/MULTI); its score, or ``None`` when
        another worker has it, it is gone, or it is not due."""
        in_progress_key = in_progress_key_prefix + job_id
        async with self.pool.pipeline(transaction=True) as pipe:
            await pipe.watch(in_progress_key)
            ongoing_exists = await pipe.exists(in_progress_key)
            score = await pipe.zscore(self.queue_name, job_id)
            if ongoing_exists or not score or score > timestamp_ms():
                logger.debug("job %s already running elsewhere", job_id)
                return None
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.psetex(in_progress_key, int(self.in_progress_timeout_s * 1000), b"1")
            try:
                await pipe.execute()
            except (ResponseError, WatchError):
                logger.debug("multi-exec error, job %s already started elsewhere", job_id)
                return None
        return float(score)

    async def _run_job(self, job_id: str, score: int) -> None:
        try:
            await self.run_job(job_id, score)
        except _OUTAGE as exc:
            # arq's bookkeeping around the job failed; its in-progress key expires and
            # the job is seen again (rkit's jobs are fenced: a stale one is a no-op)
            logger.warning(
                "job %s: queue Redis call failed (%s: %s)", job_id, type(exc).__name__, exc
            )

    async def finish_job(self, job_id: str, *args: Any, **kwargs: Any) -> None:
        deadline = time.monotonic() + _FINISH_RETRY_S
        delay = 0.05
        while True:
            try:
                await super().finish_job(job_id, *args, **kwargs)
                return
            except _OUTAGE:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def close(self) -> None:
        """arq's ``close()`` without redis-py's deprecated ``close()`` (no warning in
        users' test suites) and tolerant of an unavailable Redis."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        try:
            await self.pool.delete(self.health_check_key)
        except _OUTAGE:
            pass
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None


async def create_worker(app: App, *, services: bool = True, **overrides: Any) -> Worker:
    """An arq ``Worker`` bound to ``app`` (its queue connection created here)."""
    pool = await app.queue_pool()
    return RkitWorker(redis_pool=pool, **worker_settings(app, services=services, **overrides))
