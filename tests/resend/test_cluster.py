"""Every ``lua/resend`` script on a local 3-node Redis Cluster (the instance's keys
share one hash tag, so each script's keys live in one slot), driven through the
public API against the fake Resend server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from rkit import TestClock
from rkit.testing import run_until_idle

from ..conftest import make_app
from ._fake import FakeResend
from .conftest import T0, World, event, make_resend

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(60)]


@pytest.fixture
async def cworld(
    clock: TestClock, request: pytest.FixtureRequest, fake: FakeResend
) -> AsyncIterator[World]:
    app = await make_app("cluster", request, clock)
    events: list[tuple[str, dict[str, Any]]] = []

    async def recorder(email_id: str, ev: Any) -> None:
        events.append((email_id, ev.model_dump()))

    r = make_resend(app, fake, on_email_event=recorder)
    yield World(app, clock, r, fake, events)
    await r.aclose()
    await app.aclose()


async def test_send_pipeline_webhooks_and_parking_on_cluster(cworld: World) -> None:
    w = cworld
    ids = [await w.send() for _ in range(150)]  # enqueue
    cancelled = await w.send()
    await w.r.cancel_email(cancelled)  # cancel
    w.fake.script.append((503, {"message": "down"}, {}))
    await w.tick(T0 + 1000)  # take_batch, batch_begin, batch_result(retry)
    assert len(w.fake.batch_requests) == 1
    await w.tick(T0 + 31_000)  # batch_result(sent), the second batch too
    assert sorted(len(b.body) for b in w.fake.batch_requests) == [50, 100, 100]
    assert (await w.r.queue_info()).by_status["sent"] == 150  # info
    assert len(await w.r.list_emails("sent", limit=1000)) == 150  # list, get
    r = await w.hook(event("email.delivered", "re_0"), "m1")  # apply_event, hook_done
    assert r.status_code == 201
    await run_until_idle(w.app)
    assert w.events and w.events[0][0] in ids
    # an event parked before its resend id is recorded, applied by batch_result
    late = await w.send()
    w.clock.set(T0 + 40_000)
    await w.r._make_batch(T0 + 40_000, False)
    rid = f"re_{len(w.fake.sent)}"
    assert (await w.hook(event("email.opened", rid), "m2")).status_code == 201
    await w.tick(T0 + 41_000)
    e = await w.r.get(late)
    assert e is not None and e.opened and e.resend_id == rid
    held = await w.send(scheduled_at_ms=T0 + 50_000)  # scheduled sending
    assert (await w.r.queue_info()).scheduled == 1
    await w.tick(T0 + 50_000)
    assert (await w.r.status(held)).status == "sent"  # type: ignore[union-attr]


async def test_manual_cleanup_and_watchdog_on_cluster(cworld: World) -> None:
    w = cworld

    async def cb(email_id: str) -> str:
        return "re_m1"

    m = await w.r.send_email_manually(from_="a@x.io", to="b@x.io", subject="S", send=cb)
    e = await w.r.get(m)  # manual_update
    assert e is not None and e.status == "sent"
    await w.send()
    # the scheduled run is lost (its job deleted): the watchdog claims a new one
    await w.app.redis.delete(f"{w.r.key}:sched")
    assert await w.r.watchdog() == 1
    await w.tick(T0 + 1000)
    await w.hook(event("email.delivered", "re_m1"), "m1")
    w.clock.set(T0 + 8 * 86_400_000)
    assert await w.r.cleanup_old_emails() == 1  # cleanup (finalized)
    assert await w.r.cleanup_abandoned_emails(0) == 1  # cleanup (created)
    assert await w.r.get(m) is None
    assert [await w.r._call("cb_fail", "c1", 60_000) for _ in range(2)] == [1, 2]  # cb_fail
