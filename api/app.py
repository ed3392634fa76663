"""The admin API factory."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rkit import App, ConfigError

from . import action_cache, aggregate, presence, rate_limits, workpool
from .auth import RequireAdmin, resolve_token
from .validation import (
    MAX_BODY_BYTES,
    BodyGuard,
    config_error_handler,
    http_error_handler,
    validation_error_handler,
)


def create_api(
    app: App,
    *,
    admin_token: str | None = None,
    title: str = "rkit admin",
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """A FastAPI app serving ``/health`` and the admin routes for ``app``'s components:
    the built-in kinds' routers, and every router a component registered with
    ``app.components.add_router`` (behind the admin token; those added with
    ``public=True``, vendor webhooks verifying their own signatures, without it).

    Request bodies must be strict JSON of at most ``max_body_bytes`` (see
    :mod:`rkit.api.validation`); invalid input is a 4xx that never echoes it."""
    api = FastAPI(title=title)
    api.state.rkit = app
    admin = RequireAdmin(resolve_token(admin_token))
    guard = [Depends(admin)]
    api.add_exception_handler(RequestValidationError, validation_error_handler)
    api.add_exception_handler(ConfigError, config_error_handler)
    api.add_exception_handler(StarletteHTTPException, http_error_handler)
    open_paths = {"/health", api.openapi_url, api.docs_url, api.redoc_url, "/docs/oauth2-redirect"}
    public = app.components.public_routers()
    api.add_middleware(
        BodyGuard,
        guard=admin,
        open_paths={p for p in open_paths if p},
        open_prefixes=tuple(prefix.rstrip("/") + "/" for prefix in public),
        max_body_bytes=max_body_bytes,
    )
    add_redis_error_handlers(api)

    @api.get("/health", tags=["health"])
    async def health(request: Request) -> Any:
        """Open: pings the state and the queue Redis (503 when either is down). Hosts,
        ports and error texts only for a request with the admin token."""
        try:
            await admin(request)
            detailed = True
        except HTTPException:
            detailed = False
        state, queue = app.describe_redis()
        checks = {"state": await _ping(app.redis), "queue": await _ping(await app.queue_pool())}
        ok = all(err is None for err in checks.values())
        body: dict[str, Any] = {
            "status": "ok" if ok else "error",
            **{role: "ok" if err is None else "down" for role, err in checks.items()},
        }
        if detailed:
            body["namespace"] = app.namespace
            body["embedded"] = app.embedded
            body["redis"] = {"state": state, "queue": queue}
            body["errors"] = {role: err for role, err in checks.items() if err is not None}
        return JSONResponse(body, status_code=200 if ok else 503)

    api.include_router(rate_limits.router(app), prefix="/rate-limits", dependencies=guard)
    api.include_router(action_cache.router(app), prefix="/action-cache", dependencies=guard)
    api.include_router(presence.router(app), prefix="/presence", dependencies=guard)
    api.include_router(aggregate.router(app), prefix="/aggregates", dependencies=guard)
    api.include_router(workpool.router(app), prefix="/workpools", dependencies=guard)
    api.include_router(workpool.retrier_router(app), prefix="/retriers", dependencies=guard)
    # routers that other components registered with the App ("module:function")
    for prefix, ref in sorted(app.components.routers().items()):
        module, _, attr = ref.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        api.include_router(factory(app), prefix=prefix, dependencies=guard)
    # public routers (vendor webhooks: each verifies the vendor's signature itself)
    for prefix, ref in sorted(public.items()):
        module, _, attr = ref.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        api.include_router(factory(app), prefix=prefix)
    return api


HEALTH_TIMEOUT_S = 2.0


async def _ping(client: Any) -> str | None:
    """``None`` when ``client`` answers PING within 2 s, else what went wrong."""
    try:
        await asyncio.wait_for(client.ping(), HEALTH_TIMEOUT_S)
    except Exception as exc:  # report, don't crash: health must answer
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "Redis is unavailable, try again shortly"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def add_redis_error_handlers(api: FastAPI) -> None:
    """Answer 503 (``Retry-After: 1``), not 500, when a route fails because Redis is
    unreachable or timed out (a restart, a stall). ``create_api`` installs it; call it
    on your own FastAPI app for your routes that use rkit. The response names no host."""
    api.add_exception_handler(RedisConnectionError, _redis_unavailable)
    api.add_exception_handler(RedisTimeoutError, _redis_unavailable)
