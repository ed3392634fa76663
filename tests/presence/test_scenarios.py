"""spec/presence.md §8: every acceptance scenario on fakeredis, real Redis and a
3-node Cluster (the ``app`` fixture is parametrised over the three)."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from rkit import App, SessionConflict, TestClock
from rkit.presence import DisconnectResult, Presence, PresenceEntry, UserRoomEntry

from .conftest import T0, Hb


def users(entries: list[PresenceEntry]) -> list[str]:
    return [e.user_id for e in entries]


def state(entries: list[PresenceEntry]) -> list[tuple[str, bool, float]]:
    return [(e.user_id, e.online, e.last_disconnected) for e in entries]


async def kinds(p: Presence, room: str, user: str | None = None) -> list[str]:
    return [e.type for e in await p.read_events(room) if user is None or e.user_id == user]


# 1
async def test_first_heartbeat(p: Presence, hb: Hb) -> None:
    r = await hb("r1", "u1", "s1")
    assert isinstance(r.room_token, str) and r.room_token
    assert isinstance(r.session_token, str) and r.session_token
    assert await p.list(r.room_token) == [PresenceEntry("u1", True, 0, None)]


# 2
async def test_timeout(p: Presence, hb: Hb, clock: TestClock) -> None:
    r = await hb("r1", "u1", "s1", 1000)
    clock.set(T0 + 2_499)
    assert state(await p.list(r.room_token)) == [("u1", True, 0)]
    clock.set(T0 + 2_500)
    assert state(await p.list(r.room_token)) == [("u1", False, T0 + 2_500)]


# 3
async def test_heartbeats_keep_alive(p: Presence, hb: Hb, clock: TestClock) -> None:
    for t in (0, 2_000, 4_000, 6_000):
        clock.set(T0 + t)
        await p.sweep()
        r = await hb("r1", "u1", "s1", 1000)
    assert state(await p.list(r.room_token)) == [("u1", True, 0)]
    clock.set(T0 + 8_499)
    assert (await p.list(r.room_token))[0].online
    clock.set(T0 + 8_500)
    await p.sweep()
    assert state(await p.list(r.room_token)) == [("u1", False, T0 + 8_500)]


# 4
async def test_graceful_disconnect(p: Presence, hb: Hb, clock: TestClock) -> None:
    r = await hb("r1", "u1", "s1")
    clock.set(T0 + 100)
    assert await p.disconnect(r.session_token) == DisconnectResult("r1", "u1", "s1", True)
    assert state(await p.list(r.room_token)) == [("u1", False, T0 + 100)]


# 5
async def test_multiple_sessions(p: Presence, hb: Hb) -> None:
    r1 = await hb("r1", "u1", "s1")
    r2 = await hb("r1", "u1", "s2")
    res = await p.disconnect(r1.session_token)
    assert res == DisconnectResult("r1", "u1", "s1", False)
    assert state(await p.list(r1.room_token)) == [("u1", True, 0)]
    res = await p.disconnect(r2.session_token)
    assert res is not None and res.went_offline
    assert not (await p.list(r1.room_token))[0].online


# 6
async def test_one_tab_times_out_other_lives(p: Presence, hb: Hb, clock: TestClock) -> None:
    r = await hb("r1", "u1", "s1")
    await hb("r1", "u1", "s2")
    for t in (2_000, 4_000):
        clock.set(T0 + t)
        await hb("r1", "u1", "s2")
        await p.sweep()
    assert state(await p.list(r.room_token)) == [("u1", True, 0)]


# 7
async def test_return_after_timeout(p: Presence, hb: Hb, clock: TestClock) -> None:
    first = await hb("r1", "u1", "s1")
    clock.set(T0 + 3_000)
    await p.sweep()
    assert not (await p.list(first.room_token))[0].online
    again = await hb("r1", "u1", "s1")
    assert state(await p.list(again.room_token)) == [("u1", True, 0)]
    assert again.room_token == first.room_token
    assert again.session_token != first.session_token
    assert await p.disconnect(first.session_token) is None  # the old token is dead


# 8
@pytest.mark.parametrize("other", [("r2", "u1"), ("r1", "u2")])
async def test_session_id_uniqueness(p: Presence, hb: Hb, other: tuple[str, str]) -> None:
    await hb("r1", "u1", "s1")
    with pytest.raises(SessionConflict, match="must be unique"):
        await hb(other[0], other[1], "s1")
    assert await p.list_room("r2") == []
    assert users(await p.list_room("r1")) == ["u1"]
    assert await p.list_user("u2") == []


# 9
async def test_session_id_reuse_after_end(p: Presence, hb: Hb) -> None:
    r = await hb("r1", "u1", "s1")
    await p.disconnect(r.session_token)
    await hb("r2", "u1", "s1")
    assert users(await p.list_room("r2")) == ["u1"]


# 10
async def test_bad_tokens(p: Presence, hb: Hb) -> None:
    r = await hb("r1", "u1", "s1")
    for bogus in ("bogus", "", "r1.garbage", "r1..x", "r1.cjE.", r.session_token):
        assert await p.list(bogus) == []
    for bogus in ("bogus", "", "s1.garbage", r.room_token, "s1.cjE.nope"):
        assert await p.disconnect(bogus) is None
    assert state(await p.list(r.room_token)) == [("u1", True, 0)]


# 11
async def test_room_token_shared(hb: Hb) -> None:
    a = await hb("r1", "u1", "s1")
    b = await hb("r1", "u2", "s2")
    c = await hb("r2", "u1", "s3")
    assert a.room_token == b.room_token != c.room_token


# 12
async def test_data(p: Presence, hb: Hb) -> None:
    r = await hb("r1", "u1", "s1")
    assert await p.update_room_user("r1", "u1", {"typing": True})
    assert (await p.list(r.room_token))[0].data == {"typing": True}
    assert await p.update_room_user("r1", "ghost", {"typing": True}) is False
    assert users(await p.list_room("r1")) == ["u1"]
    assert await p.update_room_user("r1", "u1", None)
    assert (await p.list(r.room_token))[0].data is None


# 13
async def test_remove_room_user(p: Presence, hb: Hb, clock: TestClock) -> None:
    r = await hb("r1", "u1", "s1")
    await hb("r1", "u2", "s2")
    assert await p.remove_room_user("r1", "u1") is True
    assert users(await p.list_room("r1")) == ["u2"]
    assert await p.disconnect(r.session_token) is None
    assert await p.list_user("u1") == []
    clock.set(T0 + 5_000)
    await p.sweep()
    assert await p.remove_room_user("r1", "u1") is False


# 14
async def test_removal_is_not_a_ban(p: Presence, hb: Hb) -> None:
    await hb("r1", "u1", "s1")
    await p.remove_room_user("r1", "u1")
    await hb("r1", "u1", "s1")
    assert state(await p.list_room("r1")) == [("u1", True, 0)]


# 15
async def test_remove_room(p: Presence, hb: Hb) -> None:
    old = await hb("r1", "u1", "s1")
    await hb("r1", "u2", "s2")
    assert await p.remove_room("r1") is True
    assert await p.list_room("r1") == []
    assert await p.list(old.room_token) == []
    assert await p.list_user("u1") == []
    new = await hb("r1", "u1", "s1")
    assert new.room_token != old.room_token
    assert await p.remove_room("nope") is False


# 16
async def test_ordering(p: Presence, hb: Hb, clock: TestClock) -> None:
    tokens = {u: await hb("r1", u, f"s-{u}") for u in ("u1", "u2", "u3", "u4")}
    clock.set(T0 + 10)
    await p.disconnect(tokens["u3"].session_token)
    clock.set(T0 + 20)
    await p.disconnect(tokens["u1"].session_token)
    assert users(await p.list_room("r1")) == ["u2", "u4", "u1", "u3"]


# 17
async def test_limit(p: Presence, hb: Hb, clock: TestClock) -> None:
    tokens = {f"u{i}": await hb("r1", f"u{i}", f"s{i}") for i in range(8)}
    for i in (5, 6, 7):
        clock.advance(10)
        await p.disconnect(tokens[f"u{i}"].session_token)
    assert users(await p.list_room("r1", limit=3)) == ["u0", "u1", "u2"]
    assert users(await p.list_room("r1", limit=7)) == ["u0", "u1", "u2", "u3", "u4", "u7", "u6"]
    assert users(await p.list_room("r1", online_only=True)) == [f"u{i}" for i in range(5)]
    assert await p.list_room("r1", limit=0) == []


# 18
async def test_list_user(p: Presence, hb: Hb) -> None:
    for room in ("b", "a", "c", "d"):
        r = await hb(room, "u1", f"s-{room}")
        if room in ("c", "d"):
            await p.disconnect(r.session_token)
    got = await p.list_user("u1")
    assert [(e.room_id, e.online) for e in got] == [
        ("a", True),
        ("b", True),
        ("d", False),
        ("c", False),
    ]
    assert got[0] == UserRoomEntry("a", True, 0)
    assert [e.room_id for e in await p.list_user("u1", online_only=True)] == ["a", "b"]
    assert [e.room_id for e in await p.list_user("u1", limit=3)] == ["a", "b", "d"]


# 19
async def test_mass_expiry(p: Presence, hb: Hb, clock: TestClock) -> None:
    for i in range(70):
        await hb("r1", f"u{i}", f"s{i}")
    clock.set(T0 + 2_500)
    stats = await p.sweep()
    assert stats.sessions_ended == 70 and stats.users_offline == 70 and stats.rooms == 1
    entries = await p.list_room("r1", limit=200)
    assert len(entries) == 70 and not any(e.online for e in entries)


# 20
async def test_earlier_deadline_wins(p: Presence, hb: Hb, clock: TestClock) -> None:
    await hb("r1", "short", "s", 400)
    await hb("r1", "long", "l", 40_000)
    clock.set(T0 + 1_000)
    await p.sweep()
    await hb("r1", "new-short", "ns", 400)
    clock.set(T0 + 2_000)
    await p.sweep()
    assert state(await p.list_room("r1")) == [
        ("long", True, 0),
        ("new-short", False, T0 + 2_000),
        ("short", False, T0 + 1_000),
    ]


# 21
async def test_interval_shrink(p: Presence, hb: Hb, clock: TestClock) -> None:
    await hb("r1", "u1", "s1", 40_000)
    clock.set(T0 + 10)
    await hb("r1", "u1", "s1", 400)
    clock.set(T0 + 1_009)
    assert (await p.sweep()).sessions_ended == 0
    clock.set(T0 + 1_010)
    assert (await p.sweep()).sessions_ended == 1
    assert state(await p.list_room("r1")) == [("u1", False, T0 + 1_010)]


# 22
async def test_lazy_expiry_without_sweeper(p: Presence, hb: Hb, clock: TestClock) -> None:
    r = await hb("r1", "u1", "s1", 1000)
    clock.set(T0 + 5_000)
    assert state(await p.list(r.room_token)) == [("u1", False, T0 + 2_500)]


# 23
async def test_sweeper_index_hygiene(app: App, p: Presence, hb: Hb, clock: TestClock) -> None:
    r = await hb("r1", "u1", "s1")
    assert await app.redis.zscore(p.due_key, "r1") is not None
    await p.disconnect(r.session_token)
    clock.set(T0 + 3_000)
    stats = await p.sweep()
    assert stats.sessions_ended == 0
    assert await app.redis.zscore(p.due_key, "r1") is None


# 24
async def test_forged_session_token(p: Presence, hb: Hb) -> None:
    r1 = await hb("r1", "u1", "s1")
    r2 = await hb("r2", "u2", "s2")
    _, enc1, secret = r1.session_token.split(".", 2)
    enc2 = r2.session_token.split(".", 2)[1]
    assert await p.disconnect(f"s1.{enc2}.{secret}") is None
    assert (await p.list(r1.room_token))[0].online
    assert (await p.list(r2.room_token))[0].online
    assert enc1 != enc2


# 25
async def test_data_survives_offline(p: Presence, hb: Hb, clock: TestClock) -> None:
    r = await hb("r1", "u1", "s1")
    await p.update_room_user("r1", "u1", {"x": 1})
    clock.set(T0 + 3_000)
    entry = (await p.list(r.room_token))[0]
    assert not entry.online and entry.data == {"x": 1}
    await hb("r1", "u1", "s1")
    assert (await p.list(r.room_token))[0] == PresenceEntry("u1", True, 0, {"x": 1})


# 26
async def test_events(p: Presence, hb: Hb) -> None:
    r = await hb("r1", "u1", "s1")
    await hb("r1", "u1", "s1")
    await hb("r1", "u1", "s1")
    await p.update_room_user("r1", "u1", {"typing": True})
    await p.disconnect(r.session_token)
    assert await kinds(p, "r1") == ["join", "update", "leave"]
    evs = await p.read_events("r1")
    assert {(e.room_id, e.user_id, e.at) for e in evs} == {("r1", "u1", T0)}


# 27
async def test_concurrent_heartbeats(p: Presence) -> None:
    res = await asyncio.gather(*(p.heartbeat("r1", "u1", f"s{i}", 1000) for i in range(50)))
    assert state(await p.list_room("r1")) == [("u1", True, 0)]
    assert await kinds(p, "r1") == ["join"]
    await asyncio.gather(*(p.disconnect(r.session_token) for r in res[:49]))
    assert state(await p.list_room("r1")) == [("u1", True, 0)]


# 28
async def test_concurrent_disconnects(p: Presence) -> None:
    res = await asyncio.gather(*(p.heartbeat("r1", "u1", f"s{i}", 1000) for i in range(50)))
    outs = await asyncio.gather(*(p.disconnect(r.session_token) for r in res))
    assert sum(1 for o in outs if o is not None and o.went_offline) == 1
    assert all(o is not None for o in outs)
    assert not (await p.list_room("r1"))[0].online
    assert await kinds(p, "r1") == ["join", "leave"]


# 29
async def test_heartbeat_racing_deadline(p: Presence, hb: Hb, clock: TestClock) -> None:
    await hb("r1", "u1", "s1", 1000)
    clock.set(T0 + 2_499)
    await hb("r1", "u1", "s1", 1000)
    clock.set(T0 + 2_500)
    assert (await p.sweep()).sessions_ended == 0
    assert state(await p.list_room("r1")) == [("u1", True, 0)]


# 30
async def test_bad_input(p: Presence, hb: Hb) -> None:
    for args in (("", "u", "s"), ("r", "", "s"), ("r", "u", "")):
        with pytest.raises(ValueError, match="must be a non-empty string"):
            await hb(*args)
    for interval in (0, -5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="interval"):
            await hb("r", "u", "s", interval)
    with pytest.raises(ValueError, match="limit"):
        await p.list_room("r1", limit=-1)
    with pytest.raises(TypeError, match="presence data"):
        await p.update_room_user("r1", "u1", object())
    assert await p.list_room("r") == [] and await p.list_user("u") == []


# 31
async def test_session_helper(p: Presence) -> None:
    async with p.session("r1", "u1", interval=1000) as s:
        await p.heartbeat("r1", "u0", "other", 1000)
        got = await s.list()
        assert got[0].user_id == "u1" and got[0].online
        assert users(got) == ["u1", "u0"]
    assert [(e.user_id, e.online) for e in await p.list_room("r1")] == [
        ("u0", True),
        ("u1", False),
    ]


# 32
async def test_redis_down() -> None:
    from redis.asyncio import Redis

    from .._servers import free_port

    app = App(
        redis=Redis(port=free_port(), socket_connect_timeout=0.5, decode_responses=True),
        namespace="down",
    )
    with pytest.raises(redis.exceptions.ConnectionError):
        await Presence(app).heartbeat("r1", "u1", "s1")
    await app.aclose()
