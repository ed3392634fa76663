"""spec/workos-authkit.md §8 on fakeredis, real Redis and a 3-node Cluster (arq queue
on fakeredis for the Cluster), against the fake WorkOS API on loopback, with
webhooks and actions signed with WorkOS's real scheme."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from rkit.api.webhooks.workos import authkit_router

from rkit import App, TestClock
from rkit.integrations.workos import (
    ActionResponder,
    ActionVerdict,
    AuthKit,
    AuthKitConfigError,
)
from rkit.testing import run_until_idle

from .conftest import ACT, T0, WH, Post, Recorder, make_authkit, post_to, workos_keys
from .fake import FakeWorkOS, sign_header, user

D1 = "2024-01-01T00:00:00.000Z"
D2 = "2024-01-02T00:00:00.000Z"


def ev(eid: str, etype: str, data: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"id": eid, "event": etype, "data": data, "created_at": D1, **kw}


async def test_1_user_created_stores_the_user(ak: AuthKit, post: Post, rec: Recorder) -> None:
    r = await post(ev("event_1", "user.created", user("user_1", D1, first_name="Ann")))
    assert (r.status_code, r.body) == (200, "OK")
    u = await ak.get_auth_user("user_1")
    assert u is not None and u.first_name == "Ann"
    assert rec.types() == ["user.created"]
    assert rec.calls[0].data["object"] == "user"


async def test_2_bad_signature(app: App, ak: AuthKit, post: Post, rec: Recorder) -> None:
    r = await post(ev("event_1", "user.created", user("user_1", D1)), secret="wrong")
    assert r.status_code == 400
    assert await workos_keys(app) == {}
    assert rec.calls == []


async def test_3_missing_header(app: App, ak: AuthKit) -> None:
    body = json.dumps(ev("event_1", "user.created", user("user_1", D1))).encode()
    r = await ak.handle_webhook(body, {})
    assert (r.status_code, r.body) == (400, "No signature header")
    assert await workos_keys(app) == {}


async def test_4_webhook_tolerance_both_directions(app: App, ak: AuthKit, post: Post) -> None:
    assert (
        await post(ev("e_a", "user.created", user("u_a", D1)), t=T0 - 180_000)
    ).status_code == 200
    assert (
        await post(ev("e_b", "user.created", user("u_b", D1)), t=T0 - 180_001)
    ).status_code == 400
    assert (
        await post(ev("e_c", "user.created", user("u_c", D1)), t=T0 + 180_001)
    ).status_code == 400
    assert await ak.get_auth_user("u_b") is None and await ak.get_auth_user("u_c") is None


async def test_5_duplicate_event_id(ak: AuthKit, post: Post, rec: Recorder) -> None:
    e = ev("event_1", "user.created", user("user_1", D1))
    assert (await post(e)).status_code == 200
    assert (await post(e)).status_code == 200
    assert len(rec.calls) == 1
    assert await ak.app.redis.get(f"{ak.prefix}:seq") == "1"


async def _given_user_1(post: Post, rec: Recorder, **kw: Any) -> None:
    assert (await post(ev("event_1", "user.created", user("user_1", D1, **kw)))).status_code == 200
    rec.calls.clear()


async def test_6_newer_update_applies(ak: AuthKit, post: Post, rec: Recorder) -> None:
    await _given_user_1(post, rec)
    r = await post(ev("event_2", "user.updated", user("user_1", D2, last_name="Lee")))
    assert r.status_code == 200
    u = await ak.get_auth_user("user_1")
    assert u is not None and u.last_name == "Lee"
    assert rec.types() == ["user.updated"]


async def test_7_equal_or_older_update_is_stale(ak: AuthKit, post: Post, rec: Recorder) -> None:
    await _given_user_1(post, rec)
    await post(ev("event_2", "user.updated", user("user_1", D2, last_name="Lee")))
    rec.calls.clear()
    r1 = await post(ev("event_3", "user.updated", user("user_1", D2, last_name="Eq")))
    r2 = await post(ev("event_4", "user.updated", user("user_1", "2024-01-01T12:00:00.000Z")))
    assert (r1.status_code, r2.status_code) == (200, 200)
    u = await ak.get_auth_user("user_1")
    assert u is not None and u.last_name == "Lee"
    assert rec.calls == []


async def test_8_update_for_an_unknown_user_inserts(ak: AuthKit, post: Post, rec: Recorder) -> None:
    await post(ev("event_1", "user.updated", user("user_9", D2, first_name="New")))
    u = await ak.get_auth_user("user_9")
    assert u is not None and u.first_name == "New"
    assert rec.types() == ["user.updated"]
    await post(ev("event_2", "user.created", user("user_9", D1, first_name="Old")))
    u = await ak.get_auth_user("user_9")
    assert u is not None and u.first_name == "New"
    assert rec.types() == ["user.updated"]


async def test_9_created_for_an_existing_user_is_a_no_op(
    ak: AuthKit, post: Post, rec: Recorder
) -> None:
    await _given_user_1(post, rec, first_name="Ann")
    await post(ev("event_2", "user.created", user("user_1", D2, first_name="Other")))
    u = await ak.get_auth_user("user_1")
    assert u is not None and u.first_name == "Ann" and u.updated_at == D1
    assert rec.calls == []


async def test_10_delete(ak: AuthKit, post: Post, rec: Recorder) -> None:
    await _given_user_1(post, rec)
    assert (await post(ev("event_2", "user.deleted", user("user_1", D2)))).status_code == 200
    assert await ak.get_auth_user("user_1") is None
    assert rec.types() == ["user.deleted"]


async def test_11_delete_before_create_leaves_a_tombstone(
    ak: AuthKit, post: Post, rec: Recorder
) -> None:
    await post(ev("event_1", "user.deleted", user("user_5", "2024-03-01T00:00:00.000Z")))
    assert rec.calls == []
    await post(ev("event_2", "user.created", user("user_5", "2024-02-01T00:00:00.000Z")))
    await post(ev("event_3", "user.updated", user("user_5", "2024-03-01T00:00:00.000Z")))
    assert await ak.get_auth_user("user_5") is None
    assert rec.calls == []


async def test_12_other_event_types_reach_handlers(ak: AuthKit, post: Post, rec: Recorder) -> None:
    e = ev("event_7", "session.created", {"object": "session", "id": "session_1"})
    assert (await post(e)).status_code == 200
    assert rec.types() == ["session.created"] and rec.calls[0].data["id"] == "session_1"
    assert await ak.get_auth_user("session_1") is None
    assert (await post(e)).status_code == 200
    assert len(rec.calls) == 1


async def test_13_no_handler_registered(app: App, ak: AuthKit, post: Post) -> None:
    e = ev("event_8", "organization.created", {"object": "organization", "id": "org_1"})
    assert (await post(e)).status_code == 200
    keys = await workos_keys(app)
    assert list(keys) == [ak._evt_key("event_8")]
    assert (await ak.event_record("event_8") or {})["state"] == "done"


async def test_14_handler_failure_and_retry(ak: AuthKit, post: Post, rec: Recorder) -> None:
    rec.fail["user.created"] = 1
    e = ev("event_3", "user.created", user("user_3", D1))
    r = await post(e)
    assert (r.status_code, r.body) == (500, "Error processing webhook")
    assert await ak.get_auth_user("user_3") is not None
    rank = await ak.app.redis.hget(ak._user_key("user_3"), "rank")
    assert (await post(e)).status_code == 200
    assert rec.types() == ["user.created"]
    assert await ak.app.redis.hget(ak._user_key("user_3"), "rank") == rank == "1"
    assert await ak.app.redis.get(f"{ak.prefix}:seq") == "1"
    assert (await post(e)).status_code == 200  # now a duplicate
    assert len(rec.calls) == 1


async def test_15_unknown_user_fields_are_kept(ak: AuthKit, post: Post) -> None:
    data = user("user_1", D1, name="Ann Lee", future_field={"x": 1})
    assert (await post(ev("event_1", "user.created", data))).status_code == 200
    u = await ak.get_auth_user("user_1")
    assert u is not None and u.name == "Ann Lee"
    assert u.model_extra is not None and u.model_extra["future_field"] == {"x": 1}
    assert "object" not in u.model_dump()


async def test_16_top_level_context_accepted(ak: AuthKit, post: Post, rec: Recorder) -> None:
    e = ev("event_1", "user.created", user("user_1", D1), context={"client_id": "client_x"})
    assert (await post(e)).status_code == 200
    assert rec.calls[0].context == {"client_id": "client_x"}


async def test_17_external_id_lookup(ak: AuthKit, post: Post) -> None:
    await post(ev("event_1", "user.created", user("user_1", D1, external_id="ext-1")))
    found = await ak.get_auth_user_by_external_id("ext-1")
    assert found is not None and found.id == "user_1"
    await post(ev("event_2", "user.updated", user("user_1", D2, external_id="ext-2")))
    assert await ak.get_auth_user_by_external_id("ext-1") is None
    found = await ak.get_auth_user_by_external_id("ext-2")
    assert found is not None and found.id == "user_1"
    await post(ev("event_3", "user.deleted", user("user_1", D2, external_id="ext-2")))
    assert await ak.get_auth_user_by_external_id("ext-2") is None


def _hmac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


async def _act(ak: AuthKit, action: dict[str, Any], t: int = T0, secret: str = ACT) -> Any:
    body = json.dumps(action).encode()
    return await ak.handle_action(body, {"workos-signature": sign_header(body, t, secret)})


async def test_18_authentication_action_allows(ak: AuthKit) -> None:
    @ak.authentication_action
    async def allow(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
        return respond.allow()

    r = await _act(ak, {"object": "authentication_action_context", "id": "act_1", "user": {}})
    assert (r.status_code, r.media_type) == (200, "application/json")
    assert json.loads(r.body) == {
        "object": "authentication_action_response",
        "payload": {"timestamp": 1700000040000, "verdict": "Allow"},
        "signature": "a66276e1a2623fc0752b349389be204d66bc974f7248f9cbfbdbf28a7051f05d",
    }


async def test_19_registration_action_denies_with_a_message(ak: AuthKit) -> None:
    @ak.user_registration_action
    async def no_gmail(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
        if action["user_data"]["email"].endswith("@gmail.com"):
            return respond.deny("Gmail accounts are not allowed")
        return respond.allow()

    r = await _act(
        ak,
        {
            "object": "user_registration_action_context",
            "id": "a",
            "user_data": {"email": "x@gmail.com"},
        },
    )
    parsed = json.loads(r.body)
    text = (
        '{"timestamp":1700000040000,"verdict":"Deny",'
        '"error_message":"Gmail accounts are not allowed"}'
    )
    assert parsed["object"] == "user_registration_action_response"
    assert json.dumps(parsed["payload"], separators=(",", ":")) == text
    assert parsed["signature"] == _hmac(ACT, f"1700000040000.{text}")


async def test_20_action_with_bad_signature(ak: AuthKit) -> None:
    called: list[int] = []

    @ak.authentication_action
    async def allow(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
        called.append(1)
        return respond.allow()

    r = await _act(ak, {"object": "authentication_action_context"}, secret=WH)
    assert r.status_code == 400 and called == []


async def test_21_action_tolerance_is_30_s(ak: AuthKit) -> None:
    ak.authentication_action(_allow)
    a = {"object": "authentication_action_context", "id": "act_1"}
    assert (await _act(ak, a, t=T0 - 30_000)).status_code == 200
    assert (await _act(ak, a, t=T0 - 30_001)).status_code == 400
    assert (await _act(ak, a, t=T0 + 30_001)).status_code == 400


async def _allow(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
    return respond.allow()


async def test_22_action_secret_not_configured(
    app: App, fake: FakeWorkOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKOS_ACTION_SECRET", raising=False)
    ak = make_authkit(app, fake, action_secret=None)
    ak.authentication_action(_allow)
    r = await _act(ak, {"object": "authentication_action_context"})
    assert (r.status_code, r.body) == (500, "Action secret not configured")


async def test_23_missing_action_handler(ak: AuthKit) -> None:
    ak.authentication_action(_allow)
    r = await _act(ak, {"object": "user_registration_action_context", "user_data": {}})
    assert (r.status_code, r.body) == (500, "No handler for user_registration actions")


async def test_24_backfill_inserts_missing_users_in_order(
    app: App, ak: AuthKit, fake: FakeWorkOS, post: Post, rec: Recorder
) -> None:
    await post(ev("event_0", "user.created", user("user_2", D1, first_name="Mine")))
    rec.calls.clear()
    fake.users = [
        user("user_1", D1),
        user("user_2", D2, first_name="Theirs"),
        user("user_3", D1, future_field=1),
    ]
    fake.page_size = 2
    assert await ak.start_backfill() == "started"
    await run_until_idle(app)
    assert [(await ak.get_auth_user(u)) is not None for u in ("user_1", "user_3")] == [True] * 2
    mine = await ak.get_auth_user("user_2")
    assert mine is not None and mine.first_name == "Mine"
    assert [(e.event, e.data["id"], e.data["object"]) for e in rec.calls] == [
        ("user.created", "user_1", "user"),
        ("user.created", "user_3", "user"),
    ]
    reqs = fake.requests_to("/user_management/users")
    assert reqs == [
        {"limit": ["100"], "order": ["asc"]},
        {"limit": ["100"], "order": ["asc"], "after": ["user_2"]},
    ]
    assert await ak.backfill_status() is None
    u3 = await ak.get_auth_user("user_3")
    assert u3 is not None and u3.model_extra == {"future_field": 1}


async def test_25_backfill_is_single_flight(app: App, ak: AuthKit, fake: FakeWorkOS) -> None:
    assert await ak.start_backfill() == "started"
    assert await ak.start_backfill() == "busy"
    assert (await ak.workpool.diagnostics()).live == 1  # one job queued, not two
    await run_until_idle(app)
    assert len(fake.requests_to("/user_management/users")) == 1


async def test_26_backfill_failure_keeps_the_cursor(
    app: App, clock: TestClock, ak: AuthKit, fake: FakeWorkOS, rec: Recorder
) -> None:
    fake.users = [user("user_1", D1), user("user_2", D1), user("user_3", D1)]
    fake.page_size = 2
    fake.fail_users_after = "user_2"
    assert await ak.start_backfill() == "started"
    await run_until_idle(app)
    calls = lambda: len(fake.requests_to("/user_management/users"))  # noqa: E731
    assert calls() == 2  # page 1, then the first failure of page 2
    for wait in (1_000, 2_000, 4_000, 8_000):
        clock.advance(wait - 1)
        await run_until_idle(app)
        before = calls()
        clock.advance(1)
        await run_until_idle(app)
        assert calls() == before + 1
    status = await ak.backfill_status()
    assert status is not None and status["state"] == "failed" and status["cursor"] == "user_2"
    assert "boom" in status["error"] and calls() == 6
    assert [e.data["id"] for e in rec.calls] == ["user_1", "user_2"]
    fake.fail_users_after = "never"
    assert await ak.start_backfill() == "resumed"
    await run_until_idle(app)
    assert fake.requests_to("/user_management/users")[-1]["after"] == ["user_2"]
    assert [e.data["id"] for e in rec.calls] == ["user_1", "user_2", "user_3"]
    assert await ak.backfill_status() is None


async def test_27_reconcile_pull(
    app: App, ak: AuthKit, fake: FakeWorkOS, post: Post, rec: Recorder
) -> None:
    e1 = ev("event_1", "user.created", user("user_1", D1))
    await post(e1)
    rec.calls.clear()
    e8 = ev("event_8", "user.updated", user("user_1", D2, last_name="Pulled"))
    e1["created_at"] = e8["created_at"] = "2023-11-14T22:10:00.000Z"
    fake.events = [e1, e8]
    assert await ak.reconcile() == 2
    (q,) = fake.requests_to("/events")
    assert q["range_start"] == ["2023-11-14T22:09:00.000Z"]
    assert q["events"] == ["user.created", "user.updated", "user.deleted"]
    assert rec.types() == ["user.updated"] and rec.calls[0].id == "event_8"
    u = await ak.get_auth_user("user_1")
    assert u is not None and u.last_name == "Pulled"
    assert await ak.cursor() == "event_8"
    await post(ev("event_9", "user.created", user("user_7", D1)))
    assert await ak.cursor() == "event_8"
    # through the workpool, from the cursor: no range_start any more
    await ak.start_reconcile()
    await run_until_idle(app)
    assert fake.requests_to("/events")[-1]["after"] == ["event_8"]
    assert "range_start" not in fake.requests_to("/events")[-1]


async def test_28_missing_configuration(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("WORKOS_CLIENT_ID", "WORKOS_API_KEY", "WORKOS_WEBHOOK_SECRET"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(AuthKitConfigError) as err:
        AuthKit(app)
    assert str(err.value) == (
        "Missing environment variables: WORKOS_CLIENT_ID, WORKOS_API_KEY, WORKOS_WEBHOOK_SECRET"
    )
    monkeypatch.setenv("WORKOS_CLIENT_ID", "client_test")
    monkeypatch.setenv("WORKOS_WEBHOOK_SECRET", "wh")
    with pytest.raises(AuthKitConfigError) as err:
        AuthKit(app)
    assert str(err.value) == "Missing environment variables: WORKOS_API_KEY"
    assert app.components.of_kind("workos") == []


async def test_29_auth_config_providers(app: App, fake: FakeWorkOS) -> None:
    ak = make_authkit(app, fake, api_hostname="auth.example.com")
    first, second = ak.auth_config_providers()
    assert first == {
        "type": "customJwt",
        "issuer": "https://auth.example.com/",
        "algorithm": "RS256",
        "jwks": "https://api.workos.com/sso/jwks/client_test",
        "applicationID": "client_test",
    }
    assert second["issuer"] == "https://auth.example.com/user_management/client_test"
    assert second["jwks"] == first["jwks"] and "applicationID" not in second


async def test_30_custom_paths(app: App, fake: FakeWorkOS) -> None:
    ak = make_authkit(app, fake, webhook_path="/hooks/workos")
    api = FastAPI()
    api.include_router(authkit_router(ak))
    body = json.dumps(ev("event_1", "session.created", {"id": "s"})).encode()
    headers = {"WorkOS-Signature": sign_header(body, T0, WH), "content-type": "application/json"}
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ok = await client.post("/hooks/workos", content=body, headers=headers)
        assert ok.status_code == 200 and ok.text == "OK"
        missing = await client.post("/workos/webhook", content=body, headers=headers)
        assert missing.status_code == 404
    assert (await ak.event_record("event_1") or {}).get("state") == "done"
    assert post_to(ak) is not None
