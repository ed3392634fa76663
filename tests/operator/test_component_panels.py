"""The dashboard's panels of the components that landed after it (issue 14: crons
with their next and last fires, migrations with progress bars, workflows with their
status and steps), read through the logged-in ``/dashboard/data``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rkit import App, Crons, CronScheduler, Interval, MigrationCtx, Migrations, WorkflowManager
from rkit.migrations import HashIndexSource
from rkit.testing import run_until_idle
from rkit.workflow import StepCtx

from .test_dashboard import login, make_client


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with await make_client(app) as c:
        yield c


async def panels(client: httpx.AsyncClient) -> dict[str, Any]:
    await login(client)
    data = (await client.get("/dashboard/data")).json()
    return {p["kind"]: p for p in data["panels"]}


async def test_crons_panel_shows_next_and_last_fires(app: App, client: httpx.AsyncClient) -> None:
    fired: list[int] = []

    @app.action(name="tick_action")
    async def tick_action(n: int) -> None:
        fired.append(n)

    crons = Crons(app)
    cid = await crons.register(Interval(60_000), tick_action, {"n": 1}, name="every-minute")
    app.clock.advance(60_000)  # type: ignore[attr-defined]
    await CronScheduler(crons).tick()
    await run_until_idle(app)
    assert fired == [1]
    (section,) = (await panels(client))["cron"]["sections"]
    assert section["stats"]["crons"] == 1
    (row,) = section["rows"]
    assert row["id"] == cid and row["name"] == "every-minute"
    assert row["last status"] == "success" and row["last fired (ms)"] is not None
    assert row["next run (ms)"] > row["last fired (ms)"]


async def test_migrations_panel_has_a_progress_bar(app: App, client: httpx.AsyncClient) -> None:
    migrations = Migrations(app)

    def touch(ctx: MigrationCtx, item: tuple[str, dict[str, str]]) -> dict[str, str]:
        return {"seen": "1"}

    pipe = app.redis.pipeline()
    for i in range(6):
        pipe.hset(f"it:{i}", mapping={"i": i})
        pipe.zadd("it:idx", {f"it:{i}": 0})
    await pipe.execute()
    migrations.define(source=HashIndexSource(app.redis, "it:idx"), migrate_one=touch, batch_size=2)
    await migrations.run_to_completion("touch")
    (section,) = (await panels(client))["migrations"]["sections"]
    (row,) = section["rows"]
    assert row["name"] == "touch" and row["state"] == "success" and row["processed"] == 6
    assert section["progress"]["touch"] == [6, 6]


async def test_workflows_panel_shows_status_and_steps(app: App, client: httpx.AsyncClient) -> None:
    wf = WorkflowManager(app)

    @wf.function
    async def add_one(x: int) -> int:
        return x + 1

    @wf.define(name="twice")
    async def twice(ctx: StepCtx, x: int) -> int:
        y = await ctx.run_action(add_one, {"x": x})
        return await ctx.run_action(add_one, {"x": y})

    done = await wf.start(twice, {"x": 1})
    await run_until_idle(app)
    waiting = await wf.start(twice, {"x": 5})  # not run yet: its first step is pending
    (section,) = (await panels(client))["workflow"]["sections"]
    rows = {r["workflow_id"]: r for r in section["rows"]}
    assert rows[done]["status"] == "success" and rows[done]["steps done"] == "2 / 2"
    assert rows[waiting]["status"] == "running"


async def test_metrics_of_crons_migrations_and_workflows(
    app: App, client: httpx.AsyncClient
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    @app.action(name="noop_action")
    async def noop_action() -> None:
        return None

    crons = Crons(app)
    await crons.register(Interval(1_000), noop_action, name="each-second")
    app.clock.advance(1_000)  # type: ignore[attr-defined]
    await CronScheduler(crons).tick()
    await run_until_idle(app)

    migrations = Migrations(app)
    await app.redis.hset("m:1", mapping={"a": "1"})
    await app.redis.zadd("m:idx", {"m:1": 0})  # type: ignore[misc]

    def mark(ctx: MigrationCtx, item: tuple[str, dict[str, str]]) -> dict[str, str]:
        return {"b": "2"}

    migrations.define(source=HashIndexSource(app.redis, "m:idx"), migrate_one=mark)
    await migrations.run_to_completion("mark")

    wf = WorkflowManager(app)

    @wf.define(name="empty")
    async def empty(ctx: StepCtx) -> int:
        return 1

    await wf.start(empty, {})
    await run_until_idle(app)

    text = (await client.get("/metrics", headers={"Authorization": "Bearer tok"})).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert samples[("rkit_crons", (("namespace", "default"),))] == 1
    fired = (("event", "fired"), ("namespace", "default"))
    assert samples[("rkit_cron_events_total", fired)] == 1
    key = (("instance", "default"), ("migration", "mark"), ("state", "success"))
    assert samples[("rkit_migration_processed_total", key)] == 1
    assert samples[("rkit_workflows", (("manager", "default"), ("state", "finished")))] == 1
    assert samples[("rkit_workflows", (("manager", "default"), ("state", "running")))] == 0


async def test_integration_panels(app: App, client: httpx.AsyncClient) -> None:
    """Stripe (events received, dead letters), WorkOS AuthKit (users, backfill) and
    Resend (the outbox) each show a panel once constructed."""
    from rkit import AuthKit, Resend, StripeSync

    StripeSync(app, secret_key="sk_test_x", webhook_secret="whsec_x")
    AuthKit(app, client_id="client_1", api_key="sk_test_1", webhook_secret="wh")
    resend = Resend(app, api_key="re_1", webhook_secret="whsec_dGVzdA==")
    await resend.send_email(
        from_="me@example.com", to="delivered@resend.dev", subject="hi", text="hello"
    )
    got = await panels(client)
    (stripe,) = got["stripe"]["sections"]
    assert stripe["stats"] == {"events shown": 0, "dead letters": 0}
    (authkit,) = got["workos"]["sections"]
    assert authkit["stats"] == {"users": 0}
    (outbox,) = got["resend"]["sections"]
    assert outbox["stats"]["waiting"] == 1
