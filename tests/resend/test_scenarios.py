"""Spec resend.md §8 acceptance scenarios, on fakeredis and a real redis-server, against
the fake Resend API on loopback; webhooks signed with svix's own ``Webhook.sign``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from rkit.integrations.resend import (
    Attachment,
    EmailAlreadySent,
    EmailNotFound,
    InvalidEmail,
    ResendConfigError,
    TestModeViolation,
)
from rkit.testing import run_until_idle

from .conftest import T0, World, event, make_resend

pytestmark = pytest.mark.timeout(60)


async def pending_jobs(w: World, fn: str) -> list[dict[str, Any]]:
    return [p for p in await w.r.workpool.pending() if p["fn_name"] == fn]


async def statuses(w: World, ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in ids:
        s = await w.r.status(i)
        assert s is not None
        out[s.status] = out.get(s.status, 0) + 1
    return out


# -- 1-5 validation --------------------------------------------------------------------


async def test_1_test_mode_refuses_real_recipients(world: World) -> None:
    with pytest.raises(TestModeViolation) as exc:
        await world.send(to="bob@gmail.com")
    assert str(exc.value).startswith(
        "Test mode is enabled, but email address is not a valid resend test address"
    )
    with pytest.raises(TestModeViolation):
        await world.send(cc="bob@gmail.com")
    assert await world.keys() == []  # nothing written, no job queued
    assert await world.r.workpool.pending() == []


async def test_2_test_addresses_and_labels(world: World) -> None:
    await world.send(
        to=["delivered@resend.dev", "bounced+u-1@resend.dev", "complained+@resend.dev"]
    )
    for bad in ("delivered+foo.bar@resend.dev", "foobar@resend.dev", "delivered@resended.dev"):
        with pytest.raises(TestModeViolation):
            await world.send(to=bad)


async def test_3_production_mode(world: World) -> None:
    r2 = make_resend(world.app, world.fake, test_mode=False, instance="prod")
    eid = await r2.send_email(from_="me@x.io", to="bob@gmail.com", subject="S", text="t")
    assert (await r2.status(eid)).status == "waiting"  # type: ignore[union-attr]


async def test_4_content_validation(world: World) -> None:
    with pytest.raises(InvalidEmail, match=r"^Cannot provide both html/text and template$"):
        await world.send(template={"id": "welcome"})
    with pytest.raises(InvalidEmail, match=r"^Either html/text or template must be provided$"):
        await world.send(html=None)
    with pytest.raises(InvalidEmail, match=r"^Subject is required when not using a template$"):
        await world.send(subject=None)
    assert await world.keys() == []
    eid = await world.send(subject=None, html=None, template={"id": "welcome"})
    e = await world.r.get(eid)
    assert e is not None and e.subject is None and e.status == "waiting"


async def test_5_missing_api_key(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESEND_API_KEY", raising=False)
    r2 = make_resend(world.app, world.fake, api_key=None, instance="nokey")
    with pytest.raises(ResendConfigError, match=r"^API key is not set$"):
        await r2.send_email(from_="me@x.io", to="delivered@resend.dev", subject="Hi", html="x")
    assert await world.keys() == []


# -- 6-8 batching and rate limit -------------------------------------------------------


async def test_6_one_scheduled_run_per_idle_period(world: World) -> None:
    ids = [await world.send() for _ in range(5)]
    jobs = await pending_jobs(world, "resend_make_batch")
    assert [j["due"] for j in jobs] == [T0 + 1000]
    for i in ids:
        e = await world.r.get(i)
        assert e is not None and e.status == "waiting" and e.finalized_at is None


async def test_7_bursts_drain_in_full_batches(world: World) -> None:
    ids = [await world.send() for _ in range(250)]
    await world.tick(T0 + 1000)
    got = await statuses(world, ids)
    assert got.get("queued", 0) + got.get("sent", 0) == 200 and got["waiting"] == 50
    assert [len(r.body) for r in world.fake.batch_requests] == [100]
    assert [j["due"] for j in await pending_jobs(world, "resend_make_batch")] == [T0 + 2000]
    await world.tick(T0 + 2000)
    assert [len(r.body) for r in world.fake.batch_requests] == [100, 100, 50]
    assert await statuses(world, ids) == {"sent": 250}


async def test_8_rate_limit_spacing(world: World) -> None:
    for _ in range(300):
        await world.send()
    await world.tick(T0 + 1000)
    assert len(world.fake.batch_requests) == 1
    due = sorted(j["due"] for j in await pending_jobs(world, "resend_send_batch"))
    assert due == [T0 + 1250, T0 + 1850]
    await world.tick(T0 + 1249)
    assert len(world.fake.batch_requests) == 1
    await world.tick(T0 + 1250)
    assert len(world.fake.batch_requests) == 2
    await world.tick(T0 + 1850)
    assert len(world.fake.batch_requests) == 3
    assert await pending_jobs(world, "resend_make_batch") == []
    assert (await world.r.queue_info()).by_status["sent"] == 300


# -- 9-10 payloads ---------------------------------------------------------------------


async def test_9_batch_request_contents_and_result_mapping(world: World) -> None:
    a = await world.r.send_email(
        from_="A <a@x.io>",
        to="delivered@resend.dev",
        cc="bounced@resend.dev",
        subject="S",
        html="<b>h</b>",
        text="t",
        reply_to=["r@x.io"],
        headers=[{"name": "X-A", "value": "1"}],
    )
    b = await world.send()
    assert (a, b) == ("em_0001", "em_0002")
    await world.tick(T0 + 1000)
    (req,) = world.fake.batch_requests
    assert req.headers["authorization"] == "Bearer re_test"
    assert req.headers["idempotency-key"] == "em_0001"
    assert req.body == [
        {
            "from": "A <a@x.io>",
            "to": ["delivered@resend.dev"],
            "cc": ["bounced@resend.dev"],
            "reply_to": ["r@x.io"],
            "headers": {"X-A": "1"},
            "subject": "S",
            "html": "<b>h</b>",
            "text": "t",
        },
        {
            "from": "me@x.io",
            "to": ["delivered@resend.dev"],
            "reply_to": [],
            "subject": "Hi",
            "html": "<p>x</p>",
        },
    ]
    ea, eb = await world.r.get(a), await world.r.get(b)
    assert ea is not None and eb is not None
    assert (ea.resend_id, eb.resend_id, ea.status, eb.status) == ("re_0", "re_1", "sent", "sent")


async def test_get_returns_what_send_email_was_given(world: World) -> None:
    """The record keeps each email as the API payload it is sent as (one field, joined
    into the batch body as stored); get() reads every content field back from it."""
    full = {
        "from_": "A <a@x.io>",
        "to": ["delivered@resend.dev", "bounced@resend.dev"],
        "cc": ["complained@resend.dev"],
        "bcc": ["delivered+b@resend.dev"],
        "subject": "S \u00e9\u2713",
        "html": "<b>h</b>",
        "text": "t",
        "reply_to": ["r@x.io"],
        "headers": [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": "2"}],
    }
    a = await world.r.send_email(**full)  # type: ignore[arg-type]
    tpl = {"id": "welcome", "variables": {"N": 3}}
    b = await world.send(subject="", html=None, template=tpl)
    c = await world.send(
        tags=[{"name": "k", "value": "v"}],
        attachments=[{"filename": "a.txt", "content": "aGk="}],
    )
    raw = await world.app.redis.hgetall(f"{world.r.key}:e:{a}")
    assert not {"from", "to", "html", "headers"} & set(raw)  # one payload field, "p"
    for eid in (a, b, c):
        e = await world.r.get(eid)
        assert e is not None and e.status == "waiting"
    ea, eb, ec = [await world.r.get(x) for x in (a, b, c)]
    assert ea is not None and eb is not None and ec is not None
    got = ea.model_dump(by_alias=False, exclude_none=True)
    assert {k: got[k] for k in ("from_", "to", "cc", "bcc", "subject", "html", "text")} == {
        k: full[k] for k in ("from_", "to", "cc", "bcc", "subject", "html", "text")
    }
    assert ea.reply_to == ["r@x.io"]
    assert [h.model_dump() for h in ea.headers or []] == full["headers"]
    assert eb.subject == "" and eb.template is not None and eb.template.id == "welcome"
    assert eb.html is None and eb.template.variables == {"N": 3}
    assert ec.tags == [{"name": "k", "value": "v"}]
    assert [x.filename for x in ec.attachments or []] == ["a.txt"]
    await world.tick(T0 + 1000)
    (req,) = world.fake.batch_requests
    assert [p["from"] for p in req.body] == ["A <a@x.io>", "me@x.io"]  # c goes alone
    assert "subject" not in req.body[1]  # an empty subject is not sent with a template
    await world.tick(T0 + 3000)
    single = [r for r in world.fake.requests if r.path == "/emails"]
    assert len(single) == 1 and single[0].body["tags"] == [{"name": "k", "value": "v"}]


async def test_10_template_payload(world: World) -> None:
    tpl = {"id": "welcome", "variables": {"NAME": "Ann", "N": 3}}
    await world.send(subject=None, html=None, template=tpl)
    await world.send(subject="Yo", html=None, template=tpl)
    await world.tick(T0 + 1000)
    (req,) = world.fake.batch_requests
    base = {"from": "me@x.io", "to": ["delivered@resend.dev"], "reply_to": [], "template": tpl}
    assert req.body == [base, {**base, "subject": "Yo"}]


# -- 11-13 cancel ----------------------------------------------------------------------


async def test_11_cancel_before_sending(world: World) -> None:
    a, b = await world.send(), await world.send()
    world.clock.set(T0 + 10)
    await world.r.cancel_email(a)
    e = await world.r.get(a)
    assert e is not None and e.status == "cancelled" and e.finalized_at == T0 + 10
    await world.tick(T0 + 1000)
    (req,) = world.fake.batch_requests
    assert len(req.body) == 1 and req.headers["idempotency-key"] == b


async def test_12_cancel_errors(world: World) -> None:
    a, b = await world.send(), await world.send()
    await world.r.cancel_email(b)
    with pytest.raises(EmailAlreadySent, match=r"^Email has already been sent$"):
        await world.r.cancel_email(b)
    await world.tick(T0 + 1000)
    with pytest.raises(EmailAlreadySent, match=r"^Email has already been sent$"):
        await world.r.cancel_email(a)
    with pytest.raises(EmailNotFound, match=r"^Email not found$"):
        await world.r.cancel_email("nope")


async def test_13_everything_cancelled_means_no_request(world: World) -> None:
    a = await world.send()
    world.fake.default = (503, {"message": "down"}, {})  # would be visible if called
    # take the batch without sending: the send job is deferred by the rate limit
    await world.r.limiter.limit("resend_api", key="default", reserve=True)  # type: ignore[union-attr]
    world.clock.set(T0 + 1000)
    await world.r._make_batch(T0 + 750, False)
    assert (await world.r.status(a)).status == "queued"  # type: ignore[union-attr]
    await world.r.cancel_email(a)  # before the first attempt: allowed
    await world.tick(T0 + 3000)
    assert world.fake.requests == []
    q = await world.r.queue_info()
    assert (q.batches_pending, q.batches_inflight) == (0, 0)


# -- 14-17 failures and retries --------------------------------------------------------


async def test_14_transient_failures_retry_with_backoff_then_fail(world: World) -> None:
    world.fake.default = (503, {"message": "down"}, {})
    eid = await world.send()
    times = [T0 + 1000, T0 + 31_000, T0 + 91_000, T0 + 211_000, T0 + 451_000]
    for n, t in enumerate(times, 1):
        await world.tick(t - 1)
        assert len(world.fake.requests) == n - 1
        await world.tick(t)
        assert len(world.fake.requests) == n
    assert {r.headers["idempotency-key"] for r in world.fake.requests} == {eid}
    e = await world.r.get(eid)
    assert e is not None and e.status == "failed" and e.finalized_at == T0 + 451_000
    assert e.error_message is not None
    assert e.error_message.startswith("Resend API error:") and "down" in e.error_message
    assert await world.r.workpool.pending() == []


async def test_15_429_is_transient(world: World) -> None:
    world.fake.script.append((429, {"message": "slow down"}, {}))
    eid = await world.send()
    await world.tick(T0 + 1000)
    assert (await world.r.status(eid)).status == "queued"  # type: ignore[union-attr]
    await world.tick(T0 + 31_000)
    assert (await world.r.status(eid)).status == "sent"  # type: ignore[union-attr]
    assert len(world.fake.requests) == 2


async def test_15b_retry_after_raises_the_delay(world: World) -> None:
    world.fake.script.append((429, {"message": "slow"}, {"retry-after": "60"}))
    eid = await world.send()
    await world.tick(T0 + 1000)
    await world.tick(T0 + 31_000)
    assert len(world.fake.requests) == 1
    await world.tick(T0 + 61_000)
    assert (await world.r.status(eid)).status == "sent"  # type: ignore[union-attr]


async def test_16_permanent_errors_are_not_retried(world: World) -> None:
    world.fake.default = (422, {"name": "validation_error", "message": "bad from"}, {})
    eid = await world.send()
    await world.tick(T0 + 1000)
    await world.tick(T0 + 500_000)
    assert len(world.fake.requests) == 1
    e = await world.r.get(eid)
    assert e is not None and e.status == "failed" and e.error_message is not None
    assert e.error_message.startswith("Resend API error: 422") and "bad from" in e.error_message


async def test_17_2xx_without_data_is_transient(world: World) -> None:
    world.fake.script.append((200, {}, {}))
    eid = await world.send()
    await world.tick(T0 + 1000)
    await world.tick(T0 + 31_000)
    assert (await world.r.status(eid)).status == "sent"  # type: ignore[union-attr]


# -- 18-28 webhooks --------------------------------------------------------------------


async def sent_email(w: World) -> str:
    eid = await w.send()
    await w.tick(T0 + 1000)
    assert (await w.r.status(eid)).status == "sent"  # type: ignore[union-attr]
    return eid


async def test_18_bad_signature(world: World) -> None:
    eid = await sent_email(world)
    other = "whsec_" + "b3RoZXItc2VjcmV0LXh5eg=="
    r = await world.hook(event("email.delivered", "re_0"), "msg_1", secret=other)
    assert r.status_code == 400
    assert (await world.r.status(eid)).status == "sent"  # type: ignore[union-attr]
    assert await world.r.list_delivery_events(eid) == []
    assert await world.r.events_pool.pending() == []


async def test_19_header_and_timestamp_checks(world: World) -> None:
    await sent_email(world)
    now = world.clock.now_ms()
    from .conftest import signed

    body, headers = signed(event("email.opened", "re_0"), "m1", now)
    del headers["svix-signature"]
    assert (await world.r.handle_webhook(body.encode(), headers)).status_code == 400
    assert (
        await world.hook(event("email.opened", "re_0"), "m2", ts=now - 301_000)
    ).status_code == 400
    assert (
        await world.hook(event("email.opened", "re_0"), "m3", ts=now + 301_000)
    ).status_code == 400
    assert (
        await world.hook(event("email.opened", "re_0"), "m4", ts=now - 299_000)
    ).status_code == 201


async def test_20_21_delivered_and_duplicate(world: World) -> None:
    eid = await sent_email(world)
    world.clock.set(T0 + 5000)
    ev = event("email.delivered", "re_0")
    r = await world.hook(ev, "msg_1")
    assert (r.status_code, r.body) == (201, "")
    e = await world.r.get(eid)
    assert e is not None and e.status == "delivered" and e.finalized_at == T0 + 5000
    assert await world.r.list_delivery_events(eid) == [
        {"event_type": "email.delivered", "created_at": "2024-01-01T00:00:00Z", "resend_id": "re_0"}
    ]
    await run_until_idle(world.app)
    assert world.events == [(eid, ev)]
    # 21: the same svix id again
    assert (await world.hook(ev, "msg_1")).status_code == 201
    await run_until_idle(world.app)
    assert len(await world.r.list_delivery_events(eid)) == 1 and len(world.events) == 1


async def test_22_delayed_after_delivered(world: World) -> None:
    eid = await sent_email(world)
    await world.hook(event("email.delivered", "re_0"), "msg_1")
    await world.hook(event("email.delivery_delayed", "re_0"), "msg_2")
    e = await world.r.get(eid)
    assert e is not None and e.status == "delivered" and e.delivery_delayed


async def test_23_bounce_after_delivery_wins(world: World) -> None:
    eid = await sent_email(world)
    world.clock.set(T0 + 5000)
    await world.hook(event("email.delivered", "re_0"), "msg_1")
    world.clock.set(T0 + 9000)
    await world.hook(event("email.bounced", "re_0", bounce={"message": "Mailbox full"}), "msg_2")
    e = await world.r.get(eid)
    assert e is not None and (e.status, e.error_message, e.finalized_at) == (
        "bounced",
        "Mailbox full",
        T0 + 9000,
    )
    assert (await world.r.list_delivery_events(eid))[-1]["message"] == "Mailbox full"


async def test_24_complaint(world: World) -> None:
    eid = await sent_email(world)
    world.clock.set(T0 + 7000)
    await world.hook(event("email.complained", "re_0"), "msg_1")
    e = await world.r.get(eid)
    assert e is not None and e.complained and e.status == "sent" and e.finalized_at == T0 + 7000


async def test_25_opens_and_clicks(world: World) -> None:
    eid = await sent_email(world)
    await world.hook(event("email.opened", "re_0"), "msg_1")
    before = await world.r.get(eid)
    await world.hook(event("email.opened", "re_0"), "msg_2")
    after = await world.r.get(eid)
    assert before is not None and before.opened and before == after
    assert len(await world.r.list_delivery_events(eid)) == 2
    await world.hook(event("email.clicked", "re_0"), "msg_3")
    e = await world.r.get(eid)
    assert e is not None and e.clicked and e.status == "sent"
    await run_until_idle(world.app)
    assert sorted(t["type"] for _, t in world.events) == ["email.clicked"] + ["email.opened"] * 2


async def test_26_early_event_is_parked_then_applied(world: World) -> None:
    eid = await world.send()
    world.fake.gate = gate = __import__("threading").Event()
    world.clock.set(T0 + 1000)
    run = asyncio.create_task(run_until_idle(world.app))
    await asyncio.to_thread(world.fake.arrived.wait, 10)
    r = await world.hook(event("email.delivered", "re_0"), "msg_1")
    assert r.status_code == 201
    assert await world.r.list_delivery_events(eid) == []
    gate.set()
    await run
    await run_until_idle(world.app)
    e = await world.r.get(eid)
    assert e is not None and e.status == "delivered"
    assert len(await world.r.list_delivery_events(eid)) == 1
    assert [i for i, _ in world.events] == [eid]
    assert await world.app.redis.zcard(world.r.key + ":orphans") == 0  # taken with it


async def test_26b_parked_event_expires(world: World) -> None:
    eid = await world.send()
    world.clock.set(T0 + 1000)
    await world.r._make_batch(T0 + 750, False)  # queued, not sent yet
    r = await world.hook(event("email.delivered", "re_0"), "msg_1")
    assert r.status_code == 201
    keys = [k for k in await world.keys() if ":orphan:" in k]
    assert 0 < await world.app.redis.pttl(keys[0]) <= 600_000  # the memory bound
    orphans = world.r.key + ":orphans"  # the resend ids with parked events (a guard)
    assert await world.app.redis.zcard(orphans) == 1
    await world.tick(T0 + 1000 + 600_001)
    e = await world.r.get(eid)
    assert e is not None and e.status == "sent" and await world.r.list_delivery_events(eid) == []
    assert await world.app.redis.zcard(orphans) == 0  # expired entries are trimmed


INVALID_BODIES: list[Any] = [
    {"created_at": "2024", "data": {"email_id": "re_0"}},
    {"type": "email.delivered", "created_at": "2024"},
    {"type": "email.scheduled", "created_at": "2024", "data": {"email_id": "re_0"}},
    "not an object",
    None,
]


async def test_27_invalid_or_unsupported_events_are_ignored(world: World) -> None:
    eid = await sent_email(world)
    before = await world.keys()
    for n, body in enumerate(INVALID_BODIES):
        assert (await world.hook(body, f"msg_{n}")).status_code == 201, body
        assert await world.keys() == before, body
    assert (await world.r.status(eid)).status == "sent"  # type: ignore[union-attr]


async def test_28_cancelled_emails_keep_their_status(world: World) -> None:
    d = world.r.key
    await world.app.redis.hset(
        f"{d}:e:em_0009",
        mapping={
            "from": "a@x.io",
            "to": '["delivered@resend.dev"]',
            "reply_to": "[]",
            "status": "cancelled",
            "finalized_ms": str(T0),
            "created_ms": str(T0),
            "resend_id": "re_9",
        },
    )
    await world.app.redis.hset(f"{d}:rid", "re_9", "em_0009")
    world.clock.set(T0 + 1000)
    await world.hook(event("email.delivered", "re_9"), "msg_1")
    e = await world.r.get("em_0009")
    assert e is not None and e.status == "cancelled" and e.finalized_at == T0
    await world.hook(event("email.bounced", "re_9", bounce={"message": "x"}), "msg_2")
    e = await world.r.get("em_0009")
    assert e is not None and e.bounced and e.status == "cancelled"


# -- 29-30 manual sends ----------------------------------------------------------------


async def test_29_manual_send_success(world: World) -> None:
    async def cb(email_id: str) -> str:
        assert (await world.r.status(email_id)).status == "queued"  # type: ignore[union-attr]
        return "re_m1"

    eid = await world.r.send_email_manually(
        from_="a@x.io", to="b@x.io", subject="S", cc="c@x.io", send=cb
    )
    e = await world.r.get(eid)
    assert e is not None
    assert (e.status, e.resend_id, e.cc, e.finalized_at) == ("sent", "re_m1", ["c@x.io"], None)
    await world.hook(event("email.delivered", "re_m1"), "msg_1")  # found through P:rid
    assert (await world.r.status(eid)).status == "delivered"  # type: ignore[union-attr]


async def test_30_manual_send_failure(world: World) -> None:
    class Boom(Exception):
        resend_id = "re_m2"

    async def cb(email_id: str) -> str:
        raise Boom("boom")

    with pytest.raises(Boom):
        await world.r.send_email_manually(from_="a@x.io", to="b@x.io", subject="S", send=cb)
    e = await world.r.get("em_0001")
    assert e is not None
    assert (e.status, e.error_message, e.resend_id, e.finalized_at) == (
        "failed",
        "boom",
        "re_m2",
        T0,
    )


# -- 31-37 ------------------------------------------------------------------------------


async def test_31_caller_idempotency_key(world: World) -> None:
    a = await world.send(idempotency_key="welcome/u1")
    b = await world.send(idempotency_key="welcome/u1")
    c = await world.send(idempotency_key="welcome/u1", subject="other", text="t")
    d = await world.send(idempotency_key="welcome/u1", to="bob@gmail.com")  # not checked
    assert a == b == c == d
    q = await world.r.queue_info()
    assert q.waiting == 1 and q.by_status["waiting"] == 1


async def test_32_status_and_get(world: World) -> None:
    eid = await world.send()
    s = await world.r.status(eid)
    assert s is not None and s.status == "waiting" and s.error_message is None
    assert not any([s.bounced, s.complained, s.failed, s.delivery_delayed, s.opened, s.clicked])
    e = await world.r.get(eid)
    assert e is not None and e.to == ["delivered@resend.dev"] and e.html == "<p>x</p>"
    assert e.created_at == T0 and e.finalized_at is None
    assert await world.r.status("missing") is None and await world.r.get("missing") is None


DAY = 86_400_000


async def test_33_cleanup_of_old_finalized_emails(world: World) -> None:
    world.clock.set(T0 - 9 * DAY)
    e1, e2 = await world.send(), await world.send()
    await world.tick(T0 - 9 * DAY + 1000)  # both sent: re_0, re_1
    e3 = await world.send()  # waiting since T0 - 9 days
    world.clock.set(T0 - 8 * DAY)
    await world.hook(event("email.delivered", "re_0"), "m1")
    world.clock.set(T0 - 6 * DAY)
    await world.hook(event("email.delivered", "re_1"), "m2")
    world.clock.set(T0)
    assert await world.r.cleanup_old_emails() == 1
    assert await world.r.get(e1) is None and await world.r.list_delivery_events(e1) == []
    assert await world.r.get(e2) is not None and await world.r.get(e3) is not None
    r = await world.hook(event("email.bounced", "re_0"), "m3")  # mapping gone: parked
    assert r.status_code == 201 and await world.r.get(e1) is None


async def test_34_cleanup_of_abandoned_emails(world: World) -> None:
    world.clock.set(T0 - 31 * DAY)
    e3 = await world.send()
    world.clock.set(T0 - 29 * DAY)
    e4 = await world.send()
    world.clock.set(T0)
    assert await world.r.cleanup_abandoned_emails() == 1
    assert await world.r.get(e3) is None and await world.r.get(e4) is not None
    assert (await world.r.queue_info()).waiting == 1


async def test_35_webhook_secret_missing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESEND_WEBHOOK_SECRET", raising=False)
    r2 = make_resend(world.app, world.fake, webhook_secret=None, instance="nosecret")
    r = await world.hook(event("email.delivered", "re_0"), "m1", r=r2)
    assert (r.status_code, r.body) == (500, "Webhook secret is not set")


async def test_36_callback_failure_is_isolated(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    async def failing(email_id: str, ev: Any) -> None:
        calls.append(email_id)
        raise RuntimeError("handler broke")

    world.r.on_email_event = failing
    eid = await sent_email(world)
    await world.hook(event("email.delivered", "re_0"), "msg_1")
    with caplog.at_level(logging.ERROR):
        await run_until_idle(world.app)
        world.clock.advance(60_000)
        await run_until_idle(world.app)
    assert calls == [eid]  # one attempt (callback_max_attempts=1)
    assert (await world.r.status(eid)).status == "delivered"  # type: ignore[union-attr]
    assert "on_email_event failed" in caplog.text


async def test_37_single_email_path_for_attachments(world: World) -> None:
    plain = await world.send()
    eid = await world.send(attachments=[Attachment(filename="a.txt", content="aGk=")])
    await world.tick(T0 + 1000)
    await world.tick(T0 + 2000)
    singles = [r for r in world.fake.requests if r.path == "/emails"]
    assert len(singles) == 1 and singles[0].headers["idempotency-key"] == eid
    assert singles[0].body["attachments"] == [{"filename": "a.txt", "content": "aGk="}]
    assert all(len(r.body) == 1 for r in world.fake.batch_requests)
    e = await world.r.get(eid)
    assert e is not None and e.status == "sent" and e.resend_id is not None
    assert (await world.r.status(plain)).status == "sent"  # type: ignore[union-attr]


async def test_scheduled_sending_holds_the_email_until_due(world: World) -> None:
    """Spec §7.9 MAY (#106): ``scheduled_at_ms`` keeps the email in the durable queue
    (D:scheduled) until due, then the batcher sends it like any other."""
    later = await world.send(scheduled_at_ms=T0 + 60_000)
    now = await world.send(scheduled_at_ms=T0 - 5)  # already due: sent as usual
    q = await world.r.queue_info()
    assert (q.scheduled, q.waiting) == (1, 1)
    await world.tick(T0 + 1000)
    assert (await world.r.status(now)).status == "sent"  # type: ignore[union-attr]
    assert (await world.r.status(later)).status == "waiting"  # type: ignore[union-attr]
    await world.tick(T0 + 59_999)
    assert len(world.fake.batch_requests) == 1
    await world.tick(T0 + 60_000)
    assert (await world.r.status(later)).status == "sent"  # type: ignore[union-attr]
    assert (await world.r.queue_info()).scheduled == 0
    # a scheduled email can be cancelled until it is due
    c = await world.send(scheduled_at_ms=T0 + 120_000)
    await world.r.cancel_email(c)
    await world.tick(T0 + 121_000)
    assert len(world.fake.batch_requests) == 2
    assert (await world.r.status(c)).status == "cancelled"  # type: ignore[union-attr]
    with pytest.raises(InvalidEmail, match="scheduled_at_ms"):
        await world.send(scheduled_at_ms=float("inf"))
