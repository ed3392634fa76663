"""What a test can compare to prove nothing was written: every key of the App's
namespace in the state Redis (on Cluster: on every primary; other tests' keys,
which may expire meanwhile, are left out) with its serialized value."""

from __future__ import annotations

from typing import Any

from rkit import App


async def snapshot(app: App) -> dict[str, Any]:
    ns = app.namespace
    keys: list[str] = [
        k
        async for k in app.redis.scan_iter(match="rkit:*", count=1000)
        if k.startswith((f"rkit:{{{ns}:", f"rkit:{ns}:"))
    ]
    return {k: await app.redis.dump(k) for k in sorted(keys)}
