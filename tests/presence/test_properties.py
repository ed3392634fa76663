"""Property test: Presence (Lua, through Redis) against a naive in-memory model of
spec §4 over random operation sequences and a moving test clock.

The model expires every overdue session before each operation, in deadline order,
recording the deadline as lastDisconnected; rkit expires lazily per room and in the
sweeper, which must be indistinguishable (spec §6.1, DEVIATION §7.4)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster

from rkit import App, SessionConflict, TestClock
from rkit.presence import Presence

from .._servers import Cluster, Server

_ns = itertools.count()
ROOMS, USERS, SIDS = ["a", "b"], ["u", "v", "w"], ["s1", "s2", "s3", "s4"]

op = st.one_of(
    st.tuples(
        st.just("hb"),
        st.sampled_from(ROOMS),
        st.sampled_from(USERS),
        st.sampled_from(SIDS),
        st.sampled_from([100.0, 400.0, 1000.0]),
    ),
    st.tuples(st.just("disconnect"), st.sampled_from(SIDS)),
    st.tuples(st.just("advance"), st.sampled_from([1.0, 250.0, 999.0, 2500.0])),
    st.tuples(st.just("remove"), st.sampled_from(ROOMS), st.sampled_from(USERS)),
    st.tuples(st.just("data"), st.sampled_from(ROOMS), st.sampled_from(USERS)),
    st.tuples(st.just("sweep")),
)
ops = st.lists(op, min_size=1, max_size=30)


@dataclass
class Rec:
    seq: int
    online: bool = True
    ld: float = 0.0
    n: int = 0
    data: Any = None


@dataclass
class Model:
    now: float
    sessions: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    recs: dict[tuple[str, str], Rec] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)

    def expire(self) -> None:
        for sid, (_r, _u, dl) in sorted(self.sessions.items(), key=lambda kv: kv[1][2]):
            if dl <= self.now:
                self.end(sid, dl)

    def end(self, sid: str, at: float) -> bool:
        room, user, _ = self.sessions.pop(sid)
        rec = self.recs[(room, user)]
        rec.n -= 1
        if rec.n == 0 and rec.online:
            rec.online, rec.ld = False, at
            return True
        return False

    def hb(self, room: str, user: str, sid: str, interval: float) -> bool:
        s = self.sessions.get(sid)
        if s is not None and s[:2] != (room, user):
            return False
        rec = self.recs.get((room, user))
        if rec is None:
            self.seq[room] = self.seq.get(room, 0) + 1
            rec = self.recs[(room, user)] = Rec(self.seq[room], n=0)
        rec.online, rec.ld = True, 0.0
        if s is None:
            rec.n += 1
        self.sessions[sid] = (room, user, self.now + 2.5 * interval)
        return True

    def remove(self, room: str, user: str) -> bool:
        if (room, user) not in self.recs:
            return False
        del self.recs[(room, user)]
        for sid in [k for k, v in self.sessions.items() if v[:2] == (room, user)]:
            del self.sessions[sid]
        return True

    def listing(self, room: str) -> list[tuple[str, bool, float, Any]]:
        mine = [(u, r) for (rm, u), r in self.recs.items() if rm == room]
        on = sorted((r.seq, u) for u, r in mine if r.online)
        off = sorted(((r.ld, r.seq, u) for u, r in mine if not r.online), reverse=True)
        order = [u for _, u in on] + [u for _, _, u in off]
        return [
            (u, self.recs[(room, u)].online, self.recs[(room, u)].ld, self.recs[(room, u)].data)
            for u in order
        ]


async def run(app: App, clock: TestClock, seq: list[tuple[Any, ...]]) -> None:
    p = Presence(app)
    m = Model(clock.now_ms())
    tokens: dict[str, str] = {}
    for step, (kind, *args) in enumerate(seq):
        m.expire()
        if kind == "hb":
            expect_ok = m.hb(*args)
            try:
                res = await p.heartbeat(*args)
                tokens[args[2]] = res.session_token
                assert expect_ok, (step, args)
            except SessionConflict:
                assert not expect_ok, (step, args)
        elif kind == "disconnect":
            sid = args[0]
            live = sid in m.sessions and sid in tokens
            expected = m.end(sid, m.now) if live else None
            got = await p.disconnect(tokens[sid]) if sid in tokens else None
            assert (None if got is None else got.went_offline) == expected, (step, sid)
        elif kind == "advance":
            clock.advance(args[0])
            m.now = clock.now_ms()
        elif kind == "remove":
            assert await p.remove_room_user(*args) == m.remove(*args)
        elif kind == "data":
            value = {"step": step}
            exists = tuple(args) in m.recs
            if exists:
                m.recs[(args[0], args[1])].data = value
            assert await p.update_room_user(args[0], args[1], value) == exists
        else:
            await p.sweep()
        m.expire()
        for room in ROOMS:
            got_list = [
                (e.user_id, e.online, e.last_disconnected, e.data) for e in await p.list_room(room)
            ]
            assert got_list == m.listing(room), (step, room)
    for user in USERS:
        rooms = sorted({rm for (rm, u) in m.recs if u == user})
        assert sorted(e.room_id for e in await p.list_user(user)) == rooms
    await app.aclose()


@settings(max_examples=150, deadline=None)
@given(seq=ops)
def test_matches_model_fakeredis(seq: list[tuple[Any, ...]]) -> None:
    clock = TestClock()
    asyncio.run(run(App(clock=clock, namespace=f"pp{next(_ns)}"), clock, seq))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seq=ops)
def test_matches_model_redis(redis_server: Server, seq: list[tuple[Any, ...]]) -> None:
    clock = TestClock()
    app = App(redis_server.url, clock=clock, namespace=f"pp{next(_ns)}")
    asyncio.run(run(app, clock, seq))


@pytest.mark.cluster
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seq=ops)
def test_matches_model_cluster(redis_cluster: Cluster, seq: list[tuple[Any, ...]]) -> None:
    async def go() -> None:
        clock = TestClock()
        client = RedisCluster.from_url(redis_cluster.url, decode_responses=True)
        app = App(redis=client, clock=clock, namespace=f"pp{next(_ns)}", queue_redis=client)
        await run(app, clock, seq)

    asyncio.run(go())
