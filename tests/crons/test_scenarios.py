"""spec/crons.md §8 on fakeredis, real Redis and Cluster state (arq queue on
fakeredis for Cluster); the multi-process scenario is in test_processes.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from rkit import App, FunctionNotRegistered
from rkit.crons import (
    Cron,
    CronDetails,
    CronInfo,
    CronNameTaken,
    CronNotFound,
    Crons,
    CronSchedule,
    CronScheduler,
    Interval,
    IntervalSchedule,
    InvalidSchedule,
)
from rkit.testing import background_worker, peer_app, run_until_idle
from rkit.workpool import _runtime

from ._env import DAY, T0, Env, eventually, settle, snapshot, utc_ms


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


# 1
async def test_interval_basics(env: Env) -> None:
    cid = await env.crons.register(IntervalSchedule(ms=60_000), "record", {"m": "x"})
    assert isinstance(cid, str) and cid
    await env.advance(59_999)
    assert env.calls == []
    await env.advance(1)
    assert env.calls == [(T0 + 60_000, {"m": "x"})]
    await env.advance(60_000)
    assert env.times == [T0 + 60_000, T0 + 120_000]
    assert env.ticks == [(cid, T0 + 60_000), (cid, T0 + 120_000)]


# 2
async def test_cron_basics(env: Env) -> None:
    await env.crons.register(CronSchedule(cronspec="0 0 * * *"), "record")
    await env.advance(2 * DAY)
    first = utc_ms("2023-11-15T00:00:00")
    assert env.times == [first, first + DAY]


# 3
async def test_seconds_field_first(env: Env) -> None:
    await env.crons.register(Cron("*/15 * * * * *"), "record")
    await env.advance(50_000)
    assert env.times == [utc_ms(f"2023-11-14T22:14:{s}") for s in (15, 30, 45)]


# 4
async def test_time_zone(env: Env) -> None:
    await env.crons.register(Cron("0 9 * * *", tz="America/New_York"), "record")
    await env.advance(DAY)
    assert env.times == [utc_ms("2023-11-15T14:00:00")]


# 5 and its fall-back twin
@pytest.mark.parametrize(
    ("start", "spec", "expected"),
    [
        ("2026-03-07T17:00:00", "30 2 * * *", ["2026-03-08T07:00:00", "2026-03-09T06:30:00"]),
        ("2026-10-31T17:00:00", "30 1 * * *", ["2026-11-01T05:30:00", "2026-11-02T06:30:00"]),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_dst_transitions(env: Env, start: str, spec: str, expected: list[str]) -> None:
    env.clock.set(utc_ms(start))
    await env.crons.register(Cron(spec, tz="America/New_York"), "record")
    await env.advance(2 * DAY)
    assert env.times == [utc_ms(t) for t in expected]


# 6
async def test_interval_bounds(app: App, env: Env) -> None:
    before = await snapshot(app)
    for ms in (999, float("nan"), float("inf"), -5):
        with pytest.raises(InvalidSchedule, match="Interval must be >= 1000ms"):
            await env.crons.register(IntervalSchedule(ms=ms), "record")
    assert await snapshot(app) == before
    assert await env.crons.register(Interval(1000), "record")


# 7
async def test_bad_expressions(app: App, env: Env) -> None:
    before = await snapshot(app)
    for spec in (
        "61 * * * *",
        "* * * *",
        "0 0 0 1 1 * 2027",
        "0 0 31 2 *",
        "H * * * *",
        "@reboot",
        "0 0 30 2 *",
        "0 0 31 4 *",
        "",
    ):
        with pytest.raises(InvalidSchedule) as err:
            await env.crons.register(Cron(spec), "record")
        assert str(err.value) == f'Invalid cronspec: "{spec}"'
    with pytest.raises(InvalidSchedule, match='Invalid timezone: "Mars/Olympus"'):
        await env.crons.register(Cron("* * * * *", tz="Mars/Olympus"), "record")
    with pytest.raises(InvalidSchedule, match="invalid schedule"):
        await env.crons.register({"kind": "weekly", "ms": 5}, "record")
    with pytest.raises(InvalidSchedule, match="invalid schedule"):
        await env.crons.register({"kind": "interval"}, "record")
    assert await snapshot(app) == before
    # mapping schedules and croniter's extras are accepted
    assert await env.crons.register({"kind": "interval", "ms": 1000}, "record")
    assert await env.crons.register({"kind": "cron", "cronspec": "@hourly"}, "record")


# 8
async def test_unique_names(app: App, env: Env) -> None:
    first = await env.crons.register(Interval(60_000), "record", name="daily")
    before = await snapshot(app)
    with pytest.raises(CronNameTaken) as err:
        await env.crons.register(Interval(60_000), "record", name="daily")
    assert str(err.value) == 'Cron with name "daily" already exists'
    assert err.value.existing_id == first
    assert await snapshot(app) == before
    a = await env.crons.register(Interval(60_000), "record")
    b = await env.crons.register(Interval(60_000), "record")
    assert a != b
    with pytest.raises(ValueError, match="non-empty"):
        await env.crons.register(Interval(60_000), "record", name="")


# 9
async def test_get(env: Env) -> None:
    cid = await env.crons.register(
        Cron("0 9 * * 1-5", tz="Europe/Berlin"), "record", {"a": [1, "x"]}, name="daily"
    )
    by_name = await env.crons.get(name="daily")
    assert by_name == await env.crons.get(id=cid)
    assert by_name == CronInfo(
        cid,
        "daily",
        "record",
        {"a": [1, "x"]},
        CronSchedule(cronspec="0 9 * * 1-5", tz="Europe/Berlin"),
    )
    assert await env.crons.get(id="nope") is None
    assert await env.crons.get(name="nope") is None
    with pytest.raises(ValueError, match="exactly one"):
        await env.crons.get()
    with pytest.raises(ValueError, match="exactly one"):
        await env.crons.get(id=cid, name="daily")


# 10
async def test_list(env: Env) -> None:
    a = await env.crons.register(Interval(1000), "record", name="A")
    b = await env.crons.register(Interval(2000), "record", {"k": 1})
    c = await env.crons.register(Cron("@daily"), "record", name="C")
    found = await env.crons.list()
    assert [i.id for i in found] == [a, b, c]
    assert [i.name for i in found] == ["A", None, "C"]
    assert found[1] == CronInfo(b, None, "record", {"k": 1}, IntervalSchedule(ms=2000))
    assert set(found[1].to_dict()) == {"id", "name", "function", "args", "schedule"}
    total, page = await env.crons.list_details(offset=1, limit=1)
    assert total == 3 and [d.id for d in page] == [b]


# 11
async def test_delete(env: Env) -> None:
    first = await env.crons.register(Interval(60_000), "record", name="daily")
    await env.crons.delete(name="daily")
    await env.advance(DAY)
    assert env.calls == []
    assert await env.crons.get(name="daily") is None
    second = await env.crons.register(Interval(60_000), "record", name="daily")
    assert second != first
    with pytest.raises(CronNotFound) as err:
        await env.crons.delete(id="nope")
    assert str(err.value) == "Cron nope not found"
    with pytest.raises(CronNotFound) as err:
        await env.crons.delete(name="x")
    assert str(err.value) == 'Cron "x" not found'
    await env.crons.delete(id=second)
    assert await env.crons.list() == []


# 12
async def test_no_drift(env: Env) -> None:
    cid = await env.crons.register(Interval(60_000), "record")
    env.clock.set(T0 + 80_000)  # the first tick is processed 20 s late
    await env.step()
    assert env.ticks == [(cid, T0 + 60_000)] and env.times == [T0 + 80_000]
    details = await env.crons.details(id=cid)
    assert details is not None and details.next_run_ms == T0 + 120_000
    await env.advance(40_000)
    assert env.times == [T0 + 80_000, T0 + 120_000]


# 13
async def test_overlap_skip(app: App, env: Env) -> None:
    gates: dict[float, asyncio.Event] = {}
    starts: list[float] = []

    @app.action(name="slow")
    async def slow() -> None:
        start = env.now()
        starts.append(start)
        gates[start] = asyncio.Event()
        await gates[start].wait()

    cid = await env.crons.register(Interval(1000), "slow")

    async def finished(start: float) -> bool:
        d = await env.crons.details(id=cid)
        return d is not None and (d.last_finished_ms or 0) >= start

    async with background_worker(app):
        for t in range(T0 + 1000, T0 + 10_001, 1000):
            env.clock.set(t)
            for start, gate in list(gates.items()):
                if start + 2500 <= t and not gate.is_set():
                    gate.set()  # the 2,500 ms execution ends
                    await eventually(lambda s=start: finished(s))  # type: ignore[misc]
            report = await env.scheduler.tick()
            fired = len(starts) + report.fired
            await settle(lambda n=fired: len(gates) == n)  # type: ignore[misc]
        for gate in gates.values():
            gate.set()
    assert starts == [T0 + 1000, T0 + 4000, T0 + 7000, T0 + 10_000]
    stats = await env.crons.stats()
    assert stats["skipped"] == 6 and stats["fired"] == 4
    skipped = [e for e in await env.crons.events(limit=1000) if e["event"] == "skipped"]
    assert sorted(int(e["tick"]) for e in skipped) == [
        T0 + t for t in (2000, 3000, 5000, 6000, 8000, 9000)
    ]
    pending = await env.crons.workpool.diagnostics()
    assert pending.waiting == 0  # skipped ticks were never queued


# 14
async def test_coalesce_after_an_outage(env: Env) -> None:
    cid = await env.crons.register(Interval(60_000), "record")
    await env.advance(30_000)
    env.clock.set(T0 + 630_000)  # every scheduler was down since T0+30 s
    await env.step()
    assert env.ticks == [(cid, T0 + 60_000)]
    stats = await env.crons.stats()
    assert stats["misfired"] == 9
    details = await env.crons.details(id=cid)
    assert details is not None and details.next_run_ms == T0 + 660_000
    await env.advance(30_000)
    assert [t for _, t in env.ticks] == [T0 + 60_000, T0 + 660_000]


# 15
async def test_catch_up_policy(app: App) -> None:
    env = Env(app, misfire="catch_up")
    cid = await env.crons.register(Interval(60_000), "record")
    await env.advance(30_000)
    env.clock.set(T0 + 630_000)
    await env.advance(0)
    assert env.ticks == [(cid, T0 + k * 60_000) for k in range(1, 11)]
    assert (await env.crons.stats()).get("misfired", 0) == 0
    await env.advance(30_000)
    assert env.ticks[-1] == (cid, T0 + 660_000) and len(env.ticks) == 11


# 16 (in one process; test_processes.py runs three scheduler processes)
async def test_three_schedulers_no_double_fire(app: App, env: Env) -> None:
    peers = [peer_app(app) for _ in range(2)]
    try:
        schedulers = [env.scheduler] + [CronScheduler(Crons(p)) for p in peers]
        cid = await env.crons.register(Interval(1000), "record", overlap="allow")
        for second in range(1, 101):
            env.clock.set(T0 + second * 1000)
            reports = await asyncio.gather(*(s.tick() for s in schedulers))
            assert sum(r.fired for r in reports) == 1
            if second % 20 == 0:
                await run_until_idle(app)
        ticks = [t for _, t in env.ticks]
        assert sorted(ticks) == [T0 + s * 1000 for s in range(1, 101)]
        assert all(c == cid for c, _ in env.ticks)
    finally:
        for p in peers:
            await p.aclose()


# 17
@pytest.mark.parametrize("enqueued", [True, False], ids=["after-enqueue", "before-enqueue"])
async def test_scheduler_crash_between_claim_and_commit(app: App, env: Env, enqueued: bool) -> None:
    cid = await env.crons.register(Interval(60_000), "record")
    env.clock.set(T0 + 60_000)
    # a scheduler claims the tick, (enqueues its execution,) and dies before committing
    _, claims, _ = await env.crons._call("claim", 100, "30000", "dead-token")
    assert [c[0] for c in claims] == [cid]
    if enqueued:
        await env.crons._enqueue([(cid, T0 + 60_000, "", "")])
    await env.advance(29_999)  # the claim's lease holds: nobody else takes the tick
    assert len(env.calls) == int(enqueued)
    await env.advance(2)  # after the lease another scheduler re-claims the same tick
    assert env.ticks == [(cid, T0 + 60_000)]
    details = await env.crons.details(id=cid)
    assert details is not None and details.next_run_ms == T0 + 120_000
    assert [r.tick_ms for r in details.history] == [T0 + 60_000]
    # the dead scheduler's late commit is stale: nothing moves
    assert await env.crons._call(
        "commit", "dead-token", cid, str(T0 + 60_000), str(T0 + 120_000), "1", "0"
    ) == ["STALE"]
    await env.advance(60_000)
    assert [t for _, t in env.ticks] == [T0 + 60_000, T0 + 120_000]


# 18
async def test_delete_while_running(app: App, env: Env) -> None:
    gate = asyncio.Event()
    runs: list[float] = []

    @app.action(name="hang")
    async def hang() -> None:
        runs.append(env.now())
        await gate.wait()

    running = await env.crons.register(Interval(1000), "hang", name="running")
    queued = await env.crons.register(Interval(1000), "hang", name="queued")
    env.clock.set(T0 + 1000)
    await env.crons.pause(name="queued")
    async with background_worker(app):
        await env.scheduler.tick()
        await settle(lambda: len(runs) == 1)
        await env.crons.delete(id=running)
        gate.set()  # the running execution completes (its report finds no cron)

        async def completed() -> bool:
            d = await env.crons.workpool.diagnostics()
            return d.live == 0 and d.stats.get("succeeded", 0) == 1

        await eventually(completed)
    assert await env.crons.details(id=running) is None
    # an execution queued but not started when its cron is deleted never runs
    await env.crons.resume(name="queued")
    env.clock.set(T0 + 2000)
    await env.scheduler.tick()
    await env.crons.delete(id=queued)
    await run_until_idle(app)
    await env.advance(5000)
    assert len(runs) == 1
    assert await env.crons.list() == []
    assert (await env.crons.workpool.diagnostics()).live == 0


# 19
async def test_self_deleting_cron(app: App, env: Env) -> None:
    @app.action(name="once")
    async def once() -> None:
        env.calls.append((env.now(), {}))
        await env.crons.delete(name="me")

    await env.crons.register(Interval(10_000), "once", name="me")
    await env.advance(60_000)
    assert env.times == [T0 + 10_000]
    assert await env.crons.get(name="me") is None
    stats = await env.crons.stats()
    assert stats.get("failed", 0) == 0 and stats["deleted"] == 1
    assert await env.crons.register(Interval(10_000), "once", name="me")


# 20
async def test_immediate_visibility(app: App, env: Env) -> None:
    other = peer_app(app)
    try:
        theirs = Crons(other)
        cid = await env.crons.register(Interval(5000), "record", name="seen")
        assert (await theirs.get(name="seen")) == (await env.crons.get(id=cid))
        assert [c.id for c in await theirs.list()] == [cid]
    finally:
        await other.aclose()


# 21
async def test_args_contract(app: App, env: Env) -> None:
    before = await snapshot(app)
    with pytest.raises(TypeError):
        await env.crons.register(Interval(1000), "record", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await env.crons.register(Interval(1000), "record", {"x": object()})
    assert await snapshot(app) == before

    got: list[int] = []

    @app.action(name="kw")
    async def kw(a: int) -> None:
        got.append(a)

    await env.crons.register(Interval(1000), "kw", {"a": 1})
    await env.advance(1000)
    assert got == [1]


# 22
async def test_failures_do_not_stop_the_schedule(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "rkit.crons")
    cid = await env.crons.register(Interval(1000), "boom")
    await env.advance(3000)
    assert env.times == [T0 + 1000, T0 + 2000, T0 + 3000]  # once per tick, no retry
    details = await env.crons.details(id=cid)
    assert isinstance(details, CronDetails)
    assert details.last_status == "failed" and details.last_error == "boom"
    assert [r.status for r in details.history] == ["failed"] * 3
    assert (await env.crons.stats())["failed"] == 3
    errors = [r for r in caplog.records if r.name == "rkit.crons" and r.levelno == logging.ERROR]
    assert len(errors) == 3 and all("boom" in r.getMessage() and r.exc_info for r in errors)


async def test_retry_option_retries_a_failed_execution(app: App) -> None:
    from rkit import RetryBehavior

    env = Env(app, retry=RetryBehavior(max_attempts=3, initial_backoff_ms=100, base=1))
    cid = await env.crons.register(Interval(10_000), "boom")
    await env.advance(10_000)
    for _ in range(2):
        env.clock.advance(150)
        await run_until_idle(app)
    assert len(env.calls) == 3
    details = await env.crons.details(id=cid)
    assert details is not None and details.history[0].attempts == 3
    assert details.last_status == "failed"


# 23
async def test_worker_crash(app: App, env: Env) -> None:
    gate = asyncio.Event()
    runs: list[float] = []

    @app.action(name="hang_once")
    async def hang_once() -> None:
        runs.append(env.now())
        if len(runs) == 1:
            await gate.wait()

    cid = await env.crons.register(Interval(10_000), "hang_once")
    env.clock.set(T0 + 10_000)
    async with background_worker(app):
        await env.scheduler.tick()
        await settle(lambda: len(runs) == 1)
        rt = _runtime(app)  # the worker dies: no heartbeat, its leases forgotten
        assert rt._hb is not None
        rt._hb.cancel()
        rt.leases.clear()
        env.clock.advance(env.crons.workpool.lease_ms + 1)
        await env.crons.workpool.pump()
        await eventually(lambda: _status(env, cid, "lost"))
        # arq's re-delivery of the lost job is stale: not run again
        await env.crons.workpool._run_dispatched(f"{cid}:{T0 + 10_000}", "1")
        assert len(runs) == 1
        gate.set()
    details = await env.crons.details(id=cid)
    assert details is not None and details.last_status == "lost"
    assert details.history[0].tick_ms == T0 + 10_000
    await env.advance(20_000 - (env.now() - T0))
    assert runs[1:] == [T0 + 20_000]
    assert (await env.crons.stats())["lost"] == 1


async def _status(env: Env, cid: str, status: str) -> bool:
    d = await env.crons.details(id=cid)
    return d is not None and d.last_status == status


# 24
async def test_unregistered_function(app: App, env: Env) -> None:
    before = await snapshot(app)
    with pytest.raises(FunctionNotRegistered):
        await env.crons.register(IntervalSchedule(ms=1000), "no.such:fn")
    assert await snapshot(app) == before


# 25, 26
@pytest.mark.parametrize(
    ("spec", "first"),
    [
        ("0 0 L * *", "2023-11-30T00:00:00"),
        ("0 0 * * 5L", "2023-11-24T00:00:00"),
        ("0 0 * * 7", "2023-11-19T00:00:00"),
        ("0 0 * * 0", "2023-11-19T00:00:00"),
        ("0 0 * * MON-FRI", "2023-11-15T00:00:00"),
    ],
)
async def test_calendar_forms(env: Env, spec: str, first: str) -> None:
    cid = await env.crons.register(Cron(spec), "record")
    details = await env.crons.details(id=cid)
    assert details is not None and details.next_run_ms == utc_ms(first)


# 27
async def test_one_slot(app: App, env: Env) -> None:
    from redis.crc import key_slot

    cid = await env.crons.register(Interval(1000), "record", name="n")
    await env.crons.register(Interval(1000), "boom")
    await env.advance(2000)
    await env.crons.pause(id=cid)
    keys = [k async for k in app.redis.scan_iter(match=f"*{app.namespace}:cron*")]
    assert len(keys) >= 8
    assert len({key_slot(k.encode()) for k in keys}) == 1, keys


# 28
async def test_register_if_absent_under_concurrency(app: App, env: Env) -> None:
    ids = await asyncio.gather(
        *(env.crons.register_if_absent("daily", Interval(60_000), "record") for _ in range(10))
    )
    assert len(set(ids)) == 1
    assert [c.id for c in await env.crons.list()] == ids[:1]
    assert await env.crons.register_if_absent("daily", Cron("@daily"), "record") == ids[0]


async def test_pause_resume_and_trigger(app: App, env: Env) -> None:
    cid = await env.crons.register(Interval(10_000), "record", name="p")
    assert await env.crons.pause(name="p") is True
    assert await env.crons.pause(name="p") is False
    await env.advance(35_000)
    assert env.calls == []
    details = await env.crons.details(id=cid)
    assert details is not None and details.paused and details.next_run_ms is None
    assert await env.crons.resume(name="p") is True
    assert await env.crons.resume(name="p") is False
    details = await env.crons.details(id=cid)
    assert details is not None and details.next_run_ms == T0 + 40_000  # in phase, after now
    assert await env.crons.trigger(id=cid) is True  # runs now, schedule unchanged
    await run_until_idle(app)
    assert env.times == [T0 + 35_000]
    await env.advance(5_000)
    assert env.times == [T0 + 35_000, T0 + 40_000]
    with pytest.raises(CronNotFound):
        await env.crons.trigger(name="missing")
    with pytest.raises(CronNotFound):
        await env.crons.pause(id="missing")


async def test_trigger_refused_while_running(app: App, env: Env) -> None:
    gate = asyncio.Event()
    runs: list[float] = []

    @app.action(name="hang")
    async def hang() -> None:
        runs.append(env.now())
        await gate.wait()

    await env.crons.register(Interval(60_000), "hang", name="h")
    async with background_worker(app):
        assert await env.crons.trigger(name="h") is True
        await settle(lambda: len(runs) == 1)
        assert await env.crons.trigger(name="h") is False
        gate.set()


async def test_history_is_bounded(app: App) -> None:
    env = Env(app, history_len=3)
    cid = await env.crons.register(Interval(1000), "record")
    await env.advance(5000)
    details = await env.crons.details(id=cid)
    assert details is not None
    assert [r.tick_ms for r in details.history] == [T0 + 5000, T0 + 4000, T0 + 3000]
    assert all(r.status == "success" and r.duration_ms == 0 for r in details.history)


async def test_bad_options_are_refused_before_redis(app: App, env: Env) -> None:
    from rkit import ConfigError, PayloadTooLarge

    before = await snapshot(app)
    bad: list[dict[str, Any]] = [
        {"misfire": "later"},
        {"overlap": "queue"},
        {"timeout_ms": 0},
        {"history_len": 0},
        {"retry": "yes"},
    ]
    for opts in bad:
        with pytest.raises(ConfigError):
            await env.crons.register(Interval(1000), "record", **opts)
    with pytest.raises(ConfigError):
        await env.crons.get(id="")
    with pytest.raises(ConfigError):
        await env.crons.get(name="x" * 2000)
    with pytest.raises(ConfigError):
        Crons(app, "other", claim_limit=0)
    with pytest.raises(PayloadTooLarge):
        await env.crons.register(Interval(1000), "record", {"big": "x" * 1_000_001})
    assert await snapshot(app) == before


async def test_a_restarted_process_continues_the_schedule(app: App, env: Env) -> None:
    """State lives in Redis only: a second App (another process, after this one
    stopped) runs the same crons from where they were."""
    cid = await env.crons.register(Interval(10_000), "record", {"n": 1}, name="r")
    await env.advance(10_000)
    other = peer_app(app)
    try:
        later = Env(other)  # the new process registers the same function name
        later.clock.set(T0 + 20_000)
        await later.step()
        assert later.calls == [(T0 + 20_000, {"n": 1})] and len(env.calls) == 1
        details = await later.crons.details(name="r")
        assert details is not None and details.id == cid
        assert [r.tick_ms for r in details.history] == [T0 + 20_000, T0 + 10_000]
    finally:
        await other.aclose()


async def test_an_execution_whose_function_the_worker_lacks_is_a_recorded_failure(
    app: App, env: Env
) -> None:
    cid = await env.crons.register(Interval(1000), "record")
    other = peer_app(app)  # a worker whose App has the crons but not "record"
    try:
        Crons(other)
        env.clock.set(T0 + 1000)
        await env.scheduler.tick()
        await run_until_idle(other)
    finally:
        await other.aclose()
    details = await env.crons.details(id=cid)
    assert details is not None and details.last_status == "failed"
    assert "record" in (details.last_error or "") and env.calls == []


async def test_update_in_place(app: App, env: Env) -> None:
    cid = await env.crons.register(Interval(60_000), "record", {"m": "x"}, name="u")
    await env.advance(60_000)
    await env.crons.update(name="u", schedule=Interval(10_000), args={"m": "y"})
    details = await env.crons.details(name="u")
    assert details is not None and details.id == cid
    assert details.schedule == IntervalSchedule(ms=10_000)
    assert details.next_run_ms == T0 + 70_000 and len(details.history) == 1
    await env.crons.update(id=cid, args={"m": "z"})  # the schedule is unchanged
    await env.advance(10_000)
    assert env.calls == [(T0 + 60_000, {"m": "x"}), (T0 + 70_000, {"m": "z"})]
    await env.crons.update(id=cid, schedule=Cron("0 0 * * *"))
    details = await env.crons.details(id=cid)
    assert details is not None and details.next_run_ms == utc_ms("2023-11-15T00:00:00")
    before = await snapshot(app)
    with pytest.raises(InvalidSchedule):
        await env.crons.update(id=cid, schedule=Interval(10))
    with pytest.raises(TypeError):
        await env.crons.update(id=cid, args=[1])  # type: ignore[arg-type]
    with pytest.raises(CronNotFound):
        await env.crons.update(id="nope", args={})
    assert await snapshot(app) == before


def test_one_crons_instance_per_namespace_and_app() -> None:
    from rkit import ConfigError

    app = App()
    first = Crons(app)
    with pytest.raises(ConfigError, match=r"already has a cron named 'default'"):
        Crons(app)
    assert Crons.view(app) is first
    assert Crons(peer_app(app)) is not first  # another process may have its own
    assert Crons(app, "other") is not first
    with pytest.raises(ConfigError, match="namespace must match"):
        Crons(app, "no spaces")
