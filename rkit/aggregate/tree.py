"""The aggregate's core: :class:`Aggregate`, the client of one B-tree per namespace
(reads, maintenance and the write primitives both front ends build on)."""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, cast

from redis.crc import key_slot
from redis.exceptions import ResponseError

from .. import keys as keyparts
from ..clock import argv_now
from ..errors import ConfigError
from ..keys import MAX_KEY_PART_BYTES, BoundedCache, check_max_bytes, str_bytes
from . import keys as ak
from .protocol import (
    ERRORS,
    SCRIPTS,
    check_chunk,
    check_max_nodes,
    check_node_size,
    check_offset,
    check_order,
    check_page_size,
    check_sum,
    decode_item,
    decode_items,
    encode_bounds,
    lazy_arg,
    query_part,
)
from .types import SAME, AtQuery, Bounds, Item, K, Namespace, Order, Page, Query

if TYPE_CHECKING:
    from ..app import App

# items per page script, so one script stays within a few milliseconds; larger pages
# take several calls
PAGE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class _Tree:
    m: str
    n: str
    i: str
    member: str
    namespace: Namespace

    @property
    def keys(self) -> tuple[str, str]:
        """What reads declare: meta and nodes."""
        return (self.m, self.n)

    @property
    def wkeys(self) -> tuple[str, str, str]:
        """What writes declare: meta, nodes and the by-id index (same hash tag)."""
        return (self.m, self.n, self.i)


def _names_key(app: App) -> str:
    return app.keys.tag("agg") + ":names"


async def aggregate_names(app: App) -> list[str]:
    """Every aggregate name that has written a tree in this App's namespace."""
    redis: Any = app.redis
    return sorted(await redis.smembers(_names_key(app)))


class Aggregate(Generic[K]):
    """Reads and maintenance shared by :class:`DirectAggregate` and :class:`TableAggregate`.

    ``default_max_node_size``/``default_root_lazy`` are the settings of trees created
    by a first write (the reference always uses 16 and lazy). ``rng`` (``random.random``
    by default) feeds ``random()``.
    ``stale=`` is accepted for parity; without queued mode every read is current.
    ``notify=True``: every write also publishes the tree's new version on
    :meth:`channel` (same slot as the tree). Namespaces encode to at most
    ``max_namespace_bytes`` (1 KiB) and ``name``/``hash_tag`` are at most 1 KiB of
    UTF-8, else ``KeyTooLong``. A tree that deletes leave empty is dropped.
    """

    def __init__(
        self,
        app: App,
        name: str,
        *,
        default_max_node_size: int = 16,
        default_root_lazy: bool = True,
        hash_tag: str | None = None,
        notify: bool = False,
        rng: Callable[[], float] | None = None,
        max_namespace_bytes: int = MAX_KEY_PART_BYTES,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"aggregate name must be a non-empty str, got {name!r}")
        keyparts.check_part(name, "aggregate name")
        if hash_tag is not None and (not isinstance(hash_tag, str) or not hash_tag):
            raise ConfigError(f"hash_tag must be a non-empty str or None, got {hash_tag!r}")
        if hash_tag is not None:
            keyparts.check_part(hash_tag, "hash_tag")
        self.max_namespace_bytes = check_max_bytes(max_namespace_bytes, "max_namespace_bytes")
        self.app = app
        self.name = name
        self.default_max_node_size = check_node_size(default_max_node_size) or 16
        self.default_root_lazy = bool(default_root_lazy)
        self.hash_tag = hash_tag
        self.notify = bool(notify)
        self._rng = rng or _random.random
        if hash_tag is None:
            self._registry = app.keys.tag("agg", name)
        else:
            self._registry = f"{app.keys.tag('agg', hash_tag)}:{keyparts.encode(name)}"
        # bounded by bytes: namespaces come from users
        self._trees: BoundedCache[str, _Tree] = BoundedCache(4096, 4 << 20)
        self._registered: BoundedCache[str, bool] = BoundedCache(4096, 1 << 20)
        app.components.add("aggregate", name, self)

    # -- keys and plumbing ---------------------------------------------------------------

    def _stem(self, member: str) -> str:
        if self.hash_tag is None:
            return f"{self.app.keys.tag('agg', self.name)[:-1]}:{member}}}"
        return f"{self._registry}:{member}"

    def _tree(self, namespace: Namespace) -> _Tree:
        member = ak.ns_member(namespace, self.max_namespace_bytes)
        tree = self._trees.get(member)
        if tree is None:
            stem = self._stem(member)
            tree = _Tree(f"{stem}:m", f"{stem}:n", f"{stem}:i", member, namespace)
            self._trees.put(member, tree, str_bytes(member, stem) * 4)
        return tree

    def _defaults(self, tree: _Tree) -> list[str]:
        """The common ARGV head of write scripts: default M, lazy, now, ns, notify."""
        return [
            str(self.default_max_node_size),
            "1" if self.default_root_lazy else "0",
            argv_now(self.app.clock),
            tree.member,
            "1" if self.notify else "0",
        ]

    async def _run(self, op: str, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        try:
            return await SCRIPTS[op](self.app.redis, keys, args)
        except ResponseError as exc:
            code, _, msg = str(exc).partition(" ")
            cls = ERRORS.get(code)
            if cls is None:
                raise
            raise cls(f"aggregate {self.name!r}: {msg}") from None

    async def _register(self, tree: _Tree, reply: Any) -> None:
        """After a write: list the aggregate's name and the tree's namespace, once per
        process and again whenever the write created the tree (reply 2: first write,
        or Redis lost its data since). The name index is in another Cluster slot, so
        these are further idempotent commands, not part of the write's script."""
        created = int(reply) == 2
        if not created and tree.member in self._registered:
            return
        if created or self.name not in self._registered:
            redis: Any = self.app.redis
            await redis.sadd(_names_key(self.app), self.name)
            self._registered.put(self.name, True, str_bytes(self.name))
        await SCRIPTS["register_ns"](
            self.app.redis, (f"{self._registry}:ns", f"{self._registry}:nsseq"), [tree.member]
        )
        self._registered.put(tree.member, True, str_bytes(tree.member))

    async def _unregister(self, tree: _Tree) -> None:
        """After a write dropped ``tree`` (left empty): unlist it, then list it again
        if a concurrent write re-created it meanwhile (the registry stays a superset
        of the trees; it is in another slot, so this cannot be one script)."""
        self._registered.pop(tree.member)
        await SCRIPTS["unregister_ns"](self.app.redis, (f"{self._registry}:ns",), [tree.member])
        redis: Any = self.app.redis
        if await redis.hexists(tree.m, "M"):
            await self._register(tree, 2)

    # -- reads -------------------------------------------------------------------------

    async def count(
        self, *, bounds: Bounds | None = None, namespace: Namespace = None, stale: bool = False
    ) -> int:
        tree = self._tree(namespace)
        res = await self._run("count", tree.keys, encode_bounds(bounds))
        return int(res[0])

    async def sum(
        self, *, bounds: Bounds | None = None, namespace: Namespace = None, stale: bool = False
    ) -> float:
        tree = self._tree(namespace)
        res = await self._run("range", tree.keys, encode_bounds(bounds))
        return float(res[1])

    async def _batch(
        self, op: str, queries: Sequence[Any], width: int, encode: Callable[[Any], list[str]]
    ) -> list[Any]:
        """Run per-tree batches (one script per tree, trees concurrently), in input order."""
        groups: dict[str, tuple[_Tree, list[int], list[str]]] = {}
        for i, q in enumerate(queries):
            if not q:
                raise ConfigError("You must pass bounds and/or namespace")
            ns = query_part(q, "namespace")
            tree = self._tree(ns)
            group = groups.setdefault(tree.member, (tree, [], []))
            group[1].append(i)
            group[2].extend(encode(q))
        out: list[Any] = [None] * len(queries)
        replies = await asyncio.gather(
            *(self._run(op, t.keys, args) for t, _, args in groups.values())
        )
        for (_, idx, _), res in zip(groups.values(), replies, strict=True):
            for j, i in enumerate(idx):
                out[i] = res[j * width : (j + 1) * width]
        return out

    @staticmethod
    def _bounds_of(q: Any) -> list[str]:
        return list(encode_bounds(query_part(q, "bounds")))

    async def count_batch(self, queries: Sequence[Query], *, stale: bool = False) -> list[int]:
        """Counts of many queries; one snapshot per tree (not across namespaces)."""
        return [int(r[0]) for r in await self._batch("count", queries, 1, self._bounds_of)]

    async def sum_batch(self, queries: Sequence[Query], *, stale: bool = False) -> list[float]:
        return [float(r[1]) for r in await self._batch("range", queries, 2, self._bounds_of)]

    async def at(
        self,
        offset: int,
        *,
        bounds: Bounds | None = None,
        namespace: Namespace = None,
        stale: bool = False,
    ) -> Item[K]:
        """The item at a 0-based rank inside ``bounds``; negative offsets count from
        the end. ``OffsetOutOfRange`` beyond the range or on an empty tree."""
        offset = check_offset(offset)
        tree = self._tree(namespace)
        res = await self._run("at", tree.keys, [offset, *encode_bounds(bounds)])
        return decode_item(res[0], res[1])

    async def at_batch(self, queries: Sequence[AtQuery], *, stale: bool = False) -> list[Item[K]]:
        def encode(q: Any) -> list[str]:
            return [str(check_offset(query_part(q, "offset"))), *self._bounds_of(q)]

        return [decode_item(r[0], r[1]) for r in await self._batch("at", queries, 2, encode)]

    async def index_of(
        self,
        key: K,
        *,
        id: str | None = None,
        bounds: Bounds | None = None,
        order: Order = "asc",
        namespace: Namespace = None,
        stale: bool = False,
    ) -> int:
        """Items before ``(key, id)`` (asc) or after it (desc) inside the bounds; only
        the bound on the counting side is used (the other one is ignored, as in the
        reference)."""
        desc = check_order(order)
        lo, hi = encode_bounds(bounds)
        if desc:
            args = [ak.upper(key, True, id), hi]
        else:
            args = [lo, ak.lower(key, True, id)]
        tree = self._tree(namespace)
        return int((await self._run("count", tree.keys, args))[0])

    async def offset_of(
        self,
        key: K,
        namespace: Namespace = None,
        id: str | None = None,
        bounds: Bounds | None = None,
    ) -> int:
        """Deprecated alias of ``index_of(order="asc")``."""
        return await self.index_of(key, id=id, bounds=bounds, namespace=namespace)

    async def offset_until(
        self,
        key: K,
        namespace: Namespace = None,
        id: str | None = None,
        bounds: Bounds | None = None,
    ) -> int:
        """Deprecated alias of ``index_of(order="desc")``."""
        return await self.index_of(key, id=id, bounds=bounds, order="desc", namespace=namespace)

    async def _first(self, bounds: Bounds | None, namespace: Namespace, order: Order) -> Any:
        page = await self.paginate(bounds=bounds, namespace=namespace, order=order, page_size=1)
        return page.items[0] if page.items else None

    async def min(
        self, *, bounds: Bounds | None = None, namespace: Namespace = None, stale: bool = False
    ) -> Item[K] | None:
        return cast("Item[K] | None", await self._first(bounds, namespace, "asc"))

    async def max(
        self, *, bounds: Bounds | None = None, namespace: Namespace = None, stale: bool = False
    ) -> Item[K] | None:
        return cast("Item[K] | None", await self._first(bounds, namespace, "desc"))

    async def random(
        self, *, bounds: Bounds | None = None, namespace: Namespace = None, stale: bool = False
    ) -> Item[K] | None:
        """A uniform pick inside the bounds (count and pick in one atomic script, so the
        pick cannot fall outside a range that shrank meanwhile); ``None`` if empty."""
        r = self._rng()
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0.0 <= r < 1.0:
            raise ConfigError(f"rng must return a float in [0, 1), got {r!r}")
        tree = self._tree(namespace)
        res = await self._run("random", tree.keys, [repr(float(r)), *encode_bounds(bounds)])
        return decode_item(res[0], res[1]) if res else None

    async def paginate(
        self,
        *,
        bounds: Bounds | None = None,
        cursor: str | None = None,
        order: Order = "asc",
        page_size: int = 100,
        namespace: Namespace = None,
        stale: bool = False,
    ) -> Page[K]:
        """One page after ``cursor`` (exclusive); the end cursor is ``""``."""
        size = check_page_size(page_size)
        desc = check_order(order)
        lo, hi = encode_bounds(bounds)
        if cursor == "":
            return Page([], "", True)
        if cursor is not None:
            if desc:
                hi = ak.decode_cursor(cursor)
            else:
                lo = ak.decode_cursor(cursor)
        tree = self._tree(namespace)
        items: list[Item[K]] = []
        while True:
            want = min(size - len(items), PAGE_LIMIT)
            res = await self._run("page", tree.keys, [lo, hi, order, want])
            items.extend(decode_items(res[2:]))
            if res[1] == "1":
                return Page(items, "", True)
            if len(items) >= size:
                return Page(items, ak.encode_cursor(res[0]), False)
            if desc:
                hi = res[0]
            else:
                lo = res[0]

    async def iter(
        self,
        *,
        bounds: Bounds | None = None,
        order: Order = "asc",
        page_size: int = 100,
        namespace: Namespace = None,
        stale: bool = False,
    ) -> AsyncIterator[Item[K]]:
        """Every item inside the bounds, fetched ``page_size`` at a time."""
        cursor: str | None = None
        while True:
            page = await self.paginate(
                bounds=bounds, cursor=cursor, order=order, page_size=page_size, namespace=namespace
            )
            for item in page.items:
                yield item
            if page.is_done:
                return
            cursor = page.cursor

    async def get(self, key: K, id: str, *, namespace: Namespace = None) -> Item[K] | None:
        """The item stored at ``(key, id)`` or ``None`` (extension)."""
        pos = ak.position(key, ak.check_id(id))
        res = await self._run("get", self._tree(namespace).keys, [pos])
        return None if res == "" else decode_item(pos, res)

    async def paginate_namespaces(
        self, cursor: str | None = None, page_size: int = 100
    ) -> tuple[list[Namespace], str, bool]:
        """Namespaces that have a tree, in creation order; the end cursor is
        ``"endcursor"``, done when a page is shorter than ``page_size``."""
        size = check_page_size(page_size)
        if cursor == "endcursor":
            return [], "endcursor", True
        if cursor is None or cursor == "":
            start = "-inf"
        elif isinstance(cursor, str) and cursor.isascii() and cursor.isdigit():
            start = f"({int(cursor)}"
        else:
            raise ConfigError(f"not a namespace cursor of this aggregate: {cursor!r}")
        rows = await self.app.redis.zrangebyscore(
            f"{self._registry}:ns", start, "+inf", start=0, num=size, withscores=True
        )
        page = [ak.ns_from_member(m) for m, _ in rows]
        if len(rows) < size:
            return page, "endcursor", True
        return page, str(int(rows[-1][1])), False

    async def iter_namespaces(self, page_size: int = 100) -> AsyncIterator[Namespace]:
        cursor: str | None = None
        while True:
            page, cursor, done = await self.paginate_namespaces(cursor, page_size)
            for ns in page:
                yield ns
            if done:
                return

    def channel(self, namespace: Namespace = None) -> str:
        """The pub/sub channel of a tree's change notifications (``notify=True``)."""
        return self._tree(namespace).m[:-2] + ":changed"

    async def version(self, namespace: Namespace = None) -> int:
        """The tree's write counter: +1 per successful write (poll it to re-read)."""
        redis: Any = self.app.redis
        return int(await redis.hget(self._tree(namespace).m, "ver") or 0)

    # -- maintenance -------------------------------------------------------------------

    async def init(
        self,
        *,
        namespace: Namespace = None,
        max_node_size: int | None = None,
        root_lazy: bool | None = None,
    ) -> None:
        """Create an empty tree (``TreeAlreadyInitialized`` if it exists)."""
        m = check_node_size(max_node_size) or self.default_max_node_size
        lazy = self.default_root_lazy if root_lazy is None else root_lazy
        tree = self._tree(namespace)
        args = [str(m), lazy_arg(lazy), argv_now(self.app.clock), tree.member]
        await self._register(tree, await self._run("init", tree.keys, args))

    async def clear(
        self,
        *,
        namespace: Namespace = None,
        max_node_size: int | None = None,
        root_lazy: bool | None = None,
    ) -> None:
        """Drop every item of the namespace's tree; unspecified settings are kept
        (or the aggregate's defaults for a new tree). O(1): the node hash is UNLINKed."""
        m = check_node_size(max_node_size)
        tree = self._tree(namespace)
        head = self._defaults(tree)
        args = ["" if m is None else str(m), lazy_arg(root_lazy), *head[2:], *head[:2]]
        await self._register(tree, await self._run("clear", tree.wkeys, args))

    async def namespaces(self) -> list[Namespace]:
        return [ns async for ns in self.iter_namespaces(1000)]

    async def clear_all(
        self, *, max_node_size: int | None = None, root_lazy: bool | None = None
    ) -> None:
        """``clear`` every namespace's tree and the default partition's."""
        check_node_size(max_node_size)
        targets = {ak.ns_member(ns): ns for ns in await self.namespaces()}
        targets.setdefault(ak.ns_member(None), None)
        for ns in targets.values():
            await self.clear(namespace=ns, max_node_size=max_node_size, root_lazy=root_lazy)

    async def make_root_lazy(self, namespace: Namespace = None) -> None:
        """Mark the root lazy. Kept for parity: results never depend on laziness."""
        await self._run("make_root_lazy", (self._tree(namespace).m,), [])

    async def make_all_roots_lazy(self) -> None:
        for ns in await self.namespaces():
            await self.make_root_lazy(ns)

    async def validate(self, namespace: Namespace = None) -> None:
        """Check every B-tree invariant (O(n)); raises ``TreeCorrupted``."""
        await self._run("validate", self._tree(namespace).keys, [])

    async def dump(self, namespace: Namespace = None) -> str:
        """The tree as text: each node ``[child key child ...]`` with decoded keys."""
        tokens = await self._run("dump", self._tree(namespace).keys, [])
        parts: list[str] = []
        for tok in tokens:
            if tok == "(":
                parts.append("[")
            elif tok == ")":
                if parts and parts[-1] == " ":
                    parts.pop()
                parts.append("] ")
            else:
                parts.append(f"{ak.decode_position(tok)[0]!r} ")
        return "".join(parts).replace(" ]", "]").strip()

    async def stats(self, namespace: Namespace = None) -> dict[str, Any]:
        """height (a lone leaf root = 1, empty = 0), nodes, max_node_size, root_lazy,
        count, sum, ver, exists."""
        r = await self._run("stats", self._tree(namespace).keys, [])
        return {
            "exists": r[0] == 1,
            "height": int(r[1]),
            "nodes": int(r[2]),
            "max_node_size": int(r[3]),
            "root_lazy": r[4] == "1",
            "count": int(r[5]),
            "sum": float(r[6]),
            "ver": int(r[7]),
        }

    async def shape(
        self, namespace: Namespace = None, *, max_nodes: int = 10_000
    ) -> dict[str, Any]:
        """Per level: node count and min/max/mean items per node (debugging)."""
        tree = self._tree(namespace)
        r = await self._run("shape", tree.keys, [check_max_nodes(max_nodes)])
        levels = [
            {"nodes": r[i], "min_items": r[i + 1], "max_items": r[i + 2], "items": r[i + 3]}
            for i in range(0, len(r) - 1, 4)
        ]
        for level in levels:
            level["mean_items"] = level["items"] / level["nodes"]
        return {"depth": len(levels), "levels": levels, "truncated": r[-1] == 1}

    async def repair_registry(self) -> int:
        """Re-list trees missing from the namespace registry (SCAN for their meta keys,
        ordered by creation time). Returns how many were added."""
        pattern = self._stem("*") + ":m"
        found: list[tuple[float, str]] = []
        redis: Any = self.app.redis
        async for key in redis.scan_iter(match=pattern, count=500):
            created, member = await redis.hmget(key, "created", "ns")
            if member is not None and self._stem(member) + ":m" == key:
                found.append((float(created or 0), member))
        found.sort()
        if not found:
            return 0
        added = await SCRIPTS["register_ns"](
            self.app.redis,
            (f"{self._registry}:ns", f"{self._registry}:nsseq"),
            [m for _, m in found],
        )
        await redis.sadd(_names_key(self.app), self.name)
        return int(added)

    # -- writes (shared by both front ends) -----------------------------------------------

    async def _insert(self, key: Any, id: str, sum_value: float, namespace: Namespace) -> None:
        pos = ak.position(key, ak.check_id(id))
        s = check_sum(sum_value)
        tree = self._tree(namespace)
        await self._register(
            tree, await self._run("insert", tree.keys, [*self._defaults(tree), pos, s])
        )

    async def _delete(self, key: Any, id: str, namespace: Namespace, if_exists: bool) -> str:
        """Delete ``(key, id)``; returns its sum ("" when absent and ``if_exists``)."""
        pos = ak.position(key, ak.check_id(id))
        tree = self._tree(namespace)
        return (await self._delete_at(tree, pos, id, if_exists))[0]

    async def _delete_at(self, tree: _Tree, pos: str, id: str, if_exists: bool) -> tuple[str, bool]:
        """(sum or "", whether the item was written by id); unlists a dropped tree."""
        head = self._defaults(tree)
        s, indexed, dropped = await self._run(
            "delete", tree.wkeys, [head[4], pos, "1" if if_exists else "0", id, *head[:2]]
        )
        if dropped == "1":
            await self._unregister(tree)
        return s, indexed == "1"

    async def _replace(
        self,
        key: Any,
        id: str,
        new_key: Any,
        new_id: str,
        sum_value: float,
        namespace: Namespace,
        new_namespace: Namespace,
        mode: Literal["strict", "or_insert", "upsert"],
    ) -> None:
        old_pos = ak.position(key, ak.check_id(id))
        new_pos = ak.position(new_key, ak.check_id(new_id))
        s = check_sum(sum_value)
        old = self._tree(namespace)
        new = old if new_namespace is SAME else self._tree(new_namespace)
        if (
            old is not new
            and self.app.is_cluster
            and key_slot(old.m.encode()) != key_slot(new.m.encode())
        ):
            await self._replace_across_slots(old, new, old_pos, new_pos, id, new_id, s, mode)
            return
        args = [*self._defaults(new), old_pos, new_pos, s, mode, id, new_id]
        created, dropped = await self._run("replace", (*old.wkeys, *new.wkeys), args)
        await self._register(new, created)
        if dropped == "1":
            await self._unregister(old)

    async def _replace_across_slots(
        self,
        old: _Tree,
        new: _Tree,
        old_pos: str,
        new_pos: str,
        id: str,
        new_id: str,
        s: str,
        mode: str,
    ) -> None:
        """Cluster, different slots: delete, then insert; on failure re-insert the old
        item (compensation). In between the item is briefly in neither tree. An item
        written by id stays indexed by id in the new tree."""
        removed, indexed = await self._delete_at(old, old_pos, id, mode != "strict")
        try:
            if indexed:
                reply = (await self._upsert(new, new_id, new_pos, s, "last"))[3]
            elif mode == "upsert":
                reply = await self._run(
                    "bulk", new.wkeys[:2], [*self._defaults(new), "u", new_pos, s]
                )
            else:
                reply = await self._run("insert", new.keys, [*self._defaults(new), new_pos, s])
        except BaseException:
            if removed != "":
                if indexed:
                    await self._upsert(old, id, old_pos, removed, "last")
                else:
                    await self._run("insert", old.keys, [*self._defaults(old), old_pos, removed])
                await self._register(old, 2)
            raise
        await self._register(new, reply)

    async def _upsert(self, tree: _Tree, id: str, pos: str, s: str, keep: str) -> list[str]:
        """Run upsert.lua: ``[written, previous pos, previous sum, created]``."""
        reply = await self._run("upsert", tree.wkeys, [*self._defaults(tree), id, pos, s, keep])
        await self._register(tree, reply[3])
        return list(reply)

    async def _bulk(
        self, namespace: Namespace, ops: list[tuple[str, str, str]], chunk: int
    ) -> None:
        check_chunk(chunk)
        tree = self._tree(namespace)
        head = self._defaults(tree)
        for i in range(0, len(ops), chunk):
            args: list[str] = list(head)
            for op in ops[i : i + chunk]:
                args.extend(op)
            await self._register(tree, await self._run("bulk", tree.keys, args))
