"""Fixtures of the Stripe tests: the local fake Stripe API, a ``StripeSync`` on each
backend pointed at it, and ``post`` — a webhook delivery signed with Stripe's real
scheme (``stripe.WebhookSignature.generate_signature_header``)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import stripe

from rkit import App, TestClock
from rkit.integrations.stripe import StripeSync, WebhookResponse

from ._fake import FakeServer, FakeStripe

T0 = 1_700_000_040_000
NOW_S = T0 // 1000
SECRET = "whsec_test"
_evt = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The stripe SDK's HTTPXClient posts bytes with httpx's deprecated ``data=``:
    not ours to fix, and not a signal in these tests."""
    mark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
    for item in items:
        if "tests/stripe/" in str(item.path):
            item.add_marker(mark)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_server: FakeServer) -> Iterator[FakeStripe]:
    fake_server.fake.reset()
    yield fake_server.fake
    fake_server.fake.reset()


def make_sync(app: App, fake: FakeStripe, **kwargs: Any) -> StripeSync:
    opts: dict[str, Any] = {
        "secret_key": "sk_test_123",
        "webhook_secret": SECRET,
        "api_base": fake.url,
        "max_network_retries": 0,
        "rng": lambda: 0.5,  # no jitter: follow-up attempts at exact times
    }
    opts.update(kwargs)
    return StripeSync(app, **opts)


@pytest.fixture
async def sync(app: App, fake: FakeStripe) -> AsyncIterator[StripeSync]:
    s = make_sync(app, fake)
    yield s
    await s.aclose()


def event(
    type_: str, obj: dict[str, Any], *, created: int = NOW_S, id_: str | None = None
) -> dict[str, Any]:
    return {
        "id": id_ or f"evt_{next(_evt)}",
        "object": "event",
        "type": type_,
        "created": created,
        "data": {"object": obj},
    }


def signed(body: bytes, *, t: int = NOW_S, secret: str = SECRET) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp=t
    )
    return {"Stripe-Signature": header}


async def post(
    s: StripeSync, ev: dict[str, Any], *, t: int = NOW_S, secret: str = SECRET
) -> WebhookResponse:
    body = json.dumps(ev).encode()
    return await s.handle_webhook(body, signed(body, t=t, secret=secret))


async def snapshot(app: App) -> dict[str, Any]:
    """Every key of the namespace with its type (what "nothing stored" compares)."""
    out: dict[str, Any] = {}
    async for k in app.redis.scan_iter(match=f"rkit:{{{app.namespace}:*"):
        out[str(k)] = await app.redis.type(k)
    return out


def sub_obj(
    sid: str = "sub_1",
    *,
    customer: str = "cus_1",
    status: str = "active",
    quantity: int | None = 5,
    price: str | None = "price_A",
    cpe: int | None = 1_800_000_000,
    metadata: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": f"si_{sid}"}
    if quantity is not None:
        item["quantity"] = quantity
    if price is not None:
        item["price"] = {"id": price}
    if cpe is not None:
        item["current_period_end"] = cpe
    return {
        "id": sid,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "cancel_at": None,
        "items": {"object": "list", "data": [item]},
        "metadata": metadata or {},
        **extra,
    }


__all__ = ["NOW_S", "SECRET", "T0", "TestClock", "event", "post", "signed", "snapshot", "sub_obj"]
