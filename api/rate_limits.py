"""Admin routes of the rate limiter (spec rate-limiter.md §7.8).

Only limits registered by name are reachable: configs never come from the network."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from rkit import App, RateLimiter
from rkit.rate_limit import FixedWindow, RateLimitValue, TokenBucket

from .validation import MAX_NAME, Name, QueryName


class ResetBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    key: str | None = Field(default=None, max_length=MAX_NAME)


class ClearAllBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    before: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class ValueOut(BaseModel):
    name: str
    key: str | None
    value: float
    ts: float
    shard: int
    config: TokenBucket | FixedWindow
    shard_config: TokenBucket | FixedWindow


def _limiters(app: App) -> list[RateLimiter]:
    return app.components.of_kind("rate_limit", RateLimiter)


def _find(app: App, name: str) -> RateLimiter:
    for limiter in reversed(_limiters(app)):
        if name in limiter.limits:
            return limiter
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no rate limit named {name!r}")


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["rate limits"])

    @r.get("")
    async def list_limits() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for limiter in _limiters(app):
            for name, cfg in limiter.limits.items():
                out[name] = cfg.filled().model_dump()
        return {"limits": out}

    @r.get("/{name}/value", response_model=ValueOut)
    async def get_value(
        name: Name,
        key: QueryName = None,
        sample_shards: int = Query(default=1, ge=1, le=1024),
    ) -> ValueOut:
        limiter = _find(app, name)
        v: RateLimitValue = await limiter.get_value(name, key=key, sample_shards=sample_shards)
        return ValueOut(
            name=name,
            key=key,
            value=v.value,
            ts=v.ts,
            shard=v.shard,
            config=v.config,
            shard_config=v.shard_config,
        )

    @r.post("/{name}/reset", status_code=status.HTTP_204_NO_CONTENT)
    async def reset(name: Name, body: ResetBody | None = None) -> Response:
        limiter = _find(app, name)
        await limiter.reset(name, key=body.key if body else None)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @r.post("/clear-all")
    async def clear_all(body: ClearAllBody | None = None) -> dict[str, int]:
        limiters = _limiters(app)
        if not limiters:
            return {"deleted": 0}
        # one scan covers the whole namespace, whichever limiter runs it
        deleted = await limiters[0].clear_all(before=body.before if body else None)
        return {"deleted": deleted}

    return r
