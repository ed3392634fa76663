"""Dynamic crons: recurring jobs registered, inspected, paused and deleted at run time
from any process (spec crons.md).

Design:

* **State** lives under one hash tag per namespace (``app.keys.tag("cron", ns)``):
  one hash per cron (``cr:j:<id>``), ``cr:names`` (name -> id), ``cr:due`` (ZSET of
  next fire times), ``cr:order`` (creation order), ``cr:stats``, ``cr:events`` (a
  stream capped at about 10,000) and a bounded run history per cron (``cr:h:<id>``,
  the last ``history_len`` outcomes). Every change is one script in ``lua/cron/``.
* **Exactly one fire per due time**: any number of :class:`CronScheduler` loops (one
  per worker process) *claim* due crons in one script; a claim re-scores the cron at
  its claim deadline and carries a token. The scheduler enqueues the tick's execution
  (work id ``<cron id>:<tick>``: a second enqueue of a tick is refused) and then
  *commits* the next fire time, only under its token and only if the claimed tick is
  still the cron's next one. A scheduler that dies between claim and commit leaves
  the tick to be claimed again after the lease; its execution runs once (the work
  id, and ``begin`` refusing a finished tick).
* **Executions** run on a workpool of the ``cron`` kind (the one execution path):
  an internal action begins the tick (fenced: a deleted cron, a tick never fired or
  already finished is skipped), calls the cron's function with its arguments, and
  the pool's durable ``on_complete`` records the outcome (success, failed, lost,
  canceled), duration and attempts in the cron's hash and history. Retries follow
  the cron's ``retry`` (default none: one execution per tick, the reference's rule).
* **Overlap** ``skip`` (default): a tick whose previous execution is still pending
  or running is skipped (counted, not queued); ``allow`` fires regardless.
* **Missed ticks** (all schedulers down): ``coalesce`` (default) fires once for the
  overdue tick and continues at the first tick after now, in phase; ``catch_up``
  processes every missed tick in order (each subject to the overlap rule).
* **Schedules**: :func:`Interval` (ms >= 1,000; fire times ``prev + floor(ms)``, no
  drift) or :func:`Cron` (5 fields, or 6 with seconds first, croniter, in an IANA
  zone). Daylight saving: local wall times are what match; a time skipped by a
  spring-forward transition fires once at the first instant after the gap, a time
  repeated by a fall-back transition fires once, at its first instant.
* **Scheduling loop**: every worker runs one scheduler per namespace its App
  constructs; it sleeps until the earliest due time (at most ``max_sleep_ms``) and is
  woken at once by a register or resume in any process (``PUBLISH`` on the
  namespace's wake channel).
* **Clock**: the Redis server's (or the App's test clock), passed to every script.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import functools
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from . import codec, scripts
from .clock import MAX_DURATION_MS, argv_now
from .errors import (
    ActionNotFound,
    ConfigError,
    FunctionNotRegistered,
    PayloadTooLarge,
    RkitError,
)
from .keys import check_part
from .registry import Service
from .workpool import (
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

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "Cron",
    "CronDetails",
    "CronInfo",
    "CronNameTaken",
    "CronNotFound",
    "CronRun",
    "CronSchedule",
    "CronScheduler",
    "Crons",
    "Interval",
    "IntervalSchedule",
    "InvalidSchedule",
    "Schedule",
    "TickReport",
    "compile_schedule",
    "current_tick",
]

logger = logging.getLogger("rkit.crons")

MIN_INTERVAL_MS = 1_000
CLAIM_LIMIT = 100
CLAIM_LEASE_MS = 30_000.0
MAX_SLEEP_MS = 1_000.0
MIN_SLEEP_MS = 10.0
ROUND_GRACE_S = 10.0
"""How long a stopping scheduler lets its current round finish."""
HISTORY_LEN = 20
MAX_HISTORY_LEN = 1_000
MAX_MISFIRE_COUNT = 1_000
"""Missed cron-expression ticks counted one by one at most (beyond: this number)."""
MAX_ID_LEN = 200
MAX_ARGS_BYTES = 1_000_000
"""Largest JSON of a cron's arguments (stored in its hash, passed on every run)."""
RUN_ACTION = "rkit.crons:run"
FINISH_ACTION = "rkit.crons:finish"
MisfirePolicy = Literal["coalesce", "catch_up"]
OverlapPolicy = Literal["skip", "allow"]


# -- errors ---------------------------------------------------------------------------


class InvalidSchedule(ConfigError):
    """A schedule that can never run: interval below 1,000 ms or not finite, a bad
    cron expression, an unknown time zone. Raised before Redis is touched."""


class CronNameTaken(RkitError):
    """A cron with this name exists in the namespace (reference wording)."""

    def __init__(self, name: str, existing_id: str) -> None:
        super().__init__(f'Cron with name "{name}" already exists')
        self.name = name
        self.existing_id = existing_id


class CronNotFound(RkitError, LookupError):
    """No cron with this id / name (reference wording)."""


# -- schedules ------------------------------------------------------------------------


class IntervalSchedule(BaseModel):
    """Every ``ms`` milliseconds (finite, >= 1,000); fire times ``prev + floor(ms)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["interval"] = "interval"
    ms: float


class CronSchedule(BaseModel):
    """A cron expression (5 fields, or 6 with seconds first) in ``tz`` (IANA, UTC when
    ``None``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["cron"] = "cron"
    cronspec: str
    tz: str | None = None


Schedule = Annotated[IntervalSchedule | CronSchedule, Field(discriminator="kind")]
_SCHEDULE: TypeAdapter[IntervalSchedule | CronSchedule] = TypeAdapter(Schedule)


def Interval(ms: float) -> IntervalSchedule:
    """``Interval(60_000)``: every minute (validated on register)."""
    return IntervalSchedule(ms=ms)


def Cron(cronspec: str, tz: str | None = None) -> CronSchedule:
    """``Cron("0 9 * * 1-5", tz="Europe/Berlin")`` (validated on register)."""
    return CronSchedule(cronspec=cronspec, tz=tz)


_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # a workpool name
_HASH_FIELD = re.compile(r"(?<![A-Za-z])H")
_LAST_WEEKDAY = re.compile(r"^([0-7])L$")


@dataclass(frozen=True)
class _Compiled:
    """A validated schedule, ready to compute fire times."""

    schedule: IntervalSchedule | CronSchedule
    expr: str = ""
    seconds: bool = False
    zone: ZoneInfo | None = None

    @property
    def step(self) -> int:
        assert isinstance(self.schedule, IntervalSchedule)
        return math.floor(self.schedule.ms)

    def next_after(self, after_ms: float) -> int:
        """The first fire time strictly after ``after_ms`` (integer ms)."""
        if isinstance(self.schedule, IntervalSchedule):
            return math.floor(after_ms) + self.step
        return _next_cron(self, after_ms)

    def next_after_now(self, tick: float, now: float) -> tuple[int, int]:
        """Coalesce: the first fire time strictly after ``now`` in the phase of
        ``tick``, and how many ticks in (tick, now] are skipped."""
        if isinstance(self.schedule, IntervalSchedule):
            k = int((now - tick) // self.step)
            return int(tick) + (k + 1) * self.step, k
        missed, t = 0, self.next_after(tick)
        while t <= now and missed < MAX_MISFIRE_COUNT:
            missed += 1
            t = self.next_after(t)
        return (t if t > now else self.next_after(now)), missed


def _cron_expr(spec: str) -> tuple[str, bool]:
    """The croniter form of a reference cron expression and whether it has seconds."""
    fields = spec.split()
    if len(fields) == 1 and fields[0].startswith("@") and fields[0] != "@reboot":
        return fields[0], False
    if len(fields) not in (5, 6) or _HASH_FIELD.search(spec):
        raise InvalidSchedule(f'Invalid cronspec: "{spec}"')
    # the reference's last-weekday form "5L" is croniter's "L5"
    dow = ",".join(_LAST_WEEKDAY.sub(r"L\1", part) for part in fields[-1].split(","))
    return " ".join([*fields[:-1], dow]), len(fields) == 6


def compile_schedule(schedule: Any) -> _Compiled:
    """Validate a schedule (a model or a mapping); :class:`InvalidSchedule` if bad."""
    if isinstance(schedule, Mapping):
        try:
            schedule = _SCHEDULE.validate_python(dict(schedule))
        except ValidationError as exc:
            raise InvalidSchedule(f"invalid schedule: {_first_error(exc)}") from None
    if isinstance(schedule, IntervalSchedule):
        ms = schedule.ms
        if isinstance(ms, bool) or not math.isfinite(ms) or ms < MIN_INTERVAL_MS:
            raise InvalidSchedule("Interval must be >= 1000ms")
        if ms > MAX_DURATION_MS:
            raise InvalidSchedule(f"Interval must be <= {MAX_DURATION_MS:.0f}ms")
        return _Compiled(schedule)
    if not isinstance(schedule, CronSchedule):
        raise InvalidSchedule(
            "schedule must be an IntervalSchedule, a CronSchedule or a mapping, "
            f"got {schedule!r:.80}"
        )
    zone = _zone(schedule.tz)
    expr, seconds = _cron_expr(schedule.cronspec)
    compiled = _Compiled(schedule, expr, seconds, zone)
    try:  # the first fire time proves the expression can match at all
        _next_cron(compiled, time.time() * 1000)
    except (CroniterError, ValueError, KeyError, IndexError, OverflowError):
        raise InvalidSchedule(f'Invalid cronspec: "{schedule.cronspec}"') from None
    return compiled


@functools.lru_cache(maxsize=4096)
def _compiled_cron(cronspec: str, tz: str | None) -> _Compiled:
    """A stored (valid) cron expression, compiled once per process."""
    return compile_schedule(CronSchedule(cronspec=cronspec, tz=tz))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg"))


def _zone(tz: str | None) -> ZoneInfo:
    if tz is None:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise InvalidSchedule(f'Invalid timezone: "{tz}"') from None


def _next_cron(c: _Compiled, after_ms: float) -> int:
    """Match local wall times in the cron's zone, from the wall time of ``after_ms``;
    map each match to its instant (a time in a spring-forward gap -> the first instant
    after the gap; a repeated fall-back time -> its first instant) and return the first
    one strictly after ``after_ms``."""
    zone = c.zone or ZoneInfo("UTC")
    after = datetime.fromtimestamp(after_ms / 1000.0, UTC)
    wall = after.astimezone(zone).replace(tzinfo=None, microsecond=0)
    it = croniter(c.expr, wall, second_at_beginning=c.seconds, day_or=True)
    for _ in range(1000):
        cand: datetime = it.get_next(datetime)
        at = _instant_ms(cand, zone)
        if at > after_ms:
            return at
    raise InvalidSchedule(f'Invalid cronspec: "{c.expr}"')  # pragma: no cover


def _instant_ms(wall: datetime, zone: ZoneInfo) -> int:
    first = wall.replace(tzinfo=zone, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == wall:
        return round(utc.timestamp() * 1000)
    # a wall time that does not exist (spring-forward gap): the transition instant,
    # found between the two readings of the wall time (offsets before/after the gap)
    lo = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = utc
    if lo > hi:
        lo, hi = hi, lo
    before = lo.astimezone(zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    # transitions happen on whole seconds: the one in (lo, hi]
    whole = lo.replace(microsecond=0) + timedelta(seconds=1)
    if whole <= hi and whole.astimezone(zone).utcoffset() != before:
        hi = whole
    return round(hi.timestamp() * 1000)


# -- values ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CronInfo:
    """A cron as ``get``/``list`` show it (reference shape; ``function`` is the
    registered action name)."""

    id: str
    name: str | None
    function: str
    args: dict[str, Any]
    schedule: IntervalSchedule | CronSchedule

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schedule"] = self.schedule.model_dump(exclude_none=True)
        return d


@dataclass(frozen=True)
class CronRun:
    """One finished execution in a cron's history."""

    tick_ms: float
    status: str
    """``success``, ``failed``, ``lost`` (its worker died) or ``canceled``."""
    finished_at: float
    started_at: float | None = None
    duration_ms: float | None = None
    attempts: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class CronDetails(CronInfo):
    """:class:`CronInfo` plus the schedule's state and the last runs."""

    next_run_ms: float | None = None
    """``None`` while paused."""
    last_fired_ms: float | None = None
    last_started_ms: float | None = None
    last_finished_ms: float | None = None
    last_status: str | None = None
    last_error: str | None = None
    last_duration_ms: float | None = None
    paused: bool = False
    created_at: float = 0.0
    misfire: MisfirePolicy = "coalesce"
    overlap: OverlapPolicy = "skip"
    skipped: int = 0
    history: list[CronRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["history"] = [asdict(r) for r in self.history]
        return d


@dataclass(frozen=True)
class TickReport:
    """What one scheduler round did."""

    now_ms: float
    claimed: int
    fired: int
    skipped: int
    misfired: int
    stale: int
    next_due_ms: float | None


_current: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "rkit_cron_tick", default=None
)


def current_tick() -> tuple[str, int] | None:
    """Inside a cron's execution: ``(cron id, tick ms)`` of the tick being run."""
    return _current.get()


def _num(x: str | None) -> float | None:
    return None if x is None or x == "" else float(x)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    it = iter(flat)
    return {_s(k): _s(v) for k, v in zip(it, it, strict=True)}


def _schedule_of(h: Mapping[str, str]) -> IntervalSchedule | CronSchedule:
    if h.get("kind") == "interval":
        return IntervalSchedule(ms=float(h["ms"]))
    return CronSchedule(cronspec=h.get("cronspec", ""), tz=h.get("tz") or None)


def _info(cron_id: str, h: Mapping[str, str]) -> CronInfo:
    return CronInfo(
        id=cron_id,
        name=h.get("name") or None,
        function=h.get("fn", ""),
        args=codec.loads(h.get("args") or "{}"),
        schedule=_schedule_of(h),
    )


def _run(raw: str) -> CronRun:
    e = codec.loads(raw)
    return CronRun(
        tick_ms=float(e["tick"]),
        status=e["status"],
        finished_at=float(e["finished_at"]),
        started_at=_num(e.get("started_at")),
        duration_ms=_num(e.get("duration_ms")),
        attempts=e.get("attempts"),
        error=e.get("error"),
    )


def _details(cron_id: str, h: Mapping[str, str], hist: Sequence[Any]) -> CronDetails:
    info = _info(cron_id, h)
    paused = h.get("paused") == "1"
    return CronDetails(
        **{k: getattr(info, k) for k in ("id", "name", "function", "args", "schedule")},
        next_run_ms=None if paused else _num(h.get("next_run")),
        last_fired_ms=_num(h.get("last_fired")),
        last_started_ms=_num(h.get("last_started")),
        last_finished_ms=_num(h.get("last_finished")),
        last_status=h.get("last_status") or None,
        last_error=h.get("last_error") or None,
        last_duration_ms=_num(h.get("last_duration_ms")),
        paused=paused,
        created_at=float(h.get("created_at", 0)),
        misfire=h.get("misfire", "coalesce"),  # type: ignore[arg-type]
        overlap=h.get("overlap", "skip"),  # type: ignore[arg-type]
        skipped=int(h.get("skipped", 0)),
        history=[_run(_s(r)) for r in hist],
    )


def _default_id() -> str:
    return f"{int(time.time() * 1000):011x}{uuid.uuid4().hex[:10]}"


def _check_id(cron_id: Any) -> str:
    if not isinstance(cron_id, str) or not cron_id or len(cron_id) > MAX_ID_LEN:
        raise ConfigError(
            f"cron id must be a non-empty str of at most {MAX_ID_LEN} chars, got {cron_id!r:.80}"
        )
    return cron_id


def _one_of(cron_id: str | None, name: str | None) -> tuple[str, str]:
    if (cron_id is None) == (name is None):
        raise ConfigError("pass exactly one of id= or name=")
    if cron_id is not None:
        return _check_id(cron_id), ""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"cron name must be a non-empty str, got {name!r:.80}")
    return "", check_part(name, "cron name")


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


# -- the scheduler --------------------------------------------------------------------


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
