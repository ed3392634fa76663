"""The worker runs registered actions end to end (arq, JSON only)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rkit import ActionNotFound, App, ConfigError, SerializationError
from rkit.testing import create_test_app, run_until_idle


def register(app: App) -> dict[str, list[object]]:
    seen: dict[str, list[object]] = {"calls": []}

    @app.action(name="math.add")
    async def add(a: int, b: int = 0) -> int:
        seen["calls"].append((a, b))
        return a + b

    @app.action(name="boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    @app.action(name="returns.set")
    async def bad_result() -> object:
        return {1, 2}

    return seen


async def test_action_runs_end_to_end(queue_app: App) -> None:
    seen = register(queue_app)
    job = await queue_app.enqueue("math.add", 2, b=3)
    assert await run_until_idle(queue_app) == 1
    assert seen["calls"] == [(2, 3)]
    assert await queue_app.job_result(job, timeout=5) == {"ok": True, "result": 5}


async def test_run_until_idle_returns_with_cron_components(queue_app: App) -> None:
    """Components that add wall-clock crons (the presence sweep runs every second)
    must not keep run_until_idle's burst worker busy forever."""
    from rkit import Presence

    Presence(queue_app)
    register(queue_app)
    await queue_app.enqueue("math.add", 1, b=1)
    assert await asyncio.wait_for(run_until_idle(queue_app), 10) == 1


async def test_enqueue_by_function_and_many_jobs(queue_app: App) -> None:
    register(queue_app)
    add = queue_app.get_action("math.add").fn
    jobs = await asyncio.gather(*(queue_app.enqueue(add, i, b=i) for i in range(40)))
    assert len(set(jobs)) == 40
    assert await run_until_idle(queue_app) == 40
    results = [await queue_app.job_result(j, timeout=5) for j in jobs]
    assert [r["result"] for r in results] == [2 * i for i in range(40)]


async def test_failures_are_recorded_not_crash_loops(queue_app: App) -> None:
    register(queue_app)
    failing = await queue_app.enqueue("boom")
    bad = await queue_app.enqueue("returns.set")
    # a job naming an action this worker's App does not know
    from rkit import _arq

    pool = await queue_app.queue_pool()
    unknown = await _arq.enqueue_action(pool, queue_app.queue_name, "gone.action", [], {})
    assert await run_until_idle(queue_app) == 3
    r1 = await queue_app.job_result(failing, timeout=5)
    assert r1 == {"ok": False, "error": {"type": "RuntimeError", "message": "kaput"}}
    r2 = await queue_app.job_result(bad, timeout=5)
    assert r2["ok"] is False and r2["error"]["type"] == "SerializationError"
    r3 = await queue_app.job_result(unknown, timeout=5)
    assert r3["ok"] is False and r3["error"]["type"] == "ActionNotFound"


async def test_bad_enqueue_writes_nothing(queue_app: App) -> None:
    register(queue_app)
    with pytest.raises(SerializationError, match=r"arguments of action 'math\.add'"):
        await queue_app.enqueue("math.add", object())
    with pytest.raises(SerializationError):
        await queue_app.enqueue("math.add", float("nan"))
    with pytest.raises(ActionNotFound):
        await queue_app.enqueue("nope")
    pool = await queue_app.queue_pool()
    assert await pool.zcard(queue_app.queue_name) == 0


def test_action_registration_errors() -> None:
    app = create_test_app()

    def sync_fn() -> None: ...

    with pytest.raises(ConfigError, match="async def"):
        app.action(sync_fn)  # type: ignore[arg-type]

    @app.action(name="x")
    async def one() -> None: ...

    async def two() -> None: ...

    with pytest.raises(ConfigError, match="already registered"):
        app.action(name="x")(two)

    @app.action
    async def default_named() -> None: ...

    assert (
        app.action_name(default_named)
        == f"{__name__}:test_action_registration_errors.<locals>.default_named"
    )


def test_json_serializer_rejects_non_json() -> None:
    from rkit._arq import json_deserializer, json_serializer

    data = json_serializer({"a": [1, "x", None], "e": ValueError("bad")})
    assert json_deserializer(data) == {"a": [1, "x", None], "e": "ValueError: bad"}
    with pytest.raises(TypeError):
        json_serializer({"a": object()})


SERVICE = """
from rkit import App
from rkit.workers import worker_settings_class

app = App(namespace="proc")


@app.action(name="svc.double")
async def double(x: int) -> int:
    return 2 * x


WorkerSettings = worker_settings_class(app)
"""


def run_in_worker_process(redis_url: str, tmp_path: Path, command: list[str]) -> list[object]:
    """Enqueue five jobs here, run ``command`` (a burst worker) in a subprocess, and
    return the jobs' results."""
    (tmp_path / "svc.py").write_text(SERVICE)
    env = {**os.environ, "RKIT_REDIS_URL": redis_url, "PYTHONPATH": str(tmp_path)}
    app = App(redis_url, namespace="proc")

    @app.action(name="svc.double")
    async def double(x: int) -> int:  # same name as in svc.py; only the worker runs it
        raise AssertionError("must run in the worker process")

    async def enqueue() -> list[str]:
        try:
            return [await app.enqueue("svc.double", i) for i in range(5)]
        finally:
            await app.aclose()

    async def results(jobs: list[str]) -> list[object]:
        try:
            return [(await app.job_result(j, timeout=10))["result"] for j in jobs]
        finally:
            await app.aclose()

    jobs = asyncio.run(enqueue())
    proc = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return asyncio.run(results(jobs))


@pytest.mark.slow
def test_rkit_worker_process(redis_url: str, tmp_path: Path) -> None:
    """`rkit worker module:app --burst` in a separate process runs queued actions."""
    command = [sys.executable, "-m", "rkit.cli", "worker", "svc:app", "--burst"]
    assert run_in_worker_process(redis_url, tmp_path, command) == [0, 2, 4, 6, 8]


@pytest.mark.slow
def test_arq_cli_with_worker_settings_class(redis_url: str, tmp_path: Path) -> None:
    """arq's own CLI runs an App's actions through ``worker_settings_class``."""
    command = [str(Path(sys.executable).with_name("arq")), "svc.WorkerSettings", "--burst"]
    assert run_in_worker_process(redis_url, tmp_path, command) == [0, 2, 4, 6, 8]


def test_worker_settings_class_needs_a_queue_url() -> None:
    from rkit.workers import worker_settings_class

    with pytest.raises(ConfigError, match="queue Redis URL"):
        worker_settings_class(create_test_app())
