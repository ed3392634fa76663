"""Fixtures of the Resend tests: a fake Resend API on loopback, an App on each backend
with a frozen clock at T0, and a Resend instance pointed at the fake with the spec's
test setup (rng 0.5, ids em_0001, em_0002, ...)."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from svix.webhooks import Webhook

from rkit import App, TestClock
from rkit.integrations.resend import Resend, WebhookResponse
from rkit.testing import run_until_idle

from ..conftest import make_app
from ._fake import FakeResend, start_fake

T0 = 1_700_000_040_000
SECRET = "whsec_" + base64.b64encode(b"test-secret-0123456789").decode()


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeResend]:
    fake, server = start_fake()
    yield fake
    server.shutdown()


@pytest.fixture
def fake(fake_server: FakeResend) -> Iterator[FakeResend]:
    fake_server.reset()
    yield fake_server
    if fake_server.gate is not None:
        fake_server.gate.set()
    fake_server.reset()


@dataclass
class World:
    app: App
    clock: TestClock
    r: Resend
    fake: FakeResend
    events: list[tuple[str, dict[str, Any]]]

    async def tick(self, t: float) -> int:
        self.clock.set(t)
        return await run_until_idle(self.app)

    async def send(self, **kw: Any) -> str:
        args: dict[str, Any] = {
            "from_": "me@x.io",
            "to": "delivered@resend.dev",
            "subject": "Hi",
            "html": "<p>x</p>",
        }
        args.update(kw)
        return await self.r.send_email(**args)

    async def hook(
        self,
        event: Any,
        msg_id: str,
        ts: float | None = None,
        secret: str = SECRET,
        r: Resend | None = None,
    ) -> WebhookResponse:
        body, headers = signed(event, msg_id, self.clock.now_ms() if ts is None else ts, secret)
        return await (r or self.r).handle_webhook(body.encode(), headers)

    async def keys(self) -> list[str]:
        return await all_keys(self.app)


def signed(
    event: Any, msg_id: str, ts_ms: float, secret: str = SECRET
) -> tuple[str, dict[str, str]]:
    body = json.dumps(event)
    when = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    sig = Webhook(secret).sign(msg_id, when, body)
    return body, {
        "svix-id": msg_id,
        "svix-timestamp": str(int(ts_ms // 1000)),
        "svix-signature": sig,
    }


def event(kind: str, rid: str, **data: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "created_at": "2024-01-01T00:00:00Z",
        "data": {"email_id": rid, "from": "me@x.io", "to": ["delivered@resend.dev"], **data},
    }


async def all_keys(app: App) -> list[str]:
    """Every key of the App's namespace (on Cluster: every node)."""
    pattern = f"rkit:{{{app.namespace}:*"
    if app.is_cluster:
        keys: set[str] = set()
        for node in app.redis.get_primaries():
            async for k in app.redis.scan_iter(match=pattern, target_nodes=node):
                keys.add(k)
        return sorted(keys)
    return sorted([k async for k in app.redis.scan_iter(match=pattern)])


def make_resend(app: App, fake: FakeResend, **kw: Any) -> Resend:
    counter = itertools.count(1)
    opts: dict[str, Any] = {
        "api_key": "re_test",
        "webhook_secret": SECRET,
        "api_base": fake.url,
        "http_timeout_s": 10,
        "rng": lambda: 0.5,
        "id_factory": lambda: f"em_{next(counter):04d}",
    }
    opts.update(kw)
    return Resend(app, **opts)


@pytest.fixture
async def world(
    backend: str, clock: TestClock, request: pytest.FixtureRequest, fake: FakeResend
) -> AsyncIterator[World]:
    app = await make_app(backend, request, clock)
    events: list[tuple[str, dict[str, Any]]] = []

    async def recorder(email_id: str, ev: Any) -> None:
        events.append((email_id, ev.model_dump()))

    opts = getattr(request, "param", {})
    r = make_resend(app, fake, on_email_event=recorder, **opts)
    yield World(app, clock, r, fake, events)
    await r.aclose()
    await app.aclose()


@pytest.fixture(params=["fake", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Scenarios run on fakeredis and a real redis-server (``test_cluster.py`` runs
    every script on the 3-node Cluster)."""
    return str(request.param)
