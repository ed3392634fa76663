"""The Resend webhook route (public: Svix-signed, never behind the admin token).

``POST /resend/webhook`` for the ``default`` instance, ``POST /resend/{instance}/webhook``
for others. The raw body and headers go to :meth:`Resend.handle_webhook`, which
verifies the ``svix-*`` signature with the App's clock and answers 201 (empty) on
success, 400 for a bad or stale signature, 500 while no secret is configured."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from rkit import App
from rkit.integrations.resend import Resend

from ..lookup import registered


def _resend(app: App, instance: str) -> Resend:
    return registered(app, "resend", instance, Resend, "Resend instance")


def router(app: App) -> APIRouter:
    r = APIRouter(tags=["resend webhooks"])

    async def handle(instance: str, request: Request) -> Response:
        resend = _resend(app, instance)
        body = await request.body()
        out = await resend.handle_webhook(body, dict(request.headers))
        media = None if out.status_code == 201 else "text/plain"
        return Response(content=out.body, status_code=out.status_code, media_type=media)

    @r.post("/webhook", status_code=201)
    async def webhook(request: Request) -> Response:
        return await handle("default", request)

    @r.post("/{instance}/webhook", status_code=201)
    async def instance_webhook(instance: str, request: Request) -> Response:
        return await handle(instance, request)

    return r
