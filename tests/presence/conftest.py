"""Presence fixtures: a Presence on the parametrised ``app`` (fake / redis / cluster)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from rkit import App
from rkit.presence import HeartbeatResult, Presence

T0 = 1_700_000_040_000.0

Hb = Callable[..., Awaitable[HeartbeatResult]]


@pytest.fixture
def p(app: App) -> Presence:
    return Presence(app)


@pytest.fixture
def hb(p: Presence) -> Hb:
    """``hb(room, user, sid, interval=1000)`` as in spec §8."""

    async def beat(room: str, user: str, sid: str, interval: float = 1000) -> HeartbeatResult:
        return await p.heartbeat(room, user, sid, interval)

    return beat
