"""DirectAggregate: the front end written directly by ``(key, id, sum_value)``."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from . import keys as ak
from .protocol import check_chunk, check_keep, check_sum, decode_item, no_queue
from .tree import Aggregate
from .types import SAME, Item, K, Keep, Namespace, Upserted


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

    # -- by id: one item per id, found and replaced without knowing its key -----------

    async def insert_or_replace(
        self,
        id: str,
        key: K,
        sum_value: float = 0.0,
        *,
        namespace: Namespace = None,
        keep: Keep = "last",
    ) -> Upserted[K]:
        """Put the item of ``id`` at ``key`` in one atomic script: the item this id
        was written at before (by this method) is replaced, or inserted when there is
        none. ``keep="min"``/``"max"`` writes only when ``key`` is lower/higher than the
        id's current key (a best-score board: concurrent upserts of one id leave the
        best); ``"last"`` (default) always writes, so the last upsert to run wins.
        Items of the id written with plain ``insert`` at other keys are not seen."""
        no_queue(False)
        check_keep(keep)
        pos = ak.position(key, ak.check_id(id))
        s = check_sum(sum_value)
        written, prev_pos, prev_sum, _created = await self._upsert(
            self._tree(namespace), id, pos, s, keep
        )
        previous = decode_item(prev_pos, prev_sum) if prev_pos else None
        if written == "1":
            return Upserted(Item(ak.decode_position(pos)[0], id, float(s)), previous, True)
        assert previous is not None  # kept: the id's current item
        return Upserted(previous, previous, False)

    async def get_by_id(self, id: str, *, namespace: Namespace = None) -> Item[K] | None:
        """The item written by ``insert_or_replace`` for ``id``, or ``None``."""
        res = await self._run("get_id", self._tree(namespace).wkeys, [ak.check_id(id)])
        return decode_item(res[0], res[1]) if res else None

    async def delete_by_id(self, id: str, *, namespace: Namespace = None) -> Item[K] | None:
        """Remove the item written by ``insert_or_replace`` for ``id``; returns it
        (``None`` when the id has none)."""
        tree = self._tree(namespace)
        head = self._defaults(tree)
        res = await self._run("delete_id", tree.wkeys, [head[4], ak.check_id(id), *head[:2]])
        if not res:
            return None
        if res[2] == "1":
            await self._unregister(tree)
        return decode_item(res[0], res[1])
