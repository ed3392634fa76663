"""The workpool's value types: retry behaviour, results and statuses, read models,
limits, and the small codecs between Python and the scripts' replies."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NewType

from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ResponseError

from .. import codec
from ..errors import ConfigError

logger = logging.getLogger("rkit.workpool")


LogLevel = Literal["DEBUG", "TRACE", "INFO", "REPORT", "WARN", "ERROR"]
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "TRACE", "INFO", "REPORT", "WARN", "ERROR")
WorkKind = Literal["action", "mutation", "query"]
WorkId = NewType("WorkId", str)
Rng = Callable[[], float]

DAY = 86_400_000.0
_POOL_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PY_LEVEL = {
    "DEBUG": logging.DEBUG,
    "TRACE": logging.DEBUG,
    "INFO": logging.INFO,
    "REPORT": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
}
CLAIM_LIMIT = 64
BATCH_CHUNK = 256
BATCH_BYTES = 8_000_000
MAX_TIMEOUT_MS = 600_000.0
"""Largest per-item timeout (the reference's 10-minute action limit). The arq
wrapper's timeout sits just above it plus the chaining window; arq derives its
in-progress key TTL (its own crash re-delivery delay) from the largest timeout."""
DLQ_MAX_LEN = 1_000
"""Dead letters kept per pool; beyond it the oldest are dropped (with their work)."""
DLQ_RETENTION_MS = 7 * DAY
"""How long a dead letter (and its work item) is kept for inspection and replay."""
CHAIN_SECONDS = 60.0
"""A worker keeps running freed-slot continuations inside one arq job this long."""
JOB_FUNCTION = "rkit_wp_run"
MAX_ID_LEN = 256


class RetryBehavior(BaseModel):
    """``max_attempts`` counts all attempts; the first retry waits about
    ``initial_backoff_ms * base**exponent_offset`` and each further one ``base`` times
    longer, at most ``max_backoff_ms`` (times a jitter factor in [0.5, 1.5))."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_attempts: int = Field(ge=0)
    initial_backoff_ms: float = Field(ge=0, allow_inf_nan=False)
    base: float = Field(gt=0, allow_inf_nan=False)
    max_backoff_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    exponent_offset: int = Field(default=0, ge=0, le=64)

    def to_json(self) -> str:
        """The form the scripts read (unset options left out)."""
        d: dict[str, Any] = {
            "max_attempts": self.max_attempts,
            "initial_backoff_ms": self.initial_backoff_ms,
            "base": self.base,
        }
        if self.max_backoff_ms is not None:
            d["max_backoff_ms"] = self.max_backoff_ms
        if self.exponent_offset:
            d["offset"] = self.exponent_offset
        return codec.dumps(d)


DEFAULT_RETRY_BEHAVIOR = RetryBehavior(max_attempts=5, initial_backoff_ms=250, base=2)
DEFAULT_ON_COMPLETE_RETRY = RetryBehavior(max_attempts=3, initial_backoff_ms=250, base=2)


class AsDict:
    """``to_dict()``: the JSON shape of a result or status (field names as keys)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True, slots=True)
class Success(AsDict):
    return_value: Any
    kind: Literal["success"] = "success"


@dataclass(frozen=True, slots=True)
class Failed(AsDict):
    error: str
    kind: Literal["failed"] = "failed"


@dataclass(frozen=True, slots=True)
class Canceled(AsDict):
    kind: Literal["canceled"] = "canceled"


RunResult = Success | Failed | Canceled


@dataclass(frozen=True, slots=True)
class Pending(AsDict):
    previous_attempts: int
    state: Literal["pending"] = "pending"


@dataclass(frozen=True, slots=True)
class Running(AsDict):
    previous_attempts: int
    state: Literal["running"] = "running"


@dataclass(frozen=True, slots=True)
class Finished(AsDict):
    """Finished, and the pool still keeps the item (its callback is owed, or
    ``keep_result_ms`` has not passed)."""

    state: Literal["finished"] = "finished"


@dataclass(frozen=True, slots=True)
class NotFound(AsDict):
    """The pool has no record of the id: never enqueued here, or forgotten (finished
    and past ``keep_result_ms`` -- with the default 0, as soon as it finished and its
    callback was acknowledged), or lost with Redis's data."""

    state: Literal["not_found"] = "not_found"


Status = Pending | Running | Finished | NotFound
CancelOutcome = Literal["CANCELED", "FLAGGED", "NOOP", "NOT_FOUND"]
"""What a cancel did to one id: ended it now, flagged running work (no further
attempts), nothing (already finished or flagged), or no record of the id."""


@dataclass(frozen=True, slots=True)
class OnCompleteArgs:
    """What an ``on_complete`` handler receives (``work_id`` is its idempotency key)."""

    work_id: WorkId
    context: Any
    result: RunResult


@dataclass(frozen=True, slots=True)
class PoolConfig:
    max_parallelism: int
    log_level: str


@dataclass(frozen=True, slots=True)
class RunningInfo:
    work_id: WorkId
    fn_name: str
    state: str
    started_at: float | None
    attempts: int
    worker: str | None
    lease_until: float


@dataclass(frozen=True, slots=True)
class Diagnostics:
    waiting: int
    due: int
    running: int
    completing: int
    spare_capacity: int
    dlq: int
    live: int
    oldest_pending_age_ms: float | None
    stats: dict[str, int]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    work_id: WorkId
    fn_name: str
    on_complete: str
    error: str
    dead_at: float


@dataclass(frozen=True, slots=True)
class PumpReport:
    dispatched: int
    reannounced: int
    callbacks: int
    next_wake_ms: float | None

    @property
    def did_work(self) -> bool:
        return bool(self.dispatched or self.reannounced or self.callbacks)


def _default_id() -> str:
    """Opaque, time-ordered ids (ms timestamp + randomness)."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(7)}"


def check_work_id(work_id: Any) -> str:
    """A work id as the scripts take it (``ConfigError`` before Redis is touched)."""
    if not isinstance(work_id, str) or not work_id or len(work_id) > MAX_ID_LEN:
        raise ConfigError(
            f"work id must be a non-empty str of at most {MAX_ID_LEN} chars, got {work_id!r:.80}"
        )
    return work_id


def error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def num_or_none(x: Any) -> float | None:
    return None if x in (None, "", False) else float(x)


def _fields(flat: Sequence[Any]) -> dict[str, str]:
    it = iter(flat)
    return {_s(k): _s(v) for k, v in zip(it, it, strict=True)}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def result_of(kind: str, result: str, error: str) -> RunResult:
    if kind == "success":
        return Success(codec.loads(result) if result else None)
    if kind == "failed":
        return Failed(error)
    return Canceled()


def _check_log_level(level: str | None) -> None:
    if level is not None and level not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")


def check_parallelism(value: Any, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("max_parallelism must be >= 0")
    if value > limit:
        raise ConfigError(f"max_parallelism must be <= {limit}")


def _script_error(exc: ResponseError) -> ConfigError | None:
    msg = str(exc)
    for marker in ("max_parallelism must", "log_level must"):
        if marker in msg:
            return ConfigError(msg[msg.index(marker) :].split(" script:")[0].strip())
    return None


MAX_TRACEBACK_BYTES = 8192
"""A failed attempt's traceback is stored with its work item up to this many bytes
(UTF-8); a longer one keeps its last frames and the exception line."""


def format_traceback(exc: BaseException, limit: int = MAX_TRACEBACK_BYTES) -> str:
    """``exc``'s traceback as text, at most ``limit`` bytes: when longer, the start is
    dropped at a line boundary (the innermost frames and the exception stay)."""
    text = "".join(traceback.format_exception(exc))
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    marker = "... {} bytes of earlier traceback omitted ...\n"
    room = limit - len(marker.format(len(raw)).encode())
    tail = raw[len(raw) - room :]
    cut = tail.find(b"\n")
    if 0 <= cut < len(tail) - 1:
        tail = tail[cut + 1 :]  # start at a whole line
    kept = tail.decode("utf-8", errors="ignore")
    return marker.format(len(raw) - len(kept.encode())) + kept


_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _log_events(
    lines: Sequence[Any],
    log: logging.Logger = logger,
    exc: BaseException | None = None,
) -> None:
    """Log the scripts' events (JSON lines) as records with a readable message and
    the event's fields as record attributes (``extra``); ``exc`` (the exception of the
    attempt this process just reported) is attached to that attempt's failure event
    as ``exc_info``, so handlers print its traceback."""
    for raw in lines:
        ev = json.loads(_s(raw))  # the scripts emit JSON objects only
        level = _PY_LEVEL.get(ev.get("level", "INFO"), logging.INFO)
        failure = ev.get("event") == "completed" and ev.get("status") in ("retrying", "failed")
        log.log(
            level,
            _event_message(ev),
            exc_info=exc if failure else None,
            extra={(f"rkit_{k}" if k in _RESERVED else k): v for k, v in ev.items()},
        )


_HEAD = ("component", "pool", "event", "level", "work_id")
_FIRST = {"status": 0, "attempts": 1, "attempt": 1, "fn_name": 2, "error": 9}


def _event_message(ev: dict[str, Any]) -> str:
    """``"<component> <pool>: <event> <work_id> status=... attempts=... fn_name=...
    (other fields by name) error=..."``: readable and greppable, in a fixed order; the
    same values are the record's attributes."""
    head = f"{ev.get('component')} {ev.get('pool')}: {ev.get('event')}"
    if "work_id" in ev:
        head += f" {ev['work_id']}"
    keys = sorted((k for k in ev if k not in _HEAD), key=lambda k: (_FIRST.get(k, 5), k))
    parts = [f"{k}={json.dumps(ev[k], ensure_ascii=False)}" for k in keys]
    return " ".join([head, *parts])
