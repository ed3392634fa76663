"""User-supplied rate-limit names and keys are bounded (1 KiB of UTF-8, as every
component's key parts): a longer one is a ``KeyTooLong`` before Redis is touched,
and the limiter's key cache only ever holds bounded parts."""

from __future__ import annotations

import pytest

from rkit import App, KeyTooLong, RateLimiter, TokenBucket

OK_KEY = "k" * 1024
LONG_KEY = "k" * 1025
WIDE_KEY = "é" * 513  # 1,026 bytes of UTF-8


@pytest.mark.parametrize("spread", [False, True])
async def test_a_key_over_1_kib_is_refused_and_nothing_written(app: App, spread: bool) -> None:
    rl = RateLimiter(
        app,
        {"send": TokenBucket(rate=10, period=1000, shards=4 if spread else None)},
        spread_shards=spread,
    )
    before = await app.redis.dbsize() if not app.is_cluster else None
    for key in (LONG_KEY, WIDE_KEY):
        with pytest.raises(KeyTooLong):
            await rl.limit("send", key=key)
        with pytest.raises(KeyTooLong):
            await rl.limit("send", key=key, config=TokenBucket(rate=1, period=1000))
        with pytest.raises(KeyTooLong):
            await rl.reset("send", key=key)
    with pytest.raises(KeyTooLong):
        await rl.limit("x" * 2000, config=TokenBucket(rate=1, period=1000))
    if before is not None:
        assert await app.redis.dbsize() == before
    assert (await rl.limit("send", key=OK_KEY)).ok  # the limit itself is accepted
    assert rl._key_cached.cache_info().maxsize == 4096
