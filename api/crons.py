"""Admin routes of the crons (spec crons.md §7.10), mounted at ``/crons`` by
:class:`rkit.crons.Crons` (``app.components.add_router``): list (paginated, with
details), get by id or name, register, delete, pause, resume, trigger, stats, events.
A namespace this process never constructed is read through an unregistered handle."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from rkit import App, ConfigError
from rkit.crons import (
    CronDetails,
    CronNameTaken,
    CronNotFound,
    Crons,
    CronSchedule,
    IntervalSchedule,
    Schedule,
)
from rkit.errors import ActionNotFound

from .validation import MAX_NAME, Name


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schedule: Schedule
    function: str = Field(min_length=1, max_length=MAX_NAME)
    args: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    misfire: Literal["coalesce", "catch_up"] | None = None
    overlap: Literal["skip", "allow"] | None = None
    timeout_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    if_absent: bool = False


def _crons(app: App, ns: str) -> Crons:
    try:
        return Crons.view(app, ns)
    except ConfigError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def _missing(exc: CronNotFound) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc))


def _dump(d: CronDetails) -> dict[str, Any]:
    return d.to_dict()


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["crons"])

    @r.get("/{ns}")
    async def list_crons(
        ns: Name,
        offset: int = Query(0, ge=0, le=2**31),
        limit: int = Query(100, ge=1, le=10_000),
    ) -> dict[str, Any]:
        total, page = await _crons(app, ns).list_details(offset=offset, limit=limit)
        return {"total": total, "offset": offset, "crons": [_dump(d) for d in page]}

    @r.post("/{ns}", status_code=status.HTTP_201_CREATED)
    async def register(ns: Name, body: RegisterBody) -> dict[str, str]:
        crons = _crons(app, ns)
        schedule: IntervalSchedule | CronSchedule = body.schedule
        options: dict[str, Any] = {
            "misfire": body.misfire,
            "overlap": body.overlap,
            "timeout_ms": body.timeout_ms,
        }
        try:
            if body.if_absent:
                if body.name is None:
                    raise HTTPException(422, detail="if_absent needs a name")
                cron_id = await crons.register_if_absent(
                    body.name, schedule, body.function, body.args, **options
                )
            else:
                cron_id = await crons.register(
                    schedule, body.function, body.args, body.name, **options
                )
        except CronNameTaken as exc:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail={"message": str(exc), "id": exc.existing_id}
            ) from None
        except (ConfigError, ActionNotFound, TypeError) as exc:
            raise HTTPException(422, detail=str(exc)) from None
        return {"id": cron_id}

    @r.get("/{ns}/stats")
    async def stats(ns: Name) -> dict[str, Any]:
        return await _crons(app, ns).stats()

    @r.get("/{ns}/events")
    async def events(ns: Name, limit: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
        return {"events": await _crons(app, ns).events(limit=limit)}

    @r.get("/{ns}/by-name/{name}")
    async def by_name(ns: Name, name: Name) -> dict[str, Any]:
        found = await _crons(app, ns).details(name=name)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f'Cron "{name}" not found')
        return _dump(found)

    @r.get("/{ns}/{cron_id}")
    async def get(ns: Name, cron_id: Name) -> dict[str, Any]:
        try:
            found = await _crons(app, ns).details(id=cron_id)
        except ConfigError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Cron {cron_id} not found")
        return _dump(found)

    @r.delete("/{ns}/{cron_id}")
    async def delete(ns: Name, cron_id: Name) -> dict[str, bool]:
        try:
            await _crons(app, ns).delete(id=cron_id)
        except CronNotFound as exc:
            raise _missing(exc) from None
        except ConfigError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        return {"deleted": True}

    @r.post("/{ns}/{cron_id}/{action}")
    async def control(
        ns: Name, cron_id: Name, action: Literal["pause", "resume", "trigger"]
    ) -> dict[str, bool]:
        crons = _crons(app, ns)
        try:
            if action == "pause":
                return {"paused": await crons.pause(id=cron_id)}
            if action == "resume":
                return {"resumed": await crons.resume(id=cron_id)}
            return {"triggered": await crons.trigger(id=cron_id)}
        except CronNotFound as exc:
            raise _missing(exc) from None
        except ConfigError as exc:
            raise HTTPException(422, detail=str(exc)) from None

    return r
