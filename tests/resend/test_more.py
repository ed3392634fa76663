"""Concurrency, restarts (a second App on the same Redis), the watchdog's recovery of
lost jobs, bad input (a clear error, nothing written) and the pure helpers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rkit import ConfigError
from rkit.integrations.resend import (
    Email,
    InvalidEmail,
    Resend,
    build_payload,
    is_test_address,
)
from rkit.testing import peer_app, run_until_idle

from .conftest import T0, World, event, make_resend

pytestmark = pytest.mark.timeout(60)


async def test_concurrent_sends_and_webhooks(world: World) -> None:
    ids = await asyncio.gather(*(world.send(subject=f"s{i}") for i in range(200)))
    keyed = await asyncio.gather(*(world.send(idempotency_key="once") for _ in range(20)))
    assert len(set(ids)) == 200 and len(set(keyed)) == 1
    await world.tick(T0 + 1000)
    await world.tick(T0 + 2000)
    assert (await world.r.queue_info()).by_status["sent"] == 201
    assert sorted(e["subject"] for e in world.fake.sent) == sorted(
        [f"s{i}" for i in range(200)] + ["Hi"]
    )
    rid = (await world.r.get(ids[0])).resend_id  # type: ignore[union-attr]
    assert rid is not None
    # the same message delivered 20 times at once: applied once, one callback
    same = await asyncio.gather(*(world.hook(event("email.opened", rid), "dup") for _ in range(20)))
    assert {r.status_code for r in same} == {201}
    # different events racing on one email: the rank rule decides, not the order
    kinds = ["email.delivered", "email.bounced", "email.delivery_delayed", "email.clicked"]
    await asyncio.gather(*(world.hook(event(k, rid), f"m-{k}") for k in kinds))
    await run_until_idle(world.app)
    e = await world.r.get(ids[0])
    assert e is not None and (e.status, e.opened, e.clicked, e.delivery_delayed) == (
        "bounced",
        True,
        True,
        True,
    )
    assert len(await world.r.list_delivery_events(ids[0])) == 5
    assert sorted(ev["type"] for _, ev in world.events) == sorted(["email.opened", *kinds])


async def test_a_peer_app_sends_what_another_enqueued(world: World) -> None:
    ids = [await world.send() for _ in range(30)]
    await world.r.aclose()
    peer = peer_app(world.app)  # another process of the service: its own registry
    try:
        r2 = make_resend(peer, world.fake)  # the App that enqueued runs no worker
        world.clock.set(T0 + 1000)
        await run_until_idle(peer)
        assert (await r2.queue_info()).by_status["sent"] == 30
        assert [(await r2.status(i)).status for i in ids] == ["sent"] * 30  # type: ignore[union-attr]
        assert len(world.fake.sent) == 30
        await r2.aclose()
    finally:
        await peer.aclose()


async def test_watchdog_recovers_a_lost_batcher_run_and_a_lost_send_job(world: World) -> None:
    eid = await world.send()
    # the process died after the enqueue script, before the batcher job was queued
    (job,) = [j for j in await world.r.workpool.pending() if j["fn_name"] == "resend_make_batch"]
    await world.r.workpool.cancel(job["work_id"])
    await run_until_idle(world.app)
    await world.tick(T0 + 30_000)
    assert await world.r.watchdog() == 0  # the scheduled run is not overdue yet
    world.clock.set(T0 + 61_001)
    assert await world.r.watchdog() == 1
    assert await world.r.watchdog() == 0  # claimed once
    # the batcher takes the batch, then "dies" before queueing its send job
    world.clock.set(T0 + 62_001)
    for p in await world.r.workpool.pending():
        await world.r.workpool.cancel(p["work_id"])
    await world.r._call("take_batch", str(T0 + 62_001), "0", 100, "1000", 1)
    await run_until_idle(world.app)
    assert (await world.r.status(eid)).status == "queued"  # type: ignore[union-attr]
    assert await world.r.watchdog() == 0  # within the grace period
    await world.tick(T0 + 123_000)
    assert await world.r.watchdog() == 1
    await run_until_idle(world.app)
    assert (await world.r.status(eid)).status == "sent"  # type: ignore[union-attr]
    assert len(world.fake.batch_requests) == 1


async def test_a_send_job_redelivered_after_its_worker_died_keeps_the_idempotency_key(
    world: World,
) -> None:
    """The worker died after the API accepted the batch: the same attempt runs again
    (batch_begin accepts the in-flight attempt), with the same key, and the server's
    idempotency record answers; nothing is sent twice."""
    eid = await world.send()
    world.clock.set(T0 + 1000)
    await world.r._make_batch(T0 + 750, False)
    await world.r._call("batch_begin", eid, 1)  # attempt 1 began: in flight
    import httpx

    async with httpx.AsyncClient() as c:  # what the dead worker had sent
        await c.post(
            f"{world.fake.url}/emails/batch",
            json=[
                {
                    "from": "me@x.io",
                    "to": ["delivered@resend.dev"],
                    "reply_to": [],
                    "subject": "Hi",
                    "html": "<p>x</p>",
                }
            ],
            headers={"Idempotency-Key": eid},
        )
    assert await world.r._send_batch(eid, 1) == "SENT"
    assert len(world.fake.sent) == 1 and len(world.fake.requests) == 2
    assert (await world.r.get(eid)).resend_id == "re_0"  # type: ignore[union-attr]
    assert await world.r._send_batch(eid, 1) == "NOOP"  # a further duplicate
    assert await world.r._send_batch(eid, 2) == "NOOP"


BAD_SENDS: list[tuple[dict[str, Any], str]] = [
    ({"from_": ""}, "from_"),
    ({"to": []}, "to must name"),
    ({"to": [""]}, "to must be"),
    ({"cc": [3]}, "cc must be"),
    ({"reply_to": "r@x.io"}, "reply_to"),
    ({"headers": [{"name": "X"}]}, "headers"),
    ({"template": {"variables": {}}, "html": None}, "template is invalid"),
    ({"attachments": [{"content": "x"}]}, "attachments are invalid"),
    ({"attachments": [{"filename": "a", "content": "x" * 2000}]}, "max_attachment_bytes"),
    ({"tags": [{"name": "a"}]}, "tags"),
    ({"tags": ["a"]}, "tags"),
    ({"to": 5}, "to must be"),
    ({"headers": {"X": "1"}}, "headers"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"idempotency_key": "k" * 300}, "idempotency_key"),
    ({"subject": 5}, "subject must be"),
]


async def test_bad_input_is_a_clear_error_and_writes_nothing(world: World) -> None:
    r = make_resend(world.app, world.fake, instance="strict", max_attachment_bytes=1000)
    for args, msg in BAD_SENDS:
        base: dict[str, Any] = {"from_": "me@x.io", "to": "delivered@resend.dev", "subject": "S"}
        base["html"] = "x"
        with pytest.raises(InvalidEmail, match=msg):
            await r.send_email(**{**base, **args})
    assert await world.keys() == []
    for bad_id in ("", "x" * 5000, 5):
        assert await world.r.status(bad_id) is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        await world.r.list_emails("nope")
    assert await world.keys() == []


@pytest.mark.parametrize(
    "opts",
    [
        {"batch_size": 0},
        {"batch_size": 101},
        {"retry_attempts": 0},
        {"initial_backoff_ms": -1},
        {"api_interval_ms": 0},
        {"batch_delay_ms": float("nan")},
        {"orphan_ttl_ms": 0},
        {"callback_max_attempts": 0},
        {"on_email_event": "nope"},
        {"webhook_tolerance_s": 0},
        {"max_webhook_bytes": True},
        {"http_timeout_s": 1000},
    ],
)
def test_constructor_rejects_bad_options(opts: dict[str, Any]) -> None:
    from rkit import App

    with pytest.raises(ConfigError):
        Resend(App(), **opts)


def test_a_second_instance_of_one_name_is_an_error() -> None:
    from rkit import App

    app = App()
    Resend(app, instance="a")
    with pytest.raises(ConfigError, match="already has a resend named 'a'"):
        Resend(app, instance="a")
    Resend(app, instance="b")


def test_test_addresses_follow_the_documented_pattern() -> None:
    good = ["delivered@resend.dev", "bounced+x_1-2@resend.dev", "complained+@resend.dev"]
    bad = ["Delivered@resend.dev", "delivered+a.b@resend.dev", "delivered@resend.dev.x", ""]
    assert all(map(is_test_address, good)) and not any(map(is_test_address, bad))


def test_build_payload_matches_the_batch_shape() -> None:
    e = Email.model_validate(
        {
            "id": "e",
            "from": "a@x.io",
            "to": ["b@x.io"],
            "bcc": ["c@x.io"],
            "headers": [{"name": "X", "value": "1"}, {"name": "X", "value": "2"}],
            "subject": "",
            "template": {"id": "t"},
            "status": "waiting",
            "created_at": T0,
        }
    )
    assert build_payload(e) == {
        "from": "a@x.io",
        "to": ["b@x.io"],
        "bcc": ["c@x.io"],
        "reply_to": [],
        "headers": {"X": "2"},  # later duplicates win
        "template": {"id": "t"},  # an empty subject is left out with a template
    }


async def test_a_retried_message_queues_the_callback_its_first_delivery_lost(
    world: World,
) -> None:
    """The process died after the event was applied, before its callback was queued:
    Svix retries (no 2xx), the retry is a duplicate, and it queues the callback."""
    eid = (await asyncio.gather(world.send()))[0]
    await world.tick(T0 + 1000)
    ev = event("email.delivered", "re_0")
    raw = __import__("json").dumps(ev)
    args = ["m1", 86_400_000, 600_000, ev["type"], ev["created_at"], "re_0", "", raw, 100]
    reply = await world.r._call("apply_event", *args, T0, 300_000, "1")
    assert reply == ["APPLIED", eid]
    assert await world.r.events_pool.pending() == []  # the callback was never queued
    assert (await world.hook(ev, "m1")).status_code == 201
    assert (await world.hook(ev, "m1")).status_code == 201  # queued once
    await run_until_idle(world.app)
    assert [i for i, _ in world.events] == [eid]
    assert len(await world.r.list_delivery_events(eid)) == 1


async def test_an_unsupported_event_with_a_stale_timestamp_is_still_refused(
    world: World,
) -> None:
    body = {"type": "email.scheduled", "created_at": "x", "data": {"email_id": "re_0"}}
    assert (await world.hook(body, "m1", ts=T0 - 301_000)).status_code == 400
    assert (await world.hook(body, "m1", ts=T0 + 301_000)).status_code == 400
    assert (await world.hook(body, "m1")).status_code == 201


async def test_manual_send_through_the_resend_sdk_pointed_at_the_fake(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's pattern for manual sends: the official SDK inside the callback,
    with the email id as Idempotency-Key (the SDK's globals pointed at the fake)."""
    import resend

    monkeypatch.setattr(resend, "api_url", world.fake.url)
    monkeypatch.setattr(resend, "api_key", "re_test")

    async def send(email_id: str) -> str:
        params: Any = {
            "from": "a@x.io",
            "to": ["b@x.io"],
            "subject": "S",
            "html": "<p>x</p>",
            "attachments": [{"filename": "a.txt", "content": "aGk="}],
        }
        out = await resend.Emails.send_async(params, {"idempotency_key": email_id})
        return str(out["id"])

    eid = await world.r.send_email_manually(from_="a@x.io", to="b@x.io", subject="S", send=send)
    (req,) = world.fake.requests
    assert req.path == "/emails" and req.headers["idempotency-key"] == eid
    e = await world.r.get(eid)
    assert e is not None and e.status == "sent" and e.resend_id == "re_s0"


async def test_a_queued_manual_email_can_be_cancelled_while_its_send_runs(world: World) -> None:
    async def send(email_id: str) -> str:
        await world.r.cancel_email(email_id)  # allowed: manual and queued
        return "re_m9"

    eid = await world.r.send_email_manually(from_="a@x.io", to="b@x.io", subject="S", send=send)
    e = await world.r.get(eid)  # the email did go out: the outcome is written anyway
    assert e is not None and e.status == "sent" and e.resend_id == "re_m9"
    assert e.finalized_at is None


async def test_an_oversized_webhook_body_is_refused_before_anything(world: World) -> None:
    r = make_resend(world.app, world.fake, instance="small", max_webhook_bytes=100)
    out = await world.hook(event("email.delivered", "re_0", pad="x" * 200), "m1", r=r)
    assert out.status_code == 413 and await world.keys() == []
    assert Resend.view(world.app, "small") is r


async def test_a_raising_handler_is_retried_up_to_callback_max_attempts(world: World) -> None:
    calls: list[str] = []

    async def flaky(email_id: str, ev: Any) -> None:
        calls.append(email_id)
        raise RuntimeError("handler broke")

    r = make_resend(
        world.app, world.fake, instance="cb2", on_email_event=flaky, callback_max_attempts=2
    )
    await r.send_email_manually(
        from_="a@x.io", to="b@x.io", subject="S", send=lambda _id: _rid("re_cb")
    )
    await world.hook(event("email.delivered", "re_cb"), "m1", r=r)
    for _ in range(4):
        await run_until_idle(world.app)
        world.clock.advance(10_000)  # past the callback backoff
    assert len(calls) == 2  # failed twice: given up (logged), never a third time


async def _rid(rid: str) -> str:
    return rid
