"""The admin routes (``/crons/{ns}/...``) and ``rkit crons list APP``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rkit.api import create_api

from rkit import App
from rkit.cli import main
from rkit.testing import run_until_idle

from ._env import T0, Env, snapshot

AUTH = {"Authorization": "Bearer tok"}


@pytest.fixture
async def client(queue_app: App) -> AsyncIterator[tuple[httpx.AsyncClient, Env]]:
    env = Env(queue_app)
    api = create_api(queue_app, admin_token="tok")
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH) as c:
        yield c, env


async def test_register_get_list_and_control(client: tuple[httpx.AsyncClient, Env]) -> None:
    c, env = client
    body: dict[str, Any] = {
        "schedule": {"kind": "interval", "ms": 60_000},
        "function": "record",
        "args": {"m": 1},
        "name": "daily",
    }
    r = await c.post("/crons/default", json=body)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert (await c.post("/crons/default", json=body)).status_code == 409
    again = await c.post("/crons/default", json={**body, "if_absent": True})
    assert again.status_code == 201 and again.json() == {"id": cid}
    before = await snapshot(env.app)
    bad = {**body, "name": "x", "schedule": {"kind": "interval", "ms": 10}}
    r = await c.post("/crons/default", json=bad)
    assert r.status_code == 422 and "Interval must be >= 1000ms" in r.text
    r = await c.post("/crons/default", json={**body, "name": "y", "function": "nope"})
    assert r.status_code == 422
    r = await c.post("/crons/default", json={**body, "name": "z", "schedule": {"kind": "x"}})
    assert r.status_code == 422
    r = await c.post("/crons/default", json={**body, "name": "w", "args": [1]})
    assert r.status_code == 422
    r = await c.post("/crons/default", json={**body, "name": "v", "misfire": "later"})
    assert r.status_code == 422
    r = await c.post("/crons/default", json={**body, "if_absent": True, "name": None})
    assert r.status_code == 422
    assert await snapshot(env.app) == before  # refused requests wrote nothing

    got = (await c.get(f"/crons/default/{cid}")).json()
    assert got["name"] == "daily" and got["next_run_ms"] == T0 + 60_000
    assert got["schedule"] == {"kind": "interval", "ms": 60_000}
    assert (await c.get("/crons/default/by-name/daily")).json()["id"] == cid
    assert (await c.get("/crons/default/nope")).status_code == 404
    assert (await c.get("/crons/default/by-name/nope")).status_code == 404
    listed = (await c.get("/crons/default", params={"limit": 10})).json()
    assert listed["total"] == 1 and [d["id"] for d in listed["crons"]] == [cid]

    assert (await c.post(f"/crons/default/{cid}/pause")).json() == {"paused": True}
    assert (await c.get(f"/crons/default/{cid}")).json()["paused"] is True
    assert (await c.post(f"/crons/default/{cid}/resume")).json() == {"resumed": True}
    assert (await c.post(f"/crons/default/{cid}/trigger")).json() == {"triggered": True}
    await run_until_idle(env.app)
    assert env.calls == [(T0, {"m": 1})]
    assert (await c.post(f"/crons/default/{cid}/explode")).status_code == 422
    assert (await c.post("/crons/default/nope/trigger")).status_code == 404

    stats = (await c.get("/crons/default/stats")).json()
    assert stats["crons"] == 1 and stats["success"] == 1
    events = (await c.get("/crons/default/events")).json()["events"]
    assert {"registered", "paused", "resumed", "fired", "started", "finished"} <= {
        e["event"] for e in events
    }
    assert (await c.delete(f"/crons/default/{cid}")).json() == {"deleted": True}
    assert (await c.delete(f"/crons/default/{cid}")).status_code == 404
    assert (await c.get("/crons/default")).json()["total"] == 0


async def test_routes_need_the_admin_token(client: tuple[httpx.AsyncClient, Env]) -> None:
    c, _ = client
    r = await c.get("/crons/default", headers={"Authorization": "Bearer wrong"})
    assert r.status_code in (401, 403)


SERVICE = """
from rkit import App, Crons

app = App({url!r}, namespace="clicron")
crons = Crons(app)


@app.action(name="nightly")
async def nightly() -> None:
    pass
"""


def test_cli_crons_list(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    (tmp_path / "clisvc.py").write_text(SERVICE.format(url=redis_url))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("clisvc", None)
    import clisvc

    async def setup() -> None:
        from rkit import Cron, Interval

        await clisvc.crons.register(Cron("0 3 * * *", tz="Europe/Berlin"), "nightly", name="n")
        cid = await clisvc.crons.register(Interval(5000), "nightly")
        await clisvc.crons.pause(id=cid)
        await clisvc.app.aclose()

    asyncio.run(setup())
    assert main(["crons", "list", "clisvc:app"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["ID", "NAME", "SCHEDULE"]
    assert "0 3 * * * (Europe/Berlin)" in out[1] and " n " in out[1]
    assert "every 5000 ms" in out[2] and "paused" in out[2]
    assert out[-1] == "2 cron(s) in namespace 'default'"
    assert main(["crons", "list", "clisvc:app", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["n", None]
    assert main(["crons", "list", "clisvc:app", "--namespace", "empty"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 cron(s) in namespace 'empty'"
