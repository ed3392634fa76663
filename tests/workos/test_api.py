"""AuthKit through ``create_api``: the public webhook and action routes (no admin
token, the body limits still apply), the admin routes behind the token, and the
``get_auth_user`` dependency in an application's own route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from rkit.api import create_api
from rkit.api.workos import AuthUser, auth_user

from rkit import App
from rkit.integrations.workos import ActionResponder, ActionVerdict, AuthKit, User
from rkit.testing import run_until_idle

from .conftest import ACT, T0, WH, Recorder, make_authkit, workos_keys
from .fake import FakeWorkOS, sign_header, user

AUTH = {"Authorization": "Bearer tok"}
D1 = "2024-01-01T00:00:00.000Z"


@pytest.fixture
async def client(app: App, ak: AuthKit) -> AsyncIterator[httpx.AsyncClient]:
    api = create_api(app, admin_token="tok", max_body_bytes=20_000)

    @api.get("/me")
    async def me(u: AuthUser) -> dict[str, Any]:
        return {"id": u.id, "email": u.email}

    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def _hook(event: dict[str, Any], secret: str = WH) -> dict[str, Any]:
    body = json.dumps(event).encode()
    return {
        "content": body,
        "headers": {
            "WorkOS-Signature": sign_header(body, T0, secret),
            "content-type": "application/json",
        },
    }


async def test_public_routes_need_no_admin_token_and_verify_signatures(
    app: App, ak: AuthKit, client: httpx.AsyncClient, rec: Recorder
) -> None:
    e = {"id": "event_1", "event": "user.created", "data": user("user_1", D1)}
    forged = await client.post("/workos/webhook", **_hook(e, secret="nope"))
    assert forged.status_code == 400 and forged.text == "Invalid signature"
    big = {**e, "data": user("user_1", D1, name="x" * 30_000)}
    assert (await client.post("/workos/webhook", **_hook(big))).status_code == 413
    bad = await client.post(
        "/workos/webhook", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert 400 <= bad.status_code < 500
    assert await workos_keys(app) == {}
    ok = await client.post("/workos/webhook", **_hook(e))
    assert (ok.status_code, ok.text) == (200, "OK")
    assert rec.types() == ["user.created"]
    assert (await client.post("/workos/nothing", **_hook(e))).status_code == 404

    @ak.authentication_action
    async def allow(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
        return respond.allow()

    a = await client.post(
        "/workos/action", **_hook({"object": "authentication_action_context"}, ACT)
    )
    assert a.status_code == 200 and a.json()["payload"]["verdict"] == "Allow"
    assert a.headers["content-type"].startswith("application/json")


async def test_admin_routes(
    app: App, ak: AuthKit, fake: FakeWorkOS, client: httpx.AsyncClient
) -> None:
    e = {"id": "event_1", "event": "user.created", "data": user("user_1", D1, external_id="x1")}
    await client.post("/workos/webhook", **_hook(e))
    assert (await client.get("/admin/workos/users/user_1")).status_code in (401, 403)
    r = await client.get("/admin/workos/users/user_1", headers=AUTH)
    assert r.status_code == 200 and r.json()["external_id"] == "x1"
    assert (await client.get("/admin/workos/users/nobody", headers=AUTH)).status_code == 404
    r = await client.get("/admin/workos/users", params={"external_id": "x1"}, headers=AUTH)
    assert [u["id"] for u in r.json()["users"]] == ["user_1"]
    r = await client.get("/admin/workos/users", params={"limit": 1}, headers=AUTH)
    assert r.json()["total"] == 1 and r.json()["next_after_rank"] == 1
    r = await client.get("/admin/workos/users", params={"after_rank": 1}, headers=AUTH)
    assert r.json()["users"] == [] and r.json()["next_after_rank"] is None
    r = await client.get("/admin/workos/events/event_1", headers=AUTH)
    assert r.json()["state"] == "done" and r.json()["type"] == "user.created"
    assert "token" not in r.json()
    assert (await client.get("/admin/workos/events/nope", headers=AUTH)).status_code == 404
    fake.users = [user("user_2", D1)]
    r = await client.post("/admin/workos/backfill", headers=AUTH)
    assert r.json() == {"status": "started"}
    assert (await client.post("/admin/workos/backfill", headers=AUTH)).json()["status"] == "busy"
    state = (await client.get("/admin/workos/backfill", headers=AUTH)).json()["backfill"]
    assert state["state"] == "running"
    await run_until_idle(app)
    assert (await client.get("/admin/workos/backfill", headers=AUTH)).json() == {"backfill": None}
    r = await client.post("/admin/workos/reconcile", headers=AUTH)
    assert r.status_code == 200 and r.json()["work_id"]
    await run_until_idle(app)
    assert len(fake.requests_to("/events")) == 1
    r = await client.get("/admin/workos/users/user_1", params={"instance": "x"}, headers=AUTH)
    assert r.status_code == 404


async def test_get_auth_user_dependency(
    ak: AuthKit, fake: FakeWorkOS, client: httpx.AsyncClient
) -> None:
    await client.post(
        "/workos/webhook",
        **_hook({"id": "event_1", "event": "user.created", "data": user("user_1", D1)}),
    )
    token = fake.token("user_1", exp_ms=T0 + 60_000)
    r = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.json() == {"id": "user_1", "email": "user_1@example.com"}
    assert (await client.get("/me")).status_code == 401
    r = await client.get("/me", headers={"Authorization": "Bearer x.y.z"})
    assert r.status_code == 401 and "invalid access token" in r.json()["detail"]
    unsynced = fake.token("user_2", exp_ms=T0 + 60_000)
    r = await client.get("/me", headers={"Authorization": f"Bearer {unsynced}"})
    assert r.status_code == 401


async def test_auth_user_dependency_for_a_named_instance(app: App, fake: FakeWorkOS) -> None:
    ak = make_authkit(
        app, fake, instance="b2b", webhook_path="/b2b/webhook", action_path="/b2b/action"
    )
    await ak.process_event({"id": "e1", "event": "user.created", "data": user("user_1", D1)})
    api = FastAPI()

    current = auth_user(ak)

    @api.get("/me")
    async def me(u: User = Depends(current)) -> str:  # noqa: B008 (a local dependency)
        return u.id

    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        token = fake.token("user_1", exp_ms=T0 + 60_000)
        assert (await c.get("/me", headers={"Authorization": f"Bearer {token}"})).json() == "user_1"
    await ak.aclose()


async def test_an_unreachable_redis_is_a_503_not_a_forged_request(fake: FakeWorkOS) -> None:
    from rkit import TestClock

    from .._servers import free_port

    app = App(f"redis://127.0.0.1:{free_port()}/0", namespace="down", clock=TestClock(T0))
    make_authkit(app, fake)
    api = create_api(app, admin_token="tok")
    e = {"id": "event_1", "event": "user.created", "data": user("user_1", D1)}
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.post("/workos/webhook", **_hook(e))).status_code == 503
        assert (await c.post("/workos/webhook", **_hook(e, secret="x"))).status_code == 400
    await app.aclose()
