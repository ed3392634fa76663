"""The aggregate's value types: keys, namespaces, bounds, queries and the items and
pages that reads return (plain frozen dataclasses, shared by every front end)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeAlias, TypeVar

Key: TypeAlias = Any
"""None | bool | int | float | str | bytes | Int64 | list | tuple | dict[str, Key]"""
Namespace: TypeAlias = Any
"""Same value space as keys; ``None`` is the default partition."""
K = TypeVar("K")
Order = Literal["asc", "desc"]

# new_namespace default of replace: stay in the current namespace (not the default partition)
SAME: Any = ...


@dataclass(frozen=True, slots=True)
class Bound:
    key: Key
    inclusive: bool = True
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Range:
    lower: Bound | None = None
    upper: Bound | None = None


@dataclass(frozen=True, slots=True)
class Prefix:
    values: Sequence[Key]


@dataclass(frozen=True, slots=True)
class Eq:
    key: Key


Bounds: TypeAlias = Range | Prefix | Eq | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Item(Generic[K]):
    key: K
    id: str
    sum_value: float


@dataclass(frozen=True, slots=True)
class Upserted(Generic[K]):
    """What ``insert_or_replace`` did for one id."""

    item: Item[K]
    """The id's item now (the kept one when ``written`` is false)."""
    previous: Item[K] | None
    """The id's item before (``None``: the id had none)."""
    written: bool
    """False when ``keep="min"``/``"max"`` kept the previous item."""


Keep = Literal["last", "min", "max"]


@dataclass(frozen=True, slots=True)
class Page(Generic[K]):
    items: list[Item[K]]
    cursor: str
    is_done: bool


@dataclass(frozen=True, slots=True)
class Query:
    bounds: Bounds | None = None
    namespace: Namespace = None


@dataclass(frozen=True, slots=True)
class AtQuery:
    offset: int
    bounds: Bounds | None = None
    namespace: Namespace = None
