"""Admin routes of presence, behind the bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from rkit.api import create_api

from rkit import App, TestClock
from rkit.presence import Presence

from .conftest import T0

AUTH = {"Authorization": "Bearer tok"}


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(app, admin_token="tok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_needs_token(p: Presence, client: httpx.AsyncClient) -> None:
    assert (await client.get("/presence/rooms")).status_code == 401
    r = await client.get("/presence/rooms", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


async def test_rooms_and_who_is_online(
    p: Presence, client: httpx.AsyncClient, clock: TestClock
) -> None:
    a = await p.heartbeat("r1", "u1", "s1", 1000)
    await p.heartbeat("r1", "u2", "s2", 1000)
    await p.heartbeat("r2", "u1", "s3", 1000)
    await p.disconnect(a.session_token)
    r = await client.get("/presence/rooms", headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {
        "rooms": [
            {"room_id": "r1", "online": 1, "users": 2, "sessions": 1},
            {"room_id": "r2", "online": 1, "users": 1, "sessions": 1},
        ],
        "cursor": 0,
    }
    r = await client.get("/presence/rooms/r1", headers=AUTH)
    assert r.json() == {
        "room_id": "r1",
        "users": [
            {"user_id": "u2", "online": True, "last_disconnected": 0, "data": None},
            {"user_id": "u1", "online": False, "last_disconnected": T0, "data": None},
        ],
    }
    r = await client.get("/presence/rooms/r1?online_only=true", headers=AUTH)
    assert [u["user_id"] for u in r.json()["users"]] == ["u2"]
    r = await client.get("/presence/users/u1/rooms", headers=AUTH)
    assert [(e["room_id"], e["online"]) for e in r.json()["rooms"]] == [
        ("r2", True),
        ("r1", False),
    ]
    assert (await client.get("/presence/rooms/r1?limit=-1", headers=AUTH)).status_code == 422


async def test_remove_user_and_room(p: Presence, client: httpx.AsyncClient) -> None:
    await p.heartbeat("r1", "u1", "s1", 1000)
    await p.heartbeat("r1", "u2", "s2", 1000)
    r = await client.delete("/presence/rooms/r1/users/u1", headers=AUTH)
    assert r.json() == {"removed": True}
    r = await client.delete("/presence/rooms/r1/users/u1", headers=AUTH)
    assert r.json() == {"removed": False}
    assert [e.user_id for e in await p.list_room("r1")] == ["u2"]
    assert (await client.delete("/presence/rooms/r1", headers=AUTH)).json() == {"removed": True}
    assert await p.list_room("r1") == []
    assert (await client.get("/presence/rooms", headers=AUTH)).json()["rooms"] == []


async def test_rotate_and_sweep(p: Presence, client: httpx.AsyncClient, clock: TestClock) -> None:
    old = await p.heartbeat("r1", "u1", "s1", 1000)
    r = await client.post("/presence/rooms/r1/rotate-token", headers=AUTH)
    token = r.json()["room_token"]
    assert token != old.room_token and await p.list(old.room_token) == []
    assert (await client.post("/presence/rooms/nope/rotate-token", headers=AUTH)).status_code == 404
    clock.set(T0 + 5_000)
    r = await client.post("/presence/sweep", headers=AUTH)
    assert r.json() == {"rooms": 1, "sessions_ended": 1, "users_offline": 1, "users_removed": 0}


async def test_unknown_instance(p: Presence, client: httpx.AsyncClient) -> None:
    r = await client.get("/presence/rooms?instance=nope", headers=AUTH)
    assert r.status_code == 404
    Presence(p.app, "other")
    assert (await client.get("/presence/rooms?instance=other", headers=AUTH)).status_code == 200
