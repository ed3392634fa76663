"""Admin routes of the Resend integration (spec resend.md §7.8), mounted at
``/admin/resend`` behind the admin token. Routes act on the instance named by
``?instance=`` (default ``"default"``); an unknown instance is a 404."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, status

from rkit import App
from rkit.integrations.resend import (
    STATUSES,
    EmailAlreadySent,
    EmailNotFound,
    Resend,
)

from .lookup import registered
from .validation import MAX_NAME

Instance = Query(default="default", min_length=1, max_length=MAX_NAME)
MAX_AGE_MS = 100 * 365 * 86_400_000


def _resend(app: App, instance: str) -> Resend:
    return registered(app, "resend", instance, Resend, "Resend instance")


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["resend"])

    @r.get("/queue")
    async def queue(instance: str = Instance) -> dict[str, Any]:
        """Batch queue depth: waiting emails, batches pending and in flight, and the
        number of emails per status."""
        return (await _resend(app, instance).queue_info()).to_dict()

    @r.get("/emails")
    async def emails(
        email_status: str = Query(alias="status", pattern="^(" + "|".join(STATUSES) + ")$"),
        limit: int = Query(default=100, ge=1, le=1000),
        offset: int = Query(default=0, ge=0, le=1_000_000),
        instance: str = Instance,
    ) -> dict[str, Any]:
        """Emails of one status, newest first."""
        found = await _resend(app, instance).list_emails(email_status, limit=limit, offset=offset)
        return {"emails": [e.model_dump(by_alias=True) for e in found]}

    @r.get("/emails/{email_id}")
    async def email(email_id: str, instance: str = Instance) -> dict[str, Any]:
        res = _resend(app, instance)
        found = await res.get(email_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Email not found")
        return {
            **found.model_dump(by_alias=True),
            "events": await res.list_delivery_events(email_id),
        }

    @r.get("/emails/{email_id}/events")
    async def email_events(email_id: str, instance: str = Instance) -> dict[str, Any]:
        """The email's delivery events (webhooks applied), oldest first."""
        res = _resend(app, instance)
        if await res.status(email_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Email not found")
        return {"events": await res.list_delivery_events(email_id)}

    @r.get("/emails/{email_id}/status")
    async def email_status_(email_id: str, instance: str = Instance) -> dict[str, Any]:
        found = await _resend(app, instance).status(email_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Email not found")
        return found.model_dump()

    @r.post("/emails/{email_id}/cancel")
    async def cancel(email_id: str, instance: str = Instance) -> dict[str, Any]:
        try:
            await _resend(app, instance).cancel_email(email_id)
        except EmailNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        except EmailAlreadySent as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        return {"id": email_id, "status": "cancelled"}

    @r.post("/emails/{email_id}/resend")
    async def resend_email(email_id: str, instance: str = Instance) -> dict[str, Any]:
        """Queue a copy of a finished email under a new id (a failed one, typically)."""
        try:
            new_id = await _resend(app, instance).resend_email(email_id)
        except EmailNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        except EmailAlreadySent as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        return {"id": new_id, "copy_of": email_id}

    @r.post("/cleanup")
    async def cleanup(
        older_than_ms: int | None = Query(default=None, ge=0, le=MAX_AGE_MS),
        instance: str = Instance,
    ) -> dict[str, int]:
        return {"deleted": await _resend(app, instance).cleanup_old_emails(older_than_ms)}

    @r.post("/cleanup-abandoned")
    async def cleanup_abandoned(
        older_than_ms: int | None = Query(default=None, ge=0, le=MAX_AGE_MS),
        instance: str = Instance,
    ) -> dict[str, int]:
        return {"deleted": await _resend(app, instance).cleanup_abandoned_emails(older_than_ms)}

    return r
