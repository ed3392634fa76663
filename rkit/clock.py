"""Clocks. Production time comes from the Redis server (``TIME`` inside each
script) so hosts with skewed clocks agree; tests inject a :class:`TestClock`
whose ``now_ms`` travels to the script in ARGV."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now_ms(self) -> float | None:
        """Milliseconds since the epoch, or ``None`` to use the Redis server's clock."""


class ServerClock:
    """The default: every script reads Redis ``TIME``."""

    def now_ms(self) -> None:
        return None

    def __repr__(self) -> str:
        return "ServerClock()"


class TestClock:
    """A frozen, manually moved clock for tests (milliseconds since the epoch)."""

    __test__ = False  # not a pytest test class

    def __init__(self, start_ms: float = 1_700_000_040_000) -> None:
        self._now = float(start_ms)

    def now_ms(self) -> float:
        return self._now

    def set(self, ms: float) -> None:
        self._now = float(ms)

    def advance(self, ms: float) -> float:
        self._now += ms
        return self._now

    def __repr__(self) -> str:
        return f"TestClock({self._now!r})"


def argv_now(clock: Clock) -> str:
    """The ``now`` ARGV of a script: empty means "read Redis TIME"."""
    now = clock.now_ms()
    return "" if now is None else repr(float(now))


MAX_DURATION_MS = 1e12
"""The longest duration in ms (about 31.7 years) that components accept for TTLs,
intervals, leases and retentions: Redis expiries and Lua arithmetic on ``now + d``
stay exact far beyond it, and a bigger value is a bug, not a setting."""
