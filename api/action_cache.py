"""Admin routes of the action cache (spec action-cache.md §7.8).

Works by cache name (the registry in Redis), so it needs no ActionCache instance."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from rkit import App
from rkit.action_cache import _digest, _Store, cache_names, canonical_args, purge_all, remove_all

from .validation import Name


class EntryBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    args: dict[str, Any] = Field(default_factory=dict)


class BeforeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    before: float | None = Field(default=None, allow_inf_nan=False)


class NameStats(BaseModel):
    name: str
    entries: int
    hits: int
    misses: int
    coalesced: int
    hit_rate: float | None


async def _known(app: App, name: str) -> _Store:
    if name not in await cache_names(app):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no cache named {name!r}")
    return _Store(app, name)


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["action cache"])

    @r.get("/names")
    async def names() -> dict[str, list[NameStats]]:
        out = []
        for name in await cache_names(app):
            s = await _Store(app, name).stats_of()
            out.append(
                NameStats(
                    name=name,
                    entries=s.entries,
                    hits=s.hits,
                    misses=s.misses,
                    coalesced=s.coalesced,
                    hit_rate=s.hit_rate,
                )
            )
        return {"names": out}

    @r.delete("/{name}")
    async def remove_name(name: Name) -> dict[str, int]:
        store = await _known(app, name)
        return {"deleted": await store.remove_all(before=None, batch_size=100)}

    @r.delete("/{name}/entry")
    async def remove_entry(name: Name, body: EntryBody) -> dict[str, bool]:
        store = await _known(app, name)
        try:
            member = _digest(canonical_args(body.args))
        except (TypeError, ValueError) as exc:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("body", "args"), "msg": str(exc)}]
            ) from None
        return {"deleted": await store.remove(member)}

    @r.post("/remove-all")
    async def remove_everything(body: BeforeBody | None = None) -> dict[str, int]:
        return {"deleted": await remove_all(app, before=body.before if body else None)}

    @r.post("/purge")
    async def purge() -> dict[str, int]:
        return {"deleted": await purge_all(app)}

    return r
