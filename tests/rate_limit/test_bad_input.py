"""Bad input raises a clear error before Redis is touched and writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from rkit import (
    SECOND,
    App,
    ConfigError,
    LimitRequest,
    RateLimitCountTooLarge,
    RateLimiter,
    RateLimitNotDefined,
    TokenBucket,
)


async def namespace_keys(app: App) -> list[str]:
    return [k async for k in app.redis.scan_iter(match=f"rkit:{{{app.namespace}:*")]


CASES: list[tuple[str, type[Exception], str, Callable[[RateLimiter], Awaitable[Any]]]] = [
    (
        "unknown name",
        RateLimitNotDefined,
        "Rate limit nope not defined",
        lambda rl: rl.limit("nope"),
    ),
    (
        "negative count",
        ConfigError,
        "count must be a finite number >= 0",
        lambda rl: rl.limit("l", count=-1),
    ),
    ("nan count", ConfigError, "finite", lambda rl: rl.limit("l", count=float("nan"))),
    ("str count", ConfigError, "count must be a number", lambda rl: rl.limit("l", count="3")),
    (
        "count too large",
        RateLimitCountTooLarge,
        "count 11 exceeds 10",
        lambda rl: rl.limit("l", count=11),
    ),
    (
        "rate 0 inline",
        ValueError,
        "rate",
        lambda rl: rl.limit("x", config={"kind": "token bucket", "rate": 0, "period": 1}),
    ),
    ("int key", ConfigError, "key must be a str or None", lambda rl: rl.limit("l", key=5)),
    ("bytes key", ConfigError, "key must be a str or None", lambda rl: rl.check("l", key=b"k")),
    ("list key", ConfigError, "key must be a str or None", lambda rl: rl.reset("l", key=["k"])),
    ("non-str name", ConfigError, "name must be a str", lambda rl: rl.limit(5)),
    ("bad config type", ConfigError, "config must be", lambda rl: rl.limit("x", config=42)),
    ("credit zero", ConfigError, "credit count must be > 0", lambda rl: rl.credit("l", count=0)),
    ("credit bad shard", ConfigError, "shard must be", lambda rl: rl.credit("l", count=1, shard=3)),
    (
        "sample shards",
        ConfigError,
        "sample_shards",
        lambda rl: rl.get_value("l", sample_shards="2"),
    ),
    ("limit_all item", ConfigError, "LimitRequest", lambda rl: rl.limit_all([("l", None)])),
    (
        "limit_all one bad",
        ConfigError,
        "key must be",
        lambda rl: rl.limit_all([LimitRequest("l"), LimitRequest("l", key=1)]),
    ),  # type: ignore[arg-type]
    ("clear_all before", ConfigError, "before", lambda rl: rl.clear_all(before=float("inf"))),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_bad_input_writes_nothing(
    app: App, case: tuple[str, type[Exception], str, Any]
) -> None:
    _, exc_type, message, call = case
    rl = RateLimiter(app, {"l": TokenBucket(rate=10, period=SECOND)})
    with pytest.raises(exc_type, match=message):
        await call(rl)
    assert await namespace_keys(app) == []


def test_bad_limiter_construction() -> None:
    app = App()
    with pytest.raises(ValueError):
        RateLimiter(app, {"l": {"kind": "token bucket", "rate": -1, "period": 1000}})
    with pytest.raises(ConfigError):
        RateLimiter(app, {1: TokenBucket(rate=1, period=1)})  # type: ignore[dict-item]
    with pytest.raises(ConfigError):
        RateLimiter(app, hash_tag=5)  # type: ignore[arg-type]
