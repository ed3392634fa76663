"""Failures are visible: each failed attempt is logged at WARNING and a final failure
at ERROR, with the error text in the message, the traceback (``exc_info``) and the
event's fields as real record attributes (``extra``), gated by the pool's (or a
retrier run's) log level; the last failure's traceback is stored with the work item,
bounded (the last frames are kept), and shown by ``item()``, the retrier's
``details()`` and the admin API."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator

import httpx
import pytest
from rkit.api import create_api

from rkit import App
from rkit.retrier import ActionRetrier
from rkit.testing import background_worker, run_until_idle
from rkit.workpool import MAX_TRACEBACK_BYTES, RetryBehavior, format_traceback

from .test_scenarios import Env, _lose_running_attempt, fields, pool, settle


@pytest.fixture
def env(app: App) -> Env:
    return Env(app)


def completions(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == name and getattr(r, "event", None) == "completed"
    ]


def register_deep(app: App) -> None:
    def inner(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    def middle(n: int) -> None:
        inner(n)

    @app.action(name="explodes")
    async def explodes(n: int = 1) -> None:
        middle(n)


async def test_failed_attempts_logged_with_error_traceback_and_fields(
    app: App, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "rkit.workpool")
    p = pool(app)  # log level REPORT: failures pass, successes do not
    rb = RetryBehavior(max_attempts=2, initial_backoff_ms=0, base=1)
    wid = await p.enqueue("flaky", {"fail_times": 5}, retry=rb)
    await run_until_idle(app)
    retry, final = completions(caplog, "rkit.workpool")
    assert (retry.levelno, final.levelno) == (logging.WARNING, logging.ERROR)
    for r, n, status in ((retry, 1, "retrying"), (final, 2, "failed")):
        f = fields(r)
        assert f["work_id"] == wid and f["pool"] == "p" and f["component"] == "workpool"
        assert f["status"] == status and f["attempts"] == n and f["error"] == f"boom {n}"
        assert f["fn_name"] == "flaky"
        assert f"boom {n}" in r.getMessage() and wid in r.getMessage()
        assert not r.getMessage().startswith("{")  # a message, not a JSON document
        assert r.exc_info and str(r.exc_info[1]) == f"boom {n}"  # the traceback
    assert "retry_at" in fields(retry)
    ok = await p.enqueue("add", {"x": 1})
    await run_until_idle(app)
    assert not [r for r in completions(caplog, "rkit.workpool") if r.work_id == ok]  # type: ignore[attr-defined]


async def test_traceback_stored_with_the_item(app: App, env: Env) -> None:
    register_deep(app)
    p = pool(app, keep_result_ms=60_000)
    wid = await p.enqueue("explodes", {"n": 3})
    await run_until_idle(app)
    tb = (await p.item(wid) or {})["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "in middle" in tb and "in inner" in tb
    assert tb.rstrip().endswith("RuntimeError: boom 3")
    assert (await p.item(wid) or {})["error"] == "boom 3"


async def test_a_failure_without_traceback_clears_the_previous_one(app: App, env: Env) -> None:
    register_deep(app)
    calls: list[int] = []

    @app.action(name="explodes_then_hangs")
    async def explodes_then_hangs() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first")
        await asyncio.sleep(5)

    p = pool(app, keep_result_ms=60_000)
    rb = RetryBehavior(max_attempts=2, initial_backoff_ms=0, base=1)
    wid = await p.enqueue("explodes_then_hangs", {}, retry=rb, timeout_ms=100)
    await run_until_idle(app)
    h = await p.item(wid) or {}
    assert h["error"] == "Timed out after 100 ms"
    assert "traceback" not in h  # not the first attempt's, which belongs to another error


def test_traceback_is_bounded_keeping_the_last_frames() -> None:
    def ping(n: int) -> None:  # alternating frames: Python does not fold them
        if n == 0:
            raise KeyError("deep")
        pong(n - 1)

    def pong(n: int) -> None:
        ping(n)

    try:
        ping(300)
    except KeyError as exc:
        tb = format_traceback(exc)
        full = len("".join(traceback.format_exception(exc)).encode())
    assert full > 2 * MAX_TRACEBACK_BYTES
    assert len(tb.encode()) <= MAX_TRACEBACK_BYTES == 8192
    assert tb.rstrip().endswith("KeyError: 'deep'")
    first, second = tb.splitlines()[:2]
    assert "bytes of earlier traceback omitted" in first and second.startswith("  ")  # whole lines
    assert "in ping" in tb and "in pong" in tb
    wide = RuntimeError("é" * 20_000)  # a long message of multi-byte characters
    tb = format_traceback(wide)
    assert len(tb.encode()) <= MAX_TRACEBACK_BYTES and tb.rstrip().endswith("é")


async def test_lost_attempt_final_failure_is_an_error(
    app: App, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "rkit.workpool")
    p = pool(app)
    gate = asyncio.Event()
    calls: list[int] = []

    @app.action(name="hangs")
    async def hangs() -> None:
        calls.append(1)
        await gate.wait()

    wid = await p.enqueue("hangs", {})
    async with background_worker(app):
        await settle(lambda: len(calls) == 1)
        await _lose_running_attempt(app, p, env)
        gate.set()
    (final,) = [r for r in completions(caplog, "rkit.workpool") if r.work_id == wid]  # type: ignore[attr-defined]
    assert final.levelno == logging.ERROR and not final.exc_info
    assert fields(final)["error"] == "Worker lost: lease expired"
    assert "Worker lost: lease expired" in final.getMessage()


async def test_pool_log_level_gates_failure_logs(
    app: App, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "rkit.workpool")
    p = pool(app, log_level="ERROR")
    rb = RetryBehavior(max_attempts=2, initial_backoff_ms=0, base=1)
    await p.enqueue("flaky", {"fail_times": 5}, retry=rb)
    await run_until_idle(app)
    assert [r.levelno for r in completions(caplog, "rkit.workpool")] == [logging.ERROR]


async def test_callback_failure_logged_with_traceback(
    app: App, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "rkit.workpool")
    env.cb_failures = 1
    p = pool(app)
    wid = await p.enqueue("add", {"x": 1}, on_complete="bad_cb")
    await run_until_idle(app)
    (r,) = [r for r in caplog.records if "on_complete" in r.getMessage()]
    assert r.levelno == logging.WARNING and "callback down" in r.getMessage()
    assert r.exc_info and str(r.exc_info[1]) == "callback down"
    assert fields(r)["work_id"] == wid and fields(r)["error"] == "callback down"


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api(app, admin_token="tok"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_retrier_details_and_admin_api_show_the_traceback(
    app: App, env: Env, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "rkit.retrier")
    register_deep(app)
    auth = {"Authorization": "Bearer tok"}
    r = ActionRetrier(app, rng=lambda: 0.5, max_failures=1, initial_backoff_ms=0)
    run = await r.run("explodes", {"n": 7})
    await run_until_idle(app)
    d = await r.details(run)
    assert d.last_error == "boom 7" and d.traceback and "in inner" in d.traceback
    got = (await client.get(f"/retriers/default/runs/{run}", headers=auth)).json()
    assert got["traceback"] == d.traceback and got["last_error"] == "boom 7"
    levels = [x.levelno for x in completions(caplog, "rkit.retrier")]
    assert levels == [logging.WARNING, logging.ERROR]
    p = pool(app, "emails", max_parallelism=0, keep_result_ms=60_000)
    wid = await p.enqueue("explodes", {"n": 8})
    await p.set_config(max_parallelism=1)
    await run_until_idle(app)
    got = (await client.get(f"/workpools/emails/work/{wid}", headers=auth)).json()
    assert got["last_error"] == "boom 8" and "in middle" in got["traceback"]
    assert got["result"] == {"error": "boom 8", "kind": "failed"}
