"""The reconcile pull and the backfill as workpool jobs: the 50-page hand-off, the
cron, one pull at a time, a failing handler stopping the pull at the last success,
and extra event types."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rkit import App, Finished
from rkit.integrations.workos import MAX_PAGES_PER_BATCH, AuthKit
from rkit.testing import run_until_idle

from .conftest import Recorder, make_authkit
from .fake import FakeWorkOS, user

D1 = "2024-01-01T00:00:00.000Z"
D2 = "2024-01-02T00:00:00.000Z"
RECENT = "2023-11-14T22:13:00.000Z"  # inside the 5-minute look-back from T0


def ev(eid: str, etype: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": eid, "event": etype, "data": data, "created_at": RECENT}


async def test_a_backfill_hands_off_after_50_pages(
    app: App, ak: AuthKit, fake: FakeWorkOS, rec: Recorder
) -> None:
    n = MAX_PAGES_PER_BATCH + 2
    fake.users = [user(f"user_{i:03d}", D1) for i in range(n)]
    fake.page_size = 1
    assert await ak.start_backfill() == "started"
    first = await app.redis.hget(f"{ak.prefix}:backfill", "work_id")
    await run_until_idle(app)
    assert [e.data["id"] for e in rec.calls] == [f"user_{i:03d}" for i in range(n)]
    reqs = fake.requests_to("/user_management/users")
    assert len(reqs) == n and reqs[MAX_PAGES_PER_BATCH]["after"] == ["user_049"]
    assert await ak.backfill_status() is None
    # the first job ended after its 50 pages; a second job (another work id) finished
    assert isinstance(await ak.workpool.status(first), Finished)
    assert await app.redis.get(f"{ak.prefix}:seq") == str(n)


async def test_the_cron_queues_a_reconcile(app: App, ak: AuthKit, fake: FakeWorkOS) -> None:
    (cron,) = [c for c in app.components.crons() if c.name == "workos_reconcile"]
    assert cron.second == frozenset({0}) and cron.minute == frozenset(range(0, 60, 5))
    fake.events = [ev("event_1", "user.created", user("user_1", D1))]
    await cron.run(app)
    await run_until_idle(app)
    assert await ak.get_auth_user("user_1") is not None
    assert await ak.cursor() == "event_1"
    ak.reconcile_cron = False
    await cron.run(app)
    assert await run_until_idle(app) == 0


async def test_one_pull_at_a_time(app: App, ak: AuthKit, fake: FakeWorkOS) -> None:
    fake.events = [ev(f"event_{i}", "user.created", user(f"user_{i}", D1)) for i in range(5)]
    counts = await asyncio.gather(ak.reconcile(), ak.reconcile())
    assert sorted(counts) == [0, 5]
    assert len(fake.requests_to("/events")) == 1
    assert await ak.reconcile() == 0  # from the cursor: nothing new
    assert fake.requests_to("/events")[-1]["after"] == ["event_4"]


async def test_a_failing_handler_stops_the_pull_at_the_last_success(
    app: App, ak: AuthKit, fake: FakeWorkOS, rec: Recorder
) -> None:
    fake.events = [
        ev("event_1", "user.created", user("user_1", D1)),
        ev("event_2", "user.updated", user("user_1", D2)),
        ev("event_3", "user.created", user("user_3", D1)),
    ]
    fake.page_size = 2
    rec.fail["user.updated"] = 1
    with pytest.raises(RuntimeError, match=r"handler for user\.updated failed"):
        await ak.reconcile()
    assert await ak.cursor() == "event_1"
    # queued on the workpool: the retry resumes from the cursor
    await ak.start_reconcile()
    await run_until_idle(app)
    assert rec.types() == ["user.created", "user.updated", "user.created"]
    assert await ak.cursor() == "event_3"
    assert fake.requests_to("/events")[-1]["after"] == ["event_1"]


async def test_additional_event_types_widen_the_pull(app: App, fake: FakeWorkOS) -> None:
    ak = make_authkit(app, fake, additional_event_types=["organization.created"])
    seen: list[str] = []

    @ak.on("organization.created")
    async def org(event: Any) -> None:
        seen.append(event.data["id"])

    fake.events = [
        ev("event_1", "organization.created", {"object": "organization", "id": "org_1"}),
        ev("event_2", "session.created", {"object": "session", "id": "s"}),
    ]
    assert await ak.reconcile() == 1
    q = fake.requests_to("/events")[0]
    assert q["events"] == ["user.created", "user.updated", "user.deleted", "organization.created"]
    assert seen == ["org_1"]
    await ak.aclose()


async def test_a_malformed_listed_user_is_skipped_not_fatal(
    app: App, ak: AuthKit, fake: FakeWorkOS, rec: Recorder
) -> None:
    fake.users = [user("user_1", D1), {"object": "user", "id": 5}, user("user_3", D1)]
    assert await ak.start_backfill() == "started"
    await run_until_idle(app)
    assert [e.data["id"] for e in rec.calls] == ["user_1", "user_3"]
    assert await ak.backfill_status() is None
