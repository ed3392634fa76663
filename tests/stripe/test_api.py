"""The HTTP surface: the public webhook route (no admin token; the body guard's
limits still apply) and the admin routes behind the token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from rkit import App, TestClock
from rkit.integrations.stripe import StripeSync
from rkit.testing import run_until_idle

from ._fake import FakeStripe
from .conftest import T0, event, make_sync, signed, snapshot, sub_obj

AUTH = {"Authorization": "Bearer tok"}


def create_api(app: App, **kwargs: Any) -> FastAPI:
    from rkit.api import create_api as make  # alone in its block: sorts the same anywhere

    return make(app, **kwargs)


def webhook_router(sync: StripeSync, path: str) -> Any:
    from rkit.api.webhooks.stripe import webhook_router as make

    return make(sync, path)


@pytest.fixture
async def client(app: App, sync: StripeSync) -> AsyncIterator[httpx.AsyncClient]:
    api = create_api(app, admin_token="tok")
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_the_webhook_route_is_public_and_verifies(
    app: App, sync: StripeSync, client: httpx.AsyncClient
) -> None:
    body = json.dumps(event("customer.created", {"id": "cus_1", "email": "a@x.io"})).encode()
    hdrs = {**signed(body), "Content-Type": "application/json"}
    r = await client.post("/stripe/webhook", content=body, headers=hdrs)
    assert (r.status_code, r.json(), r.headers["content-type"]) == (
        200,
        {"received": True},
        "application/json",
    )
    assert await sync.get_customer("cus_1") is not None
    before = await snapshot(app)
    forged = {**hdrs, **signed(body, secret="whsec_evil")}
    r = await client.post("/stripe/webhook", content=body, headers=forged)
    assert r.status_code == 400 and r.text.startswith("Webhook signature verification failed")
    r = await client.post(
        "/stripe/webhook", content=body, headers={"Content-Type": "application/json"}
    )
    assert (r.status_code, r.text) == (400, "No signature provided")
    bad = b"{nope"
    r = await client.post("/stripe/webhook", content=bad, headers={**signed(bad)})
    assert r.status_code == 422  # the body guard: strict JSON before any route
    r = await client.post("/stripe/webhook/nobody", content=body, headers=hdrs)
    assert r.status_code == 404
    assert await snapshot(app) == before


async def test_a_named_instance_has_its_own_route(
    app: App, sync: StripeSync, fake: FakeStripe
) -> None:
    other = make_sync(app, fake, instance="acct_b", webhook_secret="whsec_b")
    api = create_api(app, admin_token="tok")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        body = json.dumps(event("customer.created", {"id": "cus_b"})).encode()
        r = await c.post("/stripe/webhook/acct_b", content=body, headers=signed(body))
        assert r.status_code == 400  # signed with the default instance's secret
        r = await c.post(
            "/stripe/webhook/acct_b", content=body, headers=signed(body, secret="whsec_b")
        )
        assert r.status_code == 200
    assert await other.get_customer("cus_b") is not None
    assert await sync.get_customer("cus_b") is None
    await other.aclose()


async def test_admin_routes(
    app: App, sync: StripeSync, fake: FakeStripe, client: httpx.AsyncClient, clock: TestClock
) -> None:
    ev = event("customer.subscription.created",
               sub_obj(metadata={"userId": "u1", "orgId": "o1"}), id_="evt_a")  # fmt: skip
    body = json.dumps(ev).encode()
    assert (await client.post("/stripe/webhook", content=body, headers=signed(body))).is_success
    inv = {"id": "in_1", "customer": "cus_1", "subscription": "sub_1", "status": "paid",
           "amount_due": 5, "amount_paid": 5, "created": 1}  # fmt: skip
    body2 = json.dumps(event("invoice.paid", inv, id_="evt_b")).encode()
    assert (await client.post("/stripe/webhook", content=body2, headers=signed(body2))).is_success
    base = "/stripe/default"
    assert (await client.get(f"{base}/subscriptions/sub_1")).status_code in (401, 403)
    r = await client.get(f"{base}/subscriptions/sub_1", headers=AUTH)
    assert r.status_code == 200 and r.json()["user_id"] == "u1"
    assert (await client.get(f"{base}/subscriptions/nope", headers=AUTH)).status_code == 404
    assert (await client.get(f"{base}/customers/cus_1", headers=AUTH)).status_code == 404
    r = await client.get(f"{base}/users/u1/subscriptions", headers=AUTH)
    assert [s["stripe_subscription_id"] for s in r.json()["subscriptions"]] == ["sub_1"]
    r = await client.get(f"{base}/users/u1/subscriptions?status=canceled", headers=AUTH)
    assert r.json() == {"subscriptions": []}
    r = await client.get(f"{base}/orgs/o1/invoices", headers=AUTH)
    assert [i["stripe_invoice_id"] for i in r.json()["invoices"]] == ["in_1"]
    assert (await client.get(f"{base}/users/u1/invoices", headers=AUTH)).json()["invoices"]
    assert (await client.get(f"{base}/orgs/o1/payments", headers=AUTH)).json() == {"payments": []}
    assert (await client.get(f"{base}/users/u1/payments", headers=AUTH)).json() == {"payments": []}
    assert (await client.get(f"{base}/orgs/o1/subscriptions", headers=AUTH)).json()["subscriptions"]
    r = await client.get(f"{base}/events", headers=AUTH)
    assert [e["id"] for e in r.json()["events"]] == ["evt_b", "evt_a"] or [
        e["id"] for e in r.json()["events"]
    ] == ["evt_a", "evt_b"]
    r = await client.get(f"{base}/events/evt_a", headers=AUTH)
    assert r.json()["state"] == "done" and r.json()["event"]["id"] == "evt_a"
    assert (await client.get(f"{base}/events/evt_zz", headers=AUTH)).status_code == 404
    # replay re-applies the stored event: a row deleted by hand comes back
    await app.redis.delete(sync.store.row_key("sub", "sub_1"))
    r = await client.post(f"{base}/events/evt_a/replay", headers=AUTH)
    assert r.status_code == 200
    assert await sync.get_subscription("sub_1") is not None
    assert (await client.post(f"{base}/events/evt_zz/replay", headers=AUTH)).status_code == 404
    # resync from Stripe
    fake.on("GET", "/v1/subscriptions/sub_1", (200, sub_obj(quantity=9)))
    r = await client.post(f"{base}/subscriptions/sub_1/resync", headers=AUTH)
    assert r.status_code == 200 and r.json()["subscription"]["quantity"] == 9
    fake.on("GET", "/v1/subscriptions/sub_x", (404, {"error": {"type": "invalid_request_error",
                                                               "message": "No such"}}))  # fmt: skip
    r = await client.post(f"{base}/subscriptions/sub_x/resync", headers=AUTH)
    assert r.status_code == 502
    assert (await client.get(f"{base}/dead", headers=AUTH)).json() == {"dead": []}
    assert (await client.get("/stripe/bad name!/dead", headers=AUTH)).status_code == 404


async def test_the_dead_letter_route_lists_exhausted_follow_ups(
    queue_app: App, fake: FakeStripe, clock: TestClock
) -> None:
    s = make_sync(queue_app, fake, follow_up_attempts=2)
    fake.on("GET", "/v1/subscriptions/sub_d", (500, {"error": {"type": "api_error",
                                                               "message": "down"}}))  # fmt: skip
    cs = {"id": "cs_d", "mode": "subscription", "customer": "cus_d", "subscription": "sub_d"}
    body = json.dumps(event("checkout.session.completed", cs)).encode()
    assert (await s.handle_webhook(body, signed(body))).status_code == 200
    clock.set(T0 + 1000)
    await run_until_idle(queue_app)
    api = create_api(queue_app, admin_token="tok")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        r = await c.get("/stripe/default/dead", headers=AUTH)
    (rec,) = r.json()["dead"]
    assert rec["args"]["subscription_id"] == "sub_d" and "down" in rec["error"]
    await s.aclose()


async def test_resync_customer_route(
    app: App, sync: StripeSync, fake: FakeStripe, client: httpx.AsyncClient
) -> None:
    fake.on("GET", "/v1/customers/cus_r", (200, {"id": "cus_r", "email": "r@x.io",
                                                 "metadata": {"userId": "ur"}}))  # fmt: skip
    r = await client.post("/stripe/default/customers/cus_r/resync", headers=AUTH)
    assert r.status_code == 200 and r.json()["customer"]["user_id"] == "ur"
    fake.on("GET", "/v1/customers/cus_r", (200, {"id": "cus_r", "deleted": True}))
    r = await client.post("/stripe/default/customers/cus_r/resync", headers=AUTH)
    assert r.json()["customer"]["email"] is None and r.json()["customer"]["user_id"] == "ur"


async def test_webhook_router_mounts_an_instance_in_your_own_app(
    app: App, sync: StripeSync
) -> None:
    mine = FastAPI()
    mine.include_router(webhook_router(sync, "/hooks/billing"))
    body = json.dumps(event("customer.created", {"id": "cus_w"})).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mine), base_url="http://t") as c:
        assert (await c.post("/hooks/billing", content=body)).status_code == 400
        r = await c.post("/hooks/billing", content=body, headers=signed(body))
        assert r.status_code == 200
    assert await sync.get_customer("cus_w") is not None
