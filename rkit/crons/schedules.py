"""Schedules of the crons: intervals and cron expressions (croniter), validated
before anything is written, and the fire-time rules (no drift, phase-preserving
coalesce, daylight saving by local wall time)."""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..clock import MAX_DURATION_MS
from ..errors import ConfigError

MIN_INTERVAL_MS = 1_000
MAX_MISFIRE_COUNT = 1_000
"""Missed cron-expression ticks counted one by one at most (beyond: this number)."""


class InvalidSchedule(ConfigError):
    """A schedule that can never run: interval below 1,000 ms or not finite, a bad
    cron expression, an unknown time zone. Raised before Redis is touched."""


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
