"""The values of the crons: errors, what ``get``/``details`` return, a scheduler
round's report, and the decoding of the scripts' replies."""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .. import codec
from ..errors import ConfigError, RkitError
from ..keys import check_part
from .schedules import CronSchedule, IntervalSchedule

MisfirePolicy = Literal["coalesce", "catch_up"]
OverlapPolicy = Literal["skip", "allow"]
MAX_ID_LEN = 200


class CronNameTaken(RkitError):
    """A cron with this name exists in the namespace (reference wording)."""

    def __init__(self, name: str, existing_id: str) -> None:
        super().__init__(f'Cron with name "{name}" already exists')
        self.name = name
        self.existing_id = existing_id


class CronNotFound(RkitError, LookupError):
    """No cron with this id / name (reference wording)."""


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
