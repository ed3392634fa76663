"""The webhook contract (spec §3.6, §4.1, §7.4; scenarios 1-9): the SDK's own
signature check, the timestamp tolerance on the App's clock, nothing written for a
refused delivery, one default sync per event id, user handlers until they succeed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from rkit import App, TestClock
from rkit.integrations.stripe import StripeSync

from ._fake import FakeStripe
from .conftest import NOW_S, event, make_sync, post, signed, snapshot

CUS = {"id": "cus_1", "object": "customer", "email": "a@x.io", "name": "Ann",
       "metadata": {"userId": "u1"}}  # fmt: skip


async def test_valid_webhook_creates_a_customer(sync: StripeSync) -> None:
    r = await post(sync, event("customer.created", CUS))
    assert (r.status_code, json.loads(r.body), r.media_type) == (
        200,
        {"received": True},
        "application/json",
    )
    c = await sync.get_customer("cus_1")
    assert c is not None and (c.email, c.name, c.user_id) == ("a@x.io", "Ann", "u1")
    found = await sync.get_customer_by_user_id("u1")
    assert found is not None and found.stripe_customer_id == "cus_1"
    by_email = await sync.get_customer_by_email("a@x.io")
    assert by_email is not None and by_email.metadata == {"userId": "u1"}


def _tamper(body: bytes) -> bytes:
    return body.replace(b"Ann", b"Anm")


@pytest.mark.parametrize(
    "case",
    ["wrong_secret", "missing_header", "tampered", "stale", "garbage_header", "no_v1"],
)
async def test_refused_deliveries_write_nothing(app: App, sync: StripeSync, case: str) -> None:
    ran: list[str] = []

    @sync.on_event
    async def record(ev: dict[str, Any], s: StripeSync) -> None:
        ran.append(ev["id"])

    before = await snapshot(app)
    body = json.dumps(event("customer.created", CUS)).encode()
    headers = signed(body)
    if case == "wrong_secret":
        headers = signed(body, secret="whsec_other")
    elif case == "missing_header":
        headers = {}
    elif case == "tampered":
        body = _tamper(body)
    elif case == "stale":
        headers = signed(body, t=NOW_S - 301)
    elif case == "garbage_header":
        headers = {"Stripe-Signature": "nonsense"}
    elif case == "no_v1":
        headers = {"Stripe-Signature": headers["Stripe-Signature"].replace("v1=", "v0=")}
    r = await sync.handle_webhook(body, headers)
    if case == "missing_header":
        assert (r.status_code, r.body) == (400, b"No signature provided")
    else:
        assert r.status_code == 400
        assert r.body.startswith(b"Webhook signature verification failed")
        assert r.media_type == "text/plain"
    assert await snapshot(app) == before
    assert ran == []


async def test_timestamp_tolerance_follows_the_app_clock(
    app: App, sync: StripeSync, clock: TestClock
) -> None:
    assert (await post(sync, event("customer.created", CUS), t=NOW_S - 300)).status_code == 200
    # a future timestamp is accepted (the SDK's rule); the clock moving on refuses old ones
    cus2 = {**CUS, "id": "cus_2"}
    assert (await post(sync, event("customer.created", cus2), t=NOW_S + 60)).status_code == 200
    clock.advance(400_000)
    before = await snapshot(app)
    r = await post(sync, event("customer.created", {**CUS, "id": "cus_3"}), t=NOW_S)
    assert r.status_code == 400 and b"tolerance" in r.body
    assert await snapshot(app) == before


async def test_several_v1_signatures_any_one_matches(sync: StripeSync) -> None:
    body = json.dumps(event("customer.created", CUS)).encode()
    good = signed(body)["Stripe-Signature"]
    bad = signed(body, secret="whsec_old")["Stripe-Signature"].split(",")[1]
    r = await sync.handle_webhook(body, {"stripe-signature": f"{good},{bad}"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1,2]", b'{"type":"customer.created"}', b'{"id":"evt_x"}', b"\xff\xfe"],
)
async def test_signed_but_malformed_bodies_are_refused(
    app: App, sync: StripeSync, body: bytes
) -> None:
    before = await snapshot(app)
    header = signed(body.decode("latin-1").encode("utf-8")) if body == b"\xff\xfe" else signed(body)
    r = await sync.handle_webhook(body, header)
    assert r.status_code == 400
    assert r.body.startswith(b"Webhook signature verification failed")
    assert await snapshot(app) == before


async def test_no_webhook_secret_refuses_before_the_signature(
    app: App, fake: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    s = make_sync(app, fake, webhook_secret=None)
    before = await snapshot(app)
    r = await s.handle_webhook(b"{}", {})
    assert (r.status_code, r.body) == (500, b"Webhook secret not configured")
    body = json.dumps(event("customer.created", CUS)).encode()
    r = await s.handle_webhook(body, signed(body))
    assert r.status_code == 500
    assert await snapshot(app) == before
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_test")  # read when needed
    assert (await s.handle_webhook(body, signed(body))).status_code == 200
    await s.aclose()


async def test_no_secret_key_refuses(
    app: App, fake: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    s = make_sync(app, fake, secret_key=None)
    before = await snapshot(app)
    body = json.dumps(event("customer.created", CUS)).encode()
    r = await s.handle_webhook(body, signed(body))
    assert (r.status_code, r.body) == (500, b"Stripe secret key not configured")
    assert await snapshot(app) == before


async def test_a_duplicate_delivery_is_processed_once(app: App, sync: StripeSync) -> None:
    calls: list[str] = []

    @sync.on_event
    async def count(ev: dict[str, Any], s: StripeSync) -> None:
        calls.append(ev["id"])

    ev = event("customer.created", CUS, id_="evt_1")
    assert (await post(sync, ev)).status_code == 200
    assert (await post(sync, ev)).status_code == 200
    assert calls == ["evt_1"]
    rec = await sync.store.event("evt_1")
    assert rec is not None and rec["state"] == "done" and rec["duplicates"] == "1"
    assert rec["event"]["id"] == "evt_1"
    assert [e["id"] for e in await sync.store.event_log()] == ["evt_1"]


async def test_handler_failure_then_retry(sync: StripeSync) -> None:
    from .conftest import sub_obj

    await post(sync, event("customer.subscription.created", sub_obj(), created=NOW_S - 10))
    runs: list[str] = []

    @sync.on("customer.subscription.updated")
    async def flaky(ev: dict[str, Any], s: StripeSync) -> None:
        runs.append(ev["id"])
        if len(runs) == 1:
            raise RuntimeError("boom")

    ev = event("customer.subscription.updated", sub_obj(status="past_due"), id_="evt_2")
    r1 = await post(sync, ev)
    assert (r1.status_code, r1.body) == (500, b"Error processing webhook")
    sub = await sync.get_subscription("sub_1")
    assert sub is not None and sub.status == "past_due"
    rec = await sync.store.event("evt_2")
    assert rec is not None and rec["state"] == "applied" and "boom" in rec["last_error"]
    assert (await post(sync, ev)).status_code == 200
    assert (await post(sync, ev)).status_code == 200
    assert runs == ["evt_2", "evt_2"]


async def test_a_failing_default_sync_is_rerun_on_redelivery(app: App, sync: StripeSync) -> None:
    """The default sync failing (here Redis answers WRONGTYPE for the row) answers
    500 and leaves no claim (the sync runs before the claim is written, in one
    script); the next delivery processes the event."""
    ev = event("customer.created", CUS, id_="evt_3")
    row = sync.store.row_key("cus", "cus_1")
    await app.redis.set(row, "not a hash")
    before = await snapshot(app)
    assert (await post(sync, ev)).status_code == 500
    assert await snapshot(app) == before and await sync.store.event("evt_3") is None
    await app.redis.delete(row)
    assert (await post(sync, ev)).status_code == 200
    assert await sync.get_customer("cus_1") is not None


async def test_a_failing_sync_after_stripe_calls_releases_the_claim(
    app: App, sync: StripeSync, fake: FakeStripe
) -> None:
    """An event whose sync calls Stripe first (a checkout) is claimed before; a
    failure releases the claim at once, so a redelivery does not wait for the lease."""
    cs = {"id": "cs_f", "mode": "payment", "customer": "cus_f", "payment_intent": "pi_f"}
    ev = event("checkout.session.completed", cs, id_="evt_4")
    row = sync.store.row_key("cs", "cs_f")
    await app.redis.set(row, "not a hash")
    assert (await post(sync, ev)).status_code == 500
    rec = await sync.store.event("evt_4")
    assert rec is not None and rec["state"] == "received" and "WRONGTYPE" in rec["last_error"]
    await app.redis.delete(row)
    assert (await post(sync, ev)).status_code == 200
    assert await sync.get_checkout_session("cs_f") is not None


async def test_an_unhandled_type_still_reaches_handlers(app: App, sync: StripeSync) -> None:
    order: list[str] = []

    @sync.on_event
    async def first(ev: dict[str, Any], s: StripeSync) -> None:
        order.append("on_event")

    @sync.on("product.created")
    async def typed(ev: dict[str, Any], s: StripeSync) -> None:
        order.append("typed")

    r = await post(sync, event("product.created", {"id": "prod_1", "object": "product"}))
    assert r.status_code == 200 and order == ["on_event", "typed"]
    rows = [k for k in await sync.store.keys() if not re.search(r":(evt|evb):|:events$", k)]
    assert rows == []


async def test_a_delivery_while_another_holds_the_lease_is_409(
    app: App, sync: StripeSync, clock: TestClock
) -> None:
    """A process that died mid-event leaves a lease; deliveries before it ends are
    409 (Stripe retries), the first one after it processes the event."""
    body = json.dumps(event("customer.created", CUS, id_="evt_9")).encode()
    claim = await sync.store.claim(
        "evt_9", event_type="customer.created", created=NOW_S, body=body.decode(),
        lease_ms=sync.lease_ms, retention_ms=sync.event_retention_ms,
    )  # fmt: skip
    assert claim.state == "CLAIMED"  # ... and the claimer dies here
    r = await sync.handle_webhook(body, signed(body))
    assert (r.status_code, r.body) == (409, b"Event is being processed")
    assert await sync.get_customer("cus_1") is None
    clock.advance(sync.lease_ms + 1)
    assert (await sync.handle_webhook(body, signed(body, t=NOW_S + 61))).status_code == 200
    assert await sync.get_customer("cus_1") is not None
    # the dead claimer's late mark is fenced off
    assert await sync.store.mark("evt_9", claim.token, "release", 1000.0) == "STALE"
    rec = await sync.store.event("evt_9")
    assert rec is not None and rec["state"] == "done"


async def test_records_and_bodies_expire_after_their_retentions(
    app: App, sync: StripeSync, fake: FakeStripe
) -> None:
    await post(sync, event("customer.created", CUS, id_="evt_r"))
    ttl = await app.redis.pttl(sync.store.event_key("evt_r"))
    assert 6 * 86_400_000 < ttl <= sync.event_retention_ms
    body_ttl = await app.redis.pttl(sync.store.body_key("evt_r"))
    assert 0 < body_ttl <= 86_400_000
    assert await sync.replay_event("evt_r")
    lean = make_sync(app, fake, instance="lean", event_body_retention_ms=0)
    await post(lean, event("customer.created", CUS, id_="evt_l"))
    assert not await app.redis.exists(lean.store.body_key("evt_l"))
    rec = await lean.store.event("evt_l")
    assert rec is not None and rec["state"] == "done" and rec["event"] is None
    assert not await lean.replay_event("evt_l")
    await lean.aclose()
