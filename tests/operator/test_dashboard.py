"""``/dashboard`` over HTTP: the login form and no data without the token, a signed
HttpOnly session cookie after it, CSRF-checked actions (cancel work, replay a dead
letter, reset a limit, cancel a retrier run), refusals that write nothing, and a
panel and an action that a later component registers through the hooks."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import httpx
import pytest
from rkit.api import create_api

from rkit import (
    MINUTE,
    App,
    OnCompleteArgs,
    Panel,
    Presence,
    RateLimiter,
    RowAction,
    Section,
    TokenBucket,
    Workpool,
    operator_hooks,
)
from rkit.retrier import ActionRetrier
from rkit.testing import run_until_idle
from rkit.workpool import RetryBehavior

from .._state import snapshot


async def make_client(app: App, token: str | None = "tok") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_api(app, admin_token=token))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with await make_client(app) as c:
        yield c


async def login(c: httpx.AsyncClient, token: str = "tok") -> str:
    r = await c.post("/dashboard/login", json={"token": token})
    assert r.status_code == 200, r.text
    page = await c.get("/dashboard")
    m = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
    assert m, page.text[:500]
    return m.group(1)


def register(app: App) -> None:
    @app.action(name="work")
    async def work(i: int) -> int:
        return i

    @app.action(name="cb_fails")
    async def cb_fails(args: OnCompleteArgs) -> None:
        raise RuntimeError("callback down")


async def test_without_the_token_only_the_login_form(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    pool = Workpool(app, "secret-pool")
    await pool.enqueue("work", {"i": 1})
    r = await client.get("/dashboard")
    assert r.status_code == 200
    assert '<form id="login"' in r.text and "secret-pool" not in r.text
    assert "csrf-token" not in r.text
    for path in ("/dashboard/data", "/dashboard/panels"):
        r = await client.get(path)
        assert r.status_code == 401 and "secret-pool" not in r.text
    r = await client.post("/dashboard/login", json={"token": "wrong"})
    assert r.status_code == 401 and "set-cookie" not in r.headers
    r = await client.post(
        "/dashboard/login",
        content=b"token=tok",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415  # a cross-site form post cannot sign in
    for bad in (b"{", b"\xff", b'{"token": NaN}', b"[1]"):
        r = await client.post(
            "/dashboard/login", content=bad, headers={"content-type": "application/json"}
        )
        assert r.status_code in (401, 422) and "set-cookie" not in r.headers, bad
    page = await client.get("/dashboard")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    # a forged cookie is no session
    client.cookies.set("rkit_dashboard", "9999999999.abc.00", path="/dashboard")
    assert (await client.get("/dashboard/data")).status_code == 401
    # the static files are public (no data in them)
    js = await client.get("/dashboard/static/dashboard.js")
    assert js.status_code == 200 and "X-CSRF-Token" in js.text
    assert (await client.get("/dashboard/static/../app.py")).status_code == 404


async def test_no_admin_token_configured(app: App) -> None:
    async with await make_client(app, token=None) as c:
        r = await c.get("/dashboard")
        assert "No admin token is configured" in r.text
        assert (await c.post("/dashboard/login", json={"token": ""})).status_code == 403


async def test_session_cookie_and_panels(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    pool = Workpool(app, "emails", max_parallelism=1)
    ids = [await pool.enqueue("work", {"i": i}) for i in range(3)]
    RateLimiter(app, {"search": TokenBucket(rate=10, period=MINUTE)}, name="web")
    presence = Presence(app)
    await presence.heartbeat("lobby", "ann", "s1", 10_000)
    r = await client.post("/dashboard/login", json={"token": "tok"})
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    data = (await client.get("/dashboard/data")).json()
    panels = {p["kind"]: p for p in data["panels"]}
    (emails,) = panels["workpool"]["sections"]
    assert emails["stats"]["running"] == 1 and emails["stats"]["pending"] == 2
    assert [row["work_id"] for row in emails["rows"]] == ids
    assert emails["row_actions"][0][0]["action"] == "workpool.cancel"
    (web,) = panels["rate_limit"]["sections"]
    assert web["rows"][0]["name"] == "search" and web["rows"][0]["value"] == 10
    (default,) = panels["presence"]["sections"]
    assert default["rows"][0]["who is online"] == "ann"
    html = (await client.get("/dashboard/panels")).text
    assert 'data-section="workpool/emails"' in html and 'data-stat="running">1<' in html
    # what the page shows is escaped
    await presence.heartbeat("<script>x</script>", "bob", "s2", 10_000)
    html = (await client.get("/dashboard/panels")).text
    assert "<script>x" not in html and "&lt;script&gt;x" in html


async def test_actions_need_the_csrf_token(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    pool = Workpool(app, "emails", max_parallelism=0)
    wid = await pool.enqueue("work", {"i": 1})
    csrf = await login(client)
    before = await snapshot(app)
    url = "/dashboard/actions/workpool.cancel"
    args = {"pool": "emails", "work_id": wid}
    r = await client.post(url, json=args)
    assert r.status_code == 403
    r = await client.post(url, json=args, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    r = await client.post(
        url, json=args, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    assert await snapshot(app) == before
    r = await client.post(url, json=args, headers={"X-CSRF-Token": csrf, "Origin": "http://t"})
    assert r.status_code == 200 and r.json()["result"] == {"work_id": wid, "outcome": "canceled"}
    d = await pool.diagnostics()
    assert d.stats["canceled"] == 1 and d.waiting == 0
    # signing out ends the session
    assert (
        await client.post("/dashboard/logout", headers={"X-CSRF-Token": csrf})
    ).status_code == 200
    assert (await client.get("/dashboard/data")).status_code == 401


async def test_bad_action_input_writes_nothing(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    pool = Workpool(app, "emails", max_parallelism=0)
    wid = await pool.enqueue("work", {"i": 1})
    RateLimiter(app, {"search": TokenBucket(rate=10, period=MINUTE)}, name="web")
    csrf = await login(client)
    h = {"X-CSRF-Token": csrf}
    before = await snapshot(app)
    cases: list[tuple[str, Any, int]] = [
        ("nope.action", {}, 404),
        ("workpool.cancel", {"pool": "emails"}, 422),
        ("workpool.cancel", {"pool": "emails", "work_id": 5}, 422),
        ("workpool.cancel", {"pool": "emails", "work_id": wid, "x": 1}, 422),
        ("workpool.cancel", {"pool": "emails", "work_id": "a" * 2000}, 422),
        ("workpool.cancel", {"pool": "other", "work_id": wid}, 404),
        ("workpool.cancel", {"pool": "emails", "work_id": "missing"}, 404),
        ("workpool.cancel", [1, 2], 422),
        ("rate_limit.reset", {"limiter": "web", "name": "other"}, 404),
        ("rate_limit.reset", {"limiter": "web", "name": "search", "key": ""}, 422),
        ("retrier.cancel", {"namespace": "none", "run_id": "r"}, 404),
    ]
    for name, body, code in cases:
        r = await client.post(f"/dashboard/actions/{name}", json=body, headers=h)
        assert r.status_code == code, (name, body, r.text)
        assert wid not in r.text or code != 422 or "work_id" in body
    r = await client.post(
        "/dashboard/actions/workpool.cancel",
        content=b'{"pool": NaN}',
        headers={**h, "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert await snapshot(app) == before


async def test_replay_a_dead_letter_and_reset_a_limit(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    pool = Workpool(
        app,
        "emails",
        on_complete_retry=RetryBehavior(max_attempts=1, initial_backoff_ms=10, base=2),
    )
    wid = await pool.enqueue("work", {"i": 1}, on_complete="cb_fails")
    await run_until_idle(app)
    assert [d.work_id for d in await pool.dead_letters()] == [wid]
    limiter = RateLimiter(app, {"search": TokenBucket(rate=10, period=MINUTE)}, name="web")
    for _ in range(4):
        await limiter.limit("search")
    csrf = await login(client)
    h = {"X-CSRF-Token": csrf}
    data = (await client.get("/dashboard/data")).json()
    sections = {s["title"]: s for p in data["panels"] for s in p["sections"]}
    dead = sections["emails · dead letters"]
    assert dead["rows"][0]["error"] == "callback down"
    replay = dead["row_actions"][0][0]
    r = await client.post(f"/dashboard/actions/{replay['action']}", json=replay["args"], headers=h)
    assert r.json()["result"] == {"work_id": wid, "replayed": True}
    assert await pool.dead_letters() == []
    assert sections["web"]["rows"][0]["value"] == 6
    reset = sections["web"]["row_actions"][0][0]
    r = await client.post(f"/dashboard/actions/{reset['action']}", json=reset["args"], headers=h)
    assert r.status_code == 200
    assert (await limiter.get_value("search")).value == 10


async def test_cancel_a_retrier_run(app: App, client: httpx.AsyncClient) -> None:
    register(app)
    retrier = ActionRetrier(app, namespace="billing")
    run_id = await retrier.run("work", {"i": 1}, _run_after=60_000)
    csrf = await login(client)
    data = (await client.get("/dashboard/data")).json()
    (billing,) = next(p for p in data["panels"] if p["kind"] == "retrier")["sections"]
    act = billing["row_actions"][0][0]
    assert act["args"] == {"namespace": "billing", "run_id": run_id}
    r = await client.post(
        f"/dashboard/actions/{act['action']}", json=act["args"], headers={"X-CSRF-Token": csrf}
    )
    assert r.json()["result"] == {"run_id": run_id, "canceled": True}
    assert (await retrier.details(run_id)).state == "completed"


async def test_a_later_component_plugs_in(app: App, client: httpx.AsyncClient) -> None:
    """A component (e.g. crons, landing later) adds a panel and an action; a panel
    that fails shows an error without hiding the others."""
    key = app.keys.tag("crons") + ":fired"

    async def crons(a: App) -> Sequence[Section]:
        fired = int(await a.redis.get(key) or 0)
        return [
            Section(
                "nightly",
                stats={"fired": fired},
                columns=["cron", "next"],
                rows=[{"cron": "nightly", "next": datetime(2026, 1, 2, 2, 0), "lag": math.nan}],
                row_actions=[[RowAction("fire now", "crons.fire", {"cron": "nightly"})]],
                series=["fired"],
                progress={"backfill": (3, 4)},
            )
        ]

    async def fire(a: App, args: dict[str, Any]) -> dict[str, Any]:
        if args != {"cron": "nightly"}:
            raise ValueError("unknown cron")
        return {"fired": await a.redis.incr(key)}

    async def broken(a: App) -> Sequence[Section]:
        raise RuntimeError("down")

    hooks = operator_hooks(app)
    hooks.add_panel(Panel("crons", "Crons", crons, order=70))
    hooks.add_panel(Panel("broken", "Broken", broken, order=80))
    hooks.add_action("crons.fire", fire)
    csrf = await login(client)
    html = (await client.get("/dashboard/panels")).text
    assert 'data-section="crons/nightly"' in html and 'data-action="crons.fire"' in html
    assert "could not read: RuntimeError" in html
    assert 'data-spark="crons/nightly#fired"' in html
    assert '<progress value="3" max="4">75%</progress>' in html
    r = await client.post(
        "/dashboard/actions/crons.fire", json={"cron": "x"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 422
    r = await client.post(
        "/dashboard/actions/crons.fire", json={"cron": "nightly"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.json()["result"] == {"fired": 1}
    data = (await client.get("/dashboard/data")).json()
    (nightly,) = next(p for p in data["panels"] if p["kind"] == "crons")["sections"]
    assert nightly["rows"] == [{"cron": "nightly", "next": "2026-01-02 02:00:00", "lag": "nan"}]
    assert nightly["stats"] == {"fired": 1}
    kinds = [p["kind"] for p in data["panels"]]
    assert kinds.index("workpool") < kinds.index("crons") < kinds.index("broken")


async def test_sessions_survive_an_api_restart(app: App) -> None:
    """Sessions are signed, not stored: a restarted (or another) API process with the
    same token accepts the cookie; one with another token does not."""
    async with await make_client(app) as first:
        await login(first)
        cookie = first.cookies.get("rkit_dashboard")
    assert cookie
    async with await make_client(app) as second:
        second.cookies.set("rkit_dashboard", cookie, path="/dashboard")
        assert (await second.get("/dashboard/data")).status_code == 200
    async with await make_client(app, token="another") as third:
        third.cookies.set("rkit_dashboard", cookie, path="/dashboard")
        assert (await third.get("/dashboard/data")).status_code == 401
