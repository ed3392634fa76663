"""An App holding every component, with some state, for the admin API tests."""

from __future__ import annotations

from typing import Any

from rkit import App, FixedWindow, RateLimiter, TokenBucket, Workpool
from rkit.action_cache import ActionCache
from rkit.aggregate import DirectAggregate
from rkit.presence import Presence
from rkit.retrier import ActionRetrier

from .._state import snapshot

__all__ = ["AUTH", "TOKEN", "fill", "known", "seed", "snapshot"]

TOKEN = "api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def square(x: int) -> int:
    return x * x


async def seed(app: App) -> dict[str, str]:
    """Every component on ``app``, with state; returns existing names and ids
    (keyed by path prefix or path parameter name)."""

    @app.action(name="add")
    async def add(x: int) -> int:
        return x + 1

    RateLimiter(
        app,
        {
            "send": TokenBucket(rate=10, period=60_000, shards=3),
            "win": FixedWindow(rate=5, period=60_000),
        },
    )
    cache = ActionCache(app, square, name="sq")
    await cache.fetch({"x": 2})
    presence = Presence(app)
    await presence.heartbeat("r1", "u1", "s1", 60_000)
    agg: DirectAggregate[Any] = DirectAggregate(app, "board", default_max_node_size=4)
    await agg.insert_many([(k, f"id{k}", float(k)) for k in range(12)])
    pool = Workpool(app, "emails", max_parallelism=0)
    work_id = await pool.enqueue("add", {"x": 1})
    retrier = ActionRetrier(app)
    run_id = await retrier.run("add", {"x": 2})
    return {
        "/rate-limits/{name}": "send",
        "/action-cache/{name}": "sq",
        "/aggregates/{name}": "board",
        "/workpools/{pool}": "emails",
        "work_id": work_id,
        "/retriers/{ns}": "default",
        "run_id": run_id,
        "room_id": "r1",
        "user_id": "u1",
    }


def known(path: str, names: dict[str, str]) -> dict[str, str]:
    """Existing values for the path parameters of ``path``."""
    out: dict[str, str] = {}
    for prefix, value in names.items():
        if prefix.startswith("/") and path.startswith(prefix):
            out[prefix.rsplit("{", 1)[1].rstrip("}")] = value
        elif "{" + prefix + "}" in path:
            out[prefix] = value
    return out


def fill(path: str, names: dict[str, str]) -> str:
    """``path`` with its parameters set to existing names (``0`` for offsets)."""
    for param, value in {**known(path, names), "offset": "0"}.items():
        path = path.replace("{" + param + "}", value)
    return path
