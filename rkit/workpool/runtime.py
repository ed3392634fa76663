"""The workpool's per-process runtime: the worker id, leases of the attempts running
here (heartbeat, self-fencing) and the pump loop (reaps expired leases, dispatches
due work and retries, redelivers callbacks, runs the retention sweep)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from .. import scripts
from .types import _s

if TYPE_CHECKING:
    from ..app import App
    from .client import Workpool

logger = logging.getLogger("rkit.workpool")


@dataclass(eq=False)
class _Lease:
    pool: Workpool
    work_id: str
    token: str
    task: asyncio.Future[Any]
    last_ok: float  # when the last renewal that succeeded was *sent* (runtime._now_s)
    fenced: bool = False
    hand_back: bool = False  # fenced on time: release the attempt once Redis answers


class _Runtime:
    """One per App per process: the worker id, the heartbeat and the pump.

    Leases are judged by the App's clock in Redis, so renewal and self-fencing follow
    that clock too: on the server clock, monotonic wall time; on a test clock, the test
    clock (and every pump round renews this process's leases first, so moving the test
    clock never makes a live attempt look lost).

    Fencing is on time, not only on an error: an attempt whose lease could not be
    renewed stops ``margin`` before the lease would expire, whether the renewal failed,
    timed out or is still hanging on a stalled server (a watchdog on every heartbeat
    tick, up to one tick late: lease/5, at most 1 s). Such an attempt is handed back
    (released, no attempt used) as soon as Redis answers again, so a stall never runs
    a body twice."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leases: set[_Lease] = set()
        self.attached: dict[tuple[str, str], Workpool] = {}  # pumped pools (kind, name)
        self._hb: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._wanted: float | None = None  # monotonic time a round was asked for
        self._releases: set[asyncio.Task[None]] = set()

    def _now_s(self) -> float:
        now = self.app.clock.now_ms()
        return time.monotonic() if now is None else now / 1000.0

    def track(self, pool: Workpool, work_id: str, token: str, task: asyncio.Future[Any]) -> _Lease:
        lease = _Lease(pool, work_id, token, task, self._now_s())
        self.leases.add(lease)
        if self._hb is None or self._hb.done():
            self._hb = asyncio.get_running_loop().create_task(self._heartbeat())
        return lease

    def untrack(self, lease: _Lease) -> None:
        self.leases.discard(lease)

    @staticmethod
    def margin_s(pool: Workpool) -> float:
        """How long before its lease expires an unrenewed attempt stops."""
        return min(1.5, pool.lease_ms / 3000.0)

    def fence_at(self, lease: _Lease) -> float:
        """When (``_now_s``) ``lease`` must be fenced unless renewed before."""
        return lease.last_ok + lease.pool.lease_ms / 1000.0 - self.margin_s(lease.pool)

    def _fence(self, lease: _Lease, why: str, *, hand_back: bool = False) -> None:
        if lease not in self.leases or lease.task.done():
            # the attempt ended while its renewal was on the way (the reply to a
            # renewal sent after the report is STALE): nothing is running to stop
            return
        if not lease.fenced:
            lease.fenced = True
            lease.hand_back = hand_back
            lease.task.cancel()
            logger.warning(
                "abandoning work %s of pool %s (%s)", lease.work_id, lease.pool.name, why
            )

    def _fence_overdue(self, leases: list[_Lease], why: str) -> None:
        now = self._now_s()
        for lease in leases:
            if now >= self.fence_at(lease):
                self._fence(lease, why, hand_back=True)

    async def _heartbeat(self) -> None:
        renewing: asyncio.Task[None] | None = None
        while self.leases:
            interval = min(lease.pool.lease_ms for lease in self.leases) / 5000.0
            await asyncio.sleep(min(1.0, interval))
            if renewing is None or renewing.done():
                renewing = asyncio.get_running_loop().create_task(self.renew())
                self.keep(renewing)
            if self.app.clock.now_ms() is None:
                # the watchdog: a renewal may hang on a stalled server (it is not
                # cancelled: it may still land); stop what can no longer be renewed
                self._fence_overdue(list(self.leases), "lease not renewed in time")

    async def renew(self, only: Workpool | None = None) -> None:
        """One heartbeat round: renew the leases of this process's running attempts
        (of one pool with ``only``); fence those that are lost, and those that cannot
        be renewed before they would expire."""
        by_pool: dict[Workpool, list[_Lease]] = {}
        for lease in list(self.leases):
            if only is None or lease.pool is only:
                by_pool.setdefault(lease.pool, []).append(lease)
        await asyncio.gather(*(self._renew_pool(p, ls) for p, ls in by_pool.items()))

    async def _renew_pool(self, pool: Workpool, leases: list[_Lease]) -> None:
        pairs = [x for lease in leases for x in (lease.work_id, lease.token)]
        sent = self._now_s()
        try:
            replies = await pool._call("heartbeat", *pairs)
        except (RedisError, OSError) as exc:
            self._fence_overdue(leases, f"cannot renew lease: {type(exc).__name__}: {exc}")
            return
        for lease, r in zip(leases, replies, strict=True):
            reply = _s(r)
            if reply == "STALE":
                self._fence(lease, "lease lost")
            elif reply == "DETACHED":
                self.untrack(lease)  # canceled run: finishes unwatched, report dropped
            else:
                lease.last_ok = max(lease.last_ok, sent)  # Redis renewed it after `sent`

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a background task of this runtime (a hand-back) until it ends; ``stop``
        cancels what is left."""
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    def wake_in(self, delay_ms: float) -> None:
        """Have the pump loop run a round in ``delay_ms`` (wall time) at the latest:
        a retry due then starts on time instead of after an idle sleep."""
        at = time.monotonic() + max(0.0, delay_ms) / 1000.0
        if self._wanted is None or at < self._wanted:
            self._wanted = at
            if self._kick is not None:
                self._kick.set()

    async def _idle(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when ``wake_in`` asks for an earlier round."""
        if self._kick is None:
            self._kick = asyncio.Event()
        until = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            target = until if self._wanted is None else min(until, self._wanted)
            if target <= now:
                break
            self._kick.clear()
            try:
                await asyncio.wait_for(self._kick.wait(), target - now)
            except TimeoutError:
                pass
        if self._wanted is not None and self._wanted <= time.monotonic():
            self._wanted = None

    def attach(self, pool: Workpool) -> None:
        """Pump ``pool`` in this process (every pool constructed with ``register=True``)."""
        self.attached.setdefault((pool.kind.kind, pool.name), pool)

    def pools(self) -> list[Workpool]:
        return list(self.attached.values())

    async def pump_once(self) -> tuple[bool, float | None]:
        """One pump round over every pool this App knows; (did work, next wake ms)."""
        did, wake = False, None
        for pool in self.pools():
            rep = await pool.pump()
            did = did or rep.did_work
            if rep.next_wake_ms is not None:
                wake = rep.next_wake_ms if wake is None else min(wake, rep.next_wake_ms)
        return did, wake

    async def _discover(self) -> None:
        """Pump every pool of the namespace's pool index, also those this process
        never constructed (built by the registered factory of the kind), and list
        again the pools this process runs that the index lacks (Redis lost its data:
        an admin read or ``remove``-style sweep over the index would miss them)."""
        names = set(await pool_names(self.app))
        for name in names:
            if ("workpool", name) not in self.attached:
                self.app.components.get_or_create("workpool", name)
        missing = [n for k, n in self.attached if k == "workpool" and n not in names]
        if missing:
            logger.info("listing pools in the pool index: %s", ", ".join(sorted(missing)))
            await register_pools(self.app, missing)

    async def expire_all(self) -> int:
        """The retention sweep of every pool: finished work past its retention (even
        when this process's instance does not keep results: another may) and dead
        letters past ``dlq_retention_ms``."""
        return sum([await p.expire() for p in self.pools()])

    async def _pump_forever(self, max_idle_s: float = 1.0) -> None:
        last_discover = last_expire = 0.0
        while True:
            try:
                if time.monotonic() - last_discover > 5.0:
                    await self._discover()
                    last_discover = time.monotonic()
                if time.monotonic() - last_expire > 3600.0:
                    await self.expire_all()  # retention: kept results, dead letters
                    last_expire = time.monotonic()
                did, wake = await self.pump_once()
                delay = 0.0 if did else max_idle_s if wake is None else wake / 1000.0
                await self._idle(min(max_idle_s, max(0.005, delay)))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:  # an outage: say so, no traceback
                logger.warning("workpool pump round failed: %s: %s", type(exc).__name__, exc)
                await self._idle(max_idle_s)
            except Exception:
                logger.exception("workpool pump round failed")
                await self._idle(max_idle_s)

    def start_service(self, app: Any) -> None:
        """The registry's service hook: a worker starts the pump loop."""
        self.start_pump()

    async def stop_service(self, app: Any) -> None:
        await self.stop()

    def start_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._pump_forever())

    async def stop(self) -> None:
        for task in (self._pump, self._hb, *self._releases):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._pump = self._hb = None
        self._kick = None


def _runtime(app: App) -> _Runtime:
    """The App's runtime in this process (created on first use)."""
    return app.components.state("workpool:runtime", lambda: _Runtime(app))


async def pool_names(app: App) -> list[str]:
    """Names of every workpool used in ``app``'s namespace (admin listing)."""
    redis: Any = app.redis
    members = await redis.smembers(index_key(app))
    return sorted(_s(m) for m in members)


def index_key(app: App) -> str:
    return app.keys.tag("workpool") + ":pools"


async def register_pools(app: App, names: list[str]) -> None:
    """Add pool names to the namespace's pool index (idempotent)."""
    await scripts.load("workpool_index", "register")(app.redis, [index_key(app)], names)
