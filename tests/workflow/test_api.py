"""The admin routes (spec §7.9): list, status with steps, cancel, restart, events,
cleanup, failures; 404 for unknown ids, 409 for state conflicts, behind the token."""

from __future__ import annotations

from typing import Any

import httpx
from rkit.api import create_api

from rkit import App
from rkit.workflow import StepCtx

from ._env import Env

H = {"Authorization": "Bearer tok"}


async def test_admin_routes(queue_app: App) -> None:
    env = Env(queue_app)

    @env.wf.define(name="signup")
    async def signup(ctx: StepCtx, user: str) -> Any:
        await ctx.run_action(env.greet, {"q": user})
        ok = await ctx.await_event("confirm")
        if not ok:
            raise RuntimeError("not confirmed")
        return "welcome"

    w1 = await env.wf.start(signup, {"user": "ada"})
    w2 = await env.wf.start(signup, {"user": "bob"}, on_complete="on_done")
    await env.drain()
    api = create_api(queue_app, admin_token="tok")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        assert (await c.get("/workflows")).status_code in (401, 403)
        page = (await c.get("/workflows", headers=H, params={"n": 1})).json()
        assert [w["workflow_id"] for w in page["page"]] == [w1] and not page["is_done"]
        named = (await c.get("/workflows/by-name/signup", headers=H)).json()
        assert len(named["page"]) == 2
        one = (await c.get(f"/workflows/{w1}", headers=H)).json()
        assert one["status"]["type"] == "inProgress" and one["steps"] == 2
        assert one["status"]["running"][0]["kind"] == "event"
        steps = (await c.get(f"/workflows/{w1}/steps", headers=H)).json()["page"]
        assert steps[0]["result"] == {"kind": "success", "value": "hello ada", "error": None}
        r = await c.post(f"/workflows/{w1}/events", headers=H, json={"name": "confirm", "value": 1})
        assert r.status_code == 200 and r.json()["event_id"].startswith(w1 + ".e")
        r = await c.post(f"/workflows/{w2}/events", headers=H, json={"name": "confirm", "value": 0})
        await env.drain()
        assert (await c.get(f"/workflows/{w1}", headers=H)).json()["status"]["result"] == "welcome"
        failed = (await c.get(f"/workflows/{w2}", headers=H)).json()["status"]
        assert failed["type"] == "failed" and "not confirmed" in failed["error"]
        # conflicts and unknown ids
        assert (await c.post(f"/workflows/{w1}/cancel", headers=H)).status_code == 409
        unknown = "wf_aaaaaaaaaaaaaaaaaaaaaaaaaa"
        assert (await c.get(f"/workflows/{unknown}", headers=H)).status_code == 404
        assert (await c.post(f"/workflows/{unknown}/cancel", headers=H)).status_code == 404
        r = await c.post(f"/workflows/{w1}/events", headers=H, json={"name": "x", "id": "y"})
        assert r.status_code == 422
        # restart from the event step, then confirm again
        r = await c.post(f"/workflows/{w2}/restart", headers=H, json={"from": 1})
        assert r.status_code == 200
        assert (await c.post(f"/workflows/{w2}/restart", headers=H, json={})).status_code == 409
        assert (await c.delete(f"/workflows/{w2}", headers=H)).status_code == 409
        assert (await c.post(f"/workflows/{w2}/cancel", headers=H)).status_code == 200
        assert (await c.delete(f"/workflows/{w2}", headers=H)).status_code == 200
        assert (await c.get(f"/workflows/{w2}", headers=H)).status_code == 404
        r = await c.post("/workflows/config", headers=H, json={"max_parallelism": 5})
        assert r.status_code == 200
        assert (await env.wf.workpool.get_config()).max_parallelism == 5
        assert (await c.get("/workflows/failures", headers=H)).json() == {"failures": []}
