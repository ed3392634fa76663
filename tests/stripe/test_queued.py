"""Queued mode (spec §7.4, ``queue_webhooks=True``): the route verifies the delivery
and answers 200 at once; a workpool job runs the same steps (dedupe, sync, handlers)
and retries them with backoff when a handler fails."""

from __future__ import annotations

from typing import Any

from rkit import App, TestClock
from rkit.integrations.stripe import StripeSync
from rkit.testing import run_until_idle

from ._fake import FakeStripe
from .conftest import NOW_S, event, make_sync, post, snapshot, sub_obj


async def test_a_queued_delivery_is_applied_by_a_worker_once(
    queue_app: App, fake: FakeStripe
) -> None:
    s = make_sync(queue_app, fake, queue_webhooks=True)
    runs: list[str] = []

    @s.on_event
    async def count(ev: dict[str, Any], _s: StripeSync) -> None:
        runs.append(ev["id"])

    ev = event("customer.subscription.created", sub_obj(), id_="evt_q1")
    assert (await post(s, ev)).status_code == 200
    assert (await post(s, ev)).status_code == 200  # a redelivery before the worker ran
    assert await s.get_subscription("sub_1") is None
    assert (await s.workpool.diagnostics()).live == 2
    await run_until_idle(queue_app)
    assert await s.get_subscription("sub_1") is not None
    assert runs == ["evt_q1"]
    rec = await s.store.event("evt_q1")
    assert rec is not None and rec["state"] == "done"
    await s.aclose()


async def test_a_failing_handler_is_retried_by_the_workpool(
    queue_app: App, fake: FakeStripe, clock: TestClock
) -> None:
    s = make_sync(queue_app, fake, queue_webhooks=True)
    runs: list[str] = []

    @s.on("customer.subscription.created")
    async def flaky(ev: dict[str, Any], _s: StripeSync) -> None:
        runs.append(ev["id"])
        if len(runs) == 1:
            raise RuntimeError("boom")

    assert (await post(s, event("customer.subscription.created", sub_obj()))).status_code == 200
    await run_until_idle(queue_app)
    assert len(runs) == 1 and await s.get_subscription("sub_1") is not None
    clock.advance(999)
    await run_until_idle(queue_app)
    assert len(runs) == 1  # the retry is due 1 s after the failure
    clock.advance(1)
    await run_until_idle(queue_app)
    assert len(runs) == 2 and (await s.workpool.diagnostics()).live == 0
    assert await s.dead_letters() == []
    await s.aclose()


async def test_a_stale_queued_delivery_is_refused_at_once(queue_app: App, fake: FakeStripe) -> None:
    s = make_sync(queue_app, fake, queue_webhooks=True)
    before = await snapshot(queue_app)
    r = await post(s, event("customer.created", {"id": "cus_1"}), t=NOW_S - 301)
    assert r.status_code == 400 and b"tolerance" in r.body
    assert await snapshot(queue_app) == before
    await s.aclose()
