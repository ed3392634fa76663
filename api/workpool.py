"""Admin routes of the workpool (spec workpool.md §7.14) and the action retrier
(spec action-retrier.md §7.11). Pools are found by name in the namespace's pool
index, so no Workpool instance has to exist in the API process."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from rkit import App, ConfigError
from rkit.errors import RunNotCompleted, RunNotFound
from rkit.retrier import ActionRetrier
from rkit.workpool import Workpool, check_work_id, pool_names, result_of

from .validation import Name


class ConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # true is not 1
    max_parallelism: int | None = Field(default=None, ge=0, le=2**53)
    log_level: Literal["DEBUG", "TRACE", "INFO", "REPORT", "WARN", "ERROR"] | None = None


class CancelAllBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # false is not 0
    limit: int = Field(default=64, ge=1, le=10_000)
    before: float | None = Field(default=None, allow_inf_nan=False)


def _pool(app: App, name: str) -> Workpool:
    return Workpool.view(app, name)  # never registers or pumps a pool


async def _known(app: App, name: str) -> Workpool:
    if name not in await pool_names(app):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no workpool named {name!r}")
    return _pool(app, name)


def _work_id(work_id: str) -> str:
    try:
        return check_work_id(work_id)
    except ConfigError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def _no_work(pool: str, work_id: str) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND, detail=f"no work {work_id!r} in workpool {pool!r}"
    )


async def _summary(pool: Workpool) -> dict[str, Any]:
    return {
        "name": pool.name,
        "config": asdict(await pool.get_config()),
        "diagnostics": asdict(await pool.diagnostics()),
    }


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["workpool"])

    @r.get("")
    async def pools() -> dict[str, list[dict[str, Any]]]:
        return {"pools": [await _summary(_pool(app, n)) for n in await pool_names(app)]}

    @r.get("/{pool}")
    async def pool_info(pool: Name) -> dict[str, Any]:
        return await _summary(await _known(app, pool))

    @r.patch("/{pool}/config")
    async def set_config(pool: Name, body: ConfigBody) -> dict[str, Any]:
        p = await _known(app, pool)
        try:
            cfg = await p.set_config(max_parallelism=body.max_parallelism, log_level=body.log_level)
        except ConfigError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        return asdict(cfg)

    @r.get("/{pool}/running")
    async def running(pool: Name, limit: int = Query(1000, ge=1, le=10_000)) -> dict[str, Any]:
        p = await _known(app, pool)
        return {"running": [asdict(x) for x in await p.running(limit=limit)]}

    @r.get("/{pool}/pending")
    async def pending(pool: Name, limit: int = Query(1000, ge=1, le=10_000)) -> dict[str, Any]:
        p = await _known(app, pool)
        return {"pending": await p.pending(limit=limit)}

    @r.get("/{pool}/work/{work_id}")
    async def work(pool: Name, work_id: Name) -> dict[str, Any]:
        p = await _known(app, pool)
        h = await p.item(_work_id(work_id))
        if not h:
            raise _no_work(pool, work_id)
        out: dict[str, Any] = {"work_id": work_id, "status": p.status_of(h).to_dict()}
        out["attempts"] = int(h.get("attempts", 0))
        out["fn_name"] = h.get("label")
        out["due"] = float(h["due"]) if h.get("due") else None
        out["last_error"] = h.get("last_error")
        out["traceback"] = h.get("traceback")  # of the last failure, at most 8 KiB
        if h.get("state") == "finished":
            out["result"] = result_of(
                h.get("result_kind", ""), h.get("result", ""), h.get("error", "")
            ).to_dict()
        return out

    @r.post("/{pool}/work/{work_id}/cancel")
    async def cancel(pool: Name, work_id: Name) -> dict[str, str]:
        p = await _known(app, pool)
        outcome = await p.cancel(_work_id(work_id))
        if outcome == "NOT_FOUND":
            raise _no_work(pool, work_id)
        return {"work_id": work_id, "outcome": outcome.lower()}

    @r.post("/{pool}/cancel-all")
    async def cancel_all(pool: Name, body: CancelAllBody | None = None) -> dict[str, int]:
        p = await _known(app, pool)
        b = body or CancelAllBody()
        return {"canceled": await p.cancel_all(limit=b.limit, before=b.before)}

    @r.get("/{pool}/dlq")
    async def dlq(pool: Name, limit: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
        p = await _known(app, pool)
        return {"dead_letters": [asdict(d) for d in await p.dead_letters(limit=limit)]}

    @r.post("/{pool}/dlq/{work_id}/replay")
    async def replay(pool: Name, work_id: Name) -> dict[str, bool]:
        p = await _known(app, pool)
        return {"replayed": await p.replay_dead_letter(work_id)}

    return r


def _retrier(app: App, ns: str) -> ActionRetrier:
    try:
        return ActionRetrier.view(app, ns)  # never registers or pumps a retrier
    except ConfigError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def retrier_router(app: App) -> APIRouter:
    r = APIRouter(tags=["action retrier"])

    @r.get("/{ns}/runs")
    async def runs(
        ns: Name,
        state: Literal["scheduled", "running", "completed"] | None = None,
        limit: int = Query(100, ge=1, le=10_000),
    ) -> dict[str, Any]:
        found = await _retrier(app, ns).list_runs(state=state, limit=limit)
        return {"runs": [d.to_dict() for d in found]}

    @r.get("/{ns}/runs/{run_id}")
    async def run(ns: Name, run_id: Name) -> dict[str, Any]:
        try:
            return (await _retrier(app, ns).details(run_id)).to_dict()
        except RunNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None

    @r.post("/{ns}/runs/{run_id}/cancel")
    async def cancel(ns: Name, run_id: Name) -> dict[str, bool]:
        retrier = _retrier(app, ns)
        if await retrier.cancel(run_id):
            return {"canceled": True}
        try:
            await retrier.details(run_id)  # completed already, or unknown (404)
        except RunNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        return {"canceled": False}

    @r.delete("/{ns}/runs/{run_id}")
    async def cleanup(ns: Name, run_id: Name) -> dict[str, bool]:
        try:
            await _retrier(app, ns).cleanup(run_id)
        except RunNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        except RunNotCompleted as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        return {"deleted": True}

    @r.get("/{ns}/stats")
    async def stats(ns: Name) -> dict[str, Any]:
        return await _retrier(app, ns).stats()

    @r.get("/{ns}/dlq")
    async def dlq(ns: Name, limit: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
        found = await _retrier(app, ns).dead_letters(limit=limit)
        return {"dead_letters": [asdict(d) for d in found]}

    @r.post("/{ns}/dlq/{run_id}/replay")
    async def replay(ns: Name, run_id: Name) -> dict[str, bool]:
        return {"replayed": await _retrier(app, ns).replay_dead_letter(run_id)}

    return r
