"""Concurrency and load: many tasks heartbeating at once, and many sessions
heartbeating on schedule while the test clock moves — none lost, none wrongly
offline, exactly the stopped ones go offline at their deadline."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest

from rkit import TestClock
from rkit.presence import HeartbeatResult, Presence

from .conftest import T0


@pytest.mark.slow
async def test_concurrent_mixed_operations(p: Presence) -> None:
    rooms = [f"room-{i}" for i in range(5)]
    alive: dict[str, HeartbeatResult | None] = {}
    owner = {f"s{i}": (rooms[i % 5], f"u{i % 7}") for i in range(60)}
    # one client never races its own heartbeat and disconnect (the helper single-
    # flights); different sessions, users and rooms run concurrently
    locks = {sid: asyncio.Lock() for sid in owner}

    async def worker(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(30):
            sid = rnd.choice(list(owner))
            room, user = owner[sid]
            op = rnd.random()
            async with locks[sid]:
                current = alive.get(sid)
                if op < 0.6 or current is None:
                    alive[sid] = await p.heartbeat(room, user, sid, 60_000)
                elif op < 0.85:
                    alive[sid] = None
                    await p.disconnect(current.session_token)
                else:
                    await p.list_room(room)

    await asyncio.gather(*(worker(s) for s in range(25)))
    expected: dict[str, set[str]] = defaultdict(set)
    for sid, res in alive.items():
        if res is not None:
            expected[owner[sid][0]].add(owner[sid][1])
    for room in rooms:
        entries = await p.list_room(room)
        assert {e.user_id for e in entries if e.online} == expected[room]
        by_user: dict[str, list[str]] = defaultdict(list)
        for ev in await p.read_events(room):
            by_user[ev.user_id].append(ev.type)
        for user, kinds in by_user.items():  # transitions alternate, starting with a join
            assert kinds == ["join", "leave"] * (len(kinds) // 2) + ["join"] * (len(kinds) % 2)
            assert (kinds[-1] == "join") == (user in expected[room])


@pytest.mark.slow
async def test_load_on_schedule(p: Presence, clock: TestClock) -> None:
    rnd = random.Random(7)
    n_sessions, n_rooms, interval = 1000, 100, 1000.0
    sessions = [(f"room-{i % n_rooms}", f"user-{i}", f"sess-{i}") for i in range(n_sessions)]
    next_due = {s[2]: T0 + rnd.uniform(0, interval) for s in sessions}
    last_beat: dict[str, float] = {}
    sem = asyncio.Semaphore(50)

    async def beat(room: str, user: str, sid: str) -> None:
        async with sem:
            await p.heartbeat(room, user, sid, interval)
        last_beat[sid] = clock.now_ms()
        # clients are late by up to 0.8 interval; the timeout allows 1.5
        next_due[sid] = clock.now_ms() + interval + rnd.uniform(0, 0.8 * interval)

    # first heartbeat of everyone at T0, then 10 s of clock in 100 ms ticks
    await asyncio.gather(*(beat(*s) for s in sessions))
    stopped = {s[2] for s in sessions[::3]}
    early_ends = 0
    for tick in range(1, 101):
        clock.set(T0 + tick * 100)
        due = [s for s in sessions if next_due[s[2]] <= clock.now_ms()]
        if tick > 60:
            due = [s for s in due if s[2] not in stopped]
        await asyncio.gather(*(beat(*s) for s in due))
        ended = (await p.sweep()).sessions_ended
        if tick <= 60:
            early_ends += ended
        if tick % 20 == 0 and tick <= 60:
            for r in range(n_rooms):
                entries = await p.list_room(f"room-{r}")
                assert len(entries) == n_sessions // n_rooms and all(e.online for e in entries)
    assert early_ends == 0
    left: set[str] = set()
    for r in range(n_rooms):
        for e in await p.list_room(f"room-{r}"):
            sid = "sess-" + e.user_id.split("-")[1]
            if sid in stopped:
                assert not e.online
                assert e.last_disconnected == last_beat[sid] + 2.5 * interval
            else:
                assert e.online and e.last_disconnected == 0
        for ev in await p.read_events(f"room-{r}"):
            if ev.type == "leave":
                assert ev.at > T0 + 6_000  # nobody left while everyone heartbeated
                left.add("sess-" + ev.user_id.split("-")[1])
    assert left == stopped  # exactly the stopped sessions timed out (one leave each)
