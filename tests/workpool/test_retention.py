"""Bounded memory (DESIGN.md Redis rule 6): the dead-letter list is capped by count
(``dlq_max_len``, oldest dropped with its work item) and by age
(``dlq_retention_ms``, applied by the pump's hourly retention sweep), and the sweep
covers every pool, not only those whose local instance keeps results."""

from __future__ import annotations

from typing import Any

import pytest

from rkit import App
from rkit.errors import ConfigError, RunNotFound
from rkit.retrier import ActionRetrier
from rkit.workpool import (
    DLQ_MAX_LEN,
    DLQ_RETENTION_MS,
    OnCompleteArgs,
    RetryBehavior,
    Workpool,
    _runtime,
)

ONCE = RetryBehavior(max_attempts=1, initial_backoff_ms=0, base=1)


class Env:
    def __init__(self, app: App) -> None:
        self.fail = True
        self.delivered: list[str] = []

        @app.action(name="add")
        async def add(x: int) -> int:
            return x + 1

        @app.action(name="cb")
        async def cb(args: OnCompleteArgs) -> None:
            if self.fail:
                raise RuntimeError("callback down")
            self.delivered.append(args.work_id)

        @app.action(name="run_cb")
        async def run_cb(run_id: str, result: Any, context: Any) -> None:
            raise RuntimeError("callback down")


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


def pool(app: App, **kw: Any) -> Workpool:
    kw.setdefault("rng", lambda: 0.5)
    kw.setdefault("on_complete_retry", ONCE)
    return Workpool(app, "p", **kw)


def advance(app: App, ms: float) -> None:
    app.clock.advance(ms)  # type: ignore[attr-defined]


async def dead_letter_items(app: App, p: Workpool, n: int) -> list[str]:
    """``n`` items whose callback is dead-lettered, 1 ms apart (oldest first)."""
    from rkit.testing import run_until_idle

    ids = []
    for i in range(n):
        ids.append(await p.enqueue("add", {"x": i}, on_complete="cb"))
        await run_until_idle(app)
        advance(app, 1)
    return ids


def test_defaults_and_validation(app: App) -> None:
    p = Workpool(app, "p")
    assert (p.dlq_max_len, p.dlq_retention_ms) == (DLQ_MAX_LEN, DLQ_RETENTION_MS)
    assert (DLQ_MAX_LEN, DLQ_RETENTION_MS) == (1_000, 7 * 86_400_000)
    for kw in ({"dlq_max_len": 0}, {"dlq_max_len": 1.5}, {"dlq_retention_ms": 0}):
        with pytest.raises(ConfigError, match=next(iter(kw))):
            Workpool(app, "p", **kw)  # type: ignore[arg-type]


async def test_dlq_keeps_at_most_max_len_dropping_the_oldest(app: App, env: Env) -> None:
    p = pool(app, dlq_max_len=3)
    ids = await dead_letter_items(app, p, 5)
    assert [d.work_id for d in await p.dead_letters()] == ids[2:]
    assert await app.redis.zcard(p.keys[6]) == 3
    # the dropped letters' work items went with them; the kept ones stay replayable
    assert [await p.item(w) is None for w in ids] == [True, True, False, False, False]
    stats = (await p.diagnostics()).stats
    assert (stats["oc_dead"], stats["dlq_dropped"], (await p.diagnostics()).dlq) == (5, 2, 3)
    assert await p.replay_dead_letter(ids[0]) is False
    assert await p.replay_dead_letter(ids[4]) is True


async def test_dlq_age_retention_by_the_sweep(app: App, env: Env) -> None:
    p = pool(app, dlq_retention_ms=60_000)
    (wid,) = await dead_letter_items(app, p, 1)
    wk = f"{p.tag}:w:{wid}"
    # physically bounded too (a sweep that never runs cannot leak it forever)
    assert 0 < await app.redis.pttl(wk) <= 60_000 + 60_000
    advance(app, 60_000 - 2)
    assert await _runtime(app).expire_all() == 0
    assert [d.work_id for d in await p.dead_letters()] == [wid]
    advance(app, 2)
    assert await _runtime(app).expire_all() == 1
    assert await p.dead_letters() == [] and await app.redis.zcard(p.keys[6]) == 0
    assert await p.item(wid) is None
    assert (await p.diagnostics()).stats["dlq_dropped"] == 1


async def test_replayed_dead_letter_stops_expiring_then_retires(app: App, env: Env) -> None:
    from rkit.testing import run_until_idle

    p = pool(app, dlq_retention_ms=60_000)
    (wid,) = await dead_letter_items(app, p, 1)
    assert await p.replay_dead_letter(wid)
    wk = f"{p.tag}:w:{wid}"
    assert await app.redis.pttl(wk) == -1  # pending callback: no TTL
    advance(app, 120_000)
    await _runtime(app).expire_all()
    assert await p.item(wid) is not None  # not swept while its callback is pending
    env.fail = False
    await run_until_idle(app)
    assert env.delivered == [wid] and await p.item(wid) is None


async def test_dead_letter_of_a_pool_keeping_results(app: App, env: Env) -> None:
    p = pool(app, keep_result_ms=10_000, dlq_retention_ms=60_000)
    (wid,) = await dead_letter_items(app, p, 1)
    advance(app, 30_000)  # past keep_result_ms: still there while dead-lettered
    assert (await p.item(wid) or {}).get("oc_error") == "callback down"
    advance(app, 30_000)
    await _runtime(app).expire_all()
    assert await p.dead_letters() == [] and await p.item(wid) is None
    assert await app.redis.zcard(p.keys[9]) == 0  # the done index is swept too


async def test_retrier_dead_letter_expires_with_retention(app: App, env: Env) -> None:
    """Retrier spec §7.7: a dead-lettered run expires retention_ms after dead-lettering."""
    from rkit.testing import run_until_idle

    r = ActionRetrier(app, rng=lambda: 0.5, on_complete_retry=ONCE)
    rid = await r.run("add", {"x": 1}, on_complete="run_cb")
    await run_until_idle(app)
    assert [d.work_id for d in await r.dead_letters()] == [rid]
    advance(app, 7 * 86_400_000 - 1)
    await _runtime(app).expire_all()
    assert (await r.details(rid)).state == "completed"
    advance(app, 2)
    await _runtime(app).expire_all()
    with pytest.raises(RunNotFound):
        await r.status(rid)
    assert await r.dead_letters() == [] and await app.redis.zcard(r._pool.keys[6]) == 0


async def test_sweep_covers_pools_whose_local_instance_keeps_no_results(app: App, env: Env) -> None:
    """A worker's pump knows a pool with default options (e.g. discovered by name)
    while the enqueuer keeps results: the done index must still be swept."""
    from rkit.testing import peer_app, run_until_idle

    keeper = pool(app, keep_result_ms=10_000)
    await keeper.enqueue("add", {"x": 1})
    await run_until_idle(app)
    assert await app.redis.zcard(keeper.keys[9]) == 1
    worker = peer_app(app)  # another process, whose instance of "p" keeps nothing
    Workpool(worker, "p")
    advance(app, 10_001)
    assert await _runtime(worker).expire_all() == 1
    assert await app.redis.zcard(keeper.keys[9]) == 0


async def test_unacknowledged_callback_is_dead_lettered_after_its_budget(
    app: App, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A callback whose deliveries are claimed but never reported back (the process
    running the handler dies each time) spends its budget like a raising one instead
    of being redelivered every claim lease forever."""
    from rkit.testing import run_until_idle

    p = pool(app, on_complete_retry=RetryBehavior(max_attempts=3, initial_backoff_ms=0, base=1))
    claims: list[str] = []

    async def claimed_then_lost(work_id: str, *args: Any) -> None:
        claims.append(work_id)  # the handler's process "dies": no ack, no failure report

    monkeypatch.setattr(p, "_deliver", claimed_then_lost)
    wid = await p.enqueue("add", {"x": 1}, on_complete="cb")
    await run_until_idle(app)  # the fast path claims attempt 1
    for _ in range(5):
        advance(app, 30_001)  # past the claim lease
        await p.pump()
    assert claims == [wid] * 3
    (dead,) = await p.dead_letters()
    assert dead.work_id == wid and "not acknowledged after 3 attempt(s)" in dead.error
    assert await app.redis.zcard(p.keys[5]) == 0  # nothing left to redeliver
