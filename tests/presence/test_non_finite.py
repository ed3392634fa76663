"""NaN, infinities and out-of-range numbers at every public entry point of presence:
a ConfigError (a ValueError) before Redis is touched."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from rkit import App, ConfigError
from rkit.clock import MAX_DURATION_MS
from rkit.presence import Presence

from .._state import snapshot

NAN, INF = float("nan"), float("inf")
DURATIONS = [NAN, INF, -INF, 1e300, 0]  # ms: finite but huge is beyond any Redis expiry
COUNTS = [NAN, INF, 1.5, -1, 2**64]


async def _first(gen: Any) -> Any:
    return await gen.__anext__()


DURATION_CALLS: list[tuple[str, Callable[[Presence, App, Any], Awaitable[Any]]]] = [
    ("heartbeat interval", lambda p, app, x: p.heartbeat("r", "u", "s", x)),
    ("session interval", lambda p, app, x: p.session("r", "u", interval=x).heartbeat()),
    ("sweep now", lambda p, app, x: p.sweep(now=x)),
    ("run_sweeper poll_ms", lambda p, app, x: p.run_sweeper(asyncio.Event(), poll_ms=x)),
]
for option in (
    "default_interval_ms",
    "timeout_multiplier",
    "events_ttl_ms",
    "offline_retention_ms",
    "claim_lease_ms",
):
    DURATION_CALLS.append(
        (
            f"ctor {option}",
            lambda p, app, x, o=option: Presence(app, "other", **{o: x}).heartbeat("r", "u", "s"),
        )
    )
COUNT_CALLS: list[tuple[str, Callable[[Presence, App, Any], Awaitable[Any]]]] = [
    ("list_room limit", lambda p, app, x: p.list_room("r1", limit=x)),
    ("list_user limit", lambda p, app, x: p.list_user("u1", limit=x)),
    ("list limit", lambda p, app, x: p.list("r1.x.y", limit=x)),
    ("rooms cursor", lambda p, app, x: p.rooms(cursor=x)),
    ("rooms count", lambda p, app, x: p.rooms(count=x)),
    ("sweep max_rooms", lambda p, app, x: p.sweep(max_rooms=x)),
    ("sweep max_sessions", lambda p, app, x: p.sweep(max_sessions_per_room=x)),
    ("read_events count", lambda p, app, x: p.read_events("r1", count=x)),
    ("events block_ms", lambda p, app, x: _first(p.events("r1", block_ms=x))),
    ("watch block_ms", lambda p, app, x: _first(p.watch("r1.x.y", block_ms=x))),
    ("ctor events_maxlen", lambda p, app, x: Presence(app, "o", events_maxlen=x).sweep()),
    ("ctor remove_batch", lambda p, app, x: Presence(app, "o", remove_batch=x).sweep()),
]
ID_CALLS: list[tuple[str, Callable[[Presence, App, Any], Awaitable[Any]]]] = [
    ("heartbeat room", lambda p, app, x: p.heartbeat(x, "u", "s")),
    ("heartbeat user", lambda p, app, x: p.heartbeat("r", x, "s")),
    ("heartbeat session", lambda p, app, x: p.heartbeat("r", "u", x)),
    ("update data", lambda p, app, x: p.update_room_user("r1", "u1", {"d": [x]})),
    ("remove_room_user", lambda p, app, x: p.remove_room_user(x, "u1")),
    ("read_events after", lambda p, app, x: p.read_events("r1", after=x)),
]


@pytest.fixture
async def p(app: App) -> Presence:
    presence = Presence(app)
    await presence.heartbeat("r1", "u1", "s1", 60_000)  # state that must stay as it is
    return presence


async def _refused(app: App, p: Presence, call: Any, values: list[Any]) -> None:
    before = await snapshot(app)
    for x in values:
        with pytest.raises(ConfigError):
            await call(p, app, x)
    assert await snapshot(app) == before


@pytest.mark.parametrize("call", DURATION_CALLS, ids=[c[0] for c in DURATION_CALLS])
async def test_bad_durations_raise_and_write_nothing(
    app: App, p: Presence, call: tuple[str, Any]
) -> None:
    await _refused(app, p, call[1], DURATIONS)


@pytest.mark.parametrize("call", COUNT_CALLS, ids=[c[0] for c in COUNT_CALLS])
async def test_bad_counts_raise_and_write_nothing(
    app: App, p: Presence, call: tuple[str, Any]
) -> None:
    await _refused(app, p, call[1], COUNTS)


@pytest.mark.parametrize("call", ID_CALLS, ids=[c[0] for c in ID_CALLS])
async def test_non_finite_ids_and_data_raise_and_write_nothing(
    app: App, p: Presence, call: tuple[str, Any]
) -> None:
    await _refused(app, p, call[1], [NAN, INF])


async def test_interval_times_multiplier_beyond_the_range_is_refused(app: App) -> None:
    p = Presence(app, timeout_multiplier=10)
    before = await snapshot(app)
    with pytest.raises(ConfigError, match="timeout_multiplier"):
        await p.heartbeat("r", "u", "s", MAX_DURATION_MS / 10 + 1)
    assert await snapshot(app) == before
    await p.heartbeat("r", "u", "s", MAX_DURATION_MS / 10)  # the largest accepted
