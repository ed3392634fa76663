"""The admin API factory."""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from rkit import App

from . import action_cache, aggregate, presence, rate_limits, workpool
from .auth import RequireAdmin, resolve_token


def create_api(app: App, *, admin_token: str | None = None, title: str = "rkit admin") -> FastAPI:
    """A FastAPI app serving ``/health`` and the admin routes for ``app``'s components:
    the built-in kinds' routers, and every router a component registered with
    ``app.components.add_router`` (all behind the admin token)."""
    api = FastAPI(title=title)
    api.state.rkit = app
    guard = [Depends(RequireAdmin(resolve_token(admin_token)))]

    @api.get("/health", tags=["health"])
    async def health() -> Any:
        try:
            await app.redis.ping()
        except Exception as exc:  # report, don't crash: health must answer
            return JSONResponse(
                {"status": "error", "redis": f"{type(exc).__name__}: {exc}"}, status_code=503
            )
        return {"status": "ok", "redis": "ok", "namespace": app.namespace, "embedded": app.embedded}

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
