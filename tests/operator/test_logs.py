"""Structured logs: every rkit record as one JSON line with the documented keys in
order (component, instance, event, ids, duration_ms, ...), from the workpool's
script events, the retrier's, and the action cache's own JSON lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from rkit import ActionCache, App, JsonFormatter, Presence, Workpool, configure_json_logs
from rkit.logs import SCHEMA_KEYS
from rkit.retrier import ActionRetrier
from rkit.testing import run_until_idle
from rkit.workpool import RetryBehavior


def capture() -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    return stream, configure_json_logs(logging.DEBUG, stream=stream)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    out = []
    for line in stream.getvalue().splitlines():
        obj = json.loads(line)  # every line is one JSON object
        assert list(obj)[: len(SCHEMA_KEYS)] == list(SCHEMA_KEYS), obj
        out.append(obj)
    return out


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream, handler = capture()
    try:
        yield stream
    finally:
        logging.getLogger("rkit").removeHandler(handler)
        logging.getLogger("rkit").setLevel(logging.NOTSET)


async def test_workpool_events(app: App, logs: io.StringIO) -> None:
    @app.action(name="slow")
    async def slow(i: int) -> int:
        app.clock.advance(250)  # the attempt takes 250 ms of the App's clock
        return i

    @app.action(name="bad")
    async def bad() -> None:
        raise ValueError("no good")

    pool = Workpool(app, "emails", log_level="INFO")
    wid = await pool.enqueue("slow", {"i": 1})
    bad_id = await pool.enqueue(
        "bad", {}, retry=RetryBehavior(max_attempts=1, initial_backoff_ms=1, base=2)
    )
    await run_until_idle(app)
    events = [e for e in parsed(logs) if e["component"] == "workpool"]
    done = [e for e in events if e["event"] == "completed" and e["ids"] == {"work_id": wid}]
    assert len(done) == 1
    (e,) = done
    assert e["instance"] == "emails" and e["level"] == "INFO" and e["logger"] == "rkit.workpool"
    assert e["duration_ms"] == 250
    assert e["fields"]["status"] == "success" and e["fields"]["fn_name"] == "slow"
    assert e["ts"].endswith("+00:00")
    (failed,) = [e for e in events if e["event"] == "completed" and e["ids"] == {"work_id": bad_id}]
    assert failed["level"] == "ERROR" and failed["fields"]["error"] == "no good"
    assert "no good" in failed["exc"]  # the attempt's traceback
    started = [e for e in events if e["event"] == "started"]
    assert {s["ids"]["work_id"] for s in started} == {wid, bad_id}


async def test_retrier_and_cache_lines(app: App, logs: io.StringIO) -> None:
    @app.action(name="ok")
    async def ok() -> int:
        return 1

    retrier = ActionRetrier(app, namespace="billing", log_level="INFO")
    run_id = await retrier.run("ok", {})
    await run_until_idle(app)

    async def double(x: int) -> int:
        return 2 * x

    cache = ActionCache(app, double, name="dbl", log=True)
    await cache.fetch({"x": 1})
    await cache.fetch({"x": 1})
    out = parsed(logs)
    runs = [e for e in out if e["component"] == "retrier" and e["event"] == "completed"]
    assert runs and runs[-1]["instance"] == "billing"
    assert run_id in json.dumps(runs[-1]["ids"])
    fetches = [e for e in out if e["component"] == "action_cache" and e["event"] == "fetch"]
    assert [(f["instance"], f["fields"]["get"]) for f in fetches] == [
        ("dbl", "miss"),
        ("dbl", "hit"),
    ]


def test_foreign_fields_stay_json() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("rkit.test_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning(
            "odd %s", "fields", extra={"component": "x", "obj": object(), "room_id": 5, "pool": "p"}
        )
    finally:
        log.removeHandler(handler)
    (obj,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert obj["component"] == "x" and obj["instance"] == "p" and obj["ids"] == {"room_id": "5"}
    assert obj["message"] == "odd fields" and obj["fields"]["obj"].startswith("<object")
    assert obj["event"] is None and obj["duration_ms"] is None


async def test_presence_events(app: App, logs: io.StringIO) -> None:
    presence = Presence(app, name="chat")
    assert not await presence.remove_room_user("lobby", "ghost")
    (e,) = [e for e in parsed(logs) if e["component"] == "presence"]
    assert (e["instance"], e["event"], e["level"]) == ("chat", "no_record", "WARNING")
    assert e["ids"] == {"room_id": "lobby", "user_id": "ghost"}
