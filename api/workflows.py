"""Admin routes of durable workflows (spec workflow.md §7.9): list, status with
steps, cancel, restart, send event, cleanup, config and failed callbacks. The
manager is chosen by ``?manager=`` (default ``"default"``); 404 for unknown ids,
409 for state conflicts."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from rkit import App
from rkit.workflow import (
    EventNotFound,
    EventStateError,
    WorkflowError,
    WorkflowManager,
    WorkflowNotFound,
    WorkflowNotRunningError,
    WorkflowStillRunning,
)

from .lookup import registered
from .validation import Name

Manager = Query("default", min_length=1, max_length=64)


class RestartBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: int | str | None = Field(default=None, alias="from")
    start_async: bool = False


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=1024)
    id: str | None = Field(default=None, min_length=1, max_length=1024)
    value: Any = None
    error: str | None = None


class ConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    max_parallelism: int | None = Field(default=None, ge=0, le=10_000)


def _wf(app: App, manager: str) -> WorkflowManager:
    return registered(app, "workflow", manager, WorkflowManager, "workflow manager")


def _http(exc: WorkflowError) -> HTTPException:
    if isinstance(exc, WorkflowNotFound | EventNotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc))
    if isinstance(exc, WorkflowNotRunningError | WorkflowStillRunning | EventStateError):
        return HTTPException(status.HTTP_409_CONFLICT, detail=str(exc))
    return HTTPException(422, detail=str(exc))


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["workflows"])

    @r.get("")
    async def list_all(
        order: Literal["asc", "desc"] = "asc",
        cursor: str | None = Query(None, max_length=32),
        n: int = Query(100, ge=1, le=10_000),
        manager: str = Manager,
    ) -> dict[str, Any]:
        page = await _wf(app, manager).list(order=order, cursor=cursor, num_items=n)
        return {
            "page": [w.to_dict() for w in page.page],
            "continue_cursor": page.continue_cursor,
            "is_done": page.is_done,
        }

    @r.get("/by-name/{name}")
    async def by_name(
        name: Name,
        order: Literal["asc", "desc"] = "asc",
        cursor: str | None = Query(None, max_length=32),
        n: int = Query(100, ge=1, le=10_000),
        manager: str = Manager,
    ) -> dict[str, Any]:
        page = await _wf(app, manager).list_by_name(name, order=order, cursor=cursor, num_items=n)
        return {
            "page": [w.to_dict() for w in page.page],
            "continue_cursor": page.continue_cursor,
            "is_done": page.is_done,
        }

    @r.get("/failures")
    async def failures(
        count: int = Query(100, ge=1, le=10_000), manager: str = Manager
    ) -> dict[str, Any]:
        return {"failures": await _wf(app, manager).failures(count=count)}

    @r.post("/config")
    async def config(body: ConfigBody, manager: str = Manager) -> dict[str, Any]:
        await _wf(app, manager).update_config(max_parallelism=body.max_parallelism)
        return {"ok": True}

    @r.get("/{workflow_id}")
    async def get(workflow_id: Name, manager: str = Manager) -> dict[str, Any]:
        wf = _wf(app, manager)
        try:
            st = await wf.status(workflow_id)
            steps = await wf.list_steps(workflow_id, order="desc", num_items=1)
        except WorkflowError as exc:
            raise _http(exc) from None
        last = steps.page[0].step_number + 1 if steps.page else 0
        return {"workflow_id": workflow_id, "status": st.to_dict(), "steps": last}

    @r.get("/{workflow_id}/steps")
    async def steps(
        workflow_id: Name,
        order: Literal["asc", "desc"] = "asc",
        cursor: str | None = Query(None, max_length=32),
        n: int = Query(100, ge=1, le=10_000),
        manager: str = Manager,
    ) -> dict[str, Any]:
        try:
            page = await _wf(app, manager).list_steps(
                workflow_id, order=order, cursor=cursor, num_items=n
            )
        except WorkflowError as exc:
            raise _http(exc) from None
        return {
            "page": [s.to_dict() for s in page.page],
            "continue_cursor": page.continue_cursor,
            "is_done": page.is_done,
        }

    @r.post("/{workflow_id}/cancel")
    async def cancel(workflow_id: Name, manager: str = Manager) -> dict[str, Any]:
        try:
            await _wf(app, manager).cancel(workflow_id)
        except WorkflowError as exc:
            raise _http(exc) from None
        return {"canceled": True}

    @r.post("/{workflow_id}/restart")
    async def restart(
        workflow_id: Name, body: RestartBody, manager: str = Manager
    ) -> dict[str, Any]:
        try:
            await _wf(app, manager).restart(
                workflow_id, from_=body.from_, start_async=body.start_async
            )
        except WorkflowError as exc:
            raise _http(exc) from None
        return {"restarted": True}

    @r.post("/{workflow_id}/events")
    async def send_event(
        workflow_id: Name, body: EventBody, manager: str = Manager
    ) -> dict[str, Any]:
        if (body.name is None) == (body.id is None):
            raise HTTPException(422, detail="give exactly one of name and id")
        wf = _wf(app, manager)
        try:
            if body.id is not None:
                if not body.id.startswith(workflow_id + ".e"):
                    raise EventNotFound(body.id)
                eid = await wf.send_event(id=body.id, value=body.value, error=body.error)
            else:
                eid = await wf.send_event(
                    workflow_id=workflow_id, name=body.name, value=body.value, error=body.error
                )
        except WorkflowError as exc:
            raise _http(exc) from None
        return {"event_id": eid}

    @r.delete("/{workflow_id}")
    async def cleanup(workflow_id: Name, force: bool = False, manager: str = Manager) -> Any:
        wf = _wf(app, manager)
        try:
            await wf.status(workflow_id)
        except WorkflowError as exc:
            raise _http(exc) from None
        if not await wf.cleanup(workflow_id, force=force):
            raise HTTPException(status.HTTP_409_CONFLICT, detail="Workflow is still running")
        return {"deleted": True}

    return r
