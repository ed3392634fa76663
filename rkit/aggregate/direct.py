"""DirectAggregate: the front end written directly by ``(key, id, sum_value)``."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from . import keys as ak
from .protocol import check_chunk, check_sum, no_queue
from .tree import Aggregate
from .types import SAME, K, Namespace


class DirectAggregate(Aggregate[K]):
    """An aggregate written directly by ``(key, id, sum_value)``."""

    async def insert(
        self,
        key: K,
        id: str,
        sum_value: float = 0.0,
        *,
        namespace: Namespace = None,
        queued: bool = False,
    ) -> None:
        """Add an item; ``KeyExistsError`` when ``(key, id)`` is already there."""
        no_queue(queued)
        await self._insert(key, id, sum_value, namespace)

    async def delete(
        self, key: K, id: str, *, namespace: Namespace = None, queued: bool = False
    ) -> None:
        """Remove an item; ``KeyNotFoundError`` (code ``DELETE_MISSING_KEY``) if absent."""
        no_queue(queued)
        await self._delete(key, id, namespace, False)

    async def delete_if_exists(
        self, key: K, id: str, *, namespace: Namespace = None, queued: bool = False
    ) -> None:
        no_queue(queued)
        await self._delete(key, id, namespace, True)

    async def replace(
        self,
        key: K,
        id: str,
        new_key: K,
        *,
        sum_value: float = 0.0,
        namespace: Namespace = None,
        new_namespace: Namespace = SAME,
        queued: bool = False,
    ) -> None:
        """Move an item to ``new_key`` (and ``new_namespace``; default: the same one)
        with a new sum, atomically; ``KeyNotFoundError`` if it is missing."""
        no_queue(queued)
        await self._replace(key, id, new_key, id, sum_value, namespace, new_namespace, "strict")

    async def replace_or_insert(
        self,
        key: K,
        id: str,
        new_key: K,
        *,
        sum_value: float = 0.0,
        namespace: Namespace = None,
        new_namespace: Namespace = SAME,
        queued: bool = False,
    ) -> None:
        no_queue(queued)
        await self._replace(key, id, new_key, id, sum_value, namespace, new_namespace, "or_insert")

    async def insert_if_does_not_exist(
        self,
        key: K,
        id: str,
        sum_value: float = 0.0,
        *,
        namespace: Namespace = None,
        queued: bool = False,
    ) -> None:
        """Insert, or re-write an existing item with the new sum (the reference's
        behaviour: an existing item is overwritten, not kept)."""
        no_queue(queued)
        await self._replace(key, id, key, id, sum_value, namespace, SAME, "or_insert")

    async def insert_many(
        self,
        items: Sequence[tuple[K, str, float]],
        *,
        namespace: Namespace = None,
        chunk: int = 1000,
    ) -> None:
        """Insert many items, ``chunk`` per script (each chunk sorted, all or nothing).
        A duplicate raises ``KeyExistsError``; earlier chunks stay applied."""
        check_chunk(chunk)
        ops = []
        for i, item in enumerate(items):
            if not isinstance(item, tuple | list) or not 2 <= len(item) <= 3:
                raise ConfigError(
                    f"items[{i}] must be (key, id) or (key, id, sum_value), got {item!r}"
                )
            key, id, *rest = item
            ops.append(("i", ak.position(key, ak.check_id(id)), check_sum(rest[0] if rest else 0)))
        for i in range(0, len(ops), chunk):
            ops[i : i + chunk] = sorted(ops[i : i + chunk], key=lambda o: o[1])
        await self._bulk(namespace, ops, chunk)
