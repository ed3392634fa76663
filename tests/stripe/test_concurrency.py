"""Many deliveries, shuffled and duplicated, to several App instances (processes) on
one Redis at once: the mirror ends at the newest state of every object, and each
event's handler effect happens once (issue "Done when")."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import pytest

from rkit import App
from rkit.integrations.stripe import StripeSync
from rkit.testing import peer_app

from ._fake import FakeStripe
from .conftest import NOW_S, event, make_sync, signed, sub_obj


def _events() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, str]]:
    """50 events: 10 subscriptions x 3 (created, two updates) and 10 customers x 2;
    returns them with the newest subscription state and customer email expected."""
    evs: list[dict[str, Any]] = []
    subs: dict[str, dict[str, Any]] = {}
    emails: dict[str, str] = {}
    for i in range(10):
        sid = f"sub_c{i}"
        meta = {"userId": f"u{i}"}  # Stripe sends the whole object every time
        up = "customer.subscription.updated"
        evs.append(
            event("customer.subscription.created", sub_obj(sid, quantity=1, metadata=meta),
                  created=NOW_S - 30)
        )  # fmt: skip
        first = sub_obj(sid, quantity=2, status="past_due", metadata=meta)
        evs.append(event(up, first, created=NOW_S - 20))
        last = sub_obj(sid, quantity=3 + i, status="active", price="price_B", metadata=meta)
        evs.append(event(up, last, created=NOW_S - 10))
        subs[sid] = {"quantity": 3 + i, "status": "active", "price_id": "price_B",
                     "user_id": f"u{i}"}  # fmt: skip
        cid = f"cus_c{i}"
        evs.append(event("customer.created", {"id": cid, "email": f"old{i}@x.io",
                                              "metadata": {"userId": f"u{i}"}},
                         created=NOW_S - 20))  # fmt: skip
        evs.append(event("customer.updated", {"id": cid, "email": f"new{i}@x.io",
                                              "metadata": {"userId": f"u{i}"}},
                         created=NOW_S - 10))  # fmt: skip
        emails[cid] = f"new{i}@x.io"
    return evs, subs, emails


@pytest.mark.parametrize("copies", ["four", "one_to_four"])
async def test_shuffled_duplicated_deliveries_to_four_instances(
    queue_app: App, fake: FakeStripe, copies: str
) -> None:
    rnd = random.Random(12)
    evs, subs, emails = _events()
    counts = [4 if copies == "four" else rnd.randint(1, 4) for _ in evs]
    deliveries = [ev for ev, n in zip(evs, counts, strict=True) for _ in range(n)]
    rnd.shuffle(deliveries)
    if copies == "four":
        assert len(deliveries) == 200
    apps = [queue_app] + [peer_app(queue_app) for _ in range(3)]
    syncs = [make_sync(a, fake) for a in apps]
    effects: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

    for s in syncs:

        @s.on_event
        async def effect(ev: dict[str, Any], _s: StripeSync) -> None:
            await asyncio.sleep(0)  # let other deliveries interleave
            effects[ev["id"]] += 1

    gate = asyncio.Semaphore(32)

    async def deliver(i: int, ev: dict[str, Any]) -> None:
        body = json.dumps(ev).encode()
        async with gate:
            while True:  # like Stripe: retry until a 2xx
                r = await syncs[i % 4].handle_webhook(body, signed(body))
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    return
                assert r.status_code == 409, r.body
                await asyncio.sleep(0.002)

    try:
        await asyncio.gather(*(deliver(i, ev) for i, ev in enumerate(deliveries)))
        s = syncs[0]
        for sid, want in subs.items():
            got = await s.get_subscription(sid)
            assert got is not None
            assert {k: getattr(got, k) for k in want} == want
        for cid, email in emails.items():
            c = await s.get_customer(cid)
            assert c is not None and c.email == email
            assert await s.get_customer_by_email(email.replace("new", "old")) is None
        assert statuses[200] == len(deliveries)
        assert effects == Counter({ev["id"]: 1 for ev in evs})
        assert len(await s.list_subscriptions_by_user_id("u3")) == 1
    finally:
        for sync, a in zip(syncs, apps, strict=True):
            await sync.aclose()
            if a is not queue_app and a.redis is not queue_app.redis:
                await a.aclose()
