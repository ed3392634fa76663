"""TableAggregate: the front end that mirrors a table, deriving items from documents,
with trigger callbacks and rebuild/verify against the documents."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from ..errors import ConfigError
from . import keys as ak
from .protocol import check_chunk, check_sum, no_queue
from .tree import Aggregate
from .types import Bounds, K, Namespace, Order

if TYPE_CHECKING:
    from ..app import App

D = TypeVar("D")


@dataclass(frozen=True, slots=True)
class Change(Generic[D]):
    """One table write, as a trigger library reports it."""

    operation: Literal["insert", "update", "delete"]
    id: str
    old_doc: D | None
    new_doc: D | None


def _default_id(doc: Any) -> str:
    return cast(str, doc["_id"])


class TableAggregate(Aggregate[K], Generic[K, D]):
    """An aggregate mirroring a table: items derived from documents."""

    def __init__(
        self,
        app: App,
        name: str,
        *,
        sort_key: Callable[[D], K],
        sum_value: Callable[[D], float] | None = None,
        namespace: Callable[[D], Namespace] | None = None,
        id_of: Callable[[D], str] = _default_id,
        **kw: Any,
    ) -> None:
        super().__init__(app, name, **kw)
        self.sort_key = sort_key
        self.sum_of = sum_value
        self.namespace_of = namespace
        self.id_of = id_of

    def _parts(self, doc: D) -> tuple[K, str, float, Namespace]:
        s = 0.0 if self.sum_of is None else self.sum_of(doc)
        ns = None if self.namespace_of is None else self.namespace_of(doc)
        return self.sort_key(doc), self.id_of(doc), s, ns

    async def insert(self, doc: D, *, queued: bool = False) -> None:
        no_queue(queued)
        key, id, s, ns = self._parts(doc)
        await self._insert(key, id, s, ns)

    async def delete(self, doc: D, *, queued: bool = False) -> None:
        no_queue(queued)
        key, id, _, ns = self._parts(doc)
        await self._delete(key, id, ns, False)

    async def delete_if_exists(self, doc: D, *, queued: bool = False) -> None:
        no_queue(queued)
        key, id, _, ns = self._parts(doc)
        await self._delete(key, id, ns, True)

    async def _move(
        self, old_doc: D, new_doc: D, mode: Literal["strict", "or_insert", "upsert"]
    ) -> None:
        key, id, _, ns = self._parts(old_doc)
        new_key, new_id, s, new_ns = self._parts(new_doc)
        await self._replace(key, id, new_key, new_id, s, ns, new_ns, mode)

    async def replace(self, old_doc: D, new_doc: D, *, queued: bool = False) -> None:
        no_queue(queued)
        await self._move(old_doc, new_doc, "strict")

    async def replace_or_insert(self, old_doc: D, new_doc: D, *, queued: bool = False) -> None:
        no_queue(queued)
        await self._move(old_doc, new_doc, "or_insert")

    async def insert_if_does_not_exist(self, doc: D, *, queued: bool = False) -> None:
        no_queue(queued)
        await self._move(doc, doc, "or_insert")

    async def index_of_doc(
        self,
        doc: D,
        *,
        id: str | None = None,
        bounds: Bounds | None = None,
        order: Order = "asc",
        stale: bool = False,
    ) -> int:
        """``index_of(sort_key(doc))`` in ``namespace(doc)``; the doc's id is not used
        unless passed as ``id`` (ties resolve to the first equal key)."""
        key, _, _, ns = self._parts(doc)
        return await self.index_of(key, id=id, bounds=bounds, order=order, namespace=ns)

    def _dispatch(
        self,
        insert: Callable[[D], Awaitable[None]],
        replace: Callable[[D, D], Awaitable[None]],
        delete: Callable[[D], Awaitable[None]],
    ) -> Callable[[Change[D]], Awaitable[None]]:
        async def on_change(change: Change[D]) -> None:
            if change.operation == "insert" and change.new_doc is not None:
                await insert(change.new_doc)
            elif change.operation == "update" and change.old_doc is not None:
                assert change.new_doc is not None, "update without new_doc"
                await replace(change.old_doc, change.new_doc)
            elif change.operation == "delete" and change.old_doc is not None:
                await delete(change.old_doc)
            else:
                raise ConfigError(f"malformed change: {change!r}")

        return on_change

    def trigger(self, *, queued: bool = False) -> Callable[[Change[D]], Awaitable[None]]:
        """A table-trigger callback: insert/update/delete → insert/replace/delete."""
        no_queue(queued)
        return self._dispatch(self.insert, self.replace, self.delete)

    def idempotent_trigger(self, *, queued: bool = False) -> Callable[[Change[D]], Awaitable[None]]:
        """Like :meth:`trigger` with the idempotent twins, safe to replay: an update
        whose new item already exists overwrites it instead of failing."""
        no_queue(queued)

        async def upsert_move(old_doc: D, new_doc: D) -> None:
            await self._move(old_doc, new_doc, "upsert")

        return self._dispatch(self.insert_if_does_not_exist, upsert_move, self.delete_if_exists)

    async def _expected(self, docs: AsyncIterator[D]) -> dict[str, dict[str, str]]:
        """``N(ns) -> {position: sum}`` of the documents."""
        want: dict[str, dict[str, str]] = defaultdict(dict)
        async for doc in docs:
            key, id, s, ns = self._parts(doc)
            want[ak.ns_member(ns)][ak.position(key, ak.check_id(id))] = check_sum(s)
        return want

    async def rebuild(
        self,
        docs: AsyncIterator[D],
        *,
        namespace_filter: Callable[[Namespace], bool] | None = None,
        chunk: int = 1000,
    ) -> int:
        """Clear the (filtered) namespaces and re-insert every document; returns the
        number of items written. Not atomic across chunks: run it while writes pause."""
        check_chunk(chunk)
        want = await self._expected(docs)
        keep = namespace_filter or (lambda _ns: True)
        members = {ak.ns_member(ns) for ns in await self.namespaces()} | set(want)
        written = 0
        for member in members:
            ns = ak.ns_from_member(member)
            if not keep(ns):
                continue
            await self.clear(namespace=ns)
            items = want.get(member, {})
            ops = [("i", pos, s) for pos, s in sorted(items.items())]
            await self._bulk(ns, ops, chunk)
            written += len(ops)
        return written

    async def verify(self, docs: AsyncIterator[D]) -> list[str]:
        """Differences between the documents and the trees (empty when in sync)."""
        want = await self._expected(docs)
        members = {ak.ns_member(ns) for ns in await self.namespaces()} | set(want)
        out: list[str] = []
        for member in sorted(members):
            ns = ak.ns_from_member(member)
            expected = want.get(member, {})
            seen: set[str] = set()
            async for item in self.iter(namespace=ns, page_size=1000):
                pos = ak.position(item.key, item.id)
                seen.add(pos)
                if pos not in expected:
                    out.append(f"namespace {ns!r}: extra item {item.key!r} id {item.id!r}")
                elif float(expected[pos]) != item.sum_value:
                    out.append(
                        f"namespace {ns!r}: item {item.key!r} id {item.id!r} has sum "
                        f"{item.sum_value!r}, expected {float(expected[pos])!r}"
                    )
            for pos in expected.keys() - seen:
                key, id = ak.decode_position(pos)
                out.append(f"namespace {ns!r}: missing item {key!r} id {id!r}")
        return out
