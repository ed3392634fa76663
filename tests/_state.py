"""What a test can compare to prove nothing was written: every key of the state Redis
with its serialized value (on Cluster: every primary)."""

from __future__ import annotations

from typing import Any

from rkit import App


async def snapshot(app: App) -> dict[str, Any]:
    keys: list[str] = [k async for k in app.redis.scan_iter(match="*", count=1000)]
    return {k: await app.redis.dump(k) for k in sorted(keys)}
