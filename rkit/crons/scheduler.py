"""The cron scheduler: claims due crons, enqueues their executions and commits
their next fire times; any number of them may run against one namespace."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from .. import codec
from ..errors import ConfigError
from .schedules import IntervalSchedule, _Compiled, _compiled_cron
from .types import TickReport, _num, _s

if TYPE_CHECKING:
    from .component import Crons

logger = logging.getLogger("rkit.crons")

MIN_SLEEP_MS = 10.0
ROUND_GRACE_S = 10.0
"""How long a stopping scheduler lets its current round finish."""


class CronScheduler:
    """Claims due crons, enqueues their executions and commits their next fire
    times; any number of schedulers may run against one namespace (each tick fires
    once). Every worker runs one per namespace; tests call :meth:`tick`."""

    def __init__(
        self,
        crons: Crons,
        *,
        claim_limit: int | None = None,
        claim_lease_ms: float | None = None,
        max_sleep_ms: float | None = None,
    ) -> None:
        self.crons = crons
        self.claim_limit = crons.claim_limit if claim_limit is None else claim_limit
        self.claim_lease_ms = crons.claim_lease_ms if claim_lease_ms is None else claim_lease_ms
        self.max_sleep_ms = crons.max_sleep_ms if max_sleep_ms is None else max_sleep_ms

    async def tick(self) -> TickReport:
        """One round: claim what is due, enqueue what fires, commit."""
        c = self.crons
        token = uuid.uuid4().hex
        now_s, recs, first = await c._call(
            "claim", self.claim_limit, codec.fmt_num(self.claim_lease_ms), token
        )
        now = float(now_s)
        fires: list[tuple[str, int, str, str]] = []
        commit: list[str] = []
        skipped = misfired = 0
        for rec in recs:
            cron_id, tick_s, kind, ms, spec, tz, misfire, retry_s, tmo, busy = (_s(x) for x in rec)
            tick = int(float(tick_s))
            try:
                if kind == "interval":
                    compiled = _Compiled(IntervalSchedule(ms=float(ms)))
                else:
                    compiled = _compiled_cron(spec, tz or None)
                nxt = compiled.next_after(tick)
                missed = 0
                if nxt <= now and misfire != "catch_up":
                    nxt, missed = compiled.next_after_now(tick, now)
            except (ConfigError, ValueError) as exc:  # pragma: no cover - validated on register
                logger.error("cron %s has an unusable schedule (%s); pausing it", cron_id, exc)
                await c._call_one("pause", cron_id)
                continue
            fire = busy != "1"
            if fire:
                fires.append((cron_id, tick, retry_s, tmo))
            else:
                skipped += 1
            misfired += missed
            commit += [cron_id, str(tick), str(nxt), "1" if fire else "0", str(missed)]
        if fires:
            await c._enqueue(fires)
        stale = 0
        if commit:
            replies = await c._call("commit", token, *commit)
            stale = sum(1 for r in replies if _s(r) != "OK")
        due = _num(_s(first)) if first not in (None, "", b"") else None
        return TickReport(now, len(recs), len(fires), skipped, misfired, stale, due)

    async def run_forever(self) -> None:
        """Tick, then sleep until the earliest due time (at most ``max_sleep_ms``, at
        least 10 ms) or until a cron is registered or resumed (in this process, or
        in another one: ``PUBLISH`` on the namespace's wake channel; not on Cluster
        clients, where the sleep bounds the delay)."""
        wake = self.crons.wake
        listener = None
        if not self.crons.app.is_cluster:
            listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            while True:
                wake.clear()
                delay = self.max_sleep_ms / 1000.0
                try:
                    report = await self._round()
                except (RedisError, OSError) as exc:
                    logger.warning("cron scheduler %s: %s; retrying", self.crons.namespace, exc)
                else:
                    if report.claimed >= self.claim_limit:
                        continue
                    if report.next_due_ms is not None:
                        due_in = max(0.0, report.next_due_ms - report.now_ms) / 1000.0
                        delay = min(delay, due_in)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(delay, MIN_SLEEP_MS / 1000.0))
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    async def _round(self) -> TickReport:
        """:meth:`tick`, finished even when the loop is cancelled meanwhile (a worker
        stopping): a round stopped between claim and commit would hold its crons
        until the claim lease ends (``claim_lease_ms``, 30 s by default)."""
        round_ = asyncio.ensure_future(self.tick())
        try:
            return await asyncio.shield(round_)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(round_, ROUND_GRACE_S)
            raise

    async def _listen(self) -> None:
        """Set the wake event on each message of the wake channel (resubscribing
        after a connection error)."""
        redis: Any = self.crons.app.redis
        if isinstance(redis, RedisCluster):  # pragma: no cover - run_forever never starts it
            return
        while True:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(self.crons.wake_channel)
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        self.crons.wake.set()
            except (RedisError, OSError) as exc:
                logger.debug("cron wake channel: %s; resubscribing", exc)
                await asyncio.sleep(self.max_sleep_ms / 1000.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
