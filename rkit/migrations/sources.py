"""Data sources a migration walks (spec §7.5): a SCAN over a key pattern (every
primary of a Cluster, in a fixed order), hashes by SCAN or by a sorted-set index, a
sorted-set range, a stream range, and any user paging function or async iterator
with a resumable cursor (e.g. keyset pagination over a SQL table)."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar

from redis.asyncio.cluster import RedisCluster

from ..errors import ConfigError
from .types import SourcePage

__all__ = [
    "BaseSource",
    "HashIndexSource",
    "HashItem",
    "HashKeySource",
    "IterableSource",
    "RedisScanSource",
    "SortedSetSource",
    "StreamSource",
]

T = TypeVar("T")
HashItem = tuple[str, dict[str, str]]
"""A hash item: ``(key, HGETALL)``."""


def pipeline(redis: Any) -> Any:
    """A non-transactional pipeline (a Cluster client splits it by node)."""
    if isinstance(redis, RedisCluster):
        return redis.pipeline()
    return redis.pipeline(transaction=False)


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be an int >= 1, got {limit!r}")
    return limit


class BaseSource(Generic[T]):
    """Defaults: ``str(item)`` ids, no estimate, no patch shorthand."""

    def fingerprint(self) -> str:  # pragma: no cover - every source overrides it
        raise NotImplementedError

    async def page(self, cursor: str | None, limit: int) -> SourcePage[T]:  # pragma: no cover
        raise NotImplementedError

    def item_id(self, item: T) -> str:
        return str(item)

    async def estimate_total(self) -> int | None:
        return None

    async def apply_patches(self, patches: list[tuple[T, Mapping[str, Any]]]) -> None:
        raise ConfigError(
            f"{type(self).__name__} has no patch shorthand: write the change in "
            "migrate_one (through ctx.redis) and return None"
        )

    def preview(self, item: T, patch: Mapping[str, Any]) -> tuple[Any, Any]:
        return item, dict(patch)


async def apply_hash_patches(redis: Any, patches: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """One pipeline: ``HSET`` each patch's values, ``HDEL`` its ``None`` fields."""
    pipe = pipeline(redis)
    n = 0
    for key, patch in patches:
        pieces: list[Any] = []
        dels: list[str] = []
        for f, v in patch.items():
            if v is None:
                dels.append(f)
            else:
                pieces += (f, v)
        if pieces:
            pipe.execute_command("HSET", key, *pieces)
            n += 1
        if dels:
            pipe.hdel(key, *dels)
            n += 1
    if n:
        await pipe.execute()


class _HashPatches:
    """Patch shorthand of hash items: ``HSET`` the values, ``HDEL`` the ``None`` ones."""

    redis: Any

    async def _load(self, keys: Sequence[str]) -> list[HashItem]:
        if not keys:
            return []
        pipe = pipeline(self.redis)
        for k in keys:
            pipe.hgetall(k)
        values = await pipe.execute()
        # a key deleted between the listing and the read is not an item any more
        return [(k, v) for k, v in zip(keys, values, strict=True) if v]

    def item_id(self, item: HashItem) -> str:
        return item[0]

    async def apply_patches(self, patches: list[tuple[HashItem, Mapping[str, Any]]]) -> None:
        await apply_hash_patches(self.redis, [(key, p) for (key, _), p in patches])

    def preview(self, item: HashItem, patch: Mapping[str, Any]) -> tuple[Any, Any]:
        before = dict(item[1])
        after = dict(before)
        for f, v in patch.items():
            if v is None:
                after.pop(f, None)
            else:
                after[f] = v if isinstance(v, str) else str(v)
        return before, after


class RedisScanSource(BaseSource[str]):
    """Keys matching ``match`` (optionally of one ``type``) by ``SCAN``: every key
    present for the whole run is seen at least once; duplicates across pages are
    possible; keys created during the run may be missed. A page is the union of SCAN
    replies until ``limit`` keys (it may exceed it by one reply). Cursor
    ``"<primary index>:<scan cursor>"`` over the Cluster's primaries sorted by
    address (one node on a standalone server). Items are key names; a returned
    patch is applied to the key as a hash (``HSET``, ``None`` values ``HDEL``),
    without reading it first."""

    def __init__(
        self, redis: Any, match: str, *, type: str | None = None, count: int | None = None
    ) -> None:
        if not isinstance(match, str) or not match:
            raise ConfigError("match must be a non-empty SCAN pattern")
        if count is not None:
            _limit(count)
        self.redis = redis
        self.match = match
        self.type = type
        self.count = count

    def fingerprint(self) -> str:
        return f"scan:{self.type or ''}:{self.match}"

    def _nodes(self) -> list[Any]:
        if isinstance(self.redis, RedisCluster):
            return sorted(self.redis.get_primaries(), key=lambda n: (n.host, n.port))
        return [None]

    async def _scan(self, node: Any, cursor: int, count: int) -> tuple[int, list[str]]:
        if node is None:
            c, keys = await self.redis.scan(cursor, match=self.match, count=count, _type=self.type)
            return int(c), list(keys)
        args: list[Any] = ["SCAN", cursor, "MATCH", self.match, "COUNT", count]
        if self.type:
            args += ["TYPE", self.type]
        c, keys = await node.execute_command(*args)
        return int(c), [k.decode() if isinstance(k, bytes) else k for k in keys]

    async def keys_page(self, cursor: str | None, limit: int) -> tuple[list[str], str, bool]:
        _limit(limit)
        nodes = self._nodes()
        idx, c = 0, 0
        if cursor:
            try:
                a, _, b = cursor.partition(":")
                idx, c = int(a), int(b)
            except ValueError:
                raise ConfigError(f"not a scan cursor: {cursor!r}") from None
        found: dict[str, None] = {}
        count = self.count or max(limit, 10)
        while idx < len(nodes):
            c, keys = await self._scan(nodes[idx], c, count)
            for k in keys:
                found.setdefault(k)
            if c == 0:
                idx += 1
            if len(found) >= limit:
                break
        return list(found), f"{idx}:{c}", idx >= len(nodes)

    async def page(self, cursor: str | None, limit: int) -> SourcePage[str]:
        keys, nxt, done = await self.keys_page(cursor, limit)
        return SourcePage(keys, nxt, done)

    async def apply_patches(self, patches: list[tuple[str, Mapping[str, Any]]]) -> None:
        await apply_hash_patches(self.redis, patches)

    async def estimate_total(self) -> int | None:
        """The database size, summed over a Cluster's primaries (an upper bound when
        ``match`` covers only part of the keys)."""
        nodes = self._nodes()
        if nodes == [None]:
            return int(await self.redis.dbsize())
        return sum([int(await n.execute_command("DBSIZE")) for n in nodes])


class HashKeySource(_HashPatches, BaseSource[HashItem]):
    """Hashes matching ``match`` by ``SCAN ... TYPE hash``; items are ``(key, HGETALL)``
    and the patch shorthand ``HSET``s values and ``HDEL``s ``None`` fields. Same
    at-least-once guarantee as :class:`RedisScanSource`."""

    def __init__(self, redis: Any, match: str, *, count: int | None = None) -> None:
        self.redis = redis
        self.scan = RedisScanSource(redis, match, type="hash", count=count)

    def fingerprint(self) -> str:
        return "hashes:" + self.scan.fingerprint()

    async def page(self, cursor: str | None, limit: int) -> SourcePage[HashItem]:
        keys, nxt, done = await self.scan.keys_page(cursor, limit)
        return SourcePage(await self._load(keys), nxt, done)

    async def estimate_total(self) -> int | None:
        return await self.scan.estimate_total()


class SortedSetSource(BaseSource[Any]):
    """Members of a sorted set in order, exactly once each for members present
    throughout; members added ahead of the cursor are visited, behind it not.
    ``by="lex"`` (all scores equal): items are members, the cursor the last member.
    ``by="score"``: items are ``(member, score)``, the cursor ``[score, member]``."""

    def __init__(self, redis: Any, key: str, *, by: Literal["lex", "score"] = "lex") -> None:
        if by not in ("lex", "score"):
            raise ConfigError(f"by must be 'lex' or 'score', got {by!r}")
        if not isinstance(key, str) or not key:
            raise ConfigError("key must be a non-empty string")
        self.redis = redis
        self.key = key
        self.by = by

    def fingerprint(self) -> str:
        return f"zset:{self.by}:{self.key}"

    def item_id(self, item: Any) -> str:
        return str(item[0]) if self.by == "score" else str(item)

    async def members(self, cursor: str | None, limit: int) -> tuple[list[Any], str, bool]:
        _limit(limit)
        if self.by == "lex":
            lo = "-" if not cursor else "(" + cursor
            got = await self.redis.zrangebylex(self.key, lo, "+", start=0, num=limit + 1)
            items = list(got[:limit])
            return items, (items[-1] if items else (cursor or "")), len(got) <= limit
        rows: list[tuple[str, float]] = []
        if not cursor:
            got = await self.redis.zrangebyscore(
                self.key, "-inf", "+inf", start=0, num=limit + 1, withscores=True
            )
            rows = [(m, float(s)) for m, s in got]
        else:
            score, member = json.loads(cursor)
            same = await self.redis.zrangebyscore(self.key, score, score, withscores=True)
            rows = [(m, float(s)) for m, s in same if m > member][: limit + 1]
            if len(rows) <= limit:
                more = await self.redis.zrangebyscore(
                    self.key,
                    f"({score!r}",
                    "+inf",
                    start=0,
                    num=limit + 1 - len(rows),
                    withscores=True,
                )
                rows += [(m, float(s)) for m, s in more]
        items = rows[:limit]
        nxt = json.dumps([items[-1][1], items[-1][0]]) if items else (cursor or "")
        return [tuple(i) for i in items], nxt, len(rows) <= limit

    async def page(self, cursor: str | None, limit: int) -> SourcePage[Any]:
        items, nxt, done = await self.members(cursor, limit)
        return SourcePage(items, nxt, done)

    async def estimate_total(self) -> int | None:
        return int(await self.redis.zcard(self.key))


class HashIndexSource(_HashPatches, BaseSource[HashItem]):
    """Hashes listed as members (key names, equal scores) of a lex-ordered sorted-set
    ``index``: exactly once per indexed hash, in order, exact page sizes. Items and
    patch shorthand as :class:`HashKeySource`."""

    def __init__(self, redis: Any, index: str) -> None:
        self.redis = redis
        self.index = SortedSetSource(redis, index, by="lex")

    def fingerprint(self) -> str:
        return "hashindex:" + self.index.key

    async def page(self, cursor: str | None, limit: int) -> SourcePage[HashItem]:
        keys, nxt, done = await self.index.members(cursor, limit)
        return SourcePage(await self._load(keys), nxt, done)

    async def estimate_total(self) -> int | None:
        return await self.index.estimate_total()


def _next_stream_id(entry_id: str) -> str:
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


class StreamSource(BaseSource[tuple[str, dict[str, str]]]):
    """Entries of a stream in id order, exactly once; items ``(id, fields)``, the
    cursor the last id."""

    def __init__(self, redis: Any, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigError("key must be a non-empty string")
        self.redis = redis
        self.key = key

    def fingerprint(self) -> str:
        return f"stream:{self.key}"

    def item_id(self, item: tuple[str, dict[str, str]]) -> str:
        return item[0]

    async def page(self, cursor: str | None, limit: int) -> SourcePage[tuple[str, dict[str, str]]]:
        _limit(limit)
        lo = "-" if not cursor else _next_stream_id(cursor)
        got = await self.redis.xrange(self.key, min=lo, max="+", count=limit + 1)
        items = [(str(i), dict(f)) for i, f in got[:limit]]
        nxt = items[-1][0] if items else (cursor or "")
        return SourcePage(items, nxt, len(got) <= limit)

    async def estimate_total(self) -> int | None:
        return int(await self.redis.xlen(self.key))


PageFn = Callable[[str | None, int], Awaitable[Any]]


class IterableSource(BaseSource[Any]):
    """A user's own paging over any store (SQL keyset pagination, an API, ...).

    ``page_fn(cursor, limit)`` returns a :class:`SourcePage` or ``(items,
    next_cursor, is_done)``; ``fingerprint`` names the range (changing the query
    without a reset is then a :class:`CursorMismatch`). Optional: ``item_id``,
    ``apply_patches`` (the patch shorthand), ``estimate``. Its guarantees are the
    user's paging guarantees. See :meth:`from_iterator` for an async iterator."""

    def __init__(
        self,
        page_fn: PageFn,
        fingerprint: str,
        *,
        item_id: Callable[[Any], str] | None = None,
        apply_patches: Callable[[list[tuple[Any, Mapping[str, Any]]]], Awaitable[None]]
        | None = None,
        estimate: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        if not callable(page_fn):
            raise ConfigError("page_fn must be an async function (cursor, limit)")
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ConfigError("fingerprint must be a non-empty string naming the range")
        self._page = page_fn
        self._fp = fingerprint
        self._item_id = item_id
        self._apply = apply_patches
        self._estimate = estimate

    @classmethod
    def from_iterator(
        cls,
        iterate: Callable[[str | None], AsyncIterator[tuple[str, Any]]],
        fingerprint: str,
        **options: Any,
    ) -> IterableSource:
        """A source over ``iterate(cursor)``: an async iterator of ``(cursor_after_item,
        item)`` pairs starting just after ``cursor`` (``None`` = the beginning)."""

        async def page(cursor: str | None, limit: int) -> SourcePage[Any]:
            it = iterate(cursor)
            items: list[Any] = []
            nxt = cursor or ""
            done = True
            try:
                async for c, item in it:
                    if len(items) == limit:
                        done = False
                        break
                    items.append(item)
                    nxt = c
            finally:
                close = getattr(it, "aclose", None)
                if close is not None:
                    await close()
            return SourcePage(items, nxt, done)

        return cls(page, fingerprint, **options)

    def fingerprint(self) -> str:
        return self._fp

    async def page(self, cursor: str | None, limit: int) -> SourcePage[Any]:
        _limit(limit)
        got = self._page(cursor, limit)
        if inspect.isawaitable(got):
            got = await got
        if isinstance(got, SourcePage):
            return got
        items, nxt, done = got
        return SourcePage(list(items), str(nxt), bool(done))

    def item_id(self, item: Any) -> str:
        return self._item_id(item) if self._item_id else str(item)

    async def estimate_total(self) -> int | None:
        return None if self._estimate is None else await self._estimate()

    async def apply_patches(self, patches: list[tuple[Any, Mapping[str, Any]]]) -> None:
        if self._apply is None:
            await super().apply_patches(patches)
            return
        await self._apply(patches)
