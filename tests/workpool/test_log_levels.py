"""Log levels: a class-level ``log_level`` is written by cancel / cancel_all too
(workpool spec §3.1, §7.12: enqueue writes both class-level values, cancel only the
log level), and the retrier's per-run ``log_level`` gates that run's events
(retrier spec §3.2 ``RunOptions``, §7.3 ``log_level`` on the run hash)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rkit import App
from rkit.retrier import ActionRetrier
from rkit.testing import run_until_idle
from rkit.workpool import Workpool, pool_names

from .test_scenarios import events


@pytest.fixture
def actions(app: App) -> None:
    @app.action(name="add")
    async def add(x: int) -> int:
        return x + 1


def other(app: App, name: str, **kw: Any) -> Workpool:
    """Another process's instance of pool ``name`` (one instance per name per App)."""
    return Workpool(app, name, register=False, **kw)


async def test_cancel_writes_class_level_log_level_only(app: App, actions: None) -> None:
    await Workpool(app, "p").set_config(max_parallelism=4, log_level="INFO")
    classy = other(app, "p", max_parallelism=7, log_level="ERROR")
    await classy.cancel("nope")  # even a no-op cancel writes it (as the reference)
    cfg = await other(app, "p").get_config()
    assert (cfg.max_parallelism, cfg.log_level) == (4, "ERROR")
    await other(app, "p").set_config(log_level="INFO")
    assert await other(app, "p", log_level="WARN").cancel_all() == 0
    assert (await other(app, "p").get_config()).log_level == "WARN"


async def test_cancel_without_class_level_writes_nothing(app: App, actions: None) -> None:
    p = Workpool(app, "q")
    await p.cancel("nope")
    await p.cancel_all()
    assert await app.redis.exists(*p.keys) == 0
    assert await pool_names(app) == []
    await other(app, "q", log_level="DEBUG").cancel("nope")
    assert await pool_names(app) == ["q"]  # the pool it created a config for is listed


async def run_two(
    app: App, caplog: pytest.LogCaptureFixture, namespace_level: str, run_level: str
) -> tuple[ActionRetrier, str, str, set[tuple[str, str]]]:
    """One run with its own ``run_level`` and one without, under ``namespace_level``;
    returns (retrier, that run, the other, the (run, event) pairs logged)."""
    caplog.set_level(logging.DEBUG, "rkit.retrier")
    r = ActionRetrier(app, log_level=namespace_level, rng=lambda: 0.5)  # type: ignore[arg-type]
    own = await r.run("add", {"x": 1}, log_level=run_level)  # type: ignore[arg-type]
    other = await r.run("add", {"x": 2})
    await run_until_idle(app)
    return r, own, other, {(e["work_id"], e["event"]) for e in events(caplog, "rkit.retrier")}


async def test_retrier_per_run_log_level_applies(
    app: App, actions: None, caplog: pytest.LogCaptureFixture
) -> None:
    r, loud, quiet, seen = await run_two(app, caplog, "WARN", "INFO")
    assert (await r._pool.item(loud) or {}).get("log_level") == "INFO"  # stored on the run
    assert {(loud, "enqueued"), (loud, "started"), (loud, "completed")} <= seen
    assert not any(w == quiet for w, _ in seen)
    assert (await r._pool.get_config()).log_level == "WARN"  # namespace level unchanged


async def test_retrier_per_run_log_level_quiets_a_run(
    app: App, actions: None, caplog: pytest.LogCaptureFixture
) -> None:
    r, quiet, loud, seen = await run_two(app, caplog, "INFO", "ERROR")
    ids = {w for w, _ in seen}
    assert loud in ids and quiet not in ids
    debug = [x for x in caplog.records if x.levelno == logging.DEBUG]
    assert len(debug) == 0  # neither run is at DEBUG: no "started run" debug line
    await r.run("add", {"x": 3}, log_level="DEBUG")
    assert [x for x in caplog.records if x.levelno == logging.DEBUG]
