"""WorkOS AuthKit's public routes: the webhook (``POST /workos/webhook``) and the
Actions endpoint (``POST /workos/action``), at the paths each :class:`AuthKit` was
configured with. Never behind the admin token: every request is verified with
WorkOS's ``WorkOS-Signature`` scheme by the AuthKit itself, and the raw body is
passed through untouched (the signature covers the exact bytes)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from rkit import App
from rkit.integrations.workos import KIND, AuthKit, WebhookResponse

__all__ = ["authkit_router", "router"]


def _send(answer: WebhookResponse) -> Response:
    return Response(answer.body, status_code=answer.status_code, media_type=answer.media_type)


def router(app: App) -> APIRouter:
    """The router ``create_api`` mounts under each path's first segment: it serves
    every AuthKit of ``app`` at its own ``webhook_path`` and ``action_path``."""
    r = APIRouter(tags=["workos"])

    @r.post("/{rest:path}", include_in_schema=False)
    async def dispatch(request: Request, rest: str) -> Response:
        path = request.scope["path"].rstrip("/")
        for authkit in app.components.of_kind(KIND, AuthKit):
            if path == authkit.webhook_path:
                return _send(await authkit.handle_webhook(await request.body(), request.headers))
            if path == authkit.action_path:
                return _send(await authkit.handle_action(await request.body(), request.headers))
        return Response("Not Found", status_code=404, media_type="text/plain")

    return r


def authkit_router(authkit: AuthKit) -> APIRouter:
    """Both routes of one AuthKit at its configured paths, for an application that
    mounts them itself (``api.include_router(authkit_router(authkit))``)."""
    r = APIRouter(tags=["workos"])

    @r.post(authkit.webhook_path, include_in_schema=False)
    async def webhook(request: Request) -> Response:
        return _send(await authkit.handle_webhook(await request.body(), request.headers))

    @r.post(authkit.action_path, include_in_schema=False)
    async def action(request: Request) -> Response:
        return _send(await authkit.handle_action(await request.body(), request.headers))

    return r
