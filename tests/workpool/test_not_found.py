"""Ids the pool has no record of: never enqueued, forgotten after their retention, or
lost with Redis's data. They read as ``NotFound()`` (not ``Finished()``), a cancel
says ``"NOT_FOUND"`` (not a no-op), the admin API answers 404; a malformed id is a
``ConfigError`` before Redis is touched (DEVIATION from the reference, which reports
``finished`` for any id it does not know)."""

from __future__ import annotations

from typing import Any

import pytest

from rkit import App, ConfigError, NotFound
from rkit.testing import run_until_idle
from rkit.workpool import Finished, Pending, Workpool

from .test_scenarios import Env, pool


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


async def test_unknown_id_is_not_found(app: App, env: Env) -> None:
    p = pool(app, max_parallelism=0)
    wid = await p.enqueue("add", {"x": 1})
    assert await p.status("nope") == NotFound()
    assert await p.status_batch([wid, "nope", wid]) == [Pending(0), NotFound(), Pending(0)]
    assert NotFound().to_dict() == {"state": "not_found"}
    assert await p.cancel("nope") == "NOT_FOUND"
    assert await p.cancel_many(["nope", wid]) == ["NOT_FOUND", "CANCELED"]
    assert await p.item("nope") is None


async def test_finished_reads_finished_while_kept_then_not_found(app: App, env: Env) -> None:
    kept = pool(app, "kept", keep_result_ms=10_000)
    wid = await kept.enqueue("add", {"x": 1})
    await run_until_idle(app)
    assert await kept.status(wid) == Finished()
    assert await kept.cancel(wid) == "NOOP"  # known and finished: nothing to cancel
    app.clock.advance(10_001)  # type: ignore[attr-defined]
    assert await kept.status(wid) == NotFound()  # past its retention: forgotten
    assert await kept.cancel(wid) == "NOT_FOUND"
    # keep_result_ms=0: forgotten once finished and its callback acknowledged
    p = pool(app)
    wid = await p.enqueue("add", {"x": 1}, on_complete="cb")
    await run_until_idle(app)
    assert [c.work_id for c in env.callbacks] == [wid]
    assert await p.status(wid) == NotFound()


async def test_vanished_record_is_not_found(app: App, env: Env) -> None:
    """Redis lost the item (restart without persistence, eviction): no ``Finished()``."""
    p = pool(app, max_parallelism=0)
    wid = await p.enqueue("add", {"x": 1})
    await app.redis.delete(f"{p.tag}:w:{wid}")
    assert await p.status(wid) == NotFound()
    assert await p.cancel(wid) == "NOT_FOUND"


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.status(None),
        lambda p: p.status(""),
        lambda p: p.status(7),
        lambda p: p.status("x" * 257),
        lambda p: p.status_batch(["ok", None]),
        lambda p: p.item(None),
        lambda p: p.get_result(None),
        lambda p: p.cancel(None),
        lambda p: p.cancel_many([b"bytes"]),
        lambda p: p.delete(None),
        lambda p: p.replay_dead_letter(None),
        lambda p: p.cancel_all(before=False),
        lambda p: p.cancel_all(before="0"),
    ],
)
async def test_bad_work_ids_are_config_errors_before_redis(
    app: App, env: Env, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = pool(app)

    async def untouched(*args: Any, **kw: Any) -> None:
        raise AssertionError("Redis was touched")

    monkeypatch.setattr(p, "_call", untouched)
    with pytest.raises(ConfigError, match=r"work id|before"):
        await call(p)


async def test_status_of_none_names_the_problem(app: App, env: Env) -> None:
    with pytest.raises(ConfigError, match=r"work id must be a non-empty str .* got None"):
        await Workpool(app, "p").status(None)  # type: ignore[arg-type]
