"""AuthKit beyond the spec's scenarios: bad input writes nothing, the signature
scheme against the official SDK as an oracle, action fallbacks, access tokens
against the fake JWKS, concurrency, and crashed or restarted processes."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workos import AsyncWorkOSClient

from rkit import App, ConfigError, TestClock, scripts
from rkit import keys as rkit_keys
from rkit.integrations.workos import (
    ActionResponder,
    ActionVerdict,
    AuthKit,
    AuthKitConfigError,
    InvalidToken,
    JWKSUnavailable,
    iso_ms_z,
    parse_ms,
    verify_signature,
)
from rkit.testing import peer_app, run_until_idle

from .conftest import ACT, T0, WH, Post, Recorder, make_authkit, post_to, workos_keys
from .fake import OTHER_KEY, FakeWorkOS, sign_header, user

D1 = "2024-01-01T00:00:00.000Z"
D2 = "2024-01-02T00:00:00.000Z"


def ev(eid: str, etype: str, data: Any) -> dict[str, Any]:
    return {"id": eid, "event": etype, "data": data}


def signed(body: bytes, t: int = T0, secret: str = WH) -> dict[str, str]:
    return {"WorkOS-Signature": sign_header(body, t, secret)}


# -- bad input: a clear 4xx and nothing written ---------------------------------------

MALFORMED: list[bytes] = [
    b"{not json",
    b"[1, 2]",
    b'"a string"',
    b"\xff\xfe{}",
    b'{"id": "e", "event": "user.created", "data": {"id": "u"}, "x": NaN}',
    json.dumps({"event": "user.created", "data": user("u", D1)}).encode(),
    json.dumps({"id": "e", "data": user("u", D1)}).encode(),
    json.dumps({"id": 5, "event": "user.created", "data": user("u", D1)}).encode(),
    json.dumps({"id": "e", "event": "user.created", "data": "x"}).encode(),
    json.dumps({"id": "e", "event": "user.created", "data": {"email": "a@b"}}).encode(),
    json.dumps({"id": "e", "event": "user.updated", "data": user("u", D1, external_id=3)}).encode(),
    json.dumps({"id": "e", "event": "user.created", "data": user("", D1)}).encode(),
    json.dumps({"id": "e" * 1025, "event": "user.created", "data": user("u", D1)}).encode(),
    json.dumps({"id": "e", "event": "user.created", "data": user("u" * 1025, D1)}).encode(),
    json.dumps({"id": "e", "event": "session.created", "data": {}, "context": [1]}).encode(),
    json.dumps({"id": "e", "event": "session.created", "data": {}, "created_at": 5}).encode(),
    json.dumps({"id": "e", "event": "user.created", "data": {"id": "u"}}).encode(),
    json.dumps({"id": "e", "event": "user.updated", "data": user("u", D1, email=None)}).encode(),
    json.dumps(
        {"id": "e", "event": "user.created", "data": user("u", D1, email_verified="maybe")}
    ).encode(),
]


async def test_malformed_bodies_are_400_and_write_nothing(
    app: App, ak: AuthKit, rec: Recorder
) -> None:
    for body in MALFORMED:
        r = await ak.handle_webhook(body, signed(body))
        assert r.status_code == 400 and r.body.startswith("Invalid payload"), body
    assert await workos_keys(app) == {}
    assert rec.calls == []


BAD_HEADERS = [
    "",
    "t={t},v1={mac}",  # no space
    "t={t}, v1={mac}, v1={mac}",
    "v1={mac}, t={t}",
    "t={t}, v0={mac}",
    "t=abc, v1={mac}",
    "t={t}, v1={mac}0",
    "t={t}, v1=",
    "t=-{t}, v1={mac}",
    "t={t}, v1=\u00e9{mac}",
]


async def test_forged_or_malformed_signature_headers(app: App, ak: AuthKit, rec: Recorder) -> None:
    body = json.dumps(ev("event_1", "user.created", user("user_1", D1))).encode()
    good = sign_header(body, T0, WH)
    mac = good.split("v1=")[1]
    for shape in BAD_HEADERS:
        r = await ak.handle_webhook(body, {"WorkOS-Signature": shape.format(t=T0, mac=mac)})
        assert r.status_code == 400, shape
    assert await workos_keys(app) == {}
    # the body changed by one byte after signing
    tampered = body.replace(b"user_1", b"user_2")
    assert (await ak.handle_webhook(tampered, {"WorkOS-Signature": good})).status_code == 400
    assert await workos_keys(app) == {} and rec.calls == []


async def test_oversized_body_is_413_and_writes_nothing(app: App, fake: FakeWorkOS) -> None:
    ak = make_authkit(app, fake, max_body_bytes=2_000)
    body = json.dumps(ev("event_1", "user.created", user("u", D1, name="x" * 3_000))).encode()
    assert (await ak.handle_webhook(body, signed(body))).status_code == 413
    assert (await ak.handle_action(body, signed(body, secret=ACT))).status_code == 413
    assert await workos_keys(app) == {}


async def test_secrets_are_required_and_never_stored(
    app: App, fake: FakeWorkOS, monkeypatch: pytest.MonkeyPatch, post: Post
) -> None:
    monkeypatch.delenv("WORKOS_WEBHOOK_SECRET", raising=False)
    other = peer_app(app)
    try:
        with pytest.raises(AuthKitConfigError, match="WORKOS_WEBHOOK_SECRET"):
            make_authkit(other, fake, webhook_secret="")
    finally:
        await other.aclose()
    await post(ev("event_1", "user.created", user("user_1", D1)))
    fake.users = [user("user_2", D1)]
    ak = app.components.get("workos", "default")
    assert isinstance(ak, AuthKit)
    await ak.start_backfill()
    await run_until_idle(app)
    dump = json.dumps(await _dump(app))
    assert WH not in dump and ACT not in dump and "sk_test" not in dump


async def _dump(app: App) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, kind in (await workos_keys(app)).items():
        if kind == "hash":
            out[key] = await app.redis.hgetall(key)
        elif kind == "string":
            out[key] = await app.redis.get(key)
        elif kind == "zset":
            out[key] = await app.redis.zrange(key, 0, -1)
        elif kind == "set":
            out[key] = sorted(await app.redis.smembers(key))
    return out


def test_bad_options_are_config_errors() -> None:
    app = App()
    base = {"client_id": "c", "api_key": "k", "webhook_secret": "w"}
    for bad in (
        {"webhook_path": "workos/webhook"},
        {"webhook_path": "/webhook"},
        {"action_path": "/workos/webhook"},
        {"lease_ms": 0},
        {"action_fallback": "Maybe"},
        {"additional_event_types": "user.created"},
        {"jwt_leeway_s": -1},
    ):
        with pytest.raises(ConfigError):
            AuthKit(app, **base, **bad)  # type: ignore[arg-type]
    AuthKit(app, **base)
    with pytest.raises(ConfigError, match="already has an AuthKit"):
        AuthKit(app, **base)
    app.components.add_router("/hooks", "tests._tally:hook_router", public=True)
    with pytest.raises(ConfigError, match="public routes own /hooks/"):
        AuthKit(app, **base, instance="b", webhook_path="/hooks/workos", action_path="/b/a")
    assert len(app.components.of_kind("workos")) == 1


# -- the signature scheme, checked by the official SDK ---------------------------------


async def test_signature_scheme_matches_the_official_sdk() -> None:
    client = AsyncWorkOSClient(api_key="sk", client_id="c", base_url="http://127.0.0.1:9")
    body = json.dumps(ev("event_1", "user.created", user("u", D1))).encode()
    now = int(time.time() * 1000)
    header = sign_header(body, now, WH)
    client.webhooks.verify_header(event_body=body, event_signature=header, secret=WH)
    client.actions.verify_header(payload=body, sig_header=header, secret=WH)
    assert verify_signature(header, body, WH, 180_000, now)
    with pytest.raises(ValueError):
        client.webhooks.verify_header(event_body=body, event_signature=header, secret="x")
    assert not verify_signature(header, body, "x", 180_000, now)
    await client.close()


def test_timestamps() -> None:
    assert iso_ms_z(T0 - 300_000) == "2023-11-14T22:09:00.000Z"
    assert iso_ms_z(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert parse_ms("2024-01-01T00:00:00.001Z") - parse_ms("2024-01-01T00:00:00Z") == 1
    assert parse_ms("2024-01-01T00:00:00+01:00") == parse_ms("2023-12-31T23:00:00Z")
    assert parse_ms("garbage") == parse_ms(None) == 0


async def test_iso_staleness_compares_instants_not_strings(
    ak: AuthKit, post: Post, rec: Recorder
) -> None:
    # "…00Z" > "…00.001Z" as strings: the reference would drop this newer update (W5)
    await post(ev("event_1", "user.created", user("user_1", "2024-01-01T00:00:00Z")))
    await post(ev("event_2", "user.updated", user("user_1", "2024-01-01T00:00:00.001Z", name="B")))
    u = await ak.get_auth_user("user_1")
    assert u is not None and u.name == "B"
    assert rec.types() == ["user.created", "user.updated"]


# -- actions ---------------------------------------------------------------------------


async def _act(ak: AuthKit, action: dict[str, Any]) -> Any:
    body = json.dumps(action, ensure_ascii=False).encode()
    return await ak.handle_action(body, signed(body, secret=ACT))


async def test_deny_message_with_non_ascii_is_signed_raw(ak: AuthKit) -> None:
    @ak.authentication_action
    async def deny(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
        return respond.deny("Zugang verweigert: Größe ✓")

    r = await _act(ak, {"object": "authentication_action_context", "id": "a"})
    assert "Größe ✓" in r.body  # raw, as JavaScript's JSON.stringify writes it
    parsed = json.loads(r.body)
    text = json.dumps(parsed["payload"], separators=(",", ":"), ensure_ascii=False)
    want_text = (
        '{"timestamp":1700000040000,"verdict":"Deny","error_message":"Zugang verweigert: Größe ✓"}'
    )
    assert text == want_text
    import hashlib
    import hmac

    want = hmac.new(ACT.encode(), f"1700000040000.{text}".encode(), hashlib.sha256).hexdigest()
    assert parsed["signature"] == want


async def test_deny_without_message_and_allow_ignore_the_message(ak: AuthKit) -> None:
    @ak.authentication_action
    async def deny(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
        return (
            respond.deny("")
            if action["id"] == "a"
            else ActionVerdict("authentication", "Allow", "ignored")
        )

    for aid in ("a", "b"):
        r = await _act(ak, {"object": "authentication_action_context", "id": aid})
        assert "error_message" not in json.loads(r.body)["payload"]


@pytest.mark.parametrize("fallback", [None, "Deny", "Allow"])
async def test_handler_error_or_timeout_answers_the_default_verdict(
    app: App, fake: FakeWorkOS, fallback: Any
) -> None:
    ak = make_authkit(app, fake, action_fallback=fallback, action_timeout_s=0.02)
    never = asyncio.Event()

    @ak.authentication_action
    async def boom(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
        raise RuntimeError("handler down")

    @ak.user_registration_action
    async def slow(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
        await never.wait()
        return respond.allow()

    for obj in ("authentication_action_context", "user_registration_action_context"):
        r = await _act(ak, {"object": obj, "id": "a"})
        if fallback is None:
            assert (r.status_code, r.body) == (500, "Error processing action")
        else:
            payload = json.loads(r.body)["payload"]
            assert r.status_code == 200 and payload["verdict"] == fallback
            assert ("error_message" in payload) == (fallback == "Deny")


async def test_actions_write_nothing(app: App, ak: AuthKit) -> None:
    @ak.authentication_action
    async def allow(action: dict[str, Any], respond: ActionResponder) -> ActionVerdict:
        return respond.allow()

    assert (await _act(ak, {"object": "authentication_action_context"})).status_code == 200
    body = b"{oops"
    assert (await ak.handle_action(body, signed(body, secret=ACT))).status_code == 400
    assert (await ak.handle_action(b"{}", {})).status_code == 400
    assert await workos_keys(app) == {}


# -- access tokens ---------------------------------------------------------------------


async def test_access_tokens_against_the_jwks(
    ak: AuthKit, fake: FakeWorkOS, post: Post, clock: TestClock
) -> None:
    await post(ev("event_1", "user.created", user("user_1", D1, first_name="Ann")))
    exp = T0 + 300_000
    u = await ak.user_from_token(fake.token("user_1", exp_ms=exp))
    assert u is not None and u.first_name == "Ann"
    assert await ak.user_from_token(fake.token("user_404", exp_ms=exp)) is None
    first_issuer = fake.token("user_1", exp_ms=exp, iss="https://api.workos.com/")
    assert (await ak.verify_access_token(first_issuer))["sub"] == "user_1"
    assert fake.jwks_hits == 1  # cached
    bad = [
        fake.token("user_1", exp_ms=T0),  # expired on the App's clock
        fake.token("user_1", exp_ms=exp, key=OTHER_KEY),
        fake.token("user_1", exp_ms=exp, iss="https://evil.example/"),
        fake.token("user_1", exp_ms=exp, aud="client_other"),
        fake.token("user_1", exp_ms=exp, nbf=(T0 + 60_000) // 1000),
        "not.a.token",
        "",
    ]
    for token in bad:
        with pytest.raises(InvalidToken):
            await ak.verify_access_token(token)
    import jwt

    hs = jwt.encode({"sub": "user_1", "exp": exp // 1000}, "s" * 32, algorithm="HS256")
    with pytest.raises(InvalidToken, match="RS256"):
        await ak.verify_access_token(hs)
    assert fake.jwks_hits == 1
    clock.advance(600_000)  # the cache expires: fetched again
    with pytest.raises(InvalidToken, match="expired"):
        await ak.verify_access_token(fake.token("user_1", exp_ms=exp))
    assert fake.jwks_hits == 2


async def test_an_unknown_key_id_refetches_at_most_every_30_s(
    ak: AuthKit, fake: FakeWorkOS, clock: TestClock
) -> None:
    import jwt

    exp = T0 + 3_600_000
    rotated = jwt.encode(
        {"sub": "u", "iss": ak.issuers()[1], "exp": exp // 1000},
        fake.key,
        algorithm="RS256",
        headers={"kid": "key_2"},
    )
    for _ in range(3):
        with pytest.raises(InvalidToken, match="unknown signing key"):
            await ak.verify_access_token(rotated)
    assert fake.jwks_hits == 1
    clock.advance(30_000)
    with pytest.raises(InvalidToken):
        await ak.verify_access_token(rotated)
    assert fake.jwks_hits == 2


# -- concurrency -----------------------------------------------------------------------


async def test_concurrent_redeliveries_apply_and_call_once(
    app: App, ak: AuthKit, rec: Recorder
) -> None:
    post = post_to(ak)
    events = [ev(f"event_{i}", "user.created", user(f"user_{i}", D1)) for i in range(40)]
    answers = await asyncio.gather(*(post(e) for e in events * 3))
    assert {r.status_code for r in answers} <= {200, 409}
    # a 409 (claimed by a concurrent delivery) is redelivered by WorkOS later
    for e, r in zip(events * 3, answers, strict=True):
        if r.status_code == 409:
            assert (await post(e)).status_code == 200
    assert sorted(e.data["id"] for e in rec.calls) == sorted(f"user_{i}" for i in range(40))
    assert await app.redis.get(f"{ak.prefix}:seq") == "40"


async def test_concurrent_out_of_order_updates_end_at_the_newest(
    ak: AuthKit, rec: Recorder
) -> None:
    post = post_to(ak)
    stamps = [f"2024-01-{d:02d}T00:00:00.000Z" for d in range(1, 29)]
    events = [
        ev(f"event_{i}", "user.updated", user("user_1", s, name=s)) for i, s in enumerate(stamps)
    ]
    events.reverse()
    answers = await asyncio.gather(*(post(e) for e in events))
    assert {r.status_code for r in answers} == {200}
    u = await ak.get_auth_user("user_1")
    assert u is not None and u.name == stamps[-1]
    # the newest update always applies; each applied update is handed over once
    names = [e.data["name"] for e in rec.calls]
    assert stamps[-1] in names and len(names) == len(set(names))


async def test_two_processes_share_one_directory(
    app: App, ak: AuthKit, fake: FakeWorkOS, rec: Recorder
) -> None:
    other = peer_app(app)
    rec2 = Recorder()
    try:
        ak2 = make_authkit(other, fake)
        ak2.on("user.created")(rec2)
        events = [ev(f"event_{i}", "user.created", user(f"user_{i}", D1)) for i in range(20)]
        answers = await asyncio.gather(
            *(post_to(ak)(e) for e in events), *(post_to(ak2)(e) for e in events)
        )
        assert {r.status_code for r in answers} <= {200, 409}
        for e in events:  # redeliver what was answered 409
            assert (await post_to(ak2)(e)).status_code == 200
        assert len(rec.calls) + len(rec2.calls) == 20
        u = await ak2.get_auth_user("user_7")
        assert u is not None and u.id == "user_7"
        await ak2.aclose()
    finally:
        await other.aclose()


# -- crashes and restarts --------------------------------------------------------------


async def _die_holding(ak: AuthKit, event: dict[str, Any]) -> None:
    """Leave Redis as a process killed inside the handler leaves it: the event
    received (user applied, claim held under its token), no release, no done."""
    enc = rkit_keys.encode(event["data"]["id"])
    receive = scripts.load("workos", "event_receive")
    data = {k: v for k, v in event["data"].items() if k != "object"}
    reply = await receive(
        ak.app.redis,
        [
            ak._evt_key(event["id"]),
            f"{ak.prefix}:u:{enc}",
            f"{ak.prefix}:tomb:{enc}",
            f"{ak.prefix}:seq",
            f"{ak.prefix}:cursor",
        ],
        [
            *(str(ak.app.clock.now_ms()), ak.prefix, "60000", "dead", event["event"], "1000000"),
            *("created", event["data"]["id"], json.dumps(data), str(parse_ms(D1)), ""),
            *("1000", "1", ""),
        ],
    )
    assert reply[0] == "CALL"


async def test_a_process_killed_mid_event_is_taken_over_after_its_lease(
    app: App, ak: AuthKit, fake: FakeWorkOS, rec: Recorder, clock: TestClock
) -> None:
    event = ev("event_1", "user.created", user("user_1", D1))
    await _die_holding(ak, event)
    other = peer_app(app)
    try:
        ak2 = make_authkit(other, fake)
        ak2.on("user.created")(rec)
        assert (await post_to(ak2)(event)).status_code == 409  # the lease still runs
        clock.advance(60_000)
        assert (await post_to(ak2)(event)).status_code == 200
        assert rec.types() == ["user.created"]
        assert await other.redis.get(f"{ak.prefix}:seq") == "1"  # applied exactly once
        assert (await post_to(ak2)(event)).status_code == 200
        assert len(rec.calls) == 1
        await ak2.aclose()
    finally:
        await other.aclose()


async def test_retention_and_tombstones_are_bounded(app: App, ak: AuthKit, post: Post) -> None:
    await post(ev("event_1", "user.created", user("user_1", D1)))
    await post(ev("event_2", "user.deleted", user("user_1", D2)))
    ttl = await app.redis.pttl(ak._evt_key("event_1"))
    assert 7 * 86_400_000 - 60_000 < ttl <= 7 * 86_400_000
    tomb = await app.redis.pttl(f"{ak.prefix}:tomb:{rkit_keys.encode('user_1')}")
    assert 30 * 86_400_000 - 60_000 < tomb <= 30 * 86_400_000
    keys = await workos_keys(app)
    assert not any(":ix:ext:" in k or ":u:" in k for k in keys)


async def test_a_backfill_handler_failure_resumes_with_the_owed_calls(
    app: App, ak: AuthKit, fake: FakeWorkOS, rec: Recorder, clock: TestClock
) -> None:
    fake.users = [user(f"user_{i}", D1) for i in range(5)]
    fake.page_size = 3
    rec.fail["user.created"] = 0

    calls: list[str] = []
    original = rec.__call__

    async def flaky(event: Any) -> None:
        calls.append(event.data["id"])
        if event.data["id"] == "user_1" and calls.count("user_1") == 1:
            raise RuntimeError("handler down")
        await original(event)

    ak.on("user.created")(flaky)
    assert await ak.start_backfill() == "started"
    await run_until_idle(app)
    status = await ak.backfill_status()
    assert status is not None and status["pending"] == 2 and status["pages"] == 1
    clock.advance(1_000)
    other = peer_app(app)  # another worker process picks the retry up
    try:
        ak2 = make_authkit(other, fake)
        ak2.on("user.created")(flaky)
        await run_until_idle(other)
    finally:
        await other.aclose()
    assert [e.data["id"] for e in rec.calls] == [f"user_{i}" for i in range(5)]
    assert calls == ["user_0", "user_1", "user_1", "user_2", "user_3", "user_4"]
    assert await ak.backfill_status() is None
    assert await app.redis.get(f"{ak.prefix}:seq") == "5"


async def test_a_canceled_backfill_job_fails_the_backfill_and_start_resumes_it(
    app: App, ak: AuthKit, fake: FakeWorkOS
) -> None:
    fake.users = [user("user_1", D1)]
    assert await ak.start_backfill() == "started"
    # canceled before it began (the on_complete marks the backfill failed)
    work_id = await app.redis.hget(f"{ak.prefix}:backfill", "work_id")
    await ak.workpool.cancel(work_id)
    await run_until_idle(app)
    status = await ak.backfill_status()
    assert status is not None and status["state"] == "failed"  # on_complete: canceled
    assert await ak.start_backfill() == "resumed"
    await run_until_idle(app)
    assert await ak.backfill_status() is None and await ak.get_auth_user("user_1") is not None


async def test_a_backfill_whose_job_was_never_queued_is_taken_over(
    app: App, ak: AuthKit, fake: FakeWorkOS
) -> None:
    """A process that died between ``backfill_start`` and the enqueue leaves a
    ``running`` record whose job the pool never had: the next start takes it over."""
    fake.users = [user("user_1", D1)]
    start = scripts.load("workos", "backfill_start")
    await start(app.redis, [f"{ak.prefix}:backfill"], [str(T0), ak.prefix, "never_queued", ""])
    assert await ak.start_backfill() == "resumed"
    assert await ak.start_backfill() == "busy"
    await run_until_idle(app)
    assert await ak.backfill_status() is None and await ak.get_auth_user("user_1") is not None


async def test_users_are_listed_in_insertion_order(ak: AuthKit, post: Post) -> None:
    for i in range(5):
        await post(ev(f"event_{i}", "user.created", user(f"user_{i}", D1)))
    await post(ev("event_d", "user.deleted", user("user_2", D2)))
    assert await ak.count_users() == 4
    page = await ak.list_users(limit=3)
    assert [u.id for u in page] == ["user_0", "user_1", "user_3"]
    rank = await ak.user_rank("user_3")
    assert rank == 4
    assert [u.id for u in await ak.list_users(after_rank=rank)] == ["user_4"]
    with pytest.raises(ConfigError):
        await ak.list_users(limit=0)


async def test_a_jwks_outage_is_not_an_invalid_token(app: App, fake: FakeWorkOS) -> None:
    ak = make_authkit(app, fake, base_url="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(JWKSUnavailable):
        await ak.verify_access_token(fake.token("user_1", exp_ms=T0 + 60_000))
    await ak.aclose()


async def test_stale_timestamps_write_nothing(app: App, ak: AuthKit, rec: Recorder) -> None:
    for t in (T0 - 180_001, T0 + 180_001, 0):
        body = json.dumps(ev(f"event_{t}", "user.created", user("user_1", D1))).encode()
        r = await ak.handle_webhook(body, signed(body, t=t))
        assert (r.status_code, r.body) == (400, "Invalid signature")
    assert await workos_keys(app) == {} and rec.calls == []


_EXAMPLES = itertools.count()


@pytest.mark.parametrize("backend", ["fake"], indirect=True)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_any_delivery_order_ends_in_the_same_state(
    app: App, fake: FakeWorkOS, data: st.DataObject
) -> None:
    """Property: for a realistic history (created first, updates, maybe a final
    deletion, each delivered once, possibly twice), every delivery order ends with
    the newest version, or no user when deleted; the handler ran once per applied
    change and never for the first event of a redelivered pair."""
    n_updates = data.draw(st.integers(0, 4))
    deleted = data.draw(st.booleans())
    uid = f"user_p{next(_EXAMPLES)}"  # the app lives across examples: a fresh user each
    stamps = [f"2024-01-{d + 1:02d}T00:00:00.000Z" for d in range(n_updates + 2)]
    history = [ev(f"{uid}_c", "user.created", user(uid, stamps[0], name="v0"))]
    history += [
        ev(f"{uid}_u{i}", "user.updated", user(uid, stamps[i], name=f"v{i}"))
        for i in range(1, n_updates + 1)
    ]
    if deleted:
        history.append(ev(f"{uid}_d", "user.deleted", user(uid, stamps[n_updates + 1])))
    order = data.draw(st.permutations(history + data.draw(st.lists(st.sampled_from(history)))))
    ak = app.components.get("workos", "default") or make_authkit(app, fake)
    seen: list[str] = []

    async def record(event: Any) -> None:
        seen.append(event.id)

    for t in ("user.created", "user.updated", "user.deleted"):
        ak.on(t)(record)
    for e in order:
        assert (await post_to(ak)(e)).status_code == 200
    stored = await ak.get_auth_user(uid)
    if deleted:
        assert stored is None
    else:
        assert stored is not None and stored.name == f"v{n_updates}"
    assert len(seen) == len(set(seen))  # each event's handler at most once


async def test_the_server_clock_judges_signatures(fake: FakeWorkOS, redis_url: str) -> None:
    """Without a test clock the tolerance is judged on Redis TIME (its offset from
    this host's clock cached): a fresh signature passes, one 181 s old does not."""
    for app in (App(namespace="sc"), App(redis_url, namespace="sc")):
        ak = make_authkit(app, fake)
        now = int(time.time() * 1000)
        for t, want in ((now, 200), (now - 181_000, 400), (now + 181_000, 400), (now, 200)):
            body = json.dumps(ev(f"event_{t}_{want}", "session.created", {"id": "s"})).encode()
            assert (await ak.handle_webhook(body, signed(body, t=t))).status_code == want
        assert abs(await ak.now_ms() - await app.server_time()) < 1_000
        await ak.aclose()
        await app.aclose()
