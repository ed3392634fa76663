"""Admin routes of presence (spec presence.md §7.8, plus a room listing).

Routes act on the Presence instance registered under ``?instance=`` (default
``"default"``) in the App; an unknown instance is a 404."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Query, status

from rkit import App
from rkit.presence import DEFAULT_LIMIT, MAX_CURSOR, Presence

from .lookup import registered
from .validation import MAX_NAME, Name

Instance = Query(default="default", min_length=1, max_length=MAX_NAME)
Limit = Query(default=DEFAULT_LIMIT, ge=0, le=10_000)


def _presence(app: App, instance: str) -> Presence:
    return registered(app, "presence", instance, Presence, "presence named")


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["presence"])

    @r.get("/rooms")
    async def rooms(
        instance: str = Instance,
        cursor: int = Query(default=0, ge=0, le=MAX_CURSOR),
        count: int = Query(default=100, ge=1, le=1000),
    ) -> dict[str, Any]:
        page, nxt = await _presence(app, instance).rooms(cursor=cursor, count=count)
        return {"rooms": [asdict(s) for s in page], "cursor": nxt}

    @r.get("/rooms/{room_id}")
    async def list_room(
        room_id: Name, instance: str = Instance, online_only: bool = False, limit: int = Limit
    ) -> dict[str, Any]:
        entries = await _presence(app, instance).list_room(room_id, online_only, limit)
        return {"room_id": room_id, "users": [asdict(e) for e in entries]}

    @r.get("/users/{user_id}/rooms")
    async def list_user(
        user_id: Name, instance: str = Instance, online_only: bool = False, limit: int = Limit
    ) -> dict[str, Any]:
        entries = await _presence(app, instance).list_user(user_id, online_only, limit)
        return {"user_id": user_id, "rooms": [asdict(e) for e in entries]}

    @r.delete("/rooms/{room_id}/users/{user_id}")
    async def remove_room_user(
        room_id: Name, user_id: Name, instance: str = Instance
    ) -> dict[str, bool]:
        return {"removed": await _presence(app, instance).remove_room_user(room_id, user_id)}

    @r.delete("/rooms/{room_id}")
    async def remove_room(room_id: Name, instance: str = Instance) -> dict[str, bool]:
        return {"removed": await _presence(app, instance).remove_room(room_id)}

    @r.post("/rooms/{room_id}/rotate-token")
    async def rotate(room_id: Name, instance: str = Instance) -> dict[str, str]:
        token = await _presence(app, instance).rotate_room_token(room_id)
        if token is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no room {room_id!r}")
        return {"room_token": token}

    @r.post("/sweep")
    async def sweep(instance: str = Instance) -> dict[str, int]:
        return asdict(await _presence(app, instance).sweep())

    return r
