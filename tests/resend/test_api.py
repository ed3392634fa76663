"""The public webhook route and the admin routes over HTTP (``create_api``): bad
input is a clear 4xx with nothing written (checked by key counts), no secret means
the route refuses, admin routes need the token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from rkit.api import create_api

from .conftest import SECRET, T0, World, event, make_resend, signed

AUTH = {"Authorization": "Bearer tok"}
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    api = create_api(world.app, admin_token="tok", max_body_bytes=64_000)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def post_hook(
    c: httpx.AsyncClient, body: str | bytes, headers: dict[str, str], path: str = "/resend/webhook"
) -> httpx.Response:
    return await c.post(path, content=body, headers={"content-type": "application/json", **headers})


async def test_webhook_route_applies_a_signed_event(
    world: World, client: httpx.AsyncClient
) -> None:
    eid = await world.send()
    await world.tick(T0 + 1000)
    body, headers = signed(event("email.delivered", "re_0"), "msg_1", T0 + 1000)
    r = await post_hook(client, body, headers)
    assert (r.status_code, r.content) == (201, b"")
    assert (await world.r.status(eid)).status == "delivered"  # type: ignore[union-attr]
    # the Standard-Webhooks header names are accepted too
    body, headers = signed(event("email.opened", "re_0"), "msg_2", T0 + 1000)
    alt = {k.replace("svix-", "webhook-"): v for k, v in headers.items()}
    assert (await post_hook(client, body, alt)).status_code == 201
    assert (await world.r.status(eid)).opened  # type: ignore[union-attr]


BAD: list[tuple[str, Any]] = [
    ("forged", lambda b, h: (b, {**h, "svix-signature": "v1,AAAA"})),
    ("wrong secret", lambda b, h: signed(json.loads(b), "m", T0, "whsec_b3RoZXI=")),
    ("tampered body", lambda b, h: (b.replace("re_0", "re_1"), h)),
    ("stale", lambda b, h: signed(json.loads(b), "m", T0 - 301_000)),
    ("future", lambda b, h: signed(json.loads(b), "m", T0 + 301_000)),
    ("no id", lambda b, h: (b, {k: v for k, v in h.items() if k != "svix-id"})),
    ("no timestamp", lambda b, h: (b, {k: v for k, v in h.items() if k != "svix-timestamp"})),
    ("bad timestamp", lambda b, h: (b, {**h, "svix-timestamp": "soon"})),
    ("malformed body", lambda b, h: signed_raw("{not json", h)),
    ("oversized body", lambda b, h: signed_raw(json.dumps({"x": "y" * 70_000}), h)),
]


def signed_raw(raw: str, h: dict[str, str]) -> tuple[str, dict[str, str]]:
    from datetime import UTC, datetime

    from svix.webhooks import Webhook

    sig = Webhook(SECRET).sign("m", datetime.fromtimestamp(T0 / 1000, tz=UTC), raw)
    return raw, {**h, "svix-id": "m", "svix-signature": sig}


async def test_bad_webhook_requests_are_4xx_and_write_nothing(
    world: World, client: httpx.AsyncClient
) -> None:
    await world.send()
    await world.tick(T0 + 1000)
    world.clock.set(T0)
    before = await world.keys()
    for case, spoil in BAD:
        body, headers = signed(event("email.delivered", "re_0"), "m", T0)
        body, headers = spoil(body, headers)
        r = await post_hook(client, body, headers)
        assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
        assert await world.keys() == before, case
    assert (await world.r.status("em_0001")).status == "sent"  # type: ignore[union-attr]
    body, headers = signed(event("email.delivered", "re_0"), "m", T0)  # the control
    assert (await post_hook(client, body, headers)).status_code == 201
    assert (await world.r.status("em_0001")).status == "delivered"  # type: ignore[union-attr]


async def test_no_secret_means_the_route_refuses(
    world: World, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESEND_WEBHOOK_SECRET", raising=False)
    make_resend(world.app, world.fake, webhook_secret=None, instance="bare")
    before = await world.keys()
    body, headers = signed(event("email.delivered", "re_0"), "m", T0)
    r = await post_hook(client, body, headers, "/resend/bare/webhook")
    assert (r.status_code, r.text) == (500, "Webhook secret is not set")
    assert await world.keys() == before
    r = await post_hook(client, body, headers, "/resend/nobody/webhook")
    assert r.status_code == 404


async def test_admin_routes(world: World, client: httpx.AsyncClient) -> None:
    a, b, c = await world.send(), await world.send(), await world.send()
    assert (await client.get("/admin/resend/queue")).status_code in (401, 403)
    q = (await client.get("/admin/resend/queue", headers=AUTH)).json()
    assert q["waiting"] == 3 and q["by_status"]["waiting"] == 3 and q["next_run_ms"] == T0 + 1000
    r = await client.post(f"/admin/resend/emails/{c}/cancel", headers=AUTH)
    assert r.json() == {"id": c, "status": "cancelled"}
    assert (await client.post(f"/admin/resend/emails/{c}/cancel", headers=AUTH)).status_code == 409
    assert (await client.post("/admin/resend/emails/nope/cancel", headers=AUTH)).status_code == 404
    await world.tick(T0 + 1000)
    page = (await client.get("/admin/resend/emails?status=sent", headers=AUTH)).json()
    assert sorted(e["id"] for e in page["emails"]) == [a, b]
    assert (await client.get("/admin/resend/emails?status=nah", headers=AUTH)).status_code == 422
    await world.hook(event("email.delivered", "re_0"), "m1")
    full = (await client.get(f"/admin/resend/emails/{a}", headers=AUTH)).json()
    assert full["from"] == "me@x.io" and full["status"] == "delivered"
    assert [e["event_type"] for e in full["events"]] == ["email.delivered"]
    evs = (await client.get(f"/admin/resend/emails/{a}/events", headers=AUTH)).json()
    assert [e["resend_id"] for e in evs["events"]] == ["re_0"]
    assert (await client.get("/admin/resend/emails/x/events", headers=AUTH)).status_code == 404
    st = (await client.get(f"/admin/resend/emails/{b}/status", headers=AUTH)).json()
    assert st["status"] == "sent"
    assert (await client.get("/admin/resend/emails/nope", headers=AUTH)).status_code == 404
    assert (await client.get("/admin/resend/emails/nope/status", headers=AUTH)).status_code == 404
    # resend a cancelled email: a copy under a new id
    r = await client.post(f"/admin/resend/emails/{c}/resend", headers=AUTH)
    assert r.status_code == 200 and r.json()["copy_of"] == c
    copy = await world.r.get(r.json()["id"])
    assert copy is not None and copy.status == "waiting" and copy.subject == "Hi"
    assert (await client.post(f"/admin/resend/emails/{a}/resend", headers=AUTH)).status_code == 409
    world.clock.set(T0 + 8 * 86_400_000)
    r = await client.post("/admin/resend/cleanup", headers=AUTH)
    assert r.json() == {"deleted": 2}  # delivered a, cancelled c
    r = await client.post("/admin/resend/cleanup-abandoned?older_than_ms=0", headers=AUTH)
    assert r.json() == {"deleted": 2}  # b (sent) and the copy
    assert (await client.get("/admin/resend/queue?instance=x", headers=AUTH)).status_code == 404


async def test_the_instance_router_mounts_in_any_fastapi_app(world: World) -> None:
    from fastapi import FastAPI

    eid = await world.send()
    await world.tick(T0 + 1000)
    own = FastAPI()
    own.include_router(world.r.router())
    transport = httpx.ASGITransport(app=own)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body, headers = signed(event("email.delivered", "re_0"), "m1", T0 + 1000)
        assert (await post_hook(c, body, headers, "/resend-webhook")).status_code == 201
        body, headers = signed(event("email.bounced", "re_0"), "m2", T0)
        r = await post_hook(c, body, {**headers, "svix-signature": "v1,x"}, "/resend-webhook")
        assert r.status_code == 400
    assert (await world.r.status(eid)).status == "delivered"  # type: ignore[union-attr]
