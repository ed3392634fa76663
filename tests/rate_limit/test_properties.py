"""Property test: the limiter (Lua, through Redis) against the spec's formulas (§4.2,
§4.3) written out naively here, over random operation sequences and a test clock."""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rkit import App, FixedWindow, RateLimiter, TestClock, TokenBucket

_ns = itertools.count()


@dataclass
class Op:
    advance: float
    count: float
    reserve: bool
    check: bool


ops = st.lists(
    st.builds(
        Op,
        advance=st.one_of(st.just(0.0), st.floats(0, 130_000, allow_nan=False)),
        count=st.one_of(st.integers(0, 6).map(float), st.floats(0, 6, allow_nan=False)),
        reserve=st.booleans(),
        check=st.booleans(),
    ),
    min_size=1,
    max_size=25,
)
configs = st.one_of(
    st.builds(
        lambda r, p, c, m: TokenBucket(rate=r, period=p, capacity=c, max_reserved=m),
        st.sampled_from([1.0, 3.0, 10.0]),
        st.sampled_from([1_000.0, 60_000.0]),
        st.sampled_from([None, 6.0, 12.0]),
        st.sampled_from([None, 0.0, 4.0]),
    ),
    st.builds(
        lambda r, p, c, m, s: FixedWindow(rate=r, period=p, capacity=c, max_reserved=m, start=s),
        st.sampled_from([1.0, 3.0, 10.0]),
        st.sampled_from([1_000.0, 60_000.0]),
        st.sampled_from([None, 6.0, 12.0]),
        st.sampled_from([None, 0.0, 4.0]),
        st.sampled_from([None, 0.0, 12_345.0]),
    ),
)


def model_step(
    state: tuple[float, float] | None, cfg: TokenBucket | FixedWindow, now: float, count: float
) -> tuple[float, float, float | None]:
    """The spec's formulas, with DEVIATIONs Q3 (start is a phase) and Q4 (clamp)."""
    cap = cfg.capacity if cfg.capacity is not None else cfg.rate
    if isinstance(cfg, TokenBucket):
        value, ts = state if state else (cap, now)
        per_ms = cfg.rate / cfg.period
        value = min(value + max(0.0, now - ts) * per_ms, cap) - count
        ts = max(ts, now)
        return value, ts, (-value / per_ms if value < 0 else None)
    if state:
        value, ts = state
    else:
        value = cap
        # rng returns 0.0, so a random phase anchors the first window at now
        ts = (
            now
            if cfg.start is None
            else cfg.start + math.floor((now - cfg.start) / cfg.period) * cfg.period
        )
    windows = max(0, math.floor((now - ts) / cfg.period))
    value = min(value + cfg.rate * windows, cap) - count
    ts = ts + windows * cfg.period
    retry = ts + cfg.period * math.ceil(-value / cfg.rate) - now if value < 0 else None
    return value, ts, retry


async def run_sequence(
    app: App, clock: TestClock, cfg: TokenBucket | FixedWindow, seq: list[Op]
) -> None:
    rl = RateLimiter(app, {"p": cfg}, rng=lambda: 0.0)
    cap = cfg.capacity if cfg.capacity is not None else cfg.rate
    state: tuple[float, float] | None = None
    start = clock.now_ms()
    admitted_now = 0.0  # non-reserved units admitted
    for op in seq:
        clock.advance(op.advance)
        now = clock.now_ms()
        if op.count > cap and not op.reserve:
            continue  # rejected up front (covered by other tests)
        if op.reserve and cfg.max_reserved is not None and op.count > cap + cfg.max_reserved:
            continue
        value, ts, retry = model_step(state, cfg, now, op.count)
        ok = value >= 0 or (op.reserve and (cfg.max_reserved is None or -value <= cfg.max_reserved))
        call = rl.check if op.check else rl.limit
        got = await call("p", count=op.count, reserve=op.reserve)
        assert got.ok == ok, (op, state, value)
        if retry is None:
            assert got.retry_after is None
        else:
            assert got.retry_after == pytest.approx(retry, rel=1e-9, abs=1e-6)
        if ok and not op.check:
            state = (value, ts)
            if retry is None:
                admitted_now += op.count
        stored = await app.redis.hmget(rl.key_for("p"), "0:v", "0:ts")
        if state is None:
            assert stored == [None, None]
        else:
            assert float(stored[0]) == pytest.approx(state[0], rel=1e-9, abs=1e-9)
            assert float(stored[1]) == state[1]
    # never over-admits: what was handed out immediately is bounded by capacity
    # plus the refill over the elapsed time (plus one window for fixed windows)
    elapsed = clock.now_ms() - start
    windows = elapsed / cfg.period + (1 if isinstance(cfg, FixedWindow) else 0)
    assert admitted_now <= cap + cfg.rate * windows + 1e-6


@settings(max_examples=120, deadline=None)
@given(cfg=configs, seq=ops)
def test_limiter_matches_formulas_fakeredis(cfg: TokenBucket | FixedWindow, seq: list[Op]) -> None:
    async def go() -> None:
        clock = TestClock()
        app = App(clock=clock, namespace=f"p{next(_ns)}")
        try:
            await run_sequence(app, clock, cfg, seq)
        finally:
            await app.aclose()

    asyncio.run(go())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cfg=configs, seq=ops)
def test_limiter_matches_formulas_redis(
    redis_url: str, cfg: TokenBucket | FixedWindow, seq: list[Op]
) -> None:
    async def go() -> None:
        clock = TestClock()
        app = App(redis_url, clock=clock, namespace=f"p{next(_ns)}")
        try:
            await run_sequence(app, clock, cfg, seq)
        finally:
            await app.aclose()

    asyncio.run(go())
