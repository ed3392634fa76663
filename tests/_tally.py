"""A small component defined outside rkit, to show that a new kind needs no edit in
the transport (``rkit._arq``), ``workers/`` or the workpool: it runs its work on a
workpool of its own kind and registers itself, its factory and an admin router."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request

from rkit import App
from rkit.workpool import PoolKind, Workpool

TALLY = PoolKind(kind="tally", logger="tests.tally", default_max_parallelism=4)


class Tally:
    """Counts events per name in Redis, each ``add`` applied by a worker."""

    def __init__(self, app: App, name: str = "default") -> None:
        self.app = app
        self.name = name
        self.key = app.keys.tag("tally", name) + ":counts"
        self.workpool = Workpool(app, name, kind=TALLY, keep_result_ms=60_000)
        app.components.add(TALLY.kind, name, self)
        app.components.set_factory(TALLY.kind, lambda n: Tally(app, n))
        app.components.add_router("/tallies", "tests._tally:router")
        app.components.add_router("/hooks/tally", "tests._tally:hook_router", public=True)
        if "tally_apply" not in app.actions:

            @app.action(name="tally_apply")
            async def tally_apply(tally: str, what: str, by: int) -> int:
                found = app.components.get(TALLY.kind, tally)
                assert isinstance(found, Tally)
                return int(await app.redis.hincrby(found.key, what, by))

    async def add(self, what: str, by: int = 1) -> str:
        return await self.workpool.enqueue(
            "tally_apply", {"tally": self.name, "what": what, "by": by}
        )

    async def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in (await self.app.redis.hgetall(self.key)).items()}


def router(app: App) -> Any:
    r = APIRouter(tags=["tally"])

    @r.get("/{name}")
    async def counts(name: str) -> dict[str, int]:
        found = app.components.get(TALLY.kind, name)
        return {} if found is None else await found.counts()

    return r


def hook_router(app: App) -> Any:
    """A public route (like a vendor webhook): no admin token; a shared secret in a
    header stands in for a vendor's signature."""
    r = APIRouter(tags=["tally"])

    @r.post("/{name}")
    async def hook(name: str, request: Request, x_secret: str = Header("")) -> dict[str, str]:
        if x_secret != "s3cret":
            raise HTTPException(400, "bad signature")
        found = app.components.get(TALLY.kind, name)
        if found is None:
            raise HTTPException(404, "no such tally")
        body = await request.json()
        return {"id": await found.add(str(body["what"]))}

    return r
