"""Aggregate: an O(log n) order-statistics index (count, sum, rank, select, random,
pagination over key ranges), kept as a B-tree in Redis.

Every operation is one Lua script on one tree (``lua/aggregate/``); Python only
validates input, encodes keys into order-preserving strings (:mod:`.keys`) and decodes
replies (:mod:`.protocol`). Each namespace is its own tree with its own hash tag, so
namespaces spread over Cluster slots; ``hash_tag=`` puts them all in one slot.
:mod:`.tree` holds the shared client, :mod:`.direct` and :mod:`.table` the two front ends.
"""

# Names outside __all__ (the shared base class, type aliases and the codec helpers the
# admin API uses) are re-exported with "as" so they stay importable from here.
from .direct import DirectAggregate
from .keys import Int64
from .keys import decode_cursor as decode_cursor
from .keys import encode_cursor as encode_cursor
from .keys import ns_from_member as ns_from_member
from .keys import ns_member as ns_member
from .protocol import encode_bounds as encode_bounds
from .table import Change, TableAggregate
from .tree import Aggregate as Aggregate
from .tree import aggregate_names
from .types import SAME as SAME
from .types import AtQuery, Bound, Bounds, Eq, Item, Keep, Page, Prefix, Query, Range, Upserted
from .types import Key as Key
from .types import Namespace as Namespace
from .types import Order as Order

__all__ = [
    "AtQuery",
    "Bound",
    "Bounds",
    "Change",
    "DirectAggregate",
    "Eq",
    "Int64",
    "Item",
    "Keep",
    "Page",
    "Prefix",
    "Query",
    "Range",
    "TableAggregate",
    "Upserted",
    "aggregate_names",
]
