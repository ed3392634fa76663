"""Action cache: a persistent read-through memo for expensive async functions.

``await cache.fetch(args)`` returns the stored result for ``(cache name, args)`` when
present and fresh, otherwise runs the function, stores the result and returns it.
Entries live in Redis hashes changed only by ``lua/action_cache/*.lua``; one Cluster
slot per cache name. Spec: action-cache.md.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import inspect
import json
import logging
import math
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from pydantic import BaseModel
from redis.exceptions import RedisError

from . import codec, scripts
from .clock import MAX_DURATION_MS, argv_now
from .errors import CacheValueTooLarge, ConfigError, SerializationError, SingleFlightFailed
from .keys import MAX_KEY_PART_BYTES, check_max_bytes, check_part
from .registry import Cron

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "UNSET",
    "ActionCache",
    "CacheStats",
    "Hit",
    "Miss",
    "PutResult",
    "cache_names",
    "cache_stats",
    "canonical_args",
    "purge_all",
    "remove_all",
]

T = TypeVar("T")
logger = logging.getLogger("rkit.action_cache")


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset.UNSET
"""Default of ``ttl=`` arguments: "use the cache's ttl" (``None`` means "no TTL")."""


@dataclass(frozen=True, slots=True)
class Hit(Generic[T]):
    value: T


@dataclass(frozen=True, slots=True)
class Miss:
    expired_entry: str | None
    """Id of the stale entry that exists, or ``None`` when there is none."""


@dataclass(frozen=True, slots=True)
class PutResult:
    cache_hit: bool
    """An equivalent entry existed; nothing was written."""
    deleted_expired_entry: bool
    """An existing entry was replaced."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of one cache name: ``entries`` live now (not expired), and how
    ``fetch`` calls were answered."""

    name: str
    entries: int
    hits: int
    """Answered by a stored entry."""
    misses: int
    """Ran the action, or shared the failure of the run they waited for."""
    coalesced: int = 0
    """Single flight: waited for another caller's run and got its value."""

    @property
    def hit_rate(self) -> float | None:
        """Share of fetches that did not run the action: (hits + coalesced) / all."""
        total = self.hits + self.misses + self.coalesced
        return None if total == 0 else (self.hits + self.coalesced) / total


# -- canonical key derivation (spec §7.1) -------------------------------------------------


def _canon(value: Any, path: str) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: True is not 1
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cache args must be finite numbers; {path} is {value!r}")
        if value.is_integer():
            return int(value)  # 1.0 -> 1, -0.0 -> 0
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SerializationError(f"cache args object keys must be str; {path} has {k!r}")
            out[k] = _canon(v, f"{path}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [_canon(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, BaseModel):
        return _canon(value.model_dump(mode="json"), path)
    raise SerializationError(f"cache args must be JSON values; {path} is a {type(value).__name__}")


_CANON_ENCODE = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_SCALARS = frozenset({str, int, bool, type(None)})  # canonical as they are (no floats)


def canonical_args(args: Mapping[str, Any] | None) -> str:
    """The canonical JSON of ``args``: sorted keys, no whitespace, ``1.0`` == ``1``,
    ``True`` != ``1``. Raises ``TypeError``/``ValueError`` for non-JSON input."""
    if args is None:
        args = {}
    if type(args) is dict and all(type(k) is str and type(v) in _SCALARS for k, v in args.items()):
        return _CANON_ENCODE(args)  # the common flat case: nothing to normalise
    if not isinstance(args, Mapping):
        raise SerializationError(
            f"cache args must be a mapping of str to JSON values, got {type(args).__name__}"
        )
    return json.dumps(
        _canon(args, "args"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


@functools.lru_cache(maxsize=256)
def _ttl_arg(ttl: float | None) -> str:
    return "" if ttl is None else repr(ttl)


def _digest(canon: str) -> str:
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _check_ttl(ttl: Any, what: str = "ttl") -> float | None:
    """A duration in ms: ``None``, or a number in [0, MAX_DURATION_MS] (0 = always
    stale; a negative TTL is a bug, not "more stale")."""
    if ttl is None:
        return None
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or not 0 <= ttl <= MAX_DURATION_MS
    ):
        raise ConfigError(
            f"{what} must be a number of ms in [0, {MAX_DURATION_MS:.0f}] or None, got {ttl!r}"
        )
    return float(ttl)


MAX_TIME_MS = 1e14
"""Largest point in time (ms since the epoch, ~year 5138) taken for ``now=`` or
``before=``: beyond it expiry arithmetic stops being integers Redis takes."""


def _check_time(t: Any, what: str) -> float | None:
    """A point in time in ms (``now=``, ``before=``): ``None`` or a finite number of
    at most :data:`MAX_TIME_MS` in magnitude."""
    if t is None:
        return None
    if (
        isinstance(t, bool)
        or not isinstance(t, int | float)
        or not math.isfinite(t)
        or abs(t) > MAX_TIME_MS
    ):
        raise ConfigError(
            f"{what} must be a finite number of ms (at most {MAX_TIME_MS:.0e}) or None, got {t!r}"
        )
    return float(t)


PURGE_AS_YOU_GO = 16
"""Expired entries of other args that each fill removes (see put.lua)."""
OUTCOME_TTL_MS = 60_000
"""How long a single-flight outcome stays readable for the callers that waited."""
MAX_ERROR_CHARS = 1_000
"""A shared failure's message is cut to this many characters."""


# -- one cache name's keys and scripts ----------------------------------------------------


class _Store:
    """The Redis side of one cache name (usable without the action, e.g. by the API)."""

    def __init__(self, app: App, name: str, max_name_bytes: int = MAX_KEY_PART_BYTES) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("cache name must be a non-empty string")
        check_part(name, "cache name", max_name_bytes)
        self.app = app
        self.name = name
        self.stem = app.keys.tag("ac", name)
        self.idx = f"{self.stem}:idx"
        self.exp = f"{self.stem}:exp"
        self.stats = f"{self.stem}:stats"
        self._get = scripts.load("action_cache", "get")
        self._put = scripts.load("action_cache", "put")
        self._remove = scripts.load("action_cache", "remove")
        self._remove_batch = scripts.load("action_cache", "remove_batch")
        self._purge = scripts.load("action_cache", "purge")
        self._claim = scripts.load("action_cache", "claim")
        self._lease = scripts.load("action_cache", "lease")
        self._release = scripts.load("action_cache", "release")
        self._count = scripts.load("action_cache", "count")
        self._stats = scripts.load("action_cache", "stats")

    def entry(self, member: str) -> str:
        return f"{self.stem}:e:{member}"

    def lock(self, member: str) -> str:
        return f"{self.stem}:lock:{member}"

    def outcome(self, member: str) -> str:
        """The stream where single flights of ``member`` publish how they ended."""
        return f"{self.stem}:sf:{member}"

    async def get(
        self, member: str, canon: str, read_ttl: float | None, *, count: str = "0", n: int = 0
    ) -> tuple[str, str]:
        """``count``: "0" nothing, "1" hit or miss, "h" a hit only, "c" ``n``
        coalesced fetches on a hit (see get.lua)."""
        res = await self._get(
            self.app.redis,
            (self.entry(member), self.stats),
            (
                argv_now(self.app.clock),
                "" if read_ttl is None else repr(read_ttl),
                canon,
                count,
                str(n),
            ),
        )
        return res[0], res[1]

    async def put(
        self,
        member: str,
        canon: str,
        encoded: str,
        ttl: float | None,
        expired_entry: str | None,
        gc_grace_ms: float,
    ) -> PutResult:
        await _register(self.app, self.name)
        now = argv_now(self.app.clock)
        res = await self._put(
            self.app.redis,
            (self.entry(member), self.idx, self.exp),
            (
                now,
                "" if ttl is None else repr(ttl),
                expired_entry or "",
                uuid.uuid4().hex,
                encoded,
                canon,
                repr(float(gc_grace_ms)),
                member,
                str(PURGE_AS_YOU_GO),
            ),
        )
        if res[2] == "1":  # the name's first entry since its index was empty or lost
            await _register(self.app, self.name, again=True)
        if len(res) > 3:  # expired entries of other args: purge them as we go
            await self._purge_members(now, res[3:])
        return PutResult(res[0] == "1", res[1] == "1")

    async def _purge_members(self, now: str, members: Sequence[str]) -> int:
        return int(
            await self._purge(
                self.app.redis,
                (self.idx, self.exp, *map(self.entry, members)),
                (now, *members),
            )
        )

    async def remove(self, member: str) -> bool:
        res = await self._remove(
            self.app.redis, (self.entry(member), self.idx, self.exp), (member,)
        )
        return int(res) > 0

    async def remove_all(self, *, before: float | None, batch_size: int) -> int:
        """Remove every entry (or those created at or before ``before``), in batches."""
        deleted = 0
        redis = self.app.redis
        while True:
            if before is None:
                members = await redis.zrange(self.idx, 0, batch_size - 1)
            else:
                members = await redis.zrangebyscore(
                    self.idx, "-inf", repr(before), start=0, num=batch_size
                )
            if not members:
                return deleted
            deleted += int(
                await self._remove_batch(
                    redis,
                    (self.idx, self.exp, *map(self.entry, members)),
                    ("" if before is None else repr(before), *members),
                )
            )

    async def purge(self, now: float, *, batch_size: int = 500) -> int:
        deleted = 0
        redis = self.app.redis
        seen: set[str] = set()
        while True:
            members = await redis.zrangebyscore(
                self.exp, "-inf", repr(now), start=0, num=batch_size
            )
            members = [m for m in members if m not in seen]
            if not members:
                return deleted
            seen.update(members)
            deleted += await self._purge_members(repr(now), members)

    # -- single flight -----------------------------------------------------------------

    async def claim(self, member: str, token: str, lease_ms: float) -> tuple[str | None, float]:
        """Take the lease of ``member``: ``(None, 0)`` when won, else the holder's
        token and its remaining lease in ms."""
        res = await self._claim(
            self.app.redis, (self.lock(member),), (token, str(max(1, int(lease_ms))))
        )
        if res[0] == "won":
            return None, 0.0
        return res[1], float(res[2])

    async def release(
        self,
        member: str,
        token: str,
        error: BaseException | None,
        counts: Mapping[str, int],
    ) -> None:
        """End a flight: free the lease, publish its outcome, count its callers."""
        etype = "" if error is None else type(error).__qualname__
        message = "" if error is None else str(error)[:MAX_ERROR_CHARS]
        args: list[str] = [token, "0" if error else "1", etype, message, str(OUTCOME_TTL_MS)]
        for field, n in counts.items():
            args += [field, str(n)]
        await self._release(
            self.app.redis, (self.lock(member), self.outcome(member), self.stats), args
        )

    async def count(self, counts: Mapping[str, int]) -> None:
        args = [x for field, n in counts.items() if n for x in (field, str(n))]
        if args:
            await self._count(self.app.redis, (self.stats,), args)

    async def wait(
        self, member: str, token: str, lease_left_ms: float, max_block_ms: float
    ) -> tuple[bool, str, str] | None:
        """Block until the flight holding ``token`` ends: ``(ok, error type, error
        message)``, or ``None`` when its lease went away without an outcome (the
        winner died or ran out of lease: nothing to share, compete again)."""
        redis = self.app.redis
        key = self.outcome(member)
        last = "0-0"  # from the start: the outcome may already be there

        def find(got: Any) -> tuple[bool, str, str] | None:
            nonlocal last
            for _stream, entries in got or ():
                for eid, fields in entries:
                    last = eid
                    if fields.get("t") == token:
                        return fields.get("ok") == "1", fields.get("e", ""), fields.get("m", "")
            return None

        while True:
            block = max(1, int(min(max_block_ms, lease_left_ms + 5)))
            got = await redis.xread({key: last}, block=block, count=16)
            if got:
                found = find(got)
                if found is not None:
                    return found
                continue
            holder, lease_left_ms = await self._lease(redis, (self.lock(member),), ())
            if holder != token:
                # ended: the outcome (if any) was written with the release, atomically
                return find(await redis.xread({key: last}, count=16))
            lease_left_ms = float(lease_left_ms)

    async def stats_of(self) -> CacheStats:
        entries, hits, misses, coalesced = await self._stats(
            self.app.redis, (self.idx, self.exp, self.stats), (argv_now(self.app.clock),)
        )
        return CacheStats(self.name, int(entries), int(hits), int(misses), int(coalesced))


# names read back from the registry were accepted when they were written (perhaps
# under a larger max_name_bytes): never refuse them
_REGISTERED = 1 << 29
MAX_BATCH = 10_000


def _check_batch(batch_size: Any) -> int:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH
    ):
        raise ConfigError(f"batch_size must be an int in [1, {MAX_BATCH}], got {batch_size!r}")
    return batch_size


def _names_key(app: App) -> str:
    return app.keys.tag("ac") + ":names"


async def _register(app: App, name: str, *, again: bool = False) -> None:
    """List ``name`` in the namespace's name index: once per process before its first
    write, and ``again`` when a write found the name's entry index empty (first
    entry, or Redis lost its data since). The index is in another Cluster slot than
    the entries, so this is a second, idempotent command (SADD), not part of put."""
    registered: set[str] = app.components.state("action_cache:registered", set)
    if again or name not in registered:
        redis: Any = app.redis
        await redis.sadd(_names_key(app), name)
        registered.add(name)


async def cache_names(app: App) -> list[str]:
    """Every cache name that has stored an entry in this App's namespace."""
    redis: Any = app.redis
    return sorted(await redis.smembers(_names_key(app)))


async def cache_stats(app: App, name: str) -> CacheStats:
    """Entry count and hit/miss counters of one cache name."""
    return await _Store(app, name).stats_of()


async def remove_all(app: App, *, before: float | None = None, batch_size: int = 100) -> int:
    """Delete entries of **every** cache name created at or before ``before`` (ms;
    default now). Returns how many were deleted (name by name: Cluster-safe)."""
    before = _check_time(before, "before")
    _check_batch(batch_size)
    bound = before if before is not None else await app.server_time()
    total = 0
    for name in await cache_names(app):
        total += await _Store(app, name, _REGISTERED).remove_all(
            before=bound, batch_size=batch_size
        )
    return total


async def purge_all(app: App) -> int:
    """Delete every entry whose write-time TTL has passed, for every cache name."""
    now = await app.server_time()
    total = 0
    for name in await cache_names(app):
        total += await _Store(app, name, _REGISTERED).purge(now)
    return total


async def purge_all_job(ctx: dict[str, Any]) -> int:
    """:func:`purge_all` for a job context holding the App (``ctx["rkit_app"]``)."""
    return await purge_all(ctx["rkit_app"])


_ZERO = frozenset({0})
PURGE_HOURS = frozenset({3})
"""When the workers' daily purge of expired entries runs (UTC hour; one worker)."""


# -- the cache ----------------------------------------------------------------------------


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _Flight:
    """The callers in this process waiting for one key's single flight."""

    __slots__ = ("callers", "future", "task")

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.future.add_done_callback(_retrieve)  # every caller may have been cancelled
        self.callers = 1
        self.task: asyncio.Future[None] | None = None


class ActionCache(Generic[T]):
    """A read-through cache around one async function, called as ``await action(**args)``.

    ``name`` (default ``module:qualname``) is the cache namespace and version tag:
    bump it when the function's output changes (at most ``max_name_bytes`` UTF-8
    bytes). ``ttl`` (ms) bounds both new entries and reads; ``None`` = never expires.
    ``single_flight=True`` makes concurrent misses for one key run the action once (a
    lease in Redis; waiters are woken when it ends and get its value, or its error).
    ``poll_ms`` is the longest a waiter blocks before it re-checks the lease.
    ``fail_open=True`` runs the action uncached when Redis cannot be read (default:
    the Redis error propagates). Values are JSON.
    """

    @overload
    def __init__(
        self,
        app: App,
        action: Callable[..., Awaitable[T]],
        *,
        name: str | None = None,
        ttl: float | None = None,
        log: bool = False,
        max_value_bytes: int = 1_048_576,
        on_oversize: Literal["raise", "skip"] = "raise",
        single_flight: bool = False,
        lease_ms: float = 30_000,
        poll_ms: float = 50,
        gc_grace_ms: float = 60_000,
        fail_open: bool = False,
    ) -> None: ...
    @overload
    def __init__(
        self,
        app: App,
        action: Callable[..., T],
        *,
        name: str | None = None,
        ttl: float | None = None,
        log: bool = False,
        max_value_bytes: int = 1_048_576,
        on_oversize: Literal["raise", "skip"] = "raise",
        single_flight: bool = False,
        lease_ms: float = 30_000,
        poll_ms: float = 50,
        gc_grace_ms: float = 60_000,
        fail_open: bool = False,
    ) -> None: ...
    def __init__(
        self,
        app: App,
        action: Callable[..., Awaitable[T]] | Callable[..., T],
        *,
        name: str | None = None,
        ttl: float | None = None,
        log: bool = False,
        max_value_bytes: int = 1_048_576,
        on_oversize: Literal["raise", "skip"] = "raise",
        single_flight: bool = False,
        lease_ms: float = 30_000,
        poll_ms: float = 1_000,
        gc_grace_ms: float = 60_000,
        fail_open: bool = False,
        max_name_bytes: int = MAX_KEY_PART_BYTES,
    ) -> None:
        if not callable(action):
            raise ConfigError("action must be callable")
        if name is None:
            qualname = getattr(action, "__qualname__", "")
            if not qualname or "<lambda>" in qualname:
                raise ConfigError("a lambda (or nameless callable) needs an explicit cache name")
            name = f"{action.__module__}:{qualname}"
        if not isinstance(name, str) or not name:
            raise ConfigError("cache name must be a non-empty string")
        check_part(name, "cache name", check_max_bytes(max_name_bytes, "max_name_bytes"))
        if on_oversize not in ("raise", "skip"):
            raise ConfigError("on_oversize must be 'raise' or 'skip'")
        for what, v in (("lease_ms", lease_ms), ("poll_ms", poll_ms), ("gc_grace_ms", gc_grace_ms)):
            if _check_ttl(v, what) is None:
                raise ConfigError(f"{what} must be a number of ms >= 0")
        if (
            isinstance(max_value_bytes, bool)
            or not isinstance(max_value_bytes, int)
            or max_value_bytes < 1
        ):
            raise ConfigError("max_value_bytes must be a positive int")
        self.app = app
        self.action = action
        self.name = name
        self.ttl = _check_ttl(ttl)
        self.log = log
        self.max_value_bytes = max_value_bytes
        self.on_oversize = on_oversize
        self.single_flight = single_flight
        self.lease_ms = float(lease_ms)
        self.poll_ms = float(poll_ms)
        self.gc_grace_ms = float(gc_grace_ms)
        self.fail_open = fail_open
        self.max_name_bytes = max_name_bytes
        self._store = _Store(app, name, max_name_bytes)
        self._flights: dict[str, _Flight] = {}
        self._is_async = inspect.iscoroutinefunction(action) or inspect.iscoroutinefunction(
            getattr(action, "__call__", None)  # noqa: B004
        )
        app.components.add("action_cache", self.name, self)
        app.components.add_cron(
            Cron("action_cache_purge", purge_all, second=_ZERO, minute=_ZERO, hour=PURGE_HOURS)
        )

    # -- helpers ---------------------------------------------------------------------------

    def _effective_ttl(self, ttl: float | _Unset | None) -> float | None:
        return self.ttl if ttl is UNSET else _check_ttl(ttl)

    async def _call(self, args: Mapping[str, Any]) -> T:
        fn: Any = self.action
        if self._is_async:
            return await fn(**args)  # type: ignore[no-any-return]
        return await asyncio.to_thread(functools.partial(fn, **args))

    def _encode(self, value: Any) -> str | None:
        """JSON of a result, or ``None`` to skip caching an oversized one."""
        encoded = codec.dumps(value, what=f"result of cache {self.name!r}")
        size = len(encoded.encode("utf-8"))
        if size > self.max_value_bytes:
            if self.on_oversize == "raise":
                raise CacheValueTooLarge(self.name, size, self.max_value_bytes)
            logger.warning(
                "cache %s: value of %d bytes exceeds %d; not cached",
                self.name,
                size,
                self.max_value_bytes,
            )
            return None
        return encoded

    def _log(self, get: str, put: str | None = None) -> None:
        if self.log:
            payload: dict[str, str] = {"type": "action-cache-stats", "name": self.name, "get": get}
            if put is not None:
                payload["put"] = put
            logger.info(json.dumps(payload, separators=(",", ":")))

    # -- public API ------------------------------------------------------------------------

    async def fetch(
        self,
        args: Mapping[str, Any] | None = None,
        *,
        ttl: float | _Unset | None = UNSET,
        force: bool = False,
        single_flight: bool | None = None,
    ) -> T:
        """The cached result for ``args``, or run the action, store and return it.

        ``ttl`` overrides the cache's ttl for this call (read bound and new entry);
        ``force`` recomputes even when fresh. Action errors propagate (nothing cached).
        With single flight, callers that waited for a failing run raise its error.
        """
        call_args: Mapping[str, Any] = {} if args is None else args
        canon = canonical_args(call_args)
        member = _digest(canon)
        effective = self.ttl if ttl is UNSET else _check_ttl(ttl)
        sf = self.single_flight if single_flight is None else single_flight
        try:
            # a single-flight miss is counted when its flight ends (ran or coalesced)
            kind, data = await self._store.get(
                member, canon, 0.0 if force else effective, count="h" if sf else "1"
            )
        except RedisError:
            if not self.fail_open:
                raise  # fail closed: the action is not run when the cache can't be read
            logger.warning("cache %s: Redis unavailable, running the action uncached", self.name)
            return await self._call(call_args)
        if kind == "hit":
            self._log("hit")
            return codec.loads(data)  # type: ignore[no-any-return]
        if not sf:
            return await self._fill(call_args, canon, member, effective, data or None)
        return await self._fill_single_flight(
            call_args, canon, member, effective, data or None, force
        )

    async def _fill(
        self,
        args: Mapping[str, Any],
        canon: str,
        member: str,
        ttl: float | None,
        expired_entry: str | None,
    ) -> T:
        value = await self._call(args)
        encoded = self._encode(value)
        if encoded is None:
            self._log("miss", "skipped")
            return value
        res = await self._store.put(member, canon, encoded, ttl, expired_entry, self.gc_grace_ms)
        self._log(
            "miss",
            "hit" if res.cache_hit else ("replaced" if res.deleted_expired_entry else "created"),
        )
        return value

    async def _fill_single_flight(
        self,
        args: Mapping[str, Any],
        canon: str,
        member: str,
        ttl: float | None,
        expired_entry: str | None,
        force: bool = False,
    ) -> T:
        """Join this process's flight for ``member``, or start one. A flight is a task
        (a cancelled caller never cancels it for the others); every caller of the
        flight gets its value or raises its error, and callers that come after it
        ended start a new one."""
        flight = self._flights.get(member)
        if flight is None:
            flight = self._flights[member] = _Flight()
            flight.task = asyncio.ensure_future(
                self._fly(flight, args, canon, member, ttl, expired_entry, force)
            )
        else:
            flight.callers += 1
        return await asyncio.shield(flight.future)

    def _land(self, flight: _Flight, member: str) -> int:
        """Close ``flight`` to new callers; returns how many callers it has."""
        if self._flights.get(member) is flight:
            del self._flights[member]
        return flight.callers

    async def _fly(
        self,
        flight: _Flight,
        args: Mapping[str, Any],
        canon: str,
        member: str,
        ttl: float | None,
        expired_entry: str | None,
        force: bool,
    ) -> None:
        try:
            value = await self._flight(flight, args, canon, member, ttl, expired_entry, force)
        except BaseException as exc:  # handed to every caller of the flight
            self._land(flight, member)
            if isinstance(exc, asyncio.CancelledError):
                flight.future.cancel()
            else:
                flight.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._land(flight, member)
            flight.future.set_result(value)

    async def _flight(
        self,
        flight: _Flight,
        args: Mapping[str, Any],
        canon: str,
        member: str,
        ttl: float | None,
        expired_entry: str | None,
        force: bool,
    ) -> Any:
        """One process's flight for ``member``: win the lease and run the action, or
        wait (blocked, woken by the release) for the flight that holds it."""
        store = self._store
        recheck = not force
        while True:
            token = uuid.uuid4().hex
            holder, lease_left = await store.claim(member, token, self.lease_ms)
            if holder is None:
                return await self._run_flight(
                    flight, args, canon, member, ttl, expired_entry, token, recheck
                )
            recheck = True  # whatever the winner stores is fresh enough for us
            outcome = await store.wait(member, holder, lease_left, self.poll_ms)
            if outcome is None:
                continue  # the winner vanished without an outcome: compete again
            ok, etype, message = outcome
            if ok:
                n = flight.callers
                kind, data = await store.get(member, canon, ttl, count="c", n=n)
                if kind == "hit":
                    late = self._land(flight, member) - n
                    if late:
                        await store.count({"coalesced": late})
                    self._log("hit")
                    return codec.loads(data)
                expired_entry = data or None
                continue  # stored nothing we can use (skipped, or gone): compete again
            await store.count({"misses": self._land(flight, member)})
            raise SingleFlightFailed(self.name, etype, message)

    async def _run_flight(
        self,
        flight: _Flight,
        args: Mapping[str, Any],
        canon: str,
        member: str,
        ttl: float | None,
        expired_entry: str | None,
        token: str,
        recheck: bool,
    ) -> Any:
        """The winner: run the action, store, then release the lease publishing the
        outcome (a failure is shared with every caller that waited for this run)."""
        store = self._store
        try:
            if recheck:
                # a previous winner may have stored the entry and released its lease
                # between our miss and our claim: don't run it twice
                kind, data = await store.get(member, canon, ttl)
                if kind == "hit":
                    n = self._land(flight, member)
                    await store.release(member, token, None, {"hits": 1, "coalesced": n - 1})
                    self._log("hit")
                    return codec.loads(data)
                expired_entry = data or None
            value = await self._fill(args, canon, member, ttl, expired_entry)
        except BaseException as exc:
            n = self._land(flight, member)
            if isinstance(exc, Exception):
                await store.release(member, token, exc, {"misses": n})
            else:  # cancelled: free the lease, nothing to share
                await asyncio.shield(store.release(member, token, None, {"misses": n}))
            raise
        n = self._land(flight, member)
        await store.release(member, token, None, {"misses": 1, "coalesced": n - 1})
        return value

    async def get(
        self, args: Mapping[str, Any] | None = None, *, ttl: float | None = None
    ) -> Hit[T] | Miss:
        """Low level read: ``ttl`` is only a read bound (``None`` = none; the cache's
        default is not applied). Never writes."""
        canon = canonical_args(args)
        kind, data = await self._store.get(_digest(canon), canon, _check_ttl(ttl))
        if kind == "hit":
            return Hit(codec.loads(data))
        return Miss(data or None)

    async def put(
        self,
        args: Mapping[str, Any] | None,
        value: T,
        *,
        ttl: float | _Unset | None = UNSET,
        expired_entry: str | None = None,
    ) -> PutResult:
        """Low level fill (spec §4.3): reuses a matching fresh entry unless it is the
        ``expired_entry`` the caller observed."""
        canon = canonical_args(args)
        effective = self._effective_ttl(ttl)
        if expired_entry is not None and not isinstance(expired_entry, str):
            raise ConfigError("expired_entry must be an entry id (str) or None")
        encoded = self._encode(value)
        if encoded is None:
            return PutResult(False, False)
        return await self._store.put(
            _digest(canon), canon, encoded, effective, expired_entry, self.gc_grace_ms
        )

    async def remove(self, args: Mapping[str, Any] | None = None) -> bool:
        """Delete the entry for ``args``; ``True`` if there was one."""
        return await self._store.remove(_digest(canonical_args(args)))

    async def remove_all_for_name(self, *, batch_size: int = 100) -> int:
        """Delete every entry of this cache name; returns the count."""
        _check_batch(batch_size)
        return await self._store.remove_all(before=None, batch_size=batch_size)

    async def remove_all(self, before: float | None = None) -> int:
        """Deprecated (as in the reference): removes entries of **all** names."""
        warnings.warn(
            "ActionCache.remove_all() clears every cache name; use remove_all_for_name() "
            "or rkit.action_cache.remove_all(app)",
            DeprecationWarning,
            stacklevel=2,
        )
        return await remove_all(self.app, before=before)

    async def purge(self, *, now: float | None = None) -> int:
        """Delete this name's entries whose write-time TTL has passed; returns the count."""
        bound = _check_time(now, "now")
        return await self._store.purge(bound if bound is not None else await self.app.server_time())

    async def stats(self) -> CacheStats:
        """Entries, hits and misses (``fetch`` calls) of this cache name."""
        return await self._store.stats_of()
