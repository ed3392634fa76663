"""Structured logs: rkit's log records as JSON lines with one schema.

Components log through :mod:`logging` (``rkit.workpool``, ``rkit.retrier``,
``rkit.action_cache``, ``rkit.presence``, ...); the workpool's and retrier's scripts
attach their event's fields to each record. :class:`JsonFormatter` writes every
record as one JSON object with these keys, always in this order:

``ts``          ISO 8601 UTC time of the record, milliseconds
``level``       ``DEBUG`` / ``INFO`` / ``WARNING`` / ``ERROR`` / ``CRITICAL``
``logger``      the logger's name
``component``   the component kind (``workpool``, ``retrier``, ``action_cache``, ...)
``instance``    which one (a pool's name, a cache name, a presence instance), or null
``event``       what happened (``started``, ``completed``, ``report``, ``fetch``, ...)
``ids``         the identifiers of the event (every ``*_id`` field), maybe ``{}``
``duration_ms`` how long it took, when the event measures it (an attempt's run
                time on ``completed``), else null
``message``     the human-readable line
``fields``      the event's other fields (``status``, ``attempts``, ``error``, ...)

plus ``exc`` (the formatted traceback) when the record carries one.

    configure_json_logs()               # rkit's loggers -> JSON lines on stderr
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

__all__ = ["SCHEMA_KEYS", "JsonFormatter", "configure_json_logs", "event_of"]

SCHEMA_KEYS = (
    "ts",
    "level",
    "logger",
    "component",
    "instance",
    "event",
    "ids",
    "duration_ms",
    "message",
    "fields",
)

# attributes every LogRecord has: not event fields
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_INSTANCE_FIELDS = ("instance", "pool", "cache", "limiter", "namespace")
_NOT_FIELDS = frozenset({"component", "event", "level", "duration_ms", *_INSTANCE_FIELDS})


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


def event_of(record: logging.LogRecord) -> dict[str, Any]:
    """The schema's object for ``record`` (without ``ts``/``level``/``logger``
    formatting concerns: usable by handlers that ship dicts rather than text)."""
    extra = {
        (k[5:] if k.startswith("rkit_") else k): v
        for k, v in vars(record).items()
        if k not in _STANDARD
    }
    message = record.getMessage()
    component = extra.get("component")
    if component is None and record.name.startswith("rkit."):
        component = record.name.split(".")[1]
    event = extra.get("event")
    # the action cache logs its fetches as a JSON message of its own
    if event is None and message.startswith("{") and record.name == "rkit.action_cache":
        try:
            payload = json.loads(message)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and payload.get("type") == "action-cache-stats":
            event = "fetch"
            extra.setdefault("instance", payload.get("name"))
            for k in ("get", "put"):
                if k in payload:
                    extra.setdefault(k, payload[k])
    instance = next((extra[k] for k in _INSTANCE_FIELDS if extra.get(k) is not None), None)
    ids = {k: extra[k] for k in sorted(extra) if k.endswith("_id") and extra[k] is not None}
    duration = extra.get("duration_ms")
    fields = {k: _jsonable(v) for k, v in extra.items() if k not in _NOT_FIELDS and k not in ids}
    return {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "component": component,
        "instance": None if instance is None else str(instance),
        "event": event,
        "ids": {k: str(v) for k, v in ids.items()},
        "duration_ms": duration if isinstance(duration, int | float) else None,
        "message": message,
        "fields": fields,
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record, keys in :data:`SCHEMA_KEYS` order."""

    def format(self, record: logging.LogRecord) -> str:
        out = event_of(record)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), default=repr, ensure_ascii=False)


def configure_json_logs(
    level: int | str = logging.INFO, *, stream: IO[str] | None = None, logger: str = "rkit"
) -> logging.Handler:
    """Send ``logger``'s records (default: all of rkit's) as JSON lines to
    ``stream`` (default stderr); returns the handler (remove it to undo)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    target = logging.getLogger(logger)
    target.addHandler(handler)
    target.setLevel(level)
    return handler
