"""JSON is the only serialisation format in rkit (no pickle anywhere)."""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import SerializationError

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(value: Any, *, what: str = "value") -> str:
    """Encode ``value`` as compact JSON or raise :class:`SerializationError` naming ``what``."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} must be JSON-serialisable: {exc}") from None


def loads(data: str | bytes) -> Any:
    return json.loads(data)


def fmt_num(x: float) -> str:
    """A number for ARGV: exact round trip through Lua's ``tonumber``."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    f = float(x)
    if not math.isfinite(f):
        raise SerializationError(f"number must be finite, got {x!r}")
    return repr(f)
