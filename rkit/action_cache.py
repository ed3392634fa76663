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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from pydantic import BaseModel
from redis.exceptions import RedisError

from . import codec, scripts
from .clock import argv_now
from .errors import CacheValueTooLarge, ConfigError, SerializationError
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
    name: str
    entries: int
    hits: int
    misses: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return None if total == 0 else self.hits / total


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
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise ConfigError(f"{what} must be a finite number of ms or None, got {ttl!r}")
    return float(ttl)


# -- one cache name's keys and scripts ----------------------------------------------------


class _Store:
    """The Redis side of one cache name (usable without the action, e.g. by the API)."""

    def __init__(self, app: App, name: str) -> None:
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
        self._release = scripts.load("action_cache", "release")

    def entry(self, member: str) -> str:
        return f"{self.stem}:e:{member}"

    def lock(self, member: str) -> str:
        return f"{self.stem}:lock:{member}"

    async def get(
        self, member: str, canon: str, read_ttl: float | None, *, count: bool
    ) -> tuple[str, str]:
        res = await self._get(
            self.app.redis,
            (self.entry(member), self.stats),
            (
                argv_now(self.app.clock),
                "" if read_ttl is None else repr(read_ttl),
                canon,
                "1" if count else "0",
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
        res = await self._put(
            self.app.redis,
            (self.entry(member), self.idx, self.exp),
            (
                argv_now(self.app.clock),
                "" if ttl is None else repr(ttl),
                expired_entry or "",
                uuid.uuid4().hex,
                encoded,
                canon,
                repr(float(gc_grace_ms)),
                member,
            ),
        )
        return PutResult(res[0] == "1", res[1] == "1")

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
            deleted += int(
                await self._purge(
                    redis,
                    (self.idx, self.exp, *map(self.entry, members)),
                    (repr(now), *members),
                )
            )

    async def release(self, member: str, token: str) -> None:
        await self._release(self.app.redis, (self.lock(member),), (token,))

    async def stats_of(self) -> CacheStats:
        redis: Any = self.app.redis
        entries = await redis.zcard(self.idx)
        hits, misses = await redis.hmget(self.stats, "hits", "misses")
        return CacheStats(self.name, int(entries), int(hits or 0), int(misses or 0))


def _names_key(app: App) -> str:
    return app.keys.tag("ac") + ":names"


async def _register(app: App, name: str) -> None:
    registered: set[str] = app.components.state("action_cache:registered", set)
    if name not in registered:
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
    before = _check_ttl(before, "before")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batch_size must be a positive int")
    bound = before if before is not None else await app.server_time()
    total = 0
    for name in await cache_names(app):
        total += await _Store(app, name).remove_all(before=bound, batch_size=batch_size)
    return total


async def purge_all(app: App) -> int:
    """Delete every entry whose write-time TTL has passed, for every cache name."""
    now = await app.server_time()
    total = 0
    for name in await cache_names(app):
        total += await _Store(app, name).purge(now)
    return total


async def purge_all_job(ctx: dict[str, Any]) -> int:
    """:func:`purge_all` for a job context holding the App (``ctx["rkit_app"]``)."""
    return await purge_all(ctx["rkit_app"])


_ZERO = frozenset({0})
PURGE_HOURS = frozenset({3})
"""When the workers' daily purge of expired entries runs (UTC hour; one worker)."""


# -- the cache ----------------------------------------------------------------------------


class ActionCache(Generic[T]):
    """A read-through cache around one async function, called as ``await action(**args)``.

    ``name`` (default ``module:qualname``) is the cache namespace and version tag:
    bump it when the function's output changes. ``ttl`` (ms) bounds both new entries
    and reads; ``None`` = never expires. ``single_flight=True`` makes concurrent misses
    for one key run the action once (a lease in Redis; waiters get the fresh value).
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
        poll_ms: float = 50,
        gc_grace_ms: float = 60_000,
        fail_open: bool = False,
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
        if on_oversize not in ("raise", "skip"):
            raise ConfigError("on_oversize must be 'raise' or 'skip'")
        for what, v in (("lease_ms", lease_ms), ("poll_ms", poll_ms), ("gc_grace_ms", gc_grace_ms)):
            if _check_ttl(v, what) is None or v < 0:
                raise ConfigError(f"{what} must be a number >= 0")
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
        self._store = _Store(app, name)
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
        """
        call_args: Mapping[str, Any] = {} if args is None else args
        canon = canonical_args(call_args)
        member = _digest(canon)
        effective = self.ttl if ttl is UNSET else _check_ttl(ttl)
        sf = self.single_flight if single_flight is None else single_flight
        try:
            kind, data = await self._store.get(
                member, canon, 0.0 if force else effective, count=True
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
        redis = self.app.redis
        lock = self._store.lock(member)
        missing = object()

        async def peek() -> Any:
            """The fresh stored value, or ``missing`` (remembering an expired entry)."""
            nonlocal expired_entry
            kind, data = await self._store.get(member, canon, ttl, count=False)
            if kind == "hit":
                self._log("hit")
                return codec.loads(data)
            expired_entry = data or None
            return missing

        recheck = not force
        while True:
            token = uuid.uuid4().hex
            if await redis.set(lock, token, nx=True, px=max(1, int(self.lease_ms))):
                try:
                    # a previous winner may have stored the entry and released its
                    # lease between our miss and our claim: don't run it twice
                    if recheck and (value := await peek()) is not missing:
                        return value  # type: ignore[no-any-return]
                    return await self._fill(args, canon, member, ttl, expired_entry)
                finally:
                    await self._store.release(member, token)
            recheck = True  # whatever the winner stores is fresh enough for us
            # another caller is computing: wait for its entry or for the lease to go
            while True:
                await asyncio.sleep(self.poll_ms / 1000)
                if (value := await peek()) is not missing:
                    return value  # type: ignore[no-any-return]
                if not await redis.exists(lock):
                    break  # the winner failed or its lease ran out: compete again

    async def get(
        self, args: Mapping[str, Any] | None = None, *, ttl: float | None = None
    ) -> Hit[T] | Miss:
        """Low level read: ``ttl`` is only a read bound (``None`` = none; the cache's
        default is not applied). Never writes."""
        canon = canonical_args(args)
        kind, data = await self._store.get(_digest(canon), canon, _check_ttl(ttl), count=False)
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
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("batch_size must be a positive int")
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
        bound = _check_ttl(now, "now")
        return await self._store.purge(bound if bound is not None else await self.app.server_time())

    async def stats(self) -> CacheStats:
        """Entries, hits and misses (``fetch`` calls) of this cache name."""
        return await self._store.stats_of()
