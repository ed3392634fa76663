"""``detail=True``: what RateLimit-* headers need (limit, remaining, reset) from the
same script call as the decision (issue 16 item 6)."""

from __future__ import annotations

import pytest

from rkit import (
    MINUTE,
    SECOND,
    App,
    ConfigError,
    FixedWindow,
    RateLimited,
    RateLimiter,
    TestClock,
    TokenBucket,
)


async def test_token_bucket_detail_counts_down_and_resets(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"api": TokenBucket(rate=10, period=SECOND)})
    now = clock.now_ms()
    first = await rl.limit("api", key="u", detail=True)
    assert first.ok and first.limit == 10 and first.remaining == 9
    assert first.reset_at == pytest.approx(now + 100)  # 1 unit at 10/s
    assert first.reset_after(now) == pytest.approx(100)
    for _ in range(9):
        last = await rl.limit("api", key="u", detail=True)
    assert last.ok and last.remaining == 0 and last.reset_at == pytest.approx(now + 1_000)
    refused = await rl.limit("api", key="u", detail=True)
    assert not refused.ok and refused.retry_after == pytest.approx(100)
    assert refused.remaining == 0 and refused.reset_at == pytest.approx(now + 1_000)
    clock.advance(500)
    half = await rl.check("api", key="u", detail=True)
    assert half.ok and half.remaining == pytest.approx(4)  # 5 refilled, 1 would be taken
    assert half.reset_at == pytest.approx(now + 1_000)
    assert (await rl.get_value("api", key="u")).value == 0  # check wrote nothing


async def test_refused_detail_reports_what_is_left_now(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"api": TokenBucket(rate=10, period=SECOND)})
    assert (await rl.limit("api", count=7)).ok
    r = await rl.limit("api", count=5, detail=True)
    assert not r.ok and r.remaining == pytest.approx(3)  # refused: 3 still there
    assert r.reset_at == pytest.approx(clock.now_ms() + 700)
    assert (await rl.get_value("api")).value == pytest.approx(3)


async def test_fixed_window_detail_resets_at_the_next_window(app: App, clock: TestClock) -> None:
    rl = RateLimiter(app, {"win": FixedWindow(rate=5, period=MINUTE, start=0)})
    now = clock.now_ms()
    window_start = now - now % MINUTE
    r = await rl.limit("win", detail=True)
    assert r.ok and r.limit == 5 and r.remaining == 4
    assert r.reset_at == pytest.approx(window_start + MINUTE)


async def test_detail_without_it_costs_nothing_and_says_nothing(app: App) -> None:
    rl = RateLimiter(app, {"api": TokenBucket(rate=10, period=SECOND)})
    r = await rl.limit("api")
    assert r.ok and r.limit is None and r.remaining is None and r.reset_at is None
    assert r.reset_after(0) is None


async def test_sharded_detail_is_an_estimate_within_the_capacity(app: App) -> None:
    rl = RateLimiter(app, {"big": TokenBucket(rate=40, period=SECOND, shards=4)})
    seen = []
    for _ in range(10):
        r = await rl.limit("big", detail=True)
        assert r.ok and r.limit == 40 and r.remaining is not None
        assert 0 <= r.remaining <= 40
        seen.append(r.remaining)
    assert seen[0] == 36  # a fresh shard of 10, 9 left: 9 x 4 shards
    assert min(seen) < 36


async def test_detail_throws_and_bad_input(app: App) -> None:
    rl = RateLimiter(app, {"api": TokenBucket(rate=1, period=SECOND)})
    assert (await rl.limit("api", detail=True)).ok
    with pytest.raises(RateLimited):
        await rl.limit("api", detail=True, throws=True)
    with pytest.raises(ConfigError):
        await rl.limit("api", detail="yes")  # type: ignore[arg-type]
    assert (await rl.get_value("api")).value == 0  # nothing taken by the bad calls
    spread = RateLimiter(
        app, {"s": TokenBucket(rate=10, period=SECOND, shards=4)}, spread_shards=True
    )
    with pytest.raises(ConfigError):
        await spread.limit("s", detail=True)
