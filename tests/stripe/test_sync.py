"""The default sync of each event type (spec §3.7, §4.3-4.4, §7.3; scenarios 10-27):
linkage indexes, watermarks against out-of-order delivery, the invoice status
ranking, payments, and the subscription checkout's first invoice."""

from __future__ import annotations

from typing import Any

from rkit import App, TestClock
from rkit.integrations.stripe import StripeSync
from rkit.testing import run_until_idle

from ._fake import FakeStripe
from .conftest import NOW_S, T0, event, post, sub_obj


async def ok(s: StripeSync, type_: str, obj: dict[str, Any], **kw: Any) -> None:
    r = await post(s, event(type_, obj, **kw))
    assert r.status_code == 200, r.body


async def test_subscription_created_with_linkage(sync: StripeSync) -> None:
    await ok(sync, "customer.subscription.created",
             sub_obj(metadata={"userId": "u1", "orgId": "o1"}))  # fmt: skip
    s = await sync.get_subscription("sub_1")
    assert s is not None
    assert (s.quantity, s.price_id, s.current_period_end, s.cancel_at_period_end) == (
        5, "price_A", 1_800_000_000, False,
    )  # fmt: skip
    assert s.items is not None and s.items[0]["id"] == "si_sub_1"
    assert [x.stripe_subscription_id for x in await sync.list_subscriptions_by_user_id("u1")] == [
        "sub_1"
    ]
    org = await sync.get_subscription_by_org_id("o1")
    assert org is not None and org.stripe_subscription_id == "sub_1"
    assert [x.stripe_subscription_id for x in await sync.list_subscriptions("cus_1")] == ["sub_1"]
    assert await sync.list_subscriptions("cus_1", status="canceled") == []


async def test_updated_before_created(sync: StripeSync) -> None:
    await ok(sync, "customer.subscription.updated", sub_obj("sub_2", quantity=4))
    await ok(sync, "customer.subscription.created", sub_obj("sub_2", quantity=1),
             created=NOW_S - 5)  # fmt: skip
    s = await sync.get_subscription("sub_2")
    assert s is not None and s.quantity == 4


async def test_a_stale_update_is_ignored(sync: StripeSync) -> None:
    await ok(sync, "customer.subscription.created", sub_obj(), created=NOW_S - 20)
    await ok(sync, "customer.subscription.updated", sub_obj(status="past_due"))
    await ok(sync, "customer.subscription.updated", sub_obj(status="active"), created=NOW_S - 10)
    s = await sync.get_subscription("sub_1")
    assert s is not None and s.status == "past_due"
    await ok(sync, "customer.subscription.updated", sub_obj(status="unpaid"))
    s = await sync.get_subscription("sub_1")
    assert s is not None and s.status == "unpaid"


async def test_portal_cancellation_derives_the_flag(sync: StripeSync) -> None:
    await ok(sync, "customer.subscription.updated", sub_obj(cancel_at=1_800_000_300))
    s = await sync.get_subscription("sub_1")
    assert s is not None and (s.cancel_at_period_end, s.cancel_at) == (True, 1_800_000_300)
    await ok(sync, "customer.subscription.updated", sub_obj(cancel_at=1_800_000_301))
    s = await sync.get_subscription("sub_1")
    assert s is not None and (s.cancel_at_period_end, s.cancel_at) == (False, 1_800_000_301)
    await ok(sync, "customer.subscription.updated", sub_obj())  # cancel_at gone: cleared
    s = await sync.get_subscription("sub_1")
    assert s is not None and s.cancel_at is None


async def test_deleted_subscription(sync: StripeSync) -> None:
    await ok(sync, "customer.subscription.created", sub_obj(), created=NOW_S - 5)
    await ok(sync, "customer.subscription.deleted", sub_obj(status="canceled"))
    s = await sync.get_subscription("sub_1")
    assert s is not None and s.status == "canceled"
    # S3: an unknown subscription with customer and price is inserted as canceled
    await ok(sync, "customer.subscription.deleted", sub_obj("sub_9", status="active"))
    s9 = await sync.get_subscription("sub_9")
    assert s9 is not None and s9.status == "canceled"
    # ... but not without a price (nothing to mirror)
    await ok(sync, "customer.subscription.deleted", sub_obj("sub_8", price=None))
    assert await sync.get_subscription("sub_8") is None
    # a late update after the deletion cannot resurrect the old status
    await ok(sync, "customer.subscription.updated", sub_obj(status="active"), created=NOW_S - 1)
    s = await sync.get_subscription("sub_1")
    assert s is not None and s.status == "canceled"


async def test_plan_change_keeps_linkage(sync: StripeSync) -> None:
    await ok(sync, "customer.subscription.created", sub_obj(metadata={"orgId": "o1"}),
             created=NOW_S - 5)  # fmt: skip
    await ok(sync, "customer.subscription.updated", sub_obj(price="price_B"))
    s = await sync.get_subscription("sub_1")
    assert s is not None and (s.price_id, s.metadata, s.org_id) == ("price_B", {}, "o1")
    await ok(sync, "customer.subscription.updated", sub_obj(price=None), created=NOW_S + 1)
    s = await sync.get_subscription("sub_1")
    assert s is not None and s.price_id == "price_B"  # no price in the event: kept


def inv(iid: str = "in_1", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": iid, "object": "invoice", "customer": "cus_1",
                            "status": "open", "amount_due": 1500, "amount_paid": 0,
                            "created": NOW_S, "metadata": {}}  # fmt: skip
    base.update(kw)
    return base


async def test_a_delayed_invoice_created_cannot_downgrade(sync: StripeSync) -> None:
    await ok(sync, "invoice.finalized", inv())
    await ok(sync, "invoice.created", inv(status="draft", amount_due=999))
    i = await sync.get_invoice("in_1")
    assert i is not None and (i.status, i.amount_due) == ("open", 1500)
    await ok(sync, "invoice.paid", inv(status="paid", amount_paid=1500))
    i = await sync.get_invoice("in_1")
    assert i is not None and (i.status, i.amount_paid) == ("paid", 1500)
    assert [x.stripe_invoice_id for x in await sync.list_invoices("cus_1")] == ["in_1"]


async def test_payment_failed_never_downgrades_paid(sync: StripeSync) -> None:
    await ok(sync, "invoice.paid", inv(status="paid"))
    await ok(sync, "invoice.payment_failed", inv(status="open"))
    assert (await sync.get_invoice("in_1")).status == "paid"  # type: ignore[union-attr]
    await ok(sync, "invoice.created", inv("in_2", status="draft"))
    await ok(sync, "invoice.payment_failed", inv("in_2"))
    assert (await sync.get_invoice("in_2")).status == "open"  # type: ignore[union-attr]
    await ok(sync, "invoice.payment_failed", inv("in_3"))
    assert await sync.get_invoice("in_3") is None


async def test_invoice_parent_fields(sync: StripeSync) -> None:
    parent = {"subscription_details": {"subscription": "sub_v",
                                       "metadata": {"userId": "u9", "orgId": "o9"}}}  # fmt: skip
    await ok(sync, "invoice.updated", inv(parent=parent))
    i = await sync.get_invoice("in_1")
    assert i is not None
    assert (i.stripe_subscription_id, i.user_id, i.org_id) == ("sub_v", "u9", "o9")
    assert i.metadata == {"userId": "u9", "orgId": "o9"}
    assert [x.stripe_invoice_id for x in await sync.list_invoices_by_org_id("o9")] == ["in_1"]


async def test_an_invoice_before_its_subscription_is_backfilled(sync: StripeSync) -> None:
    await ok(sync, "invoice.created", inv("in_4", subscription="sub_4", status="draft"))
    await ok(sync, "customer.subscription.created", sub_obj("sub_4", metadata={"userId": "u4"}))
    i = await sync.get_invoice("in_4")
    assert i is not None and i.user_id == "u4" and i.org_id is None
    assert [x.stripe_invoice_id for x in await sync.list_invoices_by_user_id("u4")] == ["in_4"]


async def test_an_invoice_inherits_linkage_from_its_subscription(sync: StripeSync) -> None:
    await ok(sync, "customer.subscription.created",
             sub_obj(metadata={"userId": "u1", "orgId": "o1"}))  # fmt: skip
    await ok(sync, "invoice.paid", inv("in_5", subscription="sub_1", status="paid"))
    i = await sync.get_invoice("in_5")
    assert i is not None and (i.user_id, i.org_id) == ("u1", "o1")


def pi(pid: str = "pi_1", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": pid, "object": "payment_intent", "customer": None,
                            "amount": 2000, "currency": "USD", "status": "succeeded",
                            "created": NOW_S, "metadata": {"userId": "u1"}}  # fmt: skip
    base.update(kw)
    return base


async def test_a_guest_payment_is_linked_by_checkout(sync: StripeSync) -> None:
    await ok(sync, "payment_intent.succeeded", pi())
    cs = {"id": "cs_1", "object": "checkout.session", "mode": "payment", "customer": "cus_7",
          "payment_intent": "pi_1", "metadata": {}}  # fmt: skip
    await ok(sync, "checkout.session.completed", cs)
    p = await sync.get_payment("pi_1")
    assert p is not None and (p.stripe_customer_id, p.currency, p.amount) == ("cus_7", "usd", 2000)
    assert [x.stripe_payment_intent_id for x in await sync.list_payments("cus_7")] == ["pi_1"]
    assert [x.stripe_payment_intent_id for x in await sync.list_payments_by_user_id("u1")] == [
        "pi_1"
    ]
    c = await sync.get_checkout_session("cs_1")
    assert c is not None and (c.status, c.mode) == ("complete", "payment")
    assert [x.stripe_checkout_session_id for x in await sync.list_checkout_sessions("cus_7")] == [
        "cs_1"
    ]


async def test_an_existing_payment_customer_is_never_overwritten(sync: StripeSync) -> None:
    await ok(sync, "payment_intent.succeeded", pi("pi_2", customer="cus_A"))
    cs = {"id": "cs_2", "mode": "payment", "customer": "cus_B", "payment_intent": "pi_2"}
    await ok(sync, "checkout.session.completed", cs)
    assert (await sync.get_payment("pi_2")).stripe_customer_id == "cus_A"  # type: ignore[union-attr]


async def test_subscription_invoice_payments_are_skipped(
    sync: StripeSync, fake: FakeStripe
) -> None:
    fake.on("GET", "/v1/invoices/in_9", (200, inv("in_9", parent={
        "subscription_details": {"subscription": "sub_1"}})))  # fmt: skip
    await ok(sync, "payment_intent.succeeded", pi("pi_3", invoice="in_9"))
    assert await sync.get_payment("pi_3") is None
    fake.on("GET", "/v1/invoices/in_9", (500, {"error": {"type": "api_error", "message": "x"}}))
    await ok(sync, "payment_intent.succeeded", pi("pi_3", invoice="in_9"))
    assert await sync.get_payment("pi_3") is not None


async def test_a_subscription_checkout_pulls_the_first_invoice(
    sync: StripeSync, fake: FakeStripe
) -> None:
    fake.on("GET", "/v1/subscriptions/sub_5", (200, sub_obj("sub_5", latest_invoice="in_6")))
    fake.on("GET", "/v1/invoices/in_6", (200, inv("in_6", status=None, amount_paid=900)))
    cs = {"id": "cs_5", "mode": "subscription", "customer": "cus_5", "subscription": "sub_5"}
    await ok(sync, "checkout.session.completed", cs)
    i = await sync.get_invoice("in_6")
    assert i is not None and (i.status, i.stripe_subscription_id, i.amount_paid) == (
        "paid", "sub_5", 900,
    )  # fmt: skip


async def test_a_failed_follow_up_fetch_is_retried_then_dead_lettered(
    app: App, sync: StripeSync, fake: FakeStripe, clock: TestClock
) -> None:
    fake.on("GET", "/v1/subscriptions/sub_6", (500, {"error": {"type": "api_error",
                                                               "message": "down"}}))  # fmt: skip
    cs = {"id": "cs_6", "mode": "subscription", "customer": "cus_6", "subscription": "sub_6"}
    await ok(sync, "checkout.session.completed", cs)
    assert await sync.get_checkout_session("cs_6") is not None
    pending = await sync.workpool.pending()
    assert len(pending) == 1 and float(pending[0]["due"]) == T0 + 1000
    for at in (T0 + 1000, T0 + 3000, T0 + 7000, T0 + 15000):
        clock.set(at - 1)
        await run_until_idle(app)
        assert await sync.dead_letters() == []  # nothing runs early
        clock.set(at)
        await run_until_idle(app)
    assert len(fake.calls("GET", "/v1/subscriptions/sub_6")) == 5  # inline + 4
    dead = await sync.dead_letters()
    assert len(dead) == 1 and dead[0]["job"] == "stripe_sync_latest_invoice"
    assert dead[0]["args"] == {"instance": "default", "subscription_id": "sub_6"}
    assert await sync.list_invoices("cus_6") == []


async def test_a_follow_up_fetch_that_recovers_writes_the_invoice(
    app: App, sync: StripeSync, fake: FakeStripe, clock: TestClock
) -> None:
    fake.on("GET", "/v1/subscriptions/sub_7", (500, {"error": {"type": "api_error",
                                                               "message": "down"}}))  # fmt: skip
    cs = {"id": "cs_7", "mode": "subscription", "customer": "cus_7", "subscription": "sub_7"}
    await ok(sync, "checkout.session.completed", cs)
    fake.on("GET", "/v1/subscriptions/sub_7", (200, sub_obj("sub_7", latest_invoice="in_7")))
    fake.on("GET", "/v1/invoices/in_7", (200, inv("in_7", customer="cus_7", status="paid")))
    clock.set(T0 + 1000)
    await run_until_idle(app)
    i = await sync.get_invoice("in_7")
    assert i is not None and i.stripe_subscription_id == "sub_7"
    assert await sync.workpool.pending() == [] and await sync.dead_letters() == []


async def test_payment_failure_is_recorded_without_downgrade(sync: StripeSync) -> None:
    await ok(sync, "payment_intent.payment_failed", pi("pi_4", status="requires_payment_method"))
    assert (await sync.get_payment("pi_4")).status == "requires_payment_method"  # type: ignore[union-attr]
    await ok(sync, "payment_intent.succeeded", pi("pi_4"))
    assert (await sync.get_payment("pi_4")).status == "succeeded"  # type: ignore[union-attr]
    await ok(sync, "payment_intent.payment_failed", pi("pi_4", status="requires_payment_method"))
    assert (await sync.get_payment("pi_4")).status == "succeeded"  # type: ignore[union-attr]


async def test_customer_deletion_scrubs_and_a_stale_update_cannot_restore(
    sync: StripeSync,
) -> None:
    cus = {"id": "cus_1", "email": "a@x.io", "name": "Ann",
           "metadata": {"userId": "u1", "tier": "pro"}}  # fmt: skip
    await ok(sync, "customer.created", cus, created=NOW_S - 10)
    await ok(sync, "customer.deleted", {**cus, "deleted": True})
    c = await sync.get_customer("cus_1")
    assert c is not None and (c.email, c.name, c.metadata, c.user_id) == (None, None, {}, "u1")
    assert await sync.get_customer_by_email("a@x.io") is None
    await ok(sync, "customer.updated", cus, created=NOW_S - 1)
    c = await sync.get_customer("cus_1")
    assert c is not None and c.email is None


async def test_customer_updated_upserts_and_keeps_user(sync: StripeSync) -> None:
    await ok(sync, "customer.updated", {"id": "cus_2", "email": "b@x.io",
                                        "metadata": {"userId": "u2"}})  # fmt: skip
    c = await sync.get_customer("cus_2")
    assert c is not None and (c.email, c.user_id) == ("b@x.io", "u2")
    await ok(sync, "customer.updated", {"id": "cus_2", "email": "c@x.io", "metadata": {}},
             created=NOW_S + 1)  # fmt: skip
    c = await sync.get_customer("cus_2")
    assert c is not None and (c.email, c.user_id, c.metadata) == ("c@x.io", "u2", {})
    assert await sync.get_customer_by_email("b@x.io") is None
    # customer.created never overwrites an existing row
    await ok(sync, "customer.created", {"id": "cus_2", "email": "d@x.io"}, created=NOW_S + 2)
    assert (await sync.get_customer("cus_2")).email == "c@x.io"  # type: ignore[union-attr]


async def test_a_follow_up_runs_on_another_process_after_this_one_is_gone(
    queue_app: App, fake: FakeStripe, clock: TestClock
) -> None:
    """The inline fetch failed in one process, which then went away; a worker of
    another process (its own App and StripeSync on the same Redis) runs the retry."""
    from rkit.testing import peer_app

    from .conftest import make_sync

    first = make_sync(queue_app, fake)
    fake.on("GET", "/v1/subscriptions/sub_p", (500, {"error": {"type": "api_error",
                                                               "message": "down"}}))  # fmt: skip
    cs = {"id": "cs_p", "mode": "subscription", "customer": "cus_p", "subscription": "sub_p"}
    await ok(first, "checkout.session.completed", cs)
    await first.aclose()
    fake.on("GET", "/v1/subscriptions/sub_p", (200, sub_obj("sub_p", latest_invoice="in_p")))
    fake.on("GET", "/v1/invoices/in_p", (200, inv("in_p", customer="cus_p", status="paid")))
    worker = peer_app(queue_app)
    second = make_sync(worker, fake)
    try:
        clock.set(T0 + 1000)
        await run_until_idle(worker)
        i = await second.get_invoice("in_p")
        assert i is not None and i.stripe_subscription_id == "sub_p"
    finally:
        await second.aclose()
        if worker.redis is not queue_app.redis:
            await worker.aclose()
