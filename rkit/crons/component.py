"""The crons component: registering, reading and controlling crons (one script per
change), and the execution path on a workpool of the ``cron`` kind."""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from .. import codec, scripts
from ..clock import MAX_DURATION_MS, argv_now
from ..errors import (
    ActionNotFound,
    ConfigError,
    FunctionNotRegistered,
    PayloadTooLarge,
)
from ..keys import check_part
from ..operator import Panel, Sample, Section, operator_hooks
from ..registry import Service
from ..workpool import (
    MAX_TIMEOUT_MS,
    Canceled,
    Failed,
    OnCompleteArgs,
    PoolKind,
    RetryBehavior,
    Success,
    Workpool,
    _runtime,
)
from .scheduler import MIN_SLEEP_MS, CronScheduler
from .schedules import (
    CronSchedule,
    IntervalSchedule,
    _Compiled,
    compile_schedule,
)
from .types import (
    CronDetails,
    CronInfo,
    CronNameTaken,
    CronNotFound,
    MisfirePolicy,
    OverlapPolicy,
    _check_id,
    _current,
    _default_id,
    _details,
    _info,
    _num,
    _one_of,
    _pairs,
    _s,
    _schedule_of,
)

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("rkit.crons")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # a workpool name

CLAIM_LIMIT = 100
CLAIM_LEASE_MS = 30_000.0
MAX_SLEEP_MS = 1_000.0
HISTORY_LEN = 20
MAX_HISTORY_LEN = 1_000
MAX_ARGS_BYTES = 1_000_000
"""Largest JSON of a cron's arguments (stored in its hash, passed on every run)."""
RUN_ACTION = "rkit.crons:run"
FINISH_ACTION = "rkit.crons:finish"

# -- the pool kind and the execution path ---------------------------------------------


@dataclass(frozen=True)
class CronKind(PoolKind):
    """The pool kind cron executions run on: ``kind="cron"``, logs on ``rkit.crons``,
    a generous cap (executions of all crons of a namespace share it)."""

    kind: str = "cron"
    logger: str = "rkit.crons"
    default_max_parallelism: int = 1_000


CRON = CronKind()


def _register_actions(app: App) -> None:
    """The internal actions every App with crons has: the execution wrapper and the
    pool's on_complete that records outcomes."""
    if RUN_ACTION in app.actions:
        return

    async def run(ns: str, id: str, tick: int) -> str | None:
        crons = _crons_of(app, ns)
        reply = await crons._call_one("begin", id, str(tick), _runtime(app).worker_id)
        if _s(reply[0]) != "OK":
            logger.debug("cron %s tick %s skipped: %s", id, tick, _s(reply[1]))
            return "skipped"
        fn_name, args = _s(reply[1]), codec.loads(_s(reply[2]))
        try:
            action = app.get_action(fn_name)
        except ActionNotFound:
            raise FunctionNotRegistered(fn_name) from None
        token = _current.set((id, int(tick)))
        try:  # a failure is logged by the pool (an ERROR on rkit.crons, with traceback)
            await action.fn(**args)
        finally:
            _current.reset(token)
        return None

    async def finish(args: OnCompleteArgs) -> None:
        ns = (args.context or {}).get("ns", "default")
        cron_id, _, tick = str(args.work_id).rpartition(":")
        result = args.result
        if isinstance(result, Success):
            if result.return_value == "skipped":
                return
            status, error = "success", ""
        elif isinstance(result, Failed):
            lost = result.error == CRON.lost_error
            status, error = ("lost" if lost else "failed"), result.error
        elif isinstance(result, Canceled):
            status, error = "canceled", ""
        await _crons_of(app, ns)._call_one(
            "finish", cron_id, tick, status, error[:4096], history=True
        )

    app.action(name=RUN_ACTION)(run)
    app.action(name=FINISH_ACTION)(finish)


def _crons_of(app: App, ns: str) -> Crons:
    found = app.components.get_or_create(CRON.kind, ns)
    if not isinstance(found, Crons):
        raise ConfigError(f"this App has no crons namespace {ns!r}")
    return found


# -- the component --------------------------------------------------------------------


class Crons:
    """Recurring jobs of one namespace (see the module docstring).

    ``misfire`` and ``overlap`` are the defaults of crons registered through this
    instance (each cron keeps its own); ``retry`` (default ``None``: one execution per
    tick) and ``timeout_ms`` likewise. ``claim_limit``, ``claim_lease_ms`` and
    ``max_sleep_ms`` tune the scheduler every worker runs. ``register=False`` gives a
    handle for reads and control (admin views, CLI): not registered, no scheduler."""

    def __init__(
        self,
        app: App,
        namespace: str = "default",
        *,
        misfire: MisfirePolicy = "coalesce",
        overlap: OverlapPolicy = "skip",
        retry: RetryBehavior | bool | None = None,
        timeout_ms: float = MAX_TIMEOUT_MS,
        history_len: int = HISTORY_LEN,
        max_parallelism: int | None = None,
        lease_ms: float = 5_000,
        claim_limit: int = CLAIM_LIMIT,
        claim_lease_ms: float = CLAIM_LEASE_MS,
        max_sleep_ms: float = MAX_SLEEP_MS,
        id_factory: Callable[[], str] | None = None,
        register: bool = True,
    ) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
            raise ConfigError(
                f"crons namespace must match {_NAMESPACE_RE.pattern}, got {namespace!r:.80}"
            )
        if register and app.components.get(CRON.kind, namespace) is not None:
            app.components.add(CRON.kind, namespace, self)  # raises: one per name and App
        _check_policies(misfire, overlap)
        self._retry = _retry_json(retry)
        _check_timeout(timeout_ms)
        _check_history_len(history_len)
        if isinstance(claim_limit, bool) or not isinstance(claim_limit, int) or claim_limit < 1:
            raise ConfigError("claim_limit must be an int >= 1")
        for opt, val in (("claim_lease_ms", claim_lease_ms), ("max_sleep_ms", max_sleep_ms)):
            if not isinstance(val, int | float) or not MIN_SLEEP_MS <= val <= MAX_DURATION_MS:
                raise ConfigError(f"{opt} must be a number of ms in [10, 1e12]")
        self.app = app
        self.namespace = namespace
        self.misfire: MisfirePolicy = misfire
        self.overlap: OverlapPolicy = overlap
        self.timeout_ms = float(timeout_ms)
        self.history_len = history_len
        self.claim_limit = claim_limit
        self.claim_lease_ms = float(claim_lease_ms)
        self.max_sleep_ms = float(max_sleep_ms)
        self.id_factory = id_factory or _default_id
        self.tag = app.keys.tag(CRON.kind, namespace)
        self.keys = [
            f"{self.tag}:cr:{k}" for k in ("names", "due", "order", "seq", "stats", "events")
        ]
        self._s = {
            op: scripts.load("cron", op)
            for op in (
                "register",
                "claim",
                "commit",
                "begin",
                "finish",
                "delete",
                "pause",
                "resume",
                "trigger",
                "update",
                "get",
                "list",
                "stats",
            )
        }
        self.workpool = Workpool(
            app,
            namespace,
            kind=CRON,
            max_parallelism=max_parallelism,
            timeout_ms=MAX_TIMEOUT_MS,
            lease_ms=lease_ms,
            keep_result_ms=0,
            register=register,
        )
        self.wake = asyncio.Event()
        self.wake_channel = f"{self.tag}:cr:wake"
        _register_actions(app)
        if register:
            app.components.add(CRON.kind, namespace, self)
            app.components.set_factory(CRON.kind, lambda ns: Crons(app, ns))
            app.components.add_service(Service("crons", _start_schedulers, _stop_schedulers))
            app.components.add_router("/crons", "rkit.api.crons:router")
            hooks = operator_hooks(app)
            hooks.add_panel(Panel("cron", "Crons", _crons_panel, order=70))
            hooks.add_metrics("cron", _crons_metrics)

    @classmethod
    def view(cls, app: App, namespace: str = "default") -> Crons:
        """The App's registered crons of ``namespace``, else an unregistered handle."""
        found = app.components.get(CRON.kind, namespace)
        if isinstance(found, Crons):
            return found
        return cls(app, namespace, register=False)

    def __repr__(self) -> str:
        return f"Crons(namespace={self.namespace!r})"

    # -- plumbing -----------------------------------------------------------------------

    def _job_key(self, cron_id: str) -> str:
        return f"{self.tag}:cr:j:{cron_id}"

    def _history_key(self, cron_id: str) -> str:
        return f"{self.tag}:cr:h:{cron_id}"

    async def _call(self, op: str, *args: Any, keys: Sequence[str] = ()) -> Any:
        argv = [argv_now(self.app.clock), *args]
        return await self._s[op](self.app.redis, [*self.keys, *keys], argv)

    async def _call_one(self, op: str, cron_id: str, *args: Any, history: bool = False) -> Any:
        """A script acting on one cron (its hash, and its history with ``history``)."""
        keys = [self._job_key(cron_id)]
        if history:
            keys.append(self._history_key(cron_id))
        return await self._call(op, cron_id, *args, keys=keys)

    async def _wake(self) -> None:
        """Wake the schedulers now (a new next fire time may be earlier than they
        sleep): this process's at once, the others through the wake channel."""
        self.wake.set()
        redis: Any = self.app.redis  # a plain client (pub/sub; not on Cluster clients)
        if isinstance(redis, RedisCluster):
            return
        try:
            await redis.publish(self.wake_channel, "1")
        except (RedisError, OSError) as exc:  # the change is made; they wake within 1 s
            logger.debug("could not publish a cron wake-up: %s", exc)

    async def _now(self) -> float:
        return await self.app.server_time()

    # -- registering --------------------------------------------------------------------

    def _prepare(
        self,
        schedule: Any,
        fn: Callable[..., Any] | str,
        args: Mapping[str, Any] | None,
        name: str | None,
        misfire: MisfirePolicy | None,
        overlap: OverlapPolicy | None,
        retry: RetryBehavior | bool | None,
        timeout_ms: float | None,
        history_len: int | None,
    ) -> tuple[_Compiled, str, dict[str, str]]:
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ConfigError('cron name must be a non-empty str (or None for "no name")')
            check_part(name, "cron name")
        compiled = compile_schedule(schedule)
        try:
            fn_name = self.app.action_name(fn)
        except ActionNotFound as exc:
            raise FunctionNotRegistered(exc.name) from None
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise TypeError(
                f"args must be a mapping of keyword arguments, got {type(args).__name__}"
            )
        if not all(isinstance(k, str) for k in args):
            raise TypeError("args must have str keys")
        args_s = codec.dumps(dict(args), what=f"args of cron function {fn_name}")
        _check_args_size(args_s)
        misfire = self.misfire if misfire is None else misfire
        overlap = self.overlap if overlap is None else overlap
        _check_policies(misfire, overlap)
        retry_s = self._retry if retry is None else _retry_json(retry)
        tmo = self.timeout_ms if timeout_ms is None else timeout_ms
        _check_timeout(tmo)
        hlen = self.history_len if history_len is None else history_len
        _check_history_len(hlen)
        s = compiled.schedule
        fields = {
            "fn": fn_name,
            "args": args_s,
            "kind": s.kind,
            "misfire": misfire,
            "overlap": overlap,
            "retry": retry_s,
            "timeout_ms": codec.fmt_num(tmo),
            "history_len": str(hlen),
        }
        if isinstance(s, IntervalSchedule):
            fields["ms"] = repr(float(s.ms))
        else:
            fields["cronspec"] = s.cronspec
            fields["tz"] = s.tz or ""
        return compiled, fn_name, fields

    async def register(
        self,
        schedule: IntervalSchedule | CronSchedule | Mapping[str, Any],
        fn: Callable[..., Any] | str,
        args: Mapping[str, Any] | None = None,
        name: str | None = None,
        *,
        misfire: MisfirePolicy | None = None,
        overlap: OverlapPolicy | None = None,
        retry: RetryBehavior | bool | None = None,
        timeout_ms: float | None = None,
        history_len: int | None = None,
    ) -> str:
        """Register ``await fn(**args)`` on ``schedule``; returns the cron's id. The
        first fire is one interval after now, or the first matching time after now.
        A taken ``name`` raises :class:`CronNameTaken`; everything is validated before
        Redis is touched."""
        return await self._register(
            schedule, fn, args, name, False, misfire, overlap, retry, timeout_ms, history_len
        )

    async def register_if_absent(
        self,
        name: str,
        schedule: IntervalSchedule | CronSchedule | Mapping[str, Any],
        fn: Callable[..., Any] | str,
        args: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> str:
        """Atomic "register unless a cron of this name exists": the id of the cron
        named ``name`` (the existing one, or the one created now)."""
        if not isinstance(name, str) or not name:
            raise ConfigError("register_if_absent needs a non-empty name")
        return await self._register(
            schedule,
            fn,
            args,
            name,
            True,
            options.pop("misfire", None),
            options.pop("overlap", None),
            options.pop("retry", None),
            options.pop("timeout_ms", None),
            options.pop("history_len", None),
            **options,
        )

    async def _register(
        self,
        schedule: Any,
        fn: Callable[..., Any] | str,
        args: Mapping[str, Any] | None,
        name: str | None,
        if_absent: bool,
        misfire: MisfirePolicy | None,
        overlap: OverlapPolicy | None,
        retry: RetryBehavior | bool | None,
        timeout_ms: float | None,
        history_len: int | None,
        **unknown: Any,
    ) -> str:
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        compiled, _, fields = self._prepare(
            schedule, fn, args, name, misfire, overlap, retry, timeout_ms, history_len
        )
        cron_id = _check_id(self.id_factory())
        first = compiled.next_after(await self._now())
        reply = await self._call(
            "register",
            cron_id,
            name or "",
            codec.dumps(fields),
            str(first),
            "1" if if_absent else "0",
            keys=[self._job_key(cron_id)],
        )
        status, found = _s(reply[0]), _s(reply[1])
        if status == "NAME_TAKEN":
            raise CronNameTaken(name or "", found)
        if status == "EXISTS":
            raise ConfigError(f"cron id {cron_id!r} already exists (id_factory repeated an id)")
        if status == "OK":
            await self._wake()
        return found

    # -- reading ------------------------------------------------------------------------

    async def _get(
        self, cron_id: str | None, name: str | None, history: bool
    ) -> tuple[str, dict[str, str], list[Any]] | None:
        i, n = _one_of(cron_id, name)
        reply = await self._call("get", i, n, "1" if history else "0")
        if not reply:
            return None
        return _s(reply[0]), _pairs(reply[1]), list(reply[2])

    async def get(self, *, id: str | None = None, name: str | None = None) -> CronInfo | None:
        """The cron with this id or name (exactly one), or ``None``."""
        found = await self._get(id, name, False)
        return None if found is None else _info(found[0], found[1])

    async def details(
        self,
        *,
        id: str | None = None,
        name: str | None = None,
    ) -> CronDetails | None:
        """:meth:`get` plus next run, last run, status, error and the run history."""
        found = await self._get(id, name, True)
        return None if found is None else _details(*found)

    async def list(self) -> list[CronInfo]:
        """Every cron, in creation order."""
        out: list[CronInfo] = []
        async for cron_id, h in self._pages():
            out.append(_info(cron_id, h))
        return out

    async def list_details(
        self, *, offset: int = 0, limit: int = 100
    ) -> tuple[int, builtins.list[CronDetails]]:
        """One page of crons with their state (no history), and the total count."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ConfigError("offset must be an int >= 0")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ConfigError("limit must be an int in [1, 10000]")
        total, _, rows = await self._call("list", offset, limit)
        return int(total), [_details(_s(r[0]), _pairs(r[1]), []) for r in rows if r[1]]

    async def _pages(self, page: int = 500) -> Any:
        offset = 0
        while True:
            total, _, rows = await self._call("list", offset, page)
            for r in rows:
                if r[1]:
                    yield _s(r[0]), _pairs(r[1])
            offset += page
            if offset >= int(total):
                return

    async def stats(self) -> dict[str, Any]:
        """Counters of the namespace (fired, skipped, misfired, success, failed, lost,
        ...), and how many crons exist and are scheduled."""
        now, crons, scheduled, flat = await self._call("stats")
        counters = {k: int(v) for k, v in _pairs(flat).items()}
        return {"now_ms": float(now), "crons": int(crons), "scheduled": int(scheduled), **counters}

    async def events(self, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The newest events (registered, fired, skipped, started, finished, misfire,
        paused, resumed, deleted), newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ConfigError("limit must be an int in [1, 10000]")
        rows = await self.app.redis.xrevrange(self.keys[5], count=limit)
        return [{"stream_id": _s(i), **codec.loads(_s(f.get("e", "{}")))} for i, f in rows]

    # -- control ------------------------------------------------------------------------

    async def _resolve(self, cron_id: str | None, name: str | None) -> tuple[str, dict[str, str]]:
        found = await self._get(cron_id, name, False)
        if found is None:
            raise CronNotFound(
                f"Cron {cron_id} not found" if name is None else f'Cron "{name}" not found'
            )
        return found[0], found[1]

    async def delete(self, *, id: str | None = None, name: str | None = None) -> None:
        """Delete a cron: no further ticks; a queued execution never runs, a running
        one finishes. Unknown id / name: :class:`CronNotFound`."""
        cron_id, _ = await self._resolve(id, name)
        if _s(await self._call_one("delete", cron_id, history=True)) != "OK":
            raise CronNotFound(
                f"Cron {cron_id} not found" if name is None else f'Cron "{name}" not found'
            )

    async def pause(self, *, id: str | None = None, name: str | None = None) -> bool:
        """Stop firing (a running execution is not interrupted); ``False`` if it was
        paused already."""
        cron_id, _ = await self._resolve(id, name)
        reply = _s(await self._call_one("pause", cron_id))
        if reply == "NOT_FOUND":
            raise CronNotFound(f"Cron {cron_id} not found")
        return reply == "OK"

    async def resume(self, *, id: str | None = None, name: str | None = None) -> bool:
        """Fire again from the first tick after now (ticks missed while paused never
        fire); ``False`` if it was not paused."""
        cron_id, h = await self._resolve(id, name)
        compiled = compile_schedule(_schedule_of(h))
        now = await self._now()
        prev = _num(h.get("next_run"))
        if isinstance(compiled.schedule, IntervalSchedule) and prev is not None:
            nxt = prev if prev > now else compiled.next_after_now(prev, now)[0]
        else:
            nxt = compiled.next_after(now)
        reply = _s(await self._call_one("resume", cron_id, str(int(nxt))))
        if reply == "NOT_FOUND":
            raise CronNotFound(f"Cron {cron_id} not found")
        if reply == "OK":
            await self._wake()
        return reply == "OK"

    async def trigger(self, *, id: str | None = None, name: str | None = None) -> bool:
        """Run the cron now, outside its schedule (which is unchanged); ``False`` when
        its previous execution is still running (overlap ``skip``)."""
        cron_id, _ = await self._resolve(id, name)
        reply = await self._call_one("trigger", cron_id)
        status = _s(reply[0])
        if status == "NOT_FOUND":
            raise CronNotFound(f"Cron {cron_id} not found")
        if status == "BUSY":
            return False
        tick = int(_s(reply[1]))
        await self._enqueue([(cron_id, tick, _s(reply[2]), _s(reply[3]))])
        return True

    async def update(
        self,
        *,
        id: str | None = None,
        name: str | None = None,
        schedule: IntervalSchedule | CronSchedule | Mapping[str, Any] | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace the schedule and/or the arguments of a cron in place (same id and
        name, history kept). A new schedule starts from its first tick after now."""
        fields: dict[str, str] = {}
        compiled = None
        if schedule is not None:
            compiled = compile_schedule(schedule)
            s = compiled.schedule
            fields["kind"] = s.kind
            if isinstance(s, IntervalSchedule):
                fields.update(ms=repr(float(s.ms)), cronspec="", tz="")
            else:
                fields.update(ms="", cronspec=s.cronspec, tz=s.tz or "")
        if args is not None:
            if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
                raise TypeError("args must be a mapping with str keys")
            fields["args"] = codec.dumps(dict(args), what="args of the cron function")
            _check_args_size(fields["args"])
        cron_id, _ = await self._resolve(id, name)
        nxt = "" if compiled is None else str(compiled.next_after(await self._now()))
        reply = _s(await self._call_one("update", cron_id, codec.dumps(fields), nxt))
        if reply == "NOT_FOUND":
            raise CronNotFound(f"Cron {cron_id} not found")
        if nxt:
            await self._wake()

    # -- executions ---------------------------------------------------------------------

    async def _enqueue(self, fires: Sequence[tuple[str, int, str, str]]) -> None:
        """Enqueue one execution per fired tick (work id ``<id>:<tick>``); a tick
        already enqueued (by an earlier claim that did not commit) is left alone."""
        groups: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for cron_id, tick, retry_s, tmo in fires:
            groups.setdefault((retry_s, tmo), []).append((cron_id, tick))
        for (retry_s, tmo), items in groups.items():
            retry = RetryBehavior.model_validate_json(retry_s) if retry_s else None
            timeout = float(tmo) if tmo else self.timeout_ms
            try:
                await self._enqueue_batch(items, retry, timeout)
            except ResponseError as exc:
                if "already exists" not in str(exc):
                    raise
                for item in items:  # one of them was enqueued before: one by one
                    try:
                        await self._enqueue_batch([item], retry, timeout)
                    except ResponseError as one:
                        if "already exists" not in str(one):
                            raise

    async def _enqueue_batch(
        self, items: Sequence[tuple[str, int]], retry: RetryBehavior | None, timeout: float
    ) -> None:
        await self.workpool.enqueue_batch(
            RUN_ACTION,
            [{"ns": self.namespace, "id": i, "tick": t} for i, t in items],
            ids=[f"{i}:{t}" for i, t in items],
            on_complete=FINISH_ACTION,
            context={"ns": self.namespace},
            timeout_ms=timeout,
            retry_behavior=retry or RetryBehavior(max_attempts=1, initial_backoff_ms=0, base=1),
        )

    def scheduler(self, **options: Any) -> CronScheduler:
        """A :class:`CronScheduler` for this namespace (options default to this
        instance's ``claim_limit``, ``claim_lease_ms`` and ``max_sleep_ms``)."""
        return CronScheduler(self, **options)


def _check_policies(misfire: Any, overlap: Any) -> None:
    if misfire not in ("coalesce", "catch_up"):
        raise ConfigError(f"misfire must be 'coalesce' or 'catch_up', got {misfire!r}")
    if overlap not in ("skip", "allow"):
        raise ConfigError(f"overlap must be 'skip' or 'allow', got {overlap!r}")


def _check_timeout(timeout_ms: Any) -> None:
    if (
        isinstance(timeout_ms, bool)
        or not isinstance(timeout_ms, int | float)
        or not 0 < timeout_ms <= MAX_TIMEOUT_MS
    ):
        raise ConfigError(f"timeout_ms must be a number in (0, {MAX_TIMEOUT_MS:.0f}]")


def _check_args_size(args_s: str) -> None:
    size = len(args_s.encode("utf-8"))
    if size > MAX_ARGS_BYTES:
        raise PayloadTooLarge(f"cron args are {size} bytes (max: {MAX_ARGS_BYTES} bytes)")


def _check_history_len(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_HISTORY_LEN:
        raise ConfigError(f"history_len must be an int in [1, {MAX_HISTORY_LEN}]")


def _retry_json(retry: RetryBehavior | bool | None) -> str:
    if retry is None or retry is False:
        return ""
    if retry is True:
        return RetryBehavior(max_attempts=5, initial_backoff_ms=250, base=2).to_json()
    if isinstance(retry, RetryBehavior):
        return retry.to_json()
    raise ConfigError("retry must be a RetryBehavior, a bool or None")


_TASKS = "crons.schedulers"


def _start_schedulers(app: App) -> None:
    """The worker's service: one scheduler loop per registered namespace."""
    tasks: dict[str, asyncio.Task[None]] = app.components.state(_TASKS, dict)
    loop = asyncio.get_running_loop()
    for crons in app.components.of_kind(CRON.kind, Crons):
        task = tasks.get(crons.namespace)
        if task is None or task.done():
            tasks[crons.namespace] = loop.create_task(
                crons.scheduler().run_forever(), name=f"rkit-crons-{crons.namespace}"
            )


async def _stop_schedulers(app: App) -> None:
    tasks: dict[str, asyncio.Task[None]] = app.components.state(_TASKS, dict)
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    tasks.clear()


async def _crons_panel(app: App) -> list[Section]:
    """Dashboard panel: per namespace the crons with their next and last fires."""
    out = []
    for crons in app.components.of_kind(CRON.kind, Crons):
        total, page = await crons.list_details(limit=50)
        rows = [
            {
                "id": d.id,
                "name": d.name,
                "next run (ms)": None if d.paused else d.next_run_ms,
                "last fired (ms)": d.last_fired_ms,
                "last status": d.last_status,
                "last duration (ms)": d.last_duration_ms,
                "paused": d.paused,
            }
            for d in page
        ]
        paused = sum(1 for d in page if d.paused)
        out.append(
            Section(
                f"namespace {crons.namespace}",
                stats={"crons": total, "paused (first 50)": paused},
                columns=list(rows[0]) if rows else [],
                rows=rows,
            )
        )
    return out


_CRON_COUNTERS = ("fired", "skipped", "misfired", "success", "failed", "lost", "canceled")


async def _crons_metrics(app: App) -> list[Sample]:
    """/metrics: per namespace the crons and their fire / outcome counters (kept in
    Redis, so every scheduler's and worker's count is in them once)."""
    out = []
    for crons in app.components.of_kind(CRON.kind, Crons):
        st = await crons.stats()
        ns = {"namespace": crons.namespace}
        out.append(Sample("rkit_crons", "gauge", "Registered crons", ns, st["crons"]))
        for name in _CRON_COUNTERS:
            out.append(
                Sample(
                    "rkit_cron_events",
                    "counter",
                    "Cron fires and execution outcomes",
                    {**ns, "event": name},
                    int(st.get(name, 0)),
                )
            )
    return out
