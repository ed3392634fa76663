"""Admin routes of the migrations component (spec migrations.md §7.10), mounted at
``/migrations`` by the component itself. The API process must construct the same
``Migrations`` instance and ``define`` the same migrations as the workers (it loads
the same App module)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from rkit import App
from rkit.migrations import (
    RESUME,
    CursorMismatch,
    InvalidBatchSize,
    MigrationNotFound,
    Migrations,
    UnknownMigration,
)

from .lookup import registered
from .validation import Name, QueryStr

MAX_LIMIT = 1_000


class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    cursor: str | None = None
    from_start: bool = False
    batch_size: int | None = Field(default=None, le=2**31)
    dry_run: bool = False
    reset: bool = False
    next: list[str] = Field(default_factory=list, max_length=100)


class CancelAllBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    since_ms: float | None = Field(default=None, allow_inf_nan=False)


class ClearAllBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    before_ms: float | None = Field(default=None, allow_inf_nan=False)


def _component(app: App, instance: str) -> Migrations:
    return registered(app, "migrations", instance, Migrations, "migrations named")


def router(app: App) -> Any:
    r = APIRouter(tags=["migrations"])

    @r.get("")
    async def list_statuses(
        names: Annotated[list[str] | None, Query(max_length=MAX_LIMIT)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        instance: QueryStr = "default",
    ) -> list[dict[str, Any]]:
        m = _component(app, instance)
        return [s.to_dict() for s in await m.get_status(names, limit=limit)]

    @r.post("/cancel-all")
    async def cancel_all(
        body: CancelAllBody | None = None, instance: QueryStr = "default"
    ) -> list[dict[str, Any]]:
        m = _component(app, instance)
        since = body.since_ms if body else None
        return [s.to_dict() for s in await m.cancel_all(since_ms=since)]

    @r.post("/clear-all")
    async def clear_all(body: ClearAllBody | None = None, instance: QueryStr = "default") -> Any:
        m = _component(app, instance)
        return {"cleared": await m.clear_all(before_ms=body.before_ms if body else None)}

    @r.post("/{name}/run")
    async def run(name: Name, body: RunBody | None = None, instance: QueryStr = "default") -> Any:
        m = _component(app, instance)
        b = body or RunBody()
        cursor: Any = RESUME
        if b.from_start:
            cursor = None
        elif b.cursor is not None:
            cursor = b.cursor
        try:
            return await m.run(
                name,
                next=b.next,
                cursor=cursor,
                batch_size=b.batch_size,
                dry_run=b.dry_run,
                reset=b.reset,
            )
        except UnknownMigration as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        except InvalidBatchSize as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
        except CursorMismatch as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None

    @r.post("/{name}/cancel")
    async def cancel(name: Name, instance: QueryStr = "default") -> Any:
        m = _component(app, instance)
        try:
            return (await m.cancel(name)).to_dict()
        except MigrationNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None

    @r.get("/{name}/progress")
    async def progress(name: Name, instance: QueryStr = "default") -> Any:
        m = _component(app, instance)
        try:
            return await m.progress(name)
        except MigrationNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None

    @r.get("/{name}/failed")
    async def failed(name: Name, instance: QueryStr = "default") -> Any:
        m = _component(app, instance)
        st = await m.status(name)
        if st.state == "unknown" and st.latest_start == 0:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Migration {name} not found")
        return {"count": st.failed_items, "items": await m.failed_items(name)}

    return r
