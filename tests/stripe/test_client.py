"""Client methods through the real SDK against the local fake Stripe (spec §3.2,
§4.5-4.7; scenarios 28-37): request bodies and headers as Stripe sees them, the
local write after a successful call only, get-or-create under concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import stripe

from rkit import App, ConfigError
from rkit.integrations.stripe import (
    StripeNotConfigured,
    StripeSync,
    StripeSyncError,
    SubscriptionNotFound,
    build_checkout_session_params,
)
from rkit.testing import peer_app

from ._fake import FakeStripe
from .conftest import event, make_sync, post, snapshot, sub_obj


async def test_checkout_parameter_merge(sync: StripeSync, fake: FakeStripe) -> None:
    r = await sync.create_checkout_session(
        price_id="price_M", mode="subscription", customer_id="cus_1", quantity=2,
        metadata={"source": "t"}, subscription_metadata={"userId": "u1"},
        success_url="https://e/s", cancel_url="https://e/c",
        params={"mode": "payment", "allow_promotion_codes": True,
                "line_items": [{"price": "price_O", "quantity": 5}],
                "subscription_data": {"metadata": {"userId": "evil", "coupon": "x"},
                                      "trial_period_days": 14}},
    )  # fmt: skip
    assert (r.session_id, r.url) == ("cs_fake_1", "https://co/1")
    (req,) = fake.calls("POST", "/v1/checkout/sessions")
    f = req.form
    assert f["mode"] == "subscription"
    assert (f["line_items[0][price]"], f["line_items[0][quantity]"]) == ("price_O", "5")
    assert "line_items[1][price]" not in f
    assert f["allow_promotion_codes"] == "true" and f["customer"] == "cus_1"
    assert f["metadata[source]"] == "t"
    assert f["subscription_data[trial_period_days]"] == "14"
    assert f["subscription_data[metadata][coupon]"] == "x"
    assert f["subscription_data[metadata][userId]"] == "u1"
    assert (f["success_url"], f["cancel_url"]) == ("https://e/s", "https://e/c")
    assert req.headers["authorization"] == "Bearer sk_test_123"


async def test_embedded_checkout_drops_redirect_urls(sync: StripeSync, fake: FakeStripe) -> None:
    fake.on("POST", "/v1/checkout/sessions", (200, {"id": "cs_e", "url": None}))
    r = await sync.create_checkout_session(
        price_id="p", mode="payment", success_url="https://e/s", cancel_url="https://e/c",
        params={"ui_mode": "embedded_page", "return_url": "https://e/r"},
    )  # fmt: skip
    assert r.url is None
    f = fake.requests[-1].form
    assert "success_url" not in f and "cancel_url" not in f and f["return_url"] == "https://e/r"
    await sync.create_checkout_session(
        price_id="p", mode="setup", success_url="https://e/s", cancel_url="https://e/c",
        params={"ui_mode": "hosted"},
    )  # fmt: skip
    f = fake.requests[-1].form
    assert (f["success_url"], f["cancel_url"], f["mode"]) == ("https://e/s", "https://e/c", "setup")


def test_checkout_params_pure_rules() -> None:
    p = build_checkout_session_params(
        price_id="p", mode="payment", success_url="s", cancel_url="c", quantity=0,
        payment_intent_metadata={"userId": "u"}, params={"payment_intent_data": {"x": 1}},
    )  # fmt: skip
    assert p["line_items"] == [{"price": "p", "quantity": 0}]
    assert p["payment_intent_data"] == {"x": 1, "metadata": {"userId": "u"}}
    q = build_checkout_session_params(
        price_id="p", mode="payment", success_url="s", cancel_url="c",
        params={"subscription_data": {"trial_period_days": 3}},
    )  # fmt: skip
    assert q["subscription_data"] == {"trial_period_days": 3, "metadata": {}}


async def test_portal_session(sync: StripeSync, fake: FakeStripe) -> None:
    r = await sync.create_customer_portal_session(customer_id="cus_1", return_url="https://e/r")
    assert r.url == "https://bp/1"
    assert fake.requests[-1].form == {"customer": "cus_1", "return_url": "https://e/r"}


async def test_get_or_create_creates_once_then_reads_locally(
    sync: StripeSync, fake: FakeStripe
) -> None:
    r1 = await sync.get_or_create_customer(user_id="u1", email="a@x.io")
    (req,) = fake.calls("POST", "/v1/customers")
    assert req.headers["idempotency-key"] == "create_customer_u1"
    assert req.form["metadata[userId]"] == "u1" and req.form["email"] == "a@x.io"
    assert r1.is_new
    c = await sync.get_customer(r1.customer_id)
    assert c is not None and (c.user_id, c.email) == ("u1", "a@x.io")
    r2 = await sync.get_or_create_customer(user_id="u1", email="a@x.io")
    assert (r2.customer_id, r2.is_new) == (r1.customer_id, False)
    assert len(fake.requests) == 1


async def test_concurrent_get_or_create_makes_one_stripe_call(app: App, fake: FakeStripe) -> None:
    """50 callers on 2 Apps (processes) at once: one POST, one customer."""
    fake.delay_s = 0.05
    peer = peer_app(app)
    a, b = make_sync(app, fake), make_sync(peer, fake)
    try:
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).get_or_create_customer(user_id="u2", email="u2@x.io")
                for i in range(50)
            )
        )
    finally:
        await a.aclose()
        await b.aclose()
        if peer.redis is not app.redis:
            await peer.aclose()
    assert len(fake.calls("POST", "/v1/customers")) == 1
    assert len({r.customer_id for r in results}) == 1
    assert sum(r.is_new for r in results) == 1
    assert not await a.store.locked("u2")


async def test_email_fallback_respects_ownership(sync: StripeSync, fake: FakeStripe) -> None:
    await sync.create_or_update_customer(
        stripe_customer_id="cus_X", email="a@x.io", metadata={"userId": "u3"}
    )
    r = await sync.get_or_create_customer(user_id="u4", email="a@x.io")
    assert r.is_new and r.customer_id != "cus_X"
    await sync.create_or_update_customer(stripe_customer_id="cus_Y", email="b@x.io")
    n = len(fake.requests)
    r = await sync.get_or_create_customer(user_id="u5", email="b@x.io")
    assert (r.customer_id, r.is_new) == ("cus_Y", False) and len(fake.requests) == n


async def test_get_or_create_finds_the_user_through_subscriptions_and_payments(
    sync: StripeSync, fake: FakeStripe
) -> None:
    await post(sync, event("customer.subscription.created",
                           sub_obj(customer="cus_S", metadata={"userId": "u6"})))  # fmt: skip
    assert (await sync.get_or_create_customer(user_id="u6")).customer_id == "cus_S"
    await post(sync, event("payment_intent.succeeded", {
        "id": "pi_u7", "customer": "cus_P", "amount": 1, "currency": "usd",
        "status": "succeeded", "metadata": {"userId": "u7"}}))  # fmt: skip
    assert (await sync.get_or_create_customer(user_id="u7")).customer_id == "cus_P"
    assert fake.requests == []


def _sub_answer(sid: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    return 200, sub_obj(sid, **kw)


async def test_seat_update(app: App, sync: StripeSync, fake: FakeStripe) -> None:
    await post(sync, event("customer.subscription.created", sub_obj()))
    fake.on("GET", "/v1/subscriptions/sub_1", _sub_answer("sub_1"))
    fake.on("POST", "/v1/subscription_items/si_sub_1", (200, {"id": "si_sub_1", "quantity": 7}))
    await sync.update_subscription_quantity(subscription_id="sub_1", quantity=7)
    (req,) = fake.calls("POST", "/v1/subscription_items/si_sub_1")
    assert req.form == {"quantity": "7"}
    assert (await sync.get_subscription("sub_1")).quantity == 7  # type: ignore[union-attr]
    no_items = sub_obj("sub_1")
    no_items["items"] = {"object": "list", "data": []}
    fake.on("GET", "/v1/subscriptions/sub_1", (200, no_items))
    before = await snapshot(app)
    with pytest.raises(StripeSyncError, match="Subscription has no items"):
        await sync.update_subscription_quantity(subscription_id="sub_1", quantity=9)
    assert len(fake.calls("POST", "/v1/subscription_items/si_sub_1")) == 1
    assert await snapshot(app) == before
    assert (await sync.get_subscription("sub_1")).quantity == 7  # type: ignore[union-attr]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            await sync.update_subscription_quantity(subscription_id="sub_1", quantity=bad)  # type: ignore[arg-type]


async def test_cancel_at_period_end_syncs_immediately(sync: StripeSync, fake: FakeStripe) -> None:
    await post(sync, event("customer.subscription.created", sub_obj()))
    fake.on("POST", "/v1/subscriptions/sub_1", _sub_answer("sub_1", cancel_at_period_end=True))
    await sync.cancel_subscription(subscription_id="sub_1")
    assert fake.requests[-1].form == {"cancel_at_period_end": "true"}
    assert (await sync.get_subscription("sub_1")).cancel_at_period_end  # type: ignore[union-attr]
    fake.on("POST", "/v1/subscriptions/sub_1", _sub_answer("sub_1"))
    await sync.reactivate_subscription(subscription_id="sub_1")
    assert fake.requests[-1].form == {"cancel_at_period_end": "false"}
    assert not (await sync.get_subscription("sub_1")).cancel_at_period_end  # type: ignore[union-attr]
    fake.on("DELETE", "/v1/subscriptions/sub_1", _sub_answer("sub_1", status="canceled"))
    await sync.cancel_subscription(subscription_id="sub_1", cancel_at_period_end=False)
    assert fake.requests[-1].method == "DELETE"
    assert (await sync.get_subscription("sub_1")).status == "canceled"  # type: ignore[union-attr]
    # the client sync leaves the watermark alone: the webhook of the change still applies
    r = await post(sync, event("customer.subscription.updated", sub_obj(status="canceled",
                                                                        quantity=2)))  # fmt: skip
    assert r.status_code == 200
    assert (await sync.get_subscription("sub_1")).quantity == 2  # type: ignore[union-attr]


async def test_a_stripe_error_leaves_local_state_alone(
    app: App, sync: StripeSync, fake: FakeStripe
) -> None:
    await post(sync, event("customer.subscription.created", sub_obj()))
    fake.on("POST", "/v1/subscriptions/sub_1", (400, {"error": {
        "type": "invalid_request_error", "message": "No such subscription"}}))  # fmt: skip
    before = await snapshot(app)
    row = await app.redis.hgetall(sync.store.row_key("sub", "sub_1"))
    with pytest.raises(stripe.InvalidRequestError, match="No such subscription"):
        await sync.cancel_subscription(subscription_id="sub_1")
    assert await snapshot(app) == before
    assert await app.redis.hgetall(sync.store.row_key("sub", "sub_1")) == row


async def test_metadata_update_on_a_missing_subscription(app: App, sync: StripeSync) -> None:
    before = await snapshot(app)
    with pytest.raises(SubscriptionNotFound, match="Subscription sub_none not found in database"):
        await sync.update_subscription_metadata(stripe_subscription_id="sub_none", metadata={})
    assert await snapshot(app) == before


async def test_metadata_update_replaces_metadata_and_sets_linkage(sync: StripeSync) -> None:
    await post(sync, event("customer.subscription.created", sub_obj(metadata={"userId": "u1"})))
    await sync.update_subscription_metadata(
        stripe_subscription_id="sub_1", metadata={"plan": "x"}, org_id="o5"
    )
    s = await sync.get_subscription("sub_1")
    assert s is not None and (s.metadata, s.org_id, s.user_id) == ({"plan": "x"}, "o5", "u1")
    assert [x.stripe_subscription_id for x in await sync.list_subscriptions_by_org_id("o5")] == [
        "sub_1"
    ]


async def test_create_or_update_customer_patches_only_what_is_passed(sync: StripeSync) -> None:
    await sync.create_or_update_customer(
        stripe_customer_id="cus_1", email="a@x.io", name="A", metadata={"userId": "u1"}
    )
    await sync.create_or_update_customer(stripe_customer_id="cus_1", name="B")
    c = await sync.get_customer("cus_1")
    assert c is not None and (c.email, c.name, c.metadata, c.user_id) == (
        "a@x.io", "B", {"userId": "u1"}, "u1",
    )  # fmt: skip


async def test_bad_input_is_refused_before_anything_is_written(
    app: App, sync: StripeSync, fake: FakeStripe
) -> None:
    before = await snapshot(app)
    with pytest.raises(ConfigError):
        await sync.get_or_create_customer(user_id="")
    with pytest.raises(ConfigError):
        await sync.create_or_update_customer(stripe_customer_id="")
    with pytest.raises(ConfigError):
        await sync.cancel_subscription(subscription_id=123)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        await sync.create_checkout_session(
            price_id="p",
            mode="rent",
            success_url="s",
            cancel_url="c",  # type: ignore[arg-type]
        )
    with pytest.raises(ConfigError):
        await sync.get_or_create_customer(user_id="u" * 2000)
    assert await snapshot(app) == before and fake.requests == []


async def test_no_secret_key(app: App, fake: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    s = make_sync(app, fake, secret_key=None)
    with pytest.raises(StripeNotConfigured, match="STRIPE_SECRET_KEY environment variable"):
        await s.create_customer_portal_session(customer_id="cus_1", return_url="x")
    assert fake.requests == []


def test_config_errors() -> None:
    app = App()
    for bad in ({"instance": "a b"}, {"tolerance_s": -1}, {"lease_ms": 0},
                {"follow_up_attempts": 0}, {"max_network_retries": -1}):  # fmt: skip
        with pytest.raises(ConfigError):
            StripeSync(app, **bad)  # type: ignore[arg-type]


async def test_instances_are_isolated_and_slot_safe(app: App, fake: FakeStripe) -> None:
    a = make_sync(app, fake, instance="acct_a")
    b = make_sync(app, fake, instance="acct_b")
    cid = (await a.create_customer(email="x@x.io")).customer_id
    assert await a.get_customer(cid) is not None
    assert await b.get_customer(cid) is None
    tag = app.keys.tag("stripe", "acct_a")
    assert all(k.startswith(tag) for k in await a.store.keys()) and await a.store.keys()
    assert await b.store.keys() == []
    await a.aclose()
    await b.aclose()
