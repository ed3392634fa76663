"""AuthKit fixtures: one fake WorkOS server per session (reset per test) and an
AuthKit on the parametrised ``app`` (fake / redis / cluster) pointed at it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from rkit import App
from rkit.integrations.workos import AuthKit, AuthKitEvent, WebhookResponse

from .fake import API_KEY, CLIENT_ID, FakeWorkOS, sign_header

T0 = 1_700_000_040_000
WH = "wh_secret"
ACT = "act_secret"


@pytest.fixture(scope="session")
def workos_server() -> Iterator[FakeWorkOS]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield FakeWorkOS(server)
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def fake(workos_server: FakeWorkOS) -> FakeWorkOS:
    workos_server.reset()
    return workos_server


class Recorder:
    """Records handler calls; ``fail`` makes the next n calls of a type raise."""

    def __init__(self) -> None:
        self.calls: list[AuthKitEvent] = []
        self.fail: dict[str, int] = {}

    async def __call__(self, event: AuthKitEvent) -> None:
        if self.fail.get(event.event, 0) > 0:
            self.fail[event.event] -= 1
            raise RuntimeError(f"handler for {event.event} failed")
        self.calls.append(event)

    def types(self) -> list[str]:
        return [e.event for e in self.calls]


def make_authkit(app: App, fake: FakeWorkOS, **kw: Any) -> AuthKit:
    opts: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "api_key": API_KEY,
        "webhook_secret": WH,
        "action_secret": ACT,
        "base_url": fake.url,
        "rng": lambda: 0.5,  # no jitter: the backfill's backoff is exact
    }
    opts.update(kw)
    return AuthKit(app, **opts)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def ak(app: App, fake: FakeWorkOS, rec: Recorder) -> AsyncIterator[AuthKit]:
    a = make_authkit(app, fake)
    for t in ("user.created", "user.updated", "user.deleted", "session.created"):
        a.on(t)(rec)
    yield a
    await a.aclose()


Post = Callable[..., Awaitable[WebhookResponse]]


def post_to(a: AuthKit) -> Post:
    async def post(
        event: dict[str, Any], *, t: int | None = None, secret: str = WH
    ) -> WebhookResponse:
        body = json.dumps(event).encode()
        now = a.app.clock.now_ms()
        ts = int(now if now is not None else T0) if t is None else t
        return await a.handle_webhook(body, {"WorkOS-Signature": sign_header(body, ts, secret)})

    return post


@pytest.fixture
def post(ak: AuthKit) -> Post:
    return post_to(ak)


async def workos_keys(app: App) -> dict[str, Any]:
    """Every key of the App's AuthKit instances with its type (for 'nothing written')."""
    found: dict[str, Any] = {}
    pattern = app.keys.pattern("workos")
    if app.is_cluster:
        keys = [k async for k in app.redis.scan_iter(match=pattern, target_nodes="all")]
    else:
        keys = [k async for k in app.redis.scan_iter(match=pattern)]
    for k in keys:
        found[k] = await app.redis.type(k)
    return found
