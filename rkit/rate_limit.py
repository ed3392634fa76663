"""Rate limiter: token bucket and fixed window limits whose state lives in Redis.

Each (name, key) is one Redis hash changed only by ``lua/rate_limit/eval.lua``, so
concurrent callers are totally ordered by Redis and can never over-admit. Configs
travel with every call (they are not stored); time comes from the Redis server
unless the App has a test clock. Spec: rate-limiter.md.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from . import scripts
from .clock import argv_now
from .errors import (
    ConfigError,
    RateLimitCountTooLarge,
    RateLimited,
    RateLimitNotDefined,
    is_rate_limit_error,
)
from .keys import check_part, encode

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "SECOND",
    "WEEK",
    "CalculatedState",
    "FixedWindow",
    "LimitRequest",
    "RateLimitConfig",
    "RateLimitResult",
    "RateLimitValue",
    "RateLimiter",
    "TokenBucket",
    "calculate_rate_limit",
    "is_rate_limit_error",
]

SECOND: int = 1_000
MINUTE: int = 60 * SECOND
HOUR: int = 60 * MINUTE
DAY: int = 24 * HOUR
WEEK: int = 7 * DAY

Rng = Callable[[], float]

_COUNT_1 = b"1"
# per config: (ARGV string, shards, uses randoms, count bound, count bound with reserve)
_Hot = tuple[bytes, int, bool, float, float]
MAX_DEBT_MS = 1e14
"""Longest wait one reservation may ask for (~3,170 years): with ``max_reserved=None``
a ``count`` needing more (or an infinite ``retry_after``) is RateLimitCountTooLarge;
state TTLs are capped at the same span."""
_HOT_CACHE: dict[int, tuple[Any, _Hot]] = {}
# eval's ARGV[1]: the mode and the flags "<reserve><throws>" as 0/1 digits
_OPS = {
    (m, r, t): m + f"{int(r)}{int(t)}".encode()
    for m in (b"limit", b"check", b"limit+", b"check+")
    for r in (False, True)
    for t in (False, True)
}

_Pos = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
_NonNeg = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
_Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _LimitBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: _Pos
    """Units added per ``period``."""
    period: _Pos
    """Milliseconds."""
    capacity: _Pos | None = None
    """Most units that can accumulate; default ``rate``."""
    max_reserved: _NonNeg | None = None
    """Most reservation debt; ``None`` = unlimited, ``0`` = no debt (DEVIATION Q1)."""
    shards: _Finite | None = None
    """Sub-buckets (rounded to the nearest integer; ``None``/``0`` mean 1)."""

    @field_validator("shards")
    @classmethod
    def _round_shards(cls, v: float | None) -> int | None:
        if v is None or v == 0:
            return None
        n = math.floor(v + 0.5)
        if n <= 0:
            raise ValueError("Shards must be a positive number")
        return n

    @model_validator(mode="after")
    def _finite_refill(self) -> Self:
        """The scripts divide by ``period`` and by the refill rate: both must stay
        finite and non-zero in floating point (e.g. rate=1e308, period=1e-300 would
        make the refill rate infinite and the state's TTL unrepresentable)."""
        per_ms = self.rate / self.period
        if not (math.isfinite(per_ms) and per_ms > 0):
            raise ValueError(
                f"rate / period must be a finite number > 0, got {self.rate!r} / {self.period!r}"
            )
        return self

    # -- derived numbers (cached: configs are frozen) -----------------------------------

    @property
    def n_shards(self) -> int:
        return int(self.shards or 1)

    @property
    def effective_capacity(self) -> float:
        return self.capacity if self.capacity is not None else self.rate

    def filled(self) -> Self:
        """This config with defaults filled in (``shards``, ``capacity``)."""
        return self.with_(shards=self.n_shards, capacity=self.effective_capacity)

    def per_shard(self) -> Self:
        """The numbers one shard enforces (spec §4.1)."""
        n = self.n_shards
        return self.with_(
            rate=self.rate / n,
            capacity=self.effective_capacity / n,
            max_reserved=None if self.max_reserved is None else self.max_reserved / n,
            shards=1,
        )

    def with_(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def _hot(self) -> _Hot:
        """What every call needs, computed once per config object (cached by id)."""
        entry = _HOT_CACHE.get(id(self))
        if entry is not None and entry[0] is self:
            return entry[1]
        start = getattr(self, "start", None)
        argv = " ".join(
            (
                "fw" if isinstance(self, FixedWindow) else "tb",
                repr(float(self.rate)),
                repr(float(self.period)),
                repr(float(self.effective_capacity)),
                "-" if self.max_reserved is None else repr(float(self.max_reserved)),
                str(self.n_shards),
                "-" if start is None else repr(float(start)),
            )
        ).encode("ascii")
        n = self.n_shards
        m = 1 if n < 3 else 2  # DEVIATION Q2: the achievable bound
        cap = self.effective_capacity
        # unlimited debt still has to be repaid within MAX_DEBT_MS (the scripts' TTL cap)
        debt = self.max_reserved
        if debt is None:
            debt = self.rate / self.period * MAX_DEBT_MS
        hot = (argv, n, self._uses_randoms, m * cap / n, m * (cap + debt) / n)  # Q1
        if len(_HOT_CACHE) >= 4096:  # bounded: inline configs built per call
            _HOT_CACHE.clear()
        _HOT_CACHE[id(self)] = (self, hot)  # holds self, so the id stays unique
        return hot

    def _argv(self) -> bytes:
        """The config as the scripts' one ARGV string (see ``rl_cfg`` in Lua)."""
        return self._hot()[0]

    @property
    def _uses_randoms(self) -> bool:
        """Whether shard picks or a random window phase can matter."""
        return self.n_shards > 1 or (isinstance(self, FixedWindow) and self.start is None)


class TokenBucket(_LimitBase):
    """Continuous refill: ``rate`` units per ``period`` ms, up to ``capacity``."""

    kind: Literal["token bucket"] = "token bucket"
    start: None = None


class FixedWindow(_LimitBase):
    """Lump refill of ``rate`` units at each window start ``start + k·period``."""

    kind: Literal["fixed window"] = "fixed window"
    start: _Finite | None = None
    """Window phase (UTC ms); default: a random phase per bucket."""


RateLimitConfig = Annotated[TokenBucket | FixedWindow, Field(discriminator="kind")]
_CONFIG_ADAPTER: TypeAdapter[TokenBucket | FixedWindow] = TypeAdapter(RateLimitConfig)


def parse_config(config: Any) -> TokenBucket | FixedWindow:
    """A config model from a model or a plain mapping (``{"kind": ..., ...}``)."""
    if isinstance(config, TokenBucket | FixedWindow):
        return config
    if isinstance(config, Mapping):
        return _CONFIG_ADAPTER.validate_python(dict(config))
    raise ConfigError(
        f"rate limit config must be TokenBucket, FixedWindow or a mapping, "
        f"got {type(config).__name__}"
    )


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """Outcome of ``limit``/``check``: ``ok`` and, when set, ms to wait.

    With ``detail=True`` also what ``RateLimit-*`` response headers need, from the
    same script call (no second round trip): ``limit`` (the bucket's capacity),
    ``remaining`` (units left after this call; what is left now when refused) and
    ``reset_at`` (ms on the limiter's clock when the bucket is full again). For a
    sharded config they are estimated from the shards the call touched."""

    ok: bool
    retry_after: float | None = None
    limit: float | None = None
    remaining: float | None = None
    reset_at: float | None = None

    def __bool__(self) -> bool:
        return self.ok

    def reset_after(self, now: float) -> float | None:
        """ms from ``now`` (on the limiter's clock) until the bucket is full again."""
        return None if self.reset_at is None else max(0.0, self.reset_at - now)


@dataclass(frozen=True, slots=True)
class RateLimitValue:
    """A bucket's stored state (``get_value``/``credit``)."""

    value: float
    ts: float
    shard: int
    config: TokenBucket | FixedWindow
    """Unsharded config, defaults filled; fixed window ``start`` = the shard's anchor."""
    shard_config: TokenBucket | FixedWindow
    """The per-shard numbers actually enforced."""


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """One entry of :meth:`RateLimiter.limit_all`."""

    name: str
    key: str | None = None
    count: float = 1
    config: TokenBucket | FixedWindow | None = None


@dataclass(frozen=True, slots=True)
class CalculatedState:
    value: float
    ts: float
    retry_after: float | None
    window_start: float | None


_OK = RateLimitResult(True, None)


def calculate_rate_limit(
    existing: tuple[float, float] | None,
    config: TokenBucket | FixedWindow,
    now: float,
    count: float = 0,
    *,
    rand: float = 0.0,
) -> CalculatedState:
    """Project a bucket state ``(value, ts)`` to ``now`` and consume ``count`` (pure).

    The same math as the Lua scripts (spec §4.2 with DEVIATIONs Q3, Q4). The config's
    numbers are used as given (pass ``per_shard()`` for one shard of a sharded limit).
    """
    cap = config.effective_capacity
    fw = isinstance(config, FixedWindow)
    if existing is None:
        value = cap
        if not fw:
            ts = now
        elif config.start is not None:
            ts = config.start + math.floor((now - config.start) / config.period) * config.period
        else:
            ts = now - math.floor(rand * config.period)
    else:
        value, ts = float(existing[0]), float(existing[1])
    if not fw:
        per_ms = config.rate / config.period
        elapsed = max(0.0, now - ts)
        value = min(value + elapsed * per_ms, cap) - count
        ts = max(ts, now)
        retry = (-value) / per_ms if value < 0 else None
        return CalculatedState(value, ts, retry, None)
    window_start = ts
    windows = max(0, math.floor((now - ts) / config.period))
    value = min(value + config.rate * windows, cap) - count
    ts = ts + windows * config.period
    retry = ts + config.period * math.ceil(-value / config.rate) - now if value < 0 else None
    return CalculatedState(value, ts, retry, window_start)


def _eval_args(
    op: bytes, cfg: bytes, count: bytes, now: str, rand: bytes
) -> tuple[str | bytes, ...]:
    """eval's ARGV: op, config, count, then now and randoms unless empty (fewer
    arguments: less packing in redis-py and fewer strings for the script)."""
    if rand:
        return (op, cfg, count, now, rand)
    if now:
        return (op, cfg, count, now)
    return (op, cfg, count)


def _check_count(count: Any, what: str = "count") -> float:
    if isinstance(count, bool) or not isinstance(count, int | float):
        raise ConfigError(f"{what} must be a number, got {type(count).__name__}")
    if not math.isfinite(count) or count < 0:
        raise ConfigError(f"{what} must be a finite number >= 0, got {count!r}")
    return count


def _check_key(key: Any) -> None:
    if key is not None and type(key) is not str:
        raise ConfigError(f"key must be a str or None, got {type(key).__name__}")


def _check_name(name: Any) -> None:
    if type(name) is not str:
        raise ConfigError(f"rate limit name must be a str, got {type(name).__name__}")


class RateLimiter:
    """Named rate limits on an :class:`~rkit.App`.

    >>> limiter = RateLimiter(app, {"send": TokenBucket(rate=10, period=MINUTE)})
    >>> if not await limiter.limit("send", key=user_id): ...

    ``rng`` (uniform ``[0, 1)``) picks shards and fixed-window phases; inject one for
    deterministic tests. ``hash_tag`` puts every key of this limiter in one Cluster
    slot so :meth:`limit_all` is a single atomic script there too.
    ``spread_shards=True`` stores each shard of a sharded limit under its own key (its
    own slot), so one hot limit spreads over Cluster nodes (spec §7.5); shard choice
    is then made client-side and only each shard is atomic. ``name`` registers the
    limiter in ``app.components`` (default ``limiter-<n>``).
    """

    def __init__(
        self,
        app: App,
        limits: Mapping[str, TokenBucket | FixedWindow | Mapping[str, Any]] | None = None,
        *,
        rng: Rng | None = None,
        hash_tag: str | None = None,
        spread_shards: bool = False,
        name: str | None = None,
    ) -> None:
        self.app = app
        self.limits: dict[str, TokenBucket | FixedWindow] = {}
        for limit_name, cfg in (limits or {}).items():
            _check_name(limit_name)
            self.limits[limit_name] = parse_config(cfg)
        self._rng: Rng = rng or random.random
        if hash_tag is not None and type(hash_tag) is not str:
            raise ConfigError("hash_tag must be a str or None")
        self.hash_tag = hash_tag
        if spread_shards and hash_tag is not None:
            raise ConfigError("spread_shards and hash_tag exclude each other (one slot vs many)")
        self.spread_shards = bool(spread_shards)
        self._shard_cfgs: dict[int, tuple[Any, Any]] = {}
        self._stem = app.keys.tag("rl", hash_tag) + ":" if hash_tag is not None else None
        self._key_cached = lru_cache(maxsize=4096)(self._key_uncached)
        self._eval = scripts.load("rate_limit", "eval")  # one shard: the fast path
        self._eval_sharded = scripts.load("rate_limit", "eval_sharded")
        self._credit = scripts.load("rate_limit", "credit")
        self._value = scripts.load("rate_limit", "value")
        self._limit_all = scripts.load("rate_limit", "limit_all")
        self._clear_one = scripts.load("rate_limit", "clear_one")
        if name is None:
            n = len(app.components.of_kind("rate_limit")) + 1
            while app.components.get("rate_limit", f"limiter-{n}") is not None:
                n += 1
            name = f"limiter-{n}"
        self.name = name
        app.components.add("rate_limit", name, self)

    # -- helpers -----------------------------------------------------------------------

    def key_for(self, name: str, key: str | None = None) -> str:
        """The Redis key holding every shard of (name, key)."""
        return self._key_cached(name, key)

    def shard_key_for(self, name: str, key: str | None, shard: int) -> str:
        """Spread mode: the Redis key of one shard (its own hash tag)."""
        self.key_for(name, key)  # the parts' size check
        return self.app.keys.tag("rl", name, key, str(shard))

    def _spread(self, cfg: TokenBucket | FixedWindow) -> bool:
        return self.spread_shards and cfg.n_shards > 1

    def _one_shard(self, cfg: TokenBucket | FixedWindow) -> Any:
        """The per-shard config as a 1-shard config (cached per config object)."""
        entry = self._shard_cfgs.get(id(cfg))
        if entry is None or entry[0] is not cfg:
            if len(self._shard_cfgs) >= 1024:
                self._shard_cfgs.clear()
            entry = (cfg, cfg.per_shard())
            self._shard_cfgs[id(cfg)] = entry
        return entry[1]

    def _key_uncached(self, name: str, key: str | None) -> str:
        # checked once per (name, key) here, on a cache miss: the cache holds only
        # parts of at most 1 KiB, so its 4,096 entries stay within a few MB
        check_part(name, "rate limit name")
        if key is not None:
            check_part(key, "rate limit key")
        if self._stem is not None:
            return f"{self._stem}{encode(name)}:{encode(key)}"
        return self.app.keys.tag("rl", name, key)

    def config_for(
        self, name: str, config: TokenBucket | FixedWindow | Mapping[str, Any] | None = None
    ) -> TokenBucket | FixedWindow:
        """The config a call uses: inline beats named (Q11); neither raises."""
        _check_name(name)
        if config is not None:
            return parse_config(config)
        try:
            return self.limits[name]
        except KeyError:
            raise RateLimitNotDefined(name) from None

    def _validate(
        self, name: str, cfg: TokenBucket | FixedWindow, count: Any, reserve: bool
    ) -> float:
        count = _check_count(count)
        _, n, _, bound, bound_reserve = cfg._hot()
        if reserve:
            if count > bound_reserve:
                raise RateLimitCountTooLarge(name, count, bound_reserve, n, reserve=True)
        elif count > bound:
            raise RateLimitCountTooLarge(name, count, bound, n, reserve=False)
        return float(count) if type(count) is not float and count != 1 else count

    def _randoms(self, cfg: TokenBucket | FixedWindow) -> bytes:
        """Always draw the four numbers (deterministic tests); send them only if used."""
        r = self._rng
        drawn = (r(), r(), r(), r())
        if not cfg._hot()[2]:
            return b""
        return " ".join(map(repr, drawn)).encode("ascii")

    async def _run(
        self,
        mode: bytes,
        name: str,
        key: str | None,
        count: Any,
        reserve: bool,
        throws: bool,
        config: Any,
        detail: bool = False,
    ) -> RateLimitResult:
        cfg = self.config_for(name, config)
        if key is not None and type(key) is not str:
            _check_key(key)
        count = self._validate(name, cfg, count, reserve)
        if self._spread(cfg):
            if detail:
                raise ConfigError("detail=True is not available with spread_shards")
            return await self._run_spread(mode, name, key, cfg, count, reserve, throws)
        if detail is not False:
            if detail is not True:
                raise ConfigError(f"detail must be a bool, got {detail!r}")
            mode += b"+"
        argv, n = cfg._hot()[:2]
        res = await (self._eval if n == 1 else self._eval_sharded)(
            self.app.redis,
            (self.key_for(name, key),),
            _eval_args(
                _OPS[mode, reserve, throws],
                argv,
                _COUNT_1 if count == 1 else repr(count).encode(),
                argv_now(self.app.clock),
                self._randoms(cfg),
            ),
        )
        if res == 1:
            return _OK
        status = res[0]
        retry = float(res[1]) if res[1] else None
        if detail and status != "THROW":
            return self._detailed(cfg, status == "OK", retry, res)
        if status == "OK":
            return RateLimitResult(True, retry)
        if status == "LIMITED":
            return RateLimitResult(False, retry)
        raise RateLimited(name, retry if retry is not None else 0.0)

    def _detailed(
        self, cfg: TokenBucket | FixedWindow, ok: bool, retry: float | None, res: Any
    ) -> RateLimitResult:
        """A result with ``limit``, ``remaining`` and ``reset_at`` from the decisions of
        a "+" mode reply: [shard, take, value after the take, ts] per shard touched."""
        one = self._one_shard(cfg)
        rate, period, cap = float(one.rate), float(one.period), float(one.effective_capacity)
        fixed = one.kind == "fixed window"
        left: list[float] = []
        full_at = 0.0
        for x in range(2, len(res), 4):
            take, value, ts = float(res[x + 1]), float(res[x + 2]), float(res[x + 3])
            if not ok:
                value += take  # refused: the bucket holds what it held
            left.append(max(0.0, value))
            missing = cap - value
            if missing <= 0:
                at = ts
            elif fixed:
                at = ts + period * math.ceil(missing / rate)
            else:
                at = ts + missing / (rate / period)
            full_at = max(full_at, at)
        n = cfg.n_shards
        remaining = left[0] if n == 1 else sum(left) / len(left) * n
        return RateLimitResult(
            ok,
            retry,
            float(cfg.effective_capacity),
            min(remaining, float(cfg.effective_capacity)),
            full_at,
        )

    # -- spread mode (spec §7.5) ---------------------------------------------------------

    async def _read_shards(
        self, name: str, key: str | None, cfg: TokenBucket | FixedWindow, shards: Sequence[int]
    ) -> tuple[float, list[tuple[int, float | None, float | None]]]:
        """Stored (value, ts) of ``shards`` (None when missing) and the clock's now."""
        now_arg = argv_now(self.app.clock)
        if not self._spread(cfg):
            res = await self._value(
                self.app.redis, (self.key_for(name, key),), (now_arg, *map(str, shards))
            )
            pairs = [(res[1 + 2 * i], res[2 + 2 * i]) for i in range(len(shards))]
            now = float(res[0])
        else:  # one key (one slot, maybe one node) per shard: read them concurrently
            replies = await asyncio.gather(
                *(
                    self._value(self.app.redis, (self.shard_key_for(name, key, i),), (now_arg, "0"))
                    for i in shards
                )
            )
            pairs = [(r[1], r[2]) for r in replies]
            now = max(float(r[0]) for r in replies)
        out = [
            (shard, float(v) if v else None, float(ts) if v else None)
            for shard, (v, ts) in zip(shards, pairs, strict=True)
        ]
        return now, out

    async def _eval_shard(
        self,
        mode: bytes,
        skey: str,
        one: Any,
        count: float,
        reserve: bool,
        throws: bool,
        rstart: float,
    ) -> tuple[str, float | None]:
        res = await self._eval(
            self.app.redis,
            (skey,),
            (
                _OPS[mode, reserve, throws],
                one._argv(),
                repr(count),
                argv_now(self.app.clock),
                f"0 0 {rstart!r} 0".encode("ascii"),
            ),
        )
        if res == 1:
            return "OK", None
        return res[0], (float(res[1]) if res[1] else None)

    async def _run_spread(
        self,
        mode: bytes,
        name: str,
        key: str | None,
        cfg: TokenBucket | FixedWindow,
        count: float,
        reserve: bool,
        throws: bool,
    ) -> RateLimitResult:
        """Power of two choices client-side: read two shards, consume on the fuller,
        fall back to the other, then split the request and credit back on failure."""
        n = cfg.n_shards
        r = self._rng
        r1, r2, rs1, rs2 = r(), r(), r(), r()
        i = min(int(r1 * n), n - 1)
        j = (i + 1 + min(int(r2 * (n - 1)), n - 2)) % n
        one = self._one_shard(cfg)
        now, states = await self._read_shards(name, key, cfg, (i, j))
        projected = {}
        for (shard, v, ts), rs in zip(states, (rs1, rs2), strict=True):
            state = None if v is None or ts is None else (v, ts)
            projected[shard] = calculate_rate_limit(state, one, now, 0, rand=rs).value
        rstart = {i: rs1, j: rs2}
        order = (i, j) if projected[i] >= projected[j] else (j, i)
        retries: list[float] = []
        for shard in order:
            status, retry = await self._eval_shard(
                mode,
                self.shard_key_for(name, key, shard),
                one,
                count,
                reserve,
                throws,
                rstart[shard],
            )
            if status == "OK":
                return RateLimitResult(True, retry)
            if retry is not None:
                retries.append(retry)
        best, other = order
        part = min(count, projected[best])
        if not reserve and 0 < part < count:
            # combine: the affordable part from the fuller shard, the rest from the other
            ok_a, _ = await self._eval_shard(
                mode, self.shard_key_for(name, key, best), one, part, False, throws, rstart[best]
            )
            if ok_a == "OK":
                ok_b, retry_b = await self._eval_shard(
                    mode,
                    self.shard_key_for(name, key, other),
                    one,
                    count - part,
                    False,
                    throws,
                    rstart[other],
                )
                if ok_b == "OK":
                    return RateLimitResult(True, None)
                if mode != b"check":  # compensate: never over-admit
                    await self._credit_key(self.shard_key_for(name, key, best), one, 0, part)
                if retry_b is not None:
                    retries.append(retry_b)
        worst = max(retries) if retries else 0.0
        if throws:
            raise RateLimited(name, worst)
        return RateLimitResult(False, worst)

    async def _credit_key(self, skey: str, cfg: Any, shard: int | None, count: float) -> Any:
        return await self._credit(
            self.app.redis,
            (skey,),
            (
                argv_now(self.app.clock),
                cfg._argv(),
                "" if shard is None else str(shard),
                repr(float(count)),
            ),
        )

    # -- public API --------------------------------------------------------------------

    async def limit(
        self,
        name: str,
        *,
        key: str | None = None,
        count: float = 1,
        reserve: bool = False,
        throws: bool = False,
        config: TokenBucket | FixedWindow | Mapping[str, Any] | None = None,
        detail: bool = False,
    ) -> RateLimitResult:
        """Consume ``count`` units of (name, key).

        Returns ``ok=True`` (proceed; with ``reserve`` maybe after ``retry_after`` ms)
        or ``ok=False`` with the ms after which a retry could succeed. With
        ``throws=True`` raises :class:`RateLimited` instead whenever ``retry_after``
        is set, writing nothing. ``detail=True`` fills ``limit``, ``remaining`` and
        ``reset_at`` (for ``RateLimit-*`` headers) from the same script call; not
        with ``spread_shards`` (ConfigError).
        """
        return await self._run(b"limit", name, key, count, reserve, throws, config, detail)

    async def check(
        self,
        name: str,
        *,
        key: str | None = None,
        count: float = 1,
        reserve: bool = False,
        throws: bool = False,
        config: TokenBucket | FixedWindow | Mapping[str, Any] | None = None,
        detail: bool = False,
    ) -> RateLimitResult:
        """Evaluate like :meth:`limit` but never write (``remaining`` with ``detail``:
        what would be left after ``count``)."""
        return await self._run(b"check", name, key, count, reserve, throws, config, detail)

    async def reset(
        self,
        name: str,
        *,
        key: str | None = None,
        config: TokenBucket | FixedWindow | Mapping[str, Any] | None = None,
    ) -> None:
        """Forget every shard of (name, key); the next use starts full. With
        ``spread_shards`` the shard keys of the current config (named, or ``config``
        for an inline limit) are deleted, and a SCAN finds any other shard key of
        (name, key) — left by a config with more shards than today's."""
        _check_name(name)
        _check_key(key)
        if config is not None:
            parse_config(config)  # validated before anything is deleted
        keys = [self.key_for(name, key)]
        if self.spread_shards:
            cfg = parse_config(config) if config is not None else self.limits.get(name)
            n = cfg.n_shards if cfg is not None else 0
            keys.extend(self.shard_key_for(name, key, i) for i in range(n))
            stem = self.app.keys.tag("rl", name, key)  # rkit:{ns:rl:N:K}
            pattern = stem[:-1] + ":*}"  # base64url parts hold no glob characters
            keys.extend([k async for k in _scan_all(self.app.redis, pattern) if k not in keys])
        # one DEL per key: on Cluster the keys live in different slots
        for k in keys:
            await self.app.redis.delete(k)

    async def get_value(
        self,
        name: str,
        *,
        key: str | None = None,
        sample_shards: int = 1,
        config: TokenBucket | FixedWindow | Mapping[str, Any] | None = None,
    ) -> RateLimitValue:
        """Inspect a bucket without writing (spec §3.6 with DEVIATION Q5).

        Samples ``min(sample_shards, shards)`` distinct shards, projects them to the
        latest sampled ``ts`` and reports the fullest one's *stored* value and ts.
        A never-used shard reads as full at "now".
        """
        cfg = self.config_for(name, config)
        _check_key(key)
        if isinstance(sample_shards, bool) or not isinstance(sample_shards, int):
            raise ConfigError("sample_shards must be an int")
        n = cfg.n_shards
        k = max(1, min(sample_shards, n))
        rng = self._rng
        pool = list(range(n))
        picked = []
        for _ in range(k):
            picked.append(pool.pop(min(int(rng() * len(pool)), len(pool) - 1)))
        now, stored = await self._read_shards(name, key, cfg, picked)
        shard_cfg = cfg.per_shard()
        states: list[tuple[int, float, float]] = []
        for shard, v, ts in stored:
            if v is not None and ts is not None:
                states.append((shard, v, ts))
            else:
                fresh = calculate_rate_limit(None, shard_cfg, now, 0, rand=rng())
                states.append((shard, fresh.value, fresh.ts))
        latest = max(ts for _, _, ts in states)
        best = states[0]
        best_v = -math.inf
        for st in states:
            projected = calculate_rate_limit((st[1], st[2]), shard_cfg, latest, 0).value
            if projected >= best_v:  # ties go to the later sampled
                best, best_v = st, projected
        shard, value, ts = best
        filled = cfg.filled()
        if isinstance(cfg, FixedWindow) and cfg.start is None:
            filled = filled.with_(start=ts)
            shard_cfg = shard_cfg.with_(start=ts)
        return RateLimitValue(value, ts, shard, filled, shard_cfg)

    async def credit(
        self,
        name: str,
        *,
        key: str | None = None,
        count: float,
        shard: int | None = None,
        config: TokenBucket | FixedWindow | Mapping[str, Any] | None = None,
    ) -> RateLimitValue:
        """Give ``count`` units back (a refund), clamped at capacity.

        Credits ``shard`` or, by default, the shard with the lowest projected value.
        """
        cfg = self.config_for(name, config)
        _check_key(key)
        count = _check_count(count)
        if count <= 0:
            raise ConfigError(f"credit count must be > 0, got {count!r}")
        if shard is not None and (
            isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < cfg.n_shards
        ):
            raise ConfigError(f"shard must be an int in 0..{cfg.n_shards - 1}, got {shard!r}")
        if self._spread(cfg):
            one = self._one_shard(cfg)
            if shard is None:  # the shard with the lowest projected value
                now, stored = await self._read_shards(name, key, cfg, range(cfg.n_shards))
                lowest = math.inf
                for i, v, ts in stored:
                    if v is not None and ts is not None:
                        p = calculate_rate_limit((v, ts), one, now, 0).value
                        if p < lowest:
                            lowest, shard = p, i
                shard = 0 if shard is None else shard
            res = await self._credit_key(self.shard_key_for(name, key, shard), one, 0, count)
            res = [str(shard), *res[1:]]
        else:
            res = await self._credit_key(self.key_for(name, key), cfg, shard, count)
        return RateLimitValue(
            float(res[1]), float(res[2]), int(res[0]), cfg.filled(), cfg.per_shard()
        )

    async def limit_all(
        self, requests: Sequence[LimitRequest], *, throws: bool = False
    ) -> RateLimitResult:
        """Consume several limits all-or-nothing.

        One atomic script when all keys share a slot (standalone Redis, or a
        ``hash_tag``); on Cluster across slots the limits are taken one by one and
        what was taken is credited back if a later one fails (never over-admits).
        ``retry_after`` is the largest among the failing limits.
        """
        prepared = []
        for req in requests:
            if not isinstance(req, LimitRequest):
                raise ConfigError(f"limit_all takes LimitRequest items, got {type(req).__name__}")
            cfg = self.config_for(req.name, req.config)
            _check_key(req.key)
            count = self._validate(req.name, cfg, req.count, False)
            prepared.append((req, cfg, count, self.key_for(req.name, req.key)))
        if not prepared:
            return RateLimitResult(True, None)
        across_slots = (
            self.app.is_cluster and self._stem is None and len({p[3] for p in prepared}) > 1
        )
        if across_slots or any(self._spread(p[1]) for p in prepared):
            return await self._limit_all_sequential(prepared, throws)
        args: list[str | bytes] = [argv_now(self.app.clock), "1" if throws else "0"]
        for _, cfg, count, _ in prepared:
            args.extend((cfg._argv(), repr(count), self._randoms(cfg)))
        res = await self._limit_all(self.app.redis, [p[3] for p in prepared], args)
        retry = float(res[1]) if res[1] else None
        if res[0] == "THROW":
            failing = [p[0].name for i, p in enumerate(prepared) if res[3 + 2 * i]]
            raise RateLimited(",".join(failing) or prepared[0][0].name, retry or 0.0)
        return RateLimitResult(res[0] == "OK", retry)

    async def _limit_all_sequential(
        self, prepared: list[tuple[LimitRequest, Any, float, str]], throws: bool
    ) -> RateLimitResult:
        taken: list[tuple[LimitRequest, Any, float, int | None]] = []
        worst: float | None = None
        failed: list[str] = []
        for req, cfg, count, key in prepared:
            if self._spread(cfg):
                got = await self._run_spread(b"limit", req.name, req.key, cfg, count, False, False)
                if got.ok:
                    taken.append((req, cfg, count, None))  # credited to the lowest shard
                    continue
                failed.append(req.name)
                worst = max(worst or 0.0, got.retry_after or 0.0)
                break
            res = await (self._eval if cfg.n_shards == 1 else self._eval_sharded)(
                self.app.redis,
                (key,),
                _eval_args(
                    _OPS[b"limit+", False, False],
                    cfg._argv(),
                    repr(count).encode(),
                    argv_now(self.app.clock),
                    self._randoms(cfg),
                ),
            )
            if res[0] == "OK":
                # shard, take for each decision
                for x in range(2, len(res), 4):
                    taken.append((req, cfg, float(res[x + 1]), int(res[x])))
                continue
            failed.append(req.name)
            r = float(res[1]) if res[1] else 0.0
            worst = r if worst is None else max(worst, r)
            break
        if not failed:
            return RateLimitResult(True, None)
        for req, cfg, amount, shard in taken:  # compensate: never over-admit
            if amount > 0:
                await self.credit(req.name, key=req.key, count=amount, shard=shard, config=cfg)
        if throws:
            raise RateLimited(",".join(failed), worst or 0.0)
        return RateLimitResult(False, worst)

    async def clear_all(self, *, before: float | None = None) -> int:
        """Delete every rate-limit state of this App's namespace created at or before
        ``before`` (ms; default now). Scans every primary on Cluster. Returns the count."""
        if before is not None:
            before = _check_count(before, "before")
        redis = self.app.redis
        now = argv_now(self.app.clock)
        args = (now, "" if before is None else repr(float(before)))
        deleted = 0
        async for key in _scan_all(redis, self.app.keys.pattern("rl")):
            deleted += int(await self._clear_one(redis, (key,), args))
        return deleted

    async def server_time(self) -> float:
        """The limiter's clock in ms (Redis ``TIME`` unless a test clock is set)."""
        return await self.app.server_time()

    def names(self) -> dict[str, TokenBucket | FixedWindow]:
        return dict(self.limits)


async def _scan_all(redis: Any, pattern: str) -> Any:
    """SCAN for keys matching ``pattern`` (redis-py's Cluster client scans every primary)."""
    async for k in redis.scan_iter(match=pattern, count=500):
        yield k
