"""Stripe's webhook route (public: Stripe signs each delivery; no admin token).

``POST /stripe/webhook`` feeds the ``default`` instance, ``POST
/stripe/webhook/<instance>`` any other instance this App constructed. The route
reads the raw body (the signature covers the exact bytes) and answers what
:meth:`StripeSync.handle_webhook` decides: 200 ``{"received":true}`` (also for a
duplicate or an unhandled type), 400 for a missing or failing signature or a stale
timestamp, 409 while another delivery of the event is being processed, 500 when no
secret is configured or processing failed (Stripe retries)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from rkit import App
from rkit.integrations.stripe import STRIPE, StripeSync

from ..validation import Name


def _instance(app: App, instance: str) -> StripeSync:
    found = app.components.get(STRIPE.kind, instance)
    if not isinstance(found, StripeSync):
        raise HTTPException(404, detail=f"no Stripe instance {instance!r}")
    return found


async def _handle(sync: StripeSync, request: Request) -> Response:
    result = await sync.handle_webhook(await request.body(), request.headers)
    return Response(result.body, result.status_code, media_type=result.media_type)


def webhook_router(sync: StripeSync, path: str = "/stripe/webhook") -> APIRouter:
    """A router with one webhook route for ``sync`` at ``path`` (to mount a Stripe
    instance in an application's own FastAPI app)."""
    r = APIRouter(tags=["stripe"])

    @r.post(path, include_in_schema=False)
    async def webhook(request: Request) -> Response:
        return await _handle(sync, request)

    return r


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["stripe"])

    @r.post("")
    async def default_webhook(request: Request) -> Response:
        return await _handle(_instance(app, "default"), request)

    @r.post("/{instance}")
    async def instance_webhook(instance: Name, request: Request) -> Response:
        return await _handle(_instance(app, instance), request)

    return r
