"""NaN, infinities and durations beyond what Redis can express, at every public entry
point of the action cache: a ConfigError (a ValueError) before Redis is touched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from rkit import App, ConfigError
from rkit.action_cache import ActionCache, remove_all
from rkit.clock import MAX_DURATION_MS

from .._state import snapshot

NAN, INF = float("nan"), float("inf")
BAD = [NAN, INF, -INF, 1e300]  # 1e300 ms: finite, but no Redis expiry can hold it

calls = 0


async def square(x: Any) -> Any:
    global calls
    calls += 1
    return x * x if isinstance(x, int | float) else x


CALLS: list[tuple[str, Callable[[ActionCache[Any], App, float], Awaitable[Any]]]] = [
    ("fetch ttl", lambda c, app, x: c.fetch({"x": 1}, ttl=x)),
    ("get ttl", lambda c, app, x: c.get({"x": 1}, ttl=x)),
    ("put ttl", lambda c, app, x: c.put({"x": 1}, 1, ttl=x)),
    ("purge now", lambda c, app, x: c.purge(now=x)),
    ("remove_all before", lambda c, app, x: remove_all(app, before=x)),
    ("ctor ttl", lambda c, app, x: ActionCache(app, square, name="n", ttl=x).fetch({"x": 1})),
    (
        "ctor lease_ms",
        lambda c, app, x: ActionCache(app, square, name="n", lease_ms=x).fetch({"x": 1}),
    ),
    ("ctor poll_ms", lambda c, app, x: ActionCache(app, square, name="n", poll_ms=x).fetch({})),
    (
        "ctor gc_grace_ms",
        lambda c, app, x: ActionCache(app, square, name="n", gc_grace_ms=x).fetch({}),
    ),
]
ARGS: list[tuple[str, Callable[[ActionCache[Any], float], Awaitable[Any]]]] = [
    ("fetch args", lambda c, x: c.fetch({"x": x})),
    ("fetch nested args", lambda c, x: c.fetch({"x": [1, {"y": x}]})),
    ("get args", lambda c, x: c.get({"x": x})),
    ("put args", lambda c, x: c.put({"x": x}, 1)),
    ("put value", lambda c, x: c.put({"x": 1}, {"v": [x]})),
    ("remove args", lambda c, x: c.remove({"x": x})),
]


@pytest.fixture
async def cache(app: App) -> ActionCache[Any]:
    c: ActionCache[Any] = ActionCache(app, square, name="sq", ttl=60_000)
    await c.fetch({"x": 3})  # some state that must stay as it is
    return c


@pytest.mark.parametrize("call", CALLS, ids=[c[0] for c in CALLS])
async def test_non_finite_durations_raise_and_write_nothing(
    app: App, cache: ActionCache[Any], call: tuple[str, Any]
) -> None:
    before = await snapshot(app)
    ran = calls
    for x in BAD:
        with pytest.raises(ConfigError, match="number of ms"):
            await call[1](cache, app, x)
    assert await snapshot(app) == before
    assert calls == ran  # the action never ran


@pytest.mark.parametrize("call", ARGS, ids=[c[0] for c in ARGS])
async def test_non_finite_args_and_values_raise_and_write_nothing(
    app: App, cache: ActionCache[Any], call: tuple[str, Any]
) -> None:
    before = await snapshot(app)
    ran = calls
    for x in (NAN, INF, -INF):
        with pytest.raises(ValueError):  # ConfigError / SerializationError
            await call[1](cache, x)
    assert await snapshot(app) == before
    assert calls == ran


async def test_largest_durations_still_work(app: App, cache: ActionCache[Any]) -> None:
    c: ActionCache[Any] = ActionCache(
        app, square, name="long", ttl=MAX_DURATION_MS, lease_ms=MAX_DURATION_MS
    )
    assert await c.fetch({"x": 4}, single_flight=True) == 16
    assert await c.fetch({"x": 4}) == 16
