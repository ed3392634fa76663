"""The admin API factory."""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
        # a public router may serve its prefix itself (e.g. POST /stripe/webhook)
        open_paths={p for p in open_paths if p} | {prefix.rstrip("/") for prefix in public},
        open_prefixes=tuple(prefix.rstrip("/") + "/" for prefix in public),
        max_body_bytes=max_body_bytes,
    )

    @api.get("/health", tags=["health"])
    async def health() -> Any:
        try:
            await app.redis.ping()
        except Exception as exc:  # report, don't crash: health must answer
            return JSONResponse(
                {"status": "error", "redis": f"{type(exc).__name__}: {exc}"}, status_code=503
            )
        return {"status": "ok", "redis": "ok", "namespace": app.namespace, "embedded": app.embedded}

    # public routers first (vendor webhooks: each verifies the vendor's signature
    # itself): a delivery is matched without scanning every admin route before it
    for prefix, ref in sorted(public.items()):
        module, _, attr = ref.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        api.include_router(factory(app), prefix=prefix)
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
    return api
