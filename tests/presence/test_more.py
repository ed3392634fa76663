"""Presence beyond §8: config and bad input write nothing, odd ids, owner-key
hygiene, retention, rotation, sweeper loop, events API, restart, session helper."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from rkit import App, ConfigError, SessionConflict, TestClock, keys
from rkit.presence import Presence, PresenceEntry, PresenceEvent, sweep_all_job

from .conftest import T0, Hb


async def namespace_keys(app: App) -> list[str]:
    return sorted([k async for k in app.redis.scan_iter(match=f"rkit:{{{app.namespace}:*")])


def test_config_errors(app: App) -> None:
    for kwargs in (
        {"default_interval_ms": 0},
        {"timeout_multiplier": -1},
        {"events_maxlen": 0},
        {"events_ttl_ms": float("nan")},
        {"offline_retention_ms": 0},
        {"remove_batch": 0},
        {"token_factory": "x"},
    ):
        with pytest.raises(ConfigError):
            Presence(app, **kwargs)
    with pytest.raises(ConfigError):
        Presence(app, "")


async def test_bad_input_writes_nothing(app: App, p: Presence) -> None:
    bad: list[Any] = [
        p.heartbeat("", "u", "s"),
        p.heartbeat("r", "u", "s", interval=float("-inf")),
        p.heartbeat("r", 1, "s"),  # type: ignore[arg-type]
        p.heartbeat("r", "u", "s", interval=True),  # type: ignore[arg-type]
        p.list_room("r", limit=1.5),  # type: ignore[arg-type]
        p.list_user("", limit=3),
        p.update_room_user("r", "u", {"x": float("nan")}),
        p.update_room_user("", "u", {}),
        p.remove_room_user("r", ""),
        p.remove_room(""),
        p.rotate_room_token(""),
        p.sweep(max_rooms=0),
    ]
    for call in bad:
        with pytest.raises(ValueError):
            await call
    with pytest.raises(ConfigError):
        await Presence(app, "tf", token_factory=lambda: "").heartbeat("r", "u", "s")
    assert await namespace_keys(app) == []


async def test_odd_ids(p: Presence) -> None:
    room, user, sid = "{a}:b.c", "ünï:{}", "s.1:{x}"
    r = await p.heartbeat(room, user, sid, 1000)
    assert await p.list(r.room_token) == [PresenceEntry(user, True, 0)]
    assert [e.room_id for e in await p.list_user(user)] == [room]
    with pytest.raises(SessionConflict):
        await p.heartbeat("other", user, sid)
    assert (await p.disconnect(r.session_token)) is not None


async def test_non_canonical_token_is_unknown(p: Presence, hb: Hb) -> None:
    r = await hb("r1", "u1", "s1")
    _, enc, secret = r.room_token.split(".", 2)
    assert await p.list(f"r1.{enc}=.{secret}") == []
    assert await p.list(f"r1.!!.{secret}") == []
    assert await p.list(123) == []  # type: ignore[arg-type]


async def test_owner_key_released(app: App, p: Presence, hb: Hb, clock: TestClock) -> None:
    r = await hb("r1", "u1", "s1")
    owner = p._owner_key("s1")
    assert await app.redis.get(owner)
    await p.disconnect(r.session_token)
    assert await app.redis.get(owner) is None
    await hb("r1", "u1", "s2")
    clock.advance(10_000)
    await p.sweep()
    assert await app.redis.get(p._owner_key("s2")) is None


async def test_stale_owner_is_overwritten(app: App, p: Presence, hb: Hb) -> None:
    """A crash between a room script and the owner release leaves a stale owner key."""
    stale = f"{keys.encode('r9')}.{keys.encode('u9')}.dead"
    await app.redis.set(p._owner_key("s1"), stale)
    await hb("r1", "u1", "s1")
    assert (await app.redis.get(p._owner_key("s1"))).startswith(keys.encode("r1"))


async def test_concurrent_first_heartbeats_of_one_session(app: App, p: Presence) -> None:
    res = await asyncio.gather(*(p.heartbeat("r1", "u1", "s1", 1000) for _ in range(10)))
    assert len({r.session_token for r in res}) == 1
    assert await p.disconnect(res[0].session_token) is not None
    assert await app.redis.get(p._owner_key("s1")) is None


async def test_conflicting_sessions_race(p: Presence) -> None:
    """Two rooms racing for one new session id: exactly one wins."""
    outs = await asyncio.gather(
        *(p.heartbeat(f"r{i}", "u1", "shared", 1000) for i in range(6)), return_exceptions=True
    )
    won = [f"r{i}" for i, o in enumerate(outs) if not isinstance(o, BaseException)]
    assert len(won) == 1
    assert all(isinstance(o, SessionConflict) for o in outs if isinstance(o, BaseException))
    assert [e.room_id for e in await p.list_user("u1")] == won
    for i in range(6):
        assert [e.user_id for e in await p.list_room(f"r{i}")] == (
            ["u1"] if won == [f"r{i}"] else []
        )


async def test_lazy_expiry_off(app: App, hb: Hb, clock: TestClock) -> None:
    p = Presence(app, "lazy", lazy_expiry=False)
    await p.heartbeat("r1", "u1", "s1", 1000)
    clock.set(T0 + 5_000)
    assert (await p.list_room("r1"))[0].online  # the reference's behaviour
    await p.sweep()
    assert (await p.list_room("r1"))[0].last_disconnected == T0 + 2_500


async def test_events_off(app: App) -> None:
    p = Presence(app, "quiet", events=False)
    r = await p.heartbeat("r1", "u1", "s1")
    await p.disconnect(r.session_token)
    assert await p.read_events("r1") == []
    assert not await app.redis.exists(p.events_key("r1"))


async def test_events_stream_bounded(app: App, p: Presence) -> None:
    p = Presence(app, "small", events_maxlen=10, events_ttl_ms=60_000)
    for _ in range(300):
        r = await p.heartbeat("r1", "u1", "s1")
        await p.disconnect(r.session_token)
    assert await app.redis.xlen(p.events_key("r1")) < 250  # MAXLEN ~ trims by node
    assert 0 < await app.redis.pttl(p.events_key("r1")) <= 60_000


async def test_read_events_after(p: Presence, hb: Hb) -> None:
    r = await hb("r1", "u1", "s1")
    first = await p.read_events("r1")
    await p.disconnect(r.session_token)
    later = await p.read_events("r1", after=first[-1].id)
    assert [(e.type, e.user_id, e.room_id) for e in later] == [("leave", "u1", "r1")]
    assert isinstance(later[0], PresenceEvent)


async def test_events_iterator(p: Presence, hb: Hb) -> None:
    await hb("r1", "u0", "s0")
    got: list[PresenceEvent] = []

    async def follow() -> None:
        async for ev in p.events("r1", block_ms=100):  # only new events
            got.append(ev)
            if len(got) == 2:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)  # let the reader reach XREAD (not waiting for time)
    r = await hb("r1", "u1", "s1")
    await p.disconnect(r.session_token)
    await asyncio.wait_for(task, 5)
    assert [(e.type, e.user_id) for e in got] == [("join", "u1"), ("leave", "u1")]
    everything = [e.type async for e in _take(p.events("r1", after="0"), 3)]
    assert everything == ["join", "join", "leave"]


async def _take(it: Any, n: int) -> Any:
    i = 0
    async for x in it:
        yield x
        i += 1
        if i == n:
            return


async def test_watch(p: Presence, hb: Hb) -> None:
    r = await hb("r1", "u1", "s1")
    views: list[list[str]] = []

    async def follow() -> None:
        async for view in p.watch(r.room_token, block_ms=100):
            views.append([e.user_id for e in view])
            if len(views) == 2:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    await hb("r1", "u2", "s2")
    await asyncio.wait_for(task, 5)
    assert views == [["u1"], ["u1", "u2"]]
    assert [v async for v in p.watch("bogus")] == [[]]


async def test_rotate_room_token(p: Presence, hb: Hb) -> None:
    old = await hb("r1", "u1", "s1")
    new = await p.rotate_room_token("r1")
    assert new and new != old.room_token
    assert await p.list(old.room_token) == []
    assert len(await p.list(new)) == 1
    assert (await hb("r1", "u2", "s2")).room_token == new
    assert await p.rotate_room_token("nope") is None


async def test_offline_retention(app: App, hb: Hb, clock: TestClock) -> None:
    p = Presence(app, "ret", offline_retention_ms=10_000)
    r1 = await p.heartbeat("r1", "u1", "s1", 1000)
    r2 = await p.heartbeat("r2", "u2", "s2", 1000)
    await p.heartbeat("r2", "u3", "s3", 1000)
    clock.set(T0 + 100)
    await p.disconnect(r1.session_token)
    await p.disconnect(r2.session_token)
    clock.set(T0 + 5_000)
    stats = await p.sweep()  # r2: u3 times out at T0+2500
    assert stats.users_offline == 1 and stats.users_removed == 0
    clock.set(T0 + 10_100)
    stats = await p.sweep()
    assert stats.users_removed == 2  # u1 (r1) and u2 (r2); u3 left later
    assert await p.list_room("r1") == []
    assert [e.user_id for e in await p.list_room("r2")] == ["u3"]
    assert await p.list_user("u1") == []
    assert "remove" in [e.type for e in await p.read_events("r1")]
    ns = await namespace_keys(app)
    assert not any(k.startswith(app.keys.tag("presence", "ret", "r1") + ":room") for k in ns)
    clock.set(T0 + 12_500)
    assert (await p.sweep()).users_removed == 1
    assert await p.list_room("r2") == []
    assert await app.redis.zcard(p.due_key) == 0


async def test_remove_room_in_batches(app: App, clock: TestClock) -> None:
    p = Presence(app, "batches", remove_batch=3)
    for i in range(10):
        r = await p.heartbeat("r1", f"u{i}", f"s{i}", 1000)
        if i % 2:
            await p.disconnect(r.session_token)
    assert await p.remove_room("r1")
    assert await p.list_room("r1") == []
    assert await p.list_user("u3") == []
    remaining = [k for k in await namespace_keys(app) if ":events" not in k]
    assert [k for k in remaining if not k.endswith(":due")] == []


async def test_list_user_tidies_index(app: App, p: Presence, hb: Hb) -> None:
    await hb("r1", "u1", "s1")
    await app.redis.sadd(p._user_rooms_key("u1"), "ghost-room")
    assert [e.room_id for e in await p.list_user("u1")] == ["r1"]
    assert await app.redis.smembers(p._user_rooms_key("u1")) == {"r1"}


async def test_run_sweeper(app: App, p: Presence, hb: Hb, clock: TestClock) -> None:
    await hb("r1", "u1", "s1", 1000)
    stop = asyncio.Event()
    task = asyncio.create_task(p.run_sweeper(stop, poll_ms=10))
    clock.set(T0 + 3_000)
    leave = await asyncio.wait_for(_first(p.events("r1", after="0")), 5)
    while leave.type != "leave":
        leave = await asyncio.wait_for(_first(p.events("r1", after=leave.id)), 5)
    assert leave.at == T0 + 2_500
    stop.set()
    await asyncio.wait_for(task, 5)
    assert not await app.redis.exists(p.lock_key)


async def _first(it: Any) -> Any:
    async for x in it:
        return x


async def test_second_sweeper_stands_by(app: App, p: Presence) -> None:
    await app.redis.set(p.lock_key, "someone-else", px=60_000)
    stop = asyncio.Event()
    called = 0
    real = p.sweep

    async def counting(**kw: Any) -> Any:
        nonlocal called
        called += 1
        return await real(**kw)

    p.sweep = counting  # type: ignore[method-assign]
    task = asyncio.create_task(p.run_sweeper(stop, poll_ms=5))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert called == 0 and await app.redis.get(p.lock_key) == "someone-else"


async def test_sweep_all_job(app: App, hb: Hb, clock: TestClock) -> None:
    Presence(app)
    other = Presence(app, "other")
    await hb("r1", "u1", "s1")
    await other.heartbeat("r1", "u1", "s1", 1000)  # independent instance: no conflict
    clock.set(T0 + 3_000)
    assert await sweep_all_job({"rkit_app": app}) == 2


async def test_worker_settings_add_the_sweep_cron(app: App) -> None:
    from rkit.workers import worker_settings

    names = [c.name for c in worker_settings(app)["cron_jobs"]]
    assert "rkit_presence_sweep" not in names
    Presence(app)
    assert "rkit_presence_sweep" in [c.name for c in worker_settings(app)["cron_jobs"]]


async def test_restart_sees_the_same_state(
    app: App, backend: str, request: pytest.FixtureRequest, clock: TestClock
) -> None:
    p = Presence(app)
    r = await p.heartbeat("r1", "u1", "s1", 1000)
    await p.update_room_user("r1", "u1", {"k": "v"})
    if backend == "fake":
        client = fakeredis.FakeAsyncRedis(server=app._fake_server, decode_responses=True)
        app2 = App(redis=client, namespace=app.namespace, clock=clock)
    elif backend == "redis":
        app2 = App(app.redis_url, namespace=app.namespace, clock=clock)
    else:
        from redis.asyncio.cluster import RedisCluster

        cluster = request.getfixturevalue("redis_cluster")
        client = RedisCluster.from_url(cluster.url, decode_responses=True)
        app2 = App(redis=client, namespace=app.namespace, clock=clock, queue_redis=client)
    p2 = Presence(app2)
    assert await p2.list(r.room_token) == [PresenceEntry("u1", True, 0, {"k": "v"})]
    again = await p2.heartbeat("r1", "u1", "s1", 1000)
    assert again == r
    with pytest.raises(SessionConflict):
        await p2.heartbeat("r2", "u1", "s1")
    clock.set(T0 + 3_000)
    assert (await p2.sweep()).sessions_ended == 1
    assert not (await p.list(r.room_token))[0].online
    await app2.aclose()


async def test_session_helper_keeps_tokens_and_retries(p: Presence, clock: TestClock) -> None:
    s = p.session("r1", "u1", interval=5)  # 5 ms: the timer fires during this test
    await s.resume()
    good = (s.room_token, s.session_token)
    real = p.heartbeat
    failures = 0

    async def flaky(*a: Any, **kw: Any) -> Any:
        nonlocal failures
        failures += 1
        raise RedisConnectionError("down")

    p.heartbeat = flaky  # type: ignore[method-assign]
    with pytest.raises(RedisConnectionError):
        await s.heartbeat()
    assert (s.room_token, s.session_token) == good
    for _ in range(2000):  # the timer keeps trying without crashing
        if failures >= 3:
            break
        await asyncio.sleep(0.005)
    p.heartbeat = real  # type: ignore[method-assign]
    assert s._timer is not None and not s._timer.done()
    await s.pause()
    assert not (await p.list_room("r1"))[0].online
    await s.resume()
    assert (await s.list())[0].online and s.session_token != good[1]
    await s.pause()
    assert s.session_id and len(s.session_id) == 32


async def test_session_helper_single_flight(p: Presence) -> None:
    s = p.session("r1", "u1", interval=60_000, session_id="mine")
    calls = 0
    real = p.heartbeat

    async def slow(*a: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return await real(*a, **kw)

    p.heartbeat = slow  # type: ignore[method-assign]
    await asyncio.gather(*(s.heartbeat() for _ in range(5)))
    assert calls == 1
    async with s:
        assert calls == 2
    assert s.session_id == "mine"


async def test_huge_interval_rejected(app: App, p: Presence) -> None:
    with pytest.raises(ConfigError, match="interval must be a finite number in"):
        await p.heartbeat("r", "u", "s", 1e308)
    assert await namespace_keys(app) == []


async def test_orphan_token_is_deleted(
    app: App, p: Presence, hb: Hb, caplog: pytest.LogCaptureFixture
) -> None:
    r = await hb("r1", "u1", "s1")
    secret = r.session_token.split(".", 2)[2]
    tok = p.room_keys("r1")[6]
    await app.redis.hset(tok, "orphan-secret", "no-such-session")
    enc = keys.encode("r1")
    assert await p.disconnect(f"s1.{enc}.orphan-secret") is None
    assert not await app.redis.hexists(tok, "orphan-secret")
    assert "orphan" in caplog.text
    assert await app.redis.hexists(tok, secret)


async def test_script_cache_flush(app: App, p: Presence, hb: Hb, clock: TestClock) -> None:
    """EVALSHA after SCRIPT FLUSH falls back to EVAL, pipelined helpers too."""
    r = await hb("r1", "u1", "s1")
    await app.redis.script_flush()
    assert await p.disconnect(r.session_token) is not None
    assert await app.redis.get(p._owner_key("s1")) is None
    await app.redis.script_flush()
    await hb("r1", "u1", "s1")
