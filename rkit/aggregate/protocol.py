"""What crosses between Python and the aggregate's Lua scripts: the loaded scripts,
argument checks and ARGV encoding (run before Redis is touched), reply decoding and the
script error codes mapped to exceptions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .. import scripts
from ..errors import (
    AggregateError,
    ConfigError,
    InvalidNodeSize,
    KeyExistsError,
    KeyNotFoundError,
    OffsetOutOfRange,
    TreeAlreadyInitialized,
    TreeCorrupted,
)
from . import keys as ak
from .types import Bound, Bounds, Eq, Item, Prefix, Range

ERRORS: dict[str, type[AggregateError]] = {
    cls.code: cls
    for cls in (KeyExistsError, KeyNotFoundError, OffsetOutOfRange, TreeAlreadyInitialized)
}
ERRORS["AGG_CORRUPT"] = TreeCorrupted
SCRIPTS = {
    op: scripts.load("aggregate", op)
    for op in (
        "insert",
        "delete",
        "replace",
        "bulk",
        "range",
        "count",
        "at",
        "page",
        "random",
        "get",
        "init",
        "clear",
        "make_root_lazy",
        "stats",
        "register_ns",
        "validate",
        "shape",
        "dump",
        "upsert",
        "get_id",
        "delete_id",
        "unregister_ns",
    )
}


# -- argument checks and ARGV encoding -------------------------------------------------------


def _bound(b: Any, what: str) -> Bound:
    if isinstance(b, Bound):
        return b
    if isinstance(b, Mapping) and "key" in b and set(b) <= {"key", "inclusive", "id"}:
        return Bound(b["key"], bool(b.get("inclusive", True)), b.get("id"))
    raise ConfigError(f"{what} must be a Bound or {{'key', 'inclusive', 'id'}}, got {b!r}")


def encode_bounds(bounds: Bounds | None) -> tuple[str, str]:
    """Exclusive ``(lo, hi)`` position strings of ``bounds`` (``""`` = unbounded)."""
    if bounds is None:
        return "", ""
    if isinstance(bounds, Mapping):
        if set(bounds) == {"eq"}:
            bounds = Eq(bounds["eq"])
        elif set(bounds) == {"prefix"}:
            bounds = Prefix(bounds["prefix"])
        elif set(bounds) <= {"lower", "upper"}:
            lower, upper = bounds.get("lower"), bounds.get("upper")
            bounds = Range(
                None if lower is None else _bound(lower, "bounds.lower"),
                None if upper is None else _bound(upper, "bounds.upper"),
            )
        else:
            raise ConfigError(f"bounds must have lower/upper, prefix or eq, got {set(bounds)}")
    if isinstance(bounds, Range):
        lo = hi = ""
        if bounds.lower is not None:
            b = _bound(bounds.lower, "bounds.lower")
            lo = ak.lower(b.key, b.inclusive, b.id)
        if bounds.upper is not None:
            b = _bound(bounds.upper, "bounds.upper")
            hi = ak.upper(b.key, b.inclusive, b.id)
        return lo, hi
    if isinstance(bounds, Eq):
        return ak.lower(bounds.key, True), ak.upper(bounds.key, True)
    if isinstance(bounds, Prefix):
        return ak.prefix(bounds.values)
    raise ConfigError(f"bounds must be Range, Prefix, Eq or a mapping, got {bounds!r}")


def check_offset(offset: Any) -> int:
    """An offset Lua's doubles hold exactly (a tree never has 2**53 items)."""
    if isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > 2**53:
        raise ConfigError(f"offset must be an integer within +-2**53, got {offset!r}")
    return offset


def check_page_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"page_size must be an integer >= 1, got {size!r}")
    return size


def check_order(order: Any) -> bool:
    if order not in ("asc", "desc"):
        raise ConfigError(f"order must be 'asc' or 'desc', got {order!r}")
    return bool(order == "desc")


MAX_NODE_SIZE = 1024


def check_node_size(m: Any) -> int | None:
    if m is None:
        return None
    if isinstance(m, bool) or not isinstance(m, int) or not 4 <= m <= MAX_NODE_SIZE or m % 2:
        raise InvalidNodeSize(
            f"MAX_NODE_SIZE must be even, at least 4 and at most {MAX_NODE_SIZE}, got {m!r}"
        )
    return m


def check_sum(s: Any) -> str:
    """A sum as ARGV: NaN and infinities are rejected (they would poison every total
    above the item), as are ints too large for a float."""
    if isinstance(s, bool) or not isinstance(s, int | float):
        raise ConfigError(f"sum_value must be a finite number, got {s!r}")
    try:
        f = float(s)
    except OverflowError:
        raise ConfigError(
            "sum_value must be a finite number, got an int too large for a float"
        ) from None
    if not math.isfinite(f):
        raise ConfigError(f"sum_value must be a finite number, got {s!r}")
    return repr(f)


def check_keep(keep: Any) -> str:
    if keep not in ("last", "min", "max"):
        raise ConfigError(f"keep must be 'last', 'min' or 'max', got {keep!r}")
    return str(keep)


MAX_CHUNK = 10_000  # operations per script: one script must stay within a few ms


def check_chunk(chunk: Any) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= MAX_CHUNK:
        raise ConfigError(f"chunk must be an integer in [1, {MAX_CHUNK}], got {chunk!r}")
    return chunk


def check_max_nodes(max_nodes: Any) -> int:
    if (
        isinstance(max_nodes, bool)
        or not isinstance(max_nodes, int)
        or not 1 <= max_nodes <= 1_000_000
    ):
        raise ConfigError(f"max_nodes must be an integer in [1, 1000000], got {max_nodes!r}")
    return max_nodes


def query_part(query: Any, name: str) -> Any:
    """``query[name]`` of a mapping (``None`` when absent) or ``query.<name>`` of a
    :class:`Query`/:class:`AtQuery`-like object; ``ConfigError`` when it has none."""
    if isinstance(query, Mapping):
        return query.get(name)
    try:
        return getattr(query, name)
    except AttributeError:
        raise ConfigError(
            f"a batch query needs {name!r}: pass a Query, an AtQuery or a mapping, got {query!r}"
        ) from None


def no_queue(queued: bool) -> None:
    if queued:
        raise ConfigError(
            "queued=True (writes applied later by a background batch) is not supported by rkit yet"
        )


def lazy_arg(lazy: bool | None) -> str:
    return "" if lazy is None else ("1" if lazy else "0")


# -- replies ----------------------------------------------------------------------------------


def decode_item(pos: str, s: str) -> Item[Any]:
    key, id = ak.decode_position(pos)
    return Item(key, id, float(s))


def decode_items(flat: Sequence[str]) -> list[Item[Any]]:
    return [decode_item(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
