"""NaN, infinities and numbers whose arithmetic overflows, at every public entry
point of the rate limiter: a ConfigError (a ValueError) before Redis is touched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from rkit import (
    App,
    ConfigError,
    FixedWindow,
    LimitRequest,
    RateLimitCountTooLarge,
    RateLimiter,
    TokenBucket,
)

from .._state import snapshot

NAN, INF = float("nan"), float("inf")
BAD = [NAN, INF, -INF]

CALLS: list[tuple[str, Callable[[RateLimiter, float], Awaitable[Any]]]] = [
    ("limit count", lambda rl, x: rl.limit("tb", count=x)),
    ("limit reserve count", lambda rl, x: rl.limit("tb", count=x, reserve=True)),
    ("check count", lambda rl, x: rl.check("fw", count=x)),
    ("credit count", lambda rl, x: rl.credit("tb", count=x)),
    (
        "limit_all count",
        lambda rl, x: rl.limit_all([LimitRequest("tb"), LimitRequest("fw", count=x)]),
    ),
    ("clear_all before", lambda rl, x: rl.clear_all(before=x)),
    ("key", lambda rl, x: rl.limit("tb", key=x)),  # type: ignore[arg-type]
    ("name", lambda rl, x: rl.limit(x)),  # type: ignore[arg-type]
    ("sample_shards", lambda rl, x: rl.get_value("tb", sample_shards=x)),  # type: ignore[arg-type]
    ("credit shard", lambda rl, x: rl.credit("tb", count=1, shard=x)),  # type: ignore[arg-type]
]
for field in ("rate", "period", "capacity", "max_reserved", "shards"):
    for kind in ("token bucket", "fixed window"):
        CALLS.append(
            (
                f"inline {kind} {field}",
                lambda rl, x, f=field, k=kind: rl.limit(
                    "new", config={"kind": k, "rate": 1, "period": 1000, f: x}
                ),
            )
        )
CALLS.append(
    (
        "inline fixed window start",
        lambda rl, x: rl.check(
            "new", config={"kind": "fixed window", "rate": 1, "period": 1, "start": x}
        ),
    )
)


@pytest.fixture
def rl(app: App) -> RateLimiter:
    return RateLimiter(
        app,
        {
            "tb": TokenBucket(rate=10, period=60_000, shards=2),  # state outlives the test
            "fw": FixedWindow(rate=5, period=1000),
        },
    )


@pytest.mark.parametrize("call", CALLS, ids=[c[0] for c in CALLS])
async def test_non_finite_numbers_raise_and_write_nothing(
    app: App, rl: RateLimiter, call: tuple[str, Any]
) -> None:
    await rl.limit("tb", key="existing")  # some state that must stay as it is
    before = await snapshot(app)
    for x in BAD:
        with pytest.raises(ValueError) as info:  # ConfigError or pydantic's ValidationError
            await call[1](rl, x)
        assert "finite" in str(info.value) or isinstance(info.value, ConfigError)
    assert await snapshot(app) == before


@pytest.mark.parametrize("kind", [TokenBucket, FixedWindow])
@pytest.mark.parametrize(
    "numbers",
    [
        {"rate": 1e308, "period": 1e-300},  # refill rate overflows to infinity
        {"rate": 1e-320, "period": 1e300},  # ... underflows to zero
        {"rate": 1, "period": 1e-320},
    ],
)
def test_configs_whose_refill_rate_is_not_finite_are_refused(kind: Any, numbers: Any) -> None:
    with pytest.raises(ValueError, match="rate / period must be a finite number > 0"):
        kind(**numbers)


@pytest.mark.parametrize("kind", [TokenBucket, FixedWindow])
async def test_huge_reservations_are_refused_before_redis(app: App, kind: Any) -> None:
    """Unlimited debt must still be repayable within MAX_DEBT_MS: a reservation needing
    longer (or an infinite retry_after) is refused and nothing is written."""
    rl = RateLimiter(app, {"l": kind(rate=1, period=1000)})
    before = await snapshot(app)
    for count in (1e300, 1e308, 1e11 + 2):
        with pytest.raises(RateLimitCountTooLarge, match=r"exceeds 100000000001\.00"):
            await rl.limit("l", count=count, reserve=True)
    assert await snapshot(app) == before
    assert (await rl.limit("l", count=1e11, reserve=True)).retry_after == pytest.approx(
        (1e11 - 1) * 1000, rel=1e-9
    )


async def test_a_huge_accumulated_debt_keeps_a_valid_ttl(app: App) -> None:
    """Debts beyond ~3,000 years cap the state's TTL instead of failing the script
    after its HSET (which would leave the state without any TTL)."""
    rl = RateLimiter(app, {"l": TokenBucket(rate=1, period=1000, shards=3)})
    for _ in range(5):
        assert (await rl.limit("l", count=5e10, reserve=True)).ok
    (key,) = [k async for k in app.redis.scan_iter(match=f"rkit:{{{app.namespace}:*")]
    assert 0 < await app.redis.pttl(key) <= 1e14
    rl1 = RateLimiter(app, {"one": TokenBucket(rate=1, period=1000)})
    for _ in range(5):
        assert (await rl1.limit("one", count=1e11, reserve=True)).ok
    assert 0 < await app.redis.pttl(rl1.key_for("one")) <= 1e14
